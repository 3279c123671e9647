// The CPU loss's band work on AVX-512 (float): the gather of unit-stride target rows into
// patch-vector order, and the normalization, error and gradient of a contiguous patch vector,
// with the bits of the portable gather_band, vector_normalization, vector_error and
// vector_gradient (loss_bands.hpp, loss_patch.hpp), which tests/cpp/test_loss_x86.cpp checks.
// The 32 lanes of the reduction order are two vector registers (lanes 0-15, 16-31): element e
// is added into lane e % 32 in increasing e, and the lane tree is the same halving steps, so no
// addition moves. The passes are fused where the order allows: the gather adds each patch's
// target into its lane sums as it stores it (the mean's pass), and one pass over prediction and
// target feeds each element's residual to both the error's lane and its gradient, streamed
// straight to memory (the portable code's error, gradient and copy to the streaming stores).
// Only the squared deviations, which need the mean, take a pass of their own.
#pragma once

#include <cstdint>
#include <type_traits>

#include "loss_bands.hpp"
#include "loss_options.hpp"
#include "loss_patch.hpp"
#include "loss_x86_avx2.hpp"
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

// The first `count` of 16 lanes (count < 16 selects fewer, count <= 0 none).
MWM_LOSS_AVX512 __mmask16 first_lanes(std::int64_t count) {
  if (count <= 0) return __mmask16(0);
  return count >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << count) - 1u);
}

// halving_total of the 32 lanes (lo: lanes 0-15, hi: 16-31): each step adds a[t + s] to a[t]
// for t < s, as steps::lane_total does.
MWM_LOSS_AVX512 float lanes_total_avx512(__m512 lo, __m512 hi) {
  const __m512 s16 = _mm512_add_ps(lo, hi);
  const __m256 low8 = _mm512_castps512_ps256(s16);
  const __m256 high8 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s16), 1));
  const __m256 s8 = _mm256_add_ps(low8, high8);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

// The mean and the normalization of vector_normalization: two passes over t (in cache), or one
// where the lane sums of the first are given (`sums`, 32 lanes: gather_unit_rows_avx512's).
MWM_LOSS_AVX512 target_normalization<float> normalization_avx512(const float* t, std::int64_t count,
                                                                 const float* sums) {
  const std::int64_t full = count - count % loss_lanes;
  const std::int64_t rest = count - full;
  const __mmask16 k_lo = first_lanes(rest), k_hi = first_lanes(rest - 16);
  __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
  if (sums) {
    lo = _mm512_loadu_ps(sums);
    hi = _mm512_loadu_ps(sums + 16);
  } else {
    for (std::int64_t i = 0; i < full; i += loss_lanes) {
      lo = _mm512_add_ps(lo, _mm512_loadu_ps(t + i));
      hi = _mm512_add_ps(hi, _mm512_loadu_ps(t + i + 16));
    }
    if (rest > 0) lo = _mm512_mask_add_ps(lo, k_lo, lo, _mm512_maskz_loadu_ps(k_lo, t + full));
    if (rest > 16)
      hi = _mm512_mask_add_ps(hi, k_hi, hi, _mm512_maskz_loadu_ps(k_hi, t + full + 16));
  }
  const float mean = lanes_total_avx512(lo, hi) / static_cast<float>(count);
  const __m512 m = _mm512_set1_ps(mean);
  lo = _mm512_setzero_ps();
  hi = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < full; i += loss_lanes) {
    const __m512 d_lo = _mm512_sub_ps(_mm512_loadu_ps(t + i), m);
    const __m512 d_hi = _mm512_sub_ps(_mm512_loadu_ps(t + i + 16), m);
    lo = _mm512_add_ps(lo, _mm512_mul_ps(d_lo, d_lo));
    hi = _mm512_add_ps(hi, _mm512_mul_ps(d_hi, d_hi));
  }
  if (rest > 0) {
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k_lo, t + full), m);
    lo = _mm512_mask_add_ps(lo, k_lo, lo, _mm512_mul_ps(d, d));
  }
  if (rest > 16) {
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k_hi, t + full + 16), m);
    hi = _mm512_mask_add_ps(hi, k_hi, hi, _mm512_mul_ps(d, d));
  }
  return finish_normalization(mean, lanes_total_avx512(lo, hi), static_cast<float>(count));
}

// The error and the gradient of 16 elements (k: the ones that exist): residual, element_error
// and element_gradient of loss_patch.hpp, operation for operation.
struct residual_step_avx512 {
  __m512 error;
  __m512 gradient;
};

// -x: the sign bit flipped, as the scalar negation does (0 - x would turn -0 into +0).
MWM_LOSS_AVX512 __m512 negated_avx512(__m512 x) {
  return _mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
}

template <recon_error E>
MWM_LOSS_AVX512 residual_step_avx512 residual_avx512(__m512 p, __m512 t, __m512 mean,
                                                     __m512 inv_std, __m512 scale) {
  const __m512 r = _mm512_sub_ps(p, _mm512_mul_ps(_mm512_sub_ps(t, mean), inv_std));
  const __m512 zero = _mm512_setzero_ps();
  if constexpr (E == recon_error::mse) {
    return {_mm512_mul_ps(r, r), _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), r), scale)};
  } else {
    // r < 0 ? -r : r, and r > 0 ? scale : (r < 0 ? -scale : 0): a NaN r keeps r and gives 0.
    const __mmask16 below = _mm512_cmp_ps_mask(r, zero, _CMP_LT_OQ);
    const __mmask16 above = _mm512_cmp_ps_mask(r, zero, _CMP_GT_OQ);
    const __m512 sign = _mm512_mask_mov_ps(zero, below, negated_avx512(scale));
    return {_mm512_mask_mov_ps(r, below, negated_avx512(r)),
            _mm512_mask_mov_ps(sign, above, scale)};
  }
}

// Stores 16 gradient values: streamed when `Stream` (out 64-byte aligned), else plain.
template <bool Stream>
MWM_LOSS_AVX512 void store_gradient_avx512(float* out, __m512 g) {
  if constexpr (Stream)
    _mm512_stream_ps(out, g);
  else
    _mm512_storeu_ps(out, g);
}

// sum over the patch of element_error, in the lane order, and (Grad) the gradient of each
// element for `scale` into grad.
template <recon_error E, bool Grad, bool Stream>
MWM_LOSS_AVX512 float error_and_gradient_avx512(const float* p, const float* t, std::int64_t count,
                                                target_normalization<float> norm, float scale,
                                                float* grad) {
  const std::int64_t full = count - count % loss_lanes;
  const std::int64_t rest = count - full;
  const __m512 mean = _mm512_set1_ps(norm.mean), inv_std = _mm512_set1_ps(norm.inv_std);
  const __m512 s = _mm512_set1_ps(scale);
  __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < full; i += loss_lanes) {
    const auto a =
        residual_avx512<E>(_mm512_loadu_ps(p + i), _mm512_loadu_ps(t + i), mean, inv_std, s);
    const auto b = residual_avx512<E>(_mm512_loadu_ps(p + i + 16), _mm512_loadu_ps(t + i + 16),
                                      mean, inv_std, s);
    lo = _mm512_add_ps(lo, a.error);
    hi = _mm512_add_ps(hi, b.error);
    if constexpr (Grad) {
      store_gradient_avx512<Stream>(grad + i, a.gradient);
      store_gradient_avx512<Stream>(grad + i + 16, b.gradient);
    }
  }
  for (std::int64_t half = 0; half < 2; ++half) {
    const std::int64_t at = full + 16 * half;
    if (rest <= 16 * half) break;
    const __mmask16 k = first_lanes(rest - 16 * half);
    const auto a = residual_avx512<E>(_mm512_maskz_loadu_ps(k, p + at),
                                      _mm512_maskz_loadu_ps(k, t + at), mean, inv_std, s);
    if (half == 0)
      lo = _mm512_mask_add_ps(lo, k, lo, a.error);
    else
      hi = _mm512_mask_add_ps(hi, k, hi, a.error);
    if constexpr (Grad) _mm512_mask_storeu_ps(grad + at, k, a.gradient);
  }
  return lanes_total_avx512(lo, hi);
}

template <recon_error E>
__attribute__((target("avx512f"))) inline float patch_error_avx512_of(
    const float* p, const float* t, std::int64_t count, target_normalization<float> norm,
    float scale, float* grad, bool stream) {
  if (!grad) return error_and_gradient_avx512<E, false, false>(p, t, count, norm, scale, grad);
  if (stream) return error_and_gradient_avx512<E, true, true>(p, t, count, norm, scale, grad);
  return error_and_gradient_avx512<E, true, false>(p, t, count, norm, scale, grad);
}

// The normalization (when norm_target) into *norm, and the error of the patch averaged over
// its `count` elements, as steps::vector_normalization and steps::vector_error give them; with
// `grad`, also steps::vector_gradient(weight, ...) into it. `stream`: grad is 64-byte aligned
// and its full vectors go out as streaming stores (the caller fences, stream_fence()). `sums`:
// the target's 32 lane sums when the gather added them, else null.
__attribute__((target("avx512f"))) inline float patch_loss_avx512(
    const float* p, const float* t, std::int64_t count, const loss_options& options,
    target_normalization<float>* norm, float weight, float* grad, bool stream,
    const float* sums = nullptr) {
  *norm = options.norm_target ? normalization_avx512(t, count, sums)
                              : target_normalization<float>{0.0f, 1.0f};
  const float scale = weight / static_cast<float>(count);
  const float sum =
      options.error == recon_error::mse
          ? patch_error_avx512_of<recon_error::mse>(p, t, count, *norm, scale, grad, stream)
          : patch_error_avx512_of<recon_error::l1>(p, t, count, *norm, scale, grad, stream);
  return sum / static_cast<float>(count);
}

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

// band_losses' work on one patch of `count` elements where patch_loss_avx512 or (a CPU with
// AVX2 but not AVX-512, or MWM_CPU_VECTOR_BITS=256) patch_loss_avx2 runs it: its
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
    *err = bits == 512 ? patch_loss_avx512(p, t, count, options, &norm, factor, grad, stream, sums)
                       : patch_loss_avx2(p, t, count, options, &norm, factor, grad, stream, sums);
    return true;
  }
#endif
  (void)options, (void)count, (void)t, (void)pred, (void)gathered_pred, (void)factor, (void)out;
  (void)band_grad, (void)sums, (void)err;
  return false;
}

}  // namespace detail
}  // namespace mwm
