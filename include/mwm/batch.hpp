// Batched heatmap pooling and region assignment: heatmaps (B, K, ...) to scores (B, N) to
// regions (B, N).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "error.hpp"
#include "grid.hpp"
#include "heatmap.hpp"
#include "parallel.hpp"
#include "pool_rows.hpp"
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

namespace detail {

// True when pooling can check finiteness on its own output instead of a separate pass over the
// heatmaps: the area mean with nan_policy::error (see pool_cell_reading).
inline bool pooling_checks_its_output(const pool_options& options) {
  return options.reduction == pool_reduction::mean && options.non_finite == nan_policy::error;
}

}  // namespace detail

// Scores of samples [begin, end) of heatmaps (batch, prompts, ...), the whole batch's arrays.
// With `read_raw` pixels are read as they are and the result is false when a prompt's score
// came out non-finite (the caller then names the pixel with validate_pooled_pixels); without
// it non-finite pixels count as zero and the result is true.
inline bool pool_sample_range(const pooling_request& request, const float* heatmaps, float* scores,
                              std::int64_t begin, std::int64_t end, bool read_raw) {
  const std::int64_t pixels = request.shape.num_pixels();
  const std::int64_t n = request.grid.num_patches();
  const grid_shape grid = request.grid;
  std::vector<float> per_prompt(static_cast<std::size_t>(request.prompts * n));
  std::vector<double> lanes;
  std::vector<detail::cell_columns> columns;
  std::vector<detail::source_range> bands;
  const bool mean = request.options.reduction == pool_reduction::mean;
  bool finite = true;
  for (std::int64_t b = begin; b < end; ++b) {
    for (std::int64_t k = 0; k < request.prompts; ++k) {
      const float* heat = heatmaps + (b * request.prompts + k) * pixels;
      float* out = per_prompt.data() + k * n;
      if (mean && read_raw) {
        detail::pool_mean_by_rows<false>(heat, request.shape, grid, out, lanes, columns, bands);
      } else if (mean) {
        detail::pool_mean_by_rows<true>(heat, request.shape, grid, out, lanes, columns, bands);
      } else {
        for (std::int64_t d = 0; d < grid.depth; ++d)
          for (std::int64_t h = 0; h < grid.height; ++h)
            for (std::int64_t w = 0; w < grid.width; ++w) {
              const float score =
                  read_raw ? detail::pool_cell_reading<false>(heat, request.shape, grid,
                                                              request.options, d, h, w)
                           : steps::pool_cell(heat, request.shape, grid, request.options, d, h, w);
              out[grid.index(d, h, w)] = score;
            }
      }
      if (read_raw && first_non_finite(out, n) >= 0) finite = false;
    }
    if (!finite) return false;
    for (std::int64_t i = 0; i < n; ++i) {
      scores[b * n + i] = steps::combine_prompt_scores_at(
          per_prompt.data(), request.prompts, n, request.combine, request.prompt_weights.data(), i);
    }
  }
  return true;
}

namespace detail {

// heatmaps_to_scores, naming `argument` in its errors.
inline void pool_heatmaps_named(const pooling_request& request, const float* heatmaps,
                                float* scores, const char* argument) {
  detail::require(request.batch > 0, "batch", request.batch, "must be positive");
  validate_heatmap_shape(request.shape);
  validate_prompt_weights(request.prompts, request.combine, request.prompt_weights);
  const bool read_raw = detail::pooling_checks_its_output(request.options);
  if (!read_raw) {
    validate_pooled_pixels(heatmaps, request.batch * request.prompts, request.shape, request.grid,
                           request.options, argument);
  }
  std::atomic<bool> finite{true};
  detail::parallel_chunks(request.batch, request.threads,
                          [&](std::int64_t begin, std::int64_t end) {
                            if (!pool_sample_range(request, heatmaps, scores, begin, end, read_raw))
                              finite = false;
                          });
  if (!finite) {  // throws, naming the first non-finite pixel of the batch
    validate_pooled_pixels(heatmaps, request.batch * request.prompts, request.shape, request.grid,
                           request.options, argument);
  }
}

}  // namespace detail

// heatmaps (batch, prompts, depth, height, width) -> scores (batch, N). Reads the pixels each
// reduction needs once: the area reductions every pixel, `nearest` one per patch (see
// first_non_finite_pooled for what is validated).
inline void heatmaps_to_scores(const pooling_request& request, const float* heatmaps,
                               float* scores) {
  detail::pool_heatmaps_named(request, heatmaps, scores, "heatmaps");
}

// One heatmap (shape.num_pixels() values, row-major) to grid.num_patches() scores, on the
// calling thread: heatmaps_to_scores of a batch of one.
inline void pool_heatmap(const float* heat, heatmap_shape shape, grid_shape grid,
                         pool_options options, float* scores) {
  pooling_request request;
  request.grid = grid;
  request.batch = 1;
  request.shape = shape;
  request.options = options;
  request.threads = 1;
  detail::pool_heatmaps_named(request, heat, scores, "heatmap");
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
    regions[i] = steps::region_of_score(scores[i], thresholds.data(), count);
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
