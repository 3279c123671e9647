// Host-side band gathering of the loss (CPU drivers only): the grid.width patches of one
// (b, gd, gh) share their image rows, so a band is read row after row (a few long streams the
// prefetcher follows, instead of one short stream per patch row) into a buffer in patch-vector
// order, where the contiguous per-patch functions of loss_patch.hpp run. Flat patch index
// b * N + n = band * grid.width + x.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define MWM_LOSS_SSE2 1
#endif

#include "loss_options.hpp"

namespace mwm {

namespace detail {

// Inlined wherever it is called: into the walk of a copy written for a wider vector unit (a
// lambda with that target, loss_x86_passes.hpp), and, for the prefetch hints, because GCC finds
// a function that only prefetches free of side effects and drops calls to it that it has not
// inlined first.
#if defined(__GNUC__) || defined(__clang__)
#define MWM_BAND_INLINE __attribute__((always_inline)) inline
#else
#define MWM_BAND_INLINE inline
#endif

// A hint that `address` will be read soon, into L2 (host code; a no-op where the builtin is
// missing): a band's predictions prefetched into L1 would push the gathered target out of it.
MWM_BAND_INLINE void prefetch_line(const void* address) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(address, 0, 2);
#else
  (void)address;
#endif
}

// A hint that the `bytes` from `address` will be read after the current band, into L2. The
// band drivers issue it for the next band while the current one is read and computed, so that
// memory is busy in both phases: the gathers for the next band's target row as they read the
// current one (a 3D band is 16 depth slices of 8 KB, 64 KB apart, which the hardware
// prefetchers pick up afresh at every slice and page: without the hint, the gather's loads wait
// for memory at each of them), band_losses for the next band's dense predictions patch by
// patch.
MWM_BAND_INLINE void prefetch_bytes(const void* address, std::int64_t bytes) {
#if defined(__GNUC__) || defined(__clang__)
  const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(address);
  for (std::uintptr_t line = at & ~std::uintptr_t(63); line < at + bytes; line += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 2);
#else
  (void)address, (void)bytes;
#endif
}

// What to prefetch while a band is gathered: a byte range (the band's dense predictions, so
// that both streams are in flight at once instead of one after the other), and the next band's
// first element (`next`, null for none): its rows, a row of the current band at a time
// (prefetch_next_row).
struct prefetch_range {
  const char* begin = nullptr;
  std::int64_t bytes = 0;
  const char* next = nullptr;
};

// The next band's part of row `row` of the current band (from `base`, the current band's first
// element): all its grid.width patches, unmasked ones included (a run of whole rows, measured
// faster than the masked patches' lines alone).
template <typename T>
MWM_BAND_INLINE void prefetch_next_row(const prefetch_range& ahead, const T* base, const T* row,
                                       const patch_strides& s, const patch_geometry& g) {
  if (!ahead.next) return;
  const std::int64_t elements =
      (g.grid.width - 1) * s.grid_width + (g.patch_width - 1) * s.width + 1;
  prefetch_bytes(ahead.next + (row - base) * std::int64_t(sizeof(T)),
                 elements * std::int64_t(sizeof(T)));
}

inline std::int64_t band_start(const patch_strides& s, const grid_shape& grid, std::int64_t band) {
  const std::int64_t rows = grid.depth * grid.height;
  const std::int64_t b = band / rows;
  const std::int64_t d = (band % rows) / grid.height;
  const std::int64_t h = band % grid.height;
  return b * s.batch + d * s.grid_depth + h * s.grid_height;
}

// The row walk of every band gather: the patches' rows in (channel group, pd, ph) order, each
// row read across the band's active patches. `channel_rows` is how many channel rows one copy
// takes (g.channels where the copy interleaves them all, 1 where the channels are walked one
// after the other). Along the way it spreads the prefetch of `ahead.bytes` over the rows and
// prefetches the next band's part of each row. For each (row, active patch x) it calls
// copy_row(the patch's first pixel in that row, x, where that row starts in a patch vector).
template <typename T, typename Acc, typename CopyRow>
MWM_BAND_INLINE void walk_band_rows(const T* base, const patch_strides& s, const patch_geometry& g,
                                    std::int64_t channel_rows, const Acc* active,
                                    const prefetch_range& ahead, CopyRow&& copy_row) {
  constexpr std::int64_t line = 64;
  // Read once: after a store of copy_row (vector stores may alias anything) the compiler
  // would read them again through `s` and `g` at every patch.
  const std::int64_t patches = g.grid.width, patch_step = s.grid_width;
  const std::int64_t groups = g.channels / channel_rows;
  const std::int64_t rows = groups * g.patch_depth * g.patch_height;
  const std::int64_t lines_per_row = (ahead.bytes / line + rows - 1) / rows;
  std::int64_t next = 0;
  for (std::int64_t c = 0; c < groups; ++c)
    for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
      for (std::int64_t ph = 0; ph < g.patch_height; ++ph) {
        for (std::int64_t k = 0; k < lines_per_row && next < ahead.bytes; ++k, next += line)
          prefetch_line(ahead.begin + next);
        const T* row = base + c * s.channel + pd * s.depth + ph * s.height;
        for (std::int64_t k = 0; k < channel_rows; ++k)
          prefetch_next_row(ahead, base, row + k * s.channel, s, g);
        const std::int64_t first = ((pd * g.patch_height + ph) * g.patch_width) * g.channels + c;
        for (std::int64_t x = 0; x < patches; ++x)
          if (active[x] != Acc(0)) copy_row(row + x * patch_step, x, first);
      }
}

template <bool Unit, typename Acc, typename T>
__attribute__((noinline)) void gather_rows(const T* base, const patch_strides& s,
                                           const patch_geometry& g, const Acc* active, Acc* out,
                                           prefetch_range ahead) {
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t step = Unit ? 1 : s.width;
  walk_band_rows(base, s, g, 1, active, ahead,
                 [&](const T* src, std::int64_t x, std::int64_t first) {
                   Acc* dst = out + x * p + first;
                   for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
                     dst[pw * g.channels] = static_cast<Acc>(src[pw * step]);
                 });
}

// out[3 k + c] = rows[c][k] for k < count: three image rows of one (pd, ph) interleaved into
// patch-vector order (channel fastest). Compilers do not vectorize a stride-3 store, so float
// rows take four pixels at a time through SSE2 shuffles (a pure permutation: the same bits).
template <typename Acc, typename T>
void interleave_three_rows(const T* r0, const T* r1, const T* r2, std::int64_t count, Acc* out) {
  std::int64_t k = 0;
#if defined(MWM_LOSS_SSE2)
  if constexpr (std::is_same_v<Acc, float> && std::is_same_v<T, float>) {
    for (; k + 4 <= count; k += 4, out += 12) {
      const __m128 x = _mm_loadu_ps(r0 + k);  // x0 x1 x2 x3 (channel 0)
      const __m128 y = _mm_loadu_ps(r1 + k);
      const __m128 z = _mm_loadu_ps(r2 + k);
      const __m128 xy_lo = _mm_unpacklo_ps(x, y);  // x0 y0 x1 y1
      const __m128 xy_hi = _mm_unpackhi_ps(x, y);  // x2 y2 x3 y3
      const __m128 yz_lo = _mm_unpacklo_ps(y, z);  // y0 z0 y1 z1
      const __m128 yz_hi = _mm_unpackhi_ps(y, z);  // y2 z2 y3 z3
      const __m128 zx_lo = _mm_unpacklo_ps(z, x);  // z0 x0 z1 x1
      const __m128 zx_hi = _mm_unpackhi_ps(z, x);  // z2 x2 z3 x3
      // out: x0 y0 z0 x1 | y1 z1 x2 y2 | z2 x3 y3 z3
      _mm_storeu_ps(out, _mm_shuffle_ps(xy_lo, zx_lo, _MM_SHUFFLE(3, 0, 1, 0)));
      _mm_storeu_ps(out + 4, _mm_shuffle_ps(yz_lo, xy_hi, _MM_SHUFFLE(1, 0, 3, 2)));
      _mm_storeu_ps(out + 8, _mm_shuffle_ps(zx_hi, yz_hi, _MM_SHUFFLE(3, 2, 3, 0)));
    }
  }
#endif
  for (; k < count; ++k, out += 3) {
    out[0] = static_cast<Acc>(r0[k]);
    out[1] = static_cast<Acc>(r1[k]);
    out[2] = static_cast<Acc>(r2[k]);
  }
}

// The same for unit-stride rows and a channel count known at compile time (1: volumes, 3: RGB):
// the C rows of one (pd, ph) are interleaved into contiguous stores (a plain converting copy,
// which compilers vectorize, for C = 1; the shuffles above for C = 3), where the generic loop
// stores with a stride of C.
template <int C, typename Acc, typename T>
__attribute__((noinline)) void gather_unit_rows(const T* base, const patch_strides& s,
                                                const patch_geometry& g, const Acc* active,
                                                Acc* out, prefetch_range ahead) {
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t pw_count = g.patch_width;
  walk_band_rows(
      base, s, g, C, active, ahead, [&](const T* src, std::int64_t x, std::int64_t first) {
        Acc* dst = out + x * p + first;
        if constexpr (C == 3) {
          interleave_three_rows(src, src + s.channel, src + 2 * s.channel, pw_count, dst);
        } else {
          for (std::int64_t pw = 0; pw < pw_count; ++pw)
            for (int c = 0; c < C; ++c) dst[pw * C + c] = static_cast<Acc>(src[c * s.channel + pw]);
        }
      });
}

template <bool Unit, typename Acc, typename P>
void scatter_rows(const Acc* in, const Acc* active, const patch_strides& s, const patch_geometry& g,
                  P* base) {
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t step = Unit ? 1 : s.width;
  for (std::int64_t c = 0; c < g.channels; ++c)
    for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
      for (std::int64_t ph = 0; ph < g.patch_height; ++ph) {
        P* row = base + c * s.channel + pd * s.depth + ph * s.height;
        const std::int64_t first = ((pd * g.patch_height + ph) * g.patch_width) * g.channels + c;
        for (std::int64_t x = 0; x < g.grid.width; ++x) {
          P* dst = row + x * s.grid_width;
          if (active[x] == Acc(0)) {
            for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
              dst[pw * step] = static_cast<P>(0.0f);
            continue;
          }
          const Acc* src = in + x * p + first;
          for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
            dst[pw * step] = static_cast<P>(src[pw * g.channels]);
        }
      }
}

}  // namespace detail

// Copies the patches of a band whose `active` entry is non-zero into out (grid.width x P), in
// patch-vector order, converted to Acc; inactive patches are neither read nor written. The
// `ahead` bytes are prefetched along the way.
template <typename Acc, typename T>
void gather_band(const T* data, const patch_strides& s, const patch_geometry& g, std::int64_t band,
                 const Acc* active, Acc* out, detail::prefetch_range ahead = {}) {
  const T* base = data + detail::band_start(s, g.grid, band);
  if (s.width == 1 && g.channels == 1)
    detail::gather_unit_rows<1>(base, s, g, active, out, ahead);
  else if (s.width == 1 && g.channels == 3)
    detail::gather_unit_rows<3>(base, s, g, active, out, ahead);
  else if (s.width == 1)
    detail::gather_rows<true>(base, s, g, active, out, ahead);
  else
    detail::gather_rows<false>(base, s, g, active, out, ahead);
}

namespace detail {

// The dense predictions of a band (empty when they are not dense: they are gathered then).
template <typename P>
prefetch_range band_predictions(const P* pred, const patch_strides& ps, const patch_geometry& g,
                                std::int64_t band, bool dense) {
  if (!dense) return prefetch_range{};
  const std::int64_t first = band * g.grid.width;
  const P* start = pred + steps::patch_start(ps, g.grid, first / g.grid.num_patches(),
                                             first % g.grid.num_patches());
  const std::int64_t bytes = g.grid.width * g.patch_vector_size() * std::int64_t(sizeof(P));
  return prefetch_range{reinterpret_cast<const char*>(start), bytes};
}

}  // namespace detail

// The inverse of gather_band into a strided destination; inactive patches are written as zeros.
template <typename Acc, typename P>
void scatter_band(const Acc* in, const Acc* active, P* data, const patch_strides& s,
                  const patch_geometry& g, std::int64_t band) {
  P* base = data + detail::band_start(s, g.grid, band);
  if (s.width == 1)
    detail::scatter_rows<true>(in, active, s, g, base);
  else
    detail::scatter_rows<false>(in, active, s, g, base);
}

// Scratch (in Acc elements) that band_losses and band_gradients need per call: the band's
// gathered targets, predictions and gradient (grid.width x P each), two factors per patch (the
// forward with a unit_gradient holds both c and the gradient factor) and 32 lane sums per patch
// (the target's, where the gather adds them: loss_x86.hpp).
inline std::int64_t band_scratch_size(const patch_geometry& g) {
  return 3 * g.grid.width * g.patch_vector_size() + 34 * g.grid.width;
}

}  // namespace mwm
