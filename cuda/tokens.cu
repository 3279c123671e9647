// Sparse tokens: gather / restore (a row per group of lanes, vectorized where aligned) and their
// gradients (one thread per element), with the bodies of token_steps.cuh.
// The backward passes sort each sample's destinations (cub::DeviceSegmentedRadixSort, stable) so
// that every output element adds its sources in the host drivers' order: deterministic, no
// atomics, duplicates in ids_keep handled as the CPU handles them.
#include <cub/device/device_segmented_radix_sort.cuh>

#include <cstdint>
#include <initializer_list>

#include "device_checks.cuh"
#include "element_kernels.cuh"
#include "mwm_cuda.hpp"
#include "token_steps.cuh"

namespace mwm {
namespace gpu {
namespace {

template <int V, typename T>
__global__ void gather_kernel(const T* x, const token_strides xs, const std::int64_t* ids,
                              std::int64_t slots, std::int64_t num_tokens, std::int64_t channels,
                              std::int64_t rows, T* out, const token_strides os,
                              const error_sink errors) {
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
       row < rows; row += static_cast<std::int64_t>(gridDim.x) * blockDim.y) {
    data_error bad;
    const bool ok =
        gather_row_part<V>(x, xs, ids, slots, num_tokens, channels, out, os, row,
                           static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), &bad);
    if (!ok && threadIdx.x == 0) record_data_error(errors, steps::data_error_key(0, row), bad);
  }
}

template <int V, typename T>
__global__ void restore_kernel(const T* x_vis, const token_strides vs,
                               const std::int64_t* ids_restore, const std::int64_t* visible,
                               std::int64_t slots, std::int64_t num_tokens, std::int64_t channels,
                               const T* mask_token, std::int64_t mask_stride, std::int64_t rows,
                               T* out, const token_strides os, const error_sink errors) {
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
       row < rows; row += static_cast<std::int64_t>(gridDim.x) * blockDim.y) {
    data_error bad;
    const int phase = restore_row_part<V>(
        x_vis, vs, ids_restore, visible, slots, num_tokens, channels, mask_token, mask_stride, out,
        os, row, static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), &bad);
    if (phase != none_phase && threadIdx.x == 0)
      record_data_error(errors, restore_error_key(phase, row, row / num_tokens), bad);
  }
}

// Destination keys of the source rows, each sample a segment of `rows` rows; offsets[s] = s*rows.
__global__ void gather_keys_kernel(const std::int64_t* ids, std::int64_t batch, std::int64_t slots,
                                   std::int64_t num_tokens, std::uint32_t* keys,
                                   std::int32_t* sources, std::int32_t* offsets,
                                   const error_sink errors) {
  MWM_FOR_ELEMENTS(e, batch * slots) {
    data_error bad;
    const bool ok = steps::keep_id_in_range(ids[e], e, slots, num_tokens, &bad);
    if (!ok) record_data_error(errors, steps::data_error_key(0, e), bad);
    keys[e] = destination_key(ok ? ids[e] : padding_id);  // a bad id adds nowhere
    sources[e] = static_cast<std::int32_t>(e % slots);
    if (e % slots == 0) offsets[e / slots] = static_cast<std::int32_t>(e);
    if (e == 0) offsets[batch] = static_cast<std::int32_t>(batch * slots);
  }
}

__global__ void restore_keys_kernel(const std::int64_t* ids_restore, const std::int64_t* visible,
                                    std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                                    std::uint32_t* keys, std::int32_t* sources,
                                    std::int32_t* offsets, const error_sink errors) {
  MWM_FOR_ELEMENTS(e, batch * num_tokens) {
    const std::int64_t b = e / num_tokens;
    data_error bad;
    int phase = none_phase;
    if (!steps::restore_id_in_range(ids_restore[e], e, num_tokens, &bad))
      phase = restore_id_phase;
    else if (visible && !steps::visible_count_in_range(visible[b], b, slots, &bad))
      phase = visible_count_phase;
    if (phase != none_phase) record_data_error(errors, restore_error_key(phase, e, b), bad);
    // A bad row counts as a mask-token row: its key stays in range.
    keys[e] =
        destination_key(phase != none_phase ? padding_id
                                            : restore_destination(ids_restore, visible, slots,
                                                                  num_tokens, b, e % num_tokens));
    sources[e] = static_cast<std::int32_t>(e % num_tokens);
    if (e % num_tokens == 0) offsets[b] = static_cast<std::int32_t>(e);
    if (e == 0) offsets[batch] = static_cast<std::int32_t>(batch * num_tokens);
  }
}

__global__ void run_starts_kernel(const std::uint32_t* sorted_keys, std::int64_t batch,
                                  std::int64_t rows, std::int64_t keys, std::int64_t* starts) {
  MWM_FOR_ELEMENTS(e, batch * rows) {
    const std::int64_t position = e % rows;
    const auto previous =
        position > 0 ? static_cast<std::int32_t>(sorted_keys[e - 1]) : std::int32_t(-1);
    mark_group_starts(previous, static_cast<std::int32_t>(sorted_keys[e]), position, rows,
                      static_cast<int>(keys), starts + (e / rows) * (keys + 1));
  }
}

template <typename Acc, typename T>
__global__ void gather_backward_kernel(const T* grad, const token_strides gs,
                                       const std::int32_t* sources, const std::int64_t* starts,
                                       std::int64_t slots, std::int64_t num_tokens,
                                       std::int64_t channels, std::int64_t count, T* grad_x,
                                       const token_strides xs) {
  MWM_FOR_ELEMENTS(e, count) {
    sum_sources_element<Acc>(grad, gs, sources, starts, slots, num_tokens, channels, grad_x, xs, e);
  }
}

template <typename Acc, typename T>
__global__ void restore_backward_kernel(const T* grad, const token_strides gs,
                                        const std::int32_t* sources, const std::int64_t* starts,
                                        std::int64_t slots, std::int64_t num_tokens,
                                        std::int64_t channels, std::int64_t count, T* grad_x_vis,
                                        const token_strides vs) {
  MWM_FOR_ELEMENTS(e, count) {
    sum_sources_element<Acc>(grad, gs, sources, starts, num_tokens, slots, channels, grad_x_vis, vs,
                             e);
  }
}

template <typename Acc, typename T>
__global__ void mask_partials_kernel(const T* grad, const token_strides gs,
                                     const std::int32_t* sources, const std::int64_t* starts,
                                     std::int64_t batch, std::int64_t slots,
                                     std::int64_t num_tokens, std::int64_t channels,
                                     Acc* partials) {
  MWM_FOR_ELEMENTS(e, batch * channels) {
    mask_partial_element(grad, gs, sources, starts, batch, slots, num_tokens, channels, partials,
                         e);
  }
}

template <typename Acc, typename T>
__global__ void mask_gradient_kernel(const Acc* partials, std::int64_t batch, std::int64_t channels,
                                     T* out) {
  MWM_FOR_ELEMENTS(c, channels) { mask_gradient_element(partials, batch, out, c); }
}

// Bits the destination keys [0, keys] need.
int key_bits(std::int64_t keys) {
  int bits = 1;
  while ((std::int64_t(1) << bits) <= keys) ++bits;
  return bits;
}

// V elements per 16-byte vector of T when every row is dense and 16-byte aligned, else 1.
template <typename T>
int row_vector_width(std::int64_t channels, std::initializer_list<const void*> bases,
                     std::initializer_list<token_strides> strides) {
  constexpr int v = static_cast<int>(16 / sizeof(T));
  if (channels % v != 0) return 1;
  for (const void* base : bases)
    if (reinterpret_cast<std::uintptr_t>(base) % 16 != 0) return 1;
  for (const token_strides& s : strides)
    if (s.channel != 1 || s.batch % v != 0 || s.token % v != 0) return 1;
  return v;
}

// Per-sample stable sort of destination keys: the buffers and CUB's scratch.
struct run_layout {
  std::uint32_t* keys[2];
  std::int32_t* sources[2];
  std::int32_t* offsets;
  std::int64_t* starts;
  double* partials;  // restore backward: (C, B) in the accumulation type
  void* sort_storage;
  std::size_t sort_storage_bytes;
  std::size_t total_bytes;
};

run_layout lay_out_runs(std::int64_t batch, std::int64_t rows, std::int64_t keys,
                        std::int64_t partials, void* base) {
  detail::require(batch * rows <= 0x7FFFFFFF, "batch * rows", batch * rows,
                  "must stay below 2^31 for the CUDA token gradients (split the batch)");
  run_layout l{};
  workspace_carver carve(base);
  for (auto& k : l.keys) k = carve.take<std::uint32_t>(batch * rows);
  for (auto& s : l.sources) s = carve.take<std::int32_t>(batch * rows);
  l.offsets = carve.take<std::int32_t>(batch + 1);
  l.starts = carve.take<std::int64_t>(batch * (keys + 1));
  l.partials = carve.take<double>(partials);
  CUB_NS_QUALIFIER::DoubleBuffer<std::uint32_t> k(nullptr, nullptr);
  CUB_NS_QUALIFIER::DoubleBuffer<std::int32_t> v(nullptr, nullptr);
  const std::int32_t* offsets = nullptr;
  check_cuda(CUB_NS_QUALIFIER::DeviceSegmentedRadixSort::SortPairs(
                 nullptr, l.sort_storage_bytes, k, v, static_cast<int>(batch * rows),
                 static_cast<int>(batch), offsets, offsets + 1),
             "DeviceSegmentedRadixSort (size query)");
  l.sort_storage = carve.take_bytes(l.sort_storage_bytes);
  l.total_bytes = carve.used();
  return l;
}

// Sorts the keys the key kernel wrote into l.keys[0] / l.sources[0]; returns the sorted sources
// and fills l.starts (null when there are no rows).
const std::int32_t* sort_runs(run_layout& l, std::int64_t batch, std::int64_t rows,
                              std::int64_t keys, const std::int64_t** starts, cudaStream_t stream) {
  CUB_NS_QUALIFIER::DoubleBuffer<std::uint32_t> k(l.keys[0], l.keys[1]);
  CUB_NS_QUALIFIER::DoubleBuffer<std::int32_t> v(l.sources[0], l.sources[1]);
  check_cuda(CUB_NS_QUALIFIER::DeviceSegmentedRadixSort::SortPairs(
                 l.sort_storage, l.sort_storage_bytes, k, v, static_cast<int>(batch * rows),
                 static_cast<int>(batch), l.offsets, l.offsets + 1, 0, key_bits(keys), stream),
             "DeviceSegmentedRadixSort (token destinations)");
  run_starts_kernel<<<blocks_for(batch * rows, element_threads), element_threads, 0, stream>>>(
      k.Current(), batch, rows, keys, l.starts);
  check_launch("run_starts_kernel");
  *starts = l.starts;
  return v.Current();
}

void require_token_shape(std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                         std::int64_t channels) {
  detail::require(batch >= 0, "batch", batch, "must not be negative");
  detail::require(slots >= 0, "slots", slots, "must not be negative");
  detail::require(num_tokens >= 0, "num_tokens", num_tokens, "must not be negative");
  detail::require(channels >= 0, "channels", channels, "must not be negative");
}

}  // namespace

void gather_tokens_async(float_type type, const void* x, const token_strides& xs,
                         const std::int64_t* ids_keep, std::int64_t batch, std::int64_t slots,
                         std::int64_t num_tokens, std::int64_t channels, void* out,
                         const token_strides& os, cudaStream_t stream) {
  require_token_shape(batch, slots, num_tokens, channels);
  const std::int64_t rows = batch * slots;
  if (rows * channels == 0) return;
  const error_sink errors = begin_checked_launch(stream);
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    const int v = row_vector_width<T>(channels, {x, out}, {xs, os});
    const row_launch plan = plan_row_launch(rows, channels, v);
    const dim3 threads(plan.lanes, plan.rows_per_block);
    auto launch = [&](auto kernel) {
      kernel<<<plan.blocks, threads, 0, stream>>>(static_cast<const T*>(x), xs, ids_keep, slots,
                                                  num_tokens, channels, rows, static_cast<T*>(out),
                                                  os, errors);
    };
    constexpr int vector = static_cast<int>(16 / sizeof(T));
    if (v == vector)
      launch(gather_kernel<vector, T>);
    else
      launch(gather_kernel<1, T>);
    check_launch("gather_kernel");
  });
  end_checked_launch(stream);
}

std::size_t gather_tokens_backward_workspace_bytes(std::int64_t batch, std::int64_t slots,
                                                   std::int64_t num_tokens) {
  if (batch * slots == 0) return 0;
  return lay_out_runs(batch, slots, num_tokens + 1, 0, nullptr).total_bytes;
}

void gather_tokens_backward_async(float_type type, const void* grad, const token_strides& gs,
                                  const std::int64_t* ids_keep, std::int64_t batch,
                                  std::int64_t slots, std::int64_t num_tokens,
                                  std::int64_t channels, void* grad_x, const token_strides& xs,
                                  void* workspace, std::size_t workspace_bytes,
                                  cudaStream_t stream) {
  require_token_shape(batch, slots, num_tokens, channels);
  require_workspace(workspace_bytes,
                    gather_tokens_backward_workspace_bytes(batch, slots, num_tokens),
                    "gather_tokens_backward_async");
  const std::int64_t count = batch * num_tokens * channels;
  if (count == 0) return;
  const error_sink errors = begin_checked_launch(stream);
  const std::int32_t* sources = nullptr;
  const std::int64_t* starts = nullptr;
  if (batch * slots > 0) {
    run_layout l = lay_out_runs(batch, slots, num_tokens + 1, 0, workspace);
    gather_keys_kernel<<<blocks_for(batch * slots, element_threads), element_threads, 0, stream>>>(
        ids_keep, batch, slots, num_tokens, l.keys[0], l.sources[0], l.offsets, errors);
    check_launch("gather_keys_kernel");
    sources = sort_runs(l, batch, slots, num_tokens + 1, &starts, stream);
  }
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    using Acc = typename accumulate_of<T>::type;
    gather_backward_kernel<Acc><<<blocks_for(count, element_threads), element_threads, 0, stream>>>(
        static_cast<const T*>(grad), gs, sources, starts, slots, num_tokens, channels, count,
        static_cast<T*>(grad_x), xs);
    check_launch("gather_backward_kernel");
  });
  end_checked_launch(stream);
}

void restore_tokens_async(float_type type, const void* x_vis, const token_strides& vs,
                          const std::int64_t* ids_restore, const std::int64_t* visible,
                          std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                          std::int64_t channels, const void* mask_token, std::int64_t mask_stride,
                          void* out, const token_strides& os, cudaStream_t stream) {
  require_token_shape(batch, slots, num_tokens, channels);
  const std::int64_t rows = batch * num_tokens;
  if (rows * channels == 0) return;
  const error_sink errors = begin_checked_launch(stream);
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    const token_strides mask_rows{0, 0, mask_stride};
    const int v = row_vector_width<T>(channels, {x_vis, out, mask_token}, {vs, os, mask_rows});
    const row_launch plan = plan_row_launch(rows, channels, v);
    const dim3 threads(plan.lanes, plan.rows_per_block);
    auto launch = [&](auto kernel) {
      kernel<<<plan.blocks, threads, 0, stream>>>(
          static_cast<const T*>(x_vis), vs, ids_restore, visible, slots, num_tokens, channels,
          static_cast<const T*>(mask_token), mask_stride, rows, static_cast<T*>(out), os, errors);
    };
    constexpr int vector = static_cast<int>(16 / sizeof(T));
    if (v == vector)
      launch(restore_kernel<vector, T>);
    else
      launch(restore_kernel<1, T>);
    check_launch("restore_kernel");
  });
  end_checked_launch(stream);
}

std::size_t restore_tokens_backward_workspace_bytes(std::int64_t batch, std::int64_t slots,
                                                    std::int64_t num_tokens,
                                                    std::int64_t channels) {
  if (batch * num_tokens == 0) return 0;
  return lay_out_runs(batch, num_tokens, slots + 1, batch * channels, nullptr).total_bytes;
}

void restore_tokens_backward_async(float_type type, const void* grad, const token_strides& gs,
                                   const std::int64_t* ids_restore, const std::int64_t* visible,
                                   std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                                   std::int64_t channels, void* grad_x_vis, const token_strides& vs,
                                   void* grad_mask_token, void* workspace,
                                   std::size_t workspace_bytes, cudaStream_t stream) {
  require_token_shape(batch, slots, num_tokens, channels);
  require_workspace(workspace_bytes,
                    restore_tokens_backward_workspace_bytes(batch, slots, num_tokens, channels),
                    "restore_tokens_backward_async");
  if (channels == 0) return;
  const error_sink errors = begin_checked_launch(stream);
  const std::int32_t* sources = nullptr;
  const std::int64_t* starts = nullptr;
  double* partials = nullptr;
  if (batch * num_tokens > 0) {
    run_layout l = lay_out_runs(batch, num_tokens, slots + 1, batch * channels, workspace);
    restore_keys_kernel<<<blocks_for(batch * num_tokens, element_threads), element_threads, 0,
                          stream>>>(ids_restore, visible, batch, slots, num_tokens, l.keys[0],
                                    l.sources[0], l.offsets, errors);
    check_launch("restore_keys_kernel");
    sources = sort_runs(l, batch, num_tokens, slots + 1, &starts, stream);
    partials = l.partials;
  }
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    using Acc = typename accumulate_of<T>::type;
    const std::int64_t count = batch * slots * channels;
    if (count > 0) {
      restore_backward_kernel<Acc>
          <<<blocks_for(count, element_threads), element_threads, 0, stream>>>(
              static_cast<const T*>(grad), gs, sources, starts, slots, num_tokens, channels, count,
              static_cast<T*>(grad_x_vis), vs);
      check_launch("restore_backward_kernel");
    }
    auto* acc_partials = reinterpret_cast<Acc*>(partials);
    if (batch * channels > 0 && acc_partials) {
      mask_partials_kernel<<<blocks_for(batch * channels, element_threads), element_threads, 0,
                             stream>>>(static_cast<const T*>(grad), gs, sources, starts, batch,
                                       slots, num_tokens, channels, acc_partials);
      check_launch("mask_partials_kernel");
    }
    mask_gradient_kernel<<<blocks_for(channels, element_threads), element_threads, 0, stream>>>(
        acc_partials, acc_partials ? batch : 0, channels, static_cast<T*>(grad_mask_token));
    check_launch("mask_gradient_kernel");
  });
  end_checked_launch(stream);
}

}  // namespace gpu
}  // namespace mwm
