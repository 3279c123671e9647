// ids_restore, mask and noise of one sample on AVX-512: ids_restore by scatter instructions, then
// mask and noise in order from it (mask = position >= visible, noise = position / N, the same
// float division as fill_position_noise), instead of three scattered scalar stores per patch.
#pragma once

#include <cstdint>

#include "keys_x86.hpp"
#include "vector_unit.hpp"

namespace mwm {
namespace detail {

#if defined(MWM_X86_DISPATCH)

MWM_X86_INTRINSIC_WARNINGS_OFF

__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw"))) inline void
write_restore_mask_noise_avx512(const std::int64_t* order, std::int64_t n, std::int64_t visible,
                                std::int64_t* restore, std::uint8_t* mask, float* noise) {
  __m512i position = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm512_i64scatter_epi64(restore, _mm512_loadu_si512(order + i), position, 8);
    position = _mm512_add_epi64(position, _mm512_set1_epi64(8));
  }
  for (; i < n; ++i) restore[order[i]] = i;
  const __m512i first_masked = _mm512_set1_epi64(visible);
  const __m512 count = _mm512_set1_ps(static_cast<float>(n));
  std::int64_t patch = 0;
  for (; patch + 16 <= n; patch += 16) {
    const __m512i low = _mm512_loadu_si512(restore + patch);
    const __m512i high = _mm512_loadu_si512(restore + patch + 8);
    const auto masked = static_cast<__mmask16>(
        _mm512_cmpge_epi64_mask(low, first_masked) |
        (static_cast<unsigned>(_mm512_cmpge_epi64_mask(high, first_masked)) << 8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(mask + patch), _mm_maskz_set1_epi8(masked, 1));
    // Positions are below 2^24 (max_patches_for_noise): the conversion is exact.
    const __m512 positions = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtepi64_ps(low)),
                                                _mm512_cvtepi64_ps(high), 1);
    _mm512_storeu_ps(noise + patch, _mm512_div_ps(positions, count));
  }
  for (; patch < n; ++patch) {
    mask[patch] = restore[patch] >= visible ? 1 : 0;
    noise[patch] = static_cast<float>(restore[patch]) / static_cast<float>(n);
  }
}

MWM_X86_INTRINSIC_WARNINGS_ON

#endif  // MWM_X86_DISPATCH

// write_restore_mask_noise_avx512 where the CPU has AVX-512; false (nothing written) otherwise.
inline bool write_restore_mask_noise_vector(const std::int64_t* order, std::int64_t n,
                                            std::int64_t visible, std::int64_t* restore,
                                            std::uint8_t* mask, float* noise) {
#if defined(MWM_X86_DISPATCH)
  if (x86_vector_bits() != 512) return false;
  write_restore_mask_noise_avx512(order, n, visible, restore, mask, noise);
  return true;
#else
  (void)order;
  (void)n;
  (void)visible;
  (void)restore;
  (void)mask;
  (void)noise;
  return false;
#endif
}

}  // namespace detail
}  // namespace mwm
