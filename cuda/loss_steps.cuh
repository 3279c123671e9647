// The steps of the loss kernels, in the reduction order of mwm/loss_order.hpp. A warp runs one
// patch: lane l walks the patch's elements l, l + 32, ... in place (lane_* of loss_patch.hpp)
// and the 32 lane sums meet in the halving tree. A block of 256 threads adds one chunk of 256
// per-patch values with the same tree; one block adds the chunk totals level by level.
//
// The warp bodies are written once against a `Warp` that provides the collective: on the GPU
// (loss.cu) the lanes run at once and the tree is a shuffle-down sequence; on the host
// (host_warp below, for tests) the lanes run one after the other into an array that the core's
// halving_total adds. A host compiler reads this file (tests compare the two).
#pragma once

#include <cstdint>

#include "mwm/config.hpp"
#include "mwm/data_error.hpp"
#include "mwm/loss.hpp"

namespace mwm {
namespace gpu {

// Patches per block of the patch kernels: 8 warps of 32 lanes, 256 threads.
constexpr int loss_warps_per_block = 8;
constexpr int loss_block_threads = loss_warps_per_block * loss_lanes;
static_assert(loss_block_threads == loss_chunk, "one chunk of the sums per block of threads");

// The patch (flat b * N + n) that warp `warp` of block `block` starts with; the kernels then
// step by (grid size * 8) patches.
MWM_HOST_DEVICE MWM_INLINE std::int64_t first_patch_of_warp(std::int64_t block, int warp) {
  return block * loss_warps_per_block + warp;
}

// The warp's view of patch i: pointers at its first pred and target elements.
template <typename Acc, typename P, typename T>
struct patch_view {
  const P* pred;
  const T* target;
};

template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE MWM_INLINE patch_view<Acc, P, T> view_patch(const loss_inputs<Acc, P, T>& in,
                                                            std::int64_t i) {
  const grid_shape& grid = in.geometry.grid;
  const std::int64_t n = grid.num_patches();
  return patch_view<Acc, P, T>{in.pred + patch_start(in.pred_strides, grid, i / n, i % n),
                               in.target + patch_start(in.target_strides, grid, i / n, i % n)};
}

// The target statistics of a patch, through the warp's collective sum.
template <typename Acc, typename P, typename T, typename Warp>
MWM_HOST_DEVICE target_normalization<Acc> warp_patch_normalization(const loss_inputs<Acc, P, T>& in,
                                                                   patch_view<Acc, P, T> v,
                                                                   Warp& warp) {
  const patch_geometry& g = in.geometry;
  const std::int64_t count = g.patch_vector_size();
  const Acc mean = warp.total([&](int lane) {
    return lane_target_sum<Acc>(v.target, in.target_strides, g, lane);
  }) / static_cast<Acc>(count);
  const Acc squares = warp.total([&](int lane) {
    return lane_target_squares<Acc>(v.target, in.target_strides, g, lane, mean);
  });
  return detail::finish_normalization(mean, squares, static_cast<Acc>(count));
}

// What a warp computes for one patch of the forward.
template <typename Acc>
struct warp_patch_result {
  Acc coefficient;
  Acc loss;            // c * err
  bool target_finite;  // false: the target patch holds a NaN or an infinity
};

// c and c * err of patch i (not read when c == 0); every lane gets the same values.
template <typename Acc, typename P, typename T, typename Warp>
MWM_HOST_DEVICE warp_patch_result<Acc> warp_patch_loss(const loss_inputs<Acc, P, T>& in,
                                                       std::int64_t i, Warp& warp) {
  const Acc c = patch_coefficient(in.mask, in.weight, i);
  if (c == Acc(0)) return warp_patch_result<Acc>{c, Acc(0), true};
  const patch_geometry& g = in.geometry;
  const patch_view<Acc, P, T> v = view_patch(in, i);
  target_normalization<Acc> norm{Acc(0), Acc(1)};
  if (in.options.norm_target) norm = warp_patch_normalization(in, v, warp);
  const Acc err = warp.total([&](int lane) {
    return lane_error_sum(v.pred, in.pred_strides, v.target, in.target_strides, g, lane,
                          in.options.error, norm);
  }) / static_cast<Acc>(g.patch_vector_size());
  // The slow path only behind a non-finite error: is it the target?
  const bool finite =
      detail::finite_value(err) || patch_target_finite(v.target, in.target_strides, g);
  return warp_patch_result<Acc>{c, c * err, finite};
}

// The device's record of a bad patch i (fault from patch_loss_fault, or loss_fault::target),
// with what data_error_message needs to raise the CPU path's words (finish_loss); keyed so
// that target faults come first (the CPU checks them over every patch before the others) and
// then the smallest flat index.
struct loss_data_error {
  std::uint64_t key;
  data_error error;
};

template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE MWM_INLINE loss_data_error patch_data_error(const loss_inputs<Acc, P, T>& in,
                                                            loss_fault fault, std::int64_t i) {
  const std::int64_t n = in.geometry.grid.num_patches();
  data_error e;
  e.index = i;
  e.width = n;
  switch (fault) {
    case loss_fault::target:
      e.code = data_error_code::loss_target;
      break;
    case loss_fault::weight:
      e.code = data_error_code::loss_weight;
      e.real = static_cast<double>(in.weight[i]);
      break;
    case loss_fault::pred:
      e.code = data_error_code::loss_pred;
      break;
    default:
      e.code = data_error_code::loss_overflow;
      e.bound = static_cast<std::int64_t>(sizeof(Acc) * 8);
      break;
  }
  return loss_data_error{data_error_key(fault == loss_fault::target ? 0 : 1, i), e};
}

// The gradient factor of patch i: upstream * c / denominator.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE MWM_INLINE Acc patch_gradient_factor(const loss_inputs<Acc, P, T>& in,
                                                     const Acc* grad_out, Acc denominator,
                                                     std::int64_t i) {
  const bool per_patch = in.options.reduction == loss_reduction::none;
  return gradient_factor(per_patch ? grad_out[i] : grad_out[0],
                         patch_coefficient(in.mask, in.weight, i), denominator);
}

// The gradient of patch i into grad (strides gs): zeros without reading the patch when its
// factor is exactly 0.
template <typename Acc, typename P, typename T, typename Warp>
MWM_HOST_DEVICE void warp_patch_gradient(const loss_inputs<Acc, P, T>& in, const Acc* grad_out,
                                         Acc denominator, P* grad, const patch_strides& gs,
                                         std::int64_t i, Warp& warp) {
  const patch_geometry& g = in.geometry;
  const grid_shape& grid = g.grid;
  const std::int64_t n = grid.num_patches();
  P* out = grad + patch_start(gs, grid, i / n, i % n);
  const Acc factor = patch_gradient_factor(in, grad_out, denominator, i);
  if (factor == Acc(0)) {
    warp.each_lane([&](int lane) { lane_zero(out, gs, g, lane); });
    return;
  }
  const patch_view<Acc, P, T> v = view_patch(in, i);
  target_normalization<Acc> norm{Acc(0), Acc(1)};
  if (in.options.norm_target) norm = warp_patch_normalization(in, v, warp);
  const Acc scale = factor / static_cast<Acc>(g.patch_vector_size());
  warp.each_lane([&](int lane) {
    lane_gradient(v.pred, in.pred_strides, v.target, in.target_strides, g, lane, in.options.error,
                  norm, scale, out, gs);
  });
}

// --- Sums over patches ----------------------------------------------------------------------

// The index of value t of chunk k (values past the end count as zero).
MWM_HOST_DEVICE MWM_INLINE std::int64_t chunk_member(std::int64_t chunk, int t) {
  return chunk * loss_chunk + t;
}

// The number of chunk totals the first level of `count` values has (>= 1 for count >= 1).
MWM_HOST_DEVICE MWM_INLINE std::int64_t chunk_count(std::int64_t count) {
  return (count + loss_chunk - 1) / loss_chunk;
}

// The host stand-in of the one-block finish kernel: values[0 .. m) are the chunk totals of the
// first level; each further level adds chunk k (zero-padded) by the halving tree and stores it
// at values[k], in place, until one value is left in values[0]. The kernel runs the same loop
// with the block's threads doing the tree's steps.
template <typename Acc>
Acc host_finish_levels(Acc* values, std::int64_t m) {
  if (m == 0) return Acc(0);
  while (m > 1) {
    const std::int64_t chunks = chunk_count(m);
    for (std::int64_t k = 0; k < chunks; ++k) {
      Acc a[loss_chunk];
      for (int t = 0; t < loss_chunk; ++t) {
        const std::int64_t at = chunk_member(k, t);
        a[t] = at < m ? values[at] : Acc(0);
      }
      values[k] = halving_total(a, loss_chunk);
    }
    m = chunks;
  }
  return values[0];
}

// --- The host warp (tests) --------------------------------------------------------------------

// Runs the lanes one after the other; the collective sum is the core's halving tree.
struct host_warp {
  template <typename F>
  MWM_HOST_DEVICE auto total(F&& per_lane) -> decltype(per_lane(0)) {
    decltype(per_lane(0)) lanes[loss_lanes];
    for (int l = 0; l < loss_lanes; ++l) lanes[l] = per_lane(l);
    return lane_total(lanes);
  }
  template <typename F>
  MWM_HOST_DEVICE void each_lane(F&& f) {
    for (int l = 0; l < loss_lanes; ++l) f(l);
  }
};

// What the device's shuffle tree computes, step by step: in step s every lane t adds the value
// of lane t + s (its own value where t + s >= 32, as __shfl_down_sync returns), all lanes at
// once; lane 0 ends with the total, which is then broadcast. Equal to lane_total by
// construction (lane t < s holds exactly a[t] + a[t + s]); tests check it.
template <typename Acc>
Acc host_shuffle_tree(const Acc* lanes) {
  Acc v[loss_lanes];
  for (int l = 0; l < loss_lanes; ++l) v[l] = lanes[l];
  for (int s = loss_lanes / 2; s > 0; s /= 2) {
    Acc next[loss_lanes];
    for (int t = 0; t < loss_lanes; ++t) next[t] = v[t] + (t + s < loss_lanes ? v[t + s] : v[t]);
    for (int t = 0; t < loss_lanes; ++t) v[t] = next[t];
  }
  return v[0];
}

}  // namespace gpu
}  // namespace mwm
