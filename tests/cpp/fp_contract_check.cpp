// Built with -march=native (so the compiler may use FMA instructions where the machine has
// them) and the flags every mwm target gets: the core's p - (t - mean) * inv_std must round the
// product before the subtraction. Exits 1 if a fused multiply-add was used, which happens when
// -ffp-contract=off is missing (GCC contracts by default in its GNU modes).
#include <mwm/loss.hpp>

#include <cstdio>

int main(int argc, char**) {
  // Runtime values, so that nothing is folded at compile time: x * x = 1 + 2^-11 + 2^-24
  // exactly, which rounds to 1 + 2^-11 (a tie, to even) in float; the unfused residual is then
  // exactly 0, the fused one -2^-24.
  volatile float x = 1.0f + 1.0f / 4096.0f;
  volatile float p = 1.0f + 1.0f / 2048.0f;
  const float t = x + static_cast<float>(argc - 1);  // argc == 1: t == x
  const mwm::target_normalization<float> norm{0.0f, x};
  const float r = mwm::detail::residual<float>(p, t, norm);
  if (r != 0.0f) {
    std::printf(
        "fused multiply-add in the core's residual: %.9g instead of 0 "
        "(compiled without -ffp-contract=off)\n",
        static_cast<double>(r));
    return 1;
  }
  std::printf("no fused multiply-add: residual %.9g\n", static_cast<double>(r));
  return 0;
}
