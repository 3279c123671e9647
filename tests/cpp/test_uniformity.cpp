// Statistical shape of the masks over many samples. Seeds are fixed, so each check is
// deterministic; critical values are at p = 1e-4, loose enough that a correct sampler passes
// with any seed one might pick.
#include <mwm/masking.hpp>

#include <cstdint>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

// How often each patch is masked over the batch.
std::vector<double> masked_counts(const mwm::mask_batch& masks) {
  std::vector<double> counts(static_cast<std::size_t>(masks.num_patches()), 0.0);
  for (std::int64_t b = 0; b < masks.batch; ++b)
    for (std::int64_t i = 0; i < masks.num_patches(); ++i)
      counts[static_cast<std::size_t>(i)] += masks.is_masked(b, i) ? 1.0 : 0.0;
  return counts;
}

void require_uniform(const std::vector<double>& observed) {
  double total = 0.0;
  for (double v : observed) total += v;
  const std::vector<double> expected(observed.size(), total / static_cast<double>(observed.size()));
  const double statistic = mwm_test::chi_square(observed, expected);
  const int df = static_cast<int>(observed.size()) - 1;
  INFO("chi-square " << statistic << " with " << df << " degrees of freedom");
  REQUIRE(statistic < mwm_test::chi_square_critical_1e4(df));
}

}  // namespace

TEST_CASE("random masks every patch equally often, and orders visible patches uniformly",
          "[uniformity]") {
  mwm::mask_policy policy;
  policy.ratio = 0.25;  // 16 patches: 4 masked
  mwm_test::generate_inputs in;
  in.grid = mwm::make_grid_2d(4, 4);
  in.batch = 20000;
  in.seed = 2024;
  in.threads = 2;
  const auto masks = mwm_test::generate(policy, in);
  require_uniform(masked_counts(masks));
  std::vector<double> first_visible(16, 0.0);
  for (std::int64_t b = 0; b < in.batch; ++b)
    first_visible[static_cast<std::size_t>(masks.ids_keep[static_cast<std::size_t>(b * 12)])] +=
        1.0;
  require_uniform(first_visible);
}

TEST_CASE("per_region masks every patch of a region equally often", "[uniformity]") {
  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::per_region;
  policy.region_ratios = {0.5, 0.25, 0.75};
  const mwm::grid_shape grid = mwm::make_grid_2d(6, 6);
  // Regions of 8, 12 and 16 patches, interleaved over the grid.
  std::vector<std::int32_t> layout(36);
  for (std::size_t i = 0; i < 36; ++i) layout[i] = i < 8 ? 0 : (i < 20 ? 1 : 2);
  for (std::size_t i = 0; i < 36; i += 5) std::swap(layout[i], layout[35 - i]);
  const std::int64_t batch = 12000;
  std::vector<std::int32_t> regions;
  for (std::int64_t b = 0; b < batch; ++b)
    regions.insert(regions.end(), layout.begin(), layout.end());
  mwm_test::generate_inputs in;
  in.grid = grid;
  in.batch = batch;
  in.seed = 99;
  in.threads = 2;
  in.regions = &regions;
  const auto counts = masked_counts(mwm_test::generate(policy, in));
  for (int r = 0; r < 3; ++r) {
    INFO("region " << r);
    std::vector<double> in_region;
    for (std::size_t i = 0; i < 36; ++i)
      if (layout[i] == r) in_region.push_back(counts[i]);
    require_uniform(in_region);
  }
}

TEST_CASE("weighted: one masked patch is drawn with probability w / sum(w)", "[uniformity]") {
  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::weighted;
  policy.ratio = 0.125;  // 8 patches: int(8 * 0.875) = 7 kept, 1 masked
  policy.weight_floor = 0.2;
  const std::int64_t batch = 40000;
  std::vector<float> row(8);
  for (std::size_t i = 0; i < 8; ++i) row[i] = static_cast<float>(i) / 7.0f;
  std::vector<float> scores;
  for (std::int64_t b = 0; b < batch; ++b) scores.insert(scores.end(), row.begin(), row.end());
  mwm_test::generate_inputs in;
  in.grid = mwm::make_grid_2d(2, 4);
  in.batch = batch;
  in.seed = 17;
  in.threads = 2;
  in.scores = &scores;
  const auto observed = masked_counts(mwm_test::generate(policy, in));
  std::vector<double> weights(8);
  double weight_sum = 0.0;
  for (std::size_t i = 0; i < 8; ++i) {
    weights[i] = 0.2 + 0.8 * static_cast<double>(row[i]);
    weight_sum += weights[i];
  }
  std::vector<double> expected(8);
  for (std::size_t i = 0; i < 8; ++i)
    expected[i] = static_cast<double>(batch) * weights[i] / weight_sum;
  const double statistic = mwm_test::chi_square(observed, expected);
  INFO("chi-square " << statistic);
  REQUIRE(statistic < mwm_test::chi_square_critical_1e4(7));
}

TEST_CASE("weighted: heavier patches are masked more often", "[uniformity]") {
  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::weighted;
  policy.ratio = 0.5;
  policy.weight_floor = 0.2;
  const std::int64_t batch = 20000;
  std::vector<float> scores;
  for (std::int64_t b = 0; b < batch; ++b)
    for (int i = 0; i < 8; ++i) scores.push_back(static_cast<float>(i) / 7.0f);
  mwm_test::generate_inputs in;
  in.grid = mwm::make_grid_2d(1, 8);
  in.batch = batch;
  in.seed = 1;
  in.threads = 2;
  in.scores = &scores;
  const auto counts = masked_counts(mwm_test::generate(policy, in));
  for (std::size_t i = 1; i < 8; ++i) {
    INFO("patch " << i << ": " << counts[i] << " vs " << counts[i - 1]);
    CHECK(counts[i] > counts[i - 1] + 200.0);
  }
}

TEST_CASE("weighted: zero-weight patches stay visible while the budget allows", "[policy]") {
  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::weighted;
  policy.ratio = 0.5;
  policy.weight_floor = 0.0;
  const std::int64_t batch = 500;
  std::vector<float> scores;
  for (std::int64_t b = 0; b < batch; ++b)
    for (int i = 0; i < 16; ++i) scores.push_back(i % 4 == 0 ? 0.0f : 0.3f);  // 12 positive
  mwm_test::generate_inputs in;
  in.grid = mwm::make_grid_2d(4, 4);
  in.batch = batch;
  in.scores = &scores;
  const auto counts = masked_counts(mwm_test::generate(policy, in));
  for (std::size_t i = 0; i < 16; i += 4) CHECK(counts[i] == 0.0);
}

TEST_CASE("loss_guided masks the rest uniformly among the non-hard patches", "[uniformity]") {
  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::loss_guided;
  policy.ratio = 0.5;       // 16 patches: 8 masked
  policy.hard_share = 0.5;  // 4 of them the hardest, 4 at random among the other 12
  const std::int64_t batch = 20000;
  std::vector<float> scores;
  for (std::int64_t b = 0; b < batch; ++b)
    for (int i = 0; i < 16; ++i) scores.push_back(static_cast<float>((i * 7) % 16));
  mwm_test::generate_inputs in;
  in.grid = mwm::make_grid_2d(4, 4);
  in.batch = batch;
  in.seed = 8;
  in.threads = 2;
  in.scores = &scores;
  const auto counts = masked_counts(mwm_test::generate(policy, in));
  std::vector<double> rest;
  for (int i = 0; i < 16; ++i) {
    if ((i * 7) % 16 >= 12) {
      CHECK(counts[static_cast<std::size_t>(i)] == static_cast<double>(batch));
    } else {
      rest.push_back(counts[static_cast<std::size_t>(i)]);
    }
  }
  REQUIRE(rest.size() == 12);
  require_uniform(rest);
}

TEST_CASE("coarse masks every coarse cell equally often", "[uniformity]") {
  mwm::mask_policy policy;
  policy.kind = mwm::policy_kind::coarse;
  policy.coarse_factor = 2;
  policy.ratio = 0.5;
  mwm_test::generate_inputs in;
  in.grid = mwm::make_grid_2d(8, 8);  // 16 coarse cells, 8 masked
  in.batch = 10000;
  in.seed = 31;
  in.threads = 2;
  const auto counts = masked_counts(mwm_test::generate(policy, in));
  std::vector<double> cells;
  for (std::int64_t h = 0; h < 8; h += 2)
    for (std::int64_t w = 0; w < 8; w += 2)
      cells.push_back(counts[static_cast<std::size_t>(h * 8 + w)]);
  require_uniform(cells);
}
