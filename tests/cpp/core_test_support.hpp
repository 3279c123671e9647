// Helpers shared by the core masking tests: error-message checks, random test inputs drawn from
// a fixed-seed std::mt19937_64 (so every run sees the same cases), and the structural checks
// every mask batch must pass.
#pragma once

#include <mwm/masking.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"

namespace mwm_test {

// The message of the mwm::error thrown by `action`: "" when it throws nothing, a marker when it
// throws something else.
template <typename Action>
std::string mwm_error_message(Action&& action) {
  try {
    action();
  } catch (const mwm::error& e) {
    return e.what();
  } catch (...) {
    return "<an exception other than mwm::error>";
  }
  return "";
}

inline bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// Expects `expression` to throw mwm::error whose message contains `needle`.
#define MWM_REQUIRE_ERROR(expression, needle)                                                    \
  do {                                                                                           \
    const std::string mwm_message_ = ::mwm_test::mwm_error_message([&] { (void)(expression); }); \
    INFO("message: " << (mwm_message_.empty() ? "<no exception>" : mwm_message_)                 \
                     << "\nexpected to contain: " << (needle));                                  \
    REQUIRE(::mwm_test::contains(mwm_message_, (needle)));                                       \
  } while (false)

using test_rng = std::mt19937_64;

inline std::int64_t uniform_int(test_rng& rng, std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}

inline double uniform_real(test_rng& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

// A masking ratio: often a "round" decimal like 0.7 (where double rounding matters), sometimes
// 0 or 1, otherwise any value in [0, 1].
inline double random_ratio(test_rng& rng) {
  const auto pick = uniform_int(rng, 0, 9);
  if (pick == 0) return 0.0;
  if (pick == 1) return 1.0;
  if (pick < 6) return static_cast<double>(uniform_int(rng, 1, 19)) / 20.0;
  return uniform_real(rng, 0.0, 1.0);
}

inline mwm::grid_shape random_grid(test_rng& rng, bool three_d) {
  if (three_d) {
    return mwm::make_grid_3d(uniform_int(rng, 1, 6), uniform_int(rng, 1, 7),
                             uniform_int(rng, 1, 7));
  }
  return mwm::make_grid_2d(uniform_int(rng, 1, 16), uniform_int(rng, 1, 16));
}

// Region maps of several layouts: independent cells, one box of ROI, or all in one region (so
// other regions are empty).
inline std::vector<std::int32_t> random_regions(test_rng& rng, const mwm::grid_shape& grid,
                                                std::int64_t batch, int regions) {
  const std::int64_t n = grid.num_patches();
  std::vector<std::int32_t> out(static_cast<std::size_t>(batch * n));
  for (std::int64_t b = 0; b < batch; ++b) {
    std::int32_t* row = out.data() + b * n;
    const auto layout = uniform_int(rng, 0, 3);
    if (layout == 0) {
      std::fill(row, row + n, static_cast<std::int32_t>(uniform_int(rng, 0, regions - 1)));
    } else if (layout == 1) {
      const auto d0 = uniform_int(rng, 0, grid.depth - 1);
      const auto h0 = uniform_int(rng, 0, grid.height - 1);
      const auto w0 = uniform_int(rng, 0, grid.width - 1);
      const auto d1 = uniform_int(rng, d0, grid.depth - 1);
      const auto h1 = uniform_int(rng, h0, grid.height - 1);
      const auto w1 = uniform_int(rng, w0, grid.width - 1);
      const auto inside = static_cast<std::int32_t>(regions - 1);
      for (std::int64_t d = 0; d < grid.depth; ++d)
        for (std::int64_t h = 0; h < grid.height; ++h)
          for (std::int64_t w = 0; w < grid.width; ++w) {
            const bool in_box = d >= d0 && d <= d1 && h >= h0 && h <= h1 && w >= w0 && w <= w1;
            row[grid.index(d, h, w)] = in_box ? inside : 0;
          }
    } else {
      for (std::int64_t i = 0; i < n; ++i)
        row[i] = static_cast<std::int32_t>(uniform_int(rng, 0, regions - 1));
    }
  }
  return out;
}

inline std::vector<float> random_scores(test_rng& rng, std::int64_t count, bool with_ties) {
  std::vector<float> out(static_cast<std::size_t>(count));
  for (auto& v : out) {
    v = with_ties ? static_cast<float>(uniform_int(rng, 0, 4)) * 0.25f
                  : static_cast<float>(uniform_real(rng, 0.0, 1.0));
  }
  return out;
}

// Python's expressions for the visible count (see test_budget.cpp for the CPython table).
inline std::int64_t python_keep(std::int64_t n, double ratio, mwm::keep_rounding rounding) {
  const double nd = static_cast<double>(n);
  switch (rounding) {
    case mwm::keep_rounding::round:
      return static_cast<std::int64_t>(std::nearbyint(nd * (1.0 - ratio)));
    case mwm::keep_rounding::ceil_mask:
      return n - static_cast<std::int64_t>(std::ceil(nd * ratio));
    case mwm::keep_rounding::floor_mask:
      return n - static_cast<std::int64_t>(nd * ratio);
    default:
      return static_cast<std::int64_t>(nd * (1.0 - ratio));
  }
}

inline mwm::keep_rounding random_rounding(test_rng& rng) {
  const mwm::keep_rounding all[] = {mwm::keep_rounding::floor, mwm::keep_rounding::round,
                                    mwm::keep_rounding::ceil_mask, mwm::keep_rounding::floor_mask};
  return all[uniform_int(rng, 0, 3)];
}

// Patches ordered by score, highest first, ties by lower index (the contract, stated plainly).
inline std::vector<std::int64_t> ranked_by_score(const float* scores, std::int64_t n,
                                                 bool lowest_first) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t(0));
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    if (scores[a] != scores[b]) return lowest_first ? scores[a] < scores[b] : scores[a] > scores[b];
    return a < b;
  });
  return order;
}

struct generate_inputs {
  mwm::grid_shape grid;
  std::int64_t batch = 1;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  const std::vector<std::int32_t>* regions = nullptr;
  const std::vector<float>* scores = nullptr;
  int threads = 1;
};

// The inputs of one random trial: a random grid (3D when `three_d`), 1 to `max_batch` samples and
// the trial number as the seed.
inline generate_inputs random_trial_inputs(test_rng& rng, bool three_d, std::int64_t max_batch,
                                           int trial) {
  generate_inputs in;
  in.grid = random_grid(rng, three_d);
  in.batch = uniform_int(rng, 1, max_batch);
  in.seed = static_cast<std::uint64_t>(trial);
  return in;
}

inline mwm::mask_batch generate(const mwm::mask_policy& policy, const generate_inputs& in) {
  mwm::mask_request request;
  request.grid = in.grid;
  request.batch = in.batch;
  request.policy = policy;
  request.seed = in.seed;
  request.offset = in.offset;
  request.regions = in.regions ? in.regions->data() : nullptr;
  request.scores = in.scores ? in.scores->data() : nullptr;
  request.threads = in.threads;
  return mwm::generate_masks(request);
}

// A copy of `masks` whose every output holds a value no generator writes (mask 3, counts and ids
// -5, noise -1), so that comparing it after a write shows any output the writer left alone.
inline mwm::mask_batch poisoned_copy(const mwm::mask_batch& masks) {
  mwm::mask_batch poisoned = masks;
  std::fill(poisoned.mask.begin(), poisoned.mask.end(), 3);
  for (auto* v : {&poisoned.num_masked, &poisoned.ids_shuffle, &poisoned.ids_restore,
                  &poisoned.ids_keep, &poisoned.ids_masked})
    std::fill(v->begin(), v->end(), -5);
  std::fill(poisoned.noise.begin(), poisoned.noise.end(), -1.0f);
  return poisoned;
}

// Every output of `a` equals the same output of `b`.
inline void require_identical(const mwm::mask_batch& a, const mwm::mask_batch& b) {
  REQUIRE(a.mask == b.mask);
  REQUIRE(a.num_masked == b.num_masked);
  REQUIRE(a.ids_shuffle == b.ids_shuffle);
  REQUIRE(a.ids_restore == b.ids_restore);
  REQUIRE(a.ids_keep == b.ids_keep);
  REQUIRE(a.ids_masked == b.ids_masked);
  REQUIRE(a.noise == b.noise);
}

// One configuration of every policy kind for a grid whose axes are all even (coarse factor 2).
struct named_policy {
  std::string name;
  mwm::mask_policy policy;
};

inline std::vector<named_policy> every_policy() {
  std::vector<named_policy> out;
  mwm::mask_policy p;
  p.kind = mwm::policy_kind::random;
  p.ratio = 0.6;
  out.push_back({"random", p});
  p.order = mwm::visible_order::sorted;
  out.push_back({"random sorted", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::per_region;
  p.region_ratios = {0.4, 0.8, 0.65};
  out.push_back({"per_region", p});
  p.kind = mwm::policy_kind::fixed_total;
  p.ratio = 0.7;
  out.push_back({"fixed_total", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::weighted;
  p.ratio = 0.55;
  p.weight_floor = 0.25;
  out.push_back({"weighted", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::block;
  p.ratio = 0.4;
  p.block.min_patches = 4;
  out.push_back({"block", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::coarse;
  p.ratio = 0.6;
  p.coarse_factor = 2;
  p.rounding = mwm::keep_rounding::round;
  out.push_back({"coarse", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::loss_guided;
  p.ratio = 0.75;
  p.hard_share = 0.4;
  out.push_back({"loss_guided", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::attention_guided;
  p.ratio = 0.5;
  p.rounding = mwm::keep_rounding::floor_mask;
  out.push_back({"attention high", p});
  p.attention = mwm::attention_mode::low;
  out.push_back({"attention low", p});
  p.attention = mwm::attention_mode::hint;
  p.hint_pool_share = 0.2;
  p.hint_share = 0.1;
  out.push_back({"attention hint", p});
  return out;
}

// Patches of sample b that the mask marks as masked.
inline std::int64_t count_masked(const mwm::mask_batch& masks, std::int64_t b) {
  std::int64_t count = 0;
  for (std::int64_t i = 0; i < masks.num_patches(); ++i) count += masks.is_masked(b, i) ? 1 : 0;
  return count;
}

// Every output of every sample tells the same story: ids_shuffle is a permutation listing the
// visible patches first, ids_restore its inverse, ids_keep / ids_masked its two parts (padded
// with -1), num_masked the mask's count, and argsort(noise) (stable) gives ids_shuffle.
inline void require_consistent_outputs(const mwm::mask_batch& masks) {
  const std::int64_t n = masks.num_patches();
  const std::int64_t keep_width = masks.widths.keep;
  const std::int64_t masked_width = masks.widths.masked;
  for (std::int64_t b = 0; b < masks.batch; ++b) {
    INFO("sample " << b);
    const std::int64_t* shuffle = masks.ids_shuffle.data() + b * n;
    const std::int64_t* restore = masks.ids_restore.data() + b * n;
    const std::int64_t masked = masks.num_masked[static_cast<std::size_t>(b)];
    const std::int64_t visible = n - masked;
    REQUIRE(count_masked(masks, b) == masked);
    std::vector<int> seen(static_cast<std::size_t>(n), 0);
    for (std::int64_t position = 0; position < n; ++position) {
      const std::int64_t patch = shuffle[position];
      REQUIRE(patch >= 0);
      REQUIRE(patch < n);
      ++seen[static_cast<std::size_t>(patch)];
      REQUIRE(restore[patch] == position);
      REQUIRE(masks.is_masked(b, patch) == (position >= visible));
    }
    REQUIRE(std::count(seen.begin(), seen.end(), 1) == n);
    REQUIRE(visible <= keep_width);
    REQUIRE(masked <= masked_width);
    const std::int64_t* keep = masks.ids_keep.data() + b * keep_width;
    const std::int64_t* hidden = masks.ids_masked.data() + b * masked_width;
    for (std::int64_t i = 0; i < keep_width; ++i)
      REQUIRE(keep[i] == (i < visible ? shuffle[i] : -1));
    for (std::int64_t i = 0; i < masked_width; ++i)
      REQUIRE(hidden[i] == (i < masked ? shuffle[visible + i] : -1));
    if (!masks.noise.empty()) {
      const float* noise = masks.noise.data() + b * n;
      std::vector<std::int64_t> by_noise(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) by_noise[static_cast<std::size_t>(i)] = i;
      std::stable_sort(by_noise.begin(), by_noise.end(),
                       [noise](std::int64_t a, std::int64_t c) { return noise[a] < noise[c]; });
      REQUIRE(std::equal(by_noise.begin(), by_noise.end(), shuffle));
    }
  }
}

// An independent statement of the budget rule: water-filling that caps one region at a time
// (the one with the largest weight per patch), then largest remainder by an explicit sort.
// Products of counts and Q16 weights fit in 64 bits for counts below 2^20.
inline std::vector<std::int64_t> reference_share(const std::vector<std::int64_t>& counts,
                                                 const std::vector<std::int64_t>& ratio_q16,
                                                 std::int64_t masked) {
  const std::size_t regions = counts.size();
  const std::int64_t total = std::accumulate(counts.begin(), counts.end(), std::int64_t(0));
  masked = std::min(masked, total);
  std::vector<bool> capped(regions);
  for (std::size_t r = 0; r < regions; ++r) capped[r] = counts[r] == 0;
  std::vector<std::int64_t> weight(regions, 0);
  std::int64_t left = 0;
  std::int64_t weight_sum = 0;
  for (;;) {
    left = masked;
    weight_sum = 0;
    bool any_positive = false;
    for (std::size_t r = 0; r < regions; ++r) {
      if (capped[r])
        left -= counts[r];
      else
        any_positive = any_positive || ratio_q16[r] > 0;
    }
    for (std::size_t r = 0; r < regions; ++r) {
      weight[r] = capped[r] ? 0 : (any_positive ? ratio_q16[r] * counts[r] : counts[r]);
      weight_sum += weight[r];
    }
    if (weight_sum == 0) break;
    std::size_t fullest = regions;
    for (std::size_t r = 0; r < regions; ++r) {
      if (capped[r]) continue;
      if (fullest == regions || static_cast<std::int64_t>(weight[r]) * counts[fullest] >
                                    static_cast<std::int64_t>(weight[fullest]) * counts[r]) {
        fullest = r;
      }
    }
    if (static_cast<std::int64_t>(left) * weight[fullest] <
        static_cast<std::int64_t>(counts[fullest]) * weight_sum) {
      break;
    }
    capped[fullest] = true;
  }
  std::vector<std::int64_t> out(regions, 0);
  std::vector<std::int64_t> remainder(regions, -1);
  std::int64_t assigned = 0;
  for (std::size_t r = 0; r < regions; ++r) {
    if (capped[r]) {
      out[r] = counts[r];
    } else if (weight_sum > 0) {
      out[r] = left * weight[r] / weight_sum;
      remainder[r] = left * weight[r] % weight_sum;
    }
    assigned += out[r];
  }
  std::vector<std::size_t> by_remainder(regions);
  std::iota(by_remainder.begin(), by_remainder.end(), std::size_t(0));
  std::stable_sort(by_remainder.begin(), by_remainder.end(),
                   [&](std::size_t a, std::size_t b) { return remainder[a] > remainder[b]; });
  for (std::size_t i = 0; assigned < masked && i < regions; ++i) {
    const std::size_t r = by_remainder[i];
    if (remainder[r] < 0) break;
    ++out[r];
    ++assigned;
  }
  return out;
}

// scipy.stats.chi2.isf(1e-4, df): the loose critical values of the uniformity tests.
inline double chi_square_critical_1e4(int df) {
  switch (df) {
    case 1:
      return 15.136705226623397;
    case 2:
      return 18.420680743952364;
    case 3:
      return 21.10751346616021;
    case 5:
      return 25.744831959055876;
    case 7:
      return 29.877503909224902;
    case 9:
      return 33.719948438964636;
    case 11:
      return 37.366986437997;
    case 13:
      return 40.87065501383601;
    case 15:
      return 44.26322494417498;
    case 19:
      return 50.795489665621886;
    case 23:
      return 57.07464313855529;
    case 31:
      return 69.10569228986719;
    case 35:
      return 74.92622189370485;
    case 47:
      return 91.84118288890704;
    case 63:
      return 113.50499285105357;
    default:
      FAIL("no chi-square critical value tabulated for df = " << df);
      return 0.0;
  }
}

// Pearson's statistic of observed counts against expected counts.
inline double chi_square(const std::vector<double>& observed, const std::vector<double>& expected) {
  double statistic = 0.0;
  for (std::size_t i = 0; i < observed.size(); ++i) {
    const double diff = observed[i] - expected[i];
    statistic += diff * diff / expected[i];
  }
  return statistic;
}

}  // namespace mwm_test
