// Eigen matrices in and out of the batch functions, for C++ users who hold Eigen data. An
// optional include: it needs Eigen (masking.hpp does not).
//
// Batches are matrices with one row per sample (or per sample and prompt for heatmaps) and the
// flattened row-major values along the columns. Inputs may be any dense Eigen expression of any
// arithmetic scalar and storage order; outputs are row-major matrices.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "masking.hpp"

namespace mwm {

template <typename T>
using row_major_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The outputs of generate_masks as Eigen matrices; noise has 0 columns when N exceeds 2^24.
struct eigen_mask_batch {
  row_major_matrix<bool> mask;                                // (B, N), true = masked
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> num_masked;  // (B)
  row_major_matrix<std::int64_t> ids_shuffle;                 // (B, N)
  row_major_matrix<std::int64_t> ids_restore;                 // (B, N)
  row_major_matrix<std::int64_t> ids_keep;                    // (B, widths.keep), -1 padded
  row_major_matrix<std::int64_t> ids_masked;                  // (B, widths.masked), -1 padded
  row_major_matrix<float> noise;                              // (B, N)
};

namespace detail {

template <typename T, typename D>
row_major_matrix<T> row_major_cast(const Eigen::DenseBase<D>& values) {
  static_assert(std::is_arithmetic<typename D::Scalar>::value, "mwm: matrices must hold numbers");
  return values.derived().template cast<T>();
}

template <typename D>
row_major_matrix<std::int32_t> region_index_cast(const Eigen::DenseBase<D>& values) {
  using scalar = typename D::Scalar;
  static_assert(std::is_integral<scalar>::value && !std::is_same<scalar, bool>::value,
                "mwm: regions must be an integer matrix");
  const row_major_matrix<long double> wide = values.derived().template cast<long double>();
  for (Eigen::Index i = 0; i < wide.size(); ++i) {
    const long double v = wide.data()[i];
    if (!(v >= 0 && v <= std::numeric_limits<std::int32_t>::max())) {
      require(false, "regions", static_cast<double>(v), "must be a region index in [0, 2^31)");
    }
  }
  return wide.template cast<std::int32_t>();
}

inline void require_patch_columns(const char* argument, Eigen::Index columns,
                                  const grid_shape& grid) {
  require(static_cast<std::int64_t>(columns) == grid.num_patches(), argument, columns,
          "must equal the grid's patch count N = " + to_text(grid.num_patches()));
}

template <typename T>
row_major_matrix<T> eigen_matrix_from(const std::vector<T>& values, std::int64_t rows,
                                      std::int64_t cols) {
  row_major_matrix<T> out(rows, cols);
  std::copy(values.begin(), values.end(), out.data());
  return out;
}

}  // namespace detail

// Heatmaps with one row per (sample, prompt), sample-major, each row a row-major heatmap of
// request.shape, to scores (B, N). The row count sets request.batch (rows / request.prompts).
template <typename D>
row_major_matrix<float> heatmaps_to_scores(pooling_request request,
                                           const Eigen::DenseBase<D>& heatmaps) {
  detail::require(request.prompts > 0, "prompts", request.prompts, "must be positive");
  detail::require(heatmaps.rows() % request.prompts == 0, "heatmaps rows", heatmaps.rows(),
                  "must be batch * prompts with prompts = " + detail::to_text(request.prompts));
  detail::require(
      static_cast<std::int64_t>(heatmaps.cols()) == request.shape.num_pixels(), "heatmaps columns",
      heatmaps.cols(),
      "must equal the heatmap's pixel count " + detail::to_text(request.shape.num_pixels()));
  const auto values = detail::row_major_cast<float>(heatmaps);
  request.batch = static_cast<std::int64_t>(heatmaps.rows()) / request.prompts;
  row_major_matrix<float> scores(request.batch, request.grid.num_patches());
  heatmaps_to_scores(request, values.data(), scores.data());
  return scores;
}

// One 2D heatmap (rows x columns = height x width) pooled onto a 2D grid: (gh x gw) scores.
template <typename D>
row_major_matrix<float> pool_heatmap(const Eigen::DenseBase<D>& heatmap, const grid_shape& grid,
                                     const pool_options& options = {}) {
  detail::require(grid.ndim == 2, "grid ndim", grid.ndim, "must be 2 for a heatmap matrix");
  const auto values = detail::row_major_cast<float>(heatmap);
  row_major_matrix<float> scores(grid.height, grid.width);
  pool_heatmap(values.data(), heatmap_shape{1, heatmap.rows(), heatmap.cols()}, grid, options,
               scores.data());
  return scores;
}

// Scores (B, N) to regions (B, N) by strict ascending thresholds.
template <typename D>
row_major_matrix<std::int32_t> regions_by_thresholds(const Eigen::DenseBase<D>& scores,
                                                     const std::vector<float>& thresholds,
                                                     nan_policy non_finite = nan_policy::error) {
  const auto values = detail::row_major_cast<float>(scores);
  row_major_matrix<std::int32_t> regions(scores.rows(), scores.cols());
  regions_by_thresholds(values.data(), scores.rows(), scores.cols(), thresholds, regions.data(),
                        non_finite);
  return regions;
}

// Scores (B, N) to regions (B, N) by per-sample quantile shares.
template <typename D>
row_major_matrix<std::int32_t> regions_by_quantiles(const Eigen::DenseBase<D>& scores,
                                                    const std::vector<double>& shares,
                                                    nan_policy non_finite = nan_policy::error,
                                                    int threads = 0) {
  const auto values = detail::row_major_cast<float>(scores);
  row_major_matrix<std::int32_t> regions(scores.rows(), scores.cols());
  regions_by_quantiles(values.data(), scores.rows(), scores.cols(), shares, regions.data(),
                       non_finite, threads);
  return regions;
}

inline eigen_mask_batch to_eigen(const mask_batch& masks) {
  const std::int64_t b = masks.batch;
  const std::int64_t n = masks.num_patches();
  eigen_mask_batch out;
  out.mask.resize(b, n);
  for (std::size_t i = 0; i < masks.mask.size(); ++i) out.mask.data()[i] = masks.mask[i] != 0;
  out.num_masked.resize(b);
  std::copy(masks.num_masked.begin(), masks.num_masked.end(), out.num_masked.data());
  out.ids_shuffle = detail::eigen_matrix_from(masks.ids_shuffle, b, n);
  out.ids_restore = detail::eigen_matrix_from(masks.ids_restore, b, n);
  out.ids_keep = detail::eigen_matrix_from(masks.ids_keep, b, masks.widths.keep);
  out.ids_masked = detail::eigen_matrix_from(masks.ids_masked, b, masks.widths.masked);
  out.noise = detail::eigen_matrix_from(masks.noise, b, masks.noise.empty() ? 0 : n);
  return out;
}

// Masks for a policy that reads regions and scores, both (B, N); the rows set request.batch.
template <typename R, typename S>
eigen_mask_batch generate_masks(mask_request request, const Eigen::DenseBase<R>& regions,
                                const Eigen::DenseBase<S>& scores) {
  detail::require_patch_columns("regions columns", regions.cols(), request.grid);
  detail::require_patch_columns("scores columns", scores.cols(), request.grid);
  detail::require(scores.rows() == regions.rows(), "scores rows", scores.rows(),
                  "must equal the regions rows (" + detail::to_text(regions.rows()) + ")");
  const auto region_values = detail::region_index_cast(regions);
  const auto score_values = detail::row_major_cast<float>(scores);
  request.batch = static_cast<std::int64_t>(regions.rows());
  request.regions = region_values.data();
  request.scores = score_values.data();
  return to_eigen(generate_masks(request));
}

// Masks for a policy that reads one (B, N) matrix: integer matrices are regions (per_region,
// fixed_total), floating-point matrices are scores (weighted, loss/attention guided).
template <typename D>
eigen_mask_batch generate_masks(mask_request request, const Eigen::DenseBase<D>& per_patch) {
  request.batch = static_cast<std::int64_t>(per_patch.rows());
  if constexpr (std::is_floating_point<typename D::Scalar>::value) {
    detail::require_patch_columns("scores columns", per_patch.cols(), request.grid);
    const auto scores = detail::row_major_cast<float>(per_patch);
    request.scores = scores.data();
    return to_eigen(generate_masks(request));
  } else {
    detail::require_patch_columns("regions columns", per_patch.cols(), request.grid);
    const auto regions = detail::region_index_cast(per_patch);
    request.regions = regions.data();
    return to_eigen(generate_masks(request));
  }
}

}  // namespace mwm
