// The backward of the loss on the CPU: the gradient of bands of patches with respect to the
// prediction (every element of grad written).
#pragma once

#include <cstdint>

#include "loss_bands.hpp"
#include "loss_patch.hpp"

namespace mwm {

// Writes the gradient of the patches of bands [begin, end) into grad (strides gs, every element
// written). `upstream`: one value (mean, mean_eps, sum) or one per patch (none).
template <typename Acc, typename P, typename T>
void band_gradients(const loss_inputs<Acc, P, T>& in, const Acc* upstream, Acc denominator, P* grad,
                    const patch_strides& gs, std::int64_t begin, std::int64_t end, Acc* scratch) {
  const patch_geometry& g = in.geometry;
  const std::int64_t width = g.grid.width;
  const std::int64_t n = g.grid.num_patches();
  const std::int64_t p = g.patch_vector_size();
  Acc* targets = scratch;
  Acc* preds = scratch + width * p;
  Acc* grads = scratch + 2 * width * p;
  Acc* factors = scratch + 3 * width * p;
  const bool direct_pred = dense_patch_vectors(in.pred_strides, g);
  const bool direct_grad = dense_patch_vectors(gs, g);
  const bool per_patch = in.options.reduction == loss_reduction::none;
  for (std::int64_t band = begin; band < end; ++band) {
    const std::int64_t first = band * width;
    bool any = false;
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t i = first + x;
      factors[x] =
          steps::gradient_factor(per_patch ? upstream[i] : upstream[0],
                                 steps::patch_coefficient(in.mask, in.weight, i), denominator);
      any = any || factors[x] != Acc(0);
    }
    if (any) {
      gather_band(in.target, in.target_strides, g, band, factors, targets,
                  detail::band_predictions(in.pred, in.pred_strides, g, band, direct_pred));
      if (!direct_pred) gather_band(in.pred, in.pred_strides, g, band, factors, preds);
    }
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t i = first + x;
      P* out = direct_grad ? grad + steps::patch_start(gs, g.grid, i / n, i % n) : nullptr;
      if (factors[x] == Acc(0)) {
        if (out)
          for (std::int64_t e = 0; e < p; ++e) out[e] = static_cast<P>(0.0f);
        continue;
      }
      const Acc* t = targets + x * p;
      target_normalization<Acc> norm{Acc(0), Acc(1)};
      if (in.options.norm_target) norm = steps::vector_normalization(t, p);
      const P* pred_patch =
          direct_pred ? in.pred + steps::patch_start(in.pred_strides, g.grid, i / n, i % n)
                      : nullptr;
      if (out && pred_patch)
        steps::vector_gradient(factors[x], pred_patch, t, p, in.options.error, norm, out);
      else if (out)
        steps::vector_gradient(factors[x], preds + x * p, t, p, in.options.error, norm, out);
      else if (pred_patch)
        steps::vector_gradient(factors[x], pred_patch, t, p, in.options.error, norm, grads + x * p);
      else
        steps::vector_gradient(factors[x], preds + x * p, t, p, in.options.error, norm,
                               grads + x * p);
    }
    if (!direct_grad) scatter_band(grads, factors, grad, gs, g, band);
  }
}

}  // namespace mwm
