// The fused masked reconstruction loss on the GPU, in the reduction order of mwm/loss_order.hpp
// (docs/cuda.md, "The loss kernels"): 8 threads per patch, each holding 4 of its 32 lanes and
// reading the patch in place (coalesced: consecutive threads read consecutive 16-byte pieces of
// a patch vector, as float4 where aligned), the lane sums added by a shuffle tree; per-patch values
// added by blocks of 256 in chunks, and one block adding the chunk totals level by level. No float
// atomics: every sum has one order, the CPU's. The backward writes grad_pred only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "device_checks.cuh"
#include "loss_steps.cuh"
#include "mwm_cuda.hpp"

namespace mwm {
namespace gpu {
namespace {

// The key phase of the reduced loss's overflow: after the patch faults (phases 0 and 1 of
// patch_data_error), which the CPU reports first.
constexpr int reduced_loss_error_phase = 2;

// The device side of a patch's group of 8 threads (lanes 4q .. 4q+3 in thread q): the
// collective is the halving tree as shuffle-down steps of width 8 over the group (lane strides
// 16, 8, 4) and two additions inside thread 0 (strides 2, 1); host_group_tree in loss_steps.cuh
// spells out that it is lane_total. The result is broadcast from the group's thread 0. The
// shuffles name the group's 8 threads only: the 4 groups of a warp run different patches, and
// one may skip its patch (c == 0) while another sums.
struct device_group {
  int q;              // the thread's index in its group
  unsigned int mask;  // the group's 8 lanes of the warp
  quad_loads loads;

  template <typename Lane, typename Quad>
  __device__ auto total(Lane&&, Quad&& per_thread) -> decltype(per_thread(0).v[0] + 0) {
    auto sums = per_thread(q);
#pragma unroll
    for (int s = loss_threads_per_patch / 2; s > 0; s /= 2)
#pragma unroll
      for (int j = 0; j < loss_lanes_per_thread; ++j)
        sums.v[j] += __shfl_down_sync(mask, sums.v[j], s, loss_threads_per_patch);
    sums.v[0] += sums.v[2];
    sums.v[1] += sums.v[3];
    sums.v[0] += sums.v[1];
    return __shfl_sync(mask, sums.v[0], 0, loss_threads_per_patch);
  }

  template <typename Lane, typename Quad>
  __device__ void each(Lane&&, Quad&& f) {
    f(q);
  }
};

__device__ inline device_group group_of_thread(quad_loads loads) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int first = lane - lane % loss_threads_per_patch;
  return device_group{lane % loss_threads_per_patch, 0xFFu << first, loads};
}

// Forward, pass 1: a group of 8 threads per patch writes c * err to per_patch[i]. A non-finite
// target patch the loss reads, and under nonfinite "error" a non-finite patch loss, is recorded in
// the device's error slot (device_checks.cuh), raised later with finish_loss's message; the kernel
// goes on (the loss then holds the non-finite value).
template <typename Acc, typename P, typename T>
__global__ void __launch_bounds__(loss_block_threads)
    patch_losses_kernel(const loss_inputs<Acc, P, T> in, std::int64_t count, Acc* per_patch,
                        const quad_loads loads, const error_sink errors) {
  device_group warp = group_of_thread(loads);
  const int group = static_cast<int>(threadIdx.x / loss_threads_per_patch);
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * loss_patches_per_block;
  for (std::int64_t i = first_patch_of_group(blockIdx.x, group); i < count; i += step) {
    const warp_patch_result<Acc> r = warp_patch_loss(in, i, warp);
    if (warp.q != 0) continue;
    loss_fault fault = r.target_finite ? loss_fault::none : loss_fault::target;
    if (fault == loss_fault::none && in.options.nonfinite == nonfinite_policy::error)
      fault = steps::patch_loss_fault(in, i, r.loss);
    if (fault != loss_fault::none) {
      const loss_data_error bad = patch_data_error(in, fault, i);
      record_data_error(errors, bad.key, bad.error);
    }
    per_patch[i] = r.loss;
  }
}

// The halving tree of the block's 256 values a[threadIdx.x], in shared memory; thread 0 ends
// with the total in a[0].
template <typename Acc>
__device__ inline void block_halving_tree(Acc* a) {
  __syncthreads();
#pragma unroll
  for (int stride = loss_chunk / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) steps::halving_step(a, stride, threadIdx.x);
    __syncthreads();
  }
}

// Pass 2: block k adds chunk k of the per-patch losses (when given) and of the coefficients
// c = mask * weight, each zero-padded, by the halving tree.
template <typename Acc>
__global__ void __launch_bounds__(loss_chunk)
    chunk_totals_kernel(const Acc* per_patch, const std::uint8_t* mask, const Acc* weight,
                        std::int64_t count, Acc* chunk_losses, Acc* chunk_coefficients) {
  __shared__ Acc losses[loss_chunk];
  __shared__ Acc coefficients[loss_chunk];
  const std::int64_t i = chunk_member(blockIdx.x, threadIdx.x);
  coefficients[threadIdx.x] = i < count ? steps::patch_coefficient(mask, weight, i) : Acc(0);
  if (per_patch) losses[threadIdx.x] = i < count ? per_patch[i] : Acc(0);
  block_halving_tree(coefficients);
  if (per_patch) block_halving_tree(losses);
  if (threadIdx.x != 0) return;
  chunk_coefficients[blockIdx.x] = coefficients[0];
  if (per_patch) chunk_losses[blockIdx.x] = losses[0];
}

// The levels above the chunks, one block (host_finish_levels is its host stand-in): chunk k of
// a level, zero-padded, is added by the halving tree and stored at values[k] in place.
template <typename Acc>
__device__ inline Acc finish_levels(Acc* values, std::int64_t m, Acc* a) {
  if (m == 0) return Acc(0);  // no patches: the core's ordered_total of nothing
  while (m > 1) {
    const std::int64_t chunks = chunk_count(m);
    for (std::int64_t k = 0; k < chunks; ++k) {
      const std::int64_t at = chunk_member(k, threadIdx.x);
      a[threadIdx.x] = at < m ? values[at] : Acc(0);
      block_halving_tree(a);
      if (threadIdx.x == 0) values[k] = a[0];
      __syncthreads();  // values[k] is written before the next level reads it
    }
    __syncthreads();
    m = chunks;
  }
  return values[0];
}

// Pass 3, one block: the totals of the chunk totals; out = losses / denominator, or the
// denominator alone when `chunk_losses` is null. With `check_finite` (nonfinite "error"), a
// non-finite reduced loss of finite patch losses (their sum overflows; mean's 0/0 of nothing
// masked excepted, as on the CPU: reduced_loss_overflows) is recorded in the error slot with
// the CPU's words (reduced_loss_overflow_error); the value is still written. A non-finite
// patch loss has been recorded by the patch kernel, under a smaller key, so this is skipped then.
template <typename Acc>
__global__ void __launch_bounds__(loss_chunk)
    finish_kernel(Acc* chunk_losses, Acc* chunk_coefficients, std::int64_t chunks,
                  const Acc* per_patch, std::int64_t count, loss_reduction reduction,
                  bool check_finite, Acc* out, const error_sink errors) {
  __shared__ Acc a[loss_chunk];
  const Acc coefficients = finish_levels(chunk_coefficients, chunks, a);
  const Acc losses = chunk_losses ? finish_levels(chunk_losses, chunks, a) : Acc(0);
  const Acc denominator = steps::loss_denominator(reduction, coefficients);
  const Acc value = chunk_losses ? losses / denominator : denominator;
  // The same in every thread of the block: the scan below is a block-wide vote.
  const bool suspicious =
      check_finite && chunk_losses && reduced_loss_overflows(reduction, coefficients, value);
  bool bad_patch = false;
  if (suspicious)
    for (std::int64_t k = threadIdx.x; k < count; k += loss_chunk)
      bad_patch = bad_patch || !detail::finite_value(per_patch[k]);
  bad_patch = __syncthreads_or(bad_patch) != 0;
  if (threadIdx.x != 0) return;
  out[0] = value;
  if (suspicious && !bad_patch)
    record_data_error(errors, steps::data_error_key(reduced_loss_error_phase, 0),
                      reduced_loss_overflow_error<Acc>());
}

// Backward: a group per patch writes the patch's gradient (every element of grad_pred).
template <typename Acc, typename P, typename T>
__global__ void __launch_bounds__(loss_block_threads)
    patch_gradients_kernel(const loss_inputs<Acc, P, T> in, std::int64_t count, const Acc* grad_out,
                           const Acc* denominator, P* grad, const patch_strides gs,
                           const quad_loads loads) {
  device_group warp = group_of_thread(loads);
  const int group = static_cast<int>(threadIdx.x / loss_threads_per_patch);
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * loss_patches_per_block;
  const Acc d = denominator[0];
  for (std::int64_t i = first_patch_of_group(blockIdx.x, group); i < count; i += step)
    warp_patch_gradient(in, grad_out, d, grad, gs, i, warp);
}

template <typename Acc_, typename P_, typename T_>
struct loss_types {
  using Acc = Acc_;
  using P = P_;
  using T = T_;
};

// The supported pairs, one instantiation each.
template <typename Body>
bool with_loss_types(float_type pred, float_type target, Body&& body) {
  using f = float_type;
  if (pred == f::float32 && target == f::float32)
    body(loss_types<float, float, float>{});
  else if (pred == f::float64 && target == f::float64)
    body(loss_types<double, double, double>{});
  else if (pred == f::float16 && target == f::float16)
    body(loss_types<float, __half, __half>{});
  else if (pred == f::bfloat16 && target == f::bfloat16)
    body(loss_types<float, __nv_bfloat16, __nv_bfloat16>{});
  else if (pred == f::float16 && target == f::float32)
    body(loss_types<float, __half, float>{});
  else if (pred == f::bfloat16 && target == f::float32)
    body(loss_types<float, __nv_bfloat16, float>{});
  else
    return false;
  return true;
}

template <typename Types>
loss_inputs<typename Types::Acc, typename Types::P, typename Types::T> inputs_of(
    const loss_call_view& call) {
  loss_inputs<typename Types::Acc, typename Types::P, typename Types::T> in;
  in.geometry = call.geometry;
  in.batch = call.batch;
  in.pred = static_cast<const typename Types::P*>(call.pred);
  in.pred_strides = call.pred_strides;
  in.target = static_cast<const typename Types::T*>(call.target);
  in.target_strides = call.target_strides;
  in.mask = call.mask;
  in.weight = static_cast<const typename Types::Acc*>(call.weight);
  in.options = call.options;
  return in;
}

std::int64_t patch_count(const loss_call_view& call) {
  return call.batch * call.geometry.grid.num_patches();
}

// Chunks of 256 per-patch values (the blocks of the chunk kernel).
std::int64_t chunks_of(const loss_call_view& call) { return chunk_count(patch_count(call)); }

// Blocks of the group-per-patch kernels: 32 patches each, the rest by a grid-stride loop.
unsigned int patch_blocks(const loss_call_view& call) {
  return blocks_for(patch_count(call), loss_patches_per_block);
}

// Which of the call's tensors the groups read (write) as float4 (quad_vector_loads).
template <typename Types>
quad_loads quad_loads_of(const loss_call_view& call, const void* grad, const patch_strides* gs) {
  quad_loads loads;
  loads.pred = quad_vector_loads(static_cast<const typename Types::P*>(call.pred),
                                 call.pred_strides, call.geometry);
  loads.target = quad_vector_loads(static_cast<const typename Types::T*>(call.target),
                                   call.target_strides, call.geometry);
  loads.grad =
      gs && quad_vector_loads(static_cast<const typename Types::P*>(grad), *gs, call.geometry);
  return loads;
}

struct loss_workspace {
  void* per_patch;
  void* chunk_losses;
  void* chunk_coefficients;
  void* denominator;
  std::size_t total;
};

// Sized for double values, so one layout serves both accumulation types.
loss_workspace lay_out(const loss_call_view& call, void* base) {
  workspace_carver carve(base);
  loss_workspace w{};
  w.per_patch = carve.take<double>(patch_count(call));
  w.chunk_losses = carve.take<double>(chunks_of(call));
  w.chunk_coefficients = carve.take<double>(chunks_of(call));
  w.denominator = carve.take<double>(1);
  w.total = carve.used();
  return w;
}

void validate_call(const loss_call_view& call) {
  detail::require(call.batch >= 0, "batch", call.batch, "must not be negative");
  detail::require(call.mask != nullptr, "mask", "null", "is required");
  detail::require(loss_types_supported(call.pred_type, call.target_type), "pred/target types",
                  static_cast<int>(call.pred_type) * 10 + static_cast<int>(call.target_type),
                  "must be equal, or a float16/bfloat16 pred with a float32 target (convert "
                  "other pairs first)");
  detail::require(chunks_of(call) <= 0x7FFFFFFF, "batch * patches", patch_count(call),
                  "is too large for one launch");
  validate_loss_geometry(call.geometry, call.options);
}

}  // namespace

bool loss_types_supported(float_type pred, float_type target) {
  return with_loss_types(pred, target, [](auto) {});
}

std::size_t loss_workspace_bytes(const loss_call_view& call) {
  return lay_out(call, nullptr).total;
}

void masked_recon_loss_async(const loss_call_view& call, void* out, void* workspace,
                             std::size_t workspace_bytes, cudaStream_t stream) {
  validate_call(call);
  require_workspace(workspace_bytes, loss_workspace_bytes(call), "masked_recon_loss_async");
  const loss_workspace w = lay_out(call, workspace);
  const std::int64_t count = patch_count(call);
  const std::int64_t chunks = chunks_of(call);
  const bool per_patch = call.options.reduction == loss_reduction::none;
  const error_sink errors = begin_checked_launch(stream);
  with_loss_types(call.pred_type, call.target_type, [&](auto types) {
    using Types = decltype(types);
    using Acc = typename Types::Acc;
    auto* losses = per_patch ? static_cast<Acc*>(out) : static_cast<Acc*>(w.per_patch);
    auto* chunk_losses = static_cast<Acc*>(w.chunk_losses);
    auto* chunk_coefficients = static_cast<Acc*>(w.chunk_coefficients);
    if (count > 0) {
      patch_losses_kernel<<<patch_blocks(call), loss_block_threads, 0, stream>>>(
          inputs_of<Types>(call), count, losses, quad_loads_of<Types>(call, nullptr, nullptr),
          errors);
      check_launch("patch_losses_kernel");
    }
    if (per_patch) return;
    if (chunks > 0) {
      chunk_totals_kernel<Acc><<<static_cast<unsigned int>(chunks), loss_chunk, 0, stream>>>(
          losses, call.mask, static_cast<const Acc*>(call.weight), count, chunk_losses,
          chunk_coefficients);
      check_launch("chunk_totals_kernel");
    }
    finish_kernel<Acc><<<1, loss_chunk, 0, stream>>>(
        chunk_losses, chunk_coefficients, chunks, losses, count, call.options.reduction,
        call.options.nonfinite == nonfinite_policy::error, static_cast<Acc*>(out), errors);
    check_launch("finish_kernel");
  });
  end_checked_launch(stream);
}

void masked_recon_loss_backward_async(const loss_call_view& call, const void* grad_out,
                                      void* grad_pred, const patch_strides& grad_strides,
                                      void* workspace, std::size_t workspace_bytes,
                                      cudaStream_t stream) {
  validate_call(call);
  require_workspace(workspace_bytes, loss_workspace_bytes(call),
                    "masked_recon_loss_backward_async");
  const loss_workspace w = lay_out(call, workspace);
  const std::int64_t count = patch_count(call);
  const std::int64_t chunks = chunks_of(call);
  if (count == 0) return;
  with_loss_types(call.pred_type, call.target_type, [&](auto types) {
    using Types = decltype(types);
    using Acc = typename Types::Acc;
    auto* chunk_coefficients = static_cast<Acc*>(w.chunk_coefficients);
    auto* denominator = static_cast<Acc*>(w.denominator);
    chunk_totals_kernel<Acc><<<static_cast<unsigned int>(chunks), loss_chunk, 0, stream>>>(
        nullptr, call.mask, static_cast<const Acc*>(call.weight), count, nullptr,
        chunk_coefficients);
    check_launch("chunk_totals_kernel");
    finish_kernel<Acc><<<1, loss_chunk, 0, stream>>>(nullptr, chunk_coefficients, chunks, nullptr,
                                                     count, call.options.reduction, false,
                                                     denominator, error_sink{});
    check_launch("finish_kernel");
    patch_gradients_kernel<<<patch_blocks(call), loss_block_threads, 0, stream>>>(
        inputs_of<Types>(call), count, static_cast<const Acc*>(grad_out), denominator,
        static_cast<typename Types::P*>(grad_pred), grad_strides,
        quad_loads_of<Types>(call, grad_pred, &grad_strides));
    check_launch("patch_gradients_kernel");
  });
}

}  // namespace gpu
}  // namespace mwm
