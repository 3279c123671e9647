// Prints the masks of several policies for one synthetic heatmap as ASCII grids, with how many
// patches of each region every policy masks.
//
//   build/<dir>/examples/print_masks [seed]
#include <mwm/masking.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// A 224x224 "saliency map": a large blob (the lesion a prompt names) and a faint second one.
std::vector<float> synthetic_heatmap(std::int64_t size) {
  std::vector<float> heat(static_cast<std::size_t>(size * size));
  for (std::int64_t y = 0; y < size; ++y)
    for (std::int64_t x = 0; x < size; ++x) {
      const double a = std::hypot(x - 0.62 * size, y - 0.38 * size) / (0.12 * size);
      const double b = std::hypot(x - 0.25 * size, y - 0.75 * size) / (0.07 * size);
      heat[static_cast<std::size_t>(y * size + x)] =
          static_cast<float>(std::exp(-a * a) + 0.45 * std::exp(-b * b));
    }
  return heat;
}

void print_side_by_side(const mwm::grid_shape& grid, const std::vector<std::int32_t>& regions,
                        const mwm::mask_batch& masks) {
  std::printf("  regions (R = ROI)            mask (# = masked)\n");
  for (std::int64_t h = 0; h < grid.height; ++h) {
    std::string left = "  ";
    std::string right = "   ";
    for (std::int64_t w = 0; w < grid.width; ++w) {
      const std::int64_t patch = grid.index(0, h, w);
      left += regions[static_cast<std::size_t>(patch)] ? "R " : ". ";
      right += masks.is_masked(0, patch) ? "# " : ". ";
    }
    std::printf("%s%s\n", left.c_str(), right.c_str());
  }
}

void print_counts(const mwm::grid_shape& grid, const std::vector<std::int32_t>& regions,
                  const mwm::mask_batch& masks) {
  std::int64_t size[2] = {0, 0};
  std::int64_t masked[2] = {0, 0};
  for (std::int64_t patch = 0; patch < grid.num_patches(); ++patch) {
    const int r = regions[static_cast<std::size_t>(patch)];
    ++size[r];
    masked[r] += masks.is_masked(0, patch) ? 1 : 0;
  }
  std::printf(
      "  background: %lld of %lld masked   ROI: %lld of %lld masked   total: %lld of %lld\n\n",
      static_cast<long long>(masked[0]), static_cast<long long>(size[0]),
      static_cast<long long>(masked[1]), static_cast<long long>(size[1]),
      static_cast<long long>(masks.num_masked[0]), static_cast<long long>(grid.num_patches()));
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 0;
  const mwm::grid_shape grid = mwm::make_grid_2d(14, 14);  // ViT-B/16 at 224 px

  // Heatmap -> one score per patch (mean over each 16x16 cell) -> ROI where score > 0.3.
  mwm::pooling_request pooling;
  pooling.grid = grid;
  pooling.batch = 1;
  pooling.shape = {1, 224, 224};
  const std::vector<float> heat = synthetic_heatmap(224);
  std::vector<float> scores(static_cast<std::size_t>(grid.num_patches()));
  mwm::heatmaps_to_scores(pooling, heat.data(), scores.data());
  std::vector<std::int32_t> regions(scores.size());
  mwm::regions_by_thresholds(scores.data(), 1, grid.num_patches(), {0.3f}, regions.data());

  struct example {
    const char* title;
    mwm::mask_policy policy;
  };
  std::vector<example> examples;
  mwm::mask_policy p;
  p.kind = mwm::policy_kind::random;
  p.ratio = 0.75;
  examples.push_back({"random 0.75 (MAE)", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::per_region;
  p.region_ratios = {0.4, 0.8};
  examples.push_back({"per_region background 0.4, ROI 0.8 (Mask What Matters)", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::fixed_total;
  p.ratio = 0.6;
  p.region_ratios = {0.4, 0.8};
  examples.push_back({"fixed_total 0.6, shared 0.4 : 0.8 (same total in every image)", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::block;
  p.ratio = 0.4;
  examples.push_back({"block 0.4 (BEiT v2)", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::attention_guided;
  p.attention = mwm::attention_mode::hint;
  p.ratio = 0.5;
  examples.push_back({"attention_guided hint 0.5 (AttMask: top scores masked, a few revealed)", p});

  for (const auto& e : examples) {
    mwm::mask_request request;
    request.grid = grid;
    request.batch = 1;
    request.policy = e.policy;
    request.seed = seed;
    request.regions = regions.data();
    request.scores = scores.data();
    const mwm::mask_batch masks = mwm::generate_masks(request);
    std::printf("%s\n", e.title);
    print_side_by_side(grid, regions, masks);
    print_counts(grid, regions, masks);
  }
  return 0;
}
