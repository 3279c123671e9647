// Per-element bodies of the patch-map kernels (heatmap pooling, regions, upsampling), so that
// the kernels and the host tests run the same code around the core's MWM_HOST_DEVICE functions.
// A host compiler reads this file too.
#pragma once

#include <cstdint>

#include "mwm/config.hpp"
#include "mwm/grid.hpp"
#include "mwm/heatmap.hpp"
#include "mwm/outputs.hpp"
#include "mwm/regions.hpp"

namespace mwm {
namespace gpu {

// patch_scores, pass 1, one thread per element (b * prompts + k) * N + patch: the score of
// one patch under one prompt, laid out as heatmaps_to_scores lays out its per-prompt rows.
MWM_HOST_DEVICE MWM_INLINE float pool_prompt_patch(const float* heatmaps, heatmap_shape shape,
                                                   grid_shape grid, pool_options options,
                                                   std::int64_t element) {
  const std::int64_t n = grid.num_patches();
  const std::int64_t heatmap = element / n;
  const patch_coordinates at = steps::coordinates_of(grid, element % n);
  return steps::pool_cell(heatmaps + heatmap * shape.num_pixels(), shape, grid, options, at.d, at.h,
                          at.w);
}

// patch_scores, pass 2, one thread per element b * N + patch: the prompts combined.
MWM_HOST_DEVICE MWM_INLINE float combine_sample_patch(const float* per_prompt, std::int64_t prompts,
                                                      std::int64_t n, prompt_combine mode,
                                                      const float* weights, std::int64_t element) {
  const std::int64_t b = element / n;
  return steps::combine_prompt_scores_at(per_prompt + b * prompts * n, prompts, n, mode, weights,
                                         element % n);
}

// With one prompt, `max` is the identity, so pass 1 can write the scores directly.
MWM_HOST_DEVICE MWM_INLINE bool pooling_needs_combine(std::int64_t prompts, prompt_combine mode) {
  return prompts > 1 || mode != prompt_combine::max;
}

// regions_from_quantiles: a stable sort of these keys ranks a sample's scores highest first,
// ties by lower index, as rank_by_score_descending does.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t quantile_sort_key(float score) {
  return detail::descending_float_bits(score);
}

// Region of the patch of rank `rank` given top_counts[q] = quantile_count(N, share_q)
// (non-increasing, the shares being strictly descending): the number of top-q sets it is in,
// which is the last region regions_by_quantiles writes for it.
MWM_HOST_DEVICE MWM_INLINE std::int32_t region_of_rank(std::int64_t rank,
                                                       const std::int64_t* top_counts,
                                                       std::int32_t num_shares) {
  std::int32_t region = 0;
  for (std::int32_t q = 0; q < num_shares; ++q) region += rank < top_counts[q] ? 1 : 0;
  return region;
}

// upsample_patch_map, one thread per output element of (B, 1, D*fd, H*fh, W*fw).
MWM_HOST_DEVICE MWM_INLINE std::uint8_t upsampled_element(const std::uint8_t* per_patch,
                                                          grid_shape grid, std::int64_t fd,
                                                          std::int64_t fh, std::int64_t fw,
                                                          bool invert, std::int64_t element) {
  const std::int64_t width = grid.width * fw;
  const std::int64_t height = grid.height * fh;
  const std::int64_t cells = grid.depth * fd * height * width;
  const std::int64_t b = element / cells;
  const std::int64_t cell = element % cells;
  const std::int64_t w = cell % width;
  const std::int64_t h = (cell / width) % height;
  const std::int64_t d = cell / (width * height);
  const std::uint8_t v =
      steps::upsampled_value(per_patch + b * grid.num_patches(), grid, fd, fh, fw, d, h, w);
  return invert ? static_cast<std::uint8_t>(!v) : v;
}

}  // namespace gpu
}  // namespace mwm
