// Integer selection keys: within a group, the smallest keys stay visible. The patch index sits in
// the low 32 bits, so keys never tie and CPU and GPU order patches identically.
#pragma once

#include <math.h>

#include <cstdint>

#include "config.hpp"
#include "finite.hpp"
#include "philox.hpp"

namespace mwm {

using selection_key = std::uint64_t;

namespace steps {

MWM_HOST_DEVICE MWM_INLINE selection_key make_key(std::uint32_t priority, std::uint32_t index) {
  return (static_cast<selection_key>(priority) << 32) | index;
}

MWM_HOST_DEVICE MWM_INLINE std::uint32_t key_index(selection_key key) {
  return static_cast<std::uint32_t>(key);
}

// Uniform key: (random_u32 << 32) | patch_index.
MWM_HOST_DEVICE MWM_INLINE selection_key random_key(std::uint64_t seed,
                                                    std::uint64_t global_sample_index,
                                                    std::uint32_t patch_index) {
  return make_key(random_u32(seed, global_sample_index, patch_index, 0), patch_index);
}

}  // namespace steps

namespace detail {

// Position of the highest set bit of a nonzero value (the same answer on every path).
MWM_HOST_DEVICE MWM_INLINE int highest_bit(std::uint64_t value) {
#if defined(__CUDA_ARCH__)
  return 63 - __clzll(static_cast<long long>(value));
#elif defined(__GNUC__) || defined(__clang__)
  return 63 - __builtin_clzll(value);
#else
  int msb = 0;
  while ((value >> (msb + 1)) != 0) ++msb;
  return msb;
#endif
}

// -log2((bits + 0.5) / 2^32) in unsigned Q8.24, with integer arithmetic only so that every
// compiler and device gives the same bits.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t neg_log2_q24(std::uint32_t bits) {
  // u = x / 2^33 with x odd in [1, 2^33).
  const std::uint64_t x = (static_cast<std::uint64_t>(bits) << 1) | 1u;
  const int msb = highest_bit(x);
  // Mantissa m = x / 2^msb in [1, 2), as Q1.31.
  std::uint64_t m = msb >= 31 ? (x >> (msb - 31)) : (x << (31 - msb));
  std::uint32_t fraction = 0;
  for (int bit = 23; bit >= 0; --bit) {
    m = (m * m) >> 31;  // in [1, 4) as Q1.31
    // Without a branch: the outcome is a coin flip, so a branch would mispredict half the time.
    const std::uint64_t carry = m >> 32;
    m >>= carry;
    fraction |= static_cast<std::uint32_t>(carry) << bit;
  }
  // log2(x) = msb + fraction; -log2(u) = 33 - log2(x) >= 0 since x < 2^33.
  const std::uint64_t log2_x = (static_cast<std::uint64_t>(msb) << 24) | fraction;
  return static_cast<std::uint32_t>((std::uint64_t(33) << 24) - log2_x);
}

// Monotone 32-bit code of a 64-bit value: 6-bit exponent, 26 bits after the leading one.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t compress_u64(std::uint64_t value) {
  if (value == 0) return 0;
  const int msb = highest_bit(value);
  const std::uint64_t mantissa =
      msb >= 26 ? (value >> (msb - 26)) : (value << (26 - msb));  // 27 bits, top one set
  return (static_cast<std::uint32_t>(msb + 1) << 26) |
         static_cast<std::uint32_t>(mantissa & ((std::uint64_t(1) << 26) - 1));
}

}  // namespace detail

namespace steps {

// Value in [0, 1] as Q0.16 (65536 = 1.0); NaN and negatives map to 0. A lone multiply and
// rint, so no compiler can fuse it into something that rounds differently.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t unit_q16(double value) {
  const double clamped = value > 0.0 ? (value < 1.0 ? value : 1.0) : 0.0;
  return static_cast<std::uint32_t>(rint(clamped * 65536.0));
}

// Weight w(score) = floor + (1 - floor) * clamp(score, 0, 1) in Q0.16, integer arithmetic; a
// non-finite score (allowed by nan_policy::zero) weighs as zero.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t weight_q16(float score, std::uint32_t floor_q16) {
  const std::uint64_t s = unit_q16(static_cast<double>(detail::finite_or_zero(score)));
  return floor_q16 + static_cast<std::uint32_t>(((65536u - floor_q16) * s + 32768u) >> 16);
}

// Efraimidis-Spirakis: patch masked with odds w means masking the patches of smallest E / w with
// E ~ Exp(1) (E measured in bits: -log2 u). Visible first means largest E / w first, so the key
// is the complement of E / w. Weight zero gives E / w = infinity: kept first.
MWM_HOST_DEVICE MWM_INLINE selection_key weighted_key(std::uint64_t seed,
                                                      std::uint64_t global_sample_index,
                                                      std::uint32_t patch_index,
                                                      std::uint32_t weight) {
  if (weight == 0) return make_key(0, patch_index);
  const std::uint32_t bits = random_u32(seed, global_sample_index, patch_index, 0);
  const std::uint64_t exponential = detail::neg_log2_q24(bits);
  const std::uint64_t priority = (exponential << 16) / weight;  // E / w, Q8.24
  return make_key(~detail::compress_u64(priority), patch_index);
}

}  // namespace steps

}  // namespace mwm
