// Where band_losses hands its float work to the x86 vector units: the band work of
// loss_x86_passes.hpp (the gather of a band's target rows, which adds each patch's target into
// its lane sums as it stores it, and the fused passes over a patch vector), compiled once for
// AVX-512 (namespace avx512) and once for AVX2 (avx2) over their lane packs
// (loss_x86_lanes.hpp), and picked at run time by x86_vector_bits. Every path has the bits of
// the portable gather_band, vector_normalization, vector_error and vector_gradient
// (loss_bands.hpp, loss_patch.hpp), which tests/cpp/test_loss_x86.cpp checks.
#pragma once

#include <cstdint>
#include <type_traits>

#include "loss_bands.hpp"
#include "loss_options.hpp"
#include "loss_patch.hpp"
#include "loss_x86_lanes.hpp"
#include "vector_unit.hpp"

namespace mwm {
namespace detail {

#if defined(MWM_X86_DISPATCH)

MWM_X86_INTRINSIC_WARNINGS_OFF

namespace avx512 {
#define MWM_LANES lanes_avx512
#define MWM_LANES_TARGET "avx512f"
#include "loss_x86_passes.hpp"
#undef MWM_LANES
#undef MWM_LANES_TARGET
}  // namespace avx512

namespace avx2 {
#define MWM_LANES lanes_avx2
#define MWM_LANES_TARGET "avx2"
#include "loss_x86_passes.hpp"
#undef MWM_LANES
#undef MWM_LANES_TARGET
}  // namespace avx2

MWM_X86_INTRINSIC_WARNINGS_ON

#endif  // MWM_X86_DISPATCH

// band_losses' gather of a band's target where the AVX-512 gather (patch rows of 16-pixel
// multiples) or the AVX2 one (8-pixel multiples, or under MWM_CPU_VECTOR_BITS=256) runs it, the
// lane sums into `sums`, 32 per patch; false where the portable gather_band must (nothing
// written).
template <typename Acc, typename T>
bool gather_band_vectorized(const T* data, const patch_strides& s, const patch_geometry& g,
                            std::int64_t band, const Acc* active, Acc* out, Acc* sums,
                            prefetch_range ahead) {
#if defined(MWM_X86_DISPATCH)
  if constexpr (std::is_same_v<Acc, float> && std::is_same_v<T, float>) {
    const float* base = data + band_start(s, g.grid, band);
    if (avx512::gathers_rows(s, g)) {
      avx512::gather_band_rows(base, s, g, active, out, sums, ahead);
      return true;
    }
    if (avx2::gathers_rows(s, g)) {
      avx2::gather_band_rows(base, s, g, active, out, sums, ahead);
      return true;
    }
    return false;
  }
#endif
  (void)data, (void)s, (void)g, (void)band, (void)active, (void)out, (void)sums, (void)ahead;
  return false;
}

// band_losses' work on one patch of `count` elements where avx512::patch_loss or (a CPU with
// AVX2 but not AVX-512, or MWM_CPU_VECTOR_BITS=256) avx2::patch_loss runs it: its
// target t (gathered), its prediction `pred` (dense, in place) or else `gathered_pred`, the
// error into *err and, for a non-zero `factor`, the gradient into `out` (streamed when it is
// 64-byte aligned) or, without a direct destination, into the band's `band_grad` slot. `sums`:
// the target's lane sums from gather_band_vectorized, or null. False where this CPU or these
// types take the portable steps (then nothing is written).
template <typename Acc, typename P>
bool patch_loss_vectorized(const loss_options& options, std::int64_t count, const Acc* t,
                           const P* pred, const Acc* gathered_pred, Acc factor, P* out,
                           Acc* band_grad, const Acc* sums, Acc* err) {
#if defined(MWM_X86_DISPATCH)
  if constexpr (std::is_same_v<Acc, float> && std::is_same_v<P, float>) {
    const int bits = x86_vector_bits();
    if (bits < 256) return false;
    float* grad = factor == 0.0f ? nullptr : (out ? out : band_grad);
    const bool stream = out && (reinterpret_cast<std::uintptr_t>(out) & 63) == 0;
    target_normalization<float> norm;
    const float* p = pred ? pred : gathered_pred;
    *err = bits == 512 ? avx512::patch_loss(p, t, count, options, &norm, factor, grad, stream, sums)
                       : avx2::patch_loss(p, t, count, options, &norm, factor, grad, stream, sums);
    return true;
  }
#endif
  (void)options, (void)count, (void)t, (void)pred, (void)gathered_pred, (void)factor, (void)out;
  (void)band_grad, (void)sums, (void)err;
  return false;
}

}  // namespace detail
}  // namespace mwm
