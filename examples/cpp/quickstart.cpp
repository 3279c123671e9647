// Heatmaps -> patch scores -> regions -> Mask What Matters masks, with the core C++ API.
#include <mwm/masking.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  // 224x224 images in 16x16 patches: a 14x14 grid, N = 196.
  const mwm::patch_geometry geometry = mwm::make_geometry_2d(3, 224, 224, 16, 16);
  const mwm::grid_shape grid = geometry.grid;
  const std::int64_t batch = 2;
  const std::int64_t n = grid.num_patches();

  // One text-grounded heatmap per image, at any resolution (56x56 here): sample 0 shows a
  // box-shaped finding, sample 1 nothing.
  std::vector<float> heatmaps(static_cast<std::size_t>(batch * 56 * 56), 0.0f);
  for (int y = 20; y < 36; ++y)
    for (int x = 24; x < 44; ++x) heatmaps[static_cast<std::size_t>(y * 56 + x)] = 1.0f;

  // Heatmaps (B, 56, 56) -> one score per patch (B, N), the mean over each patch's area.
  mwm::pooling_request pooling;
  pooling.grid = grid;
  pooling.batch = batch;
  pooling.shape = {1, 56, 56};
  std::vector<float> scores(static_cast<std::size_t>(batch * n));
  mwm::heatmaps_to_scores(pooling, heatmaps.data(), scores.data());

  // Scores -> regions: 1 (ROI) where the score exceeds 0.3, else 0 (background).
  std::vector<std::int32_t> regions(scores.size());
  mwm::regions_by_thresholds(scores.data(), batch, n, {0.3f}, regions.data());

  // Mask 80% of the ROI and 40% of the background, chosen uniformly within each region.
  mwm::mask_request request;
  request.grid = grid;
  request.batch = batch;
  request.policy.kind = mwm::policy_kind::per_region;
  request.policy.region_ratios = {0.4, 0.8};  // background, ROI
  request.seed = 2024;
  request.offset = 0;  // global index of sample 0: step * global batch + rank * local batch
  request.regions = regions.data();
  const mwm::mask_batch masks = mwm::generate_masks(request);

  for (std::int64_t b = 0; b < batch; ++b) {
    std::int64_t roi = 0;
    std::int64_t roi_masked = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const bool in_roi = regions[static_cast<std::size_t>(b * n + i)] == 1;
      roi += in_roi ? 1 : 0;
      roi_masked += in_roi && masks.is_masked(b, i) ? 1 : 0;
    }
    // ids_keep rows hold the visible patches first, padded with -1 (totals vary per image).
    const std::int64_t first_visible =
        masks.ids_keep[static_cast<std::size_t>(b * masks.widths.keep)];
    std::printf("image %lld: %lld of %lld patches masked (ROI: %lld of %lld), first visible %lld\n",
                static_cast<long long>(b), static_cast<long long>(masks.num_masked[b]),
                static_cast<long long>(n), static_cast<long long>(roi_masked),
                static_cast<long long>(roi), static_cast<long long>(first_visible));
  }
  return 0;
}
