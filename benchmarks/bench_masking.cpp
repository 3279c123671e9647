// Mask generation speed of every policy at the sizes of docs/design.md section 5, against plain
// C++ references measured in the same run: MAE's random masking (argsort of uniform noise) and the
// MWM reference's per-region shuffles. Prints ns per sample and, at the end, the ratio of each
// mwm policy to its reference (medians when --benchmark_repetitions is given).
//
//   build/<dir>/benchmarks/bench_masking --benchmark_repetitions=5 \
//       --benchmark_report_aggregates_only=true
#include <mwm/masking.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct workload {
  std::string name;
  mwm::grid_shape grid;
  std::int64_t batch;
  std::int64_t coarse_factor;  // 0: the coarse policy does not fit this grid
};

const workload workloads[] = {
    {"2d_14x14_b256", mwm::make_grid_2d(14, 14), 256, 2},
    {"2d_7x7_b128", mwm::make_grid_2d(7, 7), 128, 0},
    {"3d_8x8x8_b8", mwm::make_grid_3d(8, 8, 8), 8, 2},
};

struct named_policy {
  std::string name;
  mwm::mask_policy policy;
};

std::vector<named_policy> policies(const workload& w) {
  std::vector<named_policy> out;
  mwm::mask_policy p;
  p.ratio = 0.75;
  out.push_back({"random", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::per_region;
  p.region_ratios = {0.4, 0.8};  // the MWM default preset (r_low, r_high)
  out.push_back({"per_region", p});
  p.kind = mwm::policy_kind::fixed_total;
  p.ratio = 0.6;
  out.push_back({"fixed_total", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::weighted;
  p.ratio = 0.6;
  out.push_back({"weighted", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::block;
  p.ratio = 0.4;
  out.push_back({"block", p});
  if (w.coarse_factor > 0) {
    p = mwm::mask_policy{};
    p.kind = mwm::policy_kind::coarse;
    p.ratio = 0.6;
    p.coarse_factor = w.coarse_factor;
    out.push_back({"coarse", p});
  }
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::loss_guided;
  p.ratio = 0.75;
  out.push_back({"loss_guided", p});
  p = mwm::mask_policy{};
  p.kind = mwm::policy_kind::attention_guided;
  p.ratio = 0.5;
  out.push_back({"attention_high", p});
  p.attention = mwm::attention_mode::hint;
  out.push_back({"attention_hint", p});
  return out;
}

// Per-sample inputs: a box of ROI (a quarter to half of the grid) and uniform scores.
struct inputs {
  std::vector<std::int32_t> regions;
  std::vector<float> scores;
};

inputs make_inputs(const workload& w) {
  const std::int64_t n = w.grid.num_patches();
  inputs in;
  in.regions.resize(static_cast<std::size_t>(w.batch * n));
  in.scores.resize(in.regions.size());
  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (auto& s : in.scores) s = unit(rng);
  for (std::int64_t b = 0; b < w.batch; ++b) {
    const std::int64_t h0 =
        static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(w.grid.height / 2 + 1));
    const std::int64_t w0 =
        static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(w.grid.width / 2 + 1));
    for (std::int64_t d = 0; d < w.grid.depth; ++d)
      for (std::int64_t h = 0; h < w.grid.height; ++h)
        for (std::int64_t x = 0; x < w.grid.width; ++x) {
          const bool roi =
              h >= h0 && h < h0 + w.grid.height / 2 && x >= w0 && x < w0 + (w.grid.width + 1) / 2;
          in.regions[static_cast<std::size_t>(b * n + w.grid.index(d, h, x))] = roi ? 1 : 0;
        }
  }
  return in;
}

// Destinations of every output, reused across iterations.
struct output_buffers {
  std::vector<std::uint8_t> mask;
  std::vector<std::int64_t> num_masked, ids_shuffle, ids_restore, ids_keep, ids_masked;
  std::vector<float> noise;
  mwm::batch_outputs view;

  output_buffers(const workload& w, const mwm::mask_policy& policy) {
    const auto n = static_cast<std::size_t>(w.grid.num_patches());
    const auto b = static_cast<std::size_t>(w.batch);
    const auto widths = mwm::output_widths(policy, w.grid);
    mask.resize(b * n);
    num_masked.resize(b);
    ids_shuffle.resize(b * n);
    ids_restore.resize(b * n);
    ids_keep.resize(b * static_cast<std::size_t>(widths.keep));
    ids_masked.resize(b * static_cast<std::size_t>(widths.masked));
    noise.resize(b * n);
    view.mask = mask.data();
    view.num_masked = num_masked.data();
    view.ids_shuffle = ids_shuffle.data();
    view.ids_restore = ids_restore.data();
    view.ids_keep = ids_keep.data();
    view.ids_masked = ids_masked.data();
    view.noise = noise.data();
  }
};

void set_per_sample_counter(benchmark::State& state, std::int64_t samples_per_iteration) {
  // Inverted rate of (samples * 1e-9) per second: nanoseconds per sample.
  state.counters["ns_per_sample"] = benchmark::Counter(
      static_cast<double>(samples_per_iteration) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void generate(benchmark::State& state, const workload& w, const mwm::mask_policy& policy,
              int threads) {
  const inputs in = make_inputs(w);
  output_buffers out(w, policy);
  mwm::mask_request request;
  request.grid = w.grid;
  request.batch = w.batch;
  request.policy = policy;
  request.seed = 7;
  request.regions = in.regions.data();
  request.scores = in.scores.data();
  request.threads = threads;
  for (auto _ : state) {
    mwm::generate_masks_into(request, out.view);
    benchmark::DoNotOptimize(out.mask.data());
    benchmark::ClobberMemory();
    ++request.offset;
  }
  set_per_sample_counter(state, w.batch);
}

// MAE random_masking in plain C++: uniform noise per patch, argsort, keep the first
// int(N * (1 - r)), write the mask, ids_keep and ids_restore.
void reference_mae_argsort(benchmark::State& state, const workload& w) {
  const std::int64_t n = w.grid.num_patches();
  const std::int64_t keep = mwm::keep_count(n, 0.75, mwm::keep_rounding::floor);
  std::vector<float> noise(static_cast<std::size_t>(n));
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(w.batch * n));
  std::vector<std::int64_t> ids_keep(static_cast<std::size_t>(w.batch * keep));
  std::vector<std::int64_t> ids_restore(static_cast<std::size_t>(w.batch * n));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (auto _ : state) {
    for (std::int64_t b = 0; b < w.batch; ++b) {
      for (auto& v : noise) v = unit(rng);
      std::iota(order.begin(), order.end(), std::int64_t(0));
      std::sort(order.begin(), order.end(),
                [&](std::int64_t a, std::int64_t c) { return noise[a] < noise[c]; });
      for (std::int64_t position = 0; position < n; ++position) {
        const std::int64_t patch = order[static_cast<std::size_t>(position)];
        ids_restore[static_cast<std::size_t>(b * n + patch)] = position;
        mask[static_cast<std::size_t>(b * n + patch)] = position >= keep ? 1 : 0;
        if (position < keep) ids_keep[static_cast<std::size_t>(b * keep + position)] = patch;
      }
    }
    benchmark::DoNotOptimize(mask.data());
    benchmark::ClobberMemory();
  }
  set_per_sample_counter(state, w.batch);
}

// The MWM reference's loop in plain C++: per sample and region, shuffle the region's patches
// (randperm) and mask all but the first int(n_r * (1 - r_region)).
void reference_mwm_shuffle(benchmark::State& state, const workload& w) {
  const inputs in = make_inputs(w);
  const std::int64_t n = w.grid.num_patches();
  const double ratios[2] = {0.4, 0.8};
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(w.batch * n));
  std::vector<std::int64_t> members;
  std::mt19937 rng(7);
  for (auto _ : state) {
    for (std::int64_t b = 0; b < w.batch; ++b) {
      for (int r = 0; r < 2; ++r) {
        members.clear();
        for (std::int64_t i = 0; i < n; ++i)
          if (in.regions[static_cast<std::size_t>(b * n + i)] == r) members.push_back(i);
        std::shuffle(members.begin(), members.end(), rng);
        const auto keep = mwm::keep_count(static_cast<std::int64_t>(members.size()), ratios[r],
                                          mwm::keep_rounding::floor);
        for (std::size_t k = 0; k < members.size(); ++k)
          mask[static_cast<std::size_t>(b * n + members[k])] =
              static_cast<std::int64_t>(k) >= keep ? 1 : 0;
      }
    }
    benchmark::DoNotOptimize(mask.data());
    benchmark::ClobberMemory();
  }
  set_per_sample_counter(state, w.batch);
}

// Collects the (median) time of every benchmark and prints mwm / reference ratios at the end.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      times_[run.run_name.function_name + run.run_name.args] = run.GetAdjustedRealTime();
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nspeed-up of mwm over the C++ reference (reference time / mwm time):\n");
    for (const auto& w : workloads) {
      const std::string mae = "reference/mae_argsort/" + w.name;
      const std::string mwm_ref = "reference/mwm_shuffle/" + w.name;
      for (const auto& entry : times_) {
        const std::string& name = entry.first;
        if (name.rfind("generate/" + w.name + "/", 0) != 0) continue;
        const bool per_region = name.find("/per_region/") != std::string::npos;
        const auto ref = times_.find(per_region ? mwm_ref : mae);
        if (ref == times_.end()) continue;
        std::printf("  %-48s vs %-28s %6.2fx\n", name.c_str(), ref->first.c_str(),
                    ref->second / entry.second);
      }
    }
  }

 private:
  std::map<std::string, double> times_;
};

}  // namespace

int main(int argc, char** argv) {
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  benchmark::AddCustomContext("mwm_hardware_threads", std::to_string(hardware));
  benchmark::AddCustomContext("mwm_thread_counts",
                              hardware > 1 ? "1, " + std::to_string(hardware) : "1");
  for (const auto& w : workloads) {
    for (const auto& p : policies(w)) {
      std::vector<int> thread_counts = {1};
      if (hardware > 1) thread_counts.push_back(hardware);
      for (int threads : thread_counts) {
        const std::string name =
            "generate/" + w.name + "/" + p.name + "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), generate, w, p.policy, threads)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
    }
    benchmark::RegisterBenchmark(("reference/mae_argsort/" + w.name).c_str(), reference_mae_argsort,
                                 w)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("reference/mwm_shuffle/" + w.name).c_str(), reference_mwm_shuffle,
                                 w)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
