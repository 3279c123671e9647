// Heatmaps of any resolution to one score per patch, and several prompts to one score.
#pragma once

#include <math.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "data_error.hpp"
#include "error.hpp"
#include "finite.hpp"
#include "grid.hpp"

namespace mwm {

enum class pool_reduction { mean, max, fraction, nearest };
enum class prompt_combine { max, weighted_sum };
// What a NaN or infinity in a heatmap means: an error (default), or a zero value.
enum class nan_policy { error, zero };

// Resolution of one heatmap; a 2D heatmap has depth 1.
struct heatmap_shape {
  std::int64_t depth = 1;
  std::int64_t height = 1;
  std::int64_t width = 1;
  MWM_HOST_DEVICE std::int64_t num_pixels() const { return depth * height * width; }
};

struct pool_options {
  pool_reduction reduction = pool_reduction::mean;
  float threshold = 0.5f;  // for `fraction`: share of pixels with value > threshold
  nan_policy non_finite = nan_policy::error;
};

namespace detail {

// Half-open source range of output cell i, the rule of PyTorch's adaptive pooling: it tiles the
// input exactly when the sizes divide, and still covers every cell when the heatmap is smaller.
struct source_range {
  std::int64_t begin;
  std::int64_t end;
};

MWM_HOST_DEVICE MWM_INLINE source_range adaptive_range(std::int64_t cell, std::int64_t in,
                                                       std::int64_t out) {
  return source_range{(cell * in) / out, ((cell + 1) * in + out - 1) / out};
}

// PyTorch's interpolate(mode="nearest") source index, computed in float as PyTorch does.
MWM_HOST_DEVICE MWM_INLINE std::int64_t nearest_source(std::int64_t cell, std::int64_t in,
                                                       std::int64_t out) {
  if (out == in) return cell;
  if (out == 2 * in) return cell >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const auto source = static_cast<std::int64_t>(floorf(static_cast<float>(cell) * scale));
  return source < in - 1 ? source : in - 1;
}

}  // namespace detail

namespace steps {

// Offset in one heatmap of the pixel that `nearest` pooling reads for patch (d, h, w): the only
// pixel its score depends on.
MWM_HOST_DEVICE MWM_INLINE std::int64_t nearest_pixel(heatmap_shape shape, grid_shape grid,
                                                      std::int64_t d, std::int64_t h,
                                                      std::int64_t w) {
  const auto sd = detail::nearest_source(d, shape.depth, grid.depth);
  const auto sh = detail::nearest_source(h, shape.height, grid.height);
  const auto sw = detail::nearest_source(w, shape.width, grid.width);
  return (sd * shape.height + sh) * shape.width + sw;
}

}  // namespace steps

namespace detail {

// The area mean sums a cell in this many double accumulators: pixel x of each row goes to lane
// (x - begin) % mean_lanes, rows in order, and the lanes are added pairwise at the end. The
// order is fixed, so every caller (CPU, device) gets the same bits, and the independent lanes
// are one vector register (one serial chain of double adds would be latency-bound). The CPU's
// batched pooling reads the rows in memory order instead of cell by cell, keeping each lane's
// order (pool_rows.hpp).
constexpr int mean_lanes = 8;

template <bool ZeroNonFinite>
MWM_HOST_DEVICE MWM_INLINE float read_pixel(const float* row, std::int64_t x) {
  return ZeroNonFinite ? finite_or_zero(row[x]) : row[x];
}

template <bool ZeroNonFinite>
MWM_HOST_DEVICE MWM_INLINE void add_row_to_lanes(const float* row, std::int64_t begin,
                                                 std::int64_t end, double* lanes) {
  std::int64_t x = begin;
  for (; x + mean_lanes <= end; x += mean_lanes) {
    for (int k = 0; k < mean_lanes; ++k)
      lanes[k] += static_cast<double>(read_pixel<ZeroNonFinite>(row, x + k));
  }
  for (int k = 0; x < end; ++x, ++k)
    lanes[k] += static_cast<double>(read_pixel<ZeroNonFinite>(row, x));
}

MWM_HOST_DEVICE MWM_INLINE double sum_of_lanes(const double* lanes) {
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

// pool_cell, with non-finite pixels as zeros (ZeroNonFinite) or read as they are: a `mean`
// cell's double sum of floats cannot overflow, so it is finite exactly when all its pixels are,
// which lets a caller skip the separate validation pass (see pool_sample_range).
template <bool ZeroNonFinite>
MWM_HOST_DEVICE MWM_INLINE float pool_cell_reading(const float* heat, heatmap_shape shape,
                                                   grid_shape grid, pool_options options,
                                                   std::int64_t d, std::int64_t h, std::int64_t w) {
  if (options.reduction == pool_reduction::nearest) {
    return read_pixel<ZeroNonFinite>(heat, steps::nearest_pixel(shape, grid, d, h, w));
  }
  const auto rd = adaptive_range(d, shape.depth, grid.depth);
  const auto rh = adaptive_range(h, shape.height, grid.height);
  const auto rw = adaptive_range(w, shape.width, grid.width);
  const auto count =
      static_cast<double>((rd.end - rd.begin) * (rh.end - rh.begin) * (rw.end - rw.begin));
  if (options.reduction == pool_reduction::mean) {
    double lanes[mean_lanes] = {};
    for (auto z = rd.begin; z < rd.end; ++z)
      for (auto y = rh.begin; y < rh.end; ++y)
        add_row_to_lanes<ZeroNonFinite>(heat + (z * shape.height + y) * shape.width, rw.begin,
                                        rw.end, lanes);
    return static_cast<float>(sum_of_lanes(lanes) / count);
  }
  float maximum = -INFINITY;
  std::int64_t above = 0;
  for (auto z = rd.begin; z < rd.end; ++z) {
    for (auto y = rh.begin; y < rh.end; ++y) {
      const float* row = heat + (z * shape.height + y) * shape.width;
      for (auto x = rw.begin; x < rw.end; ++x) {
        const float v = read_pixel<ZeroNonFinite>(row, x);
        maximum = v > maximum ? v : maximum;
        above += v > options.threshold ? 1 : 0;
      }
    }
  }
  if (options.reduction == pool_reduction::max) return maximum;
  return static_cast<float>(static_cast<double>(above) / count);  // fraction
}

}  // namespace detail

namespace steps {

// Score of patch (d, h, w) of `grid` from one heatmap; non-finite values count as zero (callers
// that must reject them check first with first_non_finite_pooled).
MWM_HOST_DEVICE MWM_INLINE float pool_cell(const float* heat, heatmap_shape shape, grid_shape grid,
                                           pool_options options, std::int64_t d, std::int64_t h,
                                           std::int64_t w) {
  return detail::pool_cell_reading<true>(heat, shape, grid, options, d, h, w);
}

}  // namespace steps

// Index of the first NaN or infinity in values[0, count), or -1.
inline std::int64_t first_non_finite(const float* values, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    if (!detail::is_finite_value(values[i])) return i;
  }
  return -1;
}

inline void validate_heatmap_shape(heatmap_shape shape) {
  detail::require(shape.depth > 0, "heatmap depth", shape.depth, "must be positive");
  detail::require(shape.height > 0, "heatmap height", shape.height, "must be positive");
  detail::require(shape.width > 0, "heatmap width", shape.width, "must be positive");
}

inline void validate_no_non_finite(const float* values, std::int64_t count, const char* argument,
                                   nan_policy policy) {
  if (policy != nan_policy::error) return;
  const auto at = first_non_finite(values, count);
  if (at < 0) return;
  data_error_slot first;
  data_error bad;
  steps::finite_or_error(values[at], data_argument_named(argument), at, &bad);
  record_data_error(first, steps::data_error_key(0, at), bad);
  raise_if_data_error(first);
}

// Index of the first NaN or infinity among the pixels `options.reduction` reads from `count`
// consecutive heatmaps of `shape`, counted from heat[0], or -1. The area reductions (mean, max,
// fraction) read every pixel (their cells cover the heatmap); `nearest` reads one pixel per
// patch, so a non-finite value elsewhere cannot change a score and is not looked at.
inline std::int64_t first_non_finite_pooled(const float* heat, std::int64_t count,
                                            heatmap_shape shape, grid_shape grid,
                                            pool_options options) {
  const std::int64_t pixels = shape.num_pixels();
  if (options.reduction != pool_reduction::nearest) return first_non_finite(heat, count * pixels);
  for (std::int64_t k = 0; k < count; ++k) {
    const float* one = heat + k * pixels;
    for (std::int64_t d = 0; d < grid.depth; ++d)
      for (std::int64_t h = 0; h < grid.height; ++h)
        for (std::int64_t w = 0; w < grid.width; ++w) {
          const std::int64_t at = steps::nearest_pixel(shape, grid, d, h, w);
          if (!detail::is_finite_value(one[at])) return k * pixels + at;
        }
  }
  return -1;
}

// Raises naming argument[index] of the first non-finite pixel that pooling reads (see
// first_non_finite_pooled), unless policy is nan_policy::zero.
inline void validate_pooled_pixels(const float* heat, std::int64_t count, heatmap_shape shape,
                                   grid_shape grid, pool_options options, const char* argument) {
  if (options.non_finite != nan_policy::error) return;
  const auto at = first_non_finite_pooled(heat, count, shape, grid, options);
  if (at >= 0) {
    throw error(std::string("mwm: ") + argument + "[" + detail::to_text(at) +
                "] = " + detail::to_text(heat[at]) +
                ": NaN or infinity (pass nan_policy=zero to treat it as zero)");
  }
}

namespace steps {

// Combines the scores of `prompts` prompts (prompt-major, prompts x patches) for one patch.
MWM_HOST_DEVICE MWM_INLINE float combine_prompt_scores_at(const float* scores, std::int64_t prompts,
                                                          std::int64_t patches, prompt_combine mode,
                                                          const float* weights,
                                                          std::int64_t patch) {
  if (mode == prompt_combine::max) {
    float best = scores[patch];
    for (std::int64_t k = 1; k < prompts; ++k) {
      const float v = scores[k * patches + patch];
      best = v > best ? v : best;
    }
    return best;
  }
  double sum = 0.0;
  for (std::int64_t k = 0; k < prompts; ++k) {
    sum += static_cast<double>(weights[k]) * static_cast<double>(scores[k * patches + patch]);
  }
  return static_cast<float>(sum);
}

}  // namespace steps

inline void validate_prompt_weights(std::int64_t prompts, prompt_combine mode,
                                    const std::vector<float>& weights) {
  detail::require(prompts > 0, "prompts", prompts, "must be positive");
  if (mode != prompt_combine::weighted_sum) return;
  detail::require(static_cast<std::int64_t>(weights.size()) == prompts, "prompt_weights size",
                  weights.size(),
                  "must equal the number of prompts (" + detail::to_text(prompts) + ")");
  for (std::size_t k = 0; k < weights.size(); ++k) {
    if (!detail::is_finite_value(weights[k]))
      raise_data_error(steps::real_data_error(data_error_code::prompt_weight, data_argument::scores,
                                              static_cast<std::int64_t>(k), 0, weights[k]));
  }
}

}  // namespace mwm
