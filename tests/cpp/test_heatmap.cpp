// Heatmap pooling onto the patch grid against brute-force references, and prompt combination.
#include <mwm/masking.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

// Pixel p of an axis of `in` pixels lies in cell c of `out` cells when their extents overlap in
// continuous coordinates: [p, p + 1) meets [c * in / out, (c + 1) * in / out).
bool overlaps(std::int64_t pixel, std::int64_t cell, std::int64_t in, std::int64_t out) {
  return (pixel + 1) * out > cell * in && pixel * out < (cell + 1) * in;
}

struct reference_pool {
  double sum = 0.0;
  float maximum = -std::numeric_limits<float>::infinity();
  std::int64_t above = 0;
  std::int64_t count = 0;
};

// Visits every pixel of the heatmap and keeps those that overlap cell (d, h, w).
reference_pool brute_force_cell(const std::vector<float>& heat, mwm::heatmap_shape shape,
                                mwm::grid_shape grid, float threshold, std::int64_t d,
                                std::int64_t h, std::int64_t w) {
  reference_pool pool;
  for (std::int64_t z = 0; z < shape.depth; ++z)
    for (std::int64_t y = 0; y < shape.height; ++y)
      for (std::int64_t x = 0; x < shape.width; ++x) {
        if (!overlaps(z, d, shape.depth, grid.depth) ||
            !overlaps(y, h, shape.height, grid.height) || !overlaps(x, w, shape.width, grid.width))
          continue;
        const float v = heat[static_cast<std::size_t>((z * shape.height + y) * shape.width + x)];
        pool.sum += v;
        pool.maximum = std::max(pool.maximum, v);
        pool.above += v > threshold ? 1 : 0;
        ++pool.count;
      }
  return pool;
}

struct pooling_case {
  mwm::grid_shape grid;
  mwm::heatmap_shape shape;
};

std::vector<pooling_case> pooling_cases() {
  std::vector<pooling_case> cases;
  const std::pair<std::int64_t, std::int64_t> grids_2d[] = {{7, 7}, {5, 3}, {14, 14}};
  const std::pair<std::int64_t, std::int64_t> heat_2d[] = {
      {224, 224}, {100, 100}, {7, 7}, {5, 3}, {3, 2}, {13, 31}, {1, 1}, {14, 14}};
  for (auto g : grids_2d)
    for (auto s : heat_2d)
      cases.push_back({mwm::make_grid_2d(g.first, g.second), {1, s.first, s.second}});
  const mwm::heatmap_shape heat_3d[] = {{5, 9, 8}, {2, 3, 4}, {1, 2, 3}, {16, 16, 16}, {3, 7, 2}};
  for (auto s : heat_3d) cases.push_back({mwm::make_grid_3d(2, 3, 4), s});
  return cases;
}

}  // namespace

TEST_CASE("mean, max and fraction pooling equal brute-force references", "[heatmap]") {
  mwm_test::test_rng rng(5);
  for (const auto& c : pooling_cases()) {
    INFO("grid " << c.grid.depth << "x" << c.grid.height << "x" << c.grid.width << ", heatmap "
                 << c.shape.depth << "x" << c.shape.height << "x" << c.shape.width);
    const auto heat = mwm_test::random_scores(rng, c.shape.num_pixels(), false);
    for (auto reduction :
         {mwm::pool_reduction::mean, mwm::pool_reduction::max, mwm::pool_reduction::fraction}) {
      mwm::pool_options options;
      options.reduction = reduction;
      options.threshold = 0.4f;
      std::vector<float> scores(static_cast<std::size_t>(c.grid.num_patches()), -1.0f);
      mwm::pool_heatmap(heat.data(), c.shape, c.grid, options, scores.data());
      for (std::int64_t d = 0; d < c.grid.depth; ++d)
        for (std::int64_t h = 0; h < c.grid.height; ++h)
          for (std::int64_t w = 0; w < c.grid.width; ++w) {
            const auto ref = brute_force_cell(heat, c.shape, c.grid, 0.4f, d, h, w);
            REQUIRE(ref.count > 0);
            const float got = scores[static_cast<std::size_t>(c.grid.index(d, h, w))];
            const double count = static_cast<double>(ref.count);
            switch (reduction) {
              case mwm::pool_reduction::mean:
                REQUIRE(std::fabs(got - ref.sum / count) <= 1e-6);
                break;
              case mwm::pool_reduction::max:
                REQUIRE(got == ref.maximum);
                break;
              default:
                REQUIRE(got == static_cast<float>(static_cast<double>(ref.above) / count));
            }
          }
    }
  }
}

TEST_CASE("pooling tiles the heatmap exactly when the sizes divide", "[heatmap]") {
  // 224 px onto 7 cells: cell i averages rows [32 i, 32 i + 32) and nothing else.
  std::vector<float> heat(224 * 224, 0.0f);
  for (std::int64_t y = 0; y < 224; ++y)
    for (std::int64_t x = 0; x < 224; ++x)
      heat[static_cast<std::size_t>(y * 224 + x)] = static_cast<float>((y / 32) * 7 + x / 32);
  std::vector<float> scores(49);
  mwm::pool_heatmap(heat.data(), {1, 224, 224}, mwm::make_grid_2d(7, 7), {}, scores.data());
  for (std::size_t i = 0; i < 49; ++i) CHECK(scores[i] == static_cast<float>(i));
}

namespace {

struct nearest_fixture {
  std::int64_t in;
  std::vector<std::int64_t> sources;  // torch.nn.functional.interpolate(mode="nearest") indices
};

// Source indices PyTorch 2.x picks, read off interpolate(arange(in), size=out, mode="nearest").
// 62 -> 14 is a case where PyTorch's float scale gives 30 at cell 7 while exact arithmetic
// gives 31.
const nearest_fixture torch_nearest[] = {
    {224, {0, 32, 64, 96, 128, 160, 192}},
    {100, {0, 14, 28, 42, 57, 71, 85}},
    {5, {0, 0, 1, 2, 2, 3, 4}},
    {7, {0, 1, 2, 3, 4, 5, 6}},
    {13, {0, 1, 3, 5, 7, 9, 11}},
    {3, {0, 0, 1, 1, 2, 2}},
    {62, {0, 4, 8, 13, 17, 22, 26, 30, 35, 39, 44, 48, 53, 57}},
    {26, {0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24}},
    {150, {0, 8, 16, 25, 33, 41, 50, 58, 66, 75, 83, 91, 100, 108, 116, 124, 133, 141}},
};

}  // namespace

TEST_CASE("nearest pooling reproduces PyTorch's float index rule", "[heatmap]") {
  for (const auto& f : torch_nearest) {
    const auto out = static_cast<std::int64_t>(f.sources.size());
    INFO(f.in << " -> " << out);
    // Along the width: a heatmap row whose value is its column index.
    std::vector<float> row(static_cast<std::size_t>(f.in));
    for (std::int64_t x = 0; x < f.in; ++x)
      row[static_cast<std::size_t>(x)] = static_cast<float>(x);
    mwm::pool_options options;
    options.reduction = mwm::pool_reduction::nearest;
    std::vector<float> scores(static_cast<std::size_t>(out));
    mwm::pool_heatmap(row.data(), {1, 1, f.in}, mwm::make_grid_2d(1, out), options, scores.data());
    for (std::int64_t i = 0; i < out; ++i)
      CHECK(scores[static_cast<std::size_t>(i)] ==
            static_cast<float>(f.sources[static_cast<std::size_t>(i)]));
    // The same rule along the height and the depth.
    std::vector<float> column_scores(static_cast<std::size_t>(out));
    mwm::pool_heatmap(row.data(), {1, f.in, 1}, mwm::make_grid_2d(out, 1), options,
                      column_scores.data());
    CHECK(column_scores == scores);
    std::vector<float> depth_scores(static_cast<std::size_t>(out));
    mwm::pool_heatmap(row.data(), {f.in, 1, 1}, mwm::make_grid_3d(out, 1, 1), options,
                      depth_scores.data());
    CHECK(depth_scores == scores);
  }
}

TEST_CASE("nearest pooling picks one pixel per cell in 3D", "[heatmap]") {
  // A 5x9x100 volume onto 3x7x7: each axis uses its own torch rule (100 -> 7 as above,
  // 9 -> 7 gives 0 1 2 3 5 6 7, 5 -> 3 gives 0 1 3).
  const mwm::heatmap_shape shape{5, 9, 100};
  std::vector<float> heat(static_cast<std::size_t>(shape.num_pixels()));
  for (std::size_t i = 0; i < heat.size(); ++i) heat[i] = static_cast<float>(i);
  mwm::pool_options options;
  options.reduction = mwm::pool_reduction::nearest;
  const auto grid = mwm::make_grid_3d(3, 7, 7);
  std::vector<float> scores(static_cast<std::size_t>(grid.num_patches()));
  mwm::pool_heatmap(heat.data(), shape, grid, options, scores.data());
  const std::int64_t sd[] = {0, 1, 3};
  const std::int64_t sh[] = {0, 1, 2, 3, 5, 6, 7};
  const std::int64_t sw[] = {0, 14, 28, 42, 57, 71, 85};
  for (std::int64_t d = 0; d < 3; ++d)
    for (std::int64_t h = 0; h < 7; ++h)
      for (std::int64_t w = 0; w < 7; ++w)
        CHECK(scores[static_cast<std::size_t>(grid.index(d, h, w))] ==
              static_cast<float>((sd[d] * 9 + sh[h]) * 100 + sw[w]));
}

TEST_CASE("prompts combine by max or by weighted sum", "[heatmap]") {
  mwm_test::test_rng rng(12);
  mwm::pooling_request request;
  request.grid = mwm::make_grid_2d(4, 5);
  request.batch = 3;
  request.prompts = 3;
  request.shape = {1, 16, 25};
  const std::int64_t n = 20;
  const std::int64_t pixels = request.shape.num_pixels();
  const auto heat = mwm_test::random_scores(rng, 3 * 3 * pixels, false);
  // Each prompt pooled on its own, as the reference.
  std::vector<float> single(static_cast<std::size_t>(3 * 3 * n));
  for (std::int64_t bk = 0; bk < 9; ++bk)
    mwm::pool_heatmap(heat.data() + bk * pixels, request.shape, request.grid, {},
                      single.data() + bk * n);
  std::vector<float> scores(static_cast<std::size_t>(3 * n));
  SECTION("max") {
    request.combine = mwm::prompt_combine::max;
    mwm::heatmaps_to_scores(request, heat.data(), scores.data());
    for (std::int64_t b = 0; b < 3; ++b)
      for (std::int64_t i = 0; i < n; ++i) {
        float best = single[static_cast<std::size_t>((b * 3) * n + i)];
        for (std::int64_t k = 1; k < 3; ++k)
          best = std::max(best, single[static_cast<std::size_t>((b * 3 + k) * n + i)]);
        REQUIRE(scores[static_cast<std::size_t>(b * n + i)] == best);
      }
  }
  SECTION("weighted sum") {
    request.combine = mwm::prompt_combine::weighted_sum;
    request.prompt_weights = {0.5f, -0.25f, 2.0f};
    mwm::heatmaps_to_scores(request, heat.data(), scores.data());
    for (std::int64_t b = 0; b < 3; ++b)
      for (std::int64_t i = 0; i < n; ++i) {
        double sum = 0.0;
        for (std::int64_t k = 0; k < 3; ++k)
          sum += request.prompt_weights[static_cast<std::size_t>(k)] *
                 static_cast<double>(single[static_cast<std::size_t>((b * 3 + k) * n + i)]);
        REQUIRE(std::fabs(scores[static_cast<std::size_t>(b * n + i)] - sum) <= 1e-6);
      }
  }
}

TEST_CASE("nan_policy::zero pools non-finite pixels as zeros", "[heatmap]") {
  mwm_test::test_rng rng(6);
  const mwm::heatmap_shape shape{1, 20, 20};
  auto heat = mwm_test::random_scores(rng, 400, false);
  auto zeroed = heat;
  for (std::size_t i : {3u, 77u, 150u, 399u}) {
    heat[i] =
        i % 2 ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    zeroed[i] = 0.0f;
  }
  heat[200] = -std::numeric_limits<float>::infinity();
  zeroed[200] = 0.0f;
  for (auto reduction : {mwm::pool_reduction::mean, mwm::pool_reduction::max,
                         mwm::pool_reduction::fraction, mwm::pool_reduction::nearest}) {
    mwm::pool_options options;
    options.reduction = reduction;
    options.non_finite = mwm::nan_policy::zero;
    std::vector<float> got(16);
    std::vector<float> expected(16);
    mwm::pool_heatmap(heat.data(), shape, mwm::make_grid_2d(4, 4), options, got.data());
    mwm::pool_heatmap(zeroed.data(), shape, mwm::make_grid_2d(4, 4), options, expected.data());
    CHECK(got == expected);
  }
}

TEST_CASE("nearest pooling reads and validates only the pixels it samples", "[heatmap]") {
  const mwm::grid_shape grid = mwm::make_grid_2d(3, 3);
  const mwm::heatmap_shape shape{1, 7, 5};
  mwm::pool_options nearest;
  nearest.reduction = mwm::pool_reduction::nearest;
  std::vector<bool> sampled(35, false);
  for (std::int64_t h = 0; h < 3; ++h)
    for (std::int64_t w = 0; w < 3; ++w)
      sampled[static_cast<std::size_t>(mwm::steps::nearest_pixel(shape, grid, 0, h, w))] = true;
  REQUIRE(std::count(sampled.begin(), sampled.end(), true) == 9);
  const float nan_value = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> scores(9);
  for (std::size_t pixel = 0; pixel < 35; ++pixel) {
    std::vector<float> heat(35, 0.25f);
    heat[pixel] = nan_value;
    INFO("NaN at pixel " << pixel << (sampled[pixel] ? " (sampled)" : " (not sampled)"));
    if (sampled[pixel]) {
      CHECK(mwm::first_non_finite_pooled(heat.data(), 1, shape, grid, nearest) ==
            static_cast<std::int64_t>(pixel));
      CHECK_THROWS_AS(mwm::pool_heatmap(heat.data(), shape, grid, nearest, scores.data()),
                      mwm::error);
    } else {
      CHECK(mwm::first_non_finite_pooled(heat.data(), 1, shape, grid, nearest) == -1);
      mwm::pool_heatmap(heat.data(), shape, grid, nearest, scores.data());
      CHECK(std::all_of(scores.begin(), scores.end(), [](float s) { return s == 0.25f; }));
    }
    // The area reductions read every pixel, so they reject the NaN wherever it is.
    CHECK(mwm::first_non_finite_pooled(heat.data(), 1, shape, grid, {}) ==
          static_cast<std::int64_t>(pixel));
  }
}

TEST_CASE("batched nearest pooling names the first sampled non-finite pixel", "[heatmap]") {
  mwm::pooling_request request;
  request.grid = mwm::make_grid_2d(2, 2);
  request.batch = 3;
  request.shape = {1, 4, 4};
  request.options.reduction = mwm::pool_reduction::nearest;
  std::vector<float> heat(48, 0.5f);
  std::vector<float> scores(12);
  heat[16 + 1] = std::numeric_limits<float>::infinity();  // not sampled (row 0, column 1)
  REQUIRE_NOTHROW(mwm::heatmaps_to_scores(request, heat.data(), scores.data()));
  heat[32 + 10] = -std::numeric_limits<float>::infinity();  // sampled: row 2, column 2
  try {
    mwm::heatmaps_to_scores(request, heat.data(), scores.data());
    FAIL("no error for a sampled infinity");
  } catch (const mwm::error& e) {
    CHECK(std::string(e.what()).find("heatmaps[42] = -inf") != std::string::npos);
  }
}
