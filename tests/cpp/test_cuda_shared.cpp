// The CUDA path's host-side logic on the CPU: the launcher's passes (cuda/selection_steps.cuh,
// run through their host reference) must reproduce the CPU driver select_sample for every
// policy, and the per-thread bodies of the other kernels must reproduce the core's batch
// drivers. The .cuh files are read here by the host compiler (no __CUDACC__); the same file is
// also built by nvcc as host code when MWM_BUILD_CUDA is on (cuda/CMakeLists.txt).
#include <mwm/masking.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/loss_steps.cuh"
#include "../../cuda/map_steps.cuh"
#include "../../cuda/selection_steps.cuh"
#include "../../cuda/selection_steps_host.hpp"
#include "../../cuda/token_steps.cuh"
#include "catch.hpp"
#include "core_test_support.hpp"
#include "loss_test_support.hpp"

namespace {

using rng_type = std::mt19937_64;

std::int64_t draw_int(rng_type& rng, std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}

double draw_unit(rng_type& rng) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }

// Scores with many exact ties (a few levels, both signs of zero) and some spread values, so
// the rank passes meet the tie-breaking rules.
std::vector<float> tied_scores(rng_type& rng, std::int64_t count) {
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

std::vector<grid_case> grids() {
  return {{mwm::make_grid_2d(14, 14), "14x14"},  {mwm::make_grid_2d(7, 7), "7x7"},
          {mwm::make_grid_2d(4, 10), "4x10"},    {mwm::make_grid_2d(1, 1), "1x1"},
          {mwm::make_grid_3d(4, 6, 8), "4x6x8"}, {mwm::make_grid_3d(8, 8, 8), "8x8x8"},
          {mwm::make_grid_3d(2, 2, 2), "2x2x2"}};
}

std::vector<mwm::mask_policy> policies(rng_type& rng) {
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

bool coarse_fits(const mwm::mask_policy& p, const mwm::grid_shape& g) {
  if (p.kind != mwm::policy_kind::coarse) return true;
  const auto f = p.coarse_factor;
  return g.height % f == 0 && g.width % f == 0 && (g.ndim == 2 || g.depth % f == 0);
}

}  // namespace

TEST_CASE("cuda passes reproduce select_sample for every policy, 2D and 3D", "[cuda][selection]") {
  rng_type rng(20261123);
  const auto all_policies = policies(rng);
  std::int64_t compared = 0;
  for (const auto& gc : grids()) {
    const std::int64_t n = gc.grid.num_patches();
    for (const auto& policy : all_policies) {
      if (!coarse_fits(policy, gc.grid)) continue;
      const auto params = mwm::make_policy_params(policy, gc.grid);
      for (int sample = 0; sample < 4; ++sample) {
        const auto seed = static_cast<std::uint64_t>(draw_int(rng, 0, 1 << 30));
        const auto global_index = static_cast<std::uint64_t>(draw_int(rng, 0, 1 << 20)) +
                                  (sample == 3 ? (std::uint64_t(1) << 33) : 0);
        std::vector<std::int32_t> regions(static_cast<std::size_t>(n));
        const auto region_count = static_cast<std::int32_t>(policy.region_ratios.size());
        // Sample 0 puts every patch in the last region, leaving the others empty.
        for (auto& r : regions)
          r = sample == 0 ? region_count - 1
                          : static_cast<std::int32_t>(draw_int(rng, 0, region_count - 1));
        const auto scores = tied_scores(rng, n);

        mwm::selection_workspace ws;
        std::vector<std::int64_t> expected(static_cast<std::size_t>(n));
        const auto expected_visible =
            mwm::steps::select_sample(params, gc.grid, regions.data(), scores.data(), seed,
                                      global_index, ws, expected.data());
        std::vector<std::int64_t> actual(static_cast<std::size_t>(n), -7);
        const auto actual_visible = mwm::gpu::reference::select_sample_in_passes(
            params, gc.grid, regions.data(), scores.data(), seed, global_index, actual.data());

        INFO("grid " << gc.name << ", policy " << mwm::policy_name(policy.kind) << ", ratio "
                     << policy.ratio << ", order "
                     << (policy.order == mwm::visible_order::sorted ? "sorted" : "random")
                     << ", sample " << sample);
        REQUIRE(actual_visible == expected_visible);
        REQUIRE(actual == expected);
        ++compared;
      }
    }
  }
  // Every policy variant on every grid it fits (coarse skips 7x7 and 1x1) was compared.
  CHECK(compared == 4 * 6 * (8 * 7 - 2));
}

TEST_CASE("cuda write pass reproduces write_sample_outputs, padding included", "[cuda][outputs]") {
  rng_type rng(7);
  for (std::int64_t n : {1, 2, 49, 196}) {
    for (int trial = 0; trial < 8; ++trial) {
      std::vector<std::int64_t> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), std::int64_t(0));
      std::shuffle(order.begin(), order.end(), rng);
      const std::int64_t visible = draw_int(rng, 0, n);
      // Fixed widths (exact) or padded ones (a variable-total policy's N).
      const bool padded = trial % 2 == 0;
      const mwm::index_widths widths{padded ? n : visible, padded ? n : n - visible};

      auto make_rows = [&](std::vector<std::uint8_t>& mask, std::vector<std::int64_t>& shuffle,
                           std::vector<std::int64_t>& restore, std::vector<std::int64_t>& keep,
                           std::vector<std::int64_t>& masked, std::vector<float>& noise) {
        mask.assign(static_cast<std::size_t>(n), 9);
        shuffle.assign(static_cast<std::size_t>(n), -9);
        restore.assign(static_cast<std::size_t>(n), -9);
        keep.assign(static_cast<std::size_t>(widths.keep), -9);
        masked.assign(static_cast<std::size_t>(widths.masked), -9);
        noise.assign(static_cast<std::size_t>(n), -9.0f);
        mwm::batch_outputs out;
        out.mask = mask.data();
        out.ids_shuffle = shuffle.data();
        out.ids_restore = restore.data();
        out.ids_keep = keep.data();
        out.ids_masked = masked.data();
        out.noise = noise.data();
        return mwm::steps::sample_rows(out, widths, n, 0);
      };
      std::vector<std::uint8_t> mask_a, mask_b;
      std::vector<std::int64_t> shuffle_a, shuffle_b, restore_a, restore_b, keep_a, keep_b,
          masked_a, masked_b;
      std::vector<float> noise_a, noise_b;
      const auto rows_a = make_rows(mask_a, shuffle_a, restore_a, keep_a, masked_a, noise_a);
      const auto rows_b = make_rows(mask_b, shuffle_b, restore_b, keep_b, masked_b, noise_b);
      mwm::steps::write_sample_outputs(rows_a, order.data(), n, visible);
      // The kernel runs one thread per position, in any order: run them backwards.
      for (std::int64_t position = n - 1; position >= 0; --position)
        mwm::gpu::write_order_position(rows_b, n, visible, position, order[position]);

      INFO("n " << n << ", visible " << visible << ", padded " << padded);
      REQUIRE(mask_b == mask_a);
      REQUIRE(shuffle_b == shuffle_a);
      REQUIRE(restore_b == restore_a);
      REQUIRE(keep_b == keep_a);
      REQUIRE(masked_b == masked_a);
      REQUIRE(noise_b == noise_a);
      // Nothing was left unwritten (the -9 fill would show).
      CHECK(std::count(keep_b.begin(), keep_b.end(), -9) == 0);
      CHECK(std::count(masked_b.begin(), masked_b.end(), -9) == 0);
    }
  }
}

TEST_CASE("cuda group starts are written once each, empty groups included", "[cuda][plan]") {
  // Sorted groups 1 1 3 3 3 of 5 groups: groups 0, 2 and 4 are empty.
  const std::vector<std::int32_t> sorted_groups{1, 1, 3, 3, 3};
  const std::int64_t n = 5;
  const int groups = 5;
  std::vector<std::int64_t> starts(groups + 1, -1);
  std::vector<int> writes(groups + 1, 0);
  for (std::int64_t position = 0; position < n; ++position) {
    // Each position's thread writes into a fresh row, so every write it makes shows.
    std::vector<std::int64_t> written(groups + 1, -1);
    mwm::gpu::mark_group_starts(position > 0 ? sorted_groups[position - 1] : -1,
                                sorted_groups[position], position, n, groups, written.data());
    for (int g = 0; g <= groups; ++g) {
      if (written[g] < 0) continue;
      ++writes[g];
      starts[g] = written[g];
    }
  }
  CHECK(starts == std::vector<std::int64_t>{0, 0, 2, 2, 5, 5});
  CHECK(writes == std::vector<int>(groups + 1, 1));
}

TEST_CASE("cuda pooling passes reproduce heatmaps_to_scores", "[cuda][pooling]") {
  rng_type rng(11);
  const mwm::pool_reduction reductions[] = {mwm::pool_reduction::mean, mwm::pool_reduction::max,
                                            mwm::pool_reduction::fraction,
                                            mwm::pool_reduction::nearest};
  struct shape_case {
    mwm::grid_shape grid;
    mwm::heatmap_shape heat;
  };
  const shape_case shapes[] = {
      {mwm::make_grid_2d(7, 7), {1, 224, 224}},  // divisible
      {mwm::make_grid_2d(14, 14), {1, 37, 50}},  // uneven cells
      {mwm::make_grid_2d(5, 6), {1, 3, 4}},      // heatmap coarser than the grid
      {mwm::make_grid_3d(4, 4, 4), {9, 8, 13}},
  };
  for (const auto& sc : shapes) {
    for (auto reduction : reductions) {
      for (auto combine : {mwm::prompt_combine::max, mwm::prompt_combine::weighted_sum}) {
        for (std::int64_t prompts : {1, 3}) {
          mwm::pooling_request request;
          request.grid = sc.grid;
          request.batch = 2;
          request.prompts = prompts;
          request.shape = sc.heat;
          request.options.reduction = reduction;
          request.options.threshold = 0.4f;
          request.combine = combine;
          request.threads = 1;
          for (std::int64_t k = 0; k < prompts; ++k)
            request.prompt_weights.push_back(static_cast<float>(draw_unit(rng) * 2.0 - 0.5));
          const std::int64_t pixels = sc.heat.num_pixels();
          std::vector<float> heat(static_cast<std::size_t>(request.batch * prompts * pixels));
          for (auto& v : heat) v = static_cast<float>(draw_unit(rng));
          const std::int64_t n = sc.grid.num_patches();
          std::vector<float> expected(static_cast<std::size_t>(request.batch * n));
          mwm::heatmaps_to_scores(request, heat.data(), expected.data());

          // Pass 1 into per-prompt rows, pass 2 combines; or pass 1 alone when it may.
          std::vector<float> per_prompt(static_cast<std::size_t>(request.batch * prompts * n));
          for (std::int64_t e = 0; e < request.batch * prompts * n; ++e)
            per_prompt[e] =
                mwm::gpu::pool_prompt_patch(heat.data(), sc.heat, sc.grid, request.options, e);
          std::vector<float> actual(static_cast<std::size_t>(request.batch * n));
          if (mwm::gpu::pooling_needs_combine(prompts, combine)) {
            for (std::int64_t e = 0; e < request.batch * n; ++e)
              actual[e] = mwm::gpu::combine_sample_patch(per_prompt.data(), prompts, n, combine,
                                                         request.prompt_weights.data(), e);
          } else {
            actual = per_prompt;
          }
          INFO("grid " << sc.grid.depth << "x" << sc.grid.height << "x" << sc.grid.width
                       << ", reduction " << static_cast<int>(reduction) << ", prompts " << prompts);
          REQUIRE(actual == expected);
        }
      }
    }
  }
}

TEST_CASE("cuda quantile passes reproduce regions_by_quantiles", "[cuda][regions]") {
  rng_type rng(5);
  for (std::int64_t n : {1, 7, 49, 196, 512}) {
    const std::vector<std::vector<double>> share_sets{{0.3}, {0.5, 0.2, 0.05}, {1.0, 0.0}};
    for (const auto& shares : share_sets) {
      const std::int64_t batch = 3;
      const auto scores = tied_scores(rng, batch * n);
      std::vector<std::int32_t> expected(static_cast<std::size_t>(batch * n));
      mwm::regions_by_quantiles(scores.data(), batch, n, shares, expected.data(),
                                mwm::nan_policy::error, 1);
      std::vector<std::int64_t> top_counts;
      for (double share : shares) top_counts.push_back(mwm::steps::quantile_count(n, share));
      std::vector<std::int32_t> actual(static_cast<std::size_t>(batch * n), -1);
      for (std::int64_t b = 0; b < batch; ++b) {
        std::vector<std::uint32_t> keys(static_cast<std::size_t>(n));
        for (std::int64_t i = 0; i < n; ++i)
          keys[i] = mwm::gpu::quantile_sort_key(scores[b * n + i]);
        const auto ranked = mwm::gpu::reference::radix_sort_positions(keys, 32);
        for (std::int64_t rank = 0; rank < n; ++rank)
          actual[b * n + ranked[rank]] = mwm::gpu::region_of_rank(
              rank, top_counts.data(), static_cast<std::int32_t>(top_counts.size()));
      }
      INFO("n " << n << ", shares " << shares.size());
      REQUIRE(actual == expected);
    }
  }
}

TEST_CASE("cuda upsampling element reproduces upsample_patch_map", "[cuda][upsample]") {
  rng_type rng(3);
  struct upsample_case {
    mwm::grid_shape grid;
    std::int64_t fd, fh, fw;
  };
  const upsample_case cases[] = {{mwm::make_grid_2d(7, 7), 1, 2, 2},
                                 {mwm::make_grid_2d(3, 5), 1, 4, 1},
                                 {mwm::make_grid_3d(2, 3, 4), 2, 3, 1}};
  for (const auto& c : cases) {
    for (bool invert : {false, true}) {
      const std::int64_t batch = 2;
      const std::int64_t n = c.grid.num_patches();
      std::vector<std::uint8_t> mask(static_cast<std::size_t>(batch * n));
      for (auto& m : mask) m = static_cast<std::uint8_t>(draw_int(rng, 0, 1));
      const std::int64_t cells = n * c.fd * c.fh * c.fw;
      std::vector<std::uint8_t> expected(static_cast<std::size_t>(batch * cells));
      for (std::int64_t b = 0; b < batch; ++b)
        mwm::upsample_patch_map(mask.data() + b * n, c.grid, c.fd, c.fh, c.fw, invert,
                                expected.data() + b * cells);
      std::vector<std::uint8_t> actual(expected.size(), 7);
      for (std::int64_t e = 0; e < batch * cells; ++e)
        actual[e] = mwm::gpu::upsampled_element(mask.data(), c.grid, c.fd, c.fh, c.fw, invert, e);
      REQUIRE(actual == expected);
    }
  }
}

TEST_CASE("cuda passes fill whole batches as generate_masks_into does", "[cuda][batch]") {
  rng_type rng(99);
  const auto all_policies = policies(rng);
  for (const auto& gc : {grid_case{mwm::make_grid_2d(14, 14), "14x14"},
                         grid_case{mwm::make_grid_3d(4, 4, 6), "4x4x6"}}) {
    const std::int64_t n = gc.grid.num_patches();
    for (std::size_t k = 0; k < all_policies.size(); k += 3) {
      const auto& policy = all_policies[k];
      const std::int64_t batch = 5;
      std::vector<std::int64_t> sample_index{17, 3, 1000000007, 0, 17};
      std::vector<std::int32_t> regions(static_cast<std::size_t>(batch * n));
      for (auto& r : regions)
        r = static_cast<std::int32_t>(
            draw_int(rng, 0, static_cast<std::int64_t>(policy.region_ratios.size()) - 1));
      const auto scores = tied_scores(rng, batch * n);
      mwm::mask_request request;
      request.grid = gc.grid;
      request.batch = batch;
      request.policy = policy;
      request.seed = 42;
      request.sample_index = sample_index.data();
      request.regions = regions.data();
      request.scores = scores.data();
      request.threads = 1;
      const auto expected = mwm::generate_masks(request);

      const auto params = mwm::make_policy_params(policy, gc.grid);
      const auto widths = mwm::output_widths(policy, gc.grid);
      auto actual = mwm_test::poisoned_copy(expected);
      const auto out = mwm::detail::outputs_of(actual);
      std::vector<std::int64_t> order(static_cast<std::size_t>(n));
      for (std::int64_t b = 0; b < batch; ++b) {
        const auto sample = mwm::steps::global_sample_index(sample_index.data(), 0, b);
        const auto visible = mwm::gpu::reference::select_sample_in_passes(
            params, gc.grid, regions.data() + b * n, scores.data() + b * n, request.seed, sample,
            order.data());
        const auto row = mwm::steps::sample_rows(out, widths, n, b);
        for (std::int64_t position = 0; position < n; ++position)
          mwm::gpu::write_order_position(row, n, visible, position, order[position]);
        out.num_masked[b] = n - visible;
      }
      INFO("grid " << gc.name << ", policy " << mwm::policy_name(policy.kind));
      mwm_test::require_identical(actual, expected);
    }
  }
}

namespace {

// Values of mixed magnitude, so that a different order of additions would round differently.
std::vector<float> mixed_values(rng_type& rng, std::int64_t count) {
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

host_runs runs_of(const std::vector<std::int64_t>& destinations, std::int64_t batch,
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

}  // namespace

TEST_CASE("cuda token elements reproduce the token drivers, gradients bit for bit",
          "[cuda][tokens]") {
  rng_type rng(31);
  const std::int64_t batch = 3, num_tokens = 10, slots = 6, channels = 5;
  // Token rows with padding between them, to exercise the strides.
  const mwm::token_strides xs{num_tokens * (channels + 2), channels + 2, 1};
  const mwm::token_strides ks{slots * channels, channels, 1};
  const auto x = mixed_values(rng, batch * xs.batch);
  // Duplicates and padding in ids_keep: the gradient adds duplicates in slot order.
  const std::vector<std::int64_t> ids{3, 3, -1, 9, 0, 3, 1, 2, 4, 5, 6, 7, -1, -1, 8, 8, 8, 0};

  std::vector<float> expected(static_cast<std::size_t>(batch * ks.batch), 0.0f);
  mwm::gather_tokens(x.data(), xs, ids.data(), slots, channels, expected.data(), ks, 0, batch);
  for (int lanes : {1, 2, 32}) {
    std::vector<float> actual(expected.size(), 7.0f);
    for (std::int64_t row = 0; row < batch * slots; ++row)
      for (int lane = 0; lane < lanes; ++lane) {
        mwm::data_error bad;
        REQUIRE(mwm::gpu::gather_row_part<1>(x.data(), xs, ids.data(), slots, num_tokens, channels,
                                             actual.data(), ks, row, lane, lanes, &bad));
      }
    INFO(lanes << " lanes");
    REQUIRE(actual == expected);
  }

  const auto grad = mixed_values(rng, batch * ks.batch);
  std::vector<float> grad_expected(static_cast<std::size_t>(batch * xs.batch), 0.0f);
  std::vector<float> grad_actual(grad_expected.size(), 0.0f);
  mwm::gather_tokens_backward<float>(grad.data(), ks, ids.data(), slots, num_tokens, channels,
                                     grad_expected.data(), xs, 0, batch);
  const auto runs = runs_of(ids, batch, slots, num_tokens + 1);
  for (std::int64_t e = 0; e < batch * num_tokens * channels; ++e)
    mwm::gpu::sum_sources_element<float>(grad.data(), ks, runs.sources.data(), runs.starts.data(),
                                         slots, num_tokens, channels, grad_actual.data(), xs, e);
  REQUIRE(grad_actual == grad_expected);

  // Restore: a permutation per sample, visible counts below K for samples 1 and 2.
  std::vector<std::int64_t> ids_restore;
  for (std::int64_t b = 0; b < batch; ++b) {
    std::vector<std::int64_t> perm(static_cast<std::size_t>(num_tokens));
    std::iota(perm.begin(), perm.end(), std::int64_t(0));
    std::shuffle(perm.begin(), perm.end(), rng);
    ids_restore.insert(ids_restore.end(), perm.begin(), perm.end());
  }
  const std::vector<std::int64_t> visible{slots, 2, 0};
  const auto x_vis = mixed_values(rng, batch * ks.batch);
  const auto mask_token = mixed_values(rng, channels * 2);  // element stride 2
  const mwm::token_strides os{num_tokens * channels, channels, 1};
  for (const std::int64_t* counts : {static_cast<const std::int64_t*>(nullptr), visible.data()}) {
    std::vector<float> restored(static_cast<std::size_t>(batch * os.batch), 0.0f);
    std::vector<float> restored_actual(restored.size(), 9.0f);
    mwm::restore_tokens(x_vis.data(), ks, ids_restore.data(), counts, slots, num_tokens, channels,
                        mask_token.data(), 2, restored.data(), os, 0, batch);
    for (std::int64_t row = 0; row < batch * num_tokens; ++row)
      for (int lane = 0; lane < 3; ++lane) {
        mwm::data_error bad;
        REQUIRE(mwm::gpu::restore_row_part<1>(x_vis.data(), ks, ids_restore.data(), counts, slots,
                                              num_tokens, channels, mask_token.data(), 2,
                                              restored_actual.data(), os, row, lane, 3,
                                              &bad) == mwm::gpu::none_phase);
      }
    REQUIRE(restored_actual == restored);

    const auto grad_out = mixed_values(rng, batch * os.batch);
    std::vector<float> vis_expected(static_cast<std::size_t>(batch * ks.batch), 0.0f);
    std::vector<float> vis_actual(vis_expected.size(), 5.0f);
    std::vector<float> partials(static_cast<std::size_t>(batch * channels));
    std::vector<float> token_expected(static_cast<std::size_t>(channels));
    mwm::restore_tokens_backward<float>(grad_out.data(), os, ids_restore.data(), counts, slots,
                                        num_tokens, channels, vis_expected.data(), ks,
                                        partials.data(), 0, batch);
    mwm::steps::sum_mask_partials(partials.data(), batch, channels, token_expected.data());

    std::vector<std::int64_t> destinations(static_cast<std::size_t>(batch * num_tokens));
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t n = 0; n < num_tokens; ++n)
        destinations[b * num_tokens + n] =
            mwm::gpu::restore_destination(ids_restore.data(), counts, slots, num_tokens, b, n);
    const auto restore_runs = runs_of(destinations, batch, num_tokens, slots + 1);
    for (std::int64_t e = 0; e < batch * slots * channels; ++e)
      mwm::gpu::sum_sources_element<float>(grad_out.data(), os, restore_runs.sources.data(),
                                           restore_runs.starts.data(), num_tokens, slots, channels,
                                           vis_actual.data(), ks, e);
    std::vector<float> channel_major(static_cast<std::size_t>(batch * channels));
    for (std::int64_t e = 0; e < batch * channels; ++e)
      mwm::gpu::mask_partial_element(grad_out.data(), os, restore_runs.sources.data(),
                                     restore_runs.starts.data(), batch, slots, num_tokens, channels,
                                     channel_major.data(), e);
    std::vector<float> token_actual(static_cast<std::size_t>(channels), 3.0f);
    for (std::int64_t c = 0; c < channels; ++c)
      mwm::gpu::mask_gradient_element(channel_major.data(), batch, token_actual.data(), c);
    INFO("visible counts " << (counts ? "given" : "K"));
    REQUIRE(vis_actual == vis_expected);
    REQUIRE(token_actual == token_expected);
  }
}

TEST_CASE("cuda loss elements reproduce the loss drivers per patch", "[cuda][loss]") {
  rng_type rng(17);
  struct loss_case {
    mwm::patch_geometry geometry;
    bool patch_layout;
  };
  const loss_case cases[] = {{mwm::make_geometry_2d(3, 32, 48, 16, 16), false},
                             {mwm::make_geometry_2d(3, 32, 48, 16, 16), true},
                             {mwm::make_geometry_3d(1, 8, 12, 12, 4, 4, 4), false},
                             {mwm::make_geometry_3d(2, 4, 8, 8, 2, 4, 4), true}};
  const mwm::loss_reduction reductions[] = {mwm::loss_reduction::mean,
                                            mwm::loss_reduction::mean_eps, mwm::loss_reduction::sum,
                                            mwm::loss_reduction::none};
  for (const auto& lc : cases) {
    const auto& g = lc.geometry;
    const std::int64_t batch = 2;
    const std::int64_t n = g.grid.num_patches();
    const std::int64_t p = g.patch_vector_size();
    const std::int64_t pixels = g.channels * g.image_depth() * g.image_height() * g.image_width();
    const auto target = mixed_values(rng, batch * pixels);
    const auto pred = mixed_values(rng, batch * (lc.patch_layout ? n * p : pixels));
    const std::int64_t h_stride = g.image_width();
    const std::int64_t d_stride = g.image_height() * h_stride;
    const std::int64_t c_stride = g.image_depth() * d_stride;
    const auto target_strides =
        mwm::image_patch_strides(g, g.channels * c_stride, c_stride, d_stride, h_stride, 1);
    const auto pred_strides =
        lc.patch_layout ? mwm::vector_patch_strides(g, n * p, p, 1) : target_strides;
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(batch * n));
    for (auto& m : mask) m = static_cast<std::uint8_t>(draw_int(rng, 0, 1));
    std::vector<float> weight(static_cast<std::size_t>(batch * n));
    for (auto& w : weight) w = static_cast<float>(draw_unit(rng));
    for (auto reduction : reductions) {
      for (bool norm : {false, true}) {
        for (auto error : {mwm::recon_error::mse, mwm::recon_error::l1}) {
          mwm::loss_options options;
          options.error = error;
          options.norm_target = norm;
          options.reduction = reduction;
          const auto in = mwm_test::loss_inputs_over(g, batch, pred.data(), pred_strides,
                                                     target.data(), target_strides, mask.data(),
                                                     norm ? weight.data() : nullptr, options);
          const std::int64_t count = batch * n;
          std::vector<float> expected(static_cast<std::size_t>(count));
          std::vector<float> scratch(static_cast<std::size_t>(mwm::band_scratch_size(g)));
          const std::int64_t bands = mwm::band_count(g, batch);
          REQUIRE(mwm::band_losses(in, 0, bands, expected.data(), scratch.data()) == -1);
          std::vector<float> actual(static_cast<std::size_t>(count));
          std::vector<float> coefficients(static_cast<std::size_t>(count));
          mwm::gpu::host_warp warp;
          for (std::int64_t i = 0; i < count; ++i) {
            const auto r = mwm::gpu::warp_patch_loss(in, i, warp);
            REQUIRE(r.target_finite);
            actual[static_cast<std::size_t>(i)] = r.loss;
            coefficients[static_cast<std::size_t>(i)] = r.coefficient;
          }
          const float coefficient_sum = mwm::steps::ordered_total(coefficients.data(), count);
          INFO("patch layout " << lc.patch_layout << ", norm " << norm << ", reduction "
                               << static_cast<int>(reduction));
          REQUIRE(actual == expected);
          // The kernels' groups of 8 threads with 4 lanes each, vector paths where they apply.
          mwm::gpu::host_quad_warp group;
          group.loads.pred = mwm::gpu::quad_vector_loads(in.pred, in.pred_strides, g);
          group.loads.target = mwm::gpu::quad_vector_loads(in.target, in.target_strides, g);
          for (std::int64_t i = 0; i < count; ++i) {
            const auto r = mwm::gpu::warp_patch_loss(in, i, group);
            REQUIRE(r.target_finite);
            REQUIRE(r.loss == expected[static_cast<std::size_t>(i)]);
          }
          CHECK(coefficient_sum == mwm::coefficient_total(in.mask, in.weight, count));

          const bool per_patch = reduction == mwm::loss_reduction::none;
          const auto upstream = mixed_values(rng, per_patch ? count : 1);
          const float denominator = mwm::steps::loss_denominator(
              reduction, mwm::coefficient_total(in.mask, in.weight, count));
          std::vector<float> grad_expected(pred.size(), 0.0f);
          std::vector<float> grad_actual(pred.size(), 4.0f);
          mwm::band_gradients(in, upstream.data(), denominator, grad_expected.data(), pred_strides,
                              0, bands, scratch.data());
          for (std::int64_t i = count - 1; i >= 0; --i)
            mwm::gpu::warp_patch_gradient(in, upstream.data(), denominator, grad_actual.data(),
                                          pred_strides, i, warp);
          REQUIRE(grad_actual == grad_expected);
          std::vector<float> grad_group(pred.size(), 5.0f);
          group.loads.grad = mwm::gpu::quad_vector_loads(grad_group.data(), pred_strides, g);
          for (std::int64_t i = 0; i < count; ++i)
            mwm::gpu::warp_patch_gradient(in, upstream.data(), denominator, grad_group.data(),
                                          pred_strides, i, group);
          REQUIRE(grad_group == grad_expected);
        }
      }
    }
  }
}

namespace {

template <typename Body>
std::string message_of(Body body) {
  try {
    body();
  } catch (const mwm::error& e) {
    return e.what();
  }
  return "no error";
}

// Row indices [0, rows) in a scrambled order: the kernels' threads run rows in any order.
std::vector<std::int64_t> scrambled_rows(rng_type& rng, std::int64_t rows) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
  std::iota(order.begin(), order.end(), std::int64_t(0));
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

}  // namespace

TEST_CASE("cuda token rows copy vectors where the rows are dense and aligned", "[cuda][tokens]") {
  rng_type rng(5);
  const std::int64_t batch = 2, num_tokens = 7, slots = 4, channels = 8;
  const mwm::token_strides xs{num_tokens * channels, channels, 1};
  const mwm::token_strides ks{slots * channels, channels, 1};
  const std::vector<std::int64_t> ids{6, 0, -1, 6, 3, 3, 2, 1};
  SECTION("float, 4 per vector") {
    const auto x = mixed_values(rng, batch * xs.batch);
    std::vector<float> expected(static_cast<std::size_t>(batch * ks.batch));
    mwm::gather_tokens(x.data(), xs, ids.data(), slots, channels, expected.data(), ks, 0, batch);
    std::vector<float> actual(expected.size(), 3.0f);
    for (std::int64_t row = 0; row < batch * slots; ++row)
      for (int lane = 0; lane < 32; ++lane) {
        mwm::data_error bad;
        mwm::gpu::gather_row_part<4>(x.data(), xs, ids.data(), slots, num_tokens, channels,
                                     actual.data(), ks, row, lane, 32, &bad);
      }
    REQUIRE(actual == expected);
  }
  SECTION("double, 2 per vector, restore with the mask token") {
    std::vector<double> x_vis(static_cast<std::size_t>(batch * ks.batch));
    for (auto& v : x_vis) v = draw_unit(rng);
    std::vector<double> mask_token(static_cast<std::size_t>(channels));
    for (auto& v : mask_token) v = -draw_unit(rng);
    const std::vector<std::int64_t> ids_restore{0, 6, 1, 5, 2, 4, 3, 3, 2, 1, 0, 6, 5, 4};
    const std::vector<std::int64_t> visible{3, 4};
    std::vector<double> expected(static_cast<std::size_t>(batch * xs.batch));
    mwm::restore_tokens(x_vis.data(), ks, ids_restore.data(), visible.data(), slots, num_tokens,
                        channels, mask_token.data(), 1, expected.data(), xs, 0, batch);
    std::vector<double> actual(expected.size(), 2.0);
    for (std::int64_t row = 0; row < batch * num_tokens; ++row)
      for (int lane = 0; lane < 3; ++lane) {
        mwm::data_error bad;
        mwm::gpu::restore_row_part<2>(x_vis.data(), ks, ids_restore.data(), visible.data(), slots,
                                      num_tokens, channels, mask_token.data(), 1, actual.data(), xs,
                                      row, lane, 3, &bad);
      }
    REQUIRE(actual == expected);
  }
}

TEST_CASE("cuda token rows record the error the CPU validators raise, in any order",
          "[cuda][tokens][errors]") {
  rng_type rng(77);
  const std::int64_t batch = 3, num_tokens = 6, slots = 4, channels = 5;
  const mwm::token_strides xs{num_tokens * channels, channels, 1};
  const mwm::token_strides ks{slots * channels, channels, 1};
  const auto x = mixed_values(rng, batch * xs.batch);
  // Ids far outside x: a row that read through one would fault (or trip ASan).
  std::vector<std::int64_t> ids{0, 1, 2, 3, 5, std::int64_t(1) << 40, -2, 4, 9, 0, -1, 2};
  const std::string cpu =
      message_of([&] { mwm::validate_keep_ids(ids.data(), batch, slots, num_tokens); });
  REQUIRE(cpu.find("ids_keep = 1099511627776") != std::string::npos);
  for (int trial = 0; trial < 5; ++trial) {
    mwm::data_error_slot first;
    std::vector<float> out(static_cast<std::size_t>(batch * ks.batch), 8.0f);
    for (std::int64_t row : scrambled_rows(rng, batch * slots))
      for (int lane = 0; lane < 2; ++lane) {
        mwm::data_error bad;
        if (!mwm::gpu::gather_row_part<1>(x.data(), xs, ids.data(), slots, num_tokens, channels,
                                          out.data(), ks, row, lane, 2, &bad) &&
            lane == 0)
          mwm::record_data_error(first, mwm::steps::data_error_key(0, row), bad);
      }
    REQUIRE(mwm::steps::has_data_error(first));
    REQUIRE(message_of([&] { mwm::raise_if_data_error(first); }) == cpu);
    for (std::int64_t c = 0; c < channels; ++c) {  // row (1, 1) holds the bad id: zeros
      REQUIRE(out[ks.batch + ks.token + c] == 0.0f);
      REQUIRE(out[ks.batch + 2 * ks.token + c] == 0.0f);
    }
  }

  // ids_restore errors come before num_visible errors, as the CPU validator scans them.
  std::vector<std::int64_t> ids_restore(static_cast<std::size_t>(batch * num_tokens), 0);
  for (std::int64_t i = 0; i < batch * num_tokens; ++i) ids_restore[i] = i % num_tokens;
  std::vector<std::int64_t> visible{2, slots + 3, -1};
  const auto x_vis = mixed_values(rng, batch * ks.batch);
  const auto mask_token = mixed_values(rng, channels);
  auto restore_message = [&] {
    mwm::data_error_slot first;
    std::vector<float> out(static_cast<std::size_t>(batch * xs.batch), 8.0f);
    for (std::int64_t row : scrambled_rows(rng, batch * num_tokens)) {
      mwm::data_error bad;
      const int phase = mwm::gpu::restore_row_part<1>(
          x_vis.data(), ks, ids_restore.data(), visible.data(), slots, num_tokens, channels,
          mask_token.data(), 1, out.data(), xs, row, 0, 1, &bad);
      if (phase != mwm::gpu::none_phase)
        mwm::record_data_error(first, mwm::gpu::restore_error_key(phase, row, row / num_tokens),
                               bad);
    }
    return message_of([&] { mwm::raise_if_data_error(first); });
  };
  auto cpu_restore = [&] {
    return message_of([&] {
      mwm::validate_restore_ids(ids_restore.data(), visible.data(), batch, num_tokens, slots);
    });
  };
  REQUIRE(cpu_restore().find("num_visible = 7") != std::string::npos);
  REQUIRE(restore_message() == cpu_restore());
  ids_restore[2 * num_tokens + 4] = -(std::int64_t(1) << 50);
  ids_restore[2 * num_tokens + 1] = num_tokens;
  REQUIRE(cpu_restore().find("ids_restore = 6") != std::string::npos);
  REQUIRE(restore_message() == cpu_restore());
}

TEST_CASE("cuda launch plans: tiers, chunks and the size checks before any sizing",
          "[cuda][plans]") {
  using mwm::gpu::block_tier;
  CHECK(mwm::gpu::tier_for(1) == block_tier::small_128x4);
  CHECK(mwm::gpu::tier_for(512) == block_tier::small_128x4);
  CHECK(mwm::gpu::tier_for(513) == block_tier::large_256x8);
  CHECK(mwm::gpu::tier_for(2048) == block_tier::large_256x8);
  CHECK(mwm::gpu::tier_for(2049) == block_tier::segmented);
  CHECK(mwm::gpu::tier_for(2049) == mwm::gpu::plan_quantiles(3, 2049));

  // Defect 4: B * N past 2^31 is a clear error from the plan that quantile_workspace_bytes runs
  // first, also where B * N overflows int (or int64: 2^31 * 2^40).
  CHECK(mwm::gpu::sort_items_fit((1 << 20) - 1, 2048));  // 2^31 - 2048 items
  CHECK_FALSE(mwm::gpu::sort_items_fit(1 << 20, 2048));  // 2^31 items
  CHECK(mwm::gpu::sort_items_fit(1, 0x7FFFFFFF));
  CHECK_FALSE(mwm::gpu::sort_items_fit(std::int64_t(1) << 31, std::int64_t(1) << 40));
  REQUIRE(message_of([] { mwm::gpu::plan_quantiles(1 << 20, 4096); }) ==
          "mwm: batch * patches = 1048576 * 4096: must stay below 2^31 for the CUDA quantile "
          "sort (split the batch)");
  REQUIRE(message_of([] {
            mwm::gpu::plan_quantiles(0x7FFFFFFF, std::int64_t(1) << 40);
          }).find("must stay below 2^31") != std::string::npos);
  REQUIRE(message_of([] { mwm::gpu::plan_quantiles(std::int64_t(1) << 31, 10); }) ==
          "mwm: batch = 2147483648: must lie in [1, 2^31)");
  // One block per sample needs no sort items: a huge batch of small rows is fine.
  CHECK(mwm::gpu::plan_quantiles(0x7FFFFFFF, 196) == block_tier::small_128x4);

  // Chunks of the segmented masks: 2^20 patches each by default, the last one the remainder.
  const auto two = mwm::gpu::plan_chunks(300, 4096);
  CHECK(two.samples == 256);
  CHECK(two.chunks == 2);
  CHECK(mwm::gpu::chunk_first(two, 1) == 256);
  CHECK(mwm::gpu::chunk_samples(two, 300, 1) == 44);
  const auto huge = mwm::gpu::plan_chunks(3, std::int64_t(1) << 22);  // one sample per chunk
  CHECK(huge.samples == 1);
  CHECK(huge.chunks == 3);
  const auto one = mwm::gpu::plan_chunks(2, 5000);
  CHECK(one.samples == 2);
  CHECK(one.chunks == 1);
  for (std::int64_t batch : {1, 7, 255, 256, 257, 1000}) {
    const auto plan = mwm::gpu::plan_chunks(batch, 4096);
    std::int64_t covered = 0;
    for (std::int64_t c = 0; c < plan.chunks; ++c) {
      REQUIRE(mwm::gpu::chunk_first(plan, c) == covered);
      covered += mwm::gpu::chunk_samples(plan, batch, c);
    }
    REQUIRE(covered == batch);
  }

  // Row copies: lanes cover the row's vectors in whole warps, about 256 threads a block.
  const auto rows768 = mwm::gpu::plan_row_launch(12544, 768, 4);  // fp32 ViT-B rows: 192 vectors
  CHECK(rows768.lanes == 192);
  CHECK(rows768.rows_per_block == 1);
  CHECK(rows768.blocks == 12544u);
  const auto rows7 = mwm::gpu::plan_row_launch(100, 7, 1);
  CHECK(rows7.lanes == 32);
  CHECK(rows7.rows_per_block == 8);
  CHECK(rows7.blocks == 13u);
  CHECK(mwm::gpu::plan_row_launch(std::int64_t(1) << 40, 8192, 1).blocks == (1u << 20));
}

TEST_CASE("cuda block tiers: padded sorts of both tiers reproduce select_sample",
          "[cuda][selection][tiers]") {
  rng_type rng(513);
  const auto all_policies = policies(rng);
  // 196 and 512 patches in the 128x4 tier (512 fills it), 513 to 2048 in the 256x8 tier.
  const mwm::grid_shape grids[] = {mwm::make_grid_2d(14, 14), mwm::make_grid_2d(16, 32),
                                   mwm::make_grid_2d(19, 27), mwm::make_grid_2d(24, 22),
                                   mwm::make_grid_2d(32, 64), mwm::make_grid_3d(8, 8, 16)};
  std::int64_t compared = 0;
  for (const auto& grid : grids) {
    const std::int64_t n = grid.num_patches();
    const auto tier = mwm::gpu::tier_for(n);
    REQUIRE(tier != mwm::gpu::block_tier::segmented);
    const std::int64_t capacity = tier == mwm::gpu::block_tier::small_128x4
                                      ? mwm::gpu::small_tier_patches
                                      : mwm::gpu::large_tier_patches;
    for (std::size_t k = 0; k < all_policies.size(); k += 5) {
      const auto& policy = all_policies[k];
      if (!coarse_fits(policy, grid)) continue;
      const auto params = mwm::make_policy_params(policy, grid);
      const auto region_count = static_cast<std::int32_t>(policy.region_ratios.size());
      std::vector<std::int32_t> regions(static_cast<std::size_t>(n));
      for (auto& r : regions) r = static_cast<std::int32_t>(draw_int(rng, 0, region_count - 1));
      const auto scores = tied_scores(rng, n);
      const auto seed = static_cast<std::uint64_t>(draw_int(rng, 0, 1 << 30));
      mwm::selection_workspace ws;
      std::vector<std::int64_t> expected(static_cast<std::size_t>(n));
      const auto expected_visible = mwm::steps::select_sample(
          params, grid, regions.data(), scores.data(), seed, 77, ws, expected.data());
      std::vector<std::int64_t> actual(static_cast<std::size_t>(n), -3);
      const auto actual_visible = mwm::gpu::reference::select_sample_in_passes(
          params, grid, regions.data(), scores.data(), seed, 77, actual.data(), capacity);
      INFO(n << " patches, capacity " << capacity << ", policy " << mwm::policy_name(policy.kind));
      REQUIRE(actual_visible == expected_visible);
      REQUIRE(actual == expected);
      ++compared;
    }
  }
  CHECK(compared > 40);
}

TEST_CASE("cuda segmented launcher over chunks reproduces generate_masks_into",
          "[cuda][selection][chunks]") {
  rng_type rng(4096);
  const auto all_policies = policies(rng);
  struct chunk_case {
    mwm::grid_shape grid;
    std::int64_t batch;
    std::int64_t chunk_elements;
    std::int64_t chunks;
  };
  // Three chunks (3 + 3 + 1 samples), one sample per chunk, one chunk for the whole batch.
  const chunk_case cases[] = {{mwm::make_grid_2d(14, 14), 7, 3 * 196, 3},
                              {mwm::make_grid_3d(4, 6, 8), 4, 100, 4},
                              {mwm::make_grid_2d(8, 10), 5, std::int64_t(1) << 20, 1}};
  for (const auto& cc : cases) {
    const std::int64_t n = cc.grid.num_patches();
    for (std::size_t k = 0; k < all_policies.size(); k += 2) {
      const auto& policy = all_policies[k];
      if (!coarse_fits(policy, cc.grid)) continue;
      mwm::mask_request request;
      request.grid = cc.grid;
      request.batch = cc.batch;
      request.policy = policy;
      request.seed = static_cast<std::uint64_t>(draw_int(rng, 0, 1 << 30));
      std::vector<std::int32_t> regions(static_cast<std::size_t>(cc.batch * n));
      const auto region_count = static_cast<std::int32_t>(policy.region_ratios.size());
      for (auto& r : regions) r = static_cast<std::int32_t>(draw_int(rng, 0, region_count - 1));
      const auto scores = tied_scores(rng, cc.batch * n);
      std::vector<std::int64_t> sample_index(static_cast<std::size_t>(cc.batch));
      for (auto& s : sample_index) s = draw_int(rng, 0, std::int64_t(1) << 40);
      request.regions = regions.data();
      request.scores = scores.data();
      if (k % 4 == 0)
        request.sample_index = sample_index.data();
      else
        request.offset = static_cast<std::uint64_t>(draw_int(rng, 0, 1000));
      const auto expected = mwm::generate_masks(request);
      auto actual = mwm_test::poisoned_copy(expected);
      const auto out = mwm::detail::outputs_of(actual);
      const auto chunks =
          mwm::gpu::reference::generate_masks_in_chunks(request, out, cc.chunk_elements);
      INFO(n << " patches, batch " << cc.batch << ", policy " << mwm::policy_name(policy.kind)
             << (request.sample_index ? ", sample_index" : ", offset"));
      REQUIRE(chunks == cc.chunks);
      mwm_test::require_identical(actual, expected);
    }
  }
}

TEST_CASE("data_error_message words the loss faults as throw_loss_fault does", "[cuda][errors]") {
  // The loss kernels adopt the error slot with these codes; their messages must stay the CPU's.
  const auto g = mwm::make_geometry_2d(1, 8, 8, 4, 4);
  const std::int64_t batch = 2, n = g.grid.num_patches();
  std::vector<float> weight(static_cast<std::size_t>(batch * n), 1.0f);
  weight[6] = std::numeric_limits<float>::quiet_NaN();
  for (bool wide : {false, true}) {
    auto cpu = [&](mwm::loss_fault fault) {
      return message_of([&] {
        if (wide) {
          std::vector<double> w(weight.begin(), weight.end());
          mwm::loss_inputs<double, double, double> in;
          in.geometry = g;
          in.batch = batch;
          in.weight = w.data();
          mwm::detail::throw_loss_fault(in, fault, 6);
        } else {
          mwm::loss_inputs<float, float, float> in;
          in.geometry = g;
          in.batch = batch;
          in.weight = weight.data();
          mwm::detail::throw_loss_fault(in, fault, 6);
        }
      });
    };
    auto slot_message = [&](mwm::data_error e) {
      return message_of([&] { mwm::raise_data_error(e); });
    };
    REQUIRE(slot_message(mwm::steps::integer_data_error(mwm::data_error_code::loss_target, 6, n, 0,
                                                        0)) == cpu(mwm::loss_fault::target));
    REQUIRE(slot_message(mwm::steps::real_data_error(
                mwm::data_error_code::loss_weight, mwm::data_argument::scores, 6, n, weight[6])) ==
            cpu(mwm::loss_fault::weight));
    REQUIRE(slot_message(mwm::steps::integer_data_error(mwm::data_error_code::loss_pred, 6, n, 0,
                                                        0)) == cpu(mwm::loss_fault::pred));
    REQUIRE(slot_message(mwm::steps::integer_data_error(mwm::data_error_code::loss_overflow, 6, n,
                                                        0, wide ? 64 : 32)) ==
            cpu(mwm::loss_fault::overflow));
  }
}

TEST_CASE("quad_vector_loads: float4 only where every step's four elements are one aligned vector",
          "[cuda][loss]") {
  alignas(16) static float data[64];
  const auto g2 = mwm::make_geometry_2d(3, 32, 48, 16, 16);  // P = 768
  const std::int64_t n2 = g2.grid.num_patches(), p2 = g2.patch_vector_size();
  const auto dense = mwm::vector_patch_strides(g2, n2 * p2, p2, 1);
  REQUIRE(mwm::gpu::quad_vector_loads(data, dense, g2));
  REQUIRE_FALSE(mwm::gpu::quad_vector_loads(data + 1, dense, g2));  // not 16-byte aligned
  const double wide[4] = {0, 0, 0, 0};
  REQUIRE_FALSE(mwm::gpu::quad_vector_loads(wide, dense, g2));  // float only
  // An RGB image: four consecutive elements of a patch vector span the channel planes.
  const auto rgb = mwm::image_patch_strides(g2, 3 * 32 * 48, 32 * 48, 0, 48, 1);
  REQUIRE_FALSE(mwm::gpu::quad_vector_loads(data, rgb, g2));
  // One channel, rows of 4 pixels: contiguous fours; rows of 6 (W = 30): not.
  const auto g3 = mwm::make_geometry_3d(1, 8, 8, 8, 4, 4, 4);
  const auto volume = mwm::image_patch_strides(g3, 512, 512, 64, 8, 1);
  REQUIRE(mwm::gpu::quad_vector_loads(data, volume, g3));
  const auto g_odd = mwm::make_geometry_2d(1, 6, 30, 6, 6);
  REQUIRE_FALSE(mwm::gpu::quad_vector_loads(
      data, mwm::image_patch_strides(g_odd, 180, 180, 0, 30, 1), g_odd));
  // A row stride that is not a multiple of 4 (a padded or sliced image).
  REQUIRE_FALSE(
      mwm::gpu::quad_vector_loads(data, mwm::image_patch_strides(g3, 648, 648, 81, 9, 1), g3));
}

TEST_CASE("the reduced loss's overflow: one test and one message for finish_loss and the slot",
          "[cuda][errors][loss]") {
  // The finish kernel records reduced_loss_overflow_error where reduced_loss_overflows says so;
  // finish_loss raises the same error. Every patch loss finite, their sum not.
  const auto g = mwm::make_geometry_2d(1, 8, 8, 4, 4);
  const std::int64_t batch = 1, n = g.grid.num_patches();
  const std::vector<std::uint8_t> mask(static_cast<std::size_t>(n), 1);
  const std::vector<float> losses(static_cast<std::size_t>(n), 3e38f);
  mwm::loss_inputs<float, float, float> in;
  in.geometry = g;
  in.batch = batch;
  in.mask = mask.data();
  in.options.reduction = mwm::loss_reduction::sum;
  const std::string cpu = message_of([&] { (void)mwm::finish_loss(in, losses.data(), -1); });
  REQUIRE(cpu.rfind("mwm: the reduced loss overflows float32 (every patch's loss is finite", 0) ==
          0);
  mwm::data_error_slot slot;
  mwm::record_data_error(slot, mwm::steps::data_error_key(2, 0),
                         mwm::reduced_loss_overflow_error<float>());
  REQUIRE(message_of([&] { mwm::raise_if_data_error(slot); }) == cpu);
  REQUIRE(message_of([&] {
            mwm::raise_data_error(mwm::reduced_loss_overflow_error<double>());
          }).find("overflows float64") != std::string::npos);
  const float inf = std::numeric_limits<float>::infinity();
  REQUIRE(mwm::reduced_loss_overflows(mwm::loss_reduction::sum, 1.0f, inf));
  REQUIRE(mwm::reduced_loss_overflows(mwm::loss_reduction::mean, 2.0f, inf / inf));
  REQUIRE_FALSE(mwm::reduced_loss_overflows(mwm::loss_reduction::mean, 0.0f, inf / inf));
  REQUIRE_FALSE(mwm::reduced_loss_overflows(mwm::loss_reduction::mean_eps, 1.0f, 2.0f));
  // Under propagate the value comes back.
  in.options.nonfinite = mwm::nonfinite_policy::propagate;
  REQUIRE(mwm::finish_loss(in, losses.data(), -1) == inf);
}
