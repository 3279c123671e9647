// One selection routine for every policy: each patch gets a group and an integer key, each group
// a visible count; the smallest keys of a group stay visible. The canonical order lists visible
// patches first, then masked ones, each by key (random order) or by index (sorted order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "block.hpp"
#include "budget.hpp"
#include "config.hpp"
#include "data_error.hpp"
#include "error.hpp"
#include "grid.hpp"
#include "keys.hpp"
#include "policy.hpp"
#include "regions.hpp"

namespace mwm {

// A policy in the flat form that host and device code read (no heap memory).
struct policy_params {
  policy_kind kind = policy_kind::random;
  double ratio = 0.75;
  int num_regions = 0;
  double region_ratio[max_regions] = {};
  keep_rounding rounding = keep_rounding::floor;
  visible_order order = visible_order::random;
  std::int64_t coarse_factor = 1;
  double hard_share = 0.5;
  attention_mode attention = attention_mode::high;
  double hint_pool_share = 0.2;
  double hint_share = 0.1;
  std::uint32_t weight_floor_q16 = 32768;
  block_params block;
};

inline policy_params make_policy_params(const mask_policy& p, const grid_shape& grid) {
  validate_policy(p, grid);
  policy_params out;
  out.kind = p.kind;
  out.ratio = p.ratio;
  out.num_regions = static_cast<int>(p.region_ratios.size());
  for (int r = 0; r < out.num_regions; ++r) out.region_ratio[r] = p.region_ratios[r];
  out.rounding = p.rounding;
  out.order = p.order;
  out.coarse_factor = p.kind == policy_kind::coarse ? p.coarse_factor : 1;
  out.hard_share = p.hard_share;
  out.attention = p.attention;
  out.hint_pool_share = p.hint_pool_share;
  out.hint_share = p.hint_share;
  out.weight_floor_q16 = unit_q16(p.weight_floor);
  out.block = make_block_params(p.block.min_patches, p.block.max_patches, p.block.min_aspect,
                                p.block.max_aspect);
  return out;
}

// Grid the selection runs on: the patch grid, or the coarse grid of the `coarse` policy.
MWM_HOST_DEVICE MWM_INLINE grid_shape selection_grid(const policy_params& p, grid_shape grid) {
  if (p.kind != policy_kind::coarse) return grid;
  grid_shape coarse = grid;
  if (grid.ndim == 3) coarse.depth = grid.depth / p.coarse_factor;
  coarse.height = grid.height / p.coarse_factor;
  coarse.width = grid.width / p.coarse_factor;
  return coarse;
}

// Patches to mask in total for the fixed-total kinds.
MWM_HOST_DEVICE MWM_INLINE std::int64_t masked_total(const policy_params& p, std::int64_t n) {
  return n - keep_count(n, p.ratio, p.rounding);
}

// Attention `hint`: the top int(N * hint_pool_share) patches (at most the masked budget) form
// the pool that int(N * hint_share) of them are revealed from.
MWM_HOST_DEVICE MWM_INLINE std::int64_t hint_pool_count(const policy_params& p, std::int64_t n) {
  const auto pool = static_cast<std::int64_t>(static_cast<double>(n) * p.hint_pool_share);
  const std::int64_t masked = masked_total(p, n);
  return pool < masked ? pool : masked;
}

MWM_HOST_DEVICE MWM_INLINE std::int64_t hint_reveal_count(const policy_params& p,
                                                          std::int64_t n) {
  const auto reveal = static_cast<std::int64_t>(static_cast<double>(n) * p.hint_share);
  const std::int64_t pool = hint_pool_count(p, n);
  return reveal < pool ? reveal : pool;
}

// Groups that rank-based policies (loss_guided, attention_guided) put the patch of rank
// `rank` in, where rank 0 is the highest score (the lowest for attention `low`).
MWM_HOST_DEVICE MWM_INLINE std::int32_t group_of_rank(const policy_params& p, std::int64_t rank,
                                                      std::int64_t n) {
  const std::int64_t masked = masked_total(p, n);
  if (p.kind == policy_kind::loss_guided) {
    const auto hard = static_cast<std::int64_t>(static_cast<double>(masked) * p.hard_share);
    return rank < hard ? 1 : 0;  // 1: masked for being hard; 0: the random rest
  }
  if (p.attention == attention_mode::hint && rank < hint_pool_count(p, n)) {
    return 2;  // the hint pool: a few of it are revealed
  }
  return rank < masked ? 1 : 0;
}

constexpr int max_groups = max_regions;

// Group of cell i taken straight from the inputs: its region (per_region, fixed_total), its
// BEiT block flag (block), or the single group 0 of the other kinds; the guided kinds rank
// scores first (group_of_rank). A region outside [0, num_regions) is group 0 and returns false
// with *bad (index i: callers with batch rows add the row's start). The CPU selection and the
// CUDA kernels both call this.
MWM_HOST_DEVICE MWM_INLINE bool cell_group_from_inputs(const policy_params& p,
                                                       const std::int32_t* regions,
                                                       const std::uint8_t* blocked,
                                                       std::int64_t i, std::int32_t* group,
                                                       data_error* bad) {
  *group = 0;
  if (p.kind == policy_kind::per_region || p.kind == policy_kind::fixed_total) {
    if (!region_in_range(regions[i], i, p.num_regions, bad)) return false;
    *group = regions[i];
  } else if (p.kind == policy_kind::block) {
    *group = blocked[i];
  }
  return true;
}

// Number of groups a policy uses (group sizes arrays have at least this many entries).
MWM_HOST_DEVICE MWM_INLINE int num_groups(const policy_params& p) {
  switch (p.kind) {
    case policy_kind::per_region:
    case policy_kind::fixed_total:
      return p.num_regions;
    case policy_kind::block:
    case policy_kind::loss_guided:
      return 2;
    case policy_kind::attention_guided:
      return p.attention == attention_mode::hint ? 3 : 2;
    default:
      return 1;
  }
}

// Visible count of each group from the group sizes (n = sum of sizes).
MWM_HOST_DEVICE MWM_INLINE void plan_keep_counts(const policy_params& p,
                                                 const std::int64_t* sizes, std::int64_t n,
                                                 std::int64_t* keep) {
  switch (p.kind) {
    case policy_kind::per_region:
      for (int r = 0; r < p.num_regions; ++r)
        keep[r] = keep_count(sizes[r], p.region_ratio[r], p.rounding);
      return;
    case policy_kind::fixed_total: {
      std::int64_t masked[max_regions] = {};
      std::int64_t ratio_q16[max_regions] = {};
      for (int r = 0; r < p.num_regions; ++r) ratio_q16[r] = unit_q16(p.region_ratio[r]);
      share_masked_budget(sizes, ratio_q16, p.num_regions, masked_total(p, n), masked);
      for (int r = 0; r < p.num_regions; ++r) keep[r] = sizes[r] - masked[r];
      return;
    }
    case policy_kind::block: {
      // Group 1 holds the blocked patches: unmask the surplus, or mask the shortfall at random.
      const std::int64_t target = masked_total(p, n);
      const std::int64_t surplus = sizes[1] > target ? sizes[1] - target : 0;
      const std::int64_t shortfall = target > sizes[1] ? target - sizes[1] : 0;
      keep[1] = surplus;
      keep[0] = sizes[0] - shortfall;
      return;
    }
    case policy_kind::loss_guided:
      keep[1] = 0;
      keep[0] = n - masked_total(p, n);
      return;
    case policy_kind::attention_guided:
      keep[0] = sizes[0];
      keep[1] = 0;
      if (p.attention == attention_mode::hint) keep[2] = hint_reveal_count(p, n);
      return;
    default:  // random, weighted, coarse (on the coarse grid)
      keep[0] = n - masked_total(p, n);
      return;
  }
}

// Key of patch `index` on the selection grid; `score` is read by `weighted` only.
MWM_HOST_DEVICE MWM_INLINE selection_key patch_key(const policy_params& p, std::uint64_t seed,
                                                   std::uint64_t global_sample_index,
                                                   std::uint32_t index, float score) {
  if (p.kind == policy_kind::weighted) {
    return weighted_key(seed, global_sample_index, index,
                        weight_q16(score, p.weight_floor_q16));
  }
  return random_key(seed, global_sample_index, index);
}

// Per-sample scratch memory, reused across samples by one thread.
struct selection_workspace {
  std::vector<selection_key> keys;
  std::vector<std::int32_t> groups;
  std::vector<std::uint8_t> flags;
  std::vector<selection_key> visible;
  std::vector<selection_key> hidden;
  std::vector<std::vector<selection_key>> buckets;
  std::vector<selection_key> sort_scratch;
  std::vector<std::uint32_t> sort_counts;
};

namespace detail {

// Sorts distinct keys ascending. Keys go to one of n buckets by their high word, scaled to the
// range the high words span, and each bucket is sorted on its own: with the uniform random high
// words of selection keys that is linear on average and several times faster than a comparison
// sort at mask sizes. Crowded buckets (skewed high words) fall back to std::sort. The result is
// std::sort's.
inline void sort_keys(std::vector<selection_key>& keys, selection_workspace& ws) {
  const std::size_t n = keys.size();
  if (n < 16) {
    std::sort(keys.begin(), keys.end());
    return;
  }
  std::uint32_t low = 0xFFFFFFFFu;
  std::uint32_t high = 0;
  for (auto key : keys) {
    const auto word = static_cast<std::uint32_t>(key >> 32);
    low = word < low ? word : low;
    high = word > high ? word : high;
  }
  // bucket(word) = ((word - low) * scale) >> 32 is monotone and below n.
  const std::uint64_t span = static_cast<std::uint64_t>(high - low) + 1;
  const std::uint64_t scale = (static_cast<std::uint64_t>(n) << 32) / span;
  const auto bucket_of = [&](selection_key key) {
    return static_cast<std::size_t>(
        (static_cast<std::uint64_t>(static_cast<std::uint32_t>(key >> 32) - low) * scale) >> 32);
  };
  ws.sort_counts.assign(n + 1, 0);
  for (auto key : keys) ++ws.sort_counts[bucket_of(key) + 1];
  for (std::size_t b = 1; b <= n; ++b) ws.sort_counts[b] += ws.sort_counts[b - 1];
  ws.sort_scratch.resize(n);
  for (auto key : keys) ws.sort_scratch[ws.sort_counts[bucket_of(key)]++] = key;
  // Bucket b now ends at sort_counts[b]; insertion sort for the small ones.
  std::size_t begin = 0;
  for (std::size_t b = 0; b < n; ++b) {
    const std::size_t end = ws.sort_counts[b];
    if (end - begin > 32) {
      std::sort(ws.sort_scratch.begin() + static_cast<std::ptrdiff_t>(begin),
                ws.sort_scratch.begin() + static_cast<std::ptrdiff_t>(end));
    } else {
      for (std::size_t i = begin + 1; i < end; ++i) {
        const selection_key key = ws.sort_scratch[i];
        std::size_t j = i;
        for (; j > begin && ws.sort_scratch[j - 1] > key; --j) {
          ws.sort_scratch[j] = ws.sort_scratch[j - 1];
        }
        ws.sort_scratch[j] = key;
      }
    }
    begin = end;
  }
  keys.swap(ws.sort_scratch);
}

inline void sort_by_index(std::vector<selection_key>& keys) {
  std::sort(keys.begin(), keys.end(), [](selection_key a, selection_key b) {
    return key_index(a) < key_index(b);
  });
}

// Emits the canonical order of one sample from its visible and masked keys.
inline std::int64_t emit_order(const policy_params& p, selection_workspace& ws,
                               std::int64_t* order) {
  if (p.order == visible_order::sorted) {
    sort_by_index(ws.visible);
    sort_by_index(ws.hidden);
  } else {
    sort_keys(ws.visible, ws);
    sort_keys(ws.hidden, ws);
  }
  std::int64_t at = 0;
  for (auto key : ws.visible) order[at++] = key_index(key);
  for (auto key : ws.hidden) order[at++] = key_index(key);
  return static_cast<std::int64_t>(ws.visible.size());
}

// Groups of every patch for the current policy, into ws.groups (size n).
inline void assign_groups(const policy_params& p, grid_shape grid, const std::int32_t* regions,
                          const float* scores, std::uint64_t seed,
                          std::uint64_t global_sample_index, selection_workspace& ws) {
  const std::int64_t n = grid.num_patches();
  ws.groups.assign(static_cast<std::size_t>(n), 0);
  switch (p.kind) {
    case policy_kind::per_region:
    case policy_kind::fixed_total:
      for (std::int64_t i = 0; i < n; ++i) {
        data_error bad;
        if (!cell_group_from_inputs(p, regions, nullptr, i, &ws.groups[i], &bad))
          raise_data_error(bad);
      }
      return;
    case policy_kind::block:
      ws.flags.resize(static_cast<std::size_t>(n));
      place_blocks(ws.flags.data(), grid, p.block, masked_total(p, n), seed,
                   global_sample_index);
      for (std::int64_t i = 0; i < n; ++i) {
        data_error unused;
        cell_group_from_inputs(p, nullptr, ws.flags.data(), i, &ws.groups[i], &unused);
      }
      return;
    case policy_kind::loss_guided:
    case policy_kind::attention_guided: {
      const bool lowest_first =
          p.kind == policy_kind::attention_guided && p.attention == attention_mode::low;
      ws.keys.resize(static_cast<std::size_t>(n));
      sort_score_keys(scores, n, lowest_first, ws.keys.data());
      for (std::int64_t rank = 0; rank < n; ++rank)
        ws.groups[key_index(ws.keys[rank])] = group_of_rank(p, rank, n);
      return;
    }
    default:
      return;
  }
}

}  // namespace detail

// Canonical order of one sample into order[0, N) on the patch grid; returns the visible count.
// `regions` (per_region, fixed_total) and `scores` (weighted, loss/attention guided) are the
// sample's rows of N values; either may be null when the policy does not read it.
inline std::int64_t select_sample(const policy_params& p, grid_shape grid,
                                  const std::int32_t* regions, const float* scores,
                                  std::uint64_t seed, std::uint64_t global_sample_index,
                                  selection_workspace& ws, std::int64_t* order) {
  const grid_shape sel = selection_grid(p, grid);
  const std::int64_t n = sel.num_patches();
  detail::assign_groups(p, sel, regions, scores, seed, global_sample_index, ws);
  const int groups = num_groups(p);
  std::int64_t sizes[max_groups] = {};
  std::int64_t keep[max_groups] = {};
  for (std::int64_t i = 0; i < n; ++i) ++sizes[ws.groups[i]];
  plan_keep_counts(p, sizes, n, keep);

  ws.buckets.resize(static_cast<std::size_t>(groups));
  for (int g = 0; g < groups; ++g) {
    ws.buckets[g].clear();
    ws.buckets[g].reserve(static_cast<std::size_t>(sizes[g]));
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const float score = scores != nullptr ? scores[i] : 0.0f;
    ws.buckets[ws.groups[i]].push_back(
        patch_key(p, seed, global_sample_index, static_cast<std::uint32_t>(i), score));
  }
  if (groups == 1 && p.order == visible_order::random && p.kind != policy_kind::coarse) {
    // One group in key order: a single sort lists the visible patches (smallest keys), then
    // the masked ones, exactly as emit_order would.
    auto& keys = ws.buckets[0];
    detail::sort_keys(keys, ws);
    for (std::size_t i = 0; i < keys.size(); ++i) order[i] = key_index(keys[i]);
    return keep[0];
  }
  ws.visible.clear();
  ws.hidden.clear();
  for (int g = 0; g < groups; ++g) {
    auto& bucket = ws.buckets[g];
    const auto kept = static_cast<std::ptrdiff_t>(keep[g]);
    if (kept > 0 && kept < static_cast<std::ptrdiff_t>(bucket.size())) {
      std::nth_element(bucket.begin(), bucket.begin() + kept, bucket.end());
    }
    ws.visible.insert(ws.visible.end(), bucket.begin(), bucket.begin() + kept);
    ws.hidden.insert(ws.hidden.end(), bucket.begin() + kept, bucket.end());
  }
  if (p.kind != policy_kind::coarse) return detail::emit_order(p, ws, order);

  // Coarse: every patch inherits its cell's side and key; the low bits become the patch index.
  ws.flags.assign(static_cast<std::size_t>(n), 0);
  for (auto key : ws.visible) ws.flags[key_index(key)] = 1;
  std::vector<selection_key>& cell_key = ws.keys;
  cell_key.resize(static_cast<std::size_t>(n));
  for (auto key : ws.visible) cell_key[key_index(key)] = key;
  for (auto key : ws.hidden) cell_key[key_index(key)] = key;
  ws.visible.clear();
  ws.hidden.clear();
  const std::int64_t f = p.coarse_factor;
  for (std::int64_t d = 0; d < grid.depth; ++d)
    for (std::int64_t h = 0; h < grid.height; ++h)
      for (std::int64_t w = 0; w < grid.width; ++w) {
        const std::int64_t cell = sel.index(grid.ndim == 3 ? d / f : 0, h / f, w / f);
        const auto patch = static_cast<std::uint32_t>(grid.index(d, h, w));
        const selection_key key = make_key(static_cast<std::uint32_t>(cell_key[cell] >> 32), patch);
        (ws.flags[cell] ? ws.visible : ws.hidden).push_back(key);
      }
  return detail::emit_order(p, ws, order);
}

}  // namespace mwm
