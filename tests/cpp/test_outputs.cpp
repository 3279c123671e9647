// The index outputs: one canonical order per sample, seen through every output a trainer reads.
#include <mwm/masking.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

struct outputs_fixture {
  mwm::grid_shape grid;
  std::vector<std::int32_t> regions;
  std::vector<float> scores;
};

outputs_fixture make_fixture(const mwm::grid_shape& grid, std::int64_t batch) {
  mwm_test::test_rng rng(7);
  outputs_fixture f;
  f.grid = grid;
  f.regions = mwm_test::random_regions(rng, grid, batch, 3);
  f.scores = mwm_test::random_scores(rng, batch * grid.num_patches(), false);
  return f;
}

// How the high words of the sort tests' keys spread; the values are the draws that pick them.
enum class key_spread { one_value, narrow, extremes, crowded, descending, any };

// `n` keys whose low words are their index and whose high words spread as `spread` says, from
// one draw of `rng` per key whatever the spread.
std::vector<mwm::selection_key> keys_of_spread(mwm_test::test_rng& rng, std::size_t n,
                                               key_spread spread) {
  std::vector<mwm::selection_key> keys(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t high = rng();
    if (spread == key_spread::one_value) high = 7;
    if (spread == key_spread::narrow) high = 0x3f000000u + (high & 0xff);  // one varying byte
    if (spread == key_spread::extremes) high = (high & 1) ? 0xFFFFFFFFu : 0u;
    if (spread == key_spread::crowded) high = high % 5 == 0 ? high : 12345;
    if (spread == key_spread::descending) high = static_cast<std::uint64_t>(n - i);
    keys[i] = mwm::steps::make_key(static_cast<std::uint32_t>(high), static_cast<std::uint32_t>(i));
  }
  return keys;
}

}  // namespace

TEST_CASE("every policy's outputs are consistent permutations", "[outputs]") {
  const mwm::grid_shape grids[] = {mwm::make_grid_2d(8, 6), mwm::make_grid_2d(14, 14),
                                   mwm::make_grid_3d(4, 4, 6)};
  for (const auto& grid : grids) {
    const std::int64_t batch = 9;
    const auto fixture = make_fixture(grid, batch);
    for (const auto& config : mwm_test::every_policy()) {
      INFO(config.name << " on " << grid.depth << "x" << grid.height << "x" << grid.width);
      mwm_test::generate_inputs in;
      in.grid = grid;
      in.batch = batch;
      in.seed = 123;
      in.regions = &fixture.regions;
      in.scores = &fixture.scores;
      const auto masks = mwm_test::generate(config.policy, in);
      mwm_test::require_consistent_outputs(masks);
      if (config.policy.order == mwm::visible_order::sorted) {
        const std::int64_t n = grid.num_patches();
        for (std::int64_t b = 0; b < batch; ++b) {
          const auto masked = masks.num_masked[static_cast<std::size_t>(b)];
          const std::int64_t* shuffle = masks.ids_shuffle.data() + b * n;
          REQUIRE(std::is_sorted(shuffle, shuffle + (n - masked)));
          REQUIRE(std::is_sorted(shuffle + (n - masked), shuffle + n));
        }
      }
    }
  }
}

TEST_CASE("random visible order is not index order", "[outputs]") {
  mwm::mask_policy policy;
  policy.ratio = 0.5;
  mwm_test::generate_inputs in;
  in.grid = mwm::make_grid_2d(14, 14);
  in.batch = 4;
  const auto masks = mwm_test::generate(policy, in);
  int sorted_rows = 0;
  for (std::int64_t b = 0; b < in.batch; ++b) {
    const std::int64_t* keep = masks.ids_keep.data() + b * masks.widths.keep;
    sorted_rows += std::is_sorted(keep, keep + masks.widths.keep) ? 1 : 0;
  }
  CHECK(sorted_rows == 0);
}

TEST_CASE("per_region pads ids_keep and ids_masked with -1 to width N", "[outputs]") {
  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::per_region;
  policy.region_ratios = {0.2, 0.9};
  const mwm::grid_shape grid = mwm::make_grid_2d(5, 5);
  // Sample 0 is all background, sample 1 all ROI: visible int(25 * 0.8) = 20 and
  // int(25 * (1 - 0.9)) = int(2.4999999999999996) = 2.
  std::vector<std::int32_t> regions(50, 0);
  std::fill(regions.begin() + 25, regions.end(), 1);
  mwm_test::generate_inputs in;
  in.grid = grid;
  in.batch = 2;
  in.regions = &regions;
  const auto masks = mwm_test::generate(policy, in);
  REQUIRE(masks.widths.keep == 25);
  REQUIRE(masks.widths.masked == 25);
  CHECK(masks.num_masked[0] == 5);
  CHECK(masks.num_masked[1] == 23);
  const auto row_keep = [&](std::int64_t b) { return masks.ids_keep.data() + b * 25; };
  const auto row_masked = [&](std::int64_t b) { return masks.ids_masked.data() + b * 25; };
  CHECK(std::count(row_keep(0), row_keep(0) + 25, -1) == 5);
  CHECK(std::count(row_masked(0), row_masked(0) + 25, -1) == 20);
  CHECK(std::count(row_keep(1), row_keep(1) + 25, -1) == 23);
  CHECK(std::count(row_masked(1), row_masked(1) + 25, -1) == 2);
  // The padding sits at the end of each row.
  CHECK(std::all_of(row_keep(1) + 2, row_keep(1) + 25, [](std::int64_t v) { return v == -1; }));
  mwm_test::require_consistent_outputs(masks);
}

TEST_CASE("noise is position / N, strictly increasing along ids_shuffle", "[outputs]") {
  mwm::mask_policy policy;
  policy.ratio = 0.75;
  mwm_test::generate_inputs in;
  in.grid = mwm::make_grid_2d(14, 14);
  in.batch = 3;
  const auto masks = mwm_test::generate(policy, in);
  for (std::int64_t b = 0; b < in.batch; ++b) {
    for (std::int64_t position = 0; position < 196; ++position) {
      const auto patch = masks.ids_shuffle[static_cast<std::size_t>(b * 196 + position)];
      CHECK(masks.noise[static_cast<std::size_t>(b * 196 + patch)] ==
            static_cast<float>(position) / 196.0f);
    }
  }
}

TEST_CASE("generate_masks_into writes only the outputs asked for", "[outputs]") {
  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(4, 4);
  request.batch = 2;
  request.policy.ratio = 0.5;
  request.seed = 9;
  std::vector<std::uint8_t> mask(32, 7);
  std::vector<std::int64_t> keep(16, -9);
  mwm::batch_outputs out;
  out.mask = mask.data();
  out.ids_keep = keep.data();
  mwm::generate_masks_into(request, out);
  const auto full = mwm::generate_masks(request);
  CHECK(mask == full.mask);
  CHECK(keep == full.ids_keep);
}

TEST_CASE("upsample_patch_map repeats each patch value and can invert", "[outputs]") {
  const mwm::grid_shape grid = mwm::make_grid_2d(2, 3);
  const std::uint8_t mask[] = {1, 0, 0, 0, 1, 1};
  std::vector<std::uint8_t> active(static_cast<std::size_t>(4 * 6));
  mwm::upsample_patch_map(mask, grid, 1, 2, 2, true, active.data());
  for (std::int64_t h = 0; h < 4; ++h)
    for (std::int64_t w = 0; w < 6; ++w)
      CHECK(active[static_cast<std::size_t>(h * 6 + w)] == (mask[(h / 2) * 3 + w / 2] ? 0 : 1));
}

TEST_CASE("sort_keys orders keys exactly as std::sort, whatever their spread", "[outputs]") {
  mwm_test::test_rng rng(55);
  mwm::selection_workspace ws;
  for (int trial = 0; trial < 300; ++trial) {
    const auto n = static_cast<std::size_t>(mwm_test::uniform_int(rng, 0, 600));
    const auto pick = mwm_test::uniform_int(rng, 0, 4);
    const auto spread = pick < 4 ? static_cast<key_spread>(pick) : key_spread::any;
    auto keys = keys_of_spread(rng, n, spread);
    std::shuffle(keys.begin(), keys.end(), rng);
    auto expected = keys;
    std::sort(expected.begin(), expected.end());
    mwm::detail::sort_keys(keys, ws);
    INFO("trial " << trial << ", n = " << n << ", spread " << pick);
    REQUIRE(keys == expected);
  }
}

TEST_CASE("sorted_keys gives std::sort's order with either bucketing, wherever it leaves it",
          "[outputs]") {
  mwm_test::test_rng rng(56);
  mwm::selection_workspace ws;
  for (int trial = 0; trial < 300; ++trial) {
    const auto n = static_cast<std::size_t>(mwm_test::uniform_int(rng, 0, 700));
    const bool crowded = trial % 3 == 0;  // the uniform bucketing must hand over to radix too
    ws.keys.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto high = static_cast<std::uint32_t>(crowded && i % 2 ? 99u : rng());
      ws.keys[i] = mwm::steps::make_key(high, static_cast<std::uint32_t>(i));
    }
    auto expected = ws.keys;
    std::sort(expected.begin(), expected.end());
    const bool uniform = trial % 2 == 0;
    const mwm::selection_key* sorted = mwm::detail::sorted_keys(ws, uniform);
    INFO("trial " << trial << ", n = " << n << ", uniform " << uniform);
    REQUIRE((sorted == ws.keys.data() || sorted == ws.sort_scratch.data()));
    REQUIRE(std::vector<mwm::selection_key>(sorted, sorted + n) == expected);
  }
}

TEST_CASE("the wide-vector key loops give the portable loop's keys", "[outputs][philox]") {
  for (const std::int64_t n : {1, 7, 8, 15, 16, 17, 196, 512, 1000}) {
    for (const std::uint64_t index :
         {std::uint64_t(0), std::uint64_t(12345), (std::uint64_t(3) << 32) | 9u}) {
      std::vector<mwm::selection_key> expected(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i)
        expected[i] = mwm::steps::random_key(77, index, static_cast<std::uint32_t>(i));
      std::vector<mwm::selection_key> keys(static_cast<std::size_t>(n));
      mwm::detail::fill_random_keys(keys.data(), n, 77, index);  // whichever this CPU runs
      REQUIRE(keys == expected);
#if defined(MWM_X86_DISPATCH)
      if (__builtin_cpu_supports("avx2")) {
        std::fill(keys.begin(), keys.end(), 0);
        mwm::detail::fill_random_keys_avx2(keys.data(), n, 77, index);
        REQUIRE(keys == expected);
      }
      if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")) {
        std::fill(keys.begin(), keys.end(), 0);
        mwm::detail::fill_random_keys_avx512(keys.data(), n, 77, index);
        REQUIRE(keys == expected);
      }
#endif
    }
  }
}

TEST_CASE("the sorting network orders cells as the full keys do, or declines", "[outputs]") {
  const bool network = mwm::detail::network_sorts(1);
  mwm_test::test_rng rng(29);
  int accepted = 0;
  int declined_ties = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    // Every register count (1..16 of 16 lanes) and both sides of the 256-cell limit.
    const std::int64_t n = trial < 300 ? trial + 1 : mwm_test::uniform_int(rng, 1, 300);
    const int spread = trial % 4;
    std::vector<mwm::selection_key> keys(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      auto high = static_cast<std::uint32_t>(rng());
      if (spread == 1) high = (high % 50u) << 8 | (high & 0xFFu);  // top 24 bits tie often
      if (spread == 2 && i % 5 == 0) high = 0xFFFFFFFFu;           // the largest random words
      keys[i] = mwm::steps::make_key(high, static_cast<std::uint32_t>(i));
    }
    std::shuffle(keys.begin(), keys.end(), rng);
    auto expected = keys;
    std::sort(expected.begin(), expected.end());
    std::vector<std::int64_t> cells(static_cast<std::size_t>(n) + 16, -7);
    INFO("trial " << trial << ", n = " << n << ", spread " << spread);
    if (!mwm::detail::network_sort_cells(keys.data(), n, cells.data())) {
      bool tie = false;
      for (std::int64_t i = 0; i + 1 < n; ++i)
        tie = tie || (expected[i] >> 40) == (expected[i + 1] >> 40);
      declined_ties += tie ? 1 : 0;
      // It declines only past 256 cells, on a CPU without AVX-512, or on a tie.
      CHECK((n > mwm::detail::network_sort_max_cells || tie || !network));
      continue;
    }
    ++accepted;
    REQUIRE(n <= mwm::detail::network_sort_max_cells);
    for (std::int64_t i = 0; i < n; ++i)
      REQUIRE(cells[static_cast<std::size_t>(i)] == mwm::steps::key_index(expected[i]));
    for (std::size_t i = static_cast<std::size_t>(n); i < cells.size(); ++i)
      REQUIRE(cells[i] == -7);
  }
  if (network) {  // both outcomes were exercised
    CHECK(accepted > 1000);
    CHECK(declined_ties > 100);
  }
}

TEST_CASE("the network's two-group order is the scalar sort and partition's", "[outputs]") {
  mwm::policy_params params;  // random visible order, as the fused kernel assumes
  mwm_test::test_rng rng(31);
  int network_runs = 0;
  int declined = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const std::int64_t n = trial < 256 ? trial + 1 : mwm_test::uniform_int(rng, 1, 300);
    std::vector<std::int32_t> groups(static_cast<std::size_t>(n));
    const int layout = trial % 3;  // mixed, all in group 1, all in group 0
    for (auto& g : groups) g = layout == 0 ? static_cast<std::int32_t>(rng() % 2) : layout == 1;
    std::int64_t sizes[2] = {0, 0};
    for (const auto g : groups) ++sizes[g];
    const std::int64_t keep[2] = {mwm_test::uniform_int(rng, 0, sizes[0]),
                                  mwm_test::uniform_int(rng, 0, sizes[1])};
    const bool crowded = trial % 7 == 0;  // random words that tie on their top 23 bits
    std::vector<mwm::selection_key> keys(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      auto high = static_cast<std::uint32_t>(rng());
      if (crowded) high = (high % 64u) << 9 | (high & 0x1FFu);
      keys[static_cast<std::size_t>(i)] = mwm::steps::make_key(high, static_cast<std::uint32_t>(i));
    }
    auto sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> expected(static_cast<std::size_t>(n) + 16, -3);
    std::vector<std::int64_t> order(expected.size(), -3);
    mwm::selection_workspace ws;
    const mwm::selection_key* by_key = sorted.data();
    mwm::detail::partition_sorted_cells(
        params, n,
        [by_key](std::int64_t i) {
          return static_cast<std::int64_t>(mwm::steps::key_index(by_key[i]));
        },
        groups.data(), keep, 2, ws, expected.data());
    INFO("trial " << trial << ", n = " << n << ", keep " << keep[0] << " + " << keep[1]);
    if (mwm::detail::network_order_two_groups(keys.data(), n, groups.data(), keep, order.data())) {
      ++network_runs;
      REQUIRE(order == expected);  // the slots past n are untouched too
    } else {
      bool tie = false;
      for (std::int64_t i = 0; i + 1 < n; ++i)
        tie = tie || (sorted[i] >> 41) == (sorted[i + 1] >> 41);
      CHECK((tie || !mwm::detail::network_sorts(n)));
      declined += tie ? 1 : 0;
    }
  }
  if (mwm::detail::network_sorts(196)) {  // both outcomes were exercised
    CHECK(network_runs > 2000);
    CHECK(declined > 100);
  }
}

TEST_CASE("write_sample_outputs with the noise table writes what it computes without one",
          "[outputs]") {
  const std::int64_t n = 37;
  std::vector<std::int64_t> order(n);
  for (std::int64_t i = 0; i < n; ++i) order[i] = (i * 11) % n;
  std::vector<float> table(n);
  mwm::fill_position_noise(table.data(), n);
  for (const std::int64_t visible : {0, 1, 9, 36, 37}) {
    std::vector<std::uint8_t> mask_a(n), mask_b(n);
    std::vector<std::int64_t> restore_a(n), restore_b(n), keep_a(n, 5), keep_b(n, 5);
    std::vector<std::int64_t> masked_a(n, 5), masked_b(n, 5);
    std::vector<float> noise_a(n), noise_b(n);
    mwm::sample_outputs a{mask_a.data(),
                          nullptr,
                          restore_a.data(),
                          keep_a.data(),
                          masked_a.data(),
                          noise_a.data(),
                          n,
                          n};
    mwm::sample_outputs b{mask_b.data(),
                          nullptr,
                          restore_b.data(),
                          keep_b.data(),
                          masked_b.data(),
                          noise_b.data(),
                          n,
                          n};
    mwm::steps::write_sample_outputs(a, order.data(), n, visible, table.data());
    mwm::steps::write_sample_outputs(b, order.data(), n, visible);
    CHECK(mask_a == mask_b);
    CHECK(restore_a == restore_b);
    CHECK(keep_a == keep_b);
    CHECK(masked_a == masked_b);
    CHECK(noise_a == noise_b);
    for (std::int64_t i = 0; i < n; ++i) {
      CHECK(noise_a[order[i]] == static_cast<float>(i) / static_cast<float>(n));
      CHECK(keep_a[i] == (i < visible ? order[i] : -1));
    }
  }
}

TEST_CASE("the vector ids_restore, mask and noise equal the scalar scatter's", "[outputs]") {
  mwm_test::test_rng rng(41);
  for (const std::int64_t n : {1, 7, 8, 15, 16, 17, 49, 196, 512, 1000}) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), rng);
    const std::int64_t visible = mwm_test::uniform_int(rng, 0, n);
    std::vector<std::int64_t> restore(order.size(), -1), expected_restore(order.size(), -1);
    std::vector<std::uint8_t> mask(order.size(), 9), expected_mask(order.size(), 9);
    std::vector<float> noise(order.size(), -1.0f), expected_noise(order.size(), -1.0f);
    for (std::int64_t position = 0; position < n; ++position) {
      const auto patch = static_cast<std::size_t>(order[static_cast<std::size_t>(position)]);
      expected_restore[patch] = position;
      expected_mask[patch] = position >= visible ? 1 : 0;
      expected_noise[patch] = static_cast<float>(position) / static_cast<float>(n);
    }
    INFO("n = " << n << ", visible " << visible);
    if (mwm::detail::write_restore_mask_noise_vector(order.data(), n, visible, restore.data(),
                                                     mask.data(), noise.data())) {
      CHECK(restore == expected_restore);
      CHECK(mask == expected_mask);
      CHECK(noise == expected_noise);  // exact: the same division
    } else {
      CHECK(!mwm::detail::network_sorts(1));  // only where the CPU has no AVX-512
    }
  }
}

TEST_CASE("radix_sort_keys equals std::sort, on any keys and on the high words alone",
          "[outputs]") {
  mwm_test::test_rng rng(91);
  std::vector<mwm::selection_key> scratch;
  for (int trial = 0; trial < 400; ++trial) {
    // Sizes on both sides of the insertion-sort cut-off, and a few past 2^16.
    const auto n =
        static_cast<std::size_t>(trial % 50 == 0 ? mwm_test::uniform_int(rng, 65536, 70000)
                                                 : mwm_test::uniform_int(rng, 0, 700));
    const auto spread = static_cast<key_spread>(mwm_test::uniform_int(rng, 0, 5));
    auto keys = keys_of_spread(rng, n, spread);
    auto expected = keys;
    std::sort(expected.begin(), expected.end());
    scratch.resize(n);
    // In index order, the stable sort on the high word alone is the full order.
    auto by_high = keys;
    mwm::detail::radix_sort_keys(by_high.data(), n, scratch.data(), 4);
    INFO("trial " << trial << ", n = " << n << ", spread " << static_cast<int>(spread));
    REQUIRE(by_high == expected);
    // Shuffled, it needs every byte.
    std::shuffle(keys.begin(), keys.end(), rng);
    mwm::detail::radix_sort_keys(keys.data(), n, scratch.data(), 0);
    REQUIRE(keys == expected);
  }
}
