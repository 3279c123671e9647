// A driver for profilers: the CPU loss's forward with the gradient for grad_output = 1
// (band_losses with a unit_gradient, what mwm.mae_loss(norm_pix_loss=True).backward() runs on
// one thread) over the benchmark's shapes: pred (B, N, P) dense, target an image, 75% of the
// patches masked, float32. Prints ms per step (fastest and median) and the share of a copy of
// the same bytes (2.5 tensors: pred and target of the masked patches read, the gradient
// written) measured in the same process. Free of torch, so `perf record` and `valgrind
// --tool=callgrind` see mwm alone:
//
//   g++ -O3 -std=c++17 -ffp-contract=off -Iinclude -o build/profile_loss
//       benchmarks/profile/profile_loss.cpp                      (one command line)
//   build/profile_loss 2d 64 50        # B=64 3x224x224 p16, 50 steps
//   build/profile_loss 3d 8 20         # B=8 1x128^3 p16
//   perf record -e cpu-clock build/profile_loss 2d 64 100 && perf report
//
// valgrind emulates no AVX-512: under callgrind the AVX2 or portable paths run.
#include <mwm/loss.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s 2d|3d BATCH STEPS\n", argv[0]);
    return 2;
  }
  const bool three_d = std::string(argv[1]) == "3d";
  const std::int64_t batch = std::atoll(argv[2]);
  const int steps = std::atoi(argv[3]);
  const mwm::patch_geometry g = three_d ? mwm::make_geometry_3d(1, 128, 128, 128, 16, 16, 16)
                                        : mwm::make_geometry_2d(3, 224, 224, 16, 16);
  const std::int64_t n = g.grid.num_patches();
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t elements = batch * n * p;
  // 64-byte aligned, as torch's CPU allocator aligns tensors (a patch row is then one line).
  const auto floats = [elements] {
    return std::unique_ptr<float[], void (*)(void*)>(
        static_cast<float*>(std::aligned_alloc(64, static_cast<std::size_t>(elements) * 4)),
        std::free);
  };
  const auto pred = floats(), target = floats(), grad = floats();
  std::uint64_t state = 12345;
  const auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<std::int64_t>(state >> 40) - (1 << 23)) / (1 << 22);
  };
  for (std::int64_t i = 0; i < elements; ++i) pred[i] = next();
  for (std::int64_t i = 0; i < elements; ++i) target[i] = next();
  std::fill(grad.get(), grad.get() + elements, 0.0f);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(batch * n));
  for (auto& m : mask) m = (next() + 2.0f) > 1.0f ? 1 : 0;  // about 75%
  std::int64_t masked = 0;
  for (auto m : mask) masked += m;

  mwm::loss_inputs<float, float, float> in;
  in.geometry = g;
  in.batch = batch;
  in.pred = pred.get();
  in.pred_strides = mwm::vector_patch_strides(g, n * p, p, 1);
  in.target = target.get();
  const std::int64_t hw = g.image_height() * g.image_width();
  in.target_strides = mwm::image_patch_strides(g, g.channels * g.image_depth() * hw,
                                               g.image_depth() * hw, hw, g.image_width(), 1);
  in.mask = mask.data();
  in.options.norm_target = true;
  mwm::unit_gradient<float, float> unit{};
  unit.denominator = static_cast<float>(masked);
  unit.grad = grad.get();
  unit.strides = in.pred_strides;
  std::vector<float> losses(static_cast<std::size_t>(batch * n));
  std::vector<float> scratch(static_cast<std::size_t>(mwm::band_scratch_size(g)));
  const std::int64_t bands = mwm::band_count(g, batch);

  std::vector<double> step_seconds;
  double checksum = 0;
  for (int s = 0; s < steps + 1; ++s) {
    const auto start = std::chrono::steady_clock::now();
    mwm::band_losses(in, 0, bands, losses.data(), scratch.data(), &unit);
    if (s > 0) step_seconds.push_back(seconds_since(start));  // the first touches the pages
    checksum += static_cast<double>(losses[0]) + grad[static_cast<std::size_t>(p)];
  }
  std::sort(step_seconds.begin(), step_seconds.end());
  // The copy reference: the same byte count as one step moves, read + written by memcpy.
  const double moved = static_cast<double>(elements) * 4.0 *
                       (2.0 * static_cast<double>(masked) / static_cast<double>(batch * n) + 1.0);
  std::vector<char> from(static_cast<std::size_t>(moved / 2)), to(from.size());
  std::memset(from.data(), 1, from.size());
  std::memset(to.data(), 2, to.size());
  std::vector<double> copy_seconds;
  for (int s = 0; s < 5; ++s) {
    const auto start = std::chrono::steady_clock::now();
    std::memcpy(to.data(), from.data(), from.size());
    copy_seconds.push_back(seconds_since(start));
  }
  std::sort(copy_seconds.begin(), copy_seconds.end());
  const double median = step_seconds[step_seconds.size() / 2];
  std::printf(
      "%s B=%lld: %.2f ms fastest, %.2f ms median; copy of the same bytes %.2f ms (%.1f "
      "GB/s): %.0f%% of copy bandwidth (checksum %g)\n",
      three_d ? "3d" : "2d", static_cast<long long>(batch), step_seconds.front() * 1e3,
      median * 1e3, copy_seconds[2] * 1e3, moved / copy_seconds[2] / 1e9,
      100.0 * copy_seconds[2] / median, checksum);
  return 0;
}
