// The gradient of the loss on the CPU with respect to the prediction: band_gradients (the
// backward driver, every element of grad written), and the per-patch steps it shares with the
// forward, which writes the gradient for grad_output = 1 in its own pass (band_losses with a
// unit_gradient, loss_forward.hpp): one code path, so both give the same bits.
#pragma once

#include <cstdint>

#include "loss_bands.hpp"
#include "loss_patch.hpp"
#include "loss_stream.hpp"

namespace mwm {

// Where the forward writes d(loss)/d(pred) for grad_output = 1 (reductions mean, mean_eps and
// sum): `denominator` is loss_denominator(reduction, sum(c)), known before any patch is read;
// `grad` has strides `strides`. Valid only when that denominator is neither 0 nor NaN
// (fused_gradient_exact): otherwise every patch's factor 1 * c / denominator is NaN, patches with
// c == 0 included, which the forward does not read.
template <typename Acc, typename P>
struct unit_gradient {
  Acc denominator;
  P* grad;
  patch_strides strides;
};

// Whether the forward can write the gradient for grad_output = 1 alongside the loss: then
// c == 0 gives a zero factor, so the patches the forward skips are the ones the backward skips.
template <typename Acc>
bool fused_gradient_exact(Acc denominator) {
  return denominator == denominator && denominator != Acc(0);
}

namespace detail {

// The gradient's destination of patch i, when the gradient holds dense patch vectors (else null:
// the band's gradient goes through scratch and scatter_band).
template <typename P>
P* direct_patch_gradient(P* grad, const patch_strides& gs, const grid_shape& grid, bool direct,
                         std::int64_t i) {
  return direct
             ? grad + steps::patch_start(gs, grid, i / grid.num_patches(), i % grid.num_patches())
             : nullptr;
}

// Zeros of a patch whose factor is exactly 0 (not read), when the gradient is written directly;
// scatter_band writes them otherwise.
template <typename P>
void zero_patch_gradient(P* out, std::int64_t p) {
  if (out) stream_zeros(out, p);
}

// The gradient factor * d(err)/d(pred) of patch i of a gathered band: `t` its target (gathered),
// `gathered_pred` its gathered prediction or null (read in place), `out` its direct destination
// or null (written into `band_grad` at the patch's slot, for scatter_band).
template <typename Acc, typename P, typename T>
void band_patch_gradient(const loss_inputs<Acc, P, T>& in, Acc factor, std::int64_t i, const Acc* t,
                         target_normalization<Acc> norm, const Acc* gathered_pred, P* out,
                         Acc* band_grad) {
  const patch_geometry& g = in.geometry;
  const std::int64_t p = g.patch_vector_size();
  const P* pred_patch = gathered_pred ? nullptr
                                      : in.pred + steps::patch_start(in.pred_strides, g.grid,
                                                                     i / g.grid.num_patches(),
                                                                     i % g.grid.num_patches());
  const recon_error error = in.options.error;
  if (out && streams_gradient<P>()) {
    // Computed into the patch's (cached) scratch slot, then streamed out (loss_stream.hpp).
    if (pred_patch)
      steps::vector_gradient(factor, pred_patch, t, p, error, norm, band_grad);
    else
      steps::vector_gradient(factor, gathered_pred, t, p, error, norm, band_grad);
    stream_values(out, band_grad, p);
  } else if (out && pred_patch)
    steps::vector_gradient(factor, pred_patch, t, p, error, norm, out);
  else if (out)
    steps::vector_gradient(factor, gathered_pred, t, p, error, norm, out);
  else if (pred_patch)
    steps::vector_gradient(factor, pred_patch, t, p, error, norm, band_grad);
  else
    steps::vector_gradient(factor, gathered_pred, t, p, error, norm, band_grad);
}

}  // namespace detail

// Writes the gradient of the patches of bands [begin, end) into grad (strides gs, every element
// written). `upstream`: one value (mean, mean_eps, sum) or one per patch (none).
template <typename Acc, typename P, typename T>
void band_gradients(const loss_inputs<Acc, P, T>& in, const Acc* upstream, Acc denominator, P* grad,
                    const patch_strides& gs, std::int64_t begin, std::int64_t end, Acc* scratch) {
  const patch_geometry& g = in.geometry;
  const std::int64_t width = g.grid.width;
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
      P* out = detail::direct_patch_gradient(grad, gs, g.grid, direct_grad, i);
      if (factors[x] == Acc(0)) {
        detail::zero_patch_gradient(out, p);
        continue;
      }
      const Acc* t = targets + x * p;
      target_normalization<Acc> norm{Acc(0), Acc(1)};
      if (in.options.norm_target) norm = steps::vector_normalization(t, p);
      detail::band_patch_gradient(in, factors[x], i, t, norm, direct_pred ? nullptr : preds + x * p,
                                  out, grads + x * p);
    }
    if (!direct_grad) scatter_band(grads, factors, grad, gs, g, band);
  }
  detail::stream_fence();
}

}  // namespace mwm
