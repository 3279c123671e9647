// What a masking policy is: its kind and parameters, validated once on the host.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "error.hpp"
#include "grid.hpp"

namespace mwm {

enum class policy_kind {
  random,            // MAE / SparK: uniform over all patches
  per_region,        // MWM: each region masked at its own ratio; totals vary per sample
  fixed_total,       // same total in every sample, budget shared across regions
  weighted,          // same total, patches masked with odds w(score) (Efraimidis-Spirakis)
  block,             // BEiT v2 block-wise masking with an exact count
  coarse,            // SimMIM: random on a coarser grid, repeated onto the patch grid
  loss_guided,       // HPM / AnatoMask: hardest predicted patches first, the rest random
  attention_guided,  // AttMask high / low / hint
};

// How the visible count follows from a ratio r over n patches.
enum class keep_rounding {
  floor,       // int(n * (1 - r)): MAE, HF ViTMAE, the MWM reference
  round,       // round(n * (1 - r)), half to even: SparK
  ceil_mask,   // n - ceil(n * r): SimMIM
  floor_mask,  // n - int(n * r): AttMask, BEiT
};

// Order of patches inside ids_keep / ids_masked.
enum class visible_order { random, sorted };

enum class attention_mode { high, low, hint };

constexpr int max_regions = 16;

// BEiT v2 block sampling: area in patches, aspect ratio range.
struct block_options {
  std::int64_t min_patches = 16;
  std::int64_t max_patches = 0;  // 0: up to the remaining budget
  double min_aspect = 0.3;
  double max_aspect = 1.0 / 0.3;
};

struct mask_policy {
  policy_kind kind = policy_kind::random;
  double ratio = 0.75;                // masking ratio of every kind but per_region
  std::vector<double> region_ratios;  // per_region, fixed_total: ratio of region r
  keep_rounding rounding = keep_rounding::floor;
  visible_order order = visible_order::random;
  std::int64_t coarse_factor = 2;  // coarse: patch cells per coarse cell, per axis
  double hard_share = 0.5;         // loss_guided: share of the masked budget by loss
  attention_mode attention = attention_mode::high;
  double hint_pool_share = 0.2;  // attention hint: top share the hints come from
  double hint_share = 0.1;       // attention hint: share of all patches revealed
  double weight_floor = 0.5;     // weighted: w(s) = floor + (1 - floor) * clamp(s, 0, 1)
  block_options block;
};

inline const char* policy_name(policy_kind kind) {
  switch (kind) {
    case policy_kind::random:
      return "random";
    case policy_kind::per_region:
      return "per_region";
    case policy_kind::fixed_total:
      return "fixed_total";
    case policy_kind::weighted:
      return "weighted";
    case policy_kind::block:
      return "block";
    case policy_kind::coarse:
      return "coarse";
    case policy_kind::loss_guided:
      return "loss_guided";
    case policy_kind::attention_guided:
      return "attention_guided";
  }
  return "unknown";
}

inline bool uses_regions(policy_kind kind) {
  return kind == policy_kind::per_region || kind == policy_kind::fixed_total;
}

inline bool uses_scores(policy_kind kind) {
  return kind == policy_kind::weighted || kind == policy_kind::loss_guided ||
         kind == policy_kind::attention_guided;
}

// True when every sample keeps the same number of patches (the token models' requirement).
inline bool has_fixed_total(policy_kind kind) { return kind != policy_kind::per_region; }

namespace detail {

inline void require_ratio(const char* argument, double value) {
  require(value >= 0.0 && value <= 1.0, argument, value, "must lie in [0, 1]");
}

}  // namespace detail

inline void validate_policy(const mask_policy& p, const grid_shape& grid) {
  if (p.kind != policy_kind::per_region) detail::require_ratio("ratio", p.ratio);
  // The messages that need formatting are built only on failure: this runs on every op call.
  if (uses_regions(p.kind)) {
    if (p.region_ratios.empty() || static_cast<int>(p.region_ratios.size()) > max_regions) {
      detail::require(false, "region_ratios size", p.region_ratios.size(),
                      "must hold 1 to " + detail::to_text(max_regions) + " ratios");
    }
    for (double r : p.region_ratios) detail::require_ratio("region_ratios", r);
  }
  if (p.kind == policy_kind::fixed_total) {
    detail::require(grid.num_patches() <= (std::int64_t(1) << 20), "grid patches",
                    grid.num_patches(), "must be at most 2^20 for fixed_total");
  }
  if (p.kind == policy_kind::coarse) {
    detail::require(p.coarse_factor > 0, "coarse_factor", p.coarse_factor, "must be positive");
    if (grid.height % p.coarse_factor != 0 || grid.width % p.coarse_factor != 0 ||
        (grid.ndim != 2 && grid.depth % p.coarse_factor != 0)) {
      detail::require(false, "coarse_factor", p.coarse_factor,
                      "must divide every grid axis (grid " + detail::to_text(grid.depth) + "x" +
                          detail::to_text(grid.height) + "x" + detail::to_text(grid.width) + ")");
    }
  }
  if (p.kind == policy_kind::loss_guided) detail::require_ratio("hard_share", p.hard_share);
  if (p.kind == policy_kind::attention_guided && p.attention == attention_mode::hint) {
    detail::require_ratio("hint_pool_share", p.hint_pool_share);
    detail::require_ratio("hint_share", p.hint_share);
    if (!(p.hint_pool_share <= p.ratio)) {
      detail::require(false, "hint_pool_share", p.hint_pool_share,
                      "must not exceed ratio = " + detail::to_text(p.ratio) +
                          " (hints are revealed from inside the masked set)");
    }
    if (!(p.hint_share <= p.hint_pool_share)) {
      detail::require(false, "hint_share", p.hint_share,
                      "must not exceed hint_pool_share = " + detail::to_text(p.hint_pool_share));
    }
  }
  if (p.kind == policy_kind::weighted) detail::require_ratio("weight_floor", p.weight_floor);
  if (p.kind == policy_kind::block) {
    detail::require(p.block.min_patches > 0, "block min_patches", p.block.min_patches,
                    "must be positive");
    detail::require(p.block.max_patches == 0 || p.block.max_patches >= p.block.min_patches,
                    "block max_patches", p.block.max_patches,
                    "must be 0 (no limit) or at least min_patches");
    detail::require(p.block.min_aspect > 0.0 && p.block.min_aspect <= p.block.max_aspect,
                    "block min_aspect", p.block.min_aspect,
                    "must be positive and at most max_aspect");
  }
}

}  // namespace mwm
