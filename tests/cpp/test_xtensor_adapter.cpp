// The xtensor adapter: xtensor arrays of any arithmetic type in, the core's results out.
#include <mwm/xtensor.hpp>

#if __has_include(<xtensor/views/xview.hpp>)
#include <xtensor/core/xmath.hpp>
#include <xtensor/views/xview.hpp>
#else
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>
#endif

#include <cstdint>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

template <typename T>
xt::xarray<T> random_array(const std::vector<std::size_t>& shape, std::uint64_t seed,
                           double scale) {
  xt::xarray<T> out = xt::xarray<T>::from_shape(shape);
  mwm_test::test_rng rng(seed);
  for (auto& v : out) v = static_cast<T>(mwm_test::uniform_real(rng, 0.0, scale));
  return out;
}

template <typename T>
std::vector<float> as_floats(const xt::xarray<T>& a) {
  std::vector<float> out;
  for (auto v : a) out.push_back(static_cast<float>(v));
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("xtensor heatmaps_to_scores equals the pointer API", "[xtensor]", float, double,
                   std::uint8_t) {
  const double scale = std::is_integral<TestType>::value ? 255.0 : 1.0;
  mwm::pooling_request request;
  SECTION("2D without a prompt axis") {
    request.grid = mwm::make_grid_2d(7, 7);
    const auto heat = random_array<TestType>({3, 30, 41}, 1, scale);
    const auto got = mwm::heatmaps_to_scores(request, heat);
    request.batch = 3;
    request.shape = {1, 30, 41};
    std::vector<float> expected(3 * 49);
    mwm::heatmaps_to_scores(request, as_floats(heat).data(), expected.data());
    REQUIRE(got.shape()[0] == 3);
    REQUIRE(got.shape()[1] == 49);
    CHECK(std::vector<float>(got.begin(), got.end()) == expected);
  }
  SECTION("2D with prompts, weighted") {
    request.grid = mwm::make_grid_2d(4, 6);
    request.combine = mwm::prompt_combine::weighted_sum;
    request.prompt_weights = {0.25f, 0.75f};
    const auto heat = random_array<TestType>({2, 2, 16, 18}, 2, scale);
    const auto got = mwm::heatmaps_to_scores(request, heat);
    request.batch = 2;
    request.prompts = 2;
    request.shape = {1, 16, 18};
    std::vector<float> expected(2 * 24);
    mwm::heatmaps_to_scores(request, as_floats(heat).data(), expected.data());
    CHECK(std::vector<float>(got.begin(), got.end()) == expected);
  }
  SECTION("3D with and without prompts") {
    request.grid = mwm::make_grid_3d(2, 3, 4);
    const auto volume = random_array<TestType>({2, 5, 6, 9}, 3, scale);
    const auto got = mwm::heatmaps_to_scores(request, volume);
    request.batch = 2;
    request.shape = {5, 6, 9};
    std::vector<float> expected(2 * 24);
    mwm::heatmaps_to_scores(request, as_floats(volume).data(), expected.data());
    CHECK(std::vector<float>(got.begin(), got.end()) == expected);
    const auto with_prompts = random_array<TestType>({2, 3, 5, 6, 9}, 4, scale);
    request.prompts = 1;
    const auto got_prompts = mwm::heatmaps_to_scores(request, with_prompts);
    request.prompts = 3;
    mwm::heatmaps_to_scores(request, as_floats(with_prompts).data(), expected.data());
    CHECK(std::vector<float>(got_prompts.begin(), got_prompts.end()) == expected);
  }
}

TEST_CASE("xtensor inputs may be views and expressions of any layout", "[xtensor]") {
  mwm::pooling_request request;
  request.grid = mwm::make_grid_2d(3, 3);
  const auto heat = random_array<float>({2, 12, 9}, 5, 1.0);
  // A lazy expression: the sum of two arrays, evaluated by the adapter.
  const auto doubled = mwm::heatmaps_to_scores(request, heat + heat);
  const auto single = mwm::heatmaps_to_scores(request, heat);
  for (std::size_t i = 0; i < single.size(); ++i)
    CHECK(std::fabs(doubled.data()[i] - 2.0f * single.data()[i]) <= 1e-6f);
  // A column-major copy gives the same scores as the row-major original.
  xt::xarray<float, xt::layout_type::column_major> column_major = heat;
  const auto from_column_major = mwm::heatmaps_to_scores(request, column_major);
  CHECK((from_column_major == single));
  // A strided view: every other sample.
  const auto four = random_array<float>({4, 12, 9}, 6, 1.0);
  const auto strided = mwm::heatmaps_to_scores(request, xt::view(four, xt::range(0, 4, 2)));
  const xt::xarray<float> picked = xt::view(four, xt::range(0, 4, 2));
  CHECK((strided == mwm::heatmaps_to_scores(request, picked)));
}

TEMPLATE_TEST_CASE("xtensor regions from scores of any floating type", "[xtensor]", float, double) {
  const auto scores = random_array<TestType>({3, 5, 4}, 7, 1.0);
  const auto by_threshold = mwm::regions_by_thresholds(scores, {0.3f, 0.7f});
  const auto by_quantile = mwm::regions_by_quantiles(scores, {0.5, 0.1});
  REQUIRE(by_threshold.shape()[0] == 3);
  REQUIRE(by_threshold.shape()[1] == 20);
  std::vector<std::int32_t> expected(60);
  const auto flat = as_floats(scores);
  mwm::regions_by_thresholds(flat.data(), 3, 20, {0.3f, 0.7f}, expected.data());
  CHECK(std::vector<std::int32_t>(by_threshold.begin(), by_threshold.end()) == expected);
  mwm::regions_by_quantiles(flat.data(), 3, 20, {0.5, 0.1}, expected.data());
  CHECK(std::vector<std::int32_t>(by_quantile.begin(), by_quantile.end()) == expected);
}

TEMPLATE_TEST_CASE("xtensor generate_masks takes regions of any integer type", "[xtensor]",
                   std::int32_t, std::int64_t, std::uint8_t, std::uint16_t) {
  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(4, 5);
  request.policy.kind = mwm::policy_kind::per_region;
  request.policy.region_ratios = {0.3, 0.9};
  request.seed = 8;
  xt::xarray<TestType> regions = xt::xarray<TestType>::from_shape({3, 4, 5});
  for (std::size_t i = 0; i < regions.size(); ++i)
    regions.data()[i] = static_cast<TestType>(i % 3 == 0);
  const auto got = mwm::generate_masks(request, regions);

  std::vector<std::int32_t> flat(regions.begin(), regions.end());
  request.batch = 3;
  request.regions = flat.data();
  const auto expected = mwm::generate_masks(request);
  REQUIRE(got.mask.shape()[0] == 3);
  REQUIRE(got.mask.shape()[1] == 20);
  for (std::size_t i = 0; i < expected.mask.size(); ++i)
    REQUIRE(got.mask.data()[i] == (expected.mask[i] != 0));
  CHECK(std::vector<std::int64_t>(got.num_masked.begin(), got.num_masked.end()) ==
        expected.num_masked);
  CHECK(std::vector<std::int64_t>(got.ids_shuffle.begin(), got.ids_shuffle.end()) ==
        expected.ids_shuffle);
  CHECK(std::vector<std::int64_t>(got.ids_restore.begin(), got.ids_restore.end()) ==
        expected.ids_restore);
  CHECK(std::vector<std::int64_t>(got.ids_keep.begin(), got.ids_keep.end()) == expected.ids_keep);
  CHECK(got.ids_keep.shape()[1] == 20);
  CHECK(std::vector<std::int64_t>(got.ids_masked.begin(), got.ids_masked.end()) ==
        expected.ids_masked);
  CHECK(std::vector<float>(got.noise.begin(), got.noise.end()) == expected.noise);
  // (B, N) and grid-shaped inputs are the same thing.
  const xt::xarray<TestType> flat_regions = xt::reshape_view(regions, {3, 20});
  CHECK((mwm::generate_masks(request, flat_regions).ids_shuffle == got.ids_shuffle));
}

TEMPLATE_TEST_CASE("xtensor generate_masks takes scores of any floating type", "[xtensor]", float,
                   double) {
  mwm::mask_request request;
  request.grid = mwm::make_grid_3d(2, 3, 3);
  request.policy.kind = mwm::policy_kind::loss_guided;
  request.policy.ratio = 0.6;
  const auto scores = random_array<TestType>({4, 2, 3, 3}, 9, 1.0);
  const auto got = mwm::generate_masks(request, scores);
  const auto flat = as_floats(scores);
  request.batch = 4;
  request.scores = flat.data();
  const auto expected = mwm::generate_masks(request);
  CHECK(std::vector<std::int64_t>(got.ids_shuffle.begin(), got.ids_shuffle.end()) ==
        expected.ids_shuffle);
  CHECK(got.ids_keep.shape()[1] == static_cast<std::size_t>(expected.widths.keep));

  // Both inputs at once (policies that read one ignore the other).
  xt::xarray<std::int32_t> regions = xt::zeros<std::int32_t>({4, 18});
  const auto both = mwm::generate_masks(request, regions, scores);
  CHECK((both.ids_shuffle == got.ids_shuffle));
}

TEST_CASE("xtensor shapes that do not fit are errors naming the argument", "[xtensor]") {
  mwm::pooling_request pooling;
  pooling.grid = mwm::make_grid_2d(2, 2);
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, xt::xarray<float>::from_shape({4, 4})),
                    "heatmaps shape = (4, 4)");
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, xt::xarray<float>::from_shape({0, 4, 4})),
                    "batch = 0");
  MWM_REQUIRE_ERROR(mwm::regions_by_thresholds(xt::xarray<float>::from_shape({6}), {0.5f}),
                    "scores shape = (6)");

  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(3, 3);
  request.policy.kind = mwm::policy_kind::per_region;
  request.policy.region_ratios = {0.5, 0.5};
  xt::xarray<std::int64_t> regions = xt::zeros<std::int64_t>({2, 8});
  MWM_REQUIRE_ERROR(mwm::generate_masks(request, regions), "regions shape = (2, 8)");
  regions = xt::zeros<std::int64_t>({2, 3, 3});
  regions(1, 2, 2) = std::int64_t(1) << 33;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request, regions), "regions = 8589934592");
  regions(1, 2, 2) = -1;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request, regions), "regions = -1");
  regions(1, 2, 2) = 2;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request, regions), "regions = 2: must lie in [0, 2)");
  regions(1, 2, 2) = 1;
  xt::xarray<float> scores = xt::zeros<float>({3, 9});
  MWM_REQUIRE_ERROR(mwm::generate_masks(request, regions, scores), "scores batch = 3");
}
