// The row-streaming area mean against the per-cell one, bit for bit, on every vector variant
// this CPU has.
#include <mwm/masking.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "catch.hpp"
#include "core_test_support.hpp"

namespace {

std::vector<int> variants_here() {
  std::vector<int> bits{128};
#if defined(MWM_X86_DISPATCH)
  if (mwm::detail::supported_x86_vector_bits() >= 256) bits.push_back(256);
  if (mwm::detail::supported_x86_vector_bits() == 512) bits.push_back(512);
#endif
  return bits;
}

// Values that make the lane order matter (mixed magnitudes), signed zeros whole cells could sum
// to, and, when asked, NaN and infinities.
std::vector<float> random_heatmap(mwm_test::test_rng& rng, std::int64_t pixels, bool non_finite) {
  std::vector<float> heat(static_cast<std::size_t>(pixels));
  const auto style = mwm_test::uniform_int(rng, 0, 3);
  for (auto& v : heat) {
    const auto pick = mwm_test::uniform_int(rng, 0, 19);
    if (style == 0) {
      v = -0.0f;
    } else if (non_finite && pick == 0) {
      const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                                std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity()};
      v = specials[mwm_test::uniform_int(rng, 0, 2)];
    } else {
      const double scale = std::pow(10.0, static_cast<double>(mwm_test::uniform_int(rng, -8, 8)));
      v = static_cast<float>(mwm_test::uniform_real(rng, -1.0, 1.0) * scale);
    }
  }
  return heat;
}

template <bool ZeroNonFinite>
std::vector<float> per_cell_means(const std::vector<float>& heat, mwm::heatmap_shape shape,
                                  mwm::grid_shape grid) {
  mwm::pool_options options;
  options.reduction = mwm::pool_reduction::mean;
  std::vector<float> scores(static_cast<std::size_t>(grid.num_patches()));
  for (std::int64_t d = 0; d < grid.depth; ++d)
    for (std::int64_t h = 0; h < grid.height; ++h)
      for (std::int64_t w = 0; w < grid.width; ++w)
        scores[static_cast<std::size_t>(grid.index(d, h, w))] =
            mwm::detail::pool_cell_reading<ZeroNonFinite>(heat.data(), shape, grid, options, d, h,
                                                          w);
  return scores;
}

// Bit for bit, except that any NaN equals any NaN: which payload a sum of two NaNs keeps depends
// on the operand order the compiler picks for an addition, and a NaN score is an error anyway.
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("the row-streaming area mean has the per-cell mean's bits", "[heatmap][pooling]") {
  mwm_test::test_rng rng(61);
  std::vector<double> lanes;
  std::vector<mwm::detail::cell_columns> columns;
  std::vector<mwm::detail::source_range> bands;
  for (int trial = 0; trial < 400; ++trial) {
    const bool three_d = trial % 4 == 3;
    const mwm::grid_shape grid = mwm_test::random_grid(rng, three_d);
    // Widths that divide, that do not, below one lane group, and smaller than the grid (cells
    // then overlap and share pixels).
    mwm::heatmap_shape shape;
    shape.depth = three_d ? mwm_test::uniform_int(rng, 1, 20) : 1;
    shape.height = mwm_test::uniform_int(rng, 1, 40);
    shape.width = trial % 5 == 0 ? grid.width * mwm_test::uniform_int(rng, 1, 20)
                                 : mwm_test::uniform_int(rng, 1, 70);
    const bool non_finite = trial % 3 == 0;
    const auto heat = random_heatmap(rng, shape.num_pixels(), non_finite);
    const auto raw = per_cell_means<false>(heat, shape, grid);
    const auto zeroed = per_cell_means<true>(heat, shape, grid);
    for (const int bits : variants_here()) {
      CAPTURE(trial, bits, shape.depth, shape.height, shape.width, grid.depth, grid.height,
              grid.width);
      std::vector<float> got(raw.size(), 7.0f);
      mwm::detail::pool_mean_by_rows<false>(heat.data(), shape, grid, got.data(), lanes, columns,
                                            bands, bits);
      REQUIRE(same_bits(got, raw));
      mwm::detail::pool_mean_by_rows<true>(heat.data(), shape, grid, got.data(), lanes, columns,
                                           bands, bits);
      REQUIRE(same_bits(got, zeroed));
    }
  }
}
