// Patch maps on the device: heatmap pooling, regions (thresholds, quantiles), upsampling. The
// per-element bodies are in map_steps.cuh (tested on the host against the core's drivers).
#include <cub/block/block_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "device_checks.cuh"
#include "element_kernels.cuh"
#include "map_steps.cuh"
#include "mwm_cuda.hpp"

namespace mwm {
namespace gpu {
namespace {

// The CPU path rejects any NaN or infinity in the heatmaps, also where `nearest` pooling does
// not read, so every value is checked (after the prompt weights, as the CPU checks them).
constexpr int heatmaps_phase = 1;

__global__ void check_heatmaps_kernel(const float* heatmaps, std::int64_t count,
                                      const error_sink errors) {
  MWM_FOR_ELEMENTS(e, count) {
    checked_value(heatmaps, e, nan_policy::error, data_argument::heatmaps, errors, heatmaps_phase);
  }
}

__global__ void pool_kernel(const float* heatmaps, heatmap_shape shape, grid_shape grid,
                            pool_options options, std::int64_t count, float* out) {
  MWM_FOR_ELEMENTS(e, count) { out[e] = pool_prompt_patch(heatmaps, shape, grid, options, e); }
}

__global__ void combine_kernel(const float* per_prompt, std::int64_t prompts, std::int64_t n,
                               prompt_combine mode, prompt_weight_values given, std::int64_t count,
                               float* scores) {
  const float* weights = given.device != nullptr ? given.device : given.by_value.values;
  MWM_FOR_ELEMENTS(e, count) {
    scores[e] = combine_sample_patch(per_prompt, prompts, n, mode, weights, e);
  }
}

__global__ void thresholds_kernel(const float* scores, std::int64_t count,
                                  host_values<float> thresholds, nan_policy non_finite,
                                  std::int32_t* regions, const error_sink errors) {
  MWM_FOR_ELEMENTS(e, count) {
    const float v = checked_value(scores, e, non_finite, data_argument::scores, errors);
    regions[e] = steps::region_of_score(v, thresholds.values, thresholds.count);
  }
}

// Quantile regions of one sample per block: rank sort, then region_of_rank.
template <int Threads, int Items>
__global__ void __launch_bounds__(Threads)
    quantiles_in_block_kernel(const float* scores, std::int64_t n,
                              host_values<std::int64_t> top_counts, nan_policy non_finite,
                              std::int32_t* regions, const error_sink errors) {
  using sort = CUB_NS_QUALIFIER::BlockRadixSort<std::uint32_t, Threads, Items, std::int32_t>;
  __shared__ typename sort::TempStorage storage;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * n;
  std::uint32_t keys[Items];
  std::int32_t cells[Items];
  for (int j = 0; j < Items; ++j) {
    const int i = static_cast<int>(threadIdx.x) * Items + j;
    cells[j] = i;
    keys[j] = i < n ? quantile_sort_key(
                          checked_value(scores, row + i, non_finite, data_argument::scores, errors))
                    : ~std::uint32_t(0);
  }
  sort(storage).Sort(keys, cells);
  for (int j = 0; j < Items; ++j) {
    const int rank = static_cast<int>(threadIdx.x) * Items + j;
    if (rank < n) {
      regions[row + cells[j]] = region_of_rank(rank, top_counts.values, top_counts.count);
    }
  }
}

__global__ void quantile_keys_kernel(const float* scores, std::int64_t n, std::int64_t count,
                                     nan_policy non_finite, std::uint32_t* keys,
                                     std::int32_t* cells, std::int32_t* offsets,
                                     std::int64_t segments, const error_sink errors) {
  MWM_FOR_ELEMENTS(e, count) {
    keys[e] =
        quantile_sort_key(checked_value(scores, e, non_finite, data_argument::scores, errors));
    cells[e] = static_cast<std::int32_t>(e % n);
    if (e % n == 0) offsets[e / n] = static_cast<std::int32_t>(e);
    if (e == 0) offsets[segments] = static_cast<std::int32_t>(count);
  }
}

__global__ void quantile_regions_kernel(std::int64_t n, std::int64_t count,
                                        const std::int32_t* ranked_cells,
                                        host_values<std::int64_t> top_counts,
                                        std::int32_t* regions) {
  MWM_FOR_ELEMENTS(e, count) {
    regions[e - e % n + ranked_cells[e]] =
        region_of_rank(e % n, top_counts.values, top_counts.count);
  }
}

__global__ void upsample_kernel(const std::uint8_t* values, grid_shape grid, std::int64_t fd,
                                std::int64_t fh, std::int64_t fw, bool invert, std::int64_t count,
                                std::uint8_t* out) {
  MWM_FOR_ELEMENTS(e, count) { out[e] = upsampled_element(values, grid, fd, fh, fw, invert, e); }
}

__global__ void check_weights_kernel(const float* weights, std::int64_t count,
                                     const error_sink errors) {
  MWM_FOR_ELEMENTS(e, count) {
    if (!detail::is_finite_value(weights[e])) {
      record_data_error(errors, steps::data_error_key(0, e),
                        steps::real_data_error(data_error_code::prompt_weight,
                                               data_argument::scores, e, 0, weights[e]));
    }
  }
}

// Quantiles: the segmented path sorts the whole batch at once when it fits CUB's int counts.
struct quantile_layout {
  std::uint32_t* keys[2];
  std::int32_t* cells[2];
  std::int32_t* offsets;
  void* sort_storage;
  std::size_t sort_storage_bytes;
  std::size_t total_bytes;
};

quantile_layout lay_out_quantiles(std::int64_t batch, std::int64_t n, void* base) {
  quantile_layout l{};
  workspace_carver carve(base);
  for (auto& k : l.keys) k = carve.take<std::uint32_t>(batch * n);
  for (auto& c : l.cells) c = carve.take<std::int32_t>(batch * n);
  l.offsets = carve.take<std::int32_t>(batch + 1);
  CUB_NS_QUALIFIER::DoubleBuffer<std::uint32_t> keys(nullptr, nullptr);
  CUB_NS_QUALIFIER::DoubleBuffer<std::int32_t> cells(nullptr, nullptr);
  const std::int32_t* offsets = nullptr;
  check_cuda(CUB_NS_QUALIFIER::DeviceSegmentedRadixSort::SortPairs(
                 nullptr, l.sort_storage_bytes, keys, cells, static_cast<int>(batch * n),
                 static_cast<int>(batch), offsets, offsets + 1),
             "DeviceSegmentedRadixSort (size query)");
  l.sort_storage = carve.take_bytes(l.sort_storage_bytes);
  l.total_bytes = carve.used();
  return l;
}

}  // namespace

std::size_t patch_scores_workspace_bytes(const pooling_request& request) {
  const std::int64_t per_prompt = request.batch * request.prompts * request.grid.num_patches();
  workspace_carver carve(nullptr);
  if (pooling_needs_combine(request.prompts, request.combine)) carve.take<float>(per_prompt);
  return carve.used();
}

void patch_scores_async(const pooling_request& request, const float* heatmaps,
                        const prompt_weight_values& prompt_weights, float* scores, void* workspace,
                        std::size_t workspace_bytes, cudaStream_t stream) {
  detail::require(request.batch > 0, "batch", request.batch, "must be positive");
  detail::require(request.prompts > 0, "prompts", request.prompts, "must be positive");
  validate_heatmap_shape(request.shape);
  const bool weighted = request.combine == prompt_combine::weighted_sum;
  detail::require(!weighted || prompt_weights.device != nullptr ||
                      prompt_weights.by_value.count == request.prompts,
                  "prompt_weights size", prompt_weights.by_value.count,
                  "must equal the number of prompts (" + detail::to_text(request.prompts) + ")");
  require_workspace(workspace_bytes, patch_scores_workspace_bytes(request), "patch_scores_async");
  const std::int64_t n = request.grid.num_patches();
  const error_sink errors = begin_checked_launch(stream);
  if (request.options.non_finite == nan_policy::error) {
    const std::int64_t count = request.batch * request.prompts * request.shape.num_pixels();
    check_heatmaps_kernel<<<blocks_for(count, element_threads), element_threads, 0, stream>>>(
        heatmaps, count, errors);
    check_launch("check_heatmaps_kernel");
  }
  if (weighted && prompt_weights.device != nullptr) {
    check_weights_kernel<<<1, 32, 0, stream>>>(prompt_weights.device, request.prompts, errors);
    check_launch("check_weights_kernel");
  }
  pool_options options = request.options;
  options.non_finite = nan_policy::zero;  // checked above; pool_cell counts them as zero
  const bool combine = pooling_needs_combine(request.prompts, request.combine);
  float* pooled = combine ? static_cast<float*>(workspace) : scores;
  const std::int64_t pooled_count = request.batch * request.prompts * n;
  pool_kernel<<<blocks_for(pooled_count, element_threads), element_threads, 0, stream>>>(
      heatmaps, request.shape, request.grid, options, pooled_count, pooled);
  check_launch("pool_kernel");
  if (combine) {
    const std::int64_t count = request.batch * n;
    combine_kernel<<<blocks_for(count, element_threads), element_threads, 0, stream>>>(
        pooled, request.prompts, n, request.combine, prompt_weights, count, scores);
    check_launch("combine_kernel");
  }
  end_checked_launch(stream);
}

void regions_from_thresholds_async(const float* scores, std::int64_t batch, std::int64_t n,
                                   const host_values<float>& thresholds, nan_policy non_finite,
                                   std::int32_t* regions, cudaStream_t stream) {
  detail::require(batch > 0, "batch", batch, "must be positive");
  detail::require(thresholds.count > 0 && thresholds.count <= max_host_values, "thresholds size",
                  thresholds.count, "must lie in [1, " + detail::to_text(max_host_values) + "]");
  const std::int64_t elements = batch * n;
  if (elements == 0) return;
  const error_sink errors = begin_checked_launch(stream);
  thresholds_kernel<<<blocks_for(elements, element_threads), element_threads, 0, stream>>>(
      scores, elements, thresholds, non_finite, regions, errors);
  check_launch("thresholds_kernel");
  end_checked_launch(stream);
}

// Checks the request (plan_quantiles) before it sizes anything, so a batch too large for the
// segmented sort is a clear error, never an int overflow or an out-of-memory.
std::size_t quantile_workspace_bytes(std::int64_t batch, std::int64_t n) {
  if (plan_quantiles(batch, n) != block_tier::segmented) return 0;
  return lay_out_quantiles(batch, n, nullptr).total_bytes;
}

void regions_from_quantiles_async(const float* scores, std::int64_t batch, std::int64_t n,
                                  const host_values<std::int64_t>& top_counts,
                                  nan_policy non_finite, std::int32_t* regions, void* workspace,
                                  std::size_t workspace_bytes, cudaStream_t stream) {
  detail::require(top_counts.count > 0 && top_counts.count <= max_host_values, "quantiles size",
                  top_counts.count, "must lie in [1, " + detail::to_text(max_host_values) + "]");
  const block_tier tier = plan_quantiles(batch, n);
  require_workspace(workspace_bytes, quantile_workspace_bytes(batch, n),
                    "regions_from_quantiles_async");
  const auto blocks = static_cast<unsigned int>(batch);
  const error_sink errors = begin_checked_launch(stream);
  if (tier == block_tier::small_128x4) {
    quantiles_in_block_kernel<128, 4>
        <<<blocks, 128, 0, stream>>>(scores, n, top_counts, non_finite, regions, errors);
    check_launch("quantiles_in_block_kernel");
    end_checked_launch(stream);
    return;
  }
  if (tier == block_tier::large_256x8) {
    quantiles_in_block_kernel<256, 8>
        <<<blocks, 256, 0, stream>>>(scores, n, top_counts, non_finite, regions, errors);
    check_launch("quantiles_in_block_kernel");
    end_checked_launch(stream);
    return;
  }
  quantile_layout l = lay_out_quantiles(batch, n, workspace);
  const std::int64_t count = batch * n;
  CUB_NS_QUALIFIER::DoubleBuffer<std::uint32_t> keys(l.keys[0], l.keys[1]);
  CUB_NS_QUALIFIER::DoubleBuffer<std::int32_t> cells(l.cells[0], l.cells[1]);
  const unsigned int grid = blocks_for(count, element_threads);
  quantile_keys_kernel<<<grid, element_threads, 0, stream>>>(
      scores, n, count, non_finite, keys.Current(), cells.Current(), l.offsets, batch, errors);
  check_launch("quantile_keys_kernel");
  check_cuda(CUB_NS_QUALIFIER::DeviceSegmentedRadixSort::SortPairs(
                 l.sort_storage, l.sort_storage_bytes, keys, cells, static_cast<int>(count),
                 static_cast<int>(batch), l.offsets, l.offsets + 1, 0, 32, stream),
             "DeviceSegmentedRadixSort (quantiles)");
  quantile_regions_kernel<<<grid, element_threads, 0, stream>>>(n, count, cells.Current(),
                                                                top_counts, regions);
  check_launch("quantile_regions_kernel");
  end_checked_launch(stream);
}

void upsample_patch_map_async(const std::uint8_t* values, std::int64_t batch, grid_shape grid,
                              std::int64_t fd, std::int64_t fh, std::int64_t fw, bool invert,
                              std::uint8_t* out, cudaStream_t stream) {
  detail::require(fd > 0, "depth factor", fd, "must be positive");
  detail::require(fh > 0, "height factor", fh, "must be positive");
  detail::require(fw > 0, "width factor", fw, "must be positive");
  const std::int64_t count = batch * grid.num_patches() * fd * fh * fw;
  if (count == 0) return;
  upsample_kernel<<<blocks_for(count, element_threads), element_threads, 0, stream>>>(
      values, grid, fd, fh, fw, invert, count, out);
  check_launch("upsample_kernel");
}

}  // namespace gpu
}  // namespace mwm
