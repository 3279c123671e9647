// A driver for profilers: generate_masks_into (every output written) on one thread, `repeats`
// times, for one policy and size, printing ns per patch and per call (fastest and median call).
// Small and free of benchmark-library code, so `valgrind --tool=callgrind` and `perf stat` count
// mwm alone:
//
//   g++ -O3 -std=c++17 -Iinclude benchmarks/profile/profile_masks.cpp -o build/profile_masks
//   build/profile_masks per_region 256 14 14 200          # policy batch grid... repeats
//   valgrind --tool=callgrind --callgrind-out-file=build/masks.cg build/profile_masks  [args]
//   callgrind_annotate build/masks.cg | head -30
//   perf stat -e instructions,cycles,branch-misses build/profile_masks random 256 14 14 500
//
// (perf's hardware counters need a machine that exposes them; in a VM that does not, perf stat
// still counts page-faults and task-clock.) valgrind emulates no AVX-512, so under callgrind the
// key loop and the sort take their AVX2 / portable paths: its counts are of those paths, and
// this driver's ns per patch is the measure of the AVX-512 ones.
//
// benchmarks/profile/callgrind_masks.sh runs the callgrind counts of docs/speed.md.
#include <mwm/masking.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s random|per_region BATCH H W [D] REPEATS\n", argv[0]);
    return 2;
  }
  const std::string policy = argv[1];
  const std::int64_t batch = std::atoll(argv[2]);
  const bool three_d = argc >= 7;
  const std::int64_t a = std::atoll(argv[3]);
  const std::int64_t b = std::atoll(argv[4]);
  const std::int64_t c = three_d ? std::atoll(argv[5]) : 0;
  const int repeats = std::atoi(argv[three_d ? 6 : 5]);
  mwm::mask_request request;
  request.grid = three_d ? mwm::make_grid_3d(a, b, c) : mwm::make_grid_2d(a, b);
  request.batch = batch;
  request.threads = 1;
  const std::int64_t n = request.grid.num_patches();
  std::vector<std::int32_t> regions(static_cast<std::size_t>(batch * n));
  for (std::size_t i = 0; i < regions.size(); ++i) regions[i] = (i * 2654435761u >> 7) % 3 == 0;
  if (policy == "per_region") {
    request.policy.kind = mwm::policy_kind::per_region;
    request.policy.region_ratios = {0.4, 0.8};
    request.regions = regions.data();
  } else {
    request.policy.kind = mwm::policy_kind::random;
    request.policy.ratio = 0.75;
  }
  const auto widths = mwm::output_widths(request.policy, request.grid);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(batch * n));
  std::vector<std::int64_t> num_masked(static_cast<std::size_t>(batch));
  std::vector<std::int64_t> shuffle(mask.size()), restore(mask.size());
  std::vector<std::int64_t> keep(static_cast<std::size_t>(batch * widths.keep));
  std::vector<std::int64_t> masked(static_cast<std::size_t>(batch * widths.masked));
  std::vector<float> noise(mask.size());
  mwm::batch_outputs out{mask.data(), num_masked.data(), shuffle.data(), restore.data(),
                         keep.data(), masked.data(),     noise.data()};
  std::int64_t checksum = 0;
  // Each call timed alone: the fastest one is what a busy machine disturbs least.
  std::vector<double> call_seconds(static_cast<std::size_t>(repeats));
  for (int r = 0; r < repeats; ++r) {
    request.offset = static_cast<std::uint64_t>(r) * static_cast<std::uint64_t>(batch);
    const auto start = std::chrono::steady_clock::now();
    mwm::generate_masks_into(request, out);
    call_seconds[static_cast<std::size_t>(r)] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    checksum += num_masked[0] + shuffle[static_cast<std::size_t>(n - 1)];
  }
  std::sort(call_seconds.begin(), call_seconds.end());
  const double patches = static_cast<double>(batch * n);
  const double fastest = call_seconds.front();
  const double median = call_seconds[call_seconds.size() / 2];
  std::printf(
      "%s B=%lld N=%lld: %.2f ns per patch fastest, %.2f median (%.2f / %.2f us per call)"
      " (checksum %lld)\n",
      policy.c_str(), static_cast<long long>(batch), static_cast<long long>(n),
      fastest * 1e9 / patches, median * 1e9 / patches, fastest * 1e6, median * 1e6,
      static_cast<long long>(checksum));
  return 0;
}
