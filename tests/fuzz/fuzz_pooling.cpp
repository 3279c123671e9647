// Fuzzes mwm::heatmaps_to_scores: heatmap and grid shapes (2D and 3D, heatmaps smaller or larger
// than the grid), reductions, prompt combination and values including NaN and infinities.
// Invalid requests must throw mwm::error; valid ones must give scores inside the range the
// reduction allows.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fuzz_support.hpp"
#include "mwm/masking.hpp"

namespace {

constexpr mwm::pool_reduction reductions[] = {mwm::pool_reduction::mean, mwm::pool_reduction::max,
                                              mwm::pool_reduction::fraction,
                                              mwm::pool_reduction::nearest};

float fuzzed_value(FuzzedDataProvider& data) {
  switch (data.ConsumeIntegralInRange<int>(0, 31)) {
    case 0:
      return std::numeric_limits<float>::quiet_NaN();
    case 1:
      return std::numeric_limits<float>::infinity();
    case 2:
      return -std::numeric_limits<float>::infinity();
    case 3:
      return data.ConsumeFloatingPoint<float>();
    default:
      return static_cast<float>(data.ConsumeProbability<double>());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  FuzzedDataProvider data(bytes, size);
  const bool volume = data.ConsumeBool();
  mwm::pooling_request request;
  const std::int64_t gd = volume ? data.ConsumeIntegralInRange<std::int64_t>(1, 6) : 1;
  const std::int64_t gh = data.ConsumeIntegralInRange<std::int64_t>(1, 16);
  const std::int64_t gw = data.ConsumeIntegralInRange<std::int64_t>(1, 16);
  request.grid = volume ? mwm::make_grid_3d(gd, gh, gw) : mwm::make_grid_2d(gh, gw);
  request.batch = data.ConsumeIntegralInRange<std::int64_t>(0, 3);
  request.prompts = data.ConsumeIntegralInRange<std::int64_t>(0, 3);
  request.shape.depth = volume ? data.ConsumeIntegralInRange<std::int64_t>(0, 12) : 1;
  request.shape.height = data.ConsumeIntegralInRange<std::int64_t>(0, 40);
  request.shape.width = data.ConsumeIntegralInRange<std::int64_t>(0, 40);
  request.options.reduction = data.PickValueInArray(reductions);
  request.options.threshold = fuzzed_value(data);
  request.options.non_finite = data.ConsumeBool() ? mwm::nan_policy::zero : mwm::nan_policy::error;
  request.combine =
      data.ConsumeBool() ? mwm::prompt_combine::weighted_sum : mwm::prompt_combine::max;
  const int weight_count = data.ConsumeIntegralInRange<int>(0, 3);
  for (int k = 0; k < weight_count; ++k) request.prompt_weights.push_back(fuzzed_value(data));
  request.threads = data.ConsumeIntegralInRange<int>(1, 2);

  const std::int64_t n = request.grid.num_patches();
  const std::int64_t pixels =
      std::max<std::int64_t>(request.batch * request.prompts * request.shape.num_pixels(), 0);
  std::vector<float> heatmaps(static_cast<std::size_t>(pixels));
  for (auto& v : heatmaps) v = fuzzed_value(data);
  std::vector<float> scores(static_cast<std::size_t>(std::max<std::int64_t>(request.batch, 0) * n),
                            std::numeric_limits<float>::quiet_NaN());
  try {
    mwm::heatmaps_to_scores(request, heatmaps.data(), scores.data());
  } catch (const mwm::error&) {
    return 0;  // rejected with a named argument: the contract for invalid input
  }

  // Non-finite inputs were either rejected or count as zero.
  float low = std::numeric_limits<float>::infinity();
  float high = -std::numeric_limits<float>::infinity();
  for (const float v : heatmaps) {
    const float counted = std::isfinite(v) ? v : 0.0f;
    low = std::min(low, counted);
    high = std::max(high, counted);
  }
  for (const float s : scores) {
    // A weighted sum of huge finite values may overflow; only max keeps the bounds.
    if (request.combine == mwm::prompt_combine::weighted_sum) continue;
    MWM_FUZZ_CHECK(!std::isnan(s));
    if (request.options.reduction == mwm::pool_reduction::fraction) {
      MWM_FUZZ_CHECK(s >= 0.0f && s <= 1.0f);
    } else {
      MWM_FUZZ_CHECK(s >= low && s <= high);
    }
  }

  // A heatmap at the grid's own resolution pools to itself under every reduction but fraction.
  const bool identity = request.shape.depth == gd && request.shape.height == gh &&
                        request.shape.width == gw && request.prompts == 1 &&
                        request.options.reduction != mwm::pool_reduction::fraction &&
                        request.combine == mwm::prompt_combine::max;
  if (identity) {
    for (std::size_t i = 0; i < scores.size(); ++i) {
      const float v = heatmaps[i];
      MWM_FUZZ_CHECK(scores[i] == (std::isfinite(v) ? v : 0.0f));
    }
  }
  return 0;
}
