// Visible counts from ratios (evaluated as the reference Python does) and the masked budget shared
// across regions.
#include <mwm/masking.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

struct python_keep_counts {
  std::int64_t n;
  double ratio;
  std::int64_t floor_keep;       // int(n * (1 - r))
  std::int64_t round_keep;       // round(n * (1 - r))
  std::int64_t ceil_mask_keep;   // n - math.ceil(n * r)
  std::int64_t floor_mask_keep;  // n - int(n * r)
};

// Computed with CPython 3 from the expressions in the comments above.
const python_keep_counts python_table[] = {
    {10, 0.8, 1, 2, 2, 2},          {10, 0.75, 2, 2, 2, 3},         {10, 0.9, 0, 1, 1, 1},
    {10, 0.65, 3, 4, 3, 4},         {196, 0.8, 39, 39, 39, 40},     {196, 0.7, 58, 59, 58, 59},
    {196, 0.6, 78, 78, 78, 79},     {196, 0.4, 117, 118, 117, 118}, {196, 0.9, 19, 20, 19, 20},
    {196, 0.65, 68, 69, 68, 69},    {49, 0.8, 9, 10, 9, 10},        {49, 0.7, 14, 15, 14, 15},
    {49, 0.75, 12, 12, 12, 13},     {49, 0.6, 19, 20, 19, 20},      {49, 0.5, 24, 24, 24, 25},
    {36, 0.7, 10, 11, 10, 11},      {36, 0.6, 14, 14, 14, 15},      {36, 0.4, 21, 22, 21, 22},
    {512, 0.7, 153, 154, 153, 154}, {512, 0.9, 51, 51, 51, 52},     {512, 0.1, 460, 461, 460, 461},
    {14, 0.8, 2, 3, 2, 3},          {14, 0.75, 3, 4, 3, 4},         {14, 0.9, 1, 1, 1, 2},
    {7, 0.75, 1, 2, 1, 2},          {7, 0.5, 3, 4, 3, 4},           {7, 0.9, 0, 1, 0, 1},
    {3, 0.5, 1, 2, 1, 2},           {3, 0.9, 0, 0, 0, 1},           {1, 0.5, 0, 0, 0, 1},
    {1, 0.4, 0, 1, 0, 1},
};

}  // namespace

TEST_CASE("keep_count matches CPython's int/round/ceil expressions", "[budget]") {
  for (const auto& row : python_table) {
    INFO("n = " << row.n << ", ratio = " << row.ratio);
    CHECK(mwm::keep_count(row.n, row.ratio, mwm::keep_rounding::floor) == row.floor_keep);
    CHECK(mwm::keep_count(row.n, row.ratio, mwm::keep_rounding::round) == row.round_keep);
    CHECK(mwm::keep_count(row.n, row.ratio, mwm::keep_rounding::ceil_mask) == row.ceil_mask_keep);
    CHECK(mwm::keep_count(row.n, row.ratio, mwm::keep_rounding::floor_mask) == row.floor_mask_keep);
  }
}

TEST_CASE("the double-rounding cases of the MWM and MAE references", "[budget]") {
  // 1 - 0.8 is 0.19999999999999996, so the MWM reference keeps 1 of 10 ROI cells, not 2.
  CHECK(mwm::keep_count(10, 0.8, mwm::keep_rounding::floor) == 1);
  // MAE: int(196 * (1 - 0.7)) = int(58.800000000000004) = 58.
  CHECK(mwm::keep_count(196, 0.7, mwm::keep_rounding::floor) == 58);
  // SparK rounds half to even: round(2.5) = 2, round(3.5) = 4.
  CHECK(mwm::keep_count(10, 0.75, mwm::keep_rounding::round) == 2);
  CHECK(mwm::keep_count(14, 0.75, mwm::keep_rounding::round) == 4);
  for (auto rounding : {mwm::keep_rounding::floor, mwm::keep_rounding::round,
                        mwm::keep_rounding::ceil_mask, mwm::keep_rounding::floor_mask}) {
    CHECK(mwm::keep_count(37, 0.0, rounding) == 37);
    CHECK(mwm::keep_count(37, 1.0, rounding) == 0);
    CHECK(mwm::keep_count(0, 0.5, rounding) == 0);
  }
}

namespace {

std::vector<std::int64_t> share(const std::vector<std::int64_t>& counts,
                                const std::vector<std::int64_t>& ratio_q16, std::int64_t masked) {
  std::vector<std::int64_t> out(counts.size(), -7);
  mwm::steps::share_masked_budget(counts.data(), ratio_q16.data(), static_cast<int>(counts.size()),
                                  masked, out.data());
  return out;
}

}  // namespace

TEST_CASE("share_masked_budget: worked examples", "[budget]") {
  const std::int64_t half = 32768;
  SECTION("ties go to the lower region") {
    CHECK(share({5, 5}, {half, half}, 5) == std::vector<std::int64_t>{3, 2});
    CHECK(share({3, 3, 3}, {half, half, half}, 4) == std::vector<std::int64_t>{2, 1, 1});
    CHECK(share({3, 3, 3}, {half, half, half}, 5) == std::vector<std::int64_t>{2, 2, 1});
  }
  SECTION("a full region is capped and its excess goes to the others") {
    // Shares 2*1.0 : 10*0.1 of 6 would give region 0 four patches; it has two.
    CHECK(share({2, 10}, {65536, mwm::steps::unit_q16(0.1)}, 6) == std::vector<std::int64_t>{2, 4});
    // Capping cascades: region 0 then region 1 fill up.
    CHECK(share({1, 2, 20}, {65536, 65536, 1}, 10) == std::vector<std::int64_t>{1, 2, 7});
  }
  SECTION("zero-ratio regions take nothing while others have room") {
    CHECK(share({8, 8}, {0, half}, 5) == std::vector<std::int64_t>{0, 5});
    // ...and share the rest by size once the others are full.
    CHECK(share({10, 4}, {0, 65536}, 8) == std::vector<std::int64_t>{4, 4});
    CHECK(share({6, 3}, {0, 0}, 3) == std::vector<std::int64_t>{2, 1});
  }
  SECTION("empty regions and oversized budgets") {
    CHECK(share({0, 7, 0}, {half, half, half}, 3) == std::vector<std::int64_t>{0, 3, 0});
    CHECK(share({2, 3}, {half, half}, 99) == std::vector<std::int64_t>{2, 3});
    CHECK(share({2, 3}, {half, half}, 0) == std::vector<std::int64_t>{0, 0});
  }
}

TEST_CASE("share_masked_budget equals the reference, sums exactly and respects caps", "[budget]") {
  mwm_test::test_rng rng(20240611);
  for (int trial = 0; trial < 3000; ++trial) {
    const auto regions = static_cast<std::size_t>(mwm_test::uniform_int(rng, 1, mwm::max_regions));
    std::vector<std::int64_t> counts(regions);
    std::vector<std::int64_t> ratio_q16(regions);
    for (std::size_t r = 0; r < regions; ++r) {
      counts[r] = mwm_test::uniform_int(rng, 0, 3) == 0 ? 0 : mwm_test::uniform_int(rng, 1, 300);
      const auto kind = mwm_test::uniform_int(rng, 0, 5);
      ratio_q16[r] = kind == 0   ? 0
                     : kind == 1 ? 65536
                     : kind == 2 ? 32768
                                 : mwm::steps::unit_q16(mwm_test::random_ratio(rng));
    }
    const std::int64_t total = std::accumulate(counts.begin(), counts.end(), std::int64_t(0));
    const std::int64_t masked = mwm_test::uniform_int(rng, 0, total + 2);
    const auto got = share(counts, ratio_q16, masked);
    INFO("trial " << trial << ", regions " << regions << ", masked " << masked);
    REQUIRE(got == mwm_test::reference_share(counts, ratio_q16, masked));
    REQUIRE(std::accumulate(got.begin(), got.end(), std::int64_t(0)) == std::min(masked, total));
    for (std::size_t r = 0; r < regions; ++r) {
      REQUIRE(got[r] >= 0);
      REQUIRE(got[r] <= counts[r]);
    }
  }
}
