// Everything a trainer consumes, written from one canonical order per sample.
#pragma once

#include <algorithm>
#include <cstdint>

#include "config.hpp"
#include "grid.hpp"
#include "outputs_x86.hpp"

namespace mwm {

// Destination rows of one sample; a null pointer skips that output. Index rows are padded
// with -1 past the sample's count.
struct sample_outputs {
  std::uint8_t* mask = nullptr;         // (N) 1 = masked (bool storage)
  std::int64_t* ids_shuffle = nullptr;  // (N) the canonical order, visible first
  std::int64_t* ids_restore = nullptr;  // (N) inverse permutation of ids_shuffle
  std::int64_t* ids_keep = nullptr;     // (keep_width)
  std::int64_t* ids_masked = nullptr;   // (masked_width)
  float* noise = nullptr;               // (N) argsort(noise) == ids_shuffle
  std::int64_t keep_width = 0;
  std::int64_t masked_width = 0;
};

// noise[n] = position / N is exact and strictly increasing in float32 while N <= 2^24.
constexpr std::int64_t max_patches_for_noise = std::int64_t(1) << 24;

namespace steps {

// Writes the outputs of the position-th entry of the order (patch `patch`), so a device thread
// per position can run it; `visible` is the sample's visible count.
MWM_HOST_DEVICE MWM_INLINE void write_position(const sample_outputs& out, std::int64_t n,
                                               std::int64_t visible, std::int64_t position,
                                               std::int64_t patch) {
  if (out.ids_shuffle) out.ids_shuffle[position] = patch;
  if (out.ids_restore) out.ids_restore[patch] = position;
  if (out.mask) out.mask[patch] = position >= visible ? 1 : 0;
  if (out.noise) out.noise[patch] = static_cast<float>(position) / static_cast<float>(n);
  if (position < visible) {
    if (out.ids_keep && position < out.keep_width) out.ids_keep[position] = patch;
  } else if (out.ids_masked && position - visible < out.masked_width) {
    out.ids_masked[position - visible] = patch;
  }
}

// Padding of entry i of the index rows when it lies past the sample's counts; a device thread
// per position runs it (the widths never exceed n).
MWM_HOST_DEVICE MWM_INLINE void write_padding_at(const sample_outputs& out, std::int64_t n,
                                                 std::int64_t visible, std::int64_t i) {
  if (out.ids_keep && i >= visible && i < out.keep_width) out.ids_keep[i] = -1;
  if (out.ids_masked && i >= n - visible && i < out.masked_width) out.ids_masked[i] = -1;
}

// Padding of the index rows past the sample's counts: what write_padding_at writes for every i.
MWM_HOST_DEVICE MWM_INLINE void write_padding(const sample_outputs& out, std::int64_t n,
                                              std::int64_t visible) {
  if (out.ids_keep)
    for (std::int64_t i = visible; i < out.keep_width; ++i) out.ids_keep[i] = -1;
  if (out.ids_masked)
    for (std::int64_t i = n - visible; i < out.masked_width; ++i) out.ids_masked[i] = -1;
}

}  // namespace steps

// noise[position] of write_position for positions [0, n): the table write_sample_outputs reads.
inline void fill_position_noise(float* noise, std::int64_t n) {
  for (std::int64_t position = 0; position < n; ++position)
    noise[position] = static_cast<float>(position) / static_cast<float>(n);
}

namespace steps {

// What write_position writes for every position, one output at a time: the index rows are
// straight copies of the order (none when `order` is the ids_shuffle row itself) and the
// per-patch outputs one scatter pass per side, without a branch per output and position.
// `position_noise` (fill_position_noise) saves a division per patch; null computes it.
inline void write_sample_outputs(const sample_outputs& out, const std::int64_t* order,
                                 std::int64_t n, std::int64_t visible,
                                 const float* position_noise = nullptr) {
  if (out.ids_shuffle && out.ids_shuffle != order) std::copy(order, order + n, out.ids_shuffle);
  if (out.ids_keep) {
    const std::int64_t count = visible < out.keep_width ? visible : out.keep_width;
    std::copy(order, order + count, out.ids_keep);
  }
  if (out.ids_masked) {
    const std::int64_t masked = n - visible;
    const std::int64_t count = masked < out.masked_width ? masked : out.masked_width;
    std::copy(order + visible, order + visible + count, out.ids_masked);
  }
  const bool all_three = out.ids_restore && out.mask && out.noise && position_noise;
  if (all_three && detail::write_restore_mask_noise_vector(order, n, visible, out.ids_restore,
                                                           out.mask, out.noise)) {
    // written by vector instructions (outputs_x86.hpp)
  } else if (all_three) {
    for (std::int64_t position = 0; position < visible; ++position) {
      const std::int64_t patch = order[position];
      out.ids_restore[patch] = position;
      out.mask[patch] = 0;
      out.noise[patch] = position_noise[position];
    }
    for (std::int64_t position = visible; position < n; ++position) {
      const std::int64_t patch = order[position];
      out.ids_restore[patch] = position;
      out.mask[patch] = 1;
      out.noise[patch] = position_noise[position];
    }
  } else {
    if (out.ids_restore) {
      for (std::int64_t position = 0; position < n; ++position)
        out.ids_restore[order[position]] = position;
    }
    if (out.mask) {
      for (std::int64_t position = 0; position < n; ++position)
        out.mask[order[position]] = position >= visible ? 1 : 0;
    }
    if (out.noise) {
      const auto count = static_cast<float>(n);
      for (std::int64_t position = 0; position < n; ++position)
        out.noise[order[position]] =
            position_noise ? position_noise[position] : static_cast<float>(position) / count;
    }
  }
  write_padding(out, n, visible);
}

// Value of cell (d, h, w) of a grid `factor` times finer per axis (depth factor 1 in 2D) than
// `grid`, from a per-patch array: pixel-level masks and SparK's active pyramids.
template <typename T>
MWM_HOST_DEVICE MWM_INLINE T upsampled_value(const T* per_patch, grid_shape grid,
                                             std::int64_t factor_d, std::int64_t factor_h,
                                             std::int64_t factor_w, std::int64_t d, std::int64_t h,
                                             std::int64_t w) {
  return per_patch[grid.index(d / factor_d, h / factor_h, w / factor_w)];
}

}  // namespace steps

// Upsamples one sample's mask (or active map) by integer factors per axis.
template <typename T>
void upsample_patch_map(const T* per_patch, grid_shape grid, std::int64_t factor_d,
                        std::int64_t factor_h, std::int64_t factor_w, bool invert, T* out) {
  const std::int64_t depth = grid.depth * factor_d;
  const std::int64_t height = grid.height * factor_h;
  const std::int64_t width = grid.width * factor_w;
  for (std::int64_t d = 0; d < depth; ++d)
    for (std::int64_t h = 0; h < height; ++h)
      for (std::int64_t w = 0; w < width; ++w) {
        const T v = steps::upsampled_value(per_patch, grid, factor_d, factor_h, factor_w, d, h, w);
        out[(d * height + h) * width + w] = invert ? static_cast<T>(!v) : v;
      }
}

}  // namespace mwm
