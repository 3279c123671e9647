// Batched mask generation: the entry point of C++ trainers.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "budget.hpp"
#include "error.hpp"
#include "grid.hpp"
#include "heatmap.hpp"
#include "outputs.hpp"
#include "parallel.hpp"
#include "policy.hpp"
#include "selection.hpp"

namespace mwm {

struct mask_request {
  grid_shape grid;
  std::int64_t batch = 0;
  mask_policy policy;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;                    // global sample index of sample 0
  const std::int64_t* sample_index = nullptr;  // (batch) global index per sample, else offset+b
  const std::int32_t* regions = nullptr;       // (batch, N): per_region, fixed_total
  const float* scores = nullptr;               // (batch, N): weighted, loss/attention guided
  nan_policy non_finite = nan_policy::error;
  int threads = 0;  // 0: hardware concurrency
};

// Widths of ids_keep and ids_masked: exact for fixed-total policies, N (padded with -1)
// when totals vary per sample.
struct index_widths {
  std::int64_t keep;
  std::int64_t masked;
};

inline index_widths output_widths(const mask_policy& policy, const grid_shape& grid) {
  const std::int64_t n = grid.num_patches();
  if (!has_fixed_total(policy.kind)) return index_widths{n, n};
  std::int64_t keep = keep_count(n, policy.ratio, policy.rounding);
  const auto params = make_policy_params(policy, grid);
  if (policy.kind == policy_kind::coarse) {
    const grid_shape coarse = steps::selection_grid(params, grid);
    const std::int64_t cells = coarse.num_patches();
    keep = keep_count(cells, policy.ratio, policy.rounding) * (n / cells);
  }
  if (policy.kind == policy_kind::attention_guided && policy.attention == attention_mode::hint) {
    keep += steps::hint_reveal_count(params, n);  // revealed hints are visible too
  }
  return index_widths{keep, n - keep};
}

// Row-major (batch, ...) destinations; a null pointer skips that output.
struct batch_outputs {
  std::uint8_t* mask = nullptr;         // (B, N)
  std::int64_t* num_masked = nullptr;   // (B)
  std::int64_t* ids_shuffle = nullptr;  // (B, N)
  std::int64_t* ids_restore = nullptr;  // (B, N)
  std::int64_t* ids_keep = nullptr;     // (B, widths.keep)
  std::int64_t* ids_masked = nullptr;   // (B, widths.masked)
  float* noise = nullptr;               // (B, N)
};

inline void validate_request(const mask_request& request) {
  detail::require(request.batch > 0, "batch", request.batch, "must be positive");
  detail::require(request.grid.num_patches() > 0, "grid patches", request.grid.num_patches(),
                  "must be positive");
  validate_policy(request.policy, request.grid);
  if (uses_regions(request.policy.kind) && request.regions == nullptr) {
    detail::require(false, "regions", "null",
                    std::string("are required by policy ") + policy_name(request.policy.kind));
  }
  if (uses_scores(request.policy.kind)) {
    if (request.scores == nullptr) {
      detail::require(false, "scores", "null",
                      std::string("are required by policy ") + policy_name(request.policy.kind));
    }
    validate_no_non_finite(request.scores, request.batch * request.grid.num_patches(), "scores",
                           request.non_finite);
  }
}

namespace steps {

// Global sample index of sample b, the one Philox keys its draws with: sample_index[b] when
// given, else offset + b. The CUDA kernels call this too.
MWM_HOST_DEVICE MWM_INLINE std::uint64_t global_sample_index(const std::int64_t* sample_index,
                                                             std::uint64_t offset, std::int64_t b) {
  return sample_index ? static_cast<std::uint64_t>(sample_index[b])
                      : offset + static_cast<std::uint64_t>(b);
}

inline std::uint64_t global_sample_index(const mask_request& request, std::int64_t b) {
  return global_sample_index(request.sample_index, request.offset, b);
}

// Rows of sample b in the batch outputs (both paths write a sample through this).
MWM_HOST_DEVICE MWM_INLINE sample_outputs sample_rows(const batch_outputs& out,
                                                      const index_widths& widths, std::int64_t n,
                                                      std::int64_t b) {
  sample_outputs row;
  row.mask = out.mask ? out.mask + b * n : nullptr;
  row.ids_shuffle = out.ids_shuffle ? out.ids_shuffle + b * n : nullptr;
  row.ids_restore = out.ids_restore ? out.ids_restore + b * n : nullptr;
  row.ids_keep = out.ids_keep ? out.ids_keep + b * widths.keep : nullptr;
  row.ids_masked = out.ids_masked ? out.ids_masked + b * widths.masked : nullptr;
  row.noise = out.noise ? out.noise + b * n : nullptr;
  row.keep_width = widths.keep;
  row.masked_width = widths.masked;
  return row;
}

}  // namespace steps

// Fills the outputs of samples [begin, end); callers run disjoint ranges on any threads.
inline void generate_sample_range(const mask_request& request, const policy_params& params,
                                  const index_widths& widths, const batch_outputs& out,
                                  std::int64_t begin, std::int64_t end) {
  const grid_shape grid = request.grid;
  const std::int64_t n = grid.num_patches();
  selection_workspace ws;
  // The order goes straight into the ids_shuffle rows when there are any.
  std::vector<std::int64_t> order(out.ids_shuffle ? 0 : static_cast<std::size_t>(n));
  std::vector<float> position_noise(out.noise ? static_cast<std::size_t>(n) : 0);
  if (out.noise) fill_position_noise(position_noise.data(), n);
  for (std::int64_t b = begin; b < end; ++b) {
    const std::int32_t* regions = request.regions ? request.regions + b * n : nullptr;
    const float* scores = request.scores ? request.scores + b * n : nullptr;
    const sample_outputs rows = steps::sample_rows(out, widths, n, b);
    std::int64_t* sample_order = rows.ids_shuffle ? rows.ids_shuffle : order.data();
    const std::int64_t visible =
        steps::select_sample(params, grid, regions, scores, request.seed,
                             steps::global_sample_index(request, b), ws, sample_order);
    steps::write_sample_outputs(rows, sample_order, n, visible, position_noise.data());
    if (out.num_masked) out.num_masked[b] = n - visible;
  }
}

// Fills the outputs for every sample; sample b uses global index offset + b (or sample_index[b]).
inline void generate_masks_into(const mask_request& request, const batch_outputs& out) {
  validate_request(request);
  const std::int64_t n = request.grid.num_patches();
  detail::require(out.noise == nullptr || n <= max_patches_for_noise, "grid patches", n,
                  "must be at most 2^24 for the noise output");
  const policy_params params = make_policy_params(request.policy, request.grid);
  const index_widths widths = output_widths(request.policy, request.grid);
  detail::parallel_chunks(request.batch, request.threads,
                          [&](std::int64_t begin, std::int64_t end) {
                            generate_sample_range(request, params, widths, out, begin, end);
                          });
}

// Owning result of generate_masks.
struct mask_batch {
  grid_shape grid;
  std::int64_t batch = 0;
  index_widths widths{0, 0};
  std::vector<std::uint8_t> mask;
  std::vector<std::int64_t> num_masked;
  std::vector<std::int64_t> ids_shuffle;
  std::vector<std::int64_t> ids_restore;
  std::vector<std::int64_t> ids_keep;
  std::vector<std::int64_t> ids_masked;
  std::vector<float> noise;

  std::int64_t num_patches() const { return grid.num_patches(); }
  bool is_masked(std::int64_t b, std::int64_t patch) const {
    return mask[static_cast<std::size_t>(b * num_patches() + patch)] != 0;
  }
};

namespace detail {

// The destinations of generate_masks_into over the buffers of `masks`, as sized; an empty noise
// buffer (too many patches for noise) is skipped rather than written.
inline batch_outputs outputs_of(mask_batch& masks) {
  batch_outputs out;
  out.mask = masks.mask.data();
  out.num_masked = masks.num_masked.data();
  out.ids_shuffle = masks.ids_shuffle.data();
  out.ids_restore = masks.ids_restore.data();
  out.ids_keep = masks.ids_keep.data();
  out.ids_masked = masks.ids_masked.data();
  out.noise = masks.noise.empty() ? nullptr : masks.noise.data();
  return out;
}

}  // namespace detail

inline mask_batch generate_masks(const mask_request& request) {
  validate_request(request);
  mask_batch result;
  result.grid = request.grid;
  result.batch = request.batch;
  result.widths = output_widths(request.policy, request.grid);
  const auto n = static_cast<std::size_t>(request.grid.num_patches());
  const auto b = static_cast<std::size_t>(request.batch);
  result.mask.resize(b * n);
  result.num_masked.resize(b);
  result.ids_shuffle.resize(b * n);
  result.ids_restore.resize(b * n);
  result.ids_keep.resize(b * static_cast<std::size_t>(result.widths.keep));
  result.ids_masked.resize(b * static_cast<std::size_t>(result.widths.masked));
  if (n <= static_cast<std::size_t>(max_patches_for_noise)) result.noise.resize(b * n);
  generate_masks_into(request, detail::outputs_of(result));
  return result;
}

}  // namespace mwm
