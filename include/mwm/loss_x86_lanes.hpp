// The 32 lanes of the loss's reduction order as x86 vector registers: two of 16 floats on
// AVX-512, four of 8 on AVX2. Both packs offer the same operations under the same names, so the
// fused passes over a patch (loss_x86_passes.hpp) are written once. Each operation is one or two
// instructions, compiled for its unit by attribute and inlined into the passes.
#pragma once

#include <cstdint>

#include "loss_patch.hpp"
#include "vector_unit.hpp"

namespace mwm {
namespace detail {

#if defined(MWM_X86_DISPATCH)

MWM_X86_INTRINSIC_WARNINGS_OFF

#define MWM_LANES_AVX512 __attribute__((target("avx512f"), always_inline)) inline static
#define MWM_LANES_AVX2 __attribute__((target("avx2"), always_inline)) inline static

// Lanes 0-15 and 16-31. A mask selects lanes of one register (bit j: lane j).
struct lanes_avx512 {
  using reg = __m512;
  using mask = __mmask16;
  static constexpr int width = 16;
  static constexpr int registers = loss_lanes / width;

  MWM_LANES_AVX512 reg zero() { return _mm512_setzero_ps(); }
  MWM_LANES_AVX512 reg set1(float x) { return _mm512_set1_ps(x); }
  MWM_LANES_AVX512 reg load(const float* at) { return _mm512_loadu_ps(at); }
  MWM_LANES_AVX512 void store(float* at, reg v) { _mm512_storeu_ps(at, v); }
  // `at` 64-byte aligned.
  MWM_LANES_AVX512 void stream(float* at, reg v) { _mm512_stream_ps(at, v); }
  MWM_LANES_AVX512 reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  MWM_LANES_AVX512 reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  MWM_LANES_AVX512 reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  // -x: the sign bit flipped, as the scalar negation does (0 - x would turn -0 into +0).
  MWM_LANES_AVX512 reg negated(reg x) {
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
  }

  // The first `count` lanes (count <= 0: none, >= 16: all).
  MWM_LANES_AVX512 mask first(std::int64_t count) {
    if (count <= 0) return mask(0);
    return count >= 16 ? mask(0xffff) : static_cast<mask>((1u << count) - 1u);
  }
  // The lanes of k from `at`, zero elsewhere; lanes outside k are not read.
  MWM_LANES_AVX512 reg masked_load(mask k, const float* at) { return _mm512_maskz_loadu_ps(k, at); }
  MWM_LANES_AVX512 void masked_store(float* at, mask k, reg v) { _mm512_mask_storeu_ps(at, k, v); }
  // acc + x in the lanes of k, acc elsewhere.
  MWM_LANES_AVX512 reg masked_add(reg acc, mask k, reg x) {
    return _mm512_mask_add_ps(acc, k, acc, x);
  }
  MWM_LANES_AVX512 mask less(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  MWM_LANES_AVX512 mask greater(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  // if_set in the lanes of m, otherwise elsewhere.
  MWM_LANES_AVX512 reg select(mask m, reg if_set, reg otherwise) {
    return _mm512_mask_mov_ps(otherwise, m, if_set);
  }

  // Adds v, register j of a patch vector (its elements 16 j .. 16 j + 15), into its lanes:
  // register j % 2 of sum. A branch on the parity (periodic, so predicted) keeps the sums in
  // registers, where an index into them would send every addition through memory.
  MWM_LANES_AVX512 void add_to_part(reg* sum, std::int64_t j, reg v) {
    if (j % 2 == 0)
      sum[0] = _mm512_add_ps(sum[0], v);
    else
      sum[1] = _mm512_add_ps(sum[1], v);
  }

  // Sixteen pixels of three channel rows as three registers in patch-vector order, channel
  // fastest (register u, lane j: channel (16 u + j) % 3 of pixel (16 u + j) / 3), through two
  // two-source permutes each: the red and green pixels, then the blue.
  MWM_LANES_AVX512 void interleave_three(reg r, reg g, reg b, reg* v) {
    const __m512i rg0 = _mm512_setr_epi32(0, 16, 0, 1, 17, 0, 2, 18, 0, 3, 19, 0, 4, 20, 0, 5);
    const __m512i rg1 = _mm512_setr_epi32(21, 0, 6, 22, 0, 7, 23, 0, 8, 24, 0, 9, 25, 0, 10, 26);
    const __m512i rg2 = _mm512_setr_epi32(0, 11, 27, 0, 12, 28, 0, 13, 29, 0, 14, 30, 0, 15, 31, 0);
    const __m512i b0 = _mm512_setr_epi32(0, 1, 16, 3, 4, 17, 6, 7, 18, 9, 10, 19, 12, 13, 20, 15);
    const __m512i b1 = _mm512_setr_epi32(0, 21, 2, 3, 22, 5, 6, 23, 8, 9, 24, 11, 12, 25, 14, 15);
    const __m512i b2 = _mm512_setr_epi32(26, 1, 2, 27, 4, 5, 28, 7, 8, 29, 10, 11, 30, 13, 14, 31);
    v[0] = _mm512_permutex2var_ps(_mm512_permutex2var_ps(r, rg0, g), b0, b);
    v[1] = _mm512_permutex2var_ps(_mm512_permutex2var_ps(r, rg1, g), b1, b);
    v[2] = _mm512_permutex2var_ps(_mm512_permutex2var_ps(r, rg2, g), b2, b);
  }

  // halving_total of the 32 lanes: each step adds a[t + s] to a[t] for t < s, s = 16 .. 1, as
  // steps::lane_total does.
  MWM_LANES_AVX512 float total(const reg* l) {
    const __m512 s16 = _mm512_add_ps(l[0], l[1]);
    const __m256 low8 = _mm512_castps512_ps256(s16);
    const __m256 high8 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s16), 1));
    const __m256 s8 = _mm256_add_ps(low8, high8);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
  }
};

// Lanes 0-7, 8-15, 16-23 and 24-31. AVX2 has no mask registers: a mask is a register whose
// selected lanes are all ones.
struct lanes_avx2 {
  using reg = __m256;
  using mask = __m256;
  static constexpr int width = 8;
  static constexpr int registers = loss_lanes / width;

  MWM_LANES_AVX2 reg zero() { return _mm256_setzero_ps(); }
  MWM_LANES_AVX2 reg set1(float x) { return _mm256_set1_ps(x); }
  MWM_LANES_AVX2 reg load(const float* at) { return _mm256_loadu_ps(at); }
  MWM_LANES_AVX2 void store(float* at, reg v) { _mm256_storeu_ps(at, v); }
  // `at` 32-byte aligned.
  MWM_LANES_AVX2 void stream(float* at, reg v) { _mm256_stream_ps(at, v); }
  MWM_LANES_AVX2 reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  MWM_LANES_AVX2 reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  MWM_LANES_AVX2 reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  MWM_LANES_AVX2 reg negated(reg x) {
    return _mm256_xor_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u))));
  }

  MWM_LANES_AVX2 mask first(std::int64_t count) {
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int n = count <= 0 ? 0 : count >= 8 ? 8 : static_cast<int>(count);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), index));
  }
  MWM_LANES_AVX2 reg masked_load(mask k, const float* at) {
    return _mm256_maskload_ps(at, _mm256_castps_si256(k));
  }
  MWM_LANES_AVX2 void masked_store(float* at, mask k, reg v) {
    _mm256_maskstore_ps(at, _mm256_castps_si256(k), v);
  }
  // Adding +0 where k is clear leaves every lane sum as it is: the sums start at +0, so none
  // is -0.
  MWM_LANES_AVX2 reg masked_add(reg acc, mask k, reg x) {
    return _mm256_add_ps(acc, _mm256_and_ps(x, k));
  }
  MWM_LANES_AVX2 mask less(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  MWM_LANES_AVX2 mask greater(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  MWM_LANES_AVX2 reg select(mask m, reg if_set, reg otherwise) {
    return _mm256_blendv_ps(otherwise, if_set, m);
  }

  // register j of a patch vector (elements 8 j .. 8 j + 7) into register j % 4 of sum, by a
  // branch for the reason given for lanes_avx512.
  MWM_LANES_AVX2 void add_to_part(reg* sum, std::int64_t j, reg v) {
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

  // Eight pixels of three channel rows as three registers in patch-vector order (register u,
  // lane j: channel (8 u + j) % 3 of pixel (8 u + j) / 3): each channel permuted into place
  // across the register, then the three blended (mask bit j: lane j from the second operand).
  MWM_LANES_AVX2 void interleave_three(reg r, reg g, reg b, reg* v) {
    const __m256i r0 = _mm256_setr_epi32(0, 0, 0, 1, 0, 0, 2, 0);
    const __m256i g0 = _mm256_setr_epi32(0, 0, 0, 0, 1, 0, 0, 2);
    const __m256i b0 = _mm256_setr_epi32(0, 0, 0, 0, 0, 1, 0, 0);
    const __m256i r1 = _mm256_setr_epi32(0, 3, 0, 0, 4, 0, 0, 5);
    const __m256i g1 = _mm256_setr_epi32(0, 0, 3, 0, 0, 4, 0, 0);
    const __m256i b1 = _mm256_setr_epi32(2, 0, 0, 3, 0, 0, 4, 0);
    const __m256i r2 = _mm256_setr_epi32(0, 0, 6, 0, 0, 7, 0, 0);
    const __m256i g2 = _mm256_setr_epi32(5, 0, 0, 6, 0, 0, 7, 0);
    const __m256i b2 = _mm256_setr_epi32(0, 5, 0, 0, 6, 0, 0, 7);
    v[0] = _mm256_blend_ps(
        _mm256_blend_ps(_mm256_permutevar8x32_ps(r, r0), _mm256_permutevar8x32_ps(g, g0), 0x92),
        _mm256_permutevar8x32_ps(b, b0), 0x24);
    v[1] = _mm256_blend_ps(
        _mm256_blend_ps(_mm256_permutevar8x32_ps(r, r1), _mm256_permutevar8x32_ps(g, g1), 0x24),
        _mm256_permutevar8x32_ps(b, b1), 0x49);
    v[2] = _mm256_blend_ps(
        _mm256_blend_ps(_mm256_permutevar8x32_ps(r, r2), _mm256_permutevar8x32_ps(g, g2), 0x49),
        _mm256_permutevar8x32_ps(b, b2), 0x92);
  }

  MWM_LANES_AVX2 float total(const reg* l) {
    const __m256 s8 = _mm256_add_ps(_mm256_add_ps(l[0], l[2]), _mm256_add_ps(l[1], l[3]));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
  }
};

#undef MWM_LANES_AVX512
#undef MWM_LANES_AVX2

MWM_X86_INTRINSIC_WARNINGS_ON

#endif  // MWM_X86_DISPATCH

}  // namespace detail
}  // namespace mwm
