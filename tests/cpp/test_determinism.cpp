// Masks are a function of (seed, global sample index, inputs) only: not of the call, the batch
// split or the thread count.
#include <mwm/masking.hpp>

#include <cstdint>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

const mwm::grid_shape test_grids[] = {mwm::make_grid_2d(14, 14), mwm::make_grid_2d(6, 4),
                                      mwm::make_grid_3d(4, 6, 4)};

struct batch_inputs {
  std::vector<std::int32_t> regions;
  std::vector<float> scores;
};

batch_inputs make_inputs(const mwm::grid_shape& grid, std::int64_t batch) {
  mwm_test::test_rng rng(11);
  return {mwm_test::random_regions(rng, grid, batch, 3),
          mwm_test::random_scores(rng, batch * grid.num_patches(), true)};
}

// `batch` samples of `grid` over `inputs`, at `seed`.
mwm_test::generate_inputs inputs_over(const batch_inputs& inputs, const mwm::grid_shape& grid,
                                      std::int64_t batch, std::uint64_t seed) {
  mwm_test::generate_inputs in;
  in.grid = grid;
  in.batch = batch;
  in.seed = seed;
  in.regions = &inputs.regions;
  in.scores = &inputs.scores;
  return in;
}

}  // namespace

TEST_CASE("the same (seed, offset) gives the same masks on every call", "[determinism]") {
  for (const auto& grid : test_grids) {
    const auto inputs = make_inputs(grid, 6);
    for (const auto& config : mwm_test::every_policy()) {
      INFO(config.name);
      auto in = inputs_over(inputs, grid, 6, 42);
      in.offset = 1000;
      const auto first = mwm_test::generate(config.policy, in);
      mwm_test::require_identical(first, mwm_test::generate(config.policy, in));
      // Any other seed or offset changes the random part of the masks.
      const bool fully_determined_by_scores =
          config.policy.kind == mwm::policy_kind::attention_guided &&
          config.policy.attention != mwm::attention_mode::hint;
      in.seed = 43;
      const auto other_seed = mwm_test::generate(config.policy, in);
      in.seed = 42;
      in.offset = 1001;
      const auto other_offset = mwm_test::generate(config.policy, in);
      if (fully_determined_by_scores) {
        CHECK(other_seed.mask == first.mask);
      } else {
        CHECK(other_seed.ids_shuffle != first.ids_shuffle);
        CHECK(other_offset.ids_shuffle != first.ids_shuffle);
      }
    }
  }
}

TEST_CASE("sample b at offset o equals sample 0 at offset o + b", "[determinism]") {
  for (const auto& grid : test_grids) {
    const std::int64_t n = grid.num_patches();
    const std::int64_t batch = 7;
    const auto inputs = make_inputs(grid, batch);
    for (const auto& config : mwm_test::every_policy()) {
      INFO(config.name);
      auto in = inputs_over(inputs, grid, batch, 5);
      in.offset = 300;
      const auto whole = mwm_test::generate(config.policy, in);
      for (std::int64_t b = 0; b < batch; ++b) {
        INFO("sample " << b);
        const std::vector<std::int32_t> regions(inputs.regions.begin() + b * n,
                                                inputs.regions.begin() + (b + 1) * n);
        const std::vector<float> scores(inputs.scores.begin() + b * n,
                                        inputs.scores.begin() + (b + 1) * n);
        mwm_test::generate_inputs single = in;
        single.batch = 1;
        single.offset = in.offset + static_cast<std::uint64_t>(b);
        single.regions = &regions;
        single.scores = &scores;
        const auto alone = mwm_test::generate(config.policy, single);
        const auto row = static_cast<std::size_t>(b * n);
        REQUIRE(std::equal(alone.ids_shuffle.begin(), alone.ids_shuffle.end(),
                           whole.ids_shuffle.begin() + static_cast<std::ptrdiff_t>(row)));
        REQUIRE(std::equal(alone.mask.begin(), alone.mask.end(),
                           whole.mask.begin() + static_cast<std::ptrdiff_t>(row)));
        REQUIRE(alone.num_masked[0] == whole.num_masked[static_cast<std::size_t>(b)]);
      }
    }
  }
}

TEST_CASE("threads 1, 2, 3 and 7 give identical bytes", "[determinism]") {
  for (const auto& grid : test_grids) {
    const std::int64_t batch = 23;
    const auto inputs = make_inputs(grid, batch);
    for (const auto& config : mwm_test::every_policy()) {
      INFO(config.name);
      auto in = inputs_over(inputs, grid, batch, 77);
      in.threads = 1;
      const auto reference = mwm_test::generate(config.policy, in);
      for (int threads : {2, 3, 7}) {
        INFO(threads << " threads");
        in.threads = threads;
        mwm_test::require_identical(reference, mwm_test::generate(config.policy, in));
      }
    }
  }
}

TEST_CASE("pooling and quantile regions do not depend on the thread count", "[determinism]") {
  mwm_test::test_rng rng(3);
  mwm::pooling_request request;
  request.grid = mwm::make_grid_2d(7, 7);
  request.batch = 11;
  request.prompts = 2;
  request.shape = {1, 50, 37};
  const auto heat = mwm_test::random_scores(rng, 11 * 2 * 50 * 37, false);
  std::vector<float> one(11 * 49);
  std::vector<float> many(11 * 49);
  request.threads = 1;
  mwm::heatmaps_to_scores(request, heat.data(), one.data());
  request.threads = 3;
  mwm::heatmaps_to_scores(request, heat.data(), many.data());
  CHECK(one == many);
  std::vector<std::int32_t> regions_one(11 * 49);
  std::vector<std::int32_t> regions_many(11 * 49);
  mwm::regions_by_quantiles(one.data(), 11, 49, {0.5, 0.2}, regions_one.data(),
                            mwm::nan_policy::error, 1);
  mwm::regions_by_quantiles(one.data(), 11, 49, {0.5, 0.2}, regions_many.data(),
                            mwm::nan_policy::error, 7);
  CHECK(regions_one == regions_many);
}
