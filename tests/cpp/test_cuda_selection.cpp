// The CUDA path's mask selection on the CPU: the launcher's passes (cuda/selection_steps.cuh,
// cuda/map_steps.cuh, run through their host reference) must reproduce the CPU driver
// select_sample, the pooling, regions and upsampling drivers and whole batches for every
// policy, and the launch plans must size and split the work as the launcher does. The .cuh files
// are read here by the host compiler (no __CUDACC__); the same file is also built by nvcc as host
// code when MWM_BUILD_CUDA is on (cuda/CMakeLists.txt).
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
#include "cuda_test_support.hpp"
#include "loss_test_support.hpp"

using namespace mwm_cuda_test;

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
