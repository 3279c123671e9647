// The CPU loss's gather of unit-stride target rows on AVX2 (float), for CPUs without AVX-512,
// for rows of 8-pixel multiples and under MWM_CPU_VECTOR_BITS=256: loss_x86.hpp's AVX-512 gather
// with the 32 lanes of each patch's sums in four 8-lane registers (lanes 0-7, 8-15, 16-23,
// 24-31), with the bits of the portable gather_band (tests/cpp/test_loss_x86.cpp).
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
MWM_LOSS_AVX2 void add_to_quarter(__m256* sum, std::int64_t j, __m256 v) {
  switch (j % 4) {
    case 0:
      sum[0] = _mm256_add_ps(sum[0], v);
      break;
    case 1:
      sum[1] = _mm256_add_ps(sum[1], v);
      break;
    case 2:
      sum[2] = _mm256_add_ps(sum[2], v);
      break;
    default:
      sum[3] = _mm256_add_ps(sum[3], v);
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
        __m256 sum[4];
        for (int q = 0; q < 4; ++q) sum[q] = _mm256_loadu_ps(sums + loss_lanes * x + 8 * q);
        std::int64_t j = first / 8;
        for (std::int64_t k = 0; k < pw; k += 8) {
          if constexpr (C == 1) {
            const __m256 v = _mm256_loadu_ps(src + k);
            _mm256_storeu_ps(dst + k, v);
            add_to_quarter(sum, j++, v);
          } else {
            __m256 v[3];
            interleave_eight_avx2(_mm256_loadu_ps(src + k), _mm256_loadu_ps(src + s.channel + k),
                                  _mm256_loadu_ps(src + 2 * s.channel + k), &v[0], &v[1], &v[2]);
            for (int u = 0; u < 3; ++u, ++j) {
              _mm256_storeu_ps(dst + 3 * k + 8 * u, v[u]);
              add_to_quarter(sum, j, v[u]);
            }
          }
        }
        for (int q = 0; q < 4; ++q) _mm256_storeu_ps(sums + loss_lanes * x + 8 * q, sum[q]);
      }
    }
}

#undef MWM_LOSS_AVX2

#endif  // MWM_X86_DISPATCH

}  // namespace detail
}  // namespace mwm
