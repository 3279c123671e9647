// The CPU loss's band work on x86 vector units (float), and where band_losses dispatches to it:
// the gather of unit-stride target rows into patch-vector order on AVX-512 (here; on AVX2 in
// loss_x86_avx2.hpp), which adds each patch's target into its lane sums as it stores it (the
// mean's pass), and the fused passes over a patch vector (loss_x86_passes.hpp, compiled for
// each unit), all with the bits of the portable gather_band, vector_normalization,
// vector_error and vector_gradient (loss_bands.hpp, loss_patch.hpp), which
// tests/cpp/test_loss_x86.cpp checks.
#pragma once

#include <cstdint>
#include <type_traits>

#include "loss_bands.hpp"
#include "loss_options.hpp"
#include "loss_patch.hpp"
#include "loss_x86_avx2.hpp"
#include "loss_x86_lanes.hpp"
#include "vector_unit.hpp"

namespace mwm {
namespace detail {

#if defined(MWM_X86_DISPATCH)

// GCC 12 warns inside its own AVX-512 intrinsics when they are inlined into a function that
// enables AVX-512 by attribute (see keys_x86.hpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define MWM_LOSS_AVX512 __attribute__((target("avx512f"), always_inline)) inline

// Whether the functions below run (x86_vector_bits).
inline bool loss_avx512() { return x86_vector_bits() == 512; }

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

// Whether gather_unit_rows_avx512 gathers rows of this layout: unit-stride float rows of 1 or
// 3 channels, whole vectors of 16 pixels each.
inline bool gathers_rows_avx512(const patch_strides& s, const patch_geometry& g) {
  return loss_avx512() && s.width == 1 && (g.channels == 1 || g.channels == 3) &&
         g.patch_width % 16 == 0;
}

// The 16-lane half (0: lanes 0-15, 1: 16-31) that vector j of a patch vector (its elements
// 16 j .. 16 j + 15) is added into.
MWM_LOSS_AVX512 void add_to_half(__m512* lo, __m512* hi, std::int64_t j, __m512 v) {
  if (j % 2 == 0)
    *lo = _mm512_add_ps(*lo, v);
  else
    *hi = _mm512_add_ps(*hi, v);
}

// gather_band's unit-stride rows (gathers_rows_avx512) into patch-vector order, channel
// fastest: for C = 3, sixteen pixels of the three channel rows become three vectors through two
// two-source permutes each (x and y pixels, then z). Each vector, as it is stored, is also added
// into its patch's lane sums (sums + 32 x: lanes 0-31, the first pass of vector_normalization in
// the same order: a patch's rows come in increasing element order), so the normalization does
// not read the target again for its mean. `ahead` as in gather_band.
template <int C>
__attribute__((target("avx512f"))) inline void gather_unit_rows_avx512(
    const float* base, const patch_strides& s, const patch_geometry& g, const float* active,
    float* out, float* sums, prefetch_range ahead) {
  constexpr std::int64_t line = 64;
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t pw = g.patch_width;
  const std::int64_t rows = g.patch_depth * g.patch_height;
  const std::int64_t lines_per_row = (ahead.bytes / line + rows - 1) / rows;
  // Output vector q of 16 pixels, element j: channel (16 q + j) % 3 of pixel (16 q + j) / 3.
  alignas(64) static const std::int32_t xy[3][16] = {
      {0, 16, 0, 1, 17, 0, 2, 18, 0, 3, 19, 0, 4, 20, 0, 5},
      {21, 0, 6, 22, 0, 7, 23, 0, 8, 24, 0, 9, 25, 0, 10, 26},
      {0, 11, 27, 0, 12, 28, 0, 13, 29, 0, 14, 30, 0, 15, 31, 0}};
  alignas(64) static const std::int32_t with_z[3][16] = {
      {0, 1, 16, 3, 4, 17, 6, 7, 18, 9, 10, 19, 12, 13, 20, 15},
      {0, 21, 2, 3, 22, 5, 6, 23, 8, 9, 24, 11, 12, 25, 14, 15},
      {26, 1, 2, 27, 4, 5, 28, 7, 8, 29, 10, 11, 30, 13, 14, 31}};
  const __m512i xy0 = _mm512_load_si512(xy[0]), xy1 = _mm512_load_si512(xy[1]);
  const __m512i xy2 = _mm512_load_si512(xy[2]), z0 = _mm512_load_si512(with_z[0]);
  const __m512i z1 = _mm512_load_si512(with_z[1]), z2 = _mm512_load_si512(with_z[2]);
  for (std::int64_t x = 0; x < g.grid.width; ++x)
    if (active[x] != 0.0f)
      for (int l = 0; l < loss_lanes; ++l) sums[loss_lanes * x + l] = 0.0f;
  std::int64_t next = 0;
  for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
    for (std::int64_t ph = 0; ph < g.patch_height; ++ph) {
      for (std::int64_t k = 0; k < lines_per_row && next < ahead.bytes; ++k, next += line)
        prefetch_line(ahead.begin + next);
      const float* row = base + pd * s.depth + ph * s.height;
      for (int c = 0; c < C; ++c) prefetch_next_row(ahead, base, row + c * s.channel, s, g);
      const std::int64_t first = (pd * g.patch_height + ph) * pw * C;  // a multiple of 16
      for (std::int64_t x = 0; x < g.grid.width; ++x) {
        if (active[x] == 0.0f) continue;
        const float* src = row + x * s.grid_width;
        float* dst = out + x * p + first;
        float* sum = sums + loss_lanes * x;
        __m512 lo = _mm512_loadu_ps(sum), hi = _mm512_loadu_ps(sum + 16);
        std::int64_t j = first / 16;
        for (std::int64_t k = 0; k < pw; k += 16) {
          if constexpr (C == 1) {
            const __m512 v = _mm512_loadu_ps(src + k);
            _mm512_storeu_ps(dst + k, v);
            add_to_half(&lo, &hi, j++, v);
          } else {
            const __m512 r = _mm512_loadu_ps(src + k), gr = _mm512_loadu_ps(src + s.channel + k);
            const __m512 b = _mm512_loadu_ps(src + 2 * s.channel + k);
            const __m512 v0 = _mm512_permutex2var_ps(_mm512_permutex2var_ps(r, xy0, gr), z0, b);
            const __m512 v1 = _mm512_permutex2var_ps(_mm512_permutex2var_ps(r, xy1, gr), z1, b);
            const __m512 v2 = _mm512_permutex2var_ps(_mm512_permutex2var_ps(r, xy2, gr), z2, b);
            float* at = dst + 3 * k;
            _mm512_storeu_ps(at, v0);
            _mm512_storeu_ps(at + 16, v1);
            _mm512_storeu_ps(at + 32, v2);
            add_to_half(&lo, &hi, j++, v0);
            add_to_half(&lo, &hi, j++, v1);
            add_to_half(&lo, &hi, j++, v2);
          }
        }
        _mm512_storeu_ps(sum, lo);
        _mm512_storeu_ps(sum + 16, hi);
      }
    }
}

#undef MWM_LOSS_AVX512

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // MWM_X86_DISPATCH

// band_losses' gather of a band's target where gather_unit_rows_avx512 or, for rows of 8-pixel
// multiples or under MWM_CPU_VECTOR_BITS=256, gather_unit_rows_avx2 runs it (the lane sums into
// `sums`, 32 per patch); false where the portable gather_band must (nothing written).
template <typename Acc, typename T>
bool gather_band_vectorized(const T* data, const patch_strides& s, const patch_geometry& g,
                            std::int64_t band, const Acc* active, Acc* out, Acc* sums,
                            prefetch_range ahead) {
#if defined(MWM_X86_DISPATCH)
  if constexpr (std::is_same_v<Acc, float> && std::is_same_v<T, float>) {
    const float* base = data + band_start(s, g.grid, band);
    if (gathers_rows_avx512(s, g)) {
      if (g.channels == 1)
        gather_unit_rows_avx512<1>(base, s, g, active, out, sums, ahead);
      else
        gather_unit_rows_avx512<3>(base, s, g, active, out, sums, ahead);
      return true;
    }
    if (gathers_rows_avx2(s, g)) {
      if (g.channels == 1)
        gather_unit_rows_avx2<1>(base, s, g, active, out, sums, ahead);
      else
        gather_unit_rows_avx2<3>(base, s, g, active, out, sums, ahead);
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
