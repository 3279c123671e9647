// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11), and the mwm keying.
#pragma once

#include <cstdint>

#include "config.hpp"

namespace mwm {

struct philox_counter {
  std::uint32_t v[4];
};

struct philox_key {
  std::uint32_t v[2];
};

namespace detail {

constexpr std::uint32_t philox_m0 = 0xD2511F53u;
constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
constexpr std::uint32_t philox_w0 = 0x9E3779B9u;
constexpr std::uint32_t philox_w1 = 0xBB67AE85u;

MWM_HOST_DEVICE MWM_INLINE void mul_hi_lo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                          std::uint32_t& lo) {
  const std::uint64_t product = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  hi = static_cast<std::uint32_t>(product >> 32);
  lo = static_cast<std::uint32_t>(product);
}

MWM_HOST_DEVICE MWM_INLINE philox_counter philox_round(philox_counter c, philox_key k) {
  std::uint32_t hi0, lo0, hi1, lo1;
  mul_hi_lo(philox_m0, c.v[0], hi0, lo0);
  mul_hi_lo(philox_m1, c.v[2], hi1, lo1);
  philox_counter out;
  out.v[0] = hi1 ^ c.v[1] ^ k.v[0];
  out.v[1] = lo1;
  out.v[2] = hi0 ^ c.v[3] ^ k.v[1];
  out.v[3] = lo0;
  return out;
}

}  // namespace detail

namespace steps {

// Philox4x32 with 10 rounds; matches the Random123 reference implementation bit for bit.
MWM_HOST_DEVICE MWM_INLINE philox_counter philox4x32_10(philox_counter counter, philox_key key) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key.v[0] += detail::philox_w0;
      key.v[1] += detail::philox_w1;
    }
    counter = detail::philox_round(counter, key);
  }
  return counter;
}

MWM_HOST_DEVICE MWM_INLINE philox_key key_from_seed(std::uint64_t seed) {
  philox_key key;
  key.v[0] = static_cast<std::uint32_t>(seed);
  key.v[1] = static_cast<std::uint32_t>(seed >> 32);
  return key;
}

// The mwm stream: counter (global_sample_index, patch_index, draw, 0), key = seed. Sample indices
// past 2^32 continue in the fourth word, so they never alias an earlier sample.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t random_u32(std::uint64_t seed,
                                                    std::uint64_t global_sample_index,
                                                    std::uint32_t patch_index, std::uint32_t draw) {
  philox_counter counter;
  counter.v[0] = static_cast<std::uint32_t>(global_sample_index);
  counter.v[1] = patch_index;
  counter.v[2] = draw;
  counter.v[3] = static_cast<std::uint32_t>(global_sample_index >> 32);
  return philox4x32_10(counter, key_from_seed(seed)).v[0];
}

}  // namespace steps

// Draw streams that are not tied to one patch use patch indices from the top of the range,
// which no grid reaches (grids are limited to 2^31 patches).
constexpr std::uint32_t sample_stream_block = 0xFFFFFFF0u;
constexpr std::uint32_t sample_stream_bernoulli = 0xFFFFFFF1u;

namespace steps {

// Uniform double in [0, 1) with 32 random bits, exactly representable.
MWM_HOST_DEVICE MWM_INLINE double u32_to_unit(std::uint32_t bits) {
  return static_cast<double>(bits) * (1.0 / 4294967296.0);
}

}  // namespace steps

}  // namespace mwm
