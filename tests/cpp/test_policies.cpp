// Exact counts of every policy over hundreds of random grids, ratios and region layouts, in 2D
// and 3D, each against the count formula of the method it reproduces.
#include <mwm/masking.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

struct grids_2d {
  static constexpr bool three_d = false;
};
struct grids_3d {
  static constexpr bool three_d = true;
};

constexpr int trials = 200;

std::int64_t region_size(const std::vector<std::int32_t>& regions, std::int64_t n, std::int64_t b,
                         int region) {
  return std::count(regions.begin() + b * n, regions.begin() + (b + 1) * n, region);
}

std::int64_t masked_in_region(const mwm::mask_batch& masks,
                              const std::vector<std::int32_t>& regions, std::int64_t b,
                              int region) {
  const std::int64_t n = masks.num_patches();
  std::int64_t count = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (regions[static_cast<std::size_t>(b * n + i)] == region && masks.is_masked(b, i)) ++count;
  }
  return count;
}

}  // namespace

TEMPLATE_TEST_CASE("random masks exactly n - keep(n, ratio) with every rounding", "[policy]",
                   grids_2d, grids_3d) {
  mwm_test::test_rng rng(TestType::three_d ? 31 : 30);
  for (int trial = 0; trial < trials; ++trial) {
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::random;
    policy.ratio = mwm_test::random_ratio(rng);
    policy.rounding = mwm_test::random_rounding(rng);
    const auto in = mwm_test::random_trial_inputs(rng, TestType::three_d, 5, trial);
    const auto masks = mwm_test::generate(policy, in);
    const std::int64_t n = in.grid.num_patches();
    const std::int64_t expected = n - mwm_test::python_keep(n, policy.ratio, policy.rounding);
    INFO("trial " << trial << ": n = " << n << ", ratio = " << policy.ratio);
    REQUIRE(masks.widths.keep == n - expected);
    for (std::int64_t b = 0; b < in.batch; ++b) {
      REQUIRE(masks.num_masked[static_cast<std::size_t>(b)] == expected);
    }
    mwm_test::require_consistent_outputs(masks);
  }
}

TEMPLATE_TEST_CASE("per_region keeps int(n_r * (1 - ratio_r)) of every region", "[policy]",
                   grids_2d, grids_3d) {
  mwm_test::test_rng rng(TestType::three_d ? 41 : 40);
  for (int trial = 0; trial < trials; ++trial) {
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::per_region;
    const int regions = static_cast<int>(mwm_test::uniform_int(rng, 1, 4));
    for (int r = 0; r < regions; ++r) policy.region_ratios.push_back(mwm_test::random_ratio(rng));
    policy.rounding = trial % 3 == 0 ? mwm_test::random_rounding(rng) : mwm::keep_rounding::floor;
    auto in = mwm_test::random_trial_inputs(rng, TestType::three_d, 5, trial);
    const auto region_map = mwm_test::random_regions(rng, in.grid, in.batch, regions);
    in.regions = &region_map;
    const auto masks = mwm_test::generate(policy, in);
    const std::int64_t n = in.grid.num_patches();
    INFO("trial " << trial << ": n = " << n << ", regions = " << regions);
    REQUIRE(masks.widths.keep == n);
    REQUIRE(masks.widths.masked == n);
    for (std::int64_t b = 0; b < in.batch; ++b) {
      std::int64_t total = 0;
      for (int r = 0; r < regions; ++r) {
        const std::int64_t size = region_size(region_map, n, b, r);
        const double ratio = policy.region_ratios[static_cast<std::size_t>(r)];
        const std::int64_t expected = size - mwm_test::python_keep(size, ratio, policy.rounding);
        INFO("sample " << b << ", region " << r << ": n_r = " << size << ", ratio " << ratio);
        REQUIRE(masked_in_region(masks, region_map, b, r) == expected);
        total += expected;
      }
      REQUIRE(masks.num_masked[static_cast<std::size_t>(b)] == total);
    }
    mwm_test::require_consistent_outputs(masks);
  }
}

TEST_CASE("per_region reproduces the reference's double rounding", "[policy]") {
  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::per_region;
  SECTION("10 ROI cells at 0.8 keep 1") {
    policy.region_ratios = {0.4, 0.8};
    // 7x7 grid: 10 ROI cells, 39 background cells keep int(39 * 0.6) = 23.
    std::vector<std::int32_t> regions(49, 0);
    for (int i = 0; i < 10; ++i) regions[static_cast<std::size_t>(3 * i + 5)] = 1;
    mwm_test::generate_inputs in;
    in.grid = mwm::make_grid_2d(7, 7);
    in.batch = 3;
    in.regions = nullptr;
    std::vector<std::int32_t> batch_regions;
    for (int b = 0; b < 3; ++b)
      batch_regions.insert(batch_regions.end(), regions.begin(), regions.end());
    in.regions = &batch_regions;
    const auto masks = mwm_test::generate(policy, in);
    for (std::int64_t b = 0; b < 3; ++b) {
      CHECK(masked_in_region(masks, batch_regions, b, 1) == 9);
      CHECK(masked_in_region(masks, batch_regions, b, 0) == 39 - 23);
    }
  }
  SECTION("196 patches at 0.7 keep 58") {
    policy.region_ratios = {0.7};
    const std::vector<std::int32_t> regions(196, 0);
    mwm_test::generate_inputs in;
    in.grid = mwm::make_grid_2d(14, 14);
    in.regions = &regions;
    const auto masks = mwm_test::generate(policy, in);
    CHECK(masks.num_masked[0] == 196 - 58);
  }
}

TEMPLATE_TEST_CASE("fixed_total masks the same total everywhere, split by largest remainder",
                   "[policy]", grids_2d, grids_3d) {
  mwm_test::test_rng rng(TestType::three_d ? 51 : 50);
  for (int trial = 0; trial < trials; ++trial) {
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::fixed_total;
    policy.ratio = mwm_test::random_ratio(rng);
    policy.rounding = trial % 4 == 0 ? mwm::keep_rounding::round : mwm::keep_rounding::floor;
    const int regions = static_cast<int>(mwm_test::uniform_int(rng, 1, 4));
    for (int r = 0; r < regions; ++r) policy.region_ratios.push_back(mwm_test::random_ratio(rng));
    auto in = mwm_test::random_trial_inputs(rng, TestType::three_d, 5, trial);
    const auto region_map = mwm_test::random_regions(rng, in.grid, in.batch, regions);
    in.regions = &region_map;
    const auto masks = mwm_test::generate(policy, in);
    const std::int64_t n = in.grid.num_patches();
    const std::int64_t total = n - mwm_test::python_keep(n, policy.ratio, policy.rounding);
    std::vector<std::int64_t> ratio_q16;
    for (double r : policy.region_ratios) ratio_q16.push_back(mwm::steps::unit_q16(r));
    INFO("trial " << trial << ": n = " << n << ", ratio = " << policy.ratio);
    REQUIRE(masks.widths.masked == total);
    for (std::int64_t b = 0; b < in.batch; ++b) {
      REQUIRE(masks.num_masked[static_cast<std::size_t>(b)] == total);
      std::vector<std::int64_t> sizes;
      for (int r = 0; r < regions; ++r) sizes.push_back(region_size(region_map, n, b, r));
      const auto expected = mwm_test::reference_share(sizes, ratio_q16, total);
      for (int r = 0; r < regions; ++r) {
        INFO("sample " << b << ", region " << r);
        REQUIRE(masked_in_region(masks, region_map, b, r) == expected[static_cast<std::size_t>(r)]);
      }
    }
    mwm_test::require_consistent_outputs(masks);
  }
}

TEMPLATE_TEST_CASE("weighted masks exactly the fixed total", "[policy]", grids_2d, grids_3d) {
  mwm_test::test_rng rng(TestType::three_d ? 61 : 60);
  for (int trial = 0; trial < trials; ++trial) {
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::weighted;
    policy.ratio = mwm_test::random_ratio(rng);
    policy.weight_floor = trial % 5 == 0 ? 0.0 : mwm_test::uniform_real(rng, 0.0, 1.0);
    auto in = mwm_test::random_trial_inputs(rng, TestType::three_d, 4, trial);
    const std::int64_t n = in.grid.num_patches();
    const auto scores = mwm_test::random_scores(rng, in.batch * n, trial % 2 == 0);
    in.scores = &scores;
    const auto masks = mwm_test::generate(policy, in);
    const std::int64_t expected = n - mwm_test::python_keep(n, policy.ratio, policy.rounding);
    INFO("trial " << trial << ": n = " << n << ", ratio = " << policy.ratio);
    for (std::int64_t b = 0; b < in.batch; ++b)
      REQUIRE(masks.num_masked[static_cast<std::size_t>(b)] == expected);
    mwm_test::require_consistent_outputs(masks);
  }
}

TEMPLATE_TEST_CASE("block masks exactly the fixed total", "[policy]", grids_2d, grids_3d) {
  mwm_test::test_rng rng(TestType::three_d ? 71 : 70);
  for (int trial = 0; trial < trials; ++trial) {
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::block;
    policy.ratio = mwm_test::random_ratio(rng);
    policy.rounding = mwm_test::random_rounding(rng);
    policy.block.min_patches = mwm_test::uniform_int(rng, 1, 20);
    policy.block.max_patches =
        trial % 2 == 0 ? 0 : policy.block.min_patches + mwm_test::uniform_int(rng, 0, 30);
    const auto in = mwm_test::random_trial_inputs(rng, TestType::three_d, 4, trial);
    const auto masks = mwm_test::generate(policy, in);
    const std::int64_t n = in.grid.num_patches();
    const std::int64_t expected = n - mwm_test::python_keep(n, policy.ratio, policy.rounding);
    INFO("trial " << trial << ": n = " << n << ", ratio = " << policy.ratio);
    for (std::int64_t b = 0; b < in.batch; ++b)
      REQUIRE(masks.num_masked[static_cast<std::size_t>(b)] == expected);
    mwm_test::require_consistent_outputs(masks);
  }
}

namespace {

struct box {
  std::int64_t lo[3] = {1 << 30, 1 << 30, 1 << 30};
  std::int64_t hi[3] = {-1, -1, -1};
};

}  // namespace

TEMPLATE_TEST_CASE("blocks are boxes, and they carry a large budget", "[policy]", grids_2d,
                   grids_3d) {
  const mwm::grid_shape grid =
      TestType::three_d ? mwm::make_grid_3d(8, 8, 8) : mwm::make_grid_2d(14, 14);
  const std::int64_t n = grid.num_patches();
  const auto params = mwm::make_block_params(16, 0, 0.3, 1.0 / 0.3);
  const std::int64_t target = n - mwm::keep_count(n, 0.4, mwm::keep_rounding::floor_mask);
  std::int64_t covered_total = 0;
  const int samples = 50;
  for (std::uint64_t sample = 0; sample < static_cast<std::uint64_t>(samples); ++sample) {
    INFO("sample " << sample);
    // Replays place_blocks one block at a time: every block adds the cells of one box.
    std::vector<std::uint8_t> blocked(static_cast<std::size_t>(n), 0);
    mwm::detail::sample_stream stream{5, sample, mwm::sample_stream_block, 0};
    std::int64_t covered = 0;
    while (covered < target) {
      const std::vector<std::uint8_t> before = blocked;
      const std::int64_t added =
          mwm::detail::place_one_block(blocked.data(), grid, params, target - covered, stream);
      if (added == 0) break;
      box bounds;
      std::int64_t fresh = 0;
      for (std::int64_t d = 0; d < grid.depth; ++d)
        for (std::int64_t h = 0; h < grid.height; ++h)
          for (std::int64_t w = 0; w < grid.width; ++w) {
            const auto i = static_cast<std::size_t>(grid.index(d, h, w));
            if (blocked[i] && !before[i]) {
              ++fresh;
              const std::int64_t at[3] = {d, h, w};
              for (int axis = 0; axis < 3; ++axis) {
                bounds.lo[axis] = std::min(bounds.lo[axis], at[axis]);
                bounds.hi[axis] = std::max(bounds.hi[axis], at[axis]);
              }
            }
            REQUIRE(blocked[i] >= before[i]);
          }
      REQUIRE(fresh == added);
      for (std::int64_t d = bounds.lo[0]; d <= bounds.hi[0]; ++d)
        for (std::int64_t h = bounds.lo[1]; h <= bounds.hi[1]; ++h)
          for (std::int64_t w = bounds.lo[2]; w <= bounds.hi[2]; ++w)
            REQUIRE(blocked[static_cast<std::size_t>(grid.index(d, h, w))] == 1);
      covered += added;
    }
    REQUIRE(covered <= target);
    std::vector<std::uint8_t> all_at_once(static_cast<std::size_t>(n), 7);
    REQUIRE(mwm::steps::place_blocks(all_at_once.data(), grid, params, target, 5, sample) ==
            covered);
    REQUIRE(all_at_once == blocked);

    // The policy masks those blocks and tops up the shortfall elsewhere.
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::block;
    policy.ratio = 0.4;
    policy.rounding = mwm::keep_rounding::floor_mask;
    mwm_test::generate_inputs in;
    in.grid = grid;
    in.seed = 5;
    in.offset = sample;
    const auto masks = mwm_test::generate(policy, in);
    REQUIRE(masks.num_masked[0] == target);
    for (std::int64_t i = 0; i < n; ++i) {
      if (blocked[static_cast<std::size_t>(i)]) REQUIRE(masks.is_masked(0, i));
    }
    covered_total += covered;
  }
  // Most of the budget is carried by blocks, not by the random top-up.
  CHECK(covered_total >= target * samples * 3 / 4);
}

TEMPLATE_TEST_CASE("coarse masks whole coarse cells and counts keep on the coarse grid", "[policy]",
                   grids_2d, grids_3d) {
  mwm_test::test_rng rng(TestType::three_d ? 81 : 80);
  for (int trial = 0; trial < trials; ++trial) {
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::coarse;
    policy.ratio = mwm_test::random_ratio(rng);
    policy.rounding = mwm_test::random_rounding(rng);
    const std::int64_t f = mwm_test::uniform_int(rng, 1, TestType::three_d ? 2 : 4);
    policy.coarse_factor = f;
    const std::int64_t cd = TestType::three_d ? mwm_test::uniform_int(rng, 1, 3) : 1;
    const std::int64_t ch = mwm_test::uniform_int(rng, 1, 5);
    const std::int64_t cw = mwm_test::uniform_int(rng, 1, 5);
    mwm_test::generate_inputs in;
    in.grid = TestType::three_d ? mwm::make_grid_3d(cd * f, ch * f, cw * f)
                                : mwm::make_grid_2d(ch * f, cw * f);
    in.batch = mwm_test::uniform_int(rng, 1, 4);
    in.seed = static_cast<std::uint64_t>(trial);
    const auto masks = mwm_test::generate(policy, in);
    const std::int64_t cells = cd * ch * cw;
    const std::int64_t per_cell = TestType::three_d ? f * f * f : f * f;
    const std::int64_t expected =
        (cells - mwm_test::python_keep(cells, policy.ratio, policy.rounding)) * per_cell;
    INFO("trial " << trial << ": cells = " << cells << ", factor = " << f);
    const mwm::grid_shape grid = in.grid;
    for (std::int64_t b = 0; b < in.batch; ++b) {
      REQUIRE(masks.num_masked[static_cast<std::size_t>(b)] == expected);
      for (std::int64_t d = 0; d < grid.depth; ++d)
        for (std::int64_t h = 0; h < grid.height; ++h)
          for (std::int64_t w = 0; w < grid.width; ++w) {
            const std::int64_t corner =
                grid.index(TestType::three_d ? d / f * f : 0, h / f * f, w / f * f);
            REQUIRE(masks.is_masked(b, grid.index(d, h, w)) == masks.is_masked(b, corner));
          }
    }
    mwm_test::require_consistent_outputs(masks);
  }
}

TEMPLATE_TEST_CASE("loss_guided masks the top share by score, the rest at random", "[policy]",
                   grids_2d, grids_3d) {
  mwm_test::test_rng rng(TestType::three_d ? 91 : 90);
  for (int trial = 0; trial < trials; ++trial) {
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::loss_guided;
    policy.ratio = mwm_test::random_ratio(rng);
    policy.hard_share = mwm_test::random_ratio(rng);
    auto in = mwm_test::random_trial_inputs(rng, TestType::three_d, 4, trial);
    const std::int64_t n = in.grid.num_patches();
    const auto scores = mwm_test::random_scores(rng, in.batch * n, trial % 2 == 0);
    in.scores = &scores;
    const auto masks = mwm_test::generate(policy, in);
    const std::int64_t masked = n - mwm_test::python_keep(n, policy.ratio, policy.rounding);
    const auto hard = static_cast<std::int64_t>(static_cast<double>(masked) * policy.hard_share);
    INFO("trial " << trial << ": n = " << n << ", masked = " << masked << ", hard = " << hard);
    for (std::int64_t b = 0; b < in.batch; ++b) {
      REQUIRE(masks.num_masked[static_cast<std::size_t>(b)] == masked);
      const auto ranked = mwm_test::ranked_by_score(scores.data() + b * n, n, false);
      for (std::int64_t rank = 0; rank < hard; ++rank)
        REQUIRE(masks.is_masked(b, ranked[static_cast<std::size_t>(rank)]));
    }
    mwm_test::require_consistent_outputs(masks);
  }
}

TEMPLATE_TEST_CASE("attention_guided high / low / hint follow AttMask", "[policy]", grids_2d,
                   grids_3d) {
  mwm_test::test_rng rng(TestType::three_d ? 101 : 100);
  const mwm::attention_mode modes[] = {mwm::attention_mode::high, mwm::attention_mode::low,
                                       mwm::attention_mode::hint};
  for (int trial = 0; trial < trials; ++trial) {
    mwm::mask_policy policy;
    policy.kind = mwm::policy_kind::attention_guided;
    policy.attention = modes[trial % 3];
    policy.rounding = mwm::keep_rounding::floor_mask;  // AttMask masks int(N * r)
    policy.ratio = mwm_test::random_ratio(rng);
    if (policy.attention == mwm::attention_mode::hint) {
      policy.hint_pool_share = mwm_test::uniform_real(rng, 0.0, policy.ratio);
      policy.hint_share = mwm_test::uniform_real(rng, 0.0, policy.hint_pool_share);
    }
    auto in = mwm_test::random_trial_inputs(rng, TestType::three_d, 4, trial);
    const std::int64_t n = in.grid.num_patches();
    const auto scores = mwm_test::random_scores(rng, in.batch * n, trial % 2 == 0);
    in.scores = &scores;
    const auto masks = mwm_test::generate(policy, in);
    const auto top = static_cast<std::int64_t>(static_cast<double>(n) * policy.ratio);
    const bool hint = policy.attention == mwm::attention_mode::hint;
    const auto pool =
        hint ? static_cast<std::int64_t>(static_cast<double>(n) * policy.hint_pool_share) : 0;
    const auto reveal =
        hint ? static_cast<std::int64_t>(static_cast<double>(n) * policy.hint_share) : 0;
    INFO("trial " << trial << ": n = " << n << ", top = " << top << ", pool = " << pool
                  << ", reveal = " << reveal);
    for (std::int64_t b = 0; b < in.batch; ++b) {
      REQUIRE(masks.num_masked[static_cast<std::size_t>(b)] == top - reveal);
      const auto ranked = mwm_test::ranked_by_score(scores.data() + b * n, n,
                                                    policy.attention == mwm::attention_mode::low);
      std::int64_t revealed_in_pool = 0;
      for (std::int64_t rank = 0; rank < n; ++rank) {
        const bool is_masked = masks.is_masked(b, ranked[static_cast<std::size_t>(rank)]);
        if (rank < pool) {
          revealed_in_pool += is_masked ? 0 : 1;
        } else {
          REQUIRE(is_masked == (rank < top));
        }
      }
      REQUIRE(revealed_in_pool == reveal);
    }
    mwm_test::require_consistent_outputs(masks);
  }
}
