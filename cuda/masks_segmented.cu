// Masks for grids larger than a thread block: the passes of selection_steps.cuh as element-wise
// kernels over chunks of samples, with cub::DeviceSegmentedRadixSort (one segment per sample)
// for the sorts. Chunks bound the workspace and keep CUB's int item counts in range; the host
// loops over chunks, never over samples.
#include <cub/device/device_segmented_radix_sort.cuh>

#include "mask_args.cuh"
#include "mwm_cuda.hpp"

namespace mwm {
namespace gpu {
namespace {

using CUB_NS_QUALIFIER::DeviceSegmentedRadixSort;
using CUB_NS_QUALIFIER::DoubleBuffer;

constexpr int element_threads = 256;

// The per-chunk buffers, laid out by one function for sizing and for use.
struct segmented_layout {
  std::int64_t chunk_samples = 0;
  std::int32_t* cell_offsets = nullptr;         // (chunk + 1) multiples of Ns
  std::int32_t* patch_offsets = nullptr;        // (chunk + 1) multiples of N
  std::uint64_t* keys[2] = {nullptr, nullptr};  // chunk * N: rank, group and order keys
  std::int32_t* cells[2] = {nullptr, nullptr};  // chunk * Ns: cell indices sorted with them
  std::uint8_t* groups = nullptr;               // chunk * Ns: groups of the guided kinds
  std::uint64_t* cell_state = nullptr;          // chunk * Ns
  std::int64_t* starts = nullptr;               // chunk * (groups + 1)
  std::int64_t* keep = nullptr;                 // chunk * groups
  std::int64_t* visible = nullptr;              // chunk
  void* sort_storage = nullptr;
  std::size_t sort_storage_bytes = 0;
  std::size_t total_bytes = 0;
};

// CUB's scratch for the largest of the three sorts of a full chunk.
std::size_t sort_storage_bytes(std::int64_t chunk, std::int64_t ns, std::int64_t n) {
  const int cell_items = static_cast<int>(chunk * ns);
  const int patch_items = static_cast<int>(chunk * n);
  std::size_t rank_bytes = 0, group_bytes = 0, order_bytes = 0;
  DoubleBuffer<std::uint32_t> rank_keys(nullptr, nullptr);
  DoubleBuffer<std::uint64_t> wide_keys(nullptr, nullptr);
  DoubleBuffer<std::int32_t> cells(nullptr, nullptr);
  const std::int32_t* offsets = nullptr;
  check_cuda(DeviceSegmentedRadixSort::SortPairs(nullptr, rank_bytes, rank_keys, cells, cell_items,
                                                 static_cast<int>(chunk), offsets, offsets + 1),
             "DeviceSegmentedRadixSort (size query)");
  check_cuda(DeviceSegmentedRadixSort::SortPairs(nullptr, group_bytes, wide_keys, cells, cell_items,
                                                 static_cast<int>(chunk), offsets, offsets + 1),
             "DeviceSegmentedRadixSort (size query)");
  check_cuda(DeviceSegmentedRadixSort::SortKeys(nullptr, order_bytes, wide_keys, patch_items,
                                                static_cast<int>(chunk), offsets, offsets + 1),
             "DeviceSegmentedRadixSort (size query)");
  std::size_t bytes = rank_bytes > group_bytes ? rank_bytes : group_bytes;
  return bytes > order_bytes ? bytes : order_bytes;
}

segmented_layout lay_out(const mask_args& a, std::int64_t batch, void* base) {
  segmented_layout l;
  const std::int64_t n = a.grid.num_patches();
  const std::int64_t ns = a.sel.num_patches();
  const int groups = steps::num_groups(a.params);
  // About 2^20 patches per chunk: some 50 MB of workspace at most.
  l.chunk_samples = plan_chunks(batch, n).samples;
  const std::int64_t c = l.chunk_samples;
  workspace_carver carve(base);
  l.cell_offsets = carve.take<std::int32_t>(c + 1);
  l.patch_offsets = carve.take<std::int32_t>(c + 1);
  for (auto& k : l.keys) k = carve.take<std::uint64_t>(c * n);
  for (auto& v : l.cells) v = carve.take<std::int32_t>(c * ns);
  l.groups = carve.take<std::uint8_t>(c * ns);
  l.cell_state = carve.take<std::uint64_t>(c * ns);
  l.starts = carve.take<std::int64_t>(c * (groups + 1));
  l.keep = carve.take<std::int64_t>(c * groups);
  l.visible = carve.take<std::int64_t>(c);
  l.sort_storage_bytes = sort_storage_bytes(c, ns, n);
  l.sort_storage = carve.take_bytes(l.sort_storage_bytes);
  l.total_bytes = carve.used();
  return l;
}

__global__ void segment_offsets_kernel(std::int64_t chunk, std::int64_t ns, std::int64_t n,
                                       std::int32_t* cell_offsets, std::int32_t* patch_offsets) {
  for (std::int64_t s = blockIdx.x * blockDim.x + threadIdx.x; s <= chunk;
       s += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    cell_offsets[s] = static_cast<std::int32_t>(s * ns);
    patch_offsets[s] = static_cast<std::int32_t>(s * n);
  }
}

// Chunk-local element e = s * Ns + i belongs to sample first + s.
#define MWM_FOR_ELEMENTS(e, count)                                                        \
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       e < (count); e += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

// Pass 1, guided kinds: rank keys of the scores.
__global__ void rank_keys_kernel(const mask_args a, std::int64_t first, std::int64_t count,
                                 std::uint32_t* keys, std::int32_t* cells) {
  const std::int64_t ns = a.sel.num_patches();
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t i = e % ns;
    keys[e] = rank_sort_key(a.params, sample_score(a, first + e / ns, i));
    cells[e] = static_cast<std::int32_t>(i);
  }
}

__global__ void groups_of_ranks_kernel(const mask_args a, std::int64_t count,
                                       const std::int32_t* ranked_cells, std::uint8_t* groups) {
  const std::int64_t ns = a.sel.num_patches();
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t row = e - e % ns;
    groups[row + ranked_cells[e]] =
        static_cast<std::uint8_t>(steps::group_of_rank(a.params, e % ns, ns));
  }
}

// Pass 2: group sort keys; `groups` is the chunk's row of ranked groups (guided kinds) or null.
__global__ void group_keys_kernel(const mask_args a, std::int64_t first, std::int64_t count,
                                  const std::uint8_t* groups, std::uint64_t* keys,
                                  std::int32_t* cells) {
  const std::int64_t ns = a.sel.num_patches();
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t b = first + e / ns;
    const std::int64_t i = e % ns;
    const std::uint64_t sample = steps::global_sample_index(a.sample_index, a.offset, b);
    const std::int32_t group = groups ? groups[e] : input_group(a, b, i);
    keys[e] = group_sort_key(group, cell_key(a, b, sample, i));
    cells[e] = static_cast<std::int32_t>(i);
  }
}

// Pass 3: group starts of every sample, then its plan.
__global__ void group_starts_kernel(const mask_args a, std::int64_t count,
                                    const std::uint64_t* sorted_keys, std::int64_t* starts) {
  const std::int64_t ns = a.sel.num_patches();
  const int groups = steps::num_groups(a.params);
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t position = e % ns;
    const std::int32_t previous = position > 0 ? group_of_sort_key(sorted_keys[e - 1]) : -1;
    mark_group_starts(previous, group_of_sort_key(sorted_keys[e]), position, ns, groups,
                      starts + (e / ns) * (groups + 1));
  }
}

__global__ void plan_kernel(const mask_args a, std::int64_t samples, const std::int64_t* starts,
                            std::int64_t* keep, std::int64_t* visible) {
  const int groups = steps::num_groups(a.params);
  MWM_FOR_ELEMENTS(s, samples) {
    visible[s] =
        plan_sample(a.params, starts + s * (groups + 1), a.sel.num_patches(), keep + s * groups);
  }
}

// Pass 4: cell states from the group-sorted rows, then order keys over patches.
__global__ void cell_state_kernel(const mask_args a, std::int64_t count,
                                  const std::uint64_t* sorted_keys,
                                  const std::int32_t* sorted_cells, const std::int64_t* starts,
                                  const std::int64_t* keep, std::uint64_t* cell_state) {
  const std::int64_t ns = a.sel.num_patches();
  const int groups = steps::num_groups(a.params);
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t s = e / ns;
    const std::int32_t g = group_of_sort_key(sorted_keys[e]);
    const bool masked =
        is_masked_position(e % ns, starts[s * (groups + 1) + g], keep[s * groups + g]);
    cell_state[s * ns + sorted_cells[e]] =
        cell_order_state(a.params, masked, priority_of_sort_key(sorted_keys[e]));
  }
}

__global__ void order_keys_kernel(const mask_args a, std::int64_t count,
                                  const std::uint64_t* cell_state, std::uint64_t* keys) {
  const std::int64_t n = a.grid.num_patches();
  const std::int64_t ns = a.sel.num_patches();
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t patch = e % n;
    keys[e] = order_sort_key(
        cell_state[(e / n) * ns + cell_of_patch(a.params, a.grid, a.sel, patch)], patch);
  }
}

// Pass 5.
__global__ void write_kernel(const mask_args a, std::int64_t first, std::int64_t count,
                             const std::uint64_t* sorted_keys, const std::int64_t* visible_cells) {
  const std::int64_t n = a.grid.num_patches();
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t s = e / n;
    const std::int64_t position = e % n;
    const std::int64_t visible = visible_patches(a.grid, a.sel, visible_cells[s]);
    const sample_outputs row = steps::sample_rows(a.out, a.widths, n, first + s);
    write_order_position(row, n, visible, position, patch_of_order_key(sorted_keys[e]));
    if (position == 0 && a.out.num_masked) a.out.num_masked[first + s] = n - visible;
  }
}

#undef MWM_FOR_ELEMENTS

}  // namespace

std::size_t segmented_masks_workspace_bytes(const mask_args& a, std::int64_t batch) {
  return lay_out(a, batch, nullptr).total_bytes;
}

void launch_masks_segmented(const mask_args& a, std::int64_t batch, void* workspace,
                            cudaStream_t stream) {
  const segmented_layout l = lay_out(a, batch, workspace);
  const std::int64_t n = a.grid.num_patches();
  const std::int64_t ns = a.sel.num_patches();
  const int threads = element_threads;
  segment_offsets_kernel<<<blocks_for(l.chunk_samples + 1, threads), threads, 0, stream>>>(
      l.chunk_samples, ns, n, l.cell_offsets, l.patch_offsets);
  check_launch("segment_offsets_kernel");
  std::size_t storage_bytes = l.sort_storage_bytes;

  const chunk_plan chunks = plan_chunks(batch, n);
  for (std::int64_t chunk = 0; chunk < chunks.chunks; ++chunk) {
    const std::int64_t first = chunk_first(chunks, chunk);
    const std::int64_t samples = chunk_samples(chunks, batch, chunk);
    const std::int64_t cells = samples * ns;
    const std::int64_t patches = samples * n;
    const unsigned int cell_blocks = blocks_for(cells, threads);
    const unsigned int patch_blocks = blocks_for(patches, threads);
    const std::uint8_t* ranked_groups = nullptr;

    if (ranks_scores(a.params)) {
      // The rank sort borrows the key buffers as 32-bit halves; they are free until pass 2.
      DoubleBuffer<std::uint32_t> rank_keys(reinterpret_cast<std::uint32_t*>(l.keys[0]),
                                            reinterpret_cast<std::uint32_t*>(l.keys[1]));
      DoubleBuffer<std::int32_t> ranked(l.cells[0], l.cells[1]);
      rank_keys_kernel<<<cell_blocks, threads, 0, stream>>>(a, first, cells, rank_keys.Current(),
                                                            ranked.Current());
      check_launch("rank_keys_kernel");
      check_cuda(DeviceSegmentedRadixSort::SortPairs(
                     l.sort_storage, storage_bytes, rank_keys, ranked, static_cast<int>(cells),
                     static_cast<int>(samples), l.cell_offsets, l.cell_offsets + 1, 0, 32, stream),
                 "DeviceSegmentedRadixSort (score ranks)");
      groups_of_ranks_kernel<<<cell_blocks, threads, 0, stream>>>(a, cells, ranked.Current(),
                                                                  l.groups);
      check_launch("groups_of_ranks_kernel");
      ranked_groups = l.groups;
    }

    DoubleBuffer<std::uint64_t> group_keys(l.keys[0], l.keys[1]);
    DoubleBuffer<std::int32_t> sorted_cells(l.cells[0], l.cells[1]);
    group_keys_kernel<<<cell_blocks, threads, 0, stream>>>(
        a, first, cells, ranked_groups, group_keys.Current(), sorted_cells.Current());
    check_launch("group_keys_kernel");
    check_cuda(DeviceSegmentedRadixSort::SortPairs(
                   l.sort_storage, storage_bytes, group_keys, sorted_cells, static_cast<int>(cells),
                   static_cast<int>(samples), l.cell_offsets, l.cell_offsets + 1, 0,
                   group_sort_bits(a.params), stream),
               "DeviceSegmentedRadixSort (groups)");

    group_starts_kernel<<<cell_blocks, threads, 0, stream>>>(a, cells, group_keys.Current(),
                                                             l.starts);
    check_launch("group_starts_kernel");
    plan_kernel<<<blocks_for(samples, threads), threads, 0, stream>>>(a, samples, l.starts, l.keep,
                                                                      l.visible);
    check_launch("plan_kernel");
    cell_state_kernel<<<cell_blocks, threads, 0, stream>>>(
        a, cells, group_keys.Current(), sorted_cells.Current(), l.starts, l.keep, l.cell_state);
    check_launch("cell_state_kernel");

    DoubleBuffer<std::uint64_t> order_keys(l.keys[0], l.keys[1]);
    order_keys_kernel<<<patch_blocks, threads, 0, stream>>>(a, patches, l.cell_state,
                                                            order_keys.Current());
    check_launch("order_keys_kernel");
    check_cuda(DeviceSegmentedRadixSort::SortKeys(
                   l.sort_storage, storage_bytes, order_keys, static_cast<int>(patches),
                   static_cast<int>(samples), l.patch_offsets, l.patch_offsets + 1, 0,
                   order_sort_bits(a.params), stream),
               "DeviceSegmentedRadixSort (order)");
    write_kernel<<<patch_blocks, threads, 0, stream>>>(a, first, patches, order_keys.Current(),
                                                       l.visible);
    check_launch("write_kernel");
  }
}

}  // namespace gpu
}  // namespace mwm
