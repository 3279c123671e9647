// How many patches stay visible: the ratio formulas, and a masked budget shared across regions.
#pragma once

#include <math.h>

#include <cstdint>

#include "config.hpp"
#include "policy.hpp"

namespace mwm {

// Visible patches out of n at masking ratio r, in double exactly as the reference Python does.
MWM_HOST_DEVICE MWM_INLINE std::int64_t keep_count(std::int64_t n, double ratio,
                                                   keep_rounding rounding) {
  const double nd = static_cast<double>(n);
  switch (rounding) {
    case keep_rounding::round:
      return static_cast<std::int64_t>(rint(nd * (1.0 - ratio)));  // half to even, as Python
    case keep_rounding::ceil_mask:
      return n - static_cast<std::int64_t>(ceil(nd * ratio));
    case keep_rounding::floor_mask:
      return n - static_cast<std::int64_t>(nd * ratio);
    default:
      return static_cast<std::int64_t>(nd * (1.0 - ratio));
  }
}

namespace steps {

// Shares `masked` patches across `regions` regions of sizes counts[r] in proportion to
// ratio_q16[r] * counts[r] (ratios in Q0.16), capped at counts[r]; integers by largest
// remainder, ties to the lower region. Exact integer arithmetic, so host and device agree.
// Writes out[r]; the out values sum to min(masked, sum counts).
MWM_HOST_DEVICE MWM_INLINE void share_masked_budget(const std::int64_t* counts,
                                                    const std::int64_t* ratio_q16, int regions,
                                                    std::int64_t masked, std::int64_t* out) {
  bool capped[max_regions];
  std::int64_t total = 0;
  for (int r = 0; r < regions; ++r) {
    capped[r] = counts[r] == 0;
    out[r] = 0;
    total += counts[r];
  }
  if (masked > total) masked = total;
  std::int64_t left = masked;
  std::int64_t weight[max_regions];
  std::int64_t weight_sum = 0;
  // Water-filling: a region whose proportional share reaches its size is capped and the excess
  // goes back to the others, until no share exceeds its region.
  for (int pass = 0; pass <= regions; ++pass) {
    left = masked;
    weight_sum = 0;
    for (int r = 0; r < regions; ++r) {
      if (capped[r]) {
        left -= counts[r];
      } else {
        weight[r] = ratio_q16[r] * counts[r];
        weight_sum += weight[r];
      }
    }
    if (weight_sum == 0) {
      // All open weights zero: the budget still has to be met, so share it by region size.
      for (int r = 0; r < regions; ++r) {
        if (!capped[r]) {
          weight[r] = counts[r];
          weight_sum += weight[r];
        }
      }
    }
    bool newly_capped = false;
    for (int r = 0; r < regions; ++r) {
      if (!capped[r] && left * weight[r] >= counts[r] * weight_sum) {
        capped[r] = true;
        newly_capped = true;
      }
    }
    if (!newly_capped) break;
  }
  std::int64_t remainder[max_regions];
  std::int64_t assigned = 0;
  for (int r = 0; r < regions; ++r) {
    if (capped[r]) {
      out[r] = counts[r];
      remainder[r] = -1;
    } else {
      out[r] = weight_sum > 0 ? (left * weight[r]) / weight_sum : 0;
      remainder[r] = weight_sum > 0 ? (left * weight[r]) % weight_sum : 0;
    }
    assigned += out[r];
  }
  while (assigned < masked) {
    int best = -1;
    for (int r = 0; r < regions; ++r) {
      if (out[r] >= counts[r] || remainder[r] < 0) continue;
      if (best < 0 || remainder[r] > remainder[best]) best = r;
    }
    if (best < 0) break;
    ++out[best];
    remainder[best] = -1;  // one extra patch per region at most
    ++assigned;
  }
}

}  // namespace steps

}  // namespace mwm
