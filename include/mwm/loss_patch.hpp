// The loss of one patch, in the reduction order of loss_order.hpp: the maths of one element,
// the per-lane sums that a GPU lane runs (lane_*: reading a patch in place through its
// strides), the same sums over a patch vector in contiguous memory (vector_*: what the CPU
// drivers run on gathered bands), and the weighted patch loss / gradient that combine them.
// Both forms add every value into the same lane in the same sequence, so they give the same
// bits.
#pragma once

#include <math.h>

#include <cstdint>

#include "config.hpp"
#include "loss_options.hpp"
#include "loss_order.hpp"

// A lane's loads do not depend on its running sum: unrolled, a GPU thread keeps several in
// flight (the 3D patches give a lane 128 elements; memory-level parallelism is what fills HBM).
#if defined(__CUDA_ARCH__)
#define MWM_LOSS_UNROLL _Pragma("unroll 4")
#else
#define MWM_LOSS_UNROLL
#endif

namespace mwm {

// Per-patch target statistics; {0, 1} leaves the target as it is.
template <typename Acc>
struct target_normalization {
  Acc mean;
  Acc inv_std;
};

namespace detail {

// False for NaN and +-Inf (without <cmath>'s isfinite, which device code spells differently).
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE bool finite_value(Acc x) {
  return (x - x) == (x - x);
}

// --- The maths of one element ---------------------------------------------------------------

// p - t_hat, with t_hat = (t - mean) * inv_std ({0, 1} when the target is not normalized).
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc residual(Acc p, Acc t, target_normalization<Acc> norm) {
  return p - (t - norm.mean) * norm.inv_std;
}

template <recon_error E, typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc element_error(Acc r) {
  if (E == recon_error::mse) return r * r;
  return r < Acc(0) ? -r : r;
}

// scale * d(element error)/dp: 2 r for mse, sign(r) for l1 (0 at 0, as torch's abs backward).
template <recon_error E, typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc element_gradient(Acc r, Acc scale) {
  if (E == recon_error::mse) return Acc(2) * r * scale;
  return r > Acc(0) ? scale : (r < Acc(0) ? -scale : Acc(0));
}

// Two-pass variance: sum (t - mean)^2 / (n - 1), the mean from the first pass.
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE target_normalization<Acc> finish_normalization(Acc mean, Acc squares,
                                                                          Acc count) {
  const Acc var = squares / (count - Acc(1));
  return target_normalization<Acc>{mean, Acc(1) / sqrt(var + static_cast<Acc>(target_norm_eps))};
}

// The mean of a patch from its lane sums.
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc mean_of_lanes(Acc* lanes, std::int64_t count) {
  return steps::lane_total(lanes) / static_cast<Acc>(count);
}

}  // namespace detail

// --- One lane of a patch read in place (pointers at the patch's first element) ---------------

// Walks the elements e = lane, lane + 32, ... of a patch vector ((pd, ph, pw, c) order, channel
// fastest) as digits, so that each step costs a few additions instead of three divisions.
class patch_cursor {
 public:
  MWM_HOST_DEVICE patch_cursor(const patch_geometry& g, int lane)
      : channels_(g.channels), width_(g.patch_width), height_(g.patch_height) {
    split(lane, &c_, &pw_, &ph_, &pd_);
    split(loss_lanes, &step_c_, &step_pw_, &step_ph_, &step_pd_);
  }

  MWM_HOST_DEVICE MWM_INLINE std::int64_t offset(const patch_strides& s) const {
    return pd_ * s.depth + ph_ * s.height + pw_ * s.width + c_ * s.channel;
  }

  // The offset of the element j places after the cursor's (j small: the GPU's four lanes of one
  // thread, loss_steps.cuh), without moving the cursor.
  MWM_HOST_DEVICE MWM_INLINE std::int64_t offset_after(const patch_strides& s, int j) const {
    std::int64_t c = c_, pw = pw_, ph = ph_, pd = pd_;
    for (int k = 0; k < j; ++k) {
      if (++c < channels_) continue;
      c = 0;
      if (++pw < width_) continue;
      pw = 0;
      if (++ph < height_) continue;
      ph = 0;
      ++pd;
    }
    return pd * s.depth + ph * s.height + pw * s.width + c * s.channel;
  }

  MWM_HOST_DEVICE MWM_INLINE void advance() {
    c_ += step_c_;
    std::int64_t carry = c_ >= channels_ ? 1 : 0;
    c_ -= carry * channels_;
    pw_ += step_pw_ + carry;
    carry = pw_ >= width_ ? 1 : 0;
    pw_ -= carry * width_;
    ph_ += step_ph_ + carry;
    carry = ph_ >= height_ ? 1 : 0;
    ph_ -= carry * height_;
    pd_ += step_pd_ + carry;
  }

 private:
  MWM_HOST_DEVICE void split(std::int64_t e, std::int64_t* c, std::int64_t* pw, std::int64_t* ph,
                             std::int64_t* pd) const {
    *c = e % channels_;
    e /= channels_;
    *pw = e % width_;
    e /= width_;
    *ph = e % height_;
    *pd = e / height_;
  }

  std::int64_t channels_, width_, height_;
  std::int64_t c_, pw_, ph_, pd_;
  std::int64_t step_c_, step_pw_, step_ph_, step_pd_;
};

namespace steps {

// The sum, in lane `lane`, of f(cursor) over the lane's elements in increasing order.
template <typename Acc, typename F>
MWM_HOST_DEVICE MWM_INLINE Acc lane_sum(const patch_geometry& g, int lane, F&& f) {
  const std::int64_t count = g.patch_vector_size();
  Acc total = Acc(0);
  patch_cursor at(g, lane);
  MWM_LOSS_UNROLL
  for (std::int64_t e = lane; e < count; e += loss_lanes, at.advance()) total += f(at);
  return total;
}

template <typename Acc, typename T>
MWM_HOST_DEVICE Acc lane_target_sum(const T* target, const patch_strides& ts,
                                    const patch_geometry& g, int lane) {
  return lane_sum<Acc>(
      g, lane, [&](const patch_cursor& at) { return static_cast<Acc>(target[at.offset(ts)]); });
}

template <typename Acc, typename T>
MWM_HOST_DEVICE Acc lane_target_squares(const T* target, const patch_strides& ts,
                                        const patch_geometry& g, int lane, Acc mean) {
  return lane_sum<Acc>(g, lane, [&](const patch_cursor& at) {
    const Acc d = static_cast<Acc>(target[at.offset(ts)]) - mean;
    return d * d;
  });
}

template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE Acc lane_error_sum(const P* pred, const patch_strides& ps, const T* target,
                                   const patch_strides& ts, const patch_geometry& g, int lane,
                                   recon_error error, target_normalization<Acc> norm) {
  return lane_sum<Acc>(g, lane, [&](const patch_cursor& at) {
    const Acc r = detail::residual(static_cast<Acc>(pred[at.offset(ps)]),
                                   static_cast<Acc>(target[at.offset(ts)]), norm);
    return error == recon_error::mse ? detail::element_error<recon_error::mse>(r)
                                     : detail::element_error<recon_error::l1>(r);
  });
}

// Writes grad = scale * d(element error)/d pred for the lane's elements (scale = the patch's
// gradient factor / P).
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE void lane_gradient(const P* pred, const patch_strides& ps, const T* target,
                                   const patch_strides& ts, const patch_geometry& g, int lane,
                                   recon_error error, target_normalization<Acc> norm, Acc scale,
                                   P* grad, const patch_strides& gs) {
  const std::int64_t count = g.patch_vector_size();
  patch_cursor at(g, lane);
  MWM_LOSS_UNROLL
  for (std::int64_t e = lane; e < count; e += loss_lanes, at.advance()) {
    const Acc r = detail::residual(static_cast<Acc>(pred[at.offset(ps)]),
                                   static_cast<Acc>(target[at.offset(ts)]), norm);
    grad[at.offset(gs)] = static_cast<P>(error == recon_error::mse
                                             ? detail::element_gradient<recon_error::mse>(r, scale)
                                             : detail::element_gradient<recon_error::l1>(r, scale));
  }
}

template <typename P>
MWM_HOST_DEVICE void lane_zero(P* grad, const patch_strides& gs, const patch_geometry& g,
                               int lane) {
  const std::int64_t count = g.patch_vector_size();
  patch_cursor at(g, lane);
  for (std::int64_t e = lane; e < count; e += loss_lanes, at.advance())
    grad[at.offset(gs)] = static_cast<P>(0.0f);
}

}  // namespace steps

// --- One patch read in place: the lanes one after the other, then the tree -------------------
// (a GPU warp runs the lanes at once and the tree with shuffles; the bits are the same).

namespace steps {

// Mean and 1/sqrt(unbiased var + 1e-6) of a patch; two passes (the second over cached data),
// which keeps the variance exact where a one-pass sum of squares would cancel (a large offset
// and a small spread, as in CT). Needs P >= 2.
template <typename Acc, typename T>
MWM_HOST_DEVICE target_normalization<Acc> patch_target_normalization(const T* target,
                                                                     const patch_strides& ts,
                                                                     const patch_geometry& g) {
  const std::int64_t count = g.patch_vector_size();
  Acc lanes[loss_lanes];
  for (int l = 0; l < loss_lanes; ++l) lanes[l] = lane_target_sum<Acc>(target, ts, g, l);
  const Acc mean = detail::mean_of_lanes(lanes, count);
  for (int l = 0; l < loss_lanes; ++l) lanes[l] = lane_target_squares<Acc>(target, ts, g, l, mean);
  return detail::finish_normalization(mean, lane_total(lanes), static_cast<Acc>(count));
}

// The error of a patch averaged over its P elements.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE Acc patch_error(const P* pred, const patch_strides& ps, const T* target,
                                const patch_strides& ts, const patch_geometry& g, recon_error error,
                                target_normalization<Acc> norm) {
  Acc lanes[loss_lanes];
  for (int l = 0; l < loss_lanes; ++l)
    lanes[l] = lane_error_sum(pred, ps, target, ts, g, l, error, norm);
  return detail::mean_of_lanes(lanes, g.patch_vector_size());
}

// Writes grad = d(weight * patch_error)/d pred for the P elements of one patch.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE void patch_error_gradient(Acc weight, const P* pred, const patch_strides& ps,
                                          const T* target, const patch_strides& ts,
                                          const patch_geometry& g, recon_error error,
                                          target_normalization<Acc> norm, P* grad,
                                          const patch_strides& gs) {
  const Acc scale = weight / static_cast<Acc>(g.patch_vector_size());
  for (int l = 0; l < loss_lanes; ++l)
    lane_gradient(pred, ps, target, ts, g, l, error, norm, scale, grad, gs);
}

template <typename P>
MWM_HOST_DEVICE void zero_patch(P* grad, const patch_strides& gs, const patch_geometry& g) {
  for (int l = 0; l < loss_lanes; ++l) lane_zero(grad, gs, g, l);
}

// True when every element of the patch (pointer at its first element) is finite: the slow path
// behind a non-finite patch error, telling a bad target from a bad prediction.
template <typename T>
MWM_HOST_DEVICE bool patch_values_finite(const T* values, const patch_strides& s,
                                         const patch_geometry& g) {
  for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
    for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
      for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
        for (std::int64_t c = 0; c < g.channels; ++c)
          if (!detail::finite_value(static_cast<double>(
                  values[pd * s.depth + ph * s.height + pw * s.width + c * s.channel])))
            return false;
  return true;
}

template <typename T>
MWM_HOST_DEVICE bool patch_target_finite(const T* target, const patch_strides& ts,
                                         const patch_geometry& g) {
  return patch_values_finite(target, ts, g);
}

}  // namespace steps

// --- Patch vectors in contiguous memory (P elements in (pd, ph, pw, c) order) -----------------
// Element e goes to lane e % 32 in increasing e, as above: the inner loop over the 32 lanes of
// a group is what compilers vectorize (two to four vector registers of independent sums; no
// addition is reassociated).

namespace detail {

// lanes[e % 32] += f(e) for e = 0 .. count-1 in increasing order; returns the tree total.
template <typename Acc, typename F>
MWM_HOST_DEVICE MWM_INLINE Acc vector_sum(std::int64_t count, F&& f) {
  const std::int64_t full = count - count % loss_lanes;
  Acc lanes[loss_lanes] = {};
  for (std::int64_t i = 0; i < full; i += loss_lanes)
    for (int j = 0; j < loss_lanes; ++j) lanes[j] += f(i + j);
  for (std::int64_t i = full; i < count; ++i) lanes[i - full] += f(i);
  return steps::lane_total(lanes);
}

template <recon_error E, typename Acc, typename P>
MWM_HOST_DEVICE Acc vector_error_sum(const P* p, const Acc* t, std::int64_t count,
                                     target_normalization<Acc> norm) {
  return vector_sum<Acc>(count, [&](std::int64_t e) {
    return element_error<E>(residual(static_cast<Acc>(p[e]), t[e], norm));
  });
}

template <recon_error E, typename Acc, typename P, typename G>
MWM_HOST_DEVICE void vector_gradient_of(const P* p, const Acc* t, std::int64_t count,
                                        target_normalization<Acc> norm, Acc scale, G* grad) {
  for (std::int64_t i = 0; i < count; ++i)
    grad[i] =
        static_cast<G>(element_gradient<E>(residual(static_cast<Acc>(p[i]), t[i], norm), scale));
}

}  // namespace detail

namespace steps {

// patch_target_normalization of a contiguous patch vector.
template <typename Acc>
MWM_HOST_DEVICE target_normalization<Acc> vector_normalization(const Acc* t, std::int64_t count) {
  const Acc mean = detail::vector_sum<Acc>(count, [t](std::int64_t e) { return t[e]; }) /
                   static_cast<Acc>(count);
  const Acc squares = detail::vector_sum<Acc>(count, [t, mean](std::int64_t e) {
    const Acc d = t[e] - mean;
    return d * d;
  });
  return detail::finish_normalization(mean, squares, static_cast<Acc>(count));
}

// The error of a patch averaged over its `count` elements: pred p (any element type) against
// the target t, both contiguous.
template <typename Acc, typename P>
MWM_HOST_DEVICE Acc vector_error(const P* p, const Acc* t, std::int64_t count, recon_error error,
                                 target_normalization<Acc> norm) {
  const Acc sum = error == recon_error::mse
                      ? detail::vector_error_sum<recon_error::mse>(p, t, count, norm)
                      : detail::vector_error_sum<recon_error::l1>(p, t, count, norm);
  return sum / static_cast<Acc>(count);
}

// grad[i] = d(weight * vector_error)/dp[i].
template <typename Acc, typename P, typename G>
MWM_HOST_DEVICE void vector_gradient(Acc weight, const P* p, const Acc* t, std::int64_t count,
                                     recon_error error, target_normalization<Acc> norm, G* grad) {
  const Acc scale = weight / static_cast<Acc>(count);
  if (error == recon_error::mse)
    detail::vector_gradient_of<recon_error::mse>(p, t, count, norm, scale, grad);
  else
    detail::vector_gradient_of<recon_error::l1>(p, t, count, norm, scale, grad);
}

}  // namespace steps

// --- Weights and the patch's share of the reduction -------------------------------------------

namespace steps {

// c = mask * weight of patch `index` (flat b * N + n); weight may be null (all ones).
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc patch_coefficient(const std::uint8_t* mask, const Acc* weight,
                                                 std::int64_t index) {
  if (!mask[index]) return Acc(0);
  return weight ? weight[index] : Acc(1);
}

// What sum(c * err) is divided by: sum(c) (mean), sum(c) + 1e-8 (mean_eps), 1 (sum, none).
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc loss_denominator(loss_reduction reduction, Acc coefficient_sum) {
  if (reduction == loss_reduction::mean) return coefficient_sum;
  if (reduction == loss_reduction::mean_eps)
    return coefficient_sum + static_cast<Acc>(mean_denominator_eps);
  return Acc(1);
}

// The factor of a patch's error in the gradient: upstream * c / denominator (upstream: the
// incoming gradient of the reduced loss, or of this patch's loss for `none`).
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc gradient_factor(Acc upstream, Acc coefficient, Acc denominator) {
  return upstream * coefficient / denominator;
}

// c * err of one patch read in place; patches with c == 0 are not read. Returns false when the
// target patch holds a non-finite value.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE bool weighted_patch_loss(Acc coefficient, const P* pred, const patch_strides& ps,
                                         const T* target, const patch_strides& ts,
                                         const patch_geometry& g, const loss_options& options,
                                         Acc* loss) {
  *loss = Acc(0);
  if (coefficient == Acc(0)) return true;
  target_normalization<Acc> norm{Acc(0), Acc(1)};
  if (options.norm_target) norm = patch_target_normalization<Acc>(target, ts, g);
  const Acc err = patch_error(pred, ps, target, ts, g, options.error, norm);
  *loss = coefficient * err;
  return detail::finite_value(err) || patch_target_finite(target, ts, g);
}

// Gradient of factor * err for one patch read in place: zeros without reading the patch when
// the factor is exactly 0 (a NaN factor from a zero denominator propagates, as in the eager
// formula).
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE void weighted_patch_gradient(Acc factor, const P* pred, const patch_strides& ps,
                                             const T* target, const patch_strides& ts,
                                             const patch_geometry& g, const loss_options& options,
                                             P* grad, const patch_strides& gs) {
  if (factor == Acc(0)) {
    zero_patch(grad, gs, g);
    return;
  }
  target_normalization<Acc> norm{Acc(0), Acc(1)};
  if (options.norm_target) norm = patch_target_normalization<Acc>(target, ts, g);
  patch_error_gradient(factor, pred, ps, target, ts, g, options.error, norm, grad, gs);
}

}  // namespace steps

// Why the loss c * err of one patch is not finite, in the order the forward reports them: a
// non-finite target element, a non-finite weight, a non-finite prediction element, or none of
// these (the error overflowed the accumulation type). `none` for a finite loss.
enum class loss_fault { none, target, weight, pred, overflow };

namespace steps {

// The fault behind the loss value `loss` of patch i (flat b * N + n), reading the patch in place.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE loss_fault patch_loss_fault(const loss_inputs<Acc, P, T>& in, std::int64_t i,
                                            Acc loss) {
  if (detail::finite_value(loss)) return loss_fault::none;
  const grid_shape& grid = in.geometry.grid;
  const std::int64_t b = i / grid.num_patches();
  const std::int64_t n = i % grid.num_patches();
  if (!patch_values_finite(in.target + patch_start(in.target_strides, grid, b, n),
                           in.target_strides, in.geometry))
    return loss_fault::target;
  if (in.weight && !detail::finite_value(in.weight[i])) return loss_fault::weight;
  if (!patch_values_finite(in.pred + patch_start(in.pred_strides, grid, b, n), in.pred_strides,
                           in.geometry))
    return loss_fault::pred;
  return loss_fault::overflow;
}

}  // namespace steps

}  // namespace mwm
