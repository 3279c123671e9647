// Shared by the tests of the CUDA path's host-side logic (test_cuda_selection.cpp,
// test_cuda_tokens.cpp, test_cuda_loss.cpp): random inputs with the ties and magnitudes that
// the kernels' passes must handle, the grids and policies they sweep, and the host model of
// the kernels' grouping of rows by destination.
#pragma once

#include <mwm/masking.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/selection_steps.cuh"
#include "../../cuda/selection_steps_host.hpp"
#include "../../cuda/token_steps.cuh"

namespace mwm_cuda_test {

using rng_type = std::mt19937_64;

inline std::int64_t draw_int(rng_type& rng, std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}

inline double draw_unit(rng_type& rng) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// Scores with many exact ties (a few levels, both signs of zero) and some spread values, so
// the rank passes meet the tie-breaking rules.
inline std::vector<float> tied_scores(rng_type& rng, std::int64_t count) {
  std::vector<float> scores(static_cast<std::size_t>(count));
  for (auto& s : scores) {
    const auto kind = draw_int(rng, 0, 4);
    if (kind == 0)
      s = 0.0f;
    else if (kind == 1)
      s = -0.0f;
    else if (kind == 2)
      s = static_cast<float>(draw_int(rng, 0, 4)) * 0.25f;
    else
      s = static_cast<float>(draw_unit(rng) * 2.0 - 0.5);
  }
  return scores;
}

struct grid_case {
  mwm::grid_shape grid;
  std::string name;
};

inline std::vector<grid_case> grids() {
  return {{mwm::make_grid_2d(14, 14), "14x14"},  {mwm::make_grid_2d(7, 7), "7x7"},
          {mwm::make_grid_2d(4, 10), "4x10"},    {mwm::make_grid_2d(1, 1), "1x1"},
          {mwm::make_grid_3d(4, 6, 8), "4x6x8"}, {mwm::make_grid_3d(8, 8, 8), "8x8x8"},
          {mwm::make_grid_3d(2, 2, 2), "2x2x2"}};
}

inline std::vector<mwm::mask_policy> policies(rng_type& rng) {
  using mwm::policy_kind;
  std::vector<mwm::mask_policy> out;
  const policy_kind kinds[] = {policy_kind::random,      policy_kind::per_region,
                               policy_kind::fixed_total, policy_kind::weighted,
                               policy_kind::block,       policy_kind::coarse,
                               policy_kind::loss_guided, policy_kind::attention_guided};
  const mwm::keep_rounding roundings[] = {mwm::keep_rounding::floor, mwm::keep_rounding::round,
                                          mwm::keep_rounding::ceil_mask,
                                          mwm::keep_rounding::floor_mask};
  const mwm::attention_mode modes[] = {mwm::attention_mode::high, mwm::attention_mode::low,
                                       mwm::attention_mode::hint};
  for (auto kind : kinds) {
    for (int variant = 0; variant < 6; ++variant) {
      mwm::mask_policy p;
      p.kind = kind;
      p.ratio = variant == 0 ? 0.75 : (variant == 1 ? 0.0 : (variant == 2 ? 1.0 : draw_unit(rng)));
      p.rounding = roundings[variant % 4];
      p.order = variant % 2 ? mwm::visible_order::sorted : mwm::visible_order::random;
      const auto regions = draw_int(rng, 1, 4);
      for (std::int64_t r = 0; r < regions; ++r)
        p.region_ratios.push_back(r == 0 && variant == 0 ? 0.8 : draw_unit(rng));
      p.coarse_factor = 2;
      p.hard_share = draw_unit(rng);
      p.attention = modes[variant % 3];
      p.hint_pool_share = p.ratio * draw_unit(rng);
      p.hint_share = p.hint_pool_share * draw_unit(rng);
      p.weight_floor = variant == 3 ? 0.0 : draw_unit(rng);
      p.block.min_patches = draw_int(rng, 1, 16);
      p.block.max_patches = variant == 4 ? p.block.min_patches + draw_int(rng, 0, 20) : 0;
      out.push_back(p);
    }
  }
  return out;
}

inline bool coarse_fits(const mwm::mask_policy& p, const mwm::grid_shape& g) {
  if (p.kind != mwm::policy_kind::coarse) return true;
  const auto f = p.coarse_factor;
  return g.height % f == 0 && g.width % f == 0 && (g.ndim == 2 || g.depth % f == 0);
}

// Values of mixed magnitude, so that a different order of additions would round differently.
inline std::vector<float> mixed_values(rng_type& rng, std::int64_t count) {
  std::vector<float> values(static_cast<std::size_t>(count));
  for (auto& v : values) {
    const double magnitude = std::pow(10.0, static_cast<double>(draw_int(rng, -3, 3)));
    v = static_cast<float>((draw_unit(rng) * 2.0 - 1.0) * magnitude);
  }
  return values;
}

// Start of each destination's run of sources, as the kernels compute it: a stable sort of the
// destination keys per sample (radix_sort_positions) and mark_group_starts.
struct host_runs {
  std::vector<std::int32_t> sources;
  std::vector<std::int64_t> starts;
};

inline host_runs runs_of(const std::vector<std::int64_t>& destinations, std::int64_t batch,
                         std::int64_t rows, std::int64_t keys) {
  host_runs runs;
  runs.sources.resize(static_cast<std::size_t>(batch * rows));
  runs.starts.resize(static_cast<std::size_t>(batch * (keys + 1)));
  for (std::int64_t b = 0; b < batch; ++b) {
    std::vector<std::uint32_t> sample_keys(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r)
      sample_keys[r] = mwm::gpu::destination_key(destinations[b * rows + r]);
    const auto sorted = mwm::gpu::reference::radix_sort_positions(sample_keys, 32);
    for (std::int64_t position = 0; position < rows; ++position) {
      runs.sources[b * rows + position] = static_cast<std::int32_t>(sorted[position]);
      const auto previous =
          position > 0 ? static_cast<std::int32_t>(sample_keys[sorted[position - 1]]) : -1;
      mwm::gpu::mark_group_starts(
          previous, static_cast<std::int32_t>(sample_keys[sorted[position]]), position, rows,
          static_cast<int>(keys), runs.starts.data() + b * (keys + 1));
    }
  }
  return runs;
}

template <typename Body>
inline std::string message_of(Body body) {
  try {
    body();
  } catch (const mwm::error& e) {
    return e.what();
  }
  return "no error";
}

// Row indices [0, rows) in a scrambled order: the kernels' threads run rows in any order.
inline std::vector<std::int64_t> scrambled_rows(rng_type& rng, std::int64_t rows) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
  std::iota(order.begin(), order.end(), std::int64_t(0));
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

}  // namespace mwm_cuda_test
