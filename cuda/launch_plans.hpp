// How the launchers cut their work: which kernel tier a request takes, how samples are split
// into chunks, how many threads copy a row, and the size checks that must pass before any
// device memory is sized or allocated. Host code on the standard library and the core only, so
// that tests/cpp/test_cuda_selection.cpp and test_cuda_tokens.cpp run every decomposition on
// the CPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mwm/error.hpp"

namespace mwm {
namespace gpu {

// CUB's item and segment counts are int.
constexpr std::int64_t max_sort_items = 0x7FFFFFFF;

// Thread-block tiers of the per-sample sorts (masks and quantiles): Threads x Items patches.
enum class block_tier { small_128x4, large_256x8, segmented };

constexpr std::int64_t small_tier_patches = 128 * 4;
constexpr std::int64_t large_tier_patches = 256 * 8;

inline block_tier tier_for(std::int64_t patches) {
  if (patches <= small_tier_patches) return block_tier::small_128x4;
  if (patches <= large_tier_patches) return block_tier::large_256x8;
  return block_tier::segmented;
}

// batch * n without overflow: false when it reaches 2^31 (CUB counts it in an int).
inline bool sort_items_fit(std::int64_t batch, std::int64_t n) {
  return batch >= 0 && n >= 0 && (n == 0 || batch <= max_sort_items / n) &&
         batch * n <= max_sort_items;
}

// The quantile launcher's request, checked before quantile_workspace_bytes sizes anything:
// one block per sample needs batch < 2^31 blocks, the segmented sort batch * n < 2^31 items.
inline block_tier plan_quantiles(std::int64_t batch, std::int64_t n) {
  detail::require(batch > 0 && batch <= max_sort_items, "batch", batch, "must lie in [1, 2^31)");
  detail::require(n > 0, "patches", n, "must be positive");
  const block_tier tier = tier_for(n);
  if (tier == block_tier::segmented && !sort_items_fit(batch, n)) {
    throw error("mwm: batch * patches = " + detail::to_text(batch) + " * " + detail::to_text(n) +
                ": must stay below 2^31 for the CUDA quantile sort (split the batch)");
  }
  return tier;
}

// Segmented masks: samples per chunk so that a chunk holds about `chunk_elements` patches
// (bounding the workspace and CUB's int counts); chunk c covers samples
// [c * samples, min(batch, (c + 1) * samples)).
struct chunk_plan {
  std::int64_t samples = 1;
  std::int64_t chunks = 0;
};

constexpr std::int64_t default_chunk_elements = std::int64_t(1) << 20;

inline chunk_plan plan_chunks(std::int64_t batch, std::int64_t n,
                              std::int64_t chunk_elements = default_chunk_elements) {
  chunk_plan plan;
  plan.samples = n > 0 ? chunk_elements / n : batch;
  if (plan.samples < 1) plan.samples = 1;
  if (plan.samples > batch) plan.samples = batch > 0 ? batch : 1;
  plan.chunks = (batch + plan.samples - 1) / plan.samples;
  detail::require(sort_items_fit(plan.samples, n), "patches", n,
                  "must stay below 2^31 for the CUDA segmented sorts");
  return plan;
}

inline std::int64_t chunk_first(const chunk_plan& plan, std::int64_t chunk) {
  return chunk * plan.samples;
}

inline std::int64_t chunk_samples(const chunk_plan& plan, std::int64_t batch, std::int64_t chunk) {
  const std::int64_t left = batch - chunk_first(plan, chunk);
  return left < plan.samples ? left : plan.samples;
}

// Blocks of `threads` covering `count` elements; grid-stride loops cover the rest.
inline unsigned int blocks_for(std::int64_t count, int threads) {
  const std::int64_t wanted = (count + threads - 1) / threads;
  const std::int64_t limit = std::int64_t(1) << 20;
  return static_cast<unsigned int>(wanted < 1 ? 1 : (wanted > limit ? limit : wanted));
}

// Row copies (token gather / restore): `lanes` threads per row (a multiple of 32, at most 256)
// cover its vectors of `vector` elements; rows_per_block rows share a block of about 256
// threads, and the grid covers every row (grid-stride beyond 2^20 blocks).
struct row_launch {
  int lanes = 32;
  int rows_per_block = 8;
  unsigned int blocks = 1;
};

inline row_launch plan_row_launch(std::int64_t rows, std::int64_t channels, int vector) {
  const std::int64_t units = (channels + vector - 1) / vector;
  std::int64_t lanes = (units + 31) / 32 * 32;
  if (lanes > 256) lanes = 256;
  if (lanes < 32) lanes = 32;
  row_launch plan;
  plan.lanes = static_cast<int>(lanes);
  plan.rows_per_block = static_cast<int>(256 / lanes);
  plan.blocks = blocks_for(rows, plan.rows_per_block);
  return plan;
}

}  // namespace gpu
}  // namespace mwm
