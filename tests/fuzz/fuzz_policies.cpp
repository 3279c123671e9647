// Fuzzes mwm::generate_masks over grid, batch, policy kind, ratios, rounding, regions and scores.
// Invalid requests must be rejected with mwm::error; valid ones must produce exact counts and
// consistent permutations in every output.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "fuzz_support.hpp"
#include "mwm/masking.hpp"

namespace {

constexpr mwm::policy_kind kinds[] = {
    mwm::policy_kind::random,      mwm::policy_kind::per_region,      mwm::policy_kind::fixed_total,
    mwm::policy_kind::weighted,    mwm::policy_kind::block,           mwm::policy_kind::coarse,
    mwm::policy_kind::loss_guided, mwm::policy_kind::attention_guided};
constexpr mwm::keep_rounding roundings[] = {mwm::keep_rounding::floor, mwm::keep_rounding::round,
                                            mwm::keep_rounding::ceil_mask,
                                            mwm::keep_rounding::floor_mask};
constexpr mwm::attention_mode attention_modes[] = {
    mwm::attention_mode::high, mwm::attention_mode::low, mwm::attention_mode::hint};

// Mostly in [0, 1], sometimes just outside or non-finite, so that validation is exercised too.
double fuzzed_share(FuzzedDataProvider& data) {
  switch (data.ConsumeIntegralInRange<int>(0, 15)) {
    case 0:
      return -0.25;
    case 1:
      return 1.0;
    case 2:
      return 1.5;
    case 3:
      return std::numeric_limits<double>::quiet_NaN();
    default:
      return data.ConsumeProbability<double>();
  }
}

mwm::grid_shape fuzzed_grid(FuzzedDataProvider& data) {
  const bool volume = data.ConsumeBool();
  const std::int64_t depth = volume ? data.ConsumeIntegralInRange<std::int64_t>(0, 8) : 1;
  const std::int64_t height = data.ConsumeIntegralInRange<std::int64_t>(0, 24);
  const std::int64_t width = data.ConsumeIntegralInRange<std::int64_t>(0, 24);
  return mwm::grid_shape{volume ? 3 : 2, depth, height, width};
}

void check_sample(const mwm::mask_batch& out, const mwm::mask_request& request, std::int64_t b) {
  const std::int64_t n = out.num_patches();
  const std::int64_t masked = out.num_masked[b];
  MWM_FUZZ_CHECK(masked >= 0 && masked <= n);
  const std::int64_t visible = n - masked;
  if (mwm::has_fixed_total(request.policy.kind)) MWM_FUZZ_CHECK(masked == out.widths.masked);
  if (request.policy.kind == mwm::policy_kind::random) {
    MWM_FUZZ_CHECK(visible == mwm::keep_count(n, request.policy.ratio, request.policy.rounding));
  }

  const std::int64_t* shuffle = out.ids_shuffle.data() + b * n;
  const std::int64_t* restore = out.ids_restore.data() + b * n;
  std::vector<char> seen(static_cast<std::size_t>(n), 0);
  std::int64_t mask_total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t patch = shuffle[i];
    MWM_FUZZ_CHECK(patch >= 0 && patch < n);
    MWM_FUZZ_CHECK(!seen[static_cast<std::size_t>(patch)]);
    seen[static_cast<std::size_t>(patch)] = 1;
    MWM_FUZZ_CHECK(restore[patch] == i);
    // The first `visible` entries of ids_shuffle are the kept patches (mask 0).
    MWM_FUZZ_CHECK(out.is_masked(b, patch) == (i >= visible));
    mask_total += out.is_masked(b, i) ? 1 : 0;
  }
  MWM_FUZZ_CHECK(mask_total == masked);

  const std::int64_t* keep = out.ids_keep.data() + b * out.widths.keep;
  for (std::int64_t i = 0; i < out.widths.keep; ++i) {
    if (i < visible) {
      MWM_FUZZ_CHECK(keep[i] >= 0 && keep[i] < n && !out.is_masked(b, keep[i]));
    } else {
      MWM_FUZZ_CHECK(keep[i] == -1);
    }
  }
  const std::int64_t* hidden = out.ids_masked.data() + b * out.widths.masked;
  for (std::int64_t i = 0; i < out.widths.masked; ++i) {
    if (i < masked) {
      MWM_FUZZ_CHECK(hidden[i] >= 0 && hidden[i] < n && out.is_masked(b, hidden[i]));
    } else {
      MWM_FUZZ_CHECK(hidden[i] == -1);
    }
  }
  if (!out.noise.empty()) {
    // A stable ascending sort of the noise reproduces ids_shuffle.
    const float* noise = out.noise.data() + b * n;
    for (std::int64_t i = 1; i < n; ++i) {
      const float before = noise[shuffle[i - 1]];
      const float after = noise[shuffle[i]];
      MWM_FUZZ_CHECK(before < after || (before == after && shuffle[i - 1] < shuffle[i]));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  FuzzedDataProvider data(bytes, size);
  mwm::mask_request request;
  request.grid = fuzzed_grid(data);
  request.batch = data.ConsumeIntegralInRange<std::int64_t>(0, 4);
  request.seed = data.ConsumeIntegral<std::uint64_t>();
  request.offset = data.ConsumeIntegral<std::uint32_t>();
  request.threads = data.ConsumeIntegralInRange<int>(1, 2);
  request.non_finite = data.ConsumeBool() ? mwm::nan_policy::zero : mwm::nan_policy::error;

  mwm::mask_policy& policy = request.policy;
  policy.kind = data.PickValueInArray(kinds);
  policy.rounding = data.PickValueInArray(roundings);
  policy.order = data.ConsumeBool() ? mwm::visible_order::sorted : mwm::visible_order::random;
  policy.ratio = fuzzed_share(data);
  const int region_count = data.ConsumeIntegralInRange<int>(0, 5);
  for (int r = 0; r < region_count; ++r) policy.region_ratios.push_back(fuzzed_share(data));
  policy.coarse_factor = data.ConsumeIntegralInRange<std::int64_t>(0, 5);
  policy.hard_share = fuzzed_share(data);
  policy.attention = data.PickValueInArray(attention_modes);
  policy.hint_pool_share = fuzzed_share(data);
  policy.hint_share = fuzzed_share(data);
  policy.weight_floor = fuzzed_share(data);
  policy.block.min_patches = data.ConsumeIntegralInRange<std::int64_t>(0, 40);
  policy.block.max_patches = data.ConsumeIntegralInRange<std::int64_t>(0, 80);
  policy.block.min_aspect = 0.1 + 3.0 * data.ConsumeProbability<double>();
  policy.block.max_aspect = 0.1 + 10.0 * data.ConsumeProbability<double>();

  const std::int64_t n = std::max<std::int64_t>(request.grid.num_patches(), 0);
  const auto cells = static_cast<std::size_t>(std::max<std::int64_t>(request.batch, 0) * n);
  // Usually valid region ids; sometimes from -1 to one past the configured regions, so that
  // validation is reached without making every region request invalid.
  const bool wild_regions = region_count == 0 || data.ConsumeIntegralInRange<int>(0, 7) == 0;
  const std::int32_t lowest = wild_regions ? -1 : 0;
  const std::int32_t highest = wild_regions ? region_count : region_count - 1;
  std::vector<std::int32_t> regions(cells);
  for (auto& r : regions) r = data.ConsumeIntegralInRange<std::int32_t>(lowest, highest);
  std::vector<float> scores(cells);
  for (auto& s : scores) {
    s = data.ConsumeBool() ? data.ConsumeFloatingPoint<float>()
                           : static_cast<float>(data.ConsumeProbability<double>());
  }
  if (data.ConsumeIntegralInRange<int>(0, 7) != 0) request.regions = regions.data();
  if (data.ConsumeIntegralInRange<int>(0, 7) != 0) request.scores = scores.data();

  mwm::mask_batch out;
  try {
    out = mwm::generate_masks(request);
  } catch (const mwm::error&) {
    return 0;  // rejected with a named argument: the contract for invalid input
  }
  for (std::int64_t b = 0; b < request.batch; ++b) check_sample(out, request, b);

  // The same request, generated again, gives the same masks (keys are the sample index only).
  request.threads = 3 - request.threads;
  const mwm::mask_batch again = mwm::generate_masks(request);
  MWM_FUZZ_CHECK(again.ids_shuffle == out.ids_shuffle);
  MWM_FUZZ_CHECK(again.mask == out.mask);
  return 0;
}
