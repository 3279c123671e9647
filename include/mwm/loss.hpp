// Fused masked reconstruction loss (MAE, SparK, SimMIM) over patches read in place.
//
// A prediction either holds patch vectors (B, N, P) with P ordered (pd, ph, pw, c), channel
// fastest (MAE patchify), or has the image layout of the target (B, C, [D,] H, W). Both are read
// through `patch_strides`, so the target is never patchified, normalized or copied. Per patch:
//   t_hat = (t - mean) / sqrt(var + 1e-6)   (var unbiased, over the patch; when norm_target)
//   err   = mean over the patch of (pred - t_hat)^2 (mse) or |pred - t_hat| (l1)
//   c     = mask * weight
// and the loss is sum(c * err) / sum(c) (mean), the same with +1e-8 below (mean_eps, SparK),
// sum(c * err) (sum, which SimMIM's pixel-level denominator is built from), or c * err per patch
// (none).
//
// Layers: the maths of one element (detail::residual, element_error, element_gradient,
// finish_normalization); per-patch functions, MWM_HOST_DEVICE on raw pointers, either on
// contiguous patch vectors (vector_*) or reading a patch in place through its strides (patch_*),
// both adding in the same order; host drivers that run bands of patches for the CPU.
#pragma once

#include <math.h>

#include <cstdint>
#include <string>

#include "config.hpp"
#include "error.hpp"
#include "grid.hpp"

namespace mwm {

enum class recon_error { mse, l1 };
enum class loss_reduction { mean, mean_eps, sum, none };

constexpr double target_norm_eps = 1e-6;     // MAE norm_pix_loss and SparK
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
                                          std::int64_t patch_stride,
                                          std::int64_t element_stride) {
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

// Offset of the first element of patch n (row-major over the grid) of sample b.
MWM_HOST_DEVICE MWM_INLINE std::int64_t patch_start(const patch_strides& s, const grid_shape& grid,
                                                    std::int64_t b, std::int64_t n) {
  const std::int64_t w = n % grid.width;
  const std::int64_t h = (n / grid.width) % grid.height;
  const std::int64_t d = n / (grid.width * grid.height);
  return b * s.batch + d * s.grid_depth + h * s.grid_height + w * s.grid_width;
}

// Per-patch target statistics; {0, 1} leaves the target as it is.
template <typename Acc>
struct target_normalization {
  Acc mean;
  Acc inv_std;
};

namespace detail {

// Reductions keep this many partial sums (element e of a patch vector goes to lane e % 8, the
// tail past the last full group to lane 0), so that compilers vectorize them without
// reassociating additions, and the strided and the contiguous paths add in the same order.
constexpr int loss_lanes = 8;

template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc lane_total(const Acc* lanes) {
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

MWM_HOST_DEVICE MWM_INLINE int lane_of(std::int64_t e, std::int64_t full) {
  return e < full ? static_cast<int>(e % loss_lanes) : 0;
}

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

}  // namespace detail

// --- Patch vectors in contiguous memory (P elements in (pd, ph, pw, c) order) -----------------

// Mean and 1/sqrt(unbiased var + 1e-6) of a patch; two passes (the second over cached data),
// which keeps the variance exact where a one-pass sum of squares would cancel (a large offset
// and a small spread, as in CT). Needs count >= 2.
template <typename Acc>
MWM_HOST_DEVICE target_normalization<Acc> vector_normalization(const Acc* t, std::int64_t count) {
  using detail::loss_lanes;
  const std::int64_t full = count - count % loss_lanes;
  Acc sums[loss_lanes] = {};
  for (std::int64_t i = 0; i < full; i += loss_lanes)
    for (int j = 0; j < loss_lanes; ++j) sums[j] += t[i + j];
  for (std::int64_t i = full; i < count; ++i) sums[0] += t[i];
  const Acc n = static_cast<Acc>(count);
  const Acc mean = detail::lane_total(sums) / n;
  Acc squares[loss_lanes] = {};
  for (std::int64_t i = 0; i < full; i += loss_lanes)
    for (int j = 0; j < loss_lanes; ++j) {
      const Acc d = t[i + j] - mean;
      squares[j] += d * d;
    }
  for (std::int64_t i = full; i < count; ++i) {
    const Acc d = t[i] - mean;
    squares[0] += d * d;
  }
  return detail::finish_normalization(mean, detail::lane_total(squares), n);
}

namespace detail {

template <recon_error E, typename Acc, typename P>
MWM_HOST_DEVICE Acc vector_error_sum(const P* p, const Acc* t, std::int64_t count,
                                     target_normalization<Acc> norm) {
  const std::int64_t full = count - count % loss_lanes;
  Acc lanes[loss_lanes] = {};
  for (std::int64_t i = 0; i < full; i += loss_lanes)
    for (int j = 0; j < loss_lanes; ++j)
      lanes[j] += element_error<E>(residual(static_cast<Acc>(p[i + j]), t[i + j], norm));
  for (std::int64_t i = full; i < count; ++i)
    lanes[0] += element_error<E>(residual(static_cast<Acc>(p[i]), t[i], norm));
  return lane_total(lanes);
}

template <recon_error E, typename Acc, typename P, typename G>
MWM_HOST_DEVICE void vector_gradient_of(const P* p, const Acc* t, std::int64_t count,
                                        target_normalization<Acc> norm, Acc scale, G* grad) {
  for (std::int64_t i = 0; i < count; ++i)
    grad[i] = static_cast<G>(
        element_gradient<E>(residual(static_cast<Acc>(p[i]), t[i], norm), scale));
}

}  // namespace detail

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

// --- One patch read in place through its strides (pointers at the patch's first element) -----
// Elements are visited in patch-vector order e = ((pd * PH + ph) * PW + pw) * C + c, with the
// lane rule of the contiguous functions, so both paths add in the same order.

template <typename Acc, typename T>
MWM_HOST_DEVICE target_normalization<Acc> patch_target_normalization(const T* target,
                                                                      const patch_strides& ts,
                                                                      const patch_geometry& g) {
  using detail::loss_lanes;
  const std::int64_t count = g.patch_vector_size();
  const std::int64_t full = count - count % loss_lanes;
  Acc sums[loss_lanes] = {};
  std::int64_t e = 0;
  for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
    for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
      for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
        for (std::int64_t c = 0; c < g.channels; ++c, ++e)
          sums[detail::lane_of(e, full)] += static_cast<Acc>(
              target[pd * ts.depth + ph * ts.height + pw * ts.width + c * ts.channel]);
  const Acc n = static_cast<Acc>(count);
  const Acc mean = detail::lane_total(sums) / n;
  Acc squares[loss_lanes] = {};
  e = 0;
  for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
    for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
      for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
        for (std::int64_t c = 0; c < g.channels; ++c, ++e) {
          const Acc d = static_cast<Acc>(target[pd * ts.depth + ph * ts.height + pw * ts.width +
                                                c * ts.channel]) -
                        mean;
          squares[detail::lane_of(e, full)] += d * d;
        }
  return detail::finish_normalization(mean, detail::lane_total(squares), n);
}

template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE Acc patch_error(const P* pred, const patch_strides& ps, const T* target,
                                const patch_strides& ts, const patch_geometry& g,
                                recon_error error, target_normalization<Acc> norm) {
  using detail::loss_lanes;
  const std::int64_t count = g.patch_vector_size();
  const std::int64_t full = count - count % loss_lanes;
  Acc lanes[loss_lanes] = {};
  std::int64_t e = 0;
  for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
    for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
      for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
        for (std::int64_t c = 0; c < g.channels; ++c, ++e) {
          const Acc r = detail::residual(
              static_cast<Acc>(pred[pd * ps.depth + ph * ps.height + pw * ps.width +
                                    c * ps.channel]),
              static_cast<Acc>(target[pd * ts.depth + ph * ts.height + pw * ts.width +
                                      c * ts.channel]),
              norm);
          lanes[detail::lane_of(e, full)] += error == recon_error::mse
                                                 ? detail::element_error<recon_error::mse>(r)
                                                 : detail::element_error<recon_error::l1>(r);
        }
  return detail::lane_total(lanes) / static_cast<Acc>(count);
}

// Writes grad = d(weight * patch_error)/d pred for the P elements of one patch.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE void patch_error_gradient(Acc weight, const P* pred, const patch_strides& ps,
                                          const T* target, const patch_strides& ts,
                                          const patch_geometry& g, recon_error error,
                                          target_normalization<Acc> norm, P* grad,
                                          const patch_strides& gs) {
  const Acc scale = weight / static_cast<Acc>(g.patch_vector_size());
  for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
    for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
      for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
        for (std::int64_t c = 0; c < g.channels; ++c) {
          const Acc r = detail::residual(
              static_cast<Acc>(pred[pd * ps.depth + ph * ps.height + pw * ps.width +
                                    c * ps.channel]),
              static_cast<Acc>(target[pd * ts.depth + ph * ts.height + pw * ts.width +
                                      c * ts.channel]),
              norm);
          grad[pd * gs.depth + ph * gs.height + pw * gs.width + c * gs.channel] =
              static_cast<P>(error == recon_error::mse
                                 ? detail::element_gradient<recon_error::mse>(r, scale)
                                 : detail::element_gradient<recon_error::l1>(r, scale));
        }
}

template <typename P>
MWM_HOST_DEVICE void zero_patch(P* grad, const patch_strides& gs, const patch_geometry& g) {
  for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
    for (std::int64_t ph = 0; ph < g.patch_height; ++ph)
      for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
        for (std::int64_t c = 0; c < g.channels; ++c)
          grad[pd * gs.depth + ph * gs.height + pw * gs.width + c * gs.channel] =
              static_cast<P>(0.0f);
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

// --- Reduction --------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Host drivers. They work on bands: the grid.width patches of one (b, gd, gh) share their image
// rows, so a band is read row after row (a few long streams the prefetcher follows, instead of
// one short stream per patch row) into a buffer in patch-vector order, where the contiguous
// functions above run. Flat patch index b * N + n = band * grid.width + x.

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

// Why the loss c * err of one patch is not finite, in the order the forward reports them: a
// non-finite target element, a non-finite weight, a non-finite prediction element, or none of
// these (the error overflowed the accumulation type). `none` for a finite loss.
enum class loss_fault { none, target, weight, pred, overflow };

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

inline void validate_loss_geometry(const patch_geometry& g, const loss_options& options) {
  detail::require(!options.norm_target || g.patch_vector_size() >= 2, "patch vector size",
                  g.patch_vector_size(),
                  "norm_target needs at least 2 elements per patch (unbiased variance)");
}

inline std::int64_t band_count(const patch_geometry& g, std::int64_t batch) {
  return batch * g.grid.depth * g.grid.height;
}

// True when the strides describe dense patch vectors (P contiguous elements per patch).
inline bool dense_patch_vectors(const patch_strides& s, const patch_geometry& g) {
  return s.channel == 1 && s.width == g.channels && s.height == g.channels * g.patch_width &&
         s.depth == s.height * g.patch_height;
}

namespace detail {

// A hint that `address` will be read soon (host code; a no-op where the builtin is missing).
inline void prefetch_line(const void* address) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(address);
#else
  (void)address;
#endif
}

// A byte range to prefetch while a band is gathered: the band's dense predictions, so that
// both streams are in flight at once instead of one after the other.
struct prefetch_range {
  const char* begin = nullptr;
  std::int64_t bytes = 0;
};

inline std::int64_t band_start(const patch_strides& s, const grid_shape& grid,
                               std::int64_t band) {
  const std::int64_t rows = grid.depth * grid.height;
  const std::int64_t b = band / rows;
  const std::int64_t d = (band % rows) / grid.height;
  const std::int64_t h = band % grid.height;
  return b * s.batch + d * s.grid_depth + h * s.grid_height;
}

template <bool Unit, typename Acc, typename T>
void gather_rows(const T* base, const patch_strides& s, const patch_geometry& g,
                 const Acc* active, Acc* out, prefetch_range ahead) {
  constexpr std::int64_t line = 64;
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t step = Unit ? 1 : s.width;
  const std::int64_t rows = g.channels * g.patch_depth * g.patch_height;
  const std::int64_t lines_per_row = (ahead.bytes / line + rows - 1) / rows;
  std::int64_t next = 0;
  for (std::int64_t c = 0; c < g.channels; ++c)
    for (std::int64_t pd = 0; pd < g.patch_depth; ++pd)
      for (std::int64_t ph = 0; ph < g.patch_height; ++ph) {
        for (std::int64_t k = 0; k < lines_per_row && next < ahead.bytes; ++k, next += line)
          prefetch_line(ahead.begin + next);
        const T* row = base + c * s.channel + pd * s.depth + ph * s.height;
        const std::int64_t first = ((pd * g.patch_height + ph) * g.patch_width) * g.channels + c;
        for (std::int64_t x = 0; x < g.grid.width; ++x) {
          if (active[x] == Acc(0)) continue;
          const T* src = row + x * s.grid_width;
          Acc* dst = out + x * p + first;
          for (std::int64_t pw = 0; pw < g.patch_width; ++pw)
            dst[pw * g.channels] = static_cast<Acc>(src[pw * step]);
        }
      }
}

template <bool Unit, typename Acc, typename P>
void scatter_rows(const Acc* in, const Acc* active, const patch_strides& s,
                  const patch_geometry& g, P* base) {
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
void gather_band(const T* data, const patch_strides& s, const patch_geometry& g,
                 std::int64_t band, const Acc* active, Acc* out,
                 detail::prefetch_range ahead = {}) {
  const T* base = data + detail::band_start(s, g.grid, band);
  if (s.width == 1) detail::gather_rows<true>(base, s, g, active, out, ahead);
  else detail::gather_rows<false>(base, s, g, active, out, ahead);
}

namespace detail {

// The dense predictions of a band (empty when they are not dense: they are gathered then).
template <typename P>
prefetch_range band_predictions(const P* pred, const patch_strides& ps, const patch_geometry& g,
                                std::int64_t band, bool dense) {
  if (!dense) return prefetch_range{};
  const std::int64_t first = band * g.grid.width;
  const P* start = pred + patch_start(ps, g.grid, first / g.grid.num_patches(),
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
  if (s.width == 1) detail::scatter_rows<true>(in, active, s, g, base);
  else detail::scatter_rows<false>(in, active, s, g, base);
}

// Scratch (in Acc elements) that band_losses and band_gradients need per call.
inline std::int64_t band_scratch_size(const patch_geometry& g) {
  return 3 * g.grid.width * g.patch_vector_size() + g.grid.width;
}

// Writes c * err of the patches of bands [begin, end) to losses (flat index); returns the first
// flat index whose target patch holds a non-finite value, or -1. `scratch` holds
// band_scratch_size(g) elements.
template <typename Acc, typename P, typename T>
std::int64_t band_losses(const loss_inputs<Acc, P, T>& in, std::int64_t begin, std::int64_t end,
                         Acc* losses, Acc* scratch) {
  const patch_geometry& g = in.geometry;
  const std::int64_t width = g.grid.width;
  const std::int64_t n = g.grid.num_patches();
  const std::int64_t p = g.patch_vector_size();
  Acc* targets = scratch;
  Acc* preds = scratch + width * p;
  Acc* coefficients = scratch + 3 * width * p;
  const bool direct = dense_patch_vectors(in.pred_strides, g);
  std::int64_t first_bad = -1;
  for (std::int64_t band = begin; band < end; ++band) {
    const std::int64_t first = band * width;
    bool any = false;
    for (std::int64_t x = 0; x < width; ++x) {
      coefficients[x] = patch_coefficient(in.mask, in.weight, first + x);
      any = any || coefficients[x] != Acc(0);
    }
    if (!any) {
      for (std::int64_t x = 0; x < width; ++x) losses[first + x] = Acc(0);
      continue;
    }
    gather_band(in.target, in.target_strides, g, band, coefficients, targets,
                detail::band_predictions(in.pred, in.pred_strides, g, band, direct));
    if (!direct) gather_band(in.pred, in.pred_strides, g, band, coefficients, preds);
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t i = first + x;
      losses[i] = Acc(0);
      if (coefficients[x] == Acc(0)) continue;
      const Acc* t = targets + x * p;
      target_normalization<Acc> norm{Acc(0), Acc(1)};
      if (in.options.norm_target) norm = vector_normalization(t, p);
      const Acc err =
          direct ? vector_error(in.pred + patch_start(in.pred_strides, g.grid, i / n, i % n), t,
                                p, in.options.error, norm)
                 : vector_error(preds + x * p, t, p, in.options.error, norm);
      losses[i] = coefficients[x] * err;
      if (!detail::finite_value(err) && first_bad < 0) {
        for (std::int64_t e = 0; e < p; ++e)
          if (!detail::finite_value(t[e])) {
            first_bad = i;
            break;
          }
      }
    }
  }
  return first_bad;
}

// sum of the coefficients, in a fixed order (so results do not depend on the thread count).
template <typename Acc>
Acc coefficient_total(const std::uint8_t* mask, const Acc* weight, std::int64_t count) {
  Acc total = Acc(0);
  for (std::int64_t i = 0; i < count; ++i) total += patch_coefficient(mask, weight, i);
  return total;
}

// The reduced loss from per-patch losses c * err, summed in a fixed order.
template <typename Acc>
Acc reduce_patch_losses(const Acc* losses, std::int64_t count, loss_reduction reduction,
                        Acc coefficient_sum) {
  Acc total = Acc(0);
  for (std::int64_t i = 0; i < count; ++i) total += losses[i];
  return total / loss_denominator(reduction, coefficient_sum);
}

namespace detail {

template <typename Acc>
const char* accumulation_name() {
  return sizeof(Acc) == sizeof(float) ? "float32" : "float64";
}

inline std::string patch_place(std::int64_t index, std::int64_t num_patches) {
  const std::int64_t n = num_patches > 0 ? num_patches : 1;
  return "sample " + to_text(index / n) + ", patch " + to_text(index % n);
}

constexpr const char* propagate_hint =
    "; nonfinite = \"propagate\" returns the non-finite loss instead";

// Throws mwm::error describing `fault` at patch `index` (flat b * N + n).
template <typename Acc, typename P, typename T>
[[noreturn]] void throw_loss_fault(const loss_inputs<Acc, P, T>& in, loss_fault fault,
                                   std::int64_t index) {
  const std::string place = patch_place(index, in.geometry.grid.num_patches());
  switch (fault) {
    case loss_fault::target:
      throw mwm::error("mwm: target has a non-finite value (NaN or Inf) in " + place +
                       ", which the loss reads (a masked patch)");
    case loss_fault::weight:
      throw mwm::error("mwm: weight of " + place + " = " + to_text(in.weight[index]) +
                       ": must be finite where mask is True" + propagate_hint);
    case loss_fault::pred:
      throw mwm::error("mwm: pred has a non-finite value (NaN or Inf) in " + place +
                       ", which the loss reads (a masked patch)" + propagate_hint);
    default:
      throw mwm::error("mwm: the loss of " + place + " overflows " + accumulation_name<Acc>() +
                       " (pred, target and weight are finite there: |pred - target| is too "
                       "large)" + propagate_hint);
  }
}

// Throws for the first patch (in flat order) whose loss is not finite; returns when all are.
template <typename Acc, typename P, typename T>
void require_finite_patch_losses(const loss_inputs<Acc, P, T>& in, const Acc* losses,
                                 std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    const loss_fault fault = patch_loss_fault(in, i, losses[i]);
    if (fault != loss_fault::none) throw_loss_fault(in, fault, i);
  }
}

}  // namespace detail

// The end of the forward, after band_losses ran over every band and wrote the per-patch losses
// c * err (count = batch * N of them); `first_bad_target` is the first index band_losses
// reported (or -1). Throws mwm::error for that non-finite target patch; under
// nonfinite_policy::error also when the result would hold a NaN or an infinity, naming the first
// patch whose loss is not finite and why (weight, pred, or an overflow of the error), or the
// overflow of the reduction. The one non-finite result it lets through is `mean`'s 0/0 when
// sum(mask * weight) == 0 (nothing masked; MAE's semantics, documented). Returns the reduced loss;
// 0 for reduction none, whose result is the per-patch losses themselves.
template <typename Acc, typename P, typename T>
Acc finish_loss(const loss_inputs<Acc, P, T>& in, const Acc* losses,
                std::int64_t first_bad_target) {
  if (first_bad_target >= 0) detail::throw_loss_fault(in, loss_fault::target, first_bad_target);
  const std::int64_t count = in.batch * in.geometry.grid.num_patches();
  const bool check = in.options.nonfinite == nonfinite_policy::error;
  if (in.options.reduction == loss_reduction::none) {
    if (check) detail::require_finite_patch_losses(in, losses, count);
    return Acc(0);
  }
  const Acc total = coefficient_total(in.mask, in.weight, count);
  const Acc loss = reduce_patch_losses(losses, count, in.options.reduction, total);
  if (check && !detail::finite_value(loss)) {
    detail::require_finite_patch_losses(in, losses, count);
    const bool nothing_masked = in.options.reduction == loss_reduction::mean && total == Acc(0);
    if (!nothing_masked)
      throw mwm::error(std::string("mwm: the reduced loss overflows ") +
                       detail::accumulation_name<Acc>() +
                       " (every patch's loss is finite, their sum is not)" +
                       detail::propagate_hint);
  }
  return loss;
}

// Writes the gradient of the patches of bands [begin, end) into grad (strides gs, every element
// written). `upstream`: one value (mean, mean_eps, sum) or one per patch (none).
template <typename Acc, typename P, typename T>
void band_gradients(const loss_inputs<Acc, P, T>& in, const Acc* upstream, Acc denominator,
                    P* grad, const patch_strides& gs, std::int64_t begin, std::int64_t end,
                    Acc* scratch) {
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
      factors[x] = gradient_factor(per_patch ? upstream[i] : upstream[0],
                                   patch_coefficient(in.mask, in.weight, i), denominator);
      any = any || factors[x] != Acc(0);
    }
    if (any) {
      gather_band(in.target, in.target_strides, g, band, factors, targets,
                  detail::band_predictions(in.pred, in.pred_strides, g, band, direct_pred));
      if (!direct_pred) gather_band(in.pred, in.pred_strides, g, band, factors, preds);
    }
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t i = first + x;
      P* out = direct_grad ? grad + patch_start(gs, g.grid, i / n, i % n) : nullptr;
      if (factors[x] == Acc(0)) {
        if (out)
          for (std::int64_t e = 0; e < p; ++e) out[e] = static_cast<P>(0.0f);
        continue;
      }
      const Acc* t = targets + x * p;
      target_normalization<Acc> norm{Acc(0), Acc(1)};
      if (in.options.norm_target) norm = vector_normalization(t, p);
      const P* pred_patch =
          direct_pred ? in.pred + patch_start(in.pred_strides, g.grid, i / n, i % n) : nullptr;
      if (out && pred_patch)
        vector_gradient(factors[x], pred_patch, t, p, in.options.error, norm, out);
      else if (out)
        vector_gradient(factors[x], preds + x * p, t, p, in.options.error, norm, out);
      else if (pred_patch)
        vector_gradient(factors[x], pred_patch, t, p, in.options.error, norm, grads + x * p);
      else
        vector_gradient(factors[x], preds + x * p, t, p, in.options.error, norm, grads + x * p);
    }
    if (!direct_grad) scatter_band(grads, factors, grad, gs, g, band);
  }
}

}  // namespace mwm
