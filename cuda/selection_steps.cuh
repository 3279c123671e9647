// select_sample (include/mwm/selection.hpp) cut into the passes the CUDA launcher runs, so that
// every pass is a per-element function that the kernels and the host reference both call:
//
//   1. groups   regions, BEiT blocks (place_blocks, one thread per sample) or, for the guided
//               policies, the rank of each patch's score (a stable sort on rank_sort_key);
//   2. sort     a stable sort of group_sort_key over patches in index order, which lists each
//               group's patches by (priority, index): the order select_sample's nth_element uses;
//   3. plan     the group starts of the sorted row give the group sizes, plan_keep_counts the
//               number kept per group; position - start < keep means visible;
//   4. order    a sort of order_sort_key = (masked, priority, patch) (or (masked, patch) for
//               order=sorted) gives select_sample's canonical order: visible first;
//   5. write    write_position / write_padding_at per position of that order.
//
// Only standard-library and core headers are included, so a host compiler reads this file too
// (tests/cpp/test_cuda_selection.cpp runs the passes on the CPU against select_sample).
#pragma once

#include <cstdint>

#include "mwm/config.hpp"
#include "mwm/generate.hpp"
#include "mwm/grid.hpp"
#include "mwm/keys.hpp"
#include "mwm/outputs.hpp"
#include "mwm/policy.hpp"
#include "mwm/regions.hpp"
#include "mwm/selection.hpp"

namespace mwm {
namespace gpu {

MWM_HOST_DEVICE MWM_INLINE bool ranks_scores(const policy_params& p) {
  return p.kind == policy_kind::loss_guided || p.kind == policy_kind::attention_guided;
}

MWM_HOST_DEVICE MWM_INLINE bool reads_scores(const policy_params& p) {
  return ranks_scores(p) || p.kind == policy_kind::weighted;
}

// ---- pass 1: groups ------------------------------------------------------------------------

// Key of the score rank sort: a stable ascending sort of these keys over patches in index order
// ranks scores highest first (lowest first for attention `low`), ties by lower index, exactly
// as rank_by_score_descending and select_sample's stable re-sort do.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t rank_sort_key(const policy_params& p, float score) {
  const std::uint32_t highest_first = detail::descending_float_bits(score);
  const bool lowest_first =
      p.kind == policy_kind::attention_guided && p.attention == attention_mode::low;
  return lowest_first ? ~highest_first : highest_first;
}

// ---- pass 2: the group sort ----------------------------------------------------------------

// (group, priority); the patch index is not in the key: the sort is stable and its input is in
// index order, which breaks priority ties by index as the full selection key does.
MWM_HOST_DEVICE MWM_INLINE std::uint64_t group_sort_key(std::int32_t group, selection_key key) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(group)) << 32) | (key >> 32);
}

MWM_HOST_DEVICE MWM_INLINE std::int32_t group_of_sort_key(std::uint64_t sort_key) {
  return static_cast<std::int32_t>(sort_key >> 32);
}

MWM_HOST_DEVICE MWM_INLINE std::uint32_t priority_of_sort_key(std::uint64_t sort_key) {
  return static_cast<std::uint32_t>(sort_key);
}

// Bits the radix sort of group_sort_key has to look at: the priority and the group number.
MWM_HOST_DEVICE MWM_INLINE int group_sort_bits(const policy_params& p) {
  int bits = 32;
  while ((std::int64_t(1) << (bits - 32)) < steps::num_groups(p)) ++bits;
  return bits;
}

// ---- pass 3: plan --------------------------------------------------------------------------

// Called for every position of a sample's sorted row with the groups at position - 1 (-1 at
// position 0) and at position; sets starts[g] for every group g that begins here, and at the
// last position starts[g] = n for the groups after it, so that each of the groups + 1 entries
// is written exactly once (no atomics, no initialization).
MWM_HOST_DEVICE MWM_INLINE void mark_group_starts(std::int32_t previous, std::int32_t group,
                                                  std::int64_t position, std::int64_t n, int groups,
                                                  std::int64_t* starts) {
  for (std::int32_t g = previous + 1; g <= group; ++g) starts[g] = position;
  if (position == n - 1) {
    for (std::int32_t g = group + 1; g <= groups; ++g) starts[g] = n;
  }
}

// Visible count of every group from the starts; returns the sample's visible count on the
// selection grid.
MWM_HOST_DEVICE MWM_INLINE std::int64_t plan_sample(const policy_params& p,
                                                    const std::int64_t* starts, std::int64_t n,
                                                    std::int64_t* keep) {
  const int groups = steps::num_groups(p);
  std::int64_t sizes[max_groups] = {};
  for (int g = 0; g < groups; ++g) sizes[g] = starts[g + 1] - starts[g];
  steps::plan_keep_counts(p, sizes, n, keep);
  std::int64_t visible = 0;
  for (int g = 0; g < groups; ++g) {
    if (keep[g] < 0) keep[g] = 0;
    if (keep[g] > sizes[g]) keep[g] = sizes[g];
    visible += keep[g];
  }
  return visible;
}

MWM_HOST_DEVICE MWM_INLINE bool is_masked_position(std::int64_t position, std::int64_t group_start,
                                                   std::int64_t group_keep) {
  return position - group_start >= group_keep;
}

// ---- pass 4: order -------------------------------------------------------------------------

// The patch index sits in the low 31 bits of an order key (grids stay below 2^31 patches).
constexpr int order_index_bits = 31;
constexpr std::uint64_t order_index_mask = (std::uint64_t(1) << order_index_bits) - 1;

// Order key of a selection cell without its patch bits: (masked, priority) for random order,
// (masked) for sorted order.
MWM_HOST_DEVICE MWM_INLINE std::uint64_t cell_order_state(const policy_params& p, bool masked,
                                                          std::uint32_t priority) {
  const auto side = static_cast<std::uint64_t>(masked ? 1 : 0);
  if (p.order == visible_order::sorted) return side << order_index_bits;
  return (side << 63) | (static_cast<std::uint64_t>(priority) << order_index_bits);
}

MWM_HOST_DEVICE MWM_INLINE int order_sort_bits(const policy_params& p) {
  return p.order == visible_order::sorted ? order_index_bits + 1 : 64;
}

// Selection cell of a patch: itself, or its coarse cell for the `coarse` policy, where every
// patch inherits its cell's side and priority and keeps its own index as the tie-break.
MWM_HOST_DEVICE MWM_INLINE std::int64_t cell_of_patch(const policy_params& p, grid_shape grid,
                                                      grid_shape sel, std::int64_t patch) {
  if (p.kind != policy_kind::coarse) return patch;
  const patch_coordinates at = steps::coordinates_of(grid, patch);
  const std::int64_t f = p.coarse_factor;
  return sel.index(grid.ndim == 3 ? at.d / f : 0, at.h / f, at.w / f);
}

MWM_HOST_DEVICE MWM_INLINE std::uint64_t order_sort_key(std::uint64_t cell_state,
                                                        std::int64_t patch) {
  return cell_state | static_cast<std::uint64_t>(patch);
}

MWM_HOST_DEVICE MWM_INLINE std::int64_t patch_of_order_key(std::uint64_t order_key) {
  return static_cast<std::int64_t>(order_key & order_index_mask);
}

// Visible patches on the patch grid from visible cells on the selection grid.
MWM_HOST_DEVICE MWM_INLINE std::int64_t visible_patches(grid_shape grid, grid_shape sel,
                                                        std::int64_t visible_cells) {
  return visible_cells * (grid.num_patches() / sel.num_patches());
}

// ---- pass 5: write -------------------------------------------------------------------------

// Everything position `position` of a sample's order writes, padding included (index widths
// never exceed n, so the n positions cover every padded entry).
MWM_HOST_DEVICE MWM_INLINE void write_order_position(const sample_outputs& row, std::int64_t n,
                                                     std::int64_t visible, std::int64_t position,
                                                     std::int64_t patch) {
  steps::write_position(row, n, visible, position, patch);
  steps::write_padding_at(row, n, visible, position);
}

}  // namespace gpu
}  // namespace mwm
