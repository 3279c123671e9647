// The Eigen adapter: Eigen matrices of any arithmetic scalar and storage order in, the core's
// results out.
#include <mwm/eigen.hpp>

#include <cstdint>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

template <typename T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> random_matrix(Eigen::Index rows, Eigen::Index cols,
                                                               std::uint64_t seed, double scale) {
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> out(rows, cols);  // column-major on purpose
  mwm_test::test_rng rng(seed);
  for (Eigen::Index r = 0; r < rows; ++r)
    for (Eigen::Index c = 0; c < cols; ++c)
      out(r, c) = static_cast<T>(mwm_test::uniform_real(rng, 0.0, scale));
  return out;
}

// Row-major float values of a matrix, the layout of the pointer API.
template <typename D>
std::vector<float> row_major_floats(const Eigen::DenseBase<D>& m) {
  std::vector<float> out;
  for (Eigen::Index r = 0; r < m.rows(); ++r)
    for (Eigen::Index c = 0; c < m.cols(); ++c) out.push_back(static_cast<float>(m(r, c)));
  return out;
}

template <typename D>
std::vector<typename D::Scalar> row_major_values(const Eigen::DenseBase<D>& m) {
  std::vector<typename D::Scalar> out;
  for (Eigen::Index r = 0; r < m.rows(); ++r)
    for (Eigen::Index c = 0; c < m.cols(); ++c) out.push_back(m(r, c));
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("Eigen heatmaps_to_scores equals the pointer API", "[eigen]", float, double,
                   std::uint8_t) {
  const double scale = std::is_integral<TestType>::value ? 255.0 : 1.0;
  mwm::pooling_request request;
  request.grid = mwm::make_grid_2d(3, 4);
  request.prompts = 2;
  request.shape = {1, 10, 13};
  request.combine = mwm::prompt_combine::weighted_sum;
  request.prompt_weights = {1.0f, 0.5f};
  const auto heat = random_matrix<TestType>(3 * 2, 130, 1, scale);
  const auto got = mwm::heatmaps_to_scores(request, heat);
  REQUIRE(got.rows() == 3);
  REQUIRE(got.cols() == 12);
  request.batch = 3;
  std::vector<float> expected(36);
  mwm::heatmaps_to_scores(request, row_major_floats(heat).data(), expected.data());
  CHECK(row_major_values(got) == expected);
}

TEMPLATE_TEST_CASE("Eigen pool_heatmap pools one height x width matrix", "[eigen]", float, double) {
  const auto heat = random_matrix<TestType>(17, 23, 2, 1.0);
  mwm::pool_options options;
  options.reduction = mwm::pool_reduction::max;
  const auto grid = mwm::make_grid_2d(5, 7);
  const auto got = mwm::pool_heatmap(heat, grid, options);
  REQUIRE(got.rows() == 5);
  REQUIRE(got.cols() == 7);
  std::vector<float> expected(35);
  mwm::pool_heatmap(row_major_floats(heat).data(), {1, 17, 23}, grid, options, expected.data());
  CHECK(row_major_values(got) == expected);
  // A block expression works as well as a matrix.
  const auto corner = mwm::pool_heatmap(heat.block(0, 0, 10, 14), mwm::make_grid_2d(5, 7), options);
  CHECK(corner(0, 0) == static_cast<float>(heat.block(0, 0, 2, 2).maxCoeff()));
}

TEMPLATE_TEST_CASE("Eigen regions from scores of any floating type", "[eigen]", float, double) {
  const auto scores = random_matrix<TestType>(4, 15, 3, 1.0);
  const auto flat = row_major_floats(scores);
  std::vector<std::int32_t> expected(60);
  mwm::regions_by_thresholds(flat.data(), 4, 15, {0.25f, 0.5f}, expected.data());
  CHECK(row_major_values(mwm::regions_by_thresholds(scores, {0.25f, 0.5f})) == expected);
  mwm::regions_by_quantiles(flat.data(), 4, 15, {0.4}, expected.data());
  CHECK(row_major_values(mwm::regions_by_quantiles(scores, {0.4})) == expected);
}

TEMPLATE_TEST_CASE("Eigen generate_masks takes regions of any integer type", "[eigen]",
                   std::int32_t, std::int64_t, std::uint8_t) {
  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(4, 4);
  request.policy.kind = mwm::policy_kind::fixed_total;
  request.policy.ratio = 0.6;
  request.policy.region_ratios = {0.3, 0.9};
  request.seed = 21;
  Eigen::Matrix<TestType, Eigen::Dynamic, Eigen::Dynamic> regions(5, 16);
  for (Eigen::Index r = 0; r < 5; ++r)
    for (Eigen::Index c = 0; c < 16; ++c) regions(r, c) = static_cast<TestType>((r + c) % 4 == 0);
  const auto got = mwm::generate_masks(request, regions);
  std::vector<std::int32_t> flat;
  for (auto v : row_major_values(regions)) flat.push_back(static_cast<std::int32_t>(v));
  request.batch = 5;
  request.regions = flat.data();
  const auto expected = mwm::generate_masks(request);
  REQUIRE(got.mask.rows() == 5);
  REQUIRE(got.mask.cols() == 16);
  for (Eigen::Index r = 0; r < 5; ++r)
    for (Eigen::Index c = 0; c < 16; ++c) REQUIRE(got.mask(r, c) == expected.is_masked(r, c));
  CHECK(std::vector<std::int64_t>(got.num_masked.data(), got.num_masked.data() + 5) ==
        expected.num_masked);
  CHECK(row_major_values(got.ids_shuffle) == expected.ids_shuffle);
  CHECK(row_major_values(got.ids_restore) == expected.ids_restore);
  CHECK(got.ids_keep.cols() == expected.widths.keep);
  CHECK(row_major_values(got.ids_keep) == expected.ids_keep);
  CHECK(row_major_values(got.ids_masked) == expected.ids_masked);
  CHECK(row_major_values(got.noise) == expected.noise);
}

TEMPLATE_TEST_CASE("Eigen generate_masks takes scores of any floating type", "[eigen]", float,
                   double) {
  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(3, 5);
  request.policy.kind = mwm::policy_kind::attention_guided;
  request.policy.attention = mwm::attention_mode::hint;
  request.policy.ratio = 0.6;
  const auto scores = random_matrix<TestType>(6, 15, 4, 1.0);
  const auto got = mwm::generate_masks(request, scores);
  const auto flat = row_major_floats(scores);
  request.batch = 6;
  request.scores = flat.data();
  const auto expected = mwm::generate_masks(request);
  CHECK(row_major_values(got.ids_shuffle) == expected.ids_shuffle);
  const Eigen::MatrixXi regions = Eigen::MatrixXi::Zero(6, 15);
  CHECK(mwm::generate_masks(request, regions, scores).ids_shuffle == got.ids_shuffle);
}

TEST_CASE("Eigen shapes that do not fit are errors naming the argument", "[eigen]") {
  mwm::pooling_request pooling;
  pooling.grid = mwm::make_grid_2d(2, 2);
  pooling.prompts = 2;
  pooling.shape = {1, 4, 4};
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, Eigen::MatrixXf::Zero(3, 16)),
                    "heatmaps rows = 3: must be batch * prompts with prompts = 2");
  MWM_REQUIRE_ERROR(mwm::heatmaps_to_scores(pooling, Eigen::MatrixXf::Zero(4, 15)),
                    "heatmaps columns = 15");
  MWM_REQUIRE_ERROR(mwm::pool_heatmap(Eigen::MatrixXf::Zero(4, 4), mwm::make_grid_3d(1, 2, 2)),
                    "grid ndim = 3");

  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(2, 2);
  request.policy.kind = mwm::policy_kind::per_region;
  request.policy.region_ratios = {0.5};
  MWM_REQUIRE_ERROR(mwm::generate_masks(request, Eigen::MatrixXi::Zero(2, 5)),
                    "regions columns = 5: must equal the grid's patch count N = 4");
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic> big =
      Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic>::Zero(2, 4);
  big(1, 3) = std::int64_t(1) << 40;
  MWM_REQUIRE_ERROR(mwm::generate_masks(request, big), "regions = 1099511627776");
  MWM_REQUIRE_ERROR(mwm::generate_masks(request, Eigen::MatrixXi::Zero(0, 4)), "batch = 0");
  MWM_REQUIRE_ERROR(
      mwm::generate_masks(request, Eigen::MatrixXi::Zero(2, 4), Eigen::MatrixXf::Zero(3, 4)),
      "scores rows = 3");
}
