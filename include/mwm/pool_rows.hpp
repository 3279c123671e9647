// The area mean of a heatmap's cells, read row by row: the rows under one band of cells (the
// cells sharing d and h) are read once, in memory order, and each row adds its stretch of
// pixels to every cell of the band. Each cell's eight lanes receive the same values in the same
// order as pool_cell_reading's (rows in order, pixel x to lane (x - begin) % mean_lanes), so
// the scores have the same bits; only the order between cells changes, which streams the
// heatmap instead of revisiting every row once per cell. On x86 one cell's lanes are one
// AVX-512 register (or two AVX2 ones).
#pragma once

#include <cstdint>
#include <vector>

#include "grid.hpp"
#include "heatmap.hpp"
#include "keys_x86.hpp"

namespace mwm {
namespace detail {

// Rows that a row step adds at once, in order, to the same cells: each cell's lanes are then
// loaded and stored once per group instead of once per row.
constexpr int rows_per_step = 4;

// Reading rows_per_step rows side by side leaves the CPU's stream prefetcher behind (measured on
// an AMD EPYC: 4-5 GB/s from memory against 14-20 GB/s with this), so each step asks for the
// next step's rows while it adds its own.
constexpr int prefetch_rows = rows_per_step;

inline void prefetch_rows_ahead(const float* from, std::int64_t pixels, const float* end) {
  constexpr std::int64_t pixels_per_line = 64 / sizeof(float);
  for (std::int64_t k = 0; k < pixels && from + k < end; k += pixels_per_line)
    __builtin_prefetch(from + k);
}

// One cell's columns: [begin, end), of which [begin, full_end) fills whole groups of
// mean_lanes pixels.
struct cell_columns {
  std::int64_t begin;
  std::int64_t full_end;
  std::int64_t end;
};

inline cell_columns columns_of(source_range range) {
  return cell_columns{range.begin,
                      range.begin + (range.end - range.begin) / mean_lanes * mean_lanes, range.end};
}

// The portable row step, which every vector variant must match bit for bit: rows[0 .. count)
// added in order to each of `cells` cells.
template <bool ZeroNonFinite>
inline void add_rows_to_cells_loop(const float* const* rows, int row_count,
                                   const cell_columns* cells, std::int64_t count, double* lanes) {
  for (std::int64_t c = 0; c < count; ++c)
    for (int r = 0; r < row_count; ++r)
      add_row_to_lanes<ZeroNonFinite>(rows[r], cells[c].begin, cells[c].end,
                                      lanes + c * mean_lanes);
}

#if defined(MWM_X86_DISPATCH)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
// GCC 12 reads _mm512_undefined_pd inside _mm512_cvtps_pd as uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

template <bool ZeroNonFinite>
__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw"))) inline __m512d add_pixels_avx512(
    __m512d lanes, __mmask8 take, const float* pixels) {
  __m256 v = _mm256_maskz_loadu_ps(take, pixels);
  // finite_or_zero: v - v is 0 exactly for finite v (NaN - NaN and inf - inf are NaN).
  if (ZeroNonFinite)
    v = _mm256_maskz_mov_ps(
        _mm256_cmp_ps_mask(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_EQ_OQ), v);
  // Lanes outside `take` are not added to at all, as in the portable loop.
  return _mm512_mask_add_pd(lanes, take, lanes, _mm512_cvtps_pd(v));
}

template <bool ZeroNonFinite>
__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw"))) inline void add_rows_to_cells_avx512(
    const float* const* rows, int row_count, const cell_columns* cells, std::int64_t count,
    double* lanes) {
  for (std::int64_t c = 0; c < count; ++c) {
    double* cell = lanes + c * mean_lanes;
    __m512d sum = _mm512_loadu_pd(cell);
    const std::int64_t begin = cells[c].begin;
    const std::int64_t full_end = cells[c].full_end;
    const std::int64_t end = cells[c].end;
    const auto tail = static_cast<__mmask8>((1u << (end - full_end)) - 1u);
    for (int r = 0; r < row_count; ++r) {
      const float* row = rows[r];
      for (std::int64_t x = begin; x < full_end; x += mean_lanes)
        sum = add_pixels_avx512<ZeroNonFinite>(sum, 0xff, row + x);
      if (tail) sum = add_pixels_avx512<ZeroNonFinite>(sum, tail, row + full_end);
    }
    _mm512_storeu_pd(cell, sum);
  }
}

template <bool ZeroNonFinite>
__attribute__((target("avx2"))) inline void add_pixels_avx2(__m256d& low, __m256d& high,
                                                            __m256i take, const float* pixels) {
  __m256 v = _mm256_maskload_ps(pixels, take);
  if (ZeroNonFinite)
    v = _mm256_and_ps(v, _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_EQ_OQ));
  // Widen the 32-bit lane mask to the doubles' 64 bits, then keep untaken lanes as they are.
  const __m256d take_low = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(take)));
  const __m256d take_high =
      _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(take, 1)));
  low = _mm256_blendv_pd(low, _mm256_add_pd(low, _mm256_cvtps_pd(_mm256_castps256_ps128(v))),
                         take_low);
  high = _mm256_blendv_pd(high, _mm256_add_pd(high, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))),
                          take_high);
}

template <bool ZeroNonFinite>
__attribute__((target("avx2"))) inline void add_rows_to_cells_avx2(const float* const* rows,
                                                                   int row_count,
                                                                   const cell_columns* cells,
                                                                   std::int64_t count,
                                                                   double* lanes) {
  const __m256i all = _mm256_set1_epi32(-1);
  const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (std::int64_t c = 0; c < count; ++c) {
    double* cell = lanes + c * mean_lanes;
    __m256d low = _mm256_loadu_pd(cell);
    __m256d high = _mm256_loadu_pd(cell + 4);
    const std::int64_t begin = cells[c].begin;
    const std::int64_t full_end = cells[c].full_end;
    const std::int64_t end = cells[c].end;
    const __m256i tail =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(end - full_end)), lane_index);
    for (int r = 0; r < row_count; ++r) {
      const float* row = rows[r];
      for (std::int64_t x = begin; x < full_end; x += mean_lanes)
        add_pixels_avx2<ZeroNonFinite>(low, high, all, row + x);
      if (full_end < end) add_pixels_avx2<ZeroNonFinite>(low, high, tail, row + full_end);
    }
    _mm256_storeu_pd(cell, low);
    _mm256_storeu_pd(cell + 4, high);
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // MWM_X86_DISPATCH

// The row step on the widest vector unit this CPU has; `vector_bits` 0 asks the CPU, 128 forces
// the portable loop (tests compare the variants).
template <bool ZeroNonFinite>
inline void add_rows_to_cells(const float* const* rows, int row_count, const cell_columns* cells,
                              std::int64_t count, double* lanes, int vector_bits) {
#if defined(MWM_X86_DISPATCH)
  if (vector_bits == 0) vector_bits = x86_vector_bits();
  if (vector_bits == 512)
    return add_rows_to_cells_avx512<ZeroNonFinite>(rows, row_count, cells, count, lanes);
  if (vector_bits == 256)
    return add_rows_to_cells_avx2<ZeroNonFinite>(rows, row_count, cells, count, lanes);
#else
  (void)vector_bits;
#endif
  add_rows_to_cells_loop<ZeroNonFinite>(rows, row_count, cells, count, lanes);
}

// The area mean of every cell of `grid` over one heatmap, into scores[grid.index(d, h, w)]:
// the same bits as pool_cell_reading<ZeroNonFinite> with pool_reduction::mean, cell by cell.
// Each depth slab of cells is read in memory order, row after row, each row going to the cells
// of the bands it lies in (one, or two where the cells of a non-dividing size overlap); a cell
// still receives its rows in pool_cell_reading's order (z, then y). `lanes`, `columns` and
// `bands` are scratch the caller may keep between heatmaps.
template <bool ZeroNonFinite>
inline void pool_mean_by_rows(const float* heat, heatmap_shape shape, grid_shape grid,
                              float* scores, std::vector<double>& lanes,
                              std::vector<cell_columns>& columns, std::vector<source_range>& bands,
                              int vector_bits = 0) {
  columns.resize(static_cast<std::size_t>(grid.width));
  bands.resize(static_cast<std::size_t>(grid.height));
  for (std::int64_t w = 0; w < grid.width; ++w)
    columns[w] = columns_of(adaptive_range(w, shape.width, grid.width));
  for (std::int64_t h = 0; h < grid.height; ++h)
    bands[h] = adaptive_range(h, shape.height, grid.height);
  const std::int64_t band_lanes = grid.width * mean_lanes;
  lanes.assign(static_cast<std::size_t>(grid.num_patches() * mean_lanes), 0.0);
  const float* rows[rows_per_step];
  for (std::int64_t d = 0; d < grid.depth; ++d) {
    const auto rd = adaptive_range(d, shape.depth, grid.depth);
    double* slab = lanes.data() + d * grid.height * band_lanes;
    for (auto z = rd.begin; z < rd.end; ++z) {
      const float* plane = heat + z * shape.height * shape.width;
      std::int64_t first_band = 0;  // the first band whose rows reach row y
      for (std::int64_t y = 0; y < shape.height;) {
        while (bands[first_band].end <= y) ++first_band;
        std::int64_t last_band = first_band;  // one past the bands holding row y
        while (last_band < grid.height && bands[last_band].begin <= y) ++last_band;
        // Rows below y that lie in exactly the same bands join its step.
        int count = 0;
        for (; count < rows_per_step && y < shape.height; ++count, ++y) {
          if (count > 0 && (bands[first_band].end <= y ||
                            (last_band < grid.height && bands[last_band].begin <= y)))
            break;
          rows[count] = plane + y * shape.width;
        }
        prefetch_rows_ahead(plane + (y + prefetch_rows) * shape.width, count * shape.width,
                            heat + shape.num_pixels());
        for (auto h = first_band; h < last_band; ++h)
          add_rows_to_cells<ZeroNonFinite>(rows, count, columns.data(), grid.width,
                                           slab + h * band_lanes, vector_bits);
      }
    }
  }
  for (std::int64_t d = 0; d < grid.depth; ++d) {
    const auto rd = adaptive_range(d, shape.depth, grid.depth);
    for (std::int64_t h = 0; h < grid.height; ++h) {
      const auto rows_in_cell = (rd.end - rd.begin) * (bands[h].end - bands[h].begin);
      for (std::int64_t w = 0; w < grid.width; ++w) {
        const auto count = static_cast<double>(rows_in_cell * (columns[w].end - columns[w].begin));
        scores[grid.index(d, h, w)] = static_cast<float>(
            sum_of_lanes(lanes.data() + grid.index(d, h, w) * mean_lanes) / count);
      }
    }
  }
}

}  // namespace detail
}  // namespace mwm
