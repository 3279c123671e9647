// random_key of a sample's cells [0, n) on x86 vector units: Philox4x32-10 written with the
// 32x32->64 multiply (pmuludq) that compilers do not pick for it on their own (GCC vectorizes the
// portable loop with a 64x64 multiply and shuffles). Integer arithmetic only: the same bits as
// steps::random_key, which tests/cpp/test_outputs.cpp checks for every variant the CPU runs.
#pragma once

#include <cstdint>

#include "config.hpp"
#include "keys.hpp"
#include "philox.hpp"
#include "vector_unit.hpp"

namespace mwm {
namespace detail {

// The portable loop, which every variant must match.
inline void fill_random_keys_loop(selection_key* out, std::int64_t n, std::uint64_t seed,
                                  std::uint64_t global_sample_index) {
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = steps::random_key(seed, global_sample_index, static_cast<std::uint32_t>(i));
}

// What the mwm stream's counter (sample_lo, patch, 0, sample_hi) makes constant across a
// sample's patches: the round keys, and the products of the first rounds that do not involve the
// patch index (round 0 multiplies the sample word and the zero draw word; round 1's second and
// round 2's first product are of words round 0 left uniform). Per patch, rounds 1 and 2 then
// cost one product each and the last round one: 15 products instead of 20.
struct philox_sample_constants {
  std::uint32_t key0[10];
  std::uint32_t key1[10];
  std::uint32_t round1_x3_key;  // round 0's lo0, xored with round 1's key1
  std::uint32_t round2_x0_key;  // round 1's uniform lo1, xored with round 2's key0
  std::uint32_t round2_x2_key;  // round 2's uniform hi0, xored with round 2's key1
  std::uint32_t round2_x3;      // round 2's uniform lo0
};

inline philox_sample_constants make_philox_sample_constants(std::uint64_t seed,
                                                            std::uint64_t global_sample_index) {
  philox_sample_constants c;
  c.key0[0] = static_cast<std::uint32_t>(seed);
  c.key1[0] = static_cast<std::uint32_t>(seed >> 32);
  for (int r = 1; r < 10; ++r) {
    c.key0[r] = c.key0[r - 1] + philox_w0;
    c.key1[r] = c.key1[r - 1] + philox_w1;
  }
  std::uint32_t hi, lo;
  mul_hi_lo(philox_m0, static_cast<std::uint32_t>(global_sample_index), hi, lo);
  const std::uint32_t x2 = hi ^ static_cast<std::uint32_t>(global_sample_index >> 32) ^ c.key1[0];
  c.round1_x3_key = lo ^ c.key1[1];
  mul_hi_lo(philox_m1, x2, hi, lo);
  const std::uint32_t round1_x0 = hi ^ c.key0[1];  // the word it is xored with is round 0's lo1 = 0
  c.round2_x0_key = lo ^ c.key0[2];
  mul_hi_lo(philox_m0, round1_x0, hi, lo);
  c.round2_x2_key = hi ^ c.key1[2];
  c.round2_x3 = lo;
  return c;
}

#if defined(MWM_X86_DISPATCH)

MWM_X86_INTRINSIC_WARNINGS_OFF

// Each 64-bit lane carries one patch's 32-bit Philox word in its low half; the high half is
// left over from products and never read (pmuludq reads the low halves, the key shifts it out).
__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw"))) inline void fill_random_keys_avx512(
    selection_key* out, std::int64_t n, std::uint64_t seed, std::uint64_t global_sample_index) {
  const philox_sample_constants c = make_philox_sample_constants(seed, global_sample_index);
  const __m512i m0 = _mm512_set1_epi64(philox_m0);
  const __m512i m1 = _mm512_set1_epi64(philox_m1);
  __m512i patch = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  for (std::int64_t i = 0; i < n; i += 8) {
    const __m512i x0 = _mm512_xor_si512(patch, _mm512_set1_epi64(c.key0[0]));
    const __m512i round1_p0 = _mm512_mul_epu32(m0, x0);
    const __m512i x2 =
        _mm512_xor_si512(_mm512_srli_epi64(round1_p0, 32), _mm512_set1_epi64(c.round1_x3_key));
    const __m512i round2_p1 = _mm512_mul_epu32(m1, x2);
    __m512i w0 =
        _mm512_xor_si512(_mm512_srli_epi64(round2_p1, 32), _mm512_set1_epi64(c.round2_x0_key));
    __m512i w1 = round2_p1;
    __m512i w2 = _mm512_xor_si512(round1_p0, _mm512_set1_epi64(c.round2_x2_key));
    __m512i w3 = _mm512_set1_epi64(c.round2_x3);
    for (int r = 3; r < 9; ++r) {
      const __m512i p0 = _mm512_mul_epu32(m0, w0);
      const __m512i p1 = _mm512_mul_epu32(m1, w2);
      w0 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), w1, _mm512_set1_epi64(c.key0[r]),
                                     0x96);  // three-way xor
      w2 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), w3, _mm512_set1_epi64(c.key1[r]),
                                     0x96);
      w1 = p1;
      w3 = p0;
    }
    const __m512i last = _mm512_mul_epu32(m1, w2);  // round 9: only word 0 is the result
    const __m512i word = _mm512_ternarylogic_epi64(_mm512_srli_epi64(last, 32), w1,
                                                   _mm512_set1_epi64(c.key0[9]), 0x96);
    const __m512i key = _mm512_or_si512(_mm512_slli_epi64(word, 32), patch);
    if (n - i >= 8) {
      _mm512_storeu_si512(out + i, key);
    } else {
      _mm512_mask_storeu_epi64(out + i, static_cast<__mmask8>((1u << (n - i)) - 1u), key);
    }
    patch = _mm512_add_epi64(patch, _mm512_set1_epi64(8));
  }
}

// The same rounds four lanes wide.
__attribute__((target("avx2"))) inline void fill_random_keys_avx2(
    selection_key* out, std::int64_t n, std::uint64_t seed, std::uint64_t global_sample_index) {
  const philox_sample_constants c = make_philox_sample_constants(seed, global_sample_index);
  const __m256i m0 = _mm256_set1_epi64x(philox_m0);
  const __m256i m1 = _mm256_set1_epi64x(philox_m1);
  __m256i patch = _mm256_setr_epi64x(0, 1, 2, 3);
  std::int64_t i = 0;
  for (; i < n; i += 4) {
    const __m256i x0 = _mm256_xor_si256(patch, _mm256_set1_epi64x(c.key0[0]));
    const __m256i round1_p0 = _mm256_mul_epu32(m0, x0);
    const __m256i x2 =
        _mm256_xor_si256(_mm256_srli_epi64(round1_p0, 32), _mm256_set1_epi64x(c.round1_x3_key));
    const __m256i round2_p1 = _mm256_mul_epu32(m1, x2);
    __m256i w0 =
        _mm256_xor_si256(_mm256_srli_epi64(round2_p1, 32), _mm256_set1_epi64x(c.round2_x0_key));
    __m256i w1 = round2_p1;
    __m256i w2 = _mm256_xor_si256(round1_p0, _mm256_set1_epi64x(c.round2_x2_key));
    __m256i w3 = _mm256_set1_epi64x(c.round2_x3);
    for (int r = 3; r < 9; ++r) {
      const __m256i p0 = _mm256_mul_epu32(m0, w0);
      const __m256i p1 = _mm256_mul_epu32(m1, w2);
      w0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), w1),
                            _mm256_set1_epi64x(c.key0[r]));
      w2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), w3),
                            _mm256_set1_epi64x(c.key1[r]));
      w1 = p1;
      w3 = p0;
    }
    const __m256i last = _mm256_mul_epu32(m1, w2);
    const __m256i word = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(last, 32), w1),
                                          _mm256_set1_epi64x(c.key0[9]));
    const __m256i key = _mm256_or_si256(_mm256_slli_epi64(word, 32), patch);
    if (n - i >= 4) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), key);
    } else {
      const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
      const __m256i store = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - i), lanes);
      _mm256_maskstore_epi64(reinterpret_cast<long long*>(out + i), store, key);
    }
    patch = _mm256_add_epi64(patch, _mm256_set1_epi64x(4));
  }
}

MWM_X86_INTRINSIC_WARNINGS_ON

#endif  // MWM_X86_DISPATCH

inline void fill_random_keys(selection_key* out, std::int64_t n, std::uint64_t seed,
                             std::uint64_t global_sample_index) {
#if defined(MWM_X86_DISPATCH)
  const int bits = x86_vector_bits();
  if (bits == 512) return fill_random_keys_avx512(out, n, seed, global_sample_index);
  if (bits == 256) return fill_random_keys_avx2(out, n, seed, global_sample_index);
#endif
  fill_random_keys_loop(out, n, seed, global_sample_index);
}

}  // namespace detail
}  // namespace mwm
