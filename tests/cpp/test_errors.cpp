// Every bad input throws mwm::error (a std::invalid_argument) naming the argument and its value.
#include <mwm/masking.hpp>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

const float nan_value = std::numeric_limits<float>::quiet_NaN();

mwm::mask_request random_request() {
  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(4, 4);
  request.batch = 2;
  request.policy.ratio = 0.5;
  return request;
}

}  // namespace

TEST_CASE("mwm::error is a std::invalid_argument", "[errors]") {
  REQUIRE_THROWS_AS(mwm::make_grid_2d(0, 3), std::invalid_argument);
  REQUIRE_THROWS_AS(mwm::make_grid_2d(0, 3), mwm::error);
}

TEST_CASE("zero and non-divisible sizes", "[errors]") {
  MWM_REQUIRE_ERROR(mwm::make_grid_2d(0, 5), "grid height = 0");
  MWM_REQUIRE_ERROR(mwm::make_grid_2d(5, -2), "grid width = -2");
  MWM_REQUIRE_ERROR(mwm::make_grid_3d(0, 2, 2), "grid depth = 0");
  MWM_REQUIRE_ERROR(mwm::make_geometry_2d(3, 225, 224, 16, 16),
                    "image height = 225: must be divisible by patch height = 16");
  MWM_REQUIRE_ERROR(mwm::make_geometry_2d(3, 224, 200, 16, 16),
                    "image width = 200: must be divisible by patch width = 16");
  MWM_REQUIRE_ERROR(mwm::make_geometry_2d(3, 224, 224, 0, 16), "patch height = 0");
  MWM_REQUIRE_ERROR(mwm::make_geometry_2d(0, 224, 224, 16, 16), "channels = 0");
  MWM_REQUIRE_ERROR(mwm::make_geometry_3d(1, 100, 128, 128, 16, 16, 16),
                    "image depth = 100: must be divisible by patch depth = 16");
  const auto geometry = mwm::make_geometry_3d(1, 128, 128, 96, 16, 16, 32);
  CHECK(geometry.grid.num_patches() == 8 * 8 * 3);
  CHECK(geometry.patch_vector_size() == 16 * 16 * 32);

  std::vector<float> heat(16, 0.0f);
  std::vector<float> scores(16);
  MWM_REQUIRE_ERROR(
      mwm::pool_heatmap(heat.data(), {1, 0, 16}, mwm::make_grid_2d(4, 4), {}, scores.data()),
      "heatmap height = 0");
  std::vector<std::int32_t> regions(16);
  MWM_REQUIRE_ERROR(mwm::regions_by_thresholds(scores.data(), 1, 0, {0.5f}, regions.data()),
                    "patches = 0");
  MWM_REQUIRE_ERROR(mwm::regions_by_quantiles(scores.data(), 1, 0, {0.5}, regions.data()),
                    "patches = 0");
}

TEST_CASE("ratios and shares outside [0, 1]", "[errors]") {
  auto request = random_request();
  request.policy.ratio = 1.5;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "ratio = 1.5: must lie in [0, 1]");
  request.policy.ratio = -0.25;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "ratio = -0.25");
  request.policy.ratio = std::numeric_limits<double>::quiet_NaN();
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "ratio = nan");

  std::vector<std::int32_t> regions(32, 0);
  request = random_request();
  request.regions = regions.data();
  request.policy.kind = mwm::policy_kind::per_region;
  request.policy.region_ratios = {0.5, 1.25};
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "region_ratios = 1.25");
  request.policy.region_ratios = {};
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "region_ratios size = 0");
  request.policy.region_ratios.assign(17, 0.5);
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "region_ratios size = 17");

  request = random_request();
  std::vector<float> scores(32, 0.5f);
  request.scores = scores.data();
  request.policy.kind = mwm::policy_kind::loss_guided;
  request.policy.hard_share = 2.0;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "hard_share = 2");
  request.policy.kind = mwm::policy_kind::weighted;
  request.policy.weight_floor = -1.0;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "weight_floor = -1");
  request.policy.kind = mwm::policy_kind::attention_guided;
  request.policy.attention = mwm::attention_mode::hint;
  request.policy.ratio = 0.5;
  request.policy.hint_pool_share = 0.6;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request),
                    "hint_pool_share = 0.59999999999999998: must not exceed ratio");
  request.policy.hint_pool_share = 0.2;
  request.policy.hint_share = 0.3;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request),
                    "hint_share = 0.29999999999999999: must not exceed hint_pool_share");

  std::vector<float> region_scores(16, 0.5f);
  std::vector<std::int32_t> out(16);
  MWM_REQUIRE_ERROR(mwm::regions_by_quantiles(region_scores.data(), 1, 16, {1.5}, out.data()),
                    "quantiles = 1.5");
  MWM_REQUIRE_ERROR(mwm::regions_by_quantiles(region_scores.data(), 1, 16, {0.2, 0.5}, out.data()),
                    "quantiles = 0.5: must be strictly descending");
  MWM_REQUIRE_ERROR(mwm::regions_by_quantiles(region_scores.data(), 1, 16, {}, out.data()),
                    "quantiles size = 0");
}

TEST_CASE("policy parameters that do not fit the grid", "[errors]") {
  auto request = random_request();
  request.policy.kind = mwm::policy_kind::coarse;
  request.policy.coarse_factor = 3;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "coarse_factor = 3: must divide every grid axis");
  request.policy.coarse_factor = 0;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "coarse_factor = 0");
  request.grid = mwm::make_grid_3d(3, 4, 4);
  request.policy.coarse_factor = 2;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "coarse_factor = 2");

  request = random_request();
  request.policy.kind = mwm::policy_kind::block;
  request.policy.block.min_patches = 0;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "block min_patches = 0");
  request.policy.block.min_patches = 8;
  request.policy.block.max_patches = 4;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "block max_patches = 4");
  request.policy.block.max_patches = 0;
  request.policy.block.min_aspect = 0.0;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "block min_aspect = 0");
}

TEST_CASE("thresholds must be strictly ascending and not NaN", "[errors]") {
  std::vector<float> scores(8, 0.5f);
  std::vector<std::int32_t> regions(8);
  MWM_REQUIRE_ERROR(mwm::regions_by_thresholds(scores.data(), 1, 8, {0.5f, 0.25f}, regions.data()),
                    "thresholds = 0.25: must be strictly ascending (previous is 0.5)");
  MWM_REQUIRE_ERROR(mwm::regions_by_thresholds(scores.data(), 1, 8, {0.5f, 0.5f}, regions.data()),
                    "must be strictly ascending");
  MWM_REQUIRE_ERROR(mwm::regions_by_thresholds(scores.data(), 1, 8, {nan_value}, regions.data()),
                    "thresholds = nan: must not be NaN");
  MWM_REQUIRE_ERROR(mwm::regions_by_thresholds(scores.data(), 1, 8, {}, regions.data()),
                    "thresholds size = 0");
}

TEST_CASE("NaN and infinity are errors unless nan_policy::zero", "[errors]") {
  mwm::pooling_request pooling;
  pooling.grid = mwm::make_grid_2d(2, 2);
  pooling.batch = 2;
  pooling.shape = {1, 4, 4};
  std::vector<float> heat(32, 0.25f);
  heat[21] = nan_value;
  std::vector<float> scores(8);
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, heat.data(), scores.data()),
                    "heatmaps[21] = nan: NaN or infinity");
  heat[21] = -std::numeric_limits<float>::infinity();
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, heat.data(), scores.data()),
                    "heatmaps[21] = -inf");
  MWM_REQUIRE_ERROR(mwm::pool_heatmap(heat.data() + 16, {1, 4, 4}, pooling.grid, {}, scores.data()),
                    "heatmap[5] = -inf");
  pooling.options.non_finite = mwm::nan_policy::zero;
  REQUIRE_NOTHROW(mwm::heatmaps_to_scores(pooling, heat.data(), scores.data()));

  std::vector<float> bad_scores(32, 0.5f);
  bad_scores[30] = nan_value;
  std::vector<std::int32_t> regions(32);
  MWM_REQUIRE_ERROR(mwm::regions_by_thresholds(bad_scores.data(), 2, 16, {0.1f}, regions.data()),
                    "scores[30] = nan");
  MWM_REQUIRE_ERROR(mwm::regions_by_quantiles(bad_scores.data(), 2, 16, {0.1}, regions.data()),
                    "scores[30] = nan");
  REQUIRE_NOTHROW(mwm::regions_by_thresholds(bad_scores.data(), 2, 16, {0.1f}, regions.data(),
                                             mwm::nan_policy::zero));
  REQUIRE_NOTHROW(mwm::regions_by_quantiles(bad_scores.data(), 2, 16, {0.1}, regions.data(),
                                            mwm::nan_policy::zero));

  auto request = random_request();
  request.policy.kind = mwm::policy_kind::weighted;
  request.scores = bad_scores.data();
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "scores[30] = nan");
  request.non_finite = mwm::nan_policy::zero;
  REQUIRE_NOTHROW(mwm::generate_masks(request));
}

TEST_CASE("empty batches", "[errors]") {
  auto request = random_request();
  request.batch = 0;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "batch = 0: must be positive");
  MWM_REQUIRE_ERROR(mwm::generate_masks_into(request, {}), "batch = 0");
  mwm::pooling_request pooling;
  pooling.batch = 0;
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, nullptr, nullptr), "batch = 0");
  MWM_REQUIRE_ERROR(mwm::regions_by_thresholds(nullptr, 0, 4, {0.5f}, nullptr), "batch = 0");
  MWM_REQUIRE_ERROR(mwm::regions_by_quantiles(nullptr, 0, 4, {0.5}, nullptr), "batch = 0");
}

TEST_CASE("mismatched lengths and out-of-range region indices", "[errors]") {
  auto request = random_request();
  request.policy.kind = mwm::policy_kind::fixed_total;
  request.policy.region_ratios = {0.2, 0.8};
  std::vector<std::int32_t> regions(32, 1);
  regions[19] = 2;
  request.regions = regions.data();
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "regions = 2: must lie in [0, 2)");
  regions[19] = -1;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "regions = -1");
  request.policy.kind = mwm::policy_kind::per_region;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request), "regions = -1");
  // One ratio means one region: every id must be 0 (a binary ROI map with one ratio is a mistake).
  for (auto kind : {mwm::policy_kind::per_region, mwm::policy_kind::fixed_total}) {
    request.policy.kind = kind;
    request.policy.region_ratios = {0.5};
    regions.assign(32, 0);
    regions[7] = 1;
    MWM_REQUIRE_ERROR(mwm::generate_masks(request), "regions = 1: must lie in [0, 1)");
  }

  mwm::pooling_request pooling;
  pooling.grid = mwm::make_grid_2d(2, 2);
  pooling.batch = 1;
  pooling.prompts = 3;
  pooling.shape = {1, 2, 2};
  pooling.combine = mwm::prompt_combine::weighted_sum;
  pooling.prompt_weights = {0.5f, 0.5f};
  std::vector<float> heat(12, 0.0f);
  std::vector<float> scores(4);
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, heat.data(), scores.data()),
                    "prompt_weights size = 2: must equal the number of prompts (3)");
  pooling.prompt_weights = {0.5f, nan_value, 0.5f};
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, heat.data(), scores.data()),
                    "prompt_weights = nan: must be finite");
  pooling.prompts = 0;
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, heat.data(), scores.data()), "prompts = 0");
}

TEST_CASE("policies that need regions or scores say so", "[errors]") {
  auto request = random_request();
  request.policy.region_ratios = {0.5};
  for (auto kind : {mwm::policy_kind::per_region, mwm::policy_kind::fixed_total}) {
    request.policy.kind = kind;
    MWM_REQUIRE_ERROR(
        mwm::generate_masks(request),
        std::string("regions = null: are required by policy ") + mwm::policy_name(kind));
  }
  for (auto kind : {mwm::policy_kind::weighted, mwm::policy_kind::loss_guided,
                    mwm::policy_kind::attention_guided}) {
    request.policy.kind = kind;
    MWM_REQUIRE_ERROR(
        mwm::generate_masks(request),
        std::string("scores = null: are required by policy ") + mwm::policy_name(kind));
  }
}
