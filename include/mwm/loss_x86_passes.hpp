// The CPU loss's band work on one x86 vector unit, written once for both: the gather of a band's
// target rows, and the fused passes over a patch vector — normalization, error and gradient —
// with the bits of the portable gather_band, vector_normalization, vector_error and
// vector_gradient (loss_bands.hpp, loss_patch.hpp), which tests/cpp/test_loss_x86.cpp checks
// for each unit. The 32 lanes of the reduction order are
// the registers of a lane pack (loss_x86_lanes.hpp): element e is added into lane e % 32 in
// increasing e, and the lane tree is the same halving steps, so no addition moves. One pass over
// prediction and target feeds each element's residual to both the error's lane and its
// gradient, streamed straight to memory; only the squared deviations, which need the mean, take
// a pass of their own. No FMA: every product is rounded before it is added, as in the portable
// code.
//
// Included twice by loss_x86.hpp, with MWM_LANES naming the lane pack and MWM_LANES_TARGET its
// unit ("avx512f", "avx2"), inside a namespace of its own each time: which unit a function is
// compiled for is an attribute, not a template parameter, so a template over the pack alone
// could not be compiled for both. No include guard, for that reason.
#if !defined(MWM_LANES) || !defined(MWM_LANES_TARGET)
#error "loss_x86_passes.hpp is included by loss_x86.hpp, with MWM_LANES and MWM_LANES_TARGET"
#endif

#define MWM_LANES_INLINE __attribute__((target(MWM_LANES_TARGET), always_inline)) inline
#define MWM_LANES_ENTRY __attribute__((target(MWM_LANES_TARGET))) inline
#define MWM_LANES_LAMBDA __attribute__((target(MWM_LANES_TARGET)))
// Before every loop over a pack's registers: unrolled before GCC places the lane sums, so that
// they stay in registers (a loop it unrolls late leaves them in memory, a store every step).
#define MWM_EACH_REGISTER _Pragma("GCC unroll 4")

using lanes = MWM_LANES;
using reg = lanes::reg;
constexpr int registers = lanes::registers;
constexpr int width = lanes::width;

// vector_normalization: two passes over t (in cache), or one where the lane sums of the first
// are given (`sums`, 32 lanes: the gather's).
MWM_LANES_INLINE target_normalization<float> normalization(const float* t, std::int64_t count,
                                                           const float* sums) {
  const std::int64_t full = count - count % loss_lanes;
  const std::int64_t rest = count - full;
  reg l[registers];
  MWM_EACH_REGISTER
  for (int q = 0; q < registers; ++q) l[q] = sums ? lanes::load(sums + width * q) : lanes::zero();
  if (!sums) {
    for (std::int64_t i = 0; i < full; i += loss_lanes) {
      MWM_EACH_REGISTER
      for (int q = 0; q < registers; ++q) l[q] = lanes::add(l[q], lanes::load(t + i + width * q));
    }
    MWM_EACH_REGISTER
    for (int q = 0; q < registers; ++q) {
      if (width * q >= rest) continue;
      const lanes::mask k = lanes::first(rest - width * q);
      l[q] = lanes::masked_add(l[q], k, lanes::masked_load(k, t + full + width * q));
    }
  }
  const float mean = lanes::total(l) / static_cast<float>(count);
  const reg m = lanes::set1(mean);
  MWM_EACH_REGISTER
  for (int q = 0; q < registers; ++q) l[q] = lanes::zero();
  for (std::int64_t i = 0; i < full; i += loss_lanes) {
    MWM_EACH_REGISTER
    for (int q = 0; q < registers; ++q) {
      const reg d = lanes::sub(lanes::load(t + i + width * q), m);
      l[q] = lanes::add(l[q], lanes::mul(d, d));
    }
  }
  MWM_EACH_REGISTER
  for (int q = 0; q < registers; ++q) {
    if (width * q >= rest) continue;
    const lanes::mask k = lanes::first(rest - width * q);
    const reg d = lanes::sub(lanes::masked_load(k, t + full + width * q), m);
    l[q] = lanes::masked_add(l[q], k, lanes::mul(d, d));
  }
  return finish_normalization(mean, lanes::total(l), static_cast<float>(count));
}

// The error and the gradient of one register of elements.
struct residual_step {
  reg error;
  reg gradient;
};

// residual, element_error and element_gradient of loss_patch.hpp, operation for operation.
template <recon_error E>
MWM_LANES_INLINE residual_step residual(reg p, reg t, reg mean, reg inv_std, reg scale) {
  const reg r = lanes::sub(p, lanes::mul(lanes::sub(t, mean), inv_std));
  if constexpr (E == recon_error::mse) {
    return {lanes::mul(r, r), lanes::mul(lanes::mul(lanes::set1(2.0f), r), scale)};
  } else {
    // r < 0 ? -r : r, and r > 0 ? scale : (r < 0 ? -scale : 0): a NaN r keeps r and gives 0.
    const reg zero = lanes::zero();
    const lanes::mask below = lanes::less(r, zero);
    const reg sign = lanes::select(below, lanes::negated(scale), zero);
    return {lanes::select(below, lanes::negated(r), r),
            lanes::select(lanes::greater(r, zero), scale, sign)};
  }
}

// The sum over the patch of element_error, in the lane order, and (Grad) the gradient of each
// element for `scale` into grad (Stream: as streaming stores, grad 64-byte aligned).
template <recon_error E, bool Grad, bool Stream>
MWM_LANES_INLINE float error_and_gradient(const float* p, const float* t, std::int64_t count,
                                          target_normalization<float> norm, float scale,
                                          float* grad) {
  const std::int64_t full = count - count % loss_lanes;
  const std::int64_t rest = count - full;
  const reg mean = lanes::set1(norm.mean), inv_std = lanes::set1(norm.inv_std);
  const reg s = lanes::set1(scale);
  reg l[registers];
  MWM_EACH_REGISTER
  for (int q = 0; q < registers; ++q) l[q] = lanes::zero();
  for (std::int64_t i = 0; i < full; i += loss_lanes) {
    MWM_EACH_REGISTER
    for (int q = 0; q < registers; ++q) {
      const std::int64_t at = i + width * q;
      const residual_step r =
          residual<E>(lanes::load(p + at), lanes::load(t + at), mean, inv_std, s);
      l[q] = lanes::add(l[q], r.error);
      if constexpr (Grad && Stream)
        lanes::stream(grad + at, r.gradient);
      else if constexpr (Grad)
        lanes::store(grad + at, r.gradient);
    }
  }
  MWM_EACH_REGISTER
  for (int q = 0; q < registers; ++q) {
    if (width * q >= rest) continue;
    const std::int64_t at = full + width * q;
    const lanes::mask k = lanes::first(rest - width * q);
    const residual_step r =
        residual<E>(lanes::masked_load(k, p + at), lanes::masked_load(k, t + at), mean, inv_std, s);
    l[q] = lanes::masked_add(l[q], k, r.error);
    if constexpr (Grad) lanes::masked_store(grad + at, k, r.gradient);
  }
  return lanes::total(l);
}

template <recon_error E>
MWM_LANES_ENTRY float patch_error(const float* p, const float* t, std::int64_t count,
                                  target_normalization<float> norm, float scale, float* grad,
                                  bool stream) {
  if (!grad) return error_and_gradient<E, false, false>(p, t, count, norm, scale, grad);
  if (stream) return error_and_gradient<E, true, true>(p, t, count, norm, scale, grad);
  return error_and_gradient<E, true, false>(p, t, count, norm, scale, grad);
}

// The normalization (when norm_target) into *norm, and the error of the patch averaged over
// its `count` elements, as steps::vector_normalization and steps::vector_error give them; with
// `grad`, also steps::vector_gradient(weight, ...) into it. `stream`: grad is 64-byte aligned
// and its full vectors go out as streaming stores (the caller fences, stream_fence()). `sums`:
// the target's 32 lane sums when the gather added them, else null.
MWM_LANES_ENTRY float patch_loss(const float* p, const float* t, std::int64_t count,
                                 const loss_options& options, target_normalization<float>* norm,
                                 float weight, float* grad, bool stream,
                                 const float* sums = nullptr) {
  *norm =
      options.norm_target ? normalization(t, count, sums) : target_normalization<float>{0.0f, 1.0f};
  const float scale = weight / static_cast<float>(count);
  const float sum = options.error == recon_error::mse
                        ? patch_error<recon_error::mse>(p, t, count, *norm, scale, grad, stream)
                        : patch_error<recon_error::l1>(p, t, count, *norm, scale, grad, stream);
  return sum / static_cast<float>(count);
}

// Whether gather_unit_rows runs on this CPU for this layout: the unit (capped by
// MWM_CPU_VECTOR_BITS), unit-stride rows of 1 or 3 channels, whole registers of pixels each.
inline bool gathers_rows(const patch_strides& s, const patch_geometry& g) {
  return x86_vector_bits() >= 32 * width && s.width == 1 && (g.channels == 1 || g.channels == 3) &&
         g.patch_width % width == 0;
}

// gather_band's unit-stride rows (gathers_rows) into patch-vector order, channel fastest (for
// C = 3 through lanes::interleave_three). Each register, as it is stored, is also added into
// its patch's lane sums (sums + 32 x: the first pass of vector_normalization in the same order,
// since a patch's rows come in increasing element order), so the normalization does not read
// the target again for its mean. `ahead` as in gather_band.
template <int C>
MWM_LANES_ENTRY void gather_unit_rows(const float* base, const patch_strides& s,
                                      const patch_geometry& g, const float* active, float* out,
                                      float* sums, prefetch_range ahead) {
  const std::int64_t p = g.patch_vector_size();
  const std::int64_t pw = g.patch_width;
  for (std::int64_t x = 0; x < g.grid.width; ++x)
    if (active[x] != 0.0f)
      for (int l = 0; l < loss_lanes; ++l) sums[loss_lanes * x + l] = 0.0f;
  // `first` is a multiple of width: a patch row starts at a whole register of its patch vector.
  walk_band_rows(base, s, g, C, active, ahead,
                 [out, sums, p, pw, channel = s.channel](const float* src, std::int64_t x,
                                                         std::int64_t first) MWM_LANES_LAMBDA {
                   float* dst = out + x * p + first;
                   float* lane_sums = sums + loss_lanes * x;
                   reg sum[registers];
                   MWM_EACH_REGISTER
                   for (int q = 0; q < registers; ++q) sum[q] = lanes::load(lane_sums + width * q);
                   std::int64_t j = first / width;
                   for (std::int64_t k = 0; k < pw; k += width) {
                     if constexpr (C == 1) {
                       (void)channel;  // the other channels' rows are read for C = 3 only
                       const reg v = lanes::load(src + k);
                       lanes::store(dst + k, v);
                       lanes::add_to_part(sum, j++, v);
                     } else {
                       reg v[3];
                       lanes::interleave_three(lanes::load(src + k), lanes::load(src + channel + k),
                                               lanes::load(src + 2 * channel + k), v);
                       for (int u = 0; u < 3; ++u) {
                         lanes::store(dst + 3 * k + width * u, v[u]);
                         lanes::add_to_part(sum, j++, v[u]);
                       }
                     }
                   }
                   MWM_EACH_REGISTER
                   for (int q = 0; q < registers; ++q) lanes::store(lane_sums + width * q, sum[q]);
                 });
}

// gather_band's gather where gathers_rows holds.
inline void gather_band_rows(const float* base, const patch_strides& s, const patch_geometry& g,
                             const float* active, float* out, float* sums, prefetch_range ahead) {
  if (g.channels == 1)
    gather_unit_rows<1>(base, s, g, active, out, sums, ahead);
  else
    gather_unit_rows<3>(base, s, g, active, out, sums, ahead);
}

#undef MWM_LANES_INLINE
#undef MWM_LANES_ENTRY
#undef MWM_LANES_LAMBDA
#undef MWM_EACH_REGISTER
