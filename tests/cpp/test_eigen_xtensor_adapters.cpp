// Both adapters in one translation unit: their overloads coexist and agree with each other.
#include <mwm/eigen.hpp>
#include <mwm/xtensor.hpp>

#include <cstdint>
#include <vector>

#include "catch.hpp"

TEST_CASE("the Eigen and xtensor adapters give the same masks", "[eigen][xtensor]") {
  mwm::mask_request request;
  request.grid = mwm::make_grid_2d(3, 4);
  request.policy.kind = mwm::policy_kind::weighted;
  request.policy.ratio = 0.5;
  request.seed = 4;
  mwm::row_major_matrix<float> eigen_scores(2, 12);
  xt::xtensor<float, 2> xtensor_scores = xt::xtensor<float, 2>::from_shape({2, 12});
  for (Eigen::Index i = 0; i < 24; ++i) {
    eigen_scores.data()[i] = static_cast<float>(i % 5) / 4.0f;
    xtensor_scores.data()[i] = eigen_scores.data()[i];
  }
  const auto from_eigen = mwm::generate_masks(request, eigen_scores);
  const auto from_xtensor = mwm::generate_masks(request, xtensor_scores);
  REQUIRE(from_eigen.ids_shuffle.size() ==
          static_cast<Eigen::Index>(from_xtensor.ids_shuffle.size()));
  for (Eigen::Index i = 0; i < from_eigen.ids_shuffle.size(); ++i)
    CHECK(from_eigen.ids_shuffle.data()[i] == from_xtensor.ids_shuffle.data()[i]);
  const auto eigen_regions = mwm::regions_by_thresholds(eigen_scores, {0.5f});
  const auto xtensor_regions = mwm::regions_by_thresholds(xtensor_scores, {0.5f});
  for (Eigen::Index i = 0; i < 24; ++i) CHECK(eigen_regions.data()[i] == xtensor_regions.data()[i]);
}
