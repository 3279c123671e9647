// The loss's options and the raw views its drivers and kernels read: what the fused masked
// reconstruction loss computes is described in loss.hpp.
#pragma once

#include <cstdint>

#include "config.hpp"
#include "error.hpp"
#include "grid.hpp"

namespace mwm {

enum class recon_error { mse, l1 };
enum class loss_reduction { mean, mean_eps, sum, none };

constexpr double target_norm_eps = 1e-6;       // MAE norm_pix_loss and SparK
constexpr double mean_denominator_eps = 1e-8;  // SparK's (non_active.sum() + 1e-8)

// What the forward does when the loss comes out NaN or infinite although every target patch it
// reads is finite (a non-finite target is always an error): `error` (the default) throws
// mwm::error naming the first patch and the cause (pred, weight, or an overflow of the error),
// `propagate` returns the non-finite value (what torch does; AMP's GradScaler then skips the
// step). The check costs one test of the reduced value (a scan of the per-patch losses for
// reduction none, or once a value is non-finite).
enum class nonfinite_policy { error, propagate };

struct loss_options {
  recon_error error = recon_error::mse;
  bool norm_target = false;
  loss_reduction reduction = loss_reduction::mean;
  nonfinite_policy nonfinite = nonfinite_policy::error;
};

// Element strides of a tensor seen as a batch of patches: `batch` and `grid_*` lead to the first
// element of patch (b, gd, gh, gw); `depth`, `height`, `width`, `channel` step inside a patch.
struct patch_strides {
  std::int64_t batch = 0;
  std::int64_t grid_depth = 0;
  std::int64_t grid_height = 0;
  std::int64_t grid_width = 0;
  std::int64_t depth = 0;
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::int64_t channel = 0;
};

// Strides of an image tensor (B, C, [D,] H, W) given its element strides (depth_stride is unused
// in 2D, where the geometry has depth 1).
inline patch_strides image_patch_strides(const patch_geometry& g, std::int64_t batch_stride,
                                         std::int64_t channel_stride, std::int64_t depth_stride,
                                         std::int64_t height_stride, std::int64_t width_stride) {
  patch_strides s;
  s.batch = batch_stride;
  s.grid_depth = depth_stride * g.patch_depth;
  s.grid_height = height_stride * g.patch_height;
  s.grid_width = width_stride * g.patch_width;
  s.depth = depth_stride;
  s.height = height_stride;
  s.width = width_stride;
  s.channel = channel_stride;
  return s;
}

// Strides of patch vectors (B, N, P), P ordered (pd, ph, pw, c), given its element strides.
inline patch_strides vector_patch_strides(const patch_geometry& g, std::int64_t batch_stride,
                                          std::int64_t patch_stride, std::int64_t element_stride) {
  patch_strides s;
  s.batch = batch_stride;
  s.grid_width = patch_stride;
  s.grid_height = patch_stride * g.grid.width;
  s.grid_depth = patch_stride * g.grid.width * g.grid.height;
  s.channel = element_stride;
  s.width = element_stride * g.channels;
  s.height = s.width * g.patch_width;
  s.depth = s.height * g.patch_height;
  return s;
}

namespace steps {

// Offset of the first element of patch n (row-major over the grid) of sample b.
MWM_HOST_DEVICE MWM_INLINE std::int64_t patch_start(const patch_strides& s, const grid_shape& grid,
                                                    std::int64_t b, std::int64_t n) {
  const std::int64_t w = n % grid.width;
  const std::int64_t h = (n / grid.width) % grid.height;
  const std::int64_t d = n / (grid.width * grid.height);
  return b * s.batch + d * s.grid_depth + h * s.grid_height + w * s.grid_width;
}

}  // namespace steps

// Raw views of the inputs; mask (B, N) bytes and weight (B, N) are dense row-major.
template <typename Acc, typename P, typename T>
struct loss_inputs {
  patch_geometry geometry;
  std::int64_t batch = 0;
  const P* pred = nullptr;
  patch_strides pred_strides;
  const T* target = nullptr;
  patch_strides target_strides;
  const std::uint8_t* mask = nullptr;
  const Acc* weight = nullptr;  // null: all ones
  loss_options options;
};

inline void validate_loss_geometry(const patch_geometry& g, const loss_options& options) {
  detail::require(!options.norm_target || g.patch_vector_size() >= 2, "patch vector size",
                  g.patch_vector_size(),
                  "norm_target needs at least 2 elements per patch (unbiased variance)");
}

// Bands (b, gd, gh) of the host drivers (loss_bands.hpp).
inline std::int64_t band_count(const patch_geometry& g, std::int64_t batch) {
  return batch * g.grid.depth * g.grid.height;
}

// True when the strides describe dense patch vectors (P contiguous elements per patch).
inline bool dense_patch_vectors(const patch_strides& s, const patch_geometry& g) {
  return s.channel == 1 && s.width == g.channels && s.height == g.channels * g.patch_width &&
         s.depth == s.height * g.patch_height;
}

}  // namespace mwm
