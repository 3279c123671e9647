// The fused masked reconstruction loss: one thread per patch through the core's per-patch
// functions (loss_steps.cuh), partial sums per block with cub::BlockReduce, and a one-block
// second pass that adds the partials in a fixed order. The backward writes grad_pred only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cub/block/block_reduce.cuh>

#include "device_checks.cuh"
#include "loss_steps.cuh"
#include "mwm_cuda.hpp"

namespace mwm {
namespace gpu {
namespace {

constexpr int loss_threads = 256;

template <typename Acc>
using block_sum = CUB_NS_QUALIFIER::BlockReduce<Acc, loss_threads>;

__device__ inline void fail_non_finite_target(std::int64_t index, std::int64_t n) {
  printf("mwm: target has a non-finite value (NaN or Inf) in sample %lld, patch %lld, which the "
         "loss reads (a masked patch)\n",
         static_cast<long long>(index / n), static_cast<long long>(index % n));
  __trap();
}

// The device side of finish_loss's report (nonfinite "error"): the same words as the CPU path.
__device__ inline void fail_loss_fault(loss_fault fault, std::int64_t index, std::int64_t n) {
  const char* what = fault == loss_fault::weight ? "weight is not finite (NaN or Inf)"
                     : fault == loss_fault::pred ? "pred has a non-finite value (NaN or Inf)"
                                                 : "the loss overflows (finite inputs)";
  printf("mwm: %s in sample %lld, patch %lld, which the loss reads (a masked patch); nonfinite = "
         "\"propagate\" returns the non-finite loss instead\n",
         what, static_cast<long long>(index / n), static_cast<long long>(index % n));
  __trap();
}

// Pass 1 of the forward: c * err per patch (kept for reduction none) and per-block sums of the
// losses and of the coefficients. Under nonfinite "error", a non-finite patch loss traps.
template <typename Acc, typename P, typename T>
__global__ void __launch_bounds__(loss_threads)
    patch_losses_kernel(const loss_inputs<Acc, P, T> in, std::int64_t count, Acc* per_patch,
                        Acc* block_losses, Acc* block_coefficients) {
  __shared__ typename block_sum<Acc>::TempStorage storage[2];
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * loss_threads + threadIdx.x;
  Acc coefficient = Acc(0);
  Acc loss = Acc(0);
  if (i < count) {
    if (!patch_loss_at(in, i, &coefficient, &loss))
      fail_non_finite_target(i, in.geometry.grid.num_patches());
    if (in.options.nonfinite == nonfinite_policy::error) {
      const loss_fault fault = patch_loss_fault(in, i, loss);
      if (fault != loss_fault::none) fail_loss_fault(fault, i, in.geometry.grid.num_patches());
    }
    if (per_patch) per_patch[i] = loss;
  }
  if (block_losses == nullptr) return;  // the same for every thread of the block
  const Acc losses = block_sum<Acc>(storage[0]).Sum(loss);
  const Acc coefficients = block_sum<Acc>(storage[1]).Sum(coefficient);
  if (threadIdx.x == 0) {
    block_losses[blockIdx.x] = losses;
    block_coefficients[blockIdx.x] = coefficients;
  }
}

// Pass 1 of the backward: per-block sums of the coefficients (the denominator's sum(c)).
template <typename Acc>
__global__ void __launch_bounds__(loss_threads)
    coefficients_kernel(const std::uint8_t* mask, const Acc* weight, std::int64_t count,
                        Acc* block_coefficients) {
  __shared__ typename block_sum<Acc>::TempStorage storage;
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * loss_threads + threadIdx.x;
  const Acc c = i < count ? patch_coefficient(mask, weight, i) : Acc(0);
  const Acc total = block_sum<Acc>(storage).Sum(c);
  if (threadIdx.x == 0) block_coefficients[blockIdx.x] = total;
}

// Pass 2, one block: thread t adds partials t, t + 256, ... in order, then one BlockReduce.
// out = losses / denominator, or the denominator alone when `block_losses` is null. With
// `check_finite` (nonfinite "error"), a non-finite reduced loss traps, except mean's 0/0 when
// sum(mask * weight) == 0 (the patch kernel has already trapped on a non-finite patch loss).
template <typename Acc>
__global__ void __launch_bounds__(loss_threads)
    finish_kernel(const Acc* block_losses, const Acc* block_coefficients, std::int64_t blocks,
                  loss_reduction reduction, bool check_finite, Acc* out) {
  __shared__ typename block_sum<Acc>::TempStorage storage[2];
  Acc losses = Acc(0);
  Acc coefficients = Acc(0);
  for (std::int64_t k = threadIdx.x; k < blocks; k += loss_threads) {
    if (block_losses) losses += block_losses[k];
    coefficients += block_coefficients[k];
  }
  losses = block_sum<Acc>(storage[0]).Sum(losses);
  coefficients = block_sum<Acc>(storage[1]).Sum(coefficients);
  if (threadIdx.x != 0) return;
  const Acc denominator = loss_denominator(reduction, coefficients);
  out[0] = block_losses ? losses / denominator : denominator;
  if (check_finite && block_losses && !detail::finite_value(out[0]) &&
      !(reduction == loss_reduction::mean && coefficients == Acc(0))) {
    printf("mwm: the reduced loss overflows (every patch's loss is finite, their sum is not); "
           "nonfinite = \"propagate\" returns the non-finite loss instead\n");
    __trap();
  }
}

template <typename Acc, typename P, typename T>
__global__ void __launch_bounds__(loss_threads)
    patch_gradients_kernel(const loss_inputs<Acc, P, T> in, std::int64_t count,
                           const Acc* grad_out, const Acc* denominator, P* grad,
                           const patch_strides gs) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * loss_threads + threadIdx.x;
  if (i < count) patch_gradient_at(in, grad_out, denominator[0], grad, gs, i);
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
  if (pred == f::float32 && target == f::float32) body(loss_types<float, float, float>{});
  else if (pred == f::float64 && target == f::float64) body(loss_types<double, double, double>{});
  else if (pred == f::float16 && target == f::float16) body(loss_types<float, __half, __half>{});
  else if (pred == f::bfloat16 && target == f::bfloat16)
    body(loss_types<float, __nv_bfloat16, __nv_bfloat16>{});
  else if (pred == f::float16 && target == f::float32) body(loss_types<float, __half, float>{});
  else if (pred == f::bfloat16 && target == f::float32)
    body(loss_types<float, __nv_bfloat16, float>{});
  else return false;
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

std::int64_t block_count(const loss_call_view& call) {
  return (patch_count(call) + loss_threads - 1) / loss_threads;
}

struct loss_workspace {
  void* block_losses;
  void* block_coefficients;
  void* denominator;
  std::size_t total;
};

// Sized for double partials, so one layout serves both accumulation types.
loss_workspace lay_out(const loss_call_view& call, void* base) {
  workspace_carver carve(base);
  loss_workspace w{};
  w.block_losses = carve.take<double>(block_count(call));
  w.block_coefficients = carve.take<double>(block_count(call));
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
  detail::require(block_count(call) <= 0x7FFFFFFF, "batch * patches", patch_count(call),
                  "is too large for one launch");
  validate_loss_geometry(call.geometry, call.options);
}

}  // namespace

bool loss_types_supported(float_type pred, float_type target) {
  return with_loss_types(pred, target, [](auto) {});
}

std::size_t loss_workspace_bytes(const loss_call_view& call) { return lay_out(call, nullptr).total; }

void masked_recon_loss_async(const loss_call_view& call, void* out, void* workspace,
                             std::size_t workspace_bytes, cudaStream_t stream) {
  validate_call(call);
  require_workspace(workspace_bytes, loss_workspace_bytes(call), "masked_recon_loss_async");
  const loss_workspace w = lay_out(call, workspace);
  const std::int64_t count = patch_count(call);
  const std::int64_t blocks = block_count(call);
  const bool per_patch = call.options.reduction == loss_reduction::none;
  with_loss_types(call.pred_type, call.target_type, [&](auto types) {
    using Types = decltype(types);
    using Acc = typename Types::Acc;
    auto* block_losses = static_cast<Acc*>(w.block_losses);
    auto* block_coefficients = static_cast<Acc*>(w.block_coefficients);
    if (count > 0) {
      patch_losses_kernel<<<static_cast<unsigned int>(blocks), loss_threads, 0, stream>>>(
          inputs_of<Types>(call), count, per_patch ? static_cast<Acc*>(out) : nullptr,
          per_patch ? nullptr : block_losses, block_coefficients);
      check_launch("patch_losses_kernel");
    }
    if (!per_patch) {
      finish_kernel<Acc><<<1, loss_threads, 0, stream>>>(
          block_losses, block_coefficients, blocks, call.options.reduction,
          call.options.nonfinite == nonfinite_policy::error, static_cast<Acc*>(out));
      check_launch("finish_kernel");
    }
  });
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
  const std::int64_t blocks = block_count(call);
  if (count == 0) return;
  with_loss_types(call.pred_type, call.target_type, [&](auto types) {
    using Types = decltype(types);
    using Acc = typename Types::Acc;
    auto* block_coefficients = static_cast<Acc*>(w.block_coefficients);
    auto* denominator = static_cast<Acc*>(w.denominator);
    coefficients_kernel<Acc><<<static_cast<unsigned int>(blocks), loss_threads, 0, stream>>>(
        call.mask, static_cast<const Acc*>(call.weight), count, block_coefficients);
    check_launch("coefficients_kernel");
    finish_kernel<Acc><<<1, loss_threads, 0, stream>>>(nullptr, block_coefficients, blocks,
                                                       call.options.reduction, false,
                                                       denominator);
    check_launch("finish_kernel");
    patch_gradients_kernel<<<static_cast<unsigned int>(blocks), loss_threads, 0, stream>>>(
        inputs_of<Types>(call), count, static_cast<const Acc*>(grad_out), denominator,
        static_cast<typename Types::P*>(grad_pred), grad_strides);
    check_launch("patch_gradients_kernel");
  });
}

}  // namespace gpu
}  // namespace mwm
