// xtensor arrays in and out of the batch functions, for C++ users who hold xtensor data. An
// optional include: it needs xtensor (masking.hpp does not).
//
// Inputs may be any xtensor expression of any arithmetic type and layout; they are copied once
// into row-major buffers of the core's types. Outputs are row-major (batch, N) arrays, N the
// patches of the grid in row-major order (d, h, w).
#pragma once

#if __has_include(<xtensor/containers/xarray.hpp>)
#include <xtensor/containers/xarray.hpp>
#include <xtensor/containers/xtensor.hpp>
#else
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>
#endif

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "masking.hpp"

namespace mwm {

// The outputs of generate_masks as xtensor arrays; noise is (batch, 0) when N exceeds 2^24.
struct xtensor_mask_batch {
  xt::xtensor<bool, 2> mask;                 // (B, N), true = masked
  xt::xtensor<std::int64_t, 1> num_masked;   // (B)
  xt::xtensor<std::int64_t, 2> ids_shuffle;  // (B, N)
  xt::xtensor<std::int64_t, 2> ids_restore;  // (B, N)
  xt::xtensor<std::int64_t, 2> ids_keep;     // (B, widths.keep), padded with -1
  xt::xtensor<std::int64_t, 2> ids_masked;   // (B, widths.masked), padded with -1
  xt::xtensor<float, 2> noise;               // (B, N)
};

namespace detail {

// Row-major copy of an xtensor expression as T; `shape` receives the expression's shape.
template <typename T, typename E>
std::vector<T> row_major_copy(const xt::xexpression<E>& expression,
                              std::vector<std::size_t>& shape) {
  using value_type = typename E::value_type;
  static_assert(std::is_arithmetic<value_type>::value, "mwm: arrays must hold numbers");
  const xt::xarray<value_type, xt::layout_type::row_major> dense = expression.derived_cast();
  shape.assign(dense.shape().begin(), dense.shape().end());
  std::vector<T> out(dense.size());
  const value_type* values = dense.data();
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(values[i]);
  return out;
}

// Region indices as int32, refusing values that the narrowing would change.
template <typename E>
std::vector<std::int32_t> region_index_copy(const xt::xexpression<E>& expression,
                                            std::vector<std::size_t>& shape) {
  using value_type = typename E::value_type;
  static_assert(std::is_integral<value_type>::value && !std::is_same<value_type, bool>::value,
                "mwm: regions must be an integer array");
  const auto wide = row_major_copy<long double>(expression, shape);
  std::vector<std::int32_t> out(wide.size());
  for (std::size_t i = 0; i < wide.size(); ++i) {
    if (!(wide[i] >= 0 && wide[i] <= std::numeric_limits<std::int32_t>::max())) {
      require(false, "regions", static_cast<double>(wide[i]),
              "must be a region index in [0, 2^31)");
    }
    out[i] = static_cast<std::int32_t>(wide[i]);
  }
  return out;
}

inline std::int64_t product(const std::vector<std::size_t>& shape, std::size_t first) {
  std::int64_t p = 1;
  for (std::size_t i = first; i < shape.size(); ++i) p *= static_cast<std::int64_t>(shape[i]);
  return p;
}

inline std::string shape_text(const std::vector<std::size_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + to_text(shape[i]);
  return text + ")";
}

// Per-patch arrays are (B, N) or grid-shaped: (B, gh, gw) in 2D, (B, gd, gh, gw) in 3D.
inline std::int64_t per_patch_batch(const char* argument, const std::vector<std::size_t>& shape,
                                    const grid_shape& grid) {
  const bool flat = shape.size() == 2 && static_cast<std::int64_t>(shape[1]) == grid.num_patches();
  bool grid_shaped = false;
  if (grid.ndim == 2 && shape.size() == 3) {
    grid_shaped = static_cast<std::int64_t>(shape[1]) == grid.height &&
                  static_cast<std::int64_t>(shape[2]) == grid.width;
  } else if (grid.ndim == 3 && shape.size() == 4) {
    grid_shaped = static_cast<std::int64_t>(shape[1]) == grid.depth &&
                  static_cast<std::int64_t>(shape[2]) == grid.height &&
                  static_cast<std::int64_t>(shape[3]) == grid.width;
  }
  require(flat || grid_shaped, argument, shape_text(shape),
          "must be (batch, N) with N = " + to_text(grid.num_patches()) +
              " or (batch, grid axes...) for the " + to_text(grid.depth) + "x" +
              to_text(grid.height) + "x" + to_text(grid.width) + " grid");
  return static_cast<std::int64_t>(shape[0]);
}

template <typename T>
xt::xtensor<T, 2> xtensor_matrix_from(const std::vector<T>& values, std::int64_t rows,
                                      std::int64_t cols) {
  auto out = xt::xtensor<T, 2>::from_shape(
      {static_cast<std::size_t>(rows), static_cast<std::size_t>(cols)});
  std::copy(values.begin(), values.end(), out.data());
  return out;
}

// Scores (B, ...) as row-major floats (B, N), N the product of the trailing axes.
struct score_rows {
  std::vector<float> values;
  std::int64_t batch = 0;
  std::int64_t n = 0;
};

template <typename E>
score_rows score_rows_of(const xt::xexpression<E>& scores) {
  std::vector<std::size_t> shape;
  score_rows rows;
  rows.values = row_major_copy<float>(scores, shape);
  require(shape.size() >= 2, "scores shape", shape_text(shape), "must be (batch, patches...)");
  rows.batch = static_cast<std::int64_t>(shape[0]);
  rows.n = product(shape, 1);
  return rows;
}

}  // namespace detail

// Heatmaps (B, H, W) or (B, K, H, W) for a 2D grid, (B, D, H, W) or (B, K, D, H, W) for a 3D
// grid, to scores (B, N). The array's shape sets request.batch, request.prompts and
// request.shape; the other fields (grid, options, combine, weights, threads) are used as given.
template <typename E>
xt::xtensor<float, 2> heatmaps_to_scores(pooling_request request,
                                         const xt::xexpression<E>& heatmaps) {
  std::vector<std::size_t> shape;
  const auto values = detail::row_major_copy<float>(heatmaps, shape);
  const std::size_t spatial = request.grid.ndim == 3 ? 3 : 2;
  detail::require(shape.size() == spatial + 1 || shape.size() == spatial + 2, "heatmaps shape",
                  detail::shape_text(shape),
                  "must be (batch, [prompts,] " + std::string(spatial == 3 ? "depth, " : "") +
                      "height, width)");
  const bool with_prompts = shape.size() == spatial + 2;
  request.batch = static_cast<std::int64_t>(shape[0]);
  request.prompts = with_prompts ? static_cast<std::int64_t>(shape[1]) : 1;
  const std::size_t first = with_prompts ? 2 : 1;
  request.shape.depth = spatial == 3 ? static_cast<std::int64_t>(shape[first]) : 1;
  request.shape.height = static_cast<std::int64_t>(shape[shape.size() - 2]);
  request.shape.width = static_cast<std::int64_t>(shape[shape.size() - 1]);
  std::vector<float> scores(static_cast<std::size_t>(request.batch * request.grid.num_patches()));
  heatmaps_to_scores(request, values.data(), scores.data());
  return detail::xtensor_matrix_from(scores, request.batch, request.grid.num_patches());
}

// Scores (B, ...) to regions (B, N) by strict ascending thresholds; N = the trailing axes.
template <typename E>
xt::xtensor<std::int32_t, 2> regions_by_thresholds(const xt::xexpression<E>& scores,
                                                   const std::vector<float>& thresholds,
                                                   nan_policy non_finite = nan_policy::error) {
  const auto rows = detail::score_rows_of(scores);
  std::vector<std::int32_t> regions(rows.values.size());
  regions_by_thresholds(rows.values.data(), rows.batch, rows.n, thresholds, regions.data(),
                        non_finite);
  return detail::xtensor_matrix_from(regions, rows.batch, rows.n);
}

// Scores (B, ...) to regions (B, N) by per-sample quantile shares.
template <typename E>
xt::xtensor<std::int32_t, 2> regions_by_quantiles(const xt::xexpression<E>& scores,
                                                  const std::vector<double>& shares,
                                                  nan_policy non_finite = nan_policy::error,
                                                  int threads = 0) {
  const auto rows = detail::score_rows_of(scores);
  std::vector<std::int32_t> regions(rows.values.size());
  regions_by_quantiles(rows.values.data(), rows.batch, rows.n, shares, regions.data(), non_finite,
                       threads);
  return detail::xtensor_matrix_from(regions, rows.batch, rows.n);
}

inline xtensor_mask_batch to_xtensor(const mask_batch& masks) {
  const std::int64_t b = masks.batch;
  const std::int64_t n = masks.num_patches();
  xtensor_mask_batch out;
  out.mask =
      xt::xtensor<bool, 2>::from_shape({static_cast<std::size_t>(b), static_cast<std::size_t>(n)});
  for (std::size_t i = 0; i < masks.mask.size(); ++i) out.mask.data()[i] = masks.mask[i] != 0;
  out.num_masked = xt::xtensor<std::int64_t, 1>::from_shape({static_cast<std::size_t>(b)});
  std::copy(masks.num_masked.begin(), masks.num_masked.end(), out.num_masked.data());
  out.ids_shuffle = detail::xtensor_matrix_from(masks.ids_shuffle, b, n);
  out.ids_restore = detail::xtensor_matrix_from(masks.ids_restore, b, n);
  out.ids_keep = detail::xtensor_matrix_from(masks.ids_keep, b, masks.widths.keep);
  out.ids_masked = detail::xtensor_matrix_from(masks.ids_masked, b, masks.widths.masked);
  out.noise = detail::xtensor_matrix_from(masks.noise, b, masks.noise.empty() ? 0 : n);
  return out;
}

// Masks for a policy that reads regions and scores, each (B, N) or grid-shaped; their first
// axis sets request.batch.
template <typename R, typename S>
xtensor_mask_batch generate_masks(mask_request request, const xt::xexpression<R>& regions,
                                  const xt::xexpression<S>& scores) {
  std::vector<std::size_t> region_shape;
  std::vector<std::size_t> score_shape;
  const auto region_values = detail::region_index_copy(regions, region_shape);
  const auto score_values = detail::row_major_copy<float>(scores, score_shape);
  const auto batch = detail::per_patch_batch("regions shape", region_shape, request.grid);
  detail::require(detail::per_patch_batch("scores shape", score_shape, request.grid) == batch,
                  "scores batch", score_shape[0],
                  "must equal the regions batch (" + detail::to_text(batch) + ")");
  request.batch = batch;
  request.regions = region_values.data();
  request.scores = score_values.data();
  return to_xtensor(generate_masks(request));
}

// Masks for a policy that reads one per-patch array: integer arrays are regions (per_region,
// fixed_total), floating-point arrays are scores (weighted, loss/attention guided).
template <typename E>
xtensor_mask_batch generate_masks(mask_request request, const xt::xexpression<E>& per_patch) {
  std::vector<std::size_t> shape;
  std::vector<std::int32_t> regions;
  std::vector<float> scores;
  if constexpr (std::is_floating_point<typename E::value_type>::value) {
    scores = detail::row_major_copy<float>(per_patch, shape);
    request.scores = scores.data();
  } else {
    regions = detail::region_index_copy(per_patch, shape);
    request.regions = regions.data();
  }
  request.batch = detail::per_patch_batch(request.scores ? "scores shape" : "regions shape", shape,
                                          request.grid);
  return to_xtensor(generate_masks(request));
}

}  // namespace mwm
