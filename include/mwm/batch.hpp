// Batched heatmap pooling and region assignment: heatmaps (B, K, ...) to scores (B, N) to
// regions (B, N).
#pragma once

#include <cstdint>
#include <vector>

#include "error.hpp"
#include "grid.hpp"
#include "heatmap.hpp"
#include "parallel.hpp"
#include "regions.hpp"

namespace mwm {

struct pooling_request {
  grid_shape grid;
  std::int64_t batch = 0;
  std::int64_t prompts = 1;
  heatmap_shape shape;
  pool_options options;
  prompt_combine combine = prompt_combine::max;
  std::vector<float> prompt_weights;  // weighted_sum: one per prompt
  int threads = 0;
};

// heatmaps (batch, prompts, depth, height, width) -> scores (batch, N).
inline void heatmaps_to_scores(const pooling_request& request, const float* heatmaps,
                               float* scores) {
  detail::require(request.batch > 0, "batch", request.batch, "must be positive");
  validate_heatmap_shape(request.shape);
  validate_prompt_weights(request.prompts, request.combine, request.prompt_weights);
  const std::int64_t pixels = request.shape.num_pixels();
  validate_no_non_finite(heatmaps, request.batch * request.prompts * pixels, "heatmaps",
                         request.options.non_finite);
  const std::int64_t n = request.grid.num_patches();
  detail::parallel_chunks(request.batch, request.threads, [&](std::int64_t begin,
                                                              std::int64_t end) {
    std::vector<float> per_prompt(static_cast<std::size_t>(request.prompts * n));
    for (std::int64_t b = begin; b < end; ++b) {
      for (std::int64_t k = 0; k < request.prompts; ++k) {
        const float* heat = heatmaps + (b * request.prompts + k) * pixels;
        for (std::int64_t d = 0; d < request.grid.depth; ++d)
          for (std::int64_t h = 0; h < request.grid.height; ++h)
            for (std::int64_t w = 0; w < request.grid.width; ++w)
              per_prompt[k * n + request.grid.index(d, h, w)] =
                  pool_cell(heat, request.shape, request.grid, request.options, d, h, w);
      }
      for (std::int64_t i = 0; i < n; ++i) {
        scores[b * n + i] =
            combine_prompt_scores_at(per_prompt.data(), request.prompts, n, request.combine,
                                     request.prompt_weights.data(), i);
      }
    }
  });
}

// scores (batch, n) -> regions (batch, n) by strict ascending thresholds.
inline void regions_by_thresholds(const float* scores, std::int64_t batch, std::int64_t n,
                                  const std::vector<float>& thresholds, std::int32_t* regions,
                                  nan_policy non_finite = nan_policy::error) {
  detail::require(batch > 0, "batch", batch, "must be positive");
  detail::require(n > 0, "patches", n, "must be positive");
  validate_thresholds(thresholds);
  validate_no_non_finite(scores, batch * n, "scores", non_finite);
  const auto count = static_cast<std::int32_t>(thresholds.size());
  for (std::int64_t i = 0; i < batch * n; ++i)
    regions[i] = region_of_score(scores[i], thresholds.data(), count);
}

// scores (batch, n) -> regions (batch, n) by per-sample quantile shares.
inline void regions_by_quantiles(const float* scores, std::int64_t batch, std::int64_t n,
                                 const std::vector<double>& shares, std::int32_t* regions,
                                 nan_policy non_finite = nan_policy::error, int threads = 0) {
  detail::require(batch > 0, "batch", batch, "must be positive");
  detail::require(n > 0, "patches", n, "must be positive");
  validate_quantile_shares(shares);
  validate_no_non_finite(scores, batch * n, "scores", non_finite);
  detail::parallel_chunks(batch, threads, [&](std::int64_t begin, std::int64_t end) {
    std::vector<std::int64_t> order;
    for (std::int64_t b = begin; b < end; ++b)
      regions_by_quantiles(scores + b * n, n, shares, regions + b * n, order);
  });
}

}  // namespace mwm
