// Per-patch bodies of the loss kernels: one thread runs one patch (flat index b * N + n) through
// the core's per-patch functions, which read the patch in place (the host drivers band_losses
// and band_gradients gather bands of patches first). A host compiler reads this file too
// (tests compare the two).
#pragma once

#include <cstdint>

#include "mwm/config.hpp"
#include "mwm/loss.hpp"

namespace mwm {
namespace gpu {

// c = mask * weight and c * err of patch i; false when the target patch the loss reads holds a
// NaN or an infinity.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE bool patch_loss_at(const loss_inputs<Acc, P, T>& in, std::int64_t i,
                                   Acc* coefficient, Acc* loss) {
  const grid_shape& grid = in.geometry.grid;
  const std::int64_t n = grid.num_patches();
  const std::int64_t b = i / n;
  const std::int64_t patch = i % n;
  *coefficient = patch_coefficient(in.mask, in.weight, i);
  return weighted_patch_loss(*coefficient,
                             in.pred + patch_start(in.pred_strides, grid, b, patch),
                             in.pred_strides,
                             in.target + patch_start(in.target_strides, grid, b, patch),
                             in.target_strides, in.geometry, in.options, loss);
}

// The gradient of patch i into grad (strides gs); grad_out holds one value, or one per patch
// for reduction none.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE void patch_gradient_at(const loss_inputs<Acc, P, T>& in, const Acc* grad_out,
                                       Acc denominator, P* grad, const patch_strides& gs,
                                       std::int64_t i) {
  const grid_shape& grid = in.geometry.grid;
  const std::int64_t n = grid.num_patches();
  const std::int64_t b = i / n;
  const std::int64_t patch = i % n;
  const bool per_patch = in.options.reduction == loss_reduction::none;
  const Acc factor = gradient_factor(per_patch ? grad_out[i] : grad_out[0],
                                     patch_coefficient(in.mask, in.weight, i), denominator);
  weighted_patch_gradient(factor, in.pred + patch_start(in.pred_strides, grid, b, patch),
                          in.pred_strides,
                          in.target + patch_start(in.target_strides, grid, b, patch),
                          in.target_strides, in.geometry, in.options,
                          grad + patch_start(gs, grid, b, patch), gs);
}

}  // namespace gpu
}  // namespace mwm
