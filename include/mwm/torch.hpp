// LibTorch layer: the core over at::Tensor, for C++ trainers and for the extension's CPU ops.
// CPU tensors; work is split over samples with at::parallel_for. Invalid input throws
// mwm::error (C++ trainers) — the extension turns it into Python's ValueError.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <string>
#include <vector>

#include "masking.hpp"

namespace mwm {
namespace tensors {

struct masks {
  at::Tensor mask;         // (B, N) bool, true = masked
  at::Tensor num_masked;   // (B) int64
  at::Tensor ids_shuffle;  // (B, N) int64, visible first
  at::Tensor ids_restore;  // (B, N) int64
  at::Tensor ids_keep;     // (B, K) int64, -1 padded when totals vary
  at::Tensor ids_masked;   // (B, M) int64, -1 padded when totals vary
  at::Tensor noise;        // (B, N) float32, argsort(noise) == ids_shuffle
};

namespace detail {

inline std::string shape_text(const at::Tensor& t) {
  std::string out = "(";
  for (int64_t i = 0; i < t.dim(); ++i) out += (i ? ", " : "") + std::to_string(t.size(i));
  return out + ")";
}

inline void require_tensor(bool ok, const char* argument, const at::Tensor& t,
                           const std::string& requirement) {
  if (!ok) {
    throw error(std::string("mwm: ") + argument + " (shape " + shape_text(t) + ", dtype " +
                std::string(c10::toString(t.scalar_type())) + ", device " + t.device().str() +
                "): " + requirement);
  }
}

inline void require_cpu_rows(const at::Tensor& t, const char* argument, at::ScalarType dtype,
                             int64_t batch, int64_t n) {
  require_tensor(t.device().is_cpu(), argument, t, "must be on the CPU");
  require_tensor(t.scalar_type() == dtype, argument, t,
                 std::string("must have dtype ") + c10::toString(dtype));
  require_tensor(t.dim() == 2 && t.size(0) == batch && t.size(1) == n, argument, t,
                 "must have shape (" + std::to_string(batch) + ", " + std::to_string(n) + ")");
}

}  // namespace detail

// sample_index: (B) int64, the global sample index of each row. regions (B, N) int32 and
// scores (B, N) float32 are read by the policies that need them (undefined tensors otherwise).
inline masks generate_masks(const at::Tensor& sample_index, grid_shape grid,
                            const mask_policy& policy, std::uint64_t seed,
                            const at::Tensor& regions = at::Tensor(),
                            const at::Tensor& scores = at::Tensor(),
                            nan_policy non_finite = nan_policy::error) {
  detail::require_tensor(sample_index.device().is_cpu() &&
                             sample_index.scalar_type() == at::kLong && sample_index.dim() == 1,
                         "sample_index", sample_index, "must be a 1-D int64 CPU tensor");
  const int64_t batch = sample_index.size(0);
  const int64_t n = grid.num_patches();
  mwm::detail::require(batch > 0, "batch", batch, "must be positive");
  mwm::detail::require(n <= max_patches_for_noise, "grid patches", n,
                       "must be at most 2^24 (float32 noise)");
  const auto indices = sample_index.contiguous();
  mask_request request;
  request.grid = grid;
  request.batch = batch;
  request.policy = policy;
  request.seed = seed;
  request.sample_index = indices.data_ptr<int64_t>();
  request.non_finite = non_finite;
  at::Tensor region_rows, score_rows;
  if (uses_regions(policy.kind)) {
    mwm::detail::require(regions.defined(), "regions", "undefined",
                         std::string("are required by policy ") + policy_name(policy.kind));
    detail::require_cpu_rows(regions, "regions", at::kInt, batch, n);
    region_rows = regions.contiguous();
    request.regions = region_rows.data_ptr<int32_t>();
  }
  if (uses_scores(policy.kind)) {
    mwm::detail::require(scores.defined(), "scores", "undefined",
                         std::string("are required by policy ") + policy_name(policy.kind));
    detail::require_cpu_rows(scores, "scores", at::kFloat, batch, n);
    score_rows = scores.contiguous();
    request.scores = score_rows.data_ptr<float>();
  }
  validate_request(request);
  const auto params = make_policy_params(policy, grid);
  const auto widths = output_widths(policy, grid);
  const auto long_options = sample_index.options();
  masks out{at::empty({batch, n}, long_options.dtype(at::kBool)),
            at::empty({batch}, long_options),
            at::empty({batch, n}, long_options),
            at::empty({batch, n}, long_options),
            at::empty({batch, widths.keep}, long_options),
            at::empty({batch, widths.masked}, long_options),
            at::empty({batch, n}, long_options.dtype(at::kFloat))};
  batch_outputs rows;
  rows.mask = reinterpret_cast<std::uint8_t*>(out.mask.data_ptr<bool>());
  rows.num_masked = out.num_masked.data_ptr<int64_t>();
  rows.ids_shuffle = out.ids_shuffle.data_ptr<int64_t>();
  rows.ids_restore = out.ids_restore.data_ptr<int64_t>();
  rows.ids_keep = out.ids_keep.data_ptr<int64_t>();
  rows.ids_masked = out.ids_masked.data_ptr<int64_t>();
  rows.noise = out.noise.data_ptr<float>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    generate_sample_range(request, params, widths, rows, begin, end);
  });
  return out;
}

// Global indices offset .. offset + batch - 1.
inline at::Tensor sample_indices(int64_t batch, int64_t offset = 0) {
  return at::arange(offset, offset + batch, at::kLong);
}

// heatmaps (B, K, [D,] H, W) float32 -> scores (B, N) float32.
inline at::Tensor patch_scores(const at::Tensor& heatmaps, grid_shape grid,
                               pool_options options = pool_options(),
                               prompt_combine combine = prompt_combine::max,
                               const std::vector<float>& prompt_weights = {}) {
  const int64_t spatial = grid.ndim;
  detail::require_tensor(heatmaps.device().is_cpu() && heatmaps.scalar_type() == at::kFloat,
                         "heatmaps", heatmaps, "must be a float32 CPU tensor");
  detail::require_tensor(heatmaps.dim() == 2 + spatial, "heatmaps", heatmaps,
                         spatial == 3 ? "must be (B, K, D, H, W) for a 3D grid"
                                      : "must be (B, K, H, W) for a 2D grid");
  pooling_request request;
  request.grid = grid;
  request.batch = heatmaps.size(0);
  request.prompts = heatmaps.size(1);
  request.shape.depth = spatial == 3 ? heatmaps.size(2) : 1;
  request.shape.height = heatmaps.size(-2);
  request.shape.width = heatmaps.size(-1);
  request.options = options;
  request.combine = combine;
  request.prompt_weights = prompt_weights;
  validate_heatmap_shape(request.shape);
  validate_prompt_weights(request.prompts, combine, prompt_weights);
  auto scores = at::empty({request.batch, grid.num_patches()}, heatmaps.options());
  if (request.batch == 0) return scores;
  const auto input = heatmaps.contiguous();
  validate_no_non_finite(input.data_ptr<float>(), input.numel(), "heatmaps", options.non_finite);
  const int64_t pixels = request.shape.num_pixels() * request.prompts;
  const int64_t n = grid.num_patches();
  at::parallel_for(0, request.batch, 1, [&](int64_t begin, int64_t end) {
    pooling_request chunk = request;
    chunk.batch = end - begin;
    chunk.threads = 1;
    chunk.options.non_finite = nan_policy::zero;  // validated above
    heatmaps_to_scores(chunk, input.data_ptr<float>() + begin * pixels,
                       scores.data_ptr<float>() + begin * n);
  });
  return scores;
}

namespace detail {

template <typename Assign>
at::Tensor regions_of(const at::Tensor& scores, nan_policy non_finite, Assign assign) {
  require_tensor(scores.device().is_cpu() && scores.scalar_type() == at::kFloat &&
                     scores.dim() == 2,
                 "scores", scores, "must be a (B, N) float32 CPU tensor");
  const auto input = scores.contiguous();
  auto regions = at::empty(input.sizes(), input.options().dtype(at::kInt));
  if (input.numel() == 0) return regions;
  validate_no_non_finite(input.data_ptr<float>(), input.numel(), "scores", non_finite);
  const int64_t n = input.size(1);
  at::parallel_for(0, input.size(0), 1, [&](int64_t begin, int64_t end) {
    assign(input.data_ptr<float>() + begin * n, end - begin, n,
           regions.data_ptr<int32_t>() + begin * n);
  });
  return regions;
}

}  // namespace detail

inline at::Tensor regions_from_thresholds(const at::Tensor& scores,
                                          const std::vector<float>& thresholds,
                                          nan_policy non_finite = nan_policy::error) {
  validate_thresholds(thresholds);
  return detail::regions_of(scores, non_finite,
                            [&](const float* s, int64_t rows, int64_t n, int32_t* out) {
                              regions_by_thresholds(s, rows, n, thresholds, out,
                                                    nan_policy::zero);
                            });
}

inline at::Tensor regions_from_quantiles(const at::Tensor& scores,
                                         const std::vector<double>& quantiles,
                                         nan_policy non_finite = nan_policy::error) {
  validate_quantile_shares(quantiles);
  return detail::regions_of(scores, non_finite,
                            [&](const float* s, int64_t rows, int64_t n, int32_t* out) {
                              regions_by_quantiles(s, rows, n, quantiles, out, nan_policy::zero,
                                                   1);
                            });
}

}  // namespace tensors
}  // namespace mwm
