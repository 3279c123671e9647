// Host reference of the CUDA launcher's mask passes: the same per-element functions as the
// kernels (selection_steps.cuh), with std::stable_sort over the same key bits standing in for
// CUB's radix sorts (which are stable and sort the bits [0, end_bit) only). Tests compare it
// with select_sample; a GPU test compares the kernels with it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "launch_plans.hpp"
#include "selection_steps.cuh"

namespace mwm {
namespace gpu {
namespace reference {

// Stable ascending sort of positions [0, keys.size()) by keys[i] & mask: what a radix sort
// over the low `bits` bits does to keys paired with their input positions.
template <typename Key>
std::vector<std::int64_t> radix_sort_positions(const std::vector<Key>& keys, int bits) {
  const Key mask =
      bits >= static_cast<int>(8 * sizeof(Key)) ? ~Key(0) : static_cast<Key>((Key(1) << bits) - 1);
  std::vector<std::int64_t> positions(keys.size());
  std::iota(positions.begin(), positions.end(), std::int64_t(0));
  std::stable_sort(positions.begin(), positions.end(), [&](std::int64_t a, std::int64_t b) {
    return (keys[a] & mask) < (keys[b] & mask);
  });
  return positions;
}

// Sorted positions of keys padded to `capacity` entries with ~0, as a thread block of that
// many items sorts them; checks that the padding sorted last (it is the largest key and comes
// last in a stable sort) and returns the first keys.size() positions.
template <typename Key>
std::vector<std::int64_t> block_sort_positions(std::vector<Key> keys, int bits,
                                               std::int64_t capacity) {
  const std::size_t real = keys.size();
  if (capacity > static_cast<std::int64_t>(real))
    keys.resize(static_cast<std::size_t>(capacity), static_cast<Key>(~Key(0)));
  auto positions = radix_sort_positions(keys, bits);
  for (std::size_t i = real; i < positions.size(); ++i) {
    if (positions[i] < static_cast<std::int64_t>(real))
      throw error("mwm: block sort stand-in: padding sorted before a real key");
  }
  positions.resize(real);
  return positions;
}

// Pass 1: the group of every cell of the selection grid.
inline std::vector<std::int32_t> groups_pass(const policy_params& p, grid_shape sel,
                                             const std::int32_t* regions, const float* scores,
                                             std::uint64_t seed, std::uint64_t sample,
                                             std::int64_t capacity = 0) {
  const std::int64_t ns = sel.num_patches();
  std::vector<std::int32_t> group(static_cast<std::size_t>(ns), 0);
  if (ranks_scores(p)) {
    std::vector<std::uint32_t> keys(static_cast<std::size_t>(ns));
    for (std::int64_t i = 0; i < ns; ++i) keys[i] = rank_sort_key(p, scores[i]);
    const auto ranked = block_sort_positions(keys, 32, capacity);
    for (std::int64_t rank = 0; rank < ns; ++rank)
      group[ranked[rank]] = steps::group_of_rank(p, rank, ns);
  } else {
    std::vector<std::uint8_t> blocked;
    if (p.kind == policy_kind::block) {
      blocked.resize(static_cast<std::size_t>(ns));
      steps::place_blocks(blocked.data(), sel, p.block, steps::masked_total(p, ns), seed, sample);
    }
    for (std::int64_t i = 0; i < ns; ++i) {
      data_error bad;
      if (!steps::cell_group_from_inputs(p, regions, blocked.data(), i, &group[i], &bad))
        raise_data_error(bad);
    }
  }
  return group;
}

// Passes 1 to 4 for one sample: the canonical order into order[0, N); returns the visible count.
// `capacity` (at least N) pads every sort as the block tier of that many items does.
inline std::int64_t select_sample_in_passes(const policy_params& p, grid_shape grid,
                                            const std::int32_t* regions, const float* scores,
                                            std::uint64_t seed, std::uint64_t sample,
                                            std::int64_t* order, std::int64_t capacity = 0) {
  const grid_shape sel = steps::selection_grid(p, grid);
  const std::int64_t ns = sel.num_patches();
  const std::int64_t n = grid.num_patches();
  const int groups = steps::num_groups(p);
  const auto group = groups_pass(p, sel, regions, scores, seed, sample, capacity);

  std::vector<std::uint64_t> group_keys(static_cast<std::size_t>(ns));
  for (std::int64_t i = 0; i < ns; ++i) {
    const float score = scores ? scores[i] : 0.0f;
    group_keys[i] = group_sort_key(
        group[i], steps::patch_key(p, seed, sample, static_cast<std::uint32_t>(i), score));
  }
  const auto by_group = block_sort_positions(group_keys, group_sort_bits(p), capacity);

  std::vector<std::int64_t> starts(static_cast<std::size_t>(groups) + 1);
  for (std::int64_t position = 0; position < ns; ++position) {
    const std::int32_t previous =
        position > 0 ? group_of_sort_key(group_keys[by_group[position - 1]]) : -1;
    mark_group_starts(previous, group_of_sort_key(group_keys[by_group[position]]), position, ns,
                      groups, starts.data());
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
  const auto by_order = block_sort_positions(order_keys, order_sort_bits(p), capacity);
  for (std::int64_t position = 0; position < n; ++position)
    order[position] = patch_of_order_key(order_keys[by_order[position]]);
  return visible_patches(grid, sel, visible_cells);
}

// Stable sort of every segment [offsets[s], offsets[s + 1]) of `keys` by its low `bits`, with
// `values` moved along: cub::DeviceSegmentedRadixSort::SortPairs on the host.
template <typename Key>
void segmented_sort_pairs(std::vector<Key>& keys, std::vector<std::int32_t>& values,
                          const std::vector<std::int32_t>& offsets, int bits) {
  for (std::size_t s = 0; s + 1 < offsets.size(); ++s) {
    const std::vector<Key> segment(keys.begin() + offsets[s], keys.begin() + offsets[s + 1]);
    const auto positions = radix_sort_positions(segment, bits);
    const std::vector<std::int32_t> moved(values.begin() + offsets[s],
                                          values.begin() + offsets[s + 1]);
    for (std::size_t i = 0; i < positions.size(); ++i) {
      keys[offsets[s] + i] = segment[positions[i]];
      values[offsets[s] + i] = moved[positions[i]];
    }
  }
}

// launch_masks_segmented with its kernels' index arithmetic, on the host: the blocks of every
// sample placed first, then per chunk of plan_chunks(batch, n, chunk_elements) the element
// passes over chunk-local e = s * Ns + i (sample first + s), the segmented sorts over the
// chunk's per-sample offsets, and the write of its samples. Returns the number of chunks run.
inline std::int64_t generate_masks_in_chunks(const mask_request& request, const batch_outputs& out,
                                             std::int64_t chunk_elements) {
  const policy_params p = make_policy_params(request.policy, request.grid);
  const grid_shape grid = request.grid;
  const grid_shape sel = steps::selection_grid(p, grid);
  const index_widths widths = output_widths(request.policy, grid);
  const std::int64_t n = grid.num_patches(), ns = sel.num_patches(), batch = request.batch;
  const int groups = steps::num_groups(p);
  std::vector<std::uint8_t> blocked(
      static_cast<std::size_t>(p.kind == policy_kind::block ? batch * ns : 0));
  for (std::int64_t b = 0; p.kind == policy_kind::block && b < batch; ++b) {
    steps::place_blocks(blocked.data() + b * ns, sel, p.block, steps::masked_total(p, ns),
                        request.seed,
                        steps::global_sample_index(request.sample_index, request.offset, b));
  }
  const chunk_plan chunks = plan_chunks(batch, n, chunk_elements);
  for (std::int64_t chunk = 0; chunk < chunks.chunks; ++chunk) {
    const std::int64_t first = chunk_first(chunks, chunk);
    const std::int64_t samples = chunk_samples(chunks, batch, chunk);
    std::vector<std::int32_t> cell_offsets(static_cast<std::size_t>(samples + 1));
    std::vector<std::int32_t> patch_offsets(cell_offsets.size());
    for (std::int64_t s = 0; s <= samples; ++s) {
      cell_offsets[s] = static_cast<std::int32_t>(s * ns);
      patch_offsets[s] = static_cast<std::int32_t>(s * n);
    }
    const std::int64_t cells = samples * ns, patches = samples * n;
    auto sample_of = [&](std::int64_t e) {
      return steps::global_sample_index(request.sample_index, request.offset, first + e / ns);
    };
    std::vector<std::uint8_t> ranked_groups;
    std::vector<std::int32_t> values(static_cast<std::size_t>(cells));
    if (ranks_scores(p)) {
      std::vector<std::uint32_t> rank_keys(static_cast<std::size_t>(cells));
      for (std::int64_t e = 0; e < cells; ++e) {
        rank_keys[e] = rank_sort_key(p, request.scores[(first + e / ns) * n + e % ns]);
        values[e] = static_cast<std::int32_t>(e % ns);
      }
      segmented_sort_pairs(rank_keys, values, cell_offsets, 32);
      ranked_groups.resize(static_cast<std::size_t>(cells));
      for (std::int64_t e = 0; e < cells; ++e)
        ranked_groups[e - e % ns + values[e]] =
            static_cast<std::uint8_t>(steps::group_of_rank(p, e % ns, ns));
    }
    std::vector<std::uint64_t> keys(static_cast<std::size_t>(cells));
    for (std::int64_t e = 0; e < cells; ++e) {
      const std::int64_t b = first + e / ns, i = e % ns;
      std::int32_t group = 0;
      if (!ranked_groups.empty()) {
        group = ranked_groups[e];
      } else {
        data_error bad;
        if (!steps::cell_group_from_inputs(p, request.regions ? request.regions + b * n : nullptr,
                                           blocked.empty() ? nullptr : blocked.data() + b * ns, i,
                                           &group, &bad))
          raise_data_error(bad);
      }
      const float score = p.kind == policy_kind::weighted ? request.scores[b * n + i] : 0.0f;
      keys[e] = group_sort_key(group, steps::patch_key(p, request.seed, sample_of(e),
                                                       static_cast<std::uint32_t>(i), score));
      values[e] = static_cast<std::int32_t>(i);
    }
    segmented_sort_pairs(keys, values, cell_offsets, group_sort_bits(p));
    std::vector<std::int64_t> starts(static_cast<std::size_t>(samples * (groups + 1)));
    for (std::int64_t e = 0; e < cells; ++e) {
      const std::int64_t position = e % ns;
      mark_group_starts(position > 0 ? group_of_sort_key(keys[e - 1]) : -1,
                        group_of_sort_key(keys[e]), position, ns, groups,
                        starts.data() + (e / ns) * (groups + 1));
    }
    std::vector<std::int64_t> keep(static_cast<std::size_t>(samples * groups));
    std::vector<std::int64_t> visible(static_cast<std::size_t>(samples));
    for (std::int64_t s = 0; s < samples; ++s)
      visible[s] = plan_sample(p, starts.data() + s * (groups + 1), ns, keep.data() + s * groups);
    std::vector<std::uint64_t> cell_state(static_cast<std::size_t>(cells));
    for (std::int64_t e = 0; e < cells; ++e) {
      const std::int64_t s = e / ns;
      const std::int32_t g = group_of_sort_key(keys[e]);
      cell_state[s * ns + values[e]] = cell_order_state(
          p, is_masked_position(e % ns, starts[s * (groups + 1) + g], keep[s * groups + g]),
          priority_of_sort_key(keys[e]));
    }
    std::vector<std::uint64_t> order_keys(static_cast<std::size_t>(patches));
    std::vector<std::int32_t> unused(static_cast<std::size_t>(patches));
    for (std::int64_t e = 0; e < patches; ++e)
      order_keys[e] =
          order_sort_key(cell_state[(e / n) * ns + cell_of_patch(p, grid, sel, e % n)], e % n);
    segmented_sort_pairs(order_keys, unused, patch_offsets, order_sort_bits(p));
    for (std::int64_t e = 0; e < patches; ++e) {
      const std::int64_t s = e / n;
      const std::int64_t shown = visible_patches(grid, sel, visible[s]);
      write_order_position(steps::sample_rows(out, widths, n, first + s), n, shown, e % n,
                           patch_of_order_key(order_keys[e]));
      if (e % n == 0 && out.num_masked) out.num_masked[first + s] = n - shown;
    }
  }
  return chunks.chunks;
}

}  // namespace reference
}  // namespace gpu
}  // namespace mwm
