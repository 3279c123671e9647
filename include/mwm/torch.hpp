// LibTorch layer: the core over at::Tensor, for C++ trainers and for the extension's ops.
// Masks and pooling take CPU tensors, split over samples with at::parallel_for; CORAL runs on
// any device through torch's BLAS. Invalid input throws mwm::error (C++ trainers) — the
// extension turns it into Python's ValueError.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "coral_math.hpp"
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

// Patches of mask generation worth one parallel task: at 5-15 ns each (docs/speed.md), 16384
// patches are 80-250 us, well above the cost of waking a second thread.
constexpr int64_t parallel_grain_patches = 16384;

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
  // The messages are built on failure only: this runs on every mask op call.
  if (t.scalar_type() != dtype) {
    require_tensor(false, argument, t, std::string("must have dtype ") + c10::toString(dtype));
  }
  if (t.dim() != 2 || t.size(0) != batch || t.size(1) != n) {
    require_tensor(false, argument, t,
                   "must have shape (" + std::to_string(batch) + ", " + std::to_string(n) + ")");
  }
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
    if (!regions.defined()) {
      mwm::detail::require(false, "regions", "undefined",
                           std::string("are required by policy ") + policy_name(policy.kind));
    }
    detail::require_cpu_rows(regions, "regions", at::kInt, batch, n);
    region_rows = regions.contiguous();
    request.regions = region_rows.data_ptr<int32_t>();
  }
  if (uses_scores(policy.kind)) {
    if (!scores.defined()) {
      mwm::detail::require(false, "scores", "undefined",
                           std::string("are required by policy ") + policy_name(policy.kind));
    }
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
  // Samples per task: enough patches that waking a worker (tens of microseconds with a passive
  // OpenMP wait policy) is paid for; small calls run inline on the calling thread.
  const int64_t grain = std::max<int64_t>(1, (parallel_grain_patches + n - 1) / n);
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
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
  const float* values = input.data_ptr<float>();
  const bool read_raw = mwm::detail::pooling_checks_its_output(options);
  if (!read_raw) {
    validate_pooled_pixels(values, request.batch * request.prompts, request.shape, grid, options,
                           "heatmaps");
  }
  std::atomic<bool> finite{true};
  at::parallel_for(0, request.batch, 1, [&](int64_t begin, int64_t end) {
    if (!pool_sample_range(request, values, scores.data_ptr<float>(), begin, end, read_raw)) {
      finite = false;
    }
  });
  if (!finite) {  // throws, naming the first non-finite pixel of the batch
    validate_pooled_pixels(values, request.batch * request.prompts, request.shape, grid, options,
                           "heatmaps");
  }
  return scores;
}

namespace detail {

template <typename Assign>
at::Tensor regions_of(const at::Tensor& scores, nan_policy non_finite, Assign assign) {
  require_tensor(
      scores.device().is_cpu() && scores.scalar_type() == at::kFloat && scores.dim() == 2, "scores",
      scores, "must be a (B, N) float32 CPU tensor");
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
                              regions_by_thresholds(s, rows, n, thresholds, out, nan_policy::zero);
                            });
}

inline at::Tensor regions_from_quantiles(const at::Tensor& scores,
                                         const std::vector<double>& quantiles,
                                         nan_policy non_finite = nan_policy::error) {
  validate_quantile_shares(quantiles);
  return detail::regions_of(scores, non_finite,
                            [&](const float* s, int64_t rows, int64_t n, int32_t* out) {
                              regions_by_quantiles(s, rows, n, quantiles, out, nan_policy::zero, 1);
                            });
}

// CORAL over ATen: coral_math.hpp's maths with torch's products (MKL/OpenBLAS on the CPU at
// torch's thread count, cuBLAS on CUDA on the current stream), so every device runs the same
// code. Nothing here reads a value back to the host.
struct aten_coral_backend {
  static int64_t rows(const at::Tensor& x) { return x.size(0); }
  static int64_t cols(const at::Tensor& x) { return x.size(1); }
  static at::Tensor column_means(const at::Tensor& x) { return x.mean(0); }
  static at::Tensor centered(const at::Tensor& x, const at::Tensor& mean) { return x - mean; }

  // alpha a^T a as P + P^T with P = (alpha / 2) a^T a: exactly symmetric for one extra d x d
  // pass (a GEMM does not promise bitwise symmetry).
  static at::Tensor gram(const at::Tensor& a, double alpha) {
    auto half = at::empty({a.size(1), a.size(1)}, a.options());
    half.addmm_(a.t(), a, /*beta=*/0, /*alpha=*/alpha / 2);  // beta 0: `half` is not read
    return half + half.t();
  }

  static at::Tensor difference(const at::Tensor& a, const at::Tensor& b) { return a - b; }

  static at::Tensor squared_norm(const at::Tensor& m, double scale) {
    return at::dot(m.reshape({-1}), m.reshape({-1})).mul_(scale);
  }

  static at::Tensor transposed_scaled(const at::Tensor& m, const at::Tensor& grad_loss,
                                      double scale) {
    return m.t() * (grad_loss.reshape({}) * scale);
  }

  static void add_with_transpose(at::Tensor& w, const at::Tensor& g) {
    w.add_(g).add_(g.t());  // w is a fresh tensor: no aliasing with g
  }

  static at::Tensor row_times(const at::Tensor& mean, const at::Tensor& w, double scale) {
    return at::mv(w.t(), mean).mul_(scale);
  }

  // alpha x W + 1 row^T in one GEMM: the row is addmm's broadcast bias.
  static at::Tensor product_plus_row(const at::Tensor& x, const at::Tensor& w, double alpha,
                                     const at::Tensor& row) {
    return at::addmm(row, x, w, /*beta=*/1, /*alpha=*/alpha);
  }
};

namespace detail {

// Throws naming the first NaN / infinity of x (row-major order), if any.
inline void require_finite_features(const at::Tensor& x, const char* name) {
  const auto bad = at::isfinite(x).logical_not_().nonzero();
  if (bad.size(0) == 0) return;
  const int64_t i = bad[0][0].item<int64_t>();
  const int64_t j = bad[0][1].item<int64_t>();
  const std::string where =
      std::string(name) + "[" + std::to_string(i) + ", " + std::to_string(j) + "]";
  mwm::detail::require(false, where.c_str(), x[i][j].item<double>(),
                       "features must be finite (no NaN or Inf)");
}

}  // namespace detail

struct coral_result {
  at::Tensor loss;      // 0-dim
  at::Tensor cov_diff;  // (d, d), cov(x) - cov(y), exactly symmetric
};

// coral_loss of x (n, d) and y (m, d) (same dtype and device, n, m >= 2: the caller's checks).
// check_finite (CPU): non-finite features raise mwm::error naming the first one. They always
// make the loss NaN or infinite, so the features are scanned only when the loss is not
// finite: a finite loss costs no extra pass.
inline coral_result coral_loss(const at::Tensor& x, const at::Tensor& y, bool check_finite) {
  auto result = coral_math::forward<aten_coral_backend>(x, y);
  if (check_finite && !std::isfinite(result.loss.item<double>())) {
    detail::require_finite_features(x, "x");
    detail::require_finite_features(y, "y");
  }
  return {result.loss, result.cov_diff};
}

// Gradients of coral_loss for x and y from the gradient of the loss (one value, on x's device
// or the CPU) and, when the caller used cov_diff, its gradient (undefined otherwise).
inline std::tuple<at::Tensor, at::Tensor> coral_loss_backward(const at::Tensor& grad_loss,
                                                              const at::Tensor& grad_cov_diff,
                                                              const at::Tensor& x,
                                                              const at::Tensor& y,
                                                              const at::Tensor& cov_diff) {
  auto grads = coral_math::backward<aten_coral_backend>(
      x, y, cov_diff, grad_loss, grad_cov_diff.defined() ? &grad_cov_diff : nullptr);
  return {grads.grad_x, grads.grad_y};
}

}  // namespace tensors
}  // namespace mwm
