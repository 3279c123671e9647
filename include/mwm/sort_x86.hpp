// The key order of a sample of at most 256 cells with an AVX-512 bitonic sorting network: no
// branch on the keys, so none mispredicts (a counting sort's fix-up pass mispredicts about once
// per patch pair that shares a bucket). The network sorts 32-bit keys, the top 24 bits of the
// random word (23 and a group bit with two groups) over the 8-bit cell index; where two keys
// share those random bits the short keys may not order them as the full keys do, so the caller
// sorts the full keys instead (about one sample in 900 at 196 cells, 1 in 450 with two groups).
// Otherwise the order is the full keys' order, which is unique: every output stays
// bit-identical.
#pragma once

#include <cstdint>

#include "config.hpp"
#include "keys.hpp"
#include "keys_x86.hpp"
#include "vector_unit.hpp"

namespace mwm {
namespace detail {

// Cells the network sorts at most: their index fits in the 8 low bits of a short key.
constexpr std::int64_t network_sort_max_cells = 256;

#if defined(MWM_X86_DISPATCH)

MWM_X86_INTRINSIC_WARNINGS_OFF

#define MWM_AVX512_INLINE \
  __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw"), always_inline)) inline

namespace network {

// Lanes whose index has bit `j` set: the upper lane of each pair at distance j.
constexpr __mmask16 upper_lanes(int j) {
  unsigned mask = 0;
  for (int lane = 0; lane < 16; ++lane)
    if (lane & j) mask |= 1u << lane;
  return static_cast<__mmask16>(mask);
}

// Each lane pair (l, partner[l]) ends with the smaller value in the lane outside `upper`.
MWM_AVX512_INLINE __m512i exchange_in_register(__m512i a, __m512i partner, __mmask16 upper) {
  return _mm512_mask_max_epu32(_mm512_min_epu32(a, partner), upper, a, partner);
}

// The lane at index lane ^ J.
template <int J>
MWM_AVX512_INLINE __m512i lanes_at_distance(__m512i a) {
  if (J == 1) return _mm512_shuffle_epi32(a, _MM_PERM_CDAB);
  if (J == 2) return _mm512_shuffle_epi32(a, _MM_PERM_BADC);
  if (J == 4) return _mm512_shuffle_i32x4(a, a, 0xB1);
  return _mm512_shuffle_i32x4(a, a, 0x4E);
}

// The lane at index lane ^ (K - 1): each block of K lanes reversed.
template <int K>
MWM_AVX512_INLINE __m512i lanes_mirrored(__m512i a) {
  if (K == 2) return _mm512_shuffle_epi32(a, _MM_PERM_CDAB);
  if (K == 4) return _mm512_shuffle_epi32(a, _MM_PERM_ABCD);
  if (K == 8)
    return _mm512_permutexvar_epi32(
        _mm512_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8), a);
  return _mm512_permutexvar_epi32(
      _mm512_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), a);
}

// The network runs on R registers (a power of two) of which the first L hold keys; the others
// hold only the padding, the largest value, which sits at the top indices and so never moves
// (a compare-exchange keeps the smaller value below): every step that involves only padding,
// or padding as the upper partner, leaves the registers as they are and is skipped.

// Compare-exchange at distance J < 16 inside every register.
template <int L, int J>
MWM_AVX512_INLINE void half_clean_lanes(__m512i* v) {
  for (int r = 0; r < L; ++r)
    v[r] = exchange_in_register(v[r], lanes_at_distance<J>(v[r]), upper_lanes(J));
}

// First step of merging sorted runs of K / 2 lanes (K <= 16): lane i against its mirror.
template <int L, int K>
MWM_AVX512_INLINE void flip_lanes(__m512i* v) {
  for (int r = 0; r < L; ++r)
    v[r] = exchange_in_register(v[r], lanes_mirrored<K>(v[r]), upper_lanes(K / 2));
}

// Compare-exchange of registers r and r + D (D registers = 16 D lanes apart).
template <int R, int L, int D>
MWM_AVX512_INLINE void half_clean_registers(__m512i* v) {
  for (int r = 0; r < R; ++r) {
    if ((r & D) != 0 || r + D >= L) continue;
    const __m512i low = _mm512_min_epu32(v[r], v[r + D]);
    v[r + D] = _mm512_max_epu32(v[r], v[r + D]);
    v[r] = low;
  }
}

// First step of merging sorted runs of B / 2 registers: lane i of the block against lane
// 16 B - 1 - i.
template <int R, int L, int B>
MWM_AVX512_INLINE void flip_registers(__m512i* v) {
  for (int base = 0; base < R; base += B) {
    for (int r = 0; r < B / 2; ++r) {
      const int mirror = base + B - 1 - r;
      if (mirror >= L) continue;
      const __m512i partner = lanes_mirrored<16>(v[mirror]);
      const __m512i low = _mm512_min_epu32(v[base + r], partner);
      v[mirror] = lanes_mirrored<16>(_mm512_max_epu32(v[base + r], partner));
      v[base + r] = low;
    }
  }
}

template <int R, int L, int D>
MWM_AVX512_INLINE void half_clean_registers_down(__m512i* v) {
  if constexpr (D >= 1) {
    half_clean_registers<R, L, D>(v);
    half_clean_registers_down<R, L, D / 2>(v);
  }
}

template <int L>
MWM_AVX512_INLINE void half_clean_all_lanes(__m512i* v) {
  half_clean_lanes<L, 8>(v);
  half_clean_lanes<L, 4>(v);
  half_clean_lanes<L, 2>(v);
  half_clean_lanes<L, 1>(v);
}

// Merges sorted runs of B / 2 registers into runs of B, up to all R registers.
template <int R, int L, int B>
MWM_AVX512_INLINE void merge_register_runs(__m512i* v) {
  if constexpr (B <= R) {
    flip_registers<R, L, B>(v);
    half_clean_registers_down<R, L, B / 4>(v);
    half_clean_all_lanes<L>(v);
    merge_register_runs<R, L, B * 2>(v);
  }
}

// Ascending sort of the 16 R lanes of v[0, R), L of them live (a bitonic network in its "flip"
// form, where every compare-exchange puts the smaller value at the lower index).
template <int R, int L>
MWM_AVX512_INLINE void sort_registers(__m512i* v) {
  flip_lanes<L, 2>(v);
  flip_lanes<L, 4>(v);
  half_clean_lanes<L, 1>(v);
  flip_lanes<L, 8>(v);
  half_clean_lanes<L, 2>(v);
  half_clean_lanes<L, 1>(v);
  flip_lanes<L, 16>(v);
  half_clean_lanes<L, 4>(v);
  half_clean_lanes<L, 2>(v);
  half_clean_lanes<L, 1>(v);
  merge_register_runs<R, L, 2>(v);
}

MWM_AVX512_INLINE __mmask16 first_lanes(std::int64_t count) {
  if (count >= 16) return static_cast<__mmask16>(0xFFFF);
  if (count <= 0) return 0;
  return static_cast<__mmask16>((1u << count) - 1u);
}

// Short keys of cells [16 r, 16 r + 16), from their full keys in cell order: the top bits of the
// random word over the cell's group bit (two groups: 23 random bits, then the group) or none
// (one group: 24 random bits) over the 8-bit cell, and 0xFFFFFFFF past n, which sorts last (a
// real short key is below it when n < 256). The group bit sits below every random bit, so it
// changes the order only among keys that tie on those bits, which the caller rejects anyway.
MWM_AVX512_INLINE __m512i load_short_keys(const selection_key* keys, const std::int32_t* groups,
                                          std::int64_t n, int r) {
  const std::int64_t first = 16 * static_cast<std::int64_t>(r);
  const __mmask16 valid = first_lanes(n - first);
  const __m512i random_bits = _mm512_set1_epi64(groups ? 0xFFFFFE00 : 0xFFFFFF00);
  const __m512i cell_mask = _mm512_set1_epi64(0xFF);
  __m256i halves[2];
  for (int h = 0; h < 2; ++h) {
    const auto lanes = static_cast<__mmask8>(valid >> (8 * h));
    const __m512i full = _mm512_maskz_loadu_epi64(lanes, keys + first + 8 * h);
    const __m512i top = _mm512_and_si512(_mm512_srli_epi64(full, 32), random_bits);
    halves[h] = _mm512_cvtepi64_epi32(_mm512_or_si512(top, _mm512_and_si512(full, cell_mask)));
  }
  __m512i packed = _mm512_inserti64x4(_mm512_castsi256_si512(halves[0]), halves[1], 1);
  if (groups) {
    const __m512i group = _mm512_maskz_loadu_epi32(valid, groups + first);
    packed = _mm512_or_si512(packed, _mm512_slli_epi32(group, 8));
  }
  return _mm512_mask_mov_epi32(_mm512_set1_epi32(-1), valid, packed);
}

// The cells of one sorted register's valid lanes, as two registers of 64-bit cells.
MWM_AVX512_INLINE void cells_of(__m512i sorted, __m512i* low, __m512i* high) {
  const __m512i cell = _mm512_and_si512(sorted, _mm512_set1_epi32(0xFF));
  *low = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(cell));
  *high = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(cell, 1));
}

// Appends the cells of `lanes` (of low: lanes 0-7, high: 8-15) at order[place], in lane order.
__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,popcnt"), always_inline)) inline void
append_lanes(__m512i low, __m512i high, unsigned lanes, std::int64_t* order, std::int64_t& place) {
  const auto lanes_low = static_cast<__mmask8>(lanes);
  const auto lanes_high = static_cast<__mmask8>(lanes >> 8);
  const int count_low = _mm_popcnt_u32(lanes_low);
  const int count_high = _mm_popcnt_u32(lanes_high);
  _mm512_mask_storeu_epi64(order + place, static_cast<__mmask8>((1u << count_low) - 1u),
                           _mm512_maskz_compress_epi64(lanes_low, low));
  place += count_low;
  _mm512_mask_storeu_epi64(order + place, static_cast<__mmask8>((1u << count_high) - 1u),
                           _mm512_maskz_compress_epi64(lanes_high, high));
  place += count_high;
}

// The sample's cells (L live registers: n in (16 (L - 1), 16 L]) sorted on the smallest power
// of two of registers, then written out: with `groups` (two groups, 0 and 1, in cell order)
// as the canonical order of partition_sorted_cells in random visible order, keep[g] visible per
// group; without, as the cells in key order. False, with nothing usable written, on a tie.
template <int L>
__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,bmi2,popcnt"))) inline bool sort_cells(
    const selection_key* keys, std::int64_t n, const std::int32_t* groups, const std::int64_t* keep,
    std::int64_t* out) {
  constexpr int R = L <= 1 ? 1 : L <= 2 ? 2 : L <= 4 ? 4 : L <= 8 ? 8 : 16;
  __m512i v[R];
  for (int r = 0; r < L; ++r) v[r] = load_short_keys(keys, groups, n, r);
  for (int r = L; r < R; ++r) v[r] = _mm512_set1_epi32(-1);
  sort_registers<R, L>(v);
  // Sorted, two short keys with the same random bits are neighbours: compare each lane with
  // the next, over the pairs of real keys (i + 1 < n).
  const __m512i same_random_bits = _mm512_set1_epi32(groups ? 512 : 256);
  __mmask16 ties = 0;
  for (int r = 0; r < L; ++r) {
    const __m512i after = r + 1 < R ? v[r + 1] : _mm512_set1_epi32(-1);
    const __m512i next = _mm512_alignr_epi32(after, v[r], 1);
    const __mmask16 pairs = first_lanes(n - 1 - 16 * static_cast<std::int64_t>(r));
    ties |= _mm512_mask_cmplt_epu32_mask(pairs, _mm512_xor_si512(v[r], next), same_random_bits);
  }
  if (ties != 0) return false;
  if (!groups) {
    for (int r = 0; r < L; ++r) {
      const std::int64_t first = 16 * static_cast<std::int64_t>(r);
      const __mmask16 valid = first_lanes(n - first);
      __m512i low, high;
      cells_of(v[r], &low, &high);
      _mm512_mask_storeu_epi64(out + first, static_cast<__mmask8>(valid), low);
      _mm512_mask_storeu_epi64(out + first + 8, static_cast<__mmask8>(valid >> 8), high);
    }
    return true;
  }
  // The split, 16 keys at a time: the visible keys of a register are the first left0 of its
  // group-0 lanes and the first left1 of its group-1 lanes (pdep of that many low bits onto
  // each group's lane mask); they go to the front, the others to the back, in key order.
  std::int64_t left0 = keep[0];
  std::int64_t left1 = keep[1];
  std::int64_t front = 0;
  std::int64_t back = keep[0] + keep[1];
  for (int r = 0; r < L; ++r) {
    const unsigned valid = first_lanes(n - 16 * static_cast<std::int64_t>(r));
    const unsigned in1 =
        _mm512_mask_test_epi32_mask(static_cast<__mmask16>(valid), v[r], _mm512_set1_epi32(0x100));
    const unsigned in0 = valid & ~in1;
    const auto take0 = static_cast<unsigned>(left0 < 16 ? left0 : 16);
    const auto take1 = static_cast<unsigned>(left1 < 16 ? left1 : 16);
    const unsigned shown = _pdep_u32((1u << take0) - 1u, in0) | _pdep_u32((1u << take1) - 1u, in1);
    left0 -= _mm_popcnt_u32(shown & in0);
    left1 -= _mm_popcnt_u32(shown & in1);
    __m512i low, high;
    cells_of(v[r], &low, &high);
    append_lanes(low, high, shown, out, front);
    append_lanes(low, high, valid & ~shown, out, back);
  }
  return true;
}

using sorter = bool (*)(const selection_key*, std::int64_t, const std::int32_t*,
                        const std::int64_t*, std::int64_t*);

inline bool sort_cells_by_live_registers(const selection_key* keys, std::int64_t n,
                                         const std::int32_t* groups, const std::int64_t* keep,
                                         std::int64_t* out) {
  static constexpr sorter by_live_registers[16] = {
      sort_cells<1>,  sort_cells<2>,  sort_cells<3>,  sort_cells<4>,
      sort_cells<5>,  sort_cells<6>,  sort_cells<7>,  sort_cells<8>,
      sort_cells<9>,  sort_cells<10>, sort_cells<11>, sort_cells<12>,
      sort_cells<13>, sort_cells<14>, sort_cells<15>, sort_cells<16>};
  return by_live_registers[(n - 1) / 16](keys, n, groups, keep, out);
}

}  // namespace network

#undef MWM_AVX512_INLINE

MWM_X86_INTRINSIC_WARNINGS_ON

#endif  // MWM_X86_DISPATCH

// Whether the network runs here: an x86 CPU with AVX-512 (x86_vector_bits) and 0 < n <= 256.
inline bool network_sorts(std::int64_t n) {
#if defined(MWM_X86_DISPATCH)
  return n > 0 && n <= network_sort_max_cells && x86_vector_bits() == 512;
#else
  (void)n;
  return false;
#endif
}

// Cells of keys[0, n) (the keys of cells 0 .. n-1, in cell order) in ascending key order, into
// cells[0, n), with the network above. False, with cells[] unspecified, when the network does
// not run here (network_sorts) or two keys share the top 24 bits of their random word: the caller
// then sorts the full keys.
inline bool network_sort_cells(const selection_key* keys, std::int64_t n, std::int64_t* cells) {
#if defined(MWM_X86_DISPATCH)
  if (!network_sorts(n)) return false;
  return network::sort_cells_by_live_registers(keys, n, nullptr, nullptr, cells);
#else
  (void)keys;
  (void)cells;
  return network_sorts(n);
#endif
}

// The canonical order in random visible order of a sample with two groups (groups[cell] is 0 or
// 1, keep[g] of group g visible): what partition_sorted_cells writes from the sorted cells, with
// the network and the split fused (the group rides in the short key, so no lookup per key).
// False, with order[] unspecified, when the network does not run here or two keys share the top
// 23 bits of their random word.
inline bool network_order_two_groups(const selection_key* keys, std::int64_t n,
                                     const std::int32_t* groups, const std::int64_t* keep,
                                     std::int64_t* order) {
#if defined(MWM_X86_DISPATCH)
  if (!network_sorts(n)) return false;
  return network::sort_cells_by_live_registers(keys, n, groups, keep, order);
#else
  (void)keys;
  (void)groups;
  (void)keep;
  (void)order;
  return network_sorts(n);
#endif
}

}  // namespace detail
}  // namespace mwm
