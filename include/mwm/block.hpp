// BEiT v2 block-wise masking: rectangles (boxes in 3D) of random area and aspect ratio until the
// budget is reached; the exact count is restored afterwards by the common selection step.
#pragma once

#include <math.h>

#include <cstdint>

#include "config.hpp"
#include "grid.hpp"
#include "philox.hpp"

namespace mwm {

constexpr int block_aspect_levels = 64;

// Block parameters in the form both host and device read: aspect ratios log-uniform in
// [min, max], tabulated once on the host so that no exp/log runs per draw.
struct block_params {
  std::int64_t min_patches = 16;
  std::int64_t max_patches = 0;
  double aspect[block_aspect_levels];
};

inline block_params make_block_params(std::int64_t min_patches, std::int64_t max_patches,
                                      double min_aspect, double max_aspect) {
  block_params params;
  params.min_patches = min_patches;
  params.max_patches = max_patches;
  const double lo = log(min_aspect);
  const double hi = log(max_aspect);
  for (int i = 0; i < block_aspect_levels; ++i) {
    params.aspect[i] = exp(lo + (hi - lo) * (i + 0.5) / block_aspect_levels);
  }
  return params;
}

namespace detail {

// Sequential draws of one sample, on a stream of its own.
struct sample_stream {
  std::uint64_t seed;
  std::uint64_t global_sample_index;
  std::uint32_t stream;
  std::uint32_t draw;

  MWM_HOST_DEVICE std::uint32_t next() {
    return steps::random_u32(seed, global_sample_index, stream, draw++);
  }
  // Uniform integer in [lo, hi] (multiply-shift; bias below 2^-32 * range).
  MWM_HOST_DEVICE std::int64_t integer(std::int64_t lo, std::int64_t hi) {
    const std::uint64_t span = static_cast<std::uint64_t>(hi - lo + 1);
    return lo + static_cast<std::int64_t>((static_cast<std::uint64_t>(next()) * span) >> 32);
  }
};

// Tries up to 10 boxes; marks the first one that adds between 1 and `budget` new patches.
MWM_HOST_DEVICE MWM_INLINE std::int64_t place_one_block(std::uint8_t* blocked, grid_shape grid,
                                                        const block_params& params,
                                                        std::int64_t budget,
                                                        sample_stream& stream) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    const std::int64_t lo = params.min_patches < budget ? params.min_patches : budget;
    const std::int64_t hi = params.min_patches < budget ? budget : params.min_patches;
    std::int64_t area = stream.integer(lo, hi);
    std::int64_t depth = 1;
    if (grid.ndim == 3) {
      depth = stream.integer(1, grid.depth);
      area = static_cast<std::int64_t>(rint(static_cast<double>(area) / depth));
      if (area < 1) area = 1;
    }
    const double aspect = params.aspect[stream.next() >> 26];
    const auto h = static_cast<std::int64_t>(rint(sqrt(static_cast<double>(area) * aspect)));
    const auto w = static_cast<std::int64_t>(rint(sqrt(static_cast<double>(area) / aspect)));
    if (h < 1 || w < 1 || h >= grid.height || w >= grid.width || depth > grid.depth) continue;
    const std::int64_t front = stream.integer(0, grid.depth - depth);
    const std::int64_t top = stream.integer(0, grid.height - h);
    const std::int64_t left = stream.integer(0, grid.width - w);
    std::int64_t fresh = 0;
    for (auto d = front; d < front + depth; ++d)
      for (auto y = top; y < top + h; ++y)
        for (auto x = left; x < left + w; ++x) fresh += blocked[grid.index(d, y, x)] ? 0 : 1;
    if (fresh == 0 || fresh > budget) continue;
    for (auto d = front; d < front + depth; ++d)
      for (auto y = top; y < top + h; ++y)
        for (auto x = left; x < left + w; ++x) blocked[grid.index(d, y, x)] = 1;
    return fresh;
  }
  return 0;
}

}  // namespace detail

namespace steps {

// Marks blocks in blocked[0, N) until `target` patches are covered or no block fits; returns the
// number covered (at most target).
MWM_HOST_DEVICE MWM_INLINE std::int64_t place_blocks(std::uint8_t* blocked, grid_shape grid,
                                                     const block_params& params,
                                                     std::int64_t target, std::uint64_t seed,
                                                     std::uint64_t global_sample_index) {
  const std::int64_t n = grid.num_patches();
  for (std::int64_t i = 0; i < n; ++i) blocked[i] = 0;
  detail::sample_stream stream{seed, global_sample_index, sample_stream_block, 0};
  std::int64_t covered = 0;
  while (covered < target) {
    std::int64_t budget = target - covered;
    if (params.max_patches > 0 && params.max_patches < budget) budget = params.max_patches;
    const std::int64_t added = detail::place_one_block(blocked, grid, params, budget, stream);
    if (added == 0) break;
    covered += added;
  }
  return covered;
}

}  // namespace steps

}  // namespace mwm
