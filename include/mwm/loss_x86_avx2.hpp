// The CPU loss's band work on AVX2 (float), for CPUs without AVX-512 (and under
// MWM_CPU_VECTOR_BITS=256): loss_x86.hpp's fused passes with the 32 lanes of the reduction order
// in four 8-lane registers (lanes 0-7, 8-15, 16-23, 24-31). Element e is added into lane e % 32
// in increasing e and the lane tree is the same halving steps, so the bits are those of the
// portable gather_band, vector_normalization, vector_error and vector_gradient, which
// tests/cpp/test_loss_x86.cpp checks for both variants. No FMA: every product is rounded before
// it is added, as in the portable code.
#pragma once

#include <cstdint>

#include "loss_bands.hpp"
#include "loss_options.hpp"
#include "loss_patch.hpp"
#include "vector_unit.hpp"

namespace mwm {
namespace detail {

#if defined(MWM_X86_DISPATCH)

#define MWM_LOSS_AVX2 __attribute__((target("avx2"), always_inline)) inline

// The four quarters of the 32 lanes.
struct lanes_avx2 {
  __m256 q[4];
};

MWM_LOSS_AVX2 lanes_avx2 zero_lanes_avx2() {
  return {{_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}};
}

// All-ones in the first `count` of 8 lanes (count <= 0: none), for masked loads and stores.
MWM_LOSS_AVX2 __m256i first_lanes_avx2(std::int64_t count) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int n = count <= 0 ? 0 : count >= 8 ? 8 : static_cast<int>(count);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), index);
}

// halving_total of the 32 lanes: each step adds a[t + s] to a[t] for t < s, s = 16 .. 1, as
// steps::lane_total does.
MWM_LOSS_AVX2 float lanes_total_avx2(const lanes_avx2& l) {
  const __m256 s8 = _mm256_add_ps(_mm256_add_ps(l.q[0], l.q[2]), _mm256_add_ps(l.q[1], l.q[3]));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

// The elements of the last, partial group (`rest` < 32 of them from t) in quarter q, zero
// beyond them; with k the quarter's mask of present lanes.
MWM_LOSS_AVX2 __m256 tail_quarter_avx2(const float* t, std::int64_t rest, int q, __m256i* k) {
  *k = first_lanes_avx2(rest - 8 * q);
  return _mm256_maskload_ps(t + 8 * q, *k);
}

// vector_normalization: two passes over t (in cache), or one where the lane sums of the first
// are given (`sums`, 32 lanes: gather_unit_rows_avx2's).
MWM_LOSS_AVX2 target_normalization<float> normalization_avx2(const float* t, std::int64_t count,
                                                             const float* sums) {
  const std::int64_t full = count - count % loss_lanes;
  const std::int64_t rest = count - full;
  lanes_avx2 l = zero_lanes_avx2();
  if (sums) {
    for (int q = 0; q < 4; ++q) l.q[q] = _mm256_loadu_ps(sums + 8 * q);
  } else {
    for (std::int64_t i = 0; i < full; i += loss_lanes)
      for (int q = 0; q < 4; ++q) l.q[q] = _mm256_add_ps(l.q[q], _mm256_loadu_ps(t + i + 8 * q));
    // A lane that is absent adds +0, which leaves every sum that starts at +0 as it is.
    for (int q = 0; q < 4 && 8 * q < rest; ++q) {
      __m256i k;
      l.q[q] = _mm256_add_ps(l.q[q], tail_quarter_avx2(t + full, rest, q, &k));
    }
  }
  const float mean = lanes_total_avx2(l) / static_cast<float>(count);
  const __m256 m = _mm256_set1_ps(mean);
  l = zero_lanes_avx2();
  for (std::int64_t i = 0; i < full; i += loss_lanes)
    for (int q = 0; q < 4; ++q) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(t + i + 8 * q), m);
      l.q[q] = _mm256_add_ps(l.q[q], _mm256_mul_ps(d, d));
    }
  for (int q = 0; q < 4 && 8 * q < rest; ++q) {
    __m256i k;
    const __m256 d = _mm256_sub_ps(tail_quarter_avx2(t + full, rest, q, &k), m);
    l.q[q] = _mm256_add_ps(l.q[q], _mm256_and_ps(_mm256_mul_ps(d, d), _mm256_castsi256_ps(k)));
  }
  return finish_normalization(mean, lanes_total_avx2(l), static_cast<float>(count));
}

// -x: the sign bit flipped, as the scalar negation does (0 - x would turn -0 into +0).
MWM_LOSS_AVX2 __m256 negated_avx2(__m256 x) {
  return _mm256_xor_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u))));
}

// The error and the gradient of 8 elements: residual, element_error and element_gradient of
// loss_patch.hpp, operation for operation.
struct residual_step_avx2 {
  __m256 error;
  __m256 gradient;
};

template <recon_error E>
MWM_LOSS_AVX2 residual_step_avx2 residual_avx2(__m256 p, __m256 t, __m256 mean, __m256 inv_std,
                                               __m256 scale) {
  const __m256 r = _mm256_sub_ps(p, _mm256_mul_ps(_mm256_sub_ps(t, mean), inv_std));
  if constexpr (E == recon_error::mse) {
    return {_mm256_mul_ps(r, r), _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), r), scale)};
  } else {
    // r < 0 ? -r : r, and r > 0 ? scale : (r < 0 ? -scale : 0): a NaN r keeps r and gives 0.
    const __m256 zero = _mm256_setzero_ps();
    const __m256 below = _mm256_cmp_ps(r, zero, _CMP_LT_OQ);
    const __m256 above = _mm256_cmp_ps(r, zero, _CMP_GT_OQ);
    const __m256 sign = _mm256_and_ps(below, negated_avx2(scale));
    return {_mm256_blendv_ps(r, negated_avx2(r), below), _mm256_blendv_ps(sign, scale, above)};
  }
}

// Stores 8 gradient values: streamed when `Stream` (out 32-byte aligned), else plain.
template <bool Stream>
MWM_LOSS_AVX2 void store_gradient_avx2(float* out, __m256 g) {
  if constexpr (Stream)
    _mm256_stream_ps(out, g);
  else
    _mm256_storeu_ps(out, g);
}

// sum over the patch of element_error, in the lane order, and (Grad) the gradient of each
// element for `scale` into grad.
template <recon_error E, bool Grad, bool Stream>
MWM_LOSS_AVX2 float error_and_gradient_avx2(const float* p, const float* t, std::int64_t count,
                                            target_normalization<float> norm, float scale,
                                            float* grad) {
  const std::int64_t full = count - count % loss_lanes;
  const std::int64_t rest = count - full;
  const __m256 mean = _mm256_set1_ps(norm.mean), inv_std = _mm256_set1_ps(norm.inv_std);
  const __m256 s = _mm256_set1_ps(scale);
  lanes_avx2 l = zero_lanes_avx2();
  for (std::int64_t i = 0; i < full; i += loss_lanes)
    for (int q = 0; q < 4; ++q) {
      const std::int64_t at = i + 8 * q;
      const auto r =
          residual_avx2<E>(_mm256_loadu_ps(p + at), _mm256_loadu_ps(t + at), mean, inv_std, s);
      l.q[q] = _mm256_add_ps(l.q[q], r.error);
      if constexpr (Grad) store_gradient_avx2<Stream>(grad + at, r.gradient);
    }
  for (int q = 0; q < 4 && 8 * q < rest; ++q) {
    const std::int64_t at = full + 8 * q;
    __m256i k;
    const __m256 tq = tail_quarter_avx2(t + full, rest, q, &k);
    const auto r = residual_avx2<E>(_mm256_maskload_ps(p + at, k), tq, mean, inv_std, s);
    l.q[q] = _mm256_add_ps(l.q[q], _mm256_and_ps(r.error, _mm256_castsi256_ps(k)));
    if constexpr (Grad) _mm256_maskstore_ps(grad + at, k, r.gradient);
  }
  return lanes_total_avx2(l);
}

template <recon_error E>
__attribute__((target("avx2"))) inline float patch_error_avx2_of(const float* p, const float* t,
                                                                 std::int64_t count,
                                                                 target_normalization<float> norm,
                                                                 float scale, float* grad,
                                                                 bool stream) {
  if (!grad) return error_and_gradient_avx2<E, false, false>(p, t, count, norm, scale, grad);
  if (stream) return error_and_gradient_avx2<E, true, true>(p, t, count, norm, scale, grad);
  return error_and_gradient_avx2<E, true, false>(p, t, count, norm, scale, grad);
}

// patch_loss_avx512's contract on AVX2: the normalization (when norm_target) into *norm, the
// error of the patch averaged over its `count` elements and, with `grad`, the gradient for
// `weight` into it (streamed when `stream`: grad 64-byte aligned; the caller fences). `sums`:
// the target's 32 lane sums when the gather added them, else null.
__attribute__((target("avx2"))) inline float patch_loss_avx2(const float* p, const float* t,
                                                             std::int64_t count,
                                                             const loss_options& options,
                                                             target_normalization<float>* norm,
                                                             float weight, float* grad, bool stream,
                                                             const float* sums = nullptr) {
  *norm = options.norm_target ? normalization_avx2(t, count, sums)
                              : target_normalization<float>{0.0f, 1.0f};
  const float scale = weight / static_cast<float>(count);
  const float sum =
      options.error == recon_error::mse
          ? patch_error_avx2_of<recon_error::mse>(p, t, count, *norm, scale, grad, stream)
          : patch_error_avx2_of<recon_error::l1>(p, t, count, *norm, scale, grad, stream);
  return sum / static_cast<float>(count);
}

// Whether gather_unit_rows_avx2 gathers rows of this layout: unit-stride float rows of 1 or 3
// channels, whole vectors of 8 pixels each.
inline bool gathers_rows_avx2(const patch_strides& s, const patch_geometry& g) {
  return x86_vector_bits() >= 256 && s.width == 1 && (g.channels == 1 || g.channels == 3) &&
         g.patch_width % 8 == 0;
}

// Eight pixels of three channel rows as three vectors in patch-vector order, channel fastest:
// output vector v, lane j holds channel (8 v + j) % 3 of pixel (8 v + j) / 3. Each channel is
// permuted into place across the register, then the three are blended.
MWM_LOSS_AVX2 void interleave_eight_avx2(__m256 r, __m256 g, __m256 b, __m256* v0, __m256* v1,
                                         __m256* v2) {
  const __m256i r0 = _mm256_setr_epi32(0, 0, 0, 1, 0, 0, 2, 0);
  const __m256i g0 = _mm256_setr_epi32(0, 0, 0, 0, 1, 0, 0, 2);
  const __m256i b0 = _mm256_setr_epi32(0, 0, 0, 0, 0, 1, 0, 0);
  const __m256i r1 = _mm256_setr_epi32(0, 3, 0, 0, 4, 0, 0, 5);
  const __m256i g1 = _mm256_setr_epi32(0, 0, 3, 0, 0, 4, 0, 0);
  const __m256i b1 = _mm256_setr_epi32(2, 0, 0, 3, 0, 0, 4, 0);
  const __m256i r2 = _mm256_setr_epi32(0, 0, 6, 0, 0, 7, 0, 0);
  const __m256i g2 = _mm256_setr_epi32(5, 0, 0, 6, 0, 0, 7, 0);
  const __m256i b2 = _mm256_setr_epi32(0, 5, 0, 0, 6, 0, 0, 7);
  // Blend masks (bit j: lane j from the second operand): green lanes, then blue lanes.
  *v0 = _mm256_blend_ps(
      _mm256_blend_ps(_mm256_permutevar8x32_ps(r, r0), _mm256_permutevar8x32_ps(g, g0), 0x92),
      _mm256_permutevar8x32_ps(b, b0), 0x24);
  *v1 = _mm256_blend_ps(
      _mm256_blend_ps(_mm256_permutevar8x32_ps(r, r1), _mm256_permutevar8x32_ps(g, g1), 0x24),
      _mm256_permutevar8x32_ps(b, b1), 0x49);
  *v2 = _mm256_blend_ps(
      _mm256_blend_ps(_mm256_permutevar8x32_ps(r, r2), _mm256_permutevar8x32_ps(g, g2), 0x49),
      _mm256_permutevar8x32_ps(b, b2), 0x92);
}

// Adds v, vector j of a patch (its elements 8 j .. 8 j + 7), into its lanes: quarter j % 4. A
// branch on the quarter (periodic, so predicted) keeps the four sums in registers, where an
// index into an array of them would send every addition through memory.
MWM_LOSS_AVX2 void add_to_quarter(lanes_avx2* sum, std::int64_t j, __m256 v) {
  switch (j % 4) {
    case 0:
      sum->q[0] = _mm256_add_ps(sum->q[0], v);
      break;
    case 1:
      sum->q[1] = _mm256_add_ps(sum->q[1], v);
      break;
    case 2:
      sum->q[2] = _mm256_add_ps(sum->q[2], v);
      break;
    default:
      sum->q[3] = _mm256_add_ps(sum->q[3], v);
      break;
  }
}

// gather_unit_rows_avx512's work on AVX2: gather_band's unit-stride rows
// (gathers_rows_avx2) into patch-vector order, each stored vector also added into its patch's
// lane sums (sums + 32 x; vector j of a patch, its elements 8 j .. 8 j + 7, into quarter j % 4).
template <int C>
__attribute__((target("avx2"))) inline void gather_unit_rows_avx2(
    const float* base, const patch_strides& s, const patch_geometry& g, const float* active,
    float* out, float* sums, prefetch_range ahead) {
  constexpr std::int64_t line = 64;
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t pw = g.patch_width;
  const std::int64_t rows = g.patch_depth * g.patch_height;
  const std::int64_t lines_per_row = (ahead.bytes / line + rows - 1) / rows;
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
      const std::int64_t first = (pd * g.patch_height + ph) * pw * C;  // a multiple of 8
      for (std::int64_t x = 0; x < g.grid.width; ++x) {
        if (active[x] == 0.0f) continue;
        const float* src = row + x * s.grid_width;
        float* dst = out + x * p + first;
        lanes_avx2 sum;
        for (int q = 0; q < 4; ++q) sum.q[q] = _mm256_loadu_ps(sums + loss_lanes * x + 8 * q);
        std::int64_t j = first / 8;
        for (std::int64_t k = 0; k < pw; k += 8) {
          if constexpr (C == 1) {
            const __m256 v = _mm256_loadu_ps(src + k);
            _mm256_storeu_ps(dst + k, v);
            add_to_quarter(&sum, j++, v);
          } else {
            __m256 v[3];
            interleave_eight_avx2(_mm256_loadu_ps(src + k), _mm256_loadu_ps(src + s.channel + k),
                                  _mm256_loadu_ps(src + 2 * s.channel + k), &v[0], &v[1], &v[2]);
            for (int u = 0; u < 3; ++u, ++j) {
              _mm256_storeu_ps(dst + 3 * k + 8 * u, v[u]);
              add_to_quarter(&sum, j, v[u]);
            }
          }
        }
        for (int q = 0; q < 4; ++q) _mm256_storeu_ps(sums + loss_lanes * x + 8 * q, sum.q[q]);
      }
    }
}

#undef MWM_LOSS_AVX2

#endif  // MWM_X86_DISPATCH

}  // namespace detail
}  // namespace mwm
