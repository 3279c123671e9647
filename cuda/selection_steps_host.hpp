// Host reference of the CUDA launcher's mask passes: the same per-element functions as the
// kernels (selection_steps.cuh), with std::stable_sort over the same key bits standing in for
// CUB's radix sorts (which are stable and sort the bits [0, end_bit) only). Tests compare it
// with select_sample; a GPU test compares the kernels with it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "selection_steps.cuh"

namespace mwm {
namespace gpu {
namespace reference {

// Stable ascending sort of positions [0, keys.size()) by keys[i] & mask: what a radix sort
// over the low `bits` bits does to keys paired with their input positions.
template <typename Key>
std::vector<std::int64_t> radix_sort_positions(const std::vector<Key>& keys, int bits) {
  const Key mask = bits >= static_cast<int>(8 * sizeof(Key))
                       ? ~Key(0)
                       : static_cast<Key>((Key(1) << bits) - 1);
  std::vector<std::int64_t> positions(keys.size());
  std::iota(positions.begin(), positions.end(), std::int64_t(0));
  std::stable_sort(positions.begin(), positions.end(), [&](std::int64_t a, std::int64_t b) {
    return (keys[a] & mask) < (keys[b] & mask);
  });
  return positions;
}

// Pass 1: the group of every cell of the selection grid.
inline std::vector<std::int32_t> groups_pass(const policy_params& p, grid_shape sel,
                                             const std::int32_t* regions, const float* scores,
                                             std::uint64_t seed, std::uint64_t sample) {
  const std::int64_t ns = sel.num_patches();
  std::vector<std::int32_t> group(static_cast<std::size_t>(ns), 0);
  if (ranks_scores(p)) {
    std::vector<std::uint32_t> keys(static_cast<std::size_t>(ns));
    for (std::int64_t i = 0; i < ns; ++i) keys[i] = rank_sort_key(p, scores[i]);
    const auto ranked = radix_sort_positions(keys, 32);
    for (std::int64_t rank = 0; rank < ns; ++rank)
      group[ranked[rank]] = group_of_rank(p, rank, ns);
  } else {
    std::vector<std::uint8_t> blocked;
    if (p.kind == policy_kind::block) {
      blocked.resize(static_cast<std::size_t>(ns));
      place_blocks(blocked.data(), sel, p.block, masked_total(p, ns), seed, sample);
    }
    for (std::int64_t i = 0; i < ns; ++i) {
      data_error bad;
      if (!cell_group_from_inputs(p, regions, blocked.data(), i, &group[i], &bad))
        raise_data_error(bad);
    }
  }
  return group;
}

// Passes 1 to 4 for one sample: the canonical order into order[0, N); returns the visible count.
inline std::int64_t select_sample_in_passes(const policy_params& p, grid_shape grid,
                                            const std::int32_t* regions, const float* scores,
                                            std::uint64_t seed, std::uint64_t sample,
                                            std::int64_t* order) {
  const grid_shape sel = selection_grid(p, grid);
  const std::int64_t ns = sel.num_patches();
  const std::int64_t n = grid.num_patches();
  const int groups = num_groups(p);
  const auto group = groups_pass(p, sel, regions, scores, seed, sample);

  std::vector<std::uint64_t> group_keys(static_cast<std::size_t>(ns));
  for (std::int64_t i = 0; i < ns; ++i) {
    const float score = scores ? scores[i] : 0.0f;
    group_keys[i] = group_sort_key(
        group[i], patch_key(p, seed, sample, static_cast<std::uint32_t>(i), score));
  }
  const auto by_group = radix_sort_positions(group_keys, group_sort_bits(p));

  std::vector<std::int64_t> starts(static_cast<std::size_t>(groups) + 1);
  for (std::int64_t position = 0; position < ns; ++position) {
    const std::int32_t previous =
        position > 0 ? group_of_sort_key(group_keys[by_group[position - 1]]) : -1;
    mark_group_starts(previous, group_of_sort_key(group_keys[by_group[position]]), position,
                      ns, groups, starts.data());
  }
  std::int64_t keep[max_groups] = {};
  const std::int64_t visible_cells = plan_sample(p, starts.data(), ns, keep);

  std::vector<std::uint64_t> cell_state(static_cast<std::size_t>(ns));
  for (std::int64_t position = 0; position < ns; ++position) {
    const std::uint64_t key = group_keys[by_group[position]];
    const std::int32_t g = group_of_sort_key(key);
    cell_state[by_group[position]] = cell_order_state(
        p, is_masked_position(position, starts[g], keep[g]), priority_of_sort_key(key));
  }

  std::vector<std::uint64_t> order_keys(static_cast<std::size_t>(n));
  for (std::int64_t patch = 0; patch < n; ++patch)
    order_keys[patch] = order_sort_key(cell_state[cell_of_patch(p, grid, sel, patch)], patch);
  const auto by_order = radix_sort_positions(order_keys, order_sort_bits(p));
  for (std::int64_t position = 0; position < n; ++position)
    order[position] = patch_of_order_key(order_keys[by_order[position]]);
  return visible_patches(grid, sel, visible_cells);
}

}  // namespace reference
}  // namespace gpu
}  // namespace mwm
