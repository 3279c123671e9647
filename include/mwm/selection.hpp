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
#include "keys_x86.hpp"
#include "policy.hpp"
#include "regions.hpp"
#include "sort_x86.hpp"

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
  out.weight_floor_q16 = steps::unit_q16(p.weight_floor);
  out.block = make_block_params(p.block.min_patches, p.block.max_patches, p.block.min_aspect,
                                p.block.max_aspect);
  return out;
}

namespace steps {

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

MWM_HOST_DEVICE MWM_INLINE std::int64_t hint_reveal_count(const policy_params& p, std::int64_t n) {
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

}  // namespace steps

constexpr int max_groups = max_regions;

namespace steps {

// Group of cell i taken straight from the inputs: its region (per_region, fixed_total), its
// BEiT block flag (block), or the single group 0 of the other kinds; the guided kinds rank
// scores first (group_of_rank). A region outside [0, num_regions) is group 0 and returns false
// with *bad (index i: callers with batch rows add the row's start). The CPU selection and the
// CUDA kernels both call this.
MWM_HOST_DEVICE MWM_INLINE bool cell_group_from_inputs(const policy_params& p,
                                                       const std::int32_t* regions,
                                                       const std::uint8_t* blocked, std::int64_t i,
                                                       std::int32_t* group, data_error* bad) {
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
MWM_HOST_DEVICE MWM_INLINE void plan_keep_counts(const policy_params& p, const std::int64_t* sizes,
                                                 std::int64_t n, std::int64_t* keep) {
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
    return weighted_key(seed, global_sample_index, index, weight_q16(score, p.weight_floor_q16));
  }
  return random_key(seed, global_sample_index, index);
}

}  // namespace steps

// Per-sample scratch memory, reused across samples by one thread.
struct selection_workspace {
  std::vector<selection_key> keys;
  std::vector<std::int32_t> groups;
  std::vector<std::uint8_t> flags;
  std::vector<selection_key> sort_scratch;
  std::vector<std::uint32_t> sort_counts;
  std::vector<std::int64_t> sorted_cells;  // cells in key order, from the sorting network
};

namespace detail {

// Below this many keys an insertion sort beats the fixed cost of the counting pass.
constexpr std::size_t counting_sort_min_keys = 32;
// A bucket holding more keys than this (high words crowded, e.g. the `weighted` policy's ties)
// makes the counting sort hand over to the radix sort, which does not mind.
constexpr std::uint32_t counting_sort_crowded_bucket = 48;

inline void insertion_sort_keys(selection_key* keys, std::size_t n) {
  for (std::size_t i = 1; i < n; ++i) {
    const selection_key key = keys[i];
    std::size_t j = i;
    for (; j > 0 && keys[j - 1] > key; --j) keys[j] = keys[j - 1];
    keys[j] = key;
  }
}

// Ascending sort of keys[0, n) by a least-significant-digit radix sort on bytes first_byte..7
// (8-bit digits, one histogram pass for all of them, a pass skipped when every key shares its
// digit). Each pass is stable, so first_byte = 4 (the high word only) gives the full key order
// when the keys arrive in ascending index order (their low word), as select_sample makes them.
// `scratch` holds n keys. O(n) whatever the keys.
inline void radix_sort_keys(selection_key* keys, std::size_t n, selection_key* scratch,
                            int first_byte) {
  if (n < counting_sort_min_keys) return insertion_sort_keys(keys, n);
  std::uint32_t counts[8][256];
  for (int b = first_byte; b < 8; ++b) std::fill(counts[b], counts[b] + 256, 0u);
  for (std::size_t i = 0; i < n; ++i) {
    const selection_key key = keys[i];
    for (int b = first_byte; b < 8; ++b) ++counts[b][(key >> (8 * b)) & 0xFF];
  }
  selection_key* from = keys;
  selection_key* to = scratch;
  for (int b = first_byte; b < 8; ++b) {
    std::uint32_t* count = counts[b];
    const int shift = 8 * b;
    if (count[(from[0] >> shift) & 0xFF] == n) continue;  // one digit value: nothing moves
    std::uint32_t position = 0;
    for (int digit = 0; digit < 256; ++digit) {
      const std::uint32_t c = count[digit];
      count[digit] = position;
      position += c;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const selection_key key = from[i];
      to[count[(key >> shift) & 0xFF]++] = key;
    }
    std::swap(from, to);
  }
  if (from != keys) std::copy(from, from + n, keys);
}

// Ascending sort of distinct keys[0, n) in any input order: a counting sort into about n
// buckets by the high word, then one insertion-sort pass that orders each bucket's few keys by
// the full key. Selection keys have uniform random high words, so buckets hold one key on
// average (benchmarks/profile/callgrind_masks.sh counts the instructions); crowded buckets hand
// over to radix_sort_keys. With `uniform_high_words` the buckets are the top bits of the high
// word; without it they span the keys' own range of high words (the `weighted` keys crowd). Any
// bucketing that is monotone in the key gives the same result, the full sort. `scratch` holds n
// keys; `counts` is reused between calls. Returns where the sorted keys are: keys or scratch.
inline const selection_key* counting_sort_keys_to(selection_key* keys, std::size_t n,
                                                  selection_key* scratch,
                                                  std::vector<std::uint32_t>& counts,
                                                  bool uniform_high_words) {
  if (n < counting_sort_min_keys) {
    insertion_sort_keys(keys, n);
    return keys;
  }
  int bits = 1;
  while ((std::size_t(1) << bits) < n && bits < 20) ++bits;
  std::uint32_t low = 0;
  int shift = 32 - bits;
  if (!uniform_high_words) {
    low = 0xFFFFFFFFu;
    std::uint32_t high = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const auto word = static_cast<std::uint32_t>(keys[i] >> 32);
      low = word < low ? word : low;
      high = word > high ? word : high;
    }
    const std::uint32_t span = high - low;
    shift = 0;
    while (shift < 32 && (static_cast<std::uint64_t>(span) >> shift) >= (std::uint64_t(1) << bits))
      ++shift;
  }
  const std::size_t buckets = std::size_t(1) << bits;
  counts.assign(buckets + 1, 0);
  std::uint32_t* count = counts.data();
  for (std::size_t i = 0; i < n; ++i)
    ++count[((static_cast<std::uint32_t>(keys[i] >> 32) - low) >> shift) + 1];
  std::uint32_t crowded = 0;
  std::uint32_t start = 0;
  for (std::size_t b = 1; b <= buckets; ++b) {
    crowded = count[b] > crowded ? count[b] : crowded;
    start += count[b];
    count[b] = start;
  }
  if (crowded > counting_sort_crowded_bucket) {
    radix_sort_keys(keys, n, scratch, 0);
    return keys;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const selection_key key = keys[i];
    scratch[count[(static_cast<std::uint32_t>(key >> 32) - low) >> shift]++] = key;
  }
  insertion_sort_keys(scratch, n);  // only inside buckets is anything out of order
  return scratch;
}

// counting_sort_keys_to, the result in keys.
inline void counting_sort_keys(selection_key* keys, std::size_t n, selection_key* scratch,
                               std::vector<std::uint32_t>& counts) {
  const selection_key* sorted = counting_sort_keys_to(keys, n, scratch, counts, false);
  if (sorted != keys) std::copy(sorted, sorted + n, keys);
}

// Sorts distinct keys ascending, in any input order; the result is std::sort's.
inline void sort_keys(std::vector<selection_key>& keys, selection_workspace& ws) {
  ws.sort_scratch.resize(keys.size());
  counting_sort_keys(keys.data(), keys.size(), ws.sort_scratch.data(), ws.sort_counts);
}

// sort_keys without the copy back: the sorted keys are in ws.keys or ws.sort_scratch.
inline const selection_key* sorted_keys(selection_workspace& ws, bool uniform_high_words) {
  ws.sort_scratch.resize(ws.keys.size());
  return counting_sort_keys_to(ws.keys.data(), ws.keys.size(), ws.sort_scratch.data(),
                               ws.sort_counts, uniform_high_words);
}

// Writes the canonical order from the cells in ascending key order (cell_at(i) is the cell of
// the i-th smallest key, all of the sample's cells), the group of each cell and the visible
// count of each group: walking the keys in order, the first keep[g] of group g are its
// smallest, so they are visible; visible cells come first, each side by key (random order) or
// by index (sorted order). Returns the visible count.
template <typename CellAt>
inline std::int64_t partition_sorted_cells(const policy_params& p, std::int64_t n, CellAt cell_at,
                                           const std::int32_t* groups, const std::int64_t* keep,
                                           int num_groups, selection_workspace& ws,
                                           std::int64_t* order) {
  std::int64_t visible = 0;
  for (int g = 0; g < num_groups; ++g) visible += keep[g];
  std::int64_t taken[max_groups] = {};
  if (p.order == visible_order::sorted) {
    ws.flags.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t cell = cell_at(i);
      const std::int32_t g = groups[cell];
      ws.flags[cell] = taken[g]++ < keep[g] ? 1 : 0;
    }
    std::int64_t front = 0;
    std::int64_t back = visible;
    for (std::int64_t cell = 0; cell < n; ++cell) order[ws.flags[cell] ? front++ : back++] = cell;
    return visible;
  }
  // Whether a key is visible is a coin flip, so a branch on it would mispredict about every
  // other key: the place is computed with masks instead. `left[g]` counts down group g's
  // visible places.
  std::int64_t front = 0;
  std::int64_t back = visible;
  if (num_groups == 2) {
    // Two groups (a binary region map, the guided and block policies): the counters stay in
    // registers; through memory, each key would wait for the previous key's store.
    std::int64_t left0 = keep[0];
    std::int64_t left1 = keep[1];
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t cell = cell_at(i);
      const std::int64_t second = groups[cell];  // 0 or 1
      const std::int64_t shown = static_cast<std::int64_t>((second ? left1 : left0) > 0);
      left1 -= shown & second;
      left0 -= shown & (1 - second);
      order[back + ((front - back) & -shown)] = cell;
      front += shown;
      back += 1 - shown;
    }
    return visible;
  }
  std::int64_t left[max_groups] = {};
  for (int g = 0; g < num_groups; ++g) left[g] = keep[g];
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t cell = cell_at(i);
    const std::int32_t g = groups[cell];
    const std::int64_t shown = static_cast<std::int64_t>(left[g] > 0);
    left[g] -= shown;
    order[back + ((front - back) & -shown)] = cell;
    front += shown;
    back += 1 - shown;
  }
  return visible;
}

// Throws the error of cell i's region, which lies outside [0, num_regions).
[[noreturn]] inline void raise_region_error(const policy_params& p, const std::int32_t* regions,
                                            std::int64_t i) {
  data_error bad;
  std::int32_t group;
  steps::cell_group_from_inputs(p, regions, nullptr, i, &group, &bad);
  raise_data_error(bad);
}

// Cells per region of one sample's regions[0, n), which must lie in [0, num_regions) (else the
// error names the first that does not). The check, and the count of up to four regions (one
// pass per region but the last, which has the cells left), are loops the compiler vectorizes; a
// histogram would chain each increment of a region to the store before it.
inline void count_regions(const policy_params& p, const std::int32_t* regions, std::int64_t n,
                          std::int64_t* sizes) {
  const auto limit = static_cast<std::uint32_t>(p.num_regions);
  std::uint32_t outside = 0;
  for (std::int64_t i = 0; i < n; ++i)
    outside |= static_cast<std::uint32_t>(static_cast<std::uint32_t>(regions[i]) >= limit);
  if (outside != 0) {
    for (std::int64_t i = 0; i < n; ++i)
      if (static_cast<std::uint32_t>(regions[i]) >= limit) raise_region_error(p, regions, i);
  }
  if (p.num_regions > 4) {
    for (std::int64_t i = 0; i < n; ++i) ++sizes[regions[i]];
    return;
  }
  std::int64_t counted = 0;
  for (int r = 0; r + 1 < p.num_regions; ++r) {
    std::int64_t count = 0;
    for (std::int64_t i = 0; i < n; ++i) count += regions[i] == r ? 1 : 0;
    sizes[r] = count;
    counted += count;
  }
  sizes[p.num_regions - 1] = n - counted;
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
        if (!steps::cell_group_from_inputs(p, regions, nullptr, i, &ws.groups[i], &bad))
          raise_data_error(bad);
      }
      return;
    case policy_kind::block:
      ws.flags.resize(static_cast<std::size_t>(n));
      steps::place_blocks(ws.flags.data(), grid, p.block, steps::masked_total(p, n), seed,
                          global_sample_index);
      for (std::int64_t i = 0; i < n; ++i) {
        data_error unused;
        steps::cell_group_from_inputs(p, nullptr, ws.flags.data(), i, &ws.groups[i], &unused);
      }
      return;
    case policy_kind::loss_guided:
    case policy_kind::attention_guided: {
      const bool lowest_first =
          p.kind == policy_kind::attention_guided && p.attention == attention_mode::low;
      ws.keys.resize(static_cast<std::size_t>(n));
      steps::sort_score_keys(scores, n, lowest_first, ws.keys.data());
      for (std::int64_t rank = 0; rank < n; ++rank)
        ws.groups[steps::key_index(ws.keys[rank])] = steps::group_of_rank(p, rank, n);
      return;
    }
    default:
      return;
  }
}

}  // namespace detail

namespace steps {

// Canonical order of one sample into order[0, N) on the patch grid; returns the visible count.
// `regions` (per_region, fixed_total) and `scores` (weighted, loss/attention guided) are the
// sample's rows of N values; either may be null when the policy does not read it.
//
// One key per cell, one counting sort of the keys, one pass that splits the sorted keys into the
// visible and masked sides: the same order as choosing each group's smallest keys and sorting
// each side by key.
inline std::int64_t select_sample(const policy_params& p, grid_shape grid,
                                  const std::int32_t* regions, const float* scores,
                                  std::uint64_t seed, std::uint64_t global_sample_index,
                                  selection_workspace& ws, std::int64_t* order) {
  const grid_shape sel = selection_grid(p, grid);
  const std::int64_t n = sel.num_patches();
  const int groups = num_groups(p);
  std::int64_t sizes[max_groups] = {};
  std::int64_t keep[max_groups] = {};
  const std::int32_t* group_of = nullptr;
  if (p.kind == policy_kind::per_region || p.kind == policy_kind::fixed_total) {
    // The regions are the groups (cell_group_from_inputs): they are checked, then counted. With
    // one ratio too, where every id must be 0 (as the CUDA kernels check it).
    detail::count_regions(p, regions, n, sizes);
    if (groups > 1) group_of = regions;
  } else if (groups == 1) {
    sizes[0] = n;
  } else {
    detail::assign_groups(p, sel, regions, scores, seed, global_sample_index, ws);
    group_of = ws.groups.data();
    for (std::int64_t i = 0; i < n; ++i) ++sizes[group_of[i]];
  }
  plan_keep_counts(p, sizes, n, keep);

  auto& keys = ws.keys;
  keys.resize(static_cast<std::size_t>(n));
  if (p.kind == policy_kind::weighted) {
    for (std::int64_t i = 0; i < n; ++i)
      keys[i] = patch_key(p, seed, global_sample_index, static_cast<std::uint32_t>(i), scores[i]);
  } else {
    detail::fill_random_keys(keys.data(), n, seed, global_sample_index);  // patch_key of the rest
  }

  if (p.kind != policy_kind::coarse) {
    const bool order_is_output = groups == 1 && p.order == visible_order::random;
    if (group_of == nullptr && !order_is_output) {
      ws.groups.assign(static_cast<std::size_t>(n), 0);
      group_of = ws.groups.data();
    }
    // The sorting network where the CPU has it (random keys of at most 256 cells), the
    // counting sort otherwise: the same order.
    if (p.kind != policy_kind::weighted && detail::network_sorts(n)) {
      if (order_is_output) {
        if (detail::network_sort_cells(keys.data(), n, order)) return keep[0];
      } else if (groups == 2 && p.order == visible_order::random) {
        if (detail::network_order_two_groups(keys.data(), n, group_of, keep, order))
          return keep[0] + keep[1];
      } else {
        ws.sorted_cells.resize(static_cast<std::size_t>(n));
        const std::int64_t* cells = ws.sorted_cells.data();
        if (detail::network_sort_cells(keys.data(), n, ws.sorted_cells.data()))
          return detail::partition_sorted_cells(
              p, n, [cells](std::int64_t i) { return cells[i]; }, group_of, keep, groups, ws,
              order);
      }
    }
    // Random keys have uniform high words; the weighted ones crowd (weight zero, equal weights).
    const selection_key* sorted = detail::sorted_keys(ws, p.kind != policy_kind::weighted);
    if (order_is_output) {
      for (std::int64_t i = 0; i < n; ++i) order[i] = key_index(sorted[i]);
      return keep[0];
    }
    return detail::partition_sorted_cells(
        p, n, [sorted](std::int64_t i) { return static_cast<std::int64_t>(key_index(sorted[i])); },
        group_of, keep, groups, ws, order);
  }
  const selection_key* sorted = detail::sorted_keys(ws, true);

  // Coarse: every patch inherits its cell's side and key; the low bits become the patch index.
  // Cell c is visible when it is among the first keep[0] sorted keys.
  const std::int64_t patches = grid.num_patches();
  std::vector<std::uint8_t>& cell_visible = ws.flags;
  cell_visible.assign(static_cast<std::size_t>(n), 0);
  std::vector<std::uint32_t> cell_priority(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint32_t cell = key_index(sorted[i]);
    cell_visible[cell] = i < keep[0] ? 1 : 0;
    cell_priority[cell] = static_cast<std::uint32_t>(sorted[i] >> 32);
  }
  std::vector<std::int32_t>& side = ws.groups;
  side.resize(static_cast<std::size_t>(patches));
  keys.resize(static_cast<std::size_t>(patches));
  std::int64_t visible_patches = 0;
  const std::int64_t f = p.coarse_factor;
  for (std::int64_t d = 0; d < grid.depth; ++d)
    for (std::int64_t h = 0; h < grid.height; ++h)
      for (std::int64_t w = 0; w < grid.width; ++w) {
        const std::int64_t cell = sel.index(grid.ndim == 3 ? d / f : 0, h / f, w / f);
        const std::int64_t patch = grid.index(d, h, w);
        keys[patch] = make_key(cell_priority[cell], static_cast<std::uint32_t>(patch));
        side[patch] = cell_visible[cell] ? 0 : 1;
        visible_patches += cell_visible[cell];
      }
  const std::int64_t side_keep[2] = {visible_patches, 0};
  const selection_key* patch_order = detail::sorted_keys(ws, true);
  return detail::partition_sorted_cells(
      p, patches,
      [patch_order](std::int64_t i) {
        return static_cast<std::int64_t>(key_index(patch_order[i]));
      },
      side.data(), side_keep, 2, ws, order);
}

}  // namespace steps

}  // namespace mwm
