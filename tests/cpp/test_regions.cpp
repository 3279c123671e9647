// Scores to regions: strict ascending thresholds, per-sample quantiles with ties by index, and
// what nan_policy::zero means for scores.
#include <mwm/masking.hpp>

#include <cstdint>
#include <limits>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

TEST_CASE("threshold regions count the thresholds a score strictly exceeds", "[regions]") {
  const std::vector<float> thresholds = {0.3f, 0.6f};
  const std::vector<float> scores = {0.0f, 0.3f, 0.30001f, 0.6f, 0.6000001f, 1.0f, -5.0f, 0.45f};
  const std::vector<std::int32_t> expected = {0, 0, 1, 1, 2, 2, 0, 1};
  std::vector<std::int32_t> regions(8, -1);
  mwm::regions_by_thresholds(scores.data(), 2, 4, thresholds, regions.data());
  CHECK(regions == expected);
}

TEST_CASE("threshold regions equal a brute-force count over random scores", "[regions]") {
  mwm_test::test_rng rng(21);
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<float> thresholds;
    float t = -0.1f;
    const auto count = mwm_test::uniform_int(rng, 1, 5);
    for (std::int64_t i = 0; i < count; ++i) {
      t += static_cast<float>(mwm_test::uniform_real(rng, 0.01, 0.4));
      thresholds.push_back(t);
    }
    const auto scores = mwm_test::random_scores(rng, 3 * 40, trial % 2 == 0);
    std::vector<std::int32_t> regions(scores.size());
    mwm::regions_by_thresholds(scores.data(), 3, 40, thresholds, regions.data());
    for (std::size_t i = 0; i < scores.size(); ++i) {
      std::int32_t above = 0;
      for (float threshold : thresholds) above += scores[i] > threshold ? 1 : 0;
      REQUIRE(regions[i] == above);
    }
  }
}

TEST_CASE("quantile regions take the top int(N * q) per sample, ties by lower index", "[regions]") {
  mwm_test::test_rng rng(22);
  for (int trial = 0; trial < 200; ++trial) {
    const std::int64_t batch = mwm_test::uniform_int(rng, 1, 4);
    const std::int64_t n = mwm_test::uniform_int(rng, 1, 60);
    std::vector<double> shares = {mwm_test::uniform_real(rng, 0.3, 1.0)};
    if (trial % 2 == 0) shares.push_back(shares[0] * mwm_test::uniform_real(rng, 0.0, 0.9));
    const auto scores = mwm_test::random_scores(rng, batch * n, trial % 3 != 0);
    std::vector<std::int32_t> regions(scores.size(), -1);
    mwm::regions_by_quantiles(scores.data(), batch, n, shares, regions.data());
    for (std::int64_t b = 0; b < batch; ++b) {
      const auto ranked = mwm_test::ranked_by_score(scores.data() + b * n, n, false);
      for (std::int64_t rank = 0; rank < n; ++rank) {
        std::int32_t expected = 0;
        for (double share : shares)
          expected += rank < static_cast<std::int64_t>(static_cast<double>(n) * share) ? 1 : 0;
        REQUIRE(regions[static_cast<std::size_t>(b * n + ranked[static_cast<std::size_t>(rank)])] ==
                expected);
      }
    }
  }
}

TEST_CASE("quantile ties: equal scores (and -0 vs +0) go to the lower index", "[regions]") {
  const std::vector<float> scores = {0.0f, -0.0f, 0.0f, -0.0f, 0.0f, 0.0f, -0.0f, 0.0f, 0.0f, 0.0f};
  std::vector<std::int32_t> regions(10, -1);
  mwm::regions_by_quantiles(scores.data(), 1, 10, {0.3}, regions.data());
  CHECK(regions == std::vector<std::int32_t>{1, 1, 1, 0, 0, 0, 0, 0, 0, 0});
}

namespace {

const float nan_value = std::numeric_limits<float>::quiet_NaN();
const float inf_value = std::numeric_limits<float>::infinity();

// Scores with a few NaN / infinity entries, and the same scores with zeros in their place.
struct non_finite_scores {
  std::vector<float> raw;
  std::vector<float> zeroed;
};

non_finite_scores make_non_finite_scores(std::int64_t count) {
  mwm_test::test_rng rng(4);
  non_finite_scores s;
  s.raw = mwm_test::random_scores(rng, count, false);
  for (auto& v : s.raw) v -= 0.5f;  // zero sits in the middle of the ranking
  s.zeroed = s.raw;
  for (std::int64_t i = 3; i < count; i += 7) {
    s.raw[static_cast<std::size_t>(i)] =
        i % 3 == 0 ? nan_value : (i % 3 == 1 ? inf_value : -inf_value);
    s.zeroed[static_cast<std::size_t>(i)] = 0.0f;
  }
  return s;
}

}  // namespace

TEST_CASE("nan_policy::zero treats non-finite scores as zero in regions", "[regions][nan]") {
  const auto s = make_non_finite_scores(2 * 30);
  std::vector<std::int32_t> got(60);
  std::vector<std::int32_t> expected(60);
  mwm::regions_by_thresholds(s.raw.data(), 2, 30, {-0.2f, 0.1f}, got.data(), mwm::nan_policy::zero);
  mwm::regions_by_thresholds(s.zeroed.data(), 2, 30, {-0.2f, 0.1f}, expected.data());
  CHECK(got == expected);
  mwm::regions_by_quantiles(s.raw.data(), 2, 30, {0.6, 0.25}, got.data(), mwm::nan_policy::zero);
  mwm::regions_by_quantiles(s.zeroed.data(), 2, 30, {0.6, 0.25}, expected.data());
  CHECK(got == expected);
}

TEST_CASE("nan_policy::zero treats non-finite scores as zero in score-driven policies",
          "[regions][nan]") {
  const mwm::grid_shape grid = mwm::make_grid_2d(6, 5);
  const auto s = make_non_finite_scores(3 * 30);
  for (const auto& config : mwm_test::every_policy()) {
    if (!mwm::uses_scores(config.policy.kind)) continue;
    INFO(config.name);
    mwm::mask_request request;
    request.grid = grid;
    request.batch = 3;
    request.policy = config.policy;
    request.seed = 10;
    request.non_finite = mwm::nan_policy::zero;
    request.scores = s.raw.data();
    const auto got = mwm::generate_masks(request);
    request.scores = s.zeroed.data();
    const auto expected = mwm::generate_masks(request);
    CHECK(got.ids_shuffle == expected.ids_shuffle);
  }
}
