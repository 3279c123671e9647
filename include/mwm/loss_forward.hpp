// The forward of the loss on the CPU: per-patch losses c * err of bands of patches (run by
// threads over disjoint band ranges), optionally with the gradient for grad_output = 1 written
// in the same pass, and the sums over patches in the fixed order.
#pragma once

#include <cstdint>

#include "loss_backward.hpp"
#include "loss_bands.hpp"
#include "loss_order.hpp"
#include "loss_patch.hpp"
#include "loss_x86.hpp"

namespace mwm {

// Writes c * err of the patches of bands [begin, end) to losses (flat index); returns the first
// flat index whose target patch holds a non-finite value, or -1. `scratch` holds
// band_scratch_size(g) elements. With `gradient` (fused_gradient_exact of its denominator), also
// writes every element of the gradient of bands [begin, end) for grad_output = 1, while each
// patch is in cache: the factor and the per-element gradient are band_gradients' own
// (gradient_factor(1, c, denominator), band_patch_gradient), so the bits are those of the
// backward with upstream 1.
template <typename Acc, typename P, typename T>
std::int64_t band_losses(const loss_inputs<Acc, P, T>& in, std::int64_t begin, std::int64_t end,
                         Acc* losses, Acc* scratch,
                         const unit_gradient<Acc, P>* gradient = nullptr) {
  const patch_geometry& g = in.geometry;
  const std::int64_t width = g.grid.width;
  const std::int64_t n = g.grid.num_patches();
  const std::int64_t p = g.patch_vector_size();
  Acc* targets = scratch;
  Acc* preds = scratch + width * p;
  Acc* grads = scratch + 2 * width * p;
  Acc* coefficients = scratch + 3 * width * p;
  Acc* factors = scratch + 3 * width * p + width;
  Acc* sums = scratch + 3 * width * p + 2 * width;
  const bool direct = dense_patch_vectors(in.pred_strides, g);
  const bool direct_grad = gradient && dense_patch_vectors(gradient->strides, g);
  std::int64_t first_bad = -1;
  for (std::int64_t band = begin; band < end; ++band) {
    const std::int64_t first = band * width;
    // The band's first patch; patch x is grid_width further (one (b, gd, gh), w = x).
    const P* pred_band =
        in.pred + steps::patch_start(in.pred_strides, g.grid, first / n, first % n);
    P* grad_band = direct_grad ? gradient->grad + steps::patch_start(gradient->strides, g.grid,
                                                                     first / n, first % n)
                               : nullptr;
    const std::int64_t next = first + width;
    const P* pred_next =
        direct && band + 1 < end
            ? in.pred + steps::patch_start(in.pred_strides, g.grid, next / n, next % n)
            : nullptr;
    bool any = false;
    for (std::int64_t x = 0; x < width; ++x) {
      coefficients[x] = steps::patch_coefficient(in.mask, in.weight, first + x);
      any = any || coefficients[x] != Acc(0);
    }
    if (gradient)
      for (std::int64_t x = 0; x < width; ++x)
        factors[x] = steps::gradient_factor(Acc(1), coefficients[x], gradient->denominator);
    // Whether the gather also added each target patch's lane sums (into sums + 32 x).
    bool summed = false;
    if (any) {
      // The next band's target rows are prefetched as this band's are read, and its dense
      // predictions patch by patch below.
      detail::prefetch_range ahead;
      if (band + 1 < end)
        ahead.next = reinterpret_cast<const char*>(
            in.target + detail::band_start(in.target_strides, g.grid, band + 1));
      summed = detail::gather_band_vectorized(in.target, in.target_strides, g, band, coefficients,
                                              targets, sums, ahead);
      if (!summed) gather_band(in.target, in.target_strides, g, band, coefficients, targets, ahead);
      if (!direct) gather_band(in.pred, in.pred_strides, g, band, coefficients, preds);
    }
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t i = first + x;
      // The next band's prediction of this column, in flight while this patch is computed.
      if (pred_next && steps::patch_coefficient(in.mask, in.weight, i + width) != Acc(0))
        detail::prefetch_bytes(pred_next + x * in.pred_strides.grid_width,
                               p * std::int64_t(sizeof(P)));
      losses[i] = Acc(0);
      P* out = grad_band ? grad_band + x * gradient->strides.grid_width : nullptr;
      if (coefficients[x] == Acc(0)) {
        detail::zero_patch_gradient(out, p);
        continue;
      }
      const Acc* t = targets + x * p;
      const P* pred = direct ? pred_band + x * in.pred_strides.grid_width : nullptr;
      target_normalization<Acc> norm{Acc(0), Acc(1)};
      Acc err;
      if (detail::patch_loss_vectorized(in.options, p, t, pred, preds + x * p,
                                        gradient ? factors[x] : Acc(0), out, grads + x * p,
                                        summed ? sums + loss_lanes * x : nullptr, &err)) {
        if (gradient && factors[x] == Acc(0)) detail::zero_patch_gradient(out, p);
      } else {
        if (in.options.norm_target) norm = steps::vector_normalization(t, p);
        err = direct ? steps::vector_error(pred, t, p, in.options.error, norm)
                     : steps::vector_error(preds + x * p, t, p, in.options.error, norm);
        if (gradient) {
          if (factors[x] == Acc(0))
            detail::zero_patch_gradient(out, p);
          else
            detail::band_patch_gradient(in, factors[x], i, t, norm,
                                        direct ? nullptr : preds + x * p, out, grads + x * p);
        }
      }
      losses[i] = coefficients[x] * err;
      if (!detail::finite_value(err) && first_bad < 0) {
        for (std::int64_t e = 0; e < p; ++e)
          if (!detail::finite_value(t[e])) {
            first_bad = i;
            break;
          }
      }
    }
    if (gradient && !direct_grad)
      scatter_band(grads, factors, gradient->grad, gradient->strides, g, band);
  }
  if (gradient) detail::stream_fence();
  return first_bad;
}

// sum(c) over the patches, in the order of loss_order.hpp (so that results depend neither on
// the thread count nor on the device).
template <typename Acc>
Acc coefficient_total(const std::uint8_t* mask, const Acc* weight, std::int64_t count) {
  return steps::ordered_total<Acc>(
      [mask, weight](std::int64_t i) { return steps::patch_coefficient(mask, weight, i); }, count);
}

// The reduced loss from per-patch losses c * err, summed in the order of loss_order.hpp.
template <typename Acc>
Acc reduce_patch_losses(const Acc* losses, std::int64_t count, loss_reduction reduction,
                        Acc coefficient_sum) {
  return steps::ordered_total(losses, count) / steps::loss_denominator(reduction, coefficient_sum);
}

}  // namespace mwm
