// Masks for grids that fit one thread block: one block per sample runs every pass of
// selection_steps.cuh in shared memory, with cub::BlockRadixSort for the three sorts.
#include <cub/block/block_radix_sort.cuh>

#include "mask_args.cuh"
#include "mwm_cuda.hpp"

namespace mwm {
namespace gpu {
namespace {

template <int Threads, int Items>
__global__ void __launch_bounds__(Threads) select_in_block_kernel(const mask_args a) {
  constexpr int capacity = Threads * Items;
  using rank_sort = CUB_NS_QUALIFIER::BlockRadixSort<std::uint32_t, Threads, Items, std::int32_t>;
  using group_sort = CUB_NS_QUALIFIER::BlockRadixSort<std::uint64_t, Threads, Items, std::int32_t>;
  using order_sort = CUB_NS_QUALIFIER::BlockRadixSort<std::uint64_t, Threads, Items>;
  union sort_storage_type {
    typename rank_sort::TempStorage rank;
    typename group_sort::TempStorage group;
    typename order_sort::TempStorage order;
  };
  __shared__ sort_storage_type sort_storage;
  __shared__ std::uint8_t group_at[capacity];  // per cell, then per sorted position
  __shared__ std::uint64_t cell_state[capacity];
  __shared__ std::int64_t starts[max_groups + 1];
  __shared__ std::int64_t keep[max_groups];
  __shared__ std::int64_t visible_cells;

  const policy_params& p = a.params;
  const std::int64_t b = blockIdx.x;
  const std::uint64_t sample = steps::global_sample_index(a.sample_index, a.offset, b);
  const std::int64_t ns = a.sel.num_patches();
  const std::int64_t n = a.grid.num_patches();
  const int t = static_cast<int>(threadIdx.x);

  // Pass 1: groups. Items are blocked: thread t holds cells t * Items + j.
  if (ranks_scores(p)) {
    std::uint32_t keys[Items];
    std::int32_t cells[Items];
    for (int j = 0; j < Items; ++j) {
      const int i = t * Items + j;
      cells[j] = i;
      // Padding sorts last: its key is the largest and it comes last in a stable sort.
      keys[j] = i < ns ? rank_sort_key(p, sample_score(a, b, i)) : ~std::uint32_t(0);
    }
    rank_sort(sort_storage.rank).Sort(keys, cells);
    for (int j = 0; j < Items; ++j) {
      const int rank = t * Items + j;
      if (rank < ns)
        group_at[cells[j]] = static_cast<std::uint8_t>(steps::group_of_rank(p, rank, ns));
    }
  } else {
    for (std::int64_t i = t; i < ns; i += Threads)
      group_at[i] = static_cast<std::uint8_t>(input_group(a, b, i));
  }
  __syncthreads();

  // Pass 2: sort by (group, priority), stable over cells in index order.
  std::uint64_t keys[Items];
  std::int32_t cells[Items];
  for (int j = 0; j < Items; ++j) {
    const int i = t * Items + j;
    cells[j] = i;
    keys[j] = i < ns ? group_sort_key(group_at[i], cell_key(a, b, sample, i)) : ~std::uint64_t(0);
  }
  __syncthreads();  // group_at is rewritten below
  group_sort(sort_storage.group).Sort(keys, cells, 0, group_sort_bits(p));

  // Pass 3: group starts, then the plan.
  for (int j = 0; j < Items; ++j) {
    const int position = t * Items + j;
    if (position < ns) group_at[position] = static_cast<std::uint8_t>(group_of_sort_key(keys[j]));
  }
  __syncthreads();
  for (int j = 0; j < Items; ++j) {
    const int position = t * Items + j;
    if (position < ns) {
      mark_group_starts(position > 0 ? group_at[position - 1] : -1, group_at[position], position,
                        ns, steps::num_groups(p), starts);
    }
  }
  __syncthreads();
  if (t == 0) visible_cells = plan_sample(p, starts, ns, keep);
  __syncthreads();

  // Pass 4: side and priority per cell, then the order sort over patches.
  for (int j = 0; j < Items; ++j) {
    const int position = t * Items + j;
    if (position < ns) {
      const std::int32_t g = group_of_sort_key(keys[j]);
      cell_state[cells[j]] = cell_order_state(p, is_masked_position(position, starts[g], keep[g]),
                                              priority_of_sort_key(keys[j]));
    }
  }
  __syncthreads();
  for (int j = 0; j < Items; ++j) {
    const int i = t * Items + j;
    keys[j] = i < n ? order_sort_key(cell_state[cell_of_patch(p, a.grid, a.sel, i)], i)
                    : ~std::uint64_t(0);
  }
  order_sort(sort_storage.order).SortBlockedToStriped(keys, 0, order_sort_bits(p));

  // Pass 5: striped, so that neighbouring threads write neighbouring positions.
  const sample_outputs row = steps::sample_rows(a.out, a.widths, n, b);
  const std::int64_t visible = visible_patches(a.grid, a.sel, visible_cells);
  for (int j = 0; j < Items; ++j) {
    const int position = j * Threads + t;
    if (position < n) write_order_position(row, n, visible, position, patch_of_order_key(keys[j]));
  }
  if (t == 0 && a.out.num_masked) a.out.num_masked[b] = n - visible;
}

template <int Threads, int Items>
void launch_tier(const mask_args& a, std::int64_t batch, cudaStream_t stream) {
  select_in_block_kernel<Threads, Items>
      <<<static_cast<unsigned int>(batch), Threads, 0, stream>>>(a);
  check_launch("select_in_block_kernel");
}

}  // namespace

// Two tiers keep the compile time down: 128 threads x 4 items (ViT 14x14, SparK 7x7, 8x8x8
// volumes) and 256 x 8 for up to max_patches_in_block.
void launch_masks_in_blocks(const mask_args& a, std::int64_t batch, cudaStream_t stream) {
  static_assert(large_tier_patches == max_patches_in_block,
                "the largest tier must hold a block's grid");
  if (tier_for(a.grid.num_patches()) == block_tier::small_128x4) {
    launch_tier<128, 4>(a, batch, stream);
  } else {
    launch_tier<256, 8>(a, batch, stream);
  }
}

}  // namespace gpu
}  // namespace mwm
