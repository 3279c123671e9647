// Patch scores to region indices: strict ascending thresholds, or per-sample quantile shares.
#pragma once

#include <string.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "config.hpp"
#include "error.hpp"
#include "finite.hpp"

namespace mwm {

namespace steps {

// Region index = how many thresholds the score strictly exceeds; one threshold gives
// background 0 and ROI 1. A non-finite score (allowed by nan_policy::zero) counts as zero.
MWM_HOST_DEVICE MWM_INLINE std::int32_t region_of_score(float score, const float* thresholds,
                                                        std::int32_t num_thresholds) {
  score = detail::finite_or_zero(score);
  std::int32_t region = 0;
  for (std::int32_t t = 0; t < num_thresholds; ++t) region += score > thresholds[t] ? 1 : 0;
  return region;
}

}  // namespace steps

inline void validate_thresholds(const std::vector<float>& thresholds) {
  detail::require(!thresholds.empty(), "thresholds size", thresholds.size(),
                  "must hold at least one threshold");
  for (std::size_t t = 0; t < thresholds.size(); ++t) {
    detail::require(thresholds[t] == thresholds[t], "thresholds", thresholds[t], "must not be NaN");
    if (t > 0) {
      detail::require(
          thresholds[t] > thresholds[t - 1], "thresholds", thresholds[t],
          "must be strictly ascending (previous is " + detail::to_text(thresholds[t - 1]) + ")");
    }
  }
}

// Shares must be strictly descending in (0, 1]: share[0] of the patches form region >= 1,
// share[1] region >= 2, and so on.
inline void validate_quantile_shares(const std::vector<double>& shares) {
  detail::require(!shares.empty(), "quantiles size", shares.size(), "must hold at least one share");
  for (std::size_t q = 0; q < shares.size(); ++q) {
    detail::require(shares[q] >= 0.0 && shares[q] <= 1.0, "quantiles", shares[q],
                    "must lie in [0, 1]");
    if (q > 0) {
      detail::require(
          shares[q] < shares[q - 1], "quantiles", shares[q],
          "must be strictly descending (previous is " + detail::to_text(shares[q - 1]) + ")");
    }
  }
}

namespace steps {

// Patches among `patches` in the top `share`: int(patches * share) as Python computes it.
MWM_HOST_DEVICE MWM_INLINE std::int64_t quantile_count(std::int64_t patches, double share) {
  return static_cast<std::int64_t>(static_cast<double>(patches) * share);
}

}  // namespace steps

namespace detail {

// Sortable form of a float where larger scores come first, -0.0 equals +0.0, and non-finite
// values (allowed by nan_policy::zero) rank as zero.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t descending_float_bits(float value) {
  value = finite_or_zero(value);
  if (value == 0.0f) value = 0.0f;
  std::uint32_t bits;
  static_assert(sizeof(bits) == sizeof(value), "float must be 32 bits");
  memcpy(&bits, &value, sizeof(bits));
  const std::uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return ~ascending;
}

}  // namespace detail

namespace steps {

// Patches by score, highest first (lowest first when `lowest_first`), ties by lower patch index:
// keys[0, patches) become (rank bits << 32 | patch index), sorted ascending. Integer keys are
// unique, so a plain sort gives the order that a stable sort by score would.
inline void sort_score_keys(const float* scores, std::int64_t patches, bool lowest_first,
                            std::uint64_t* keys) {
  for (std::int64_t i = 0; i < patches; ++i) {
    const std::uint32_t descending = detail::descending_float_bits(scores[i]);
    const std::uint32_t rank_bits = lowest_first ? ~descending : descending;
    keys[i] = (static_cast<std::uint64_t>(rank_bits) << 32) | static_cast<std::uint32_t>(i);
  }
  std::sort(keys, keys + patches);
}

// Patch order by score, highest first, ties by patch index; `order` gets `patches` indices.
inline void rank_by_score_descending(const float* scores, std::int64_t patches,
                                     std::int64_t* order) {
  std::vector<std::uint64_t> keys(static_cast<std::size_t>(patches));
  sort_score_keys(scores, patches, false, keys.data());
  for (std::int64_t i = 0; i < patches; ++i) order[i] = static_cast<std::uint32_t>(keys[i]);
}

}  // namespace steps

// Regions by per-sample quantiles for one sample.
inline void regions_by_quantiles(const float* scores, std::int64_t patches,
                                 const std::vector<double>& shares, std::int32_t* regions,
                                 std::vector<std::int64_t>& order_workspace) {
  order_workspace.resize(static_cast<std::size_t>(patches));
  steps::rank_by_score_descending(scores, patches, order_workspace.data());
  std::fill(regions, regions + patches, 0);
  for (std::size_t q = 0; q < shares.size(); ++q) {
    const auto top = steps::quantile_count(patches, shares[q]);
    for (std::int64_t r = 0; r < top; ++r) regions[order_workspace[r]] = std::int32_t(q + 1);
  }
}

}  // namespace mwm
