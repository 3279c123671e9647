// The steps of the loss kernels, in the reduction order of mwm/loss_order.hpp. A group of 8
// threads runs one patch: thread q holds lanes 4q .. 4q+3 and walks their elements
// e = 32k + 4q + j (j < 4) in increasing k, so lane 4q + j adds exactly the elements
// e = 4q + j (mod 32), in increasing order, as lane_* of loss_patch.hpp does; the 32 lane sums
// meet in the halving tree (strides 16, 8, 4 across the group's threads, 2 and 1 inside a
// thread). Four lanes per thread let the kernels load the four elements of a step as one float4
// where they are contiguous and aligned (quad_vector_loads), with a scalar fallback elsewhere,
// without changing which lane adds which element. A block of 256 threads adds one chunk of 256
// per-patch values with the same tree; one block adds the chunk totals level by level.
//
// The patch bodies are written once against a `Warp` (the patch's group) that provides the
// collective: on the GPU (loss.cu) the threads run at once and the tree is a shuffle-down
// sequence; on the host, host_quad_warp runs the 8 threads' four-lane walks one after the other
// and host_warp runs the 32 lanes one by one (lane_* of the core), both into an array that the
// core's halving_total adds. A host compiler reads this file (tests compare all three).
#pragma once

#include <cstdint>
#include <type_traits>

#include "mwm/config.hpp"
#include "mwm/data_error.hpp"
#include "mwm/loss.hpp"

namespace mwm {
namespace gpu {

// The four-lane loops are unrolled on the device, so that their arrays stay in registers.
#if defined(__CUDA_ARCH__)
#define MWM_LOSS_UNROLL_ALL _Pragma("unroll")
#else
#define MWM_LOSS_UNROLL_ALL
#endif

// Lanes per thread and threads per patch: 4 x 8 = the 32 lanes of loss_order.hpp.
constexpr int loss_lanes_per_thread = 4;
constexpr int loss_threads_per_patch = loss_lanes / loss_lanes_per_thread;
// Blocks of 256 threads: 32 patches each.
constexpr int loss_block_threads = loss_chunk;
constexpr int loss_patches_per_block = loss_block_threads / loss_threads_per_patch;
static_assert(loss_lanes_per_thread * loss_threads_per_patch == loss_lanes, "32 lanes a patch");

// The patch (flat b * N + n) that group `group` of block `block` starts with; the kernels then
// step by (grid size * 32) patches.
MWM_HOST_DEVICE MWM_INLINE std::int64_t first_patch_of_group(std::int64_t block, int group) {
  return block * loss_patches_per_block + group;
}

// Which tensors a group reads (or writes) four elements at a time as one 16-byte vector.
struct quad_loads {
  bool pred = false;
  bool target = false;
  bool grad = false;
};

// True when the four elements e = 4m .. 4m+3 of every patch of a tensor are contiguous and
// 16-byte aligned: float elements, P % 4 == 0, the data 16-byte aligned, and either dense patch
// vectors (patch starts a multiple of 4 elements apart) or one channel with unit-stride rows
// of a multiple of 4 pixels (row starts a multiple of 4 apart). Host code (the launchers).
template <typename T>
inline bool quad_vector_loads(const T* data, const patch_strides& s, const patch_geometry& g) {
  if (!std::is_same<T, float>::value || data == nullptr) return false;
  if (reinterpret_cast<std::uintptr_t>(data) % 16 != 0 || g.patch_vector_size() % 4 != 0)
    return false;
  const auto multiple_of_4 = [](std::int64_t v) { return v % 4 == 0; };
  const bool patch_starts = multiple_of_4(s.batch) && multiple_of_4(s.grid_depth) &&
                            multiple_of_4(s.grid_height) && multiple_of_4(s.grid_width);
  if (!patch_starts) return false;
  if (dense_patch_vectors(s, g)) return true;
  return g.channels == 1 && s.width == 1 && g.patch_width % 4 == 0 && multiple_of_4(s.depth) &&
         multiple_of_4(s.height);
}

// The four lane sums of one thread.
template <typename Acc>
struct lane_quad {
  Acc v[loss_lanes_per_thread];
};

// The four contiguous elements at `at`: one float4 in device code (`at` 16-byte aligned).
template <typename Acc, typename T>
MWM_HOST_DEVICE MWM_INLINE void load_four(const T* at, Acc* out) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) {
    const float4 v = *reinterpret_cast<const float4*>(at);
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
  } else
#endif
  {
    for (int j = 0; j < loss_lanes_per_thread; ++j) out[j] = static_cast<Acc>(at[j]);
  }
}

template <typename P, typename Acc>
MWM_HOST_DEVICE MWM_INLINE void store_four(P* at, const Acc* values) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<P, float>::value) {
    *reinterpret_cast<float4*>(at) =
        make_float4(static_cast<float>(values[0]), static_cast<float>(values[1]),
                    static_cast<float>(values[2]), static_cast<float>(values[3]));
  } else
#endif
  {
    for (int j = 0; j < loss_lanes_per_thread; ++j) at[j] = static_cast<P>(values[j]);
  }
}

// Reads the `valid` (<= 4) elements from the cursor's on: four contiguous ones at once when
// `vector` (quad_vector_loads; then valid is 4), else one by one.
template <typename Acc, typename T>
MWM_HOST_DEVICE MWM_INLINE void load_quad(const T* base, const patch_strides& s,
                                          const patch_cursor& at, bool vector, int valid,
                                          Acc* out) {
  const std::int64_t first = at.offset(s);
  if (vector) {
    load_four(base + first, out);
    return;
  }
  out[0] = static_cast<Acc>(base[first]);
  // A fixed trip count with a guard keeps `out` in registers (a loop to `valid` would not).
  MWM_LOSS_UNROLL_ALL
  for (int j = 1; j < loss_lanes_per_thread; ++j)
    if (j < valid) out[j] = static_cast<Acc>(base[at.offset_after(s, j)]);
}

// Writes the `valid` elements from the cursor's on, as load_quad reads them.
template <typename P, typename Acc>
MWM_HOST_DEVICE MWM_INLINE void store_quad(P* base, const patch_strides& s, const patch_cursor& at,
                                           bool vector, int valid, const Acc* values) {
  const std::int64_t first = at.offset(s);
  if (vector) {
    store_four(base + first, values);
    return;
  }
  base[first] = static_cast<P>(values[0]);
  MWM_LOSS_UNROLL_ALL
  for (int j = 1; j < loss_lanes_per_thread; ++j)
    if (j < valid) base[at.offset_after(s, j)] = static_cast<P>(values[j]);
}

// Walks thread q's steps: step(at, valid) at the first element 32k + 4q of each.
template <typename Step>
MWM_HOST_DEVICE MWM_INLINE void quad_walk(const patch_geometry& g, int q, Step&& step) {
  const std::int64_t count = g.patch_vector_size();
  patch_cursor at(g, loss_lanes_per_thread * q);
  MWM_LOSS_UNROLL
  for (std::int64_t e = loss_lanes_per_thread * q; e < count; e += loss_lanes, at.advance()) {
    const std::int64_t left = count - e;
    step(at, left < loss_lanes_per_thread ? static_cast<int>(left) : loss_lanes_per_thread);
  }
}

// The sums of thread q's four lanes of value(x, j) over the elements x[j] that read(at, valid,
// x) loads, in increasing element order per lane (lanes past the end stay 0, as lane_sum's).
template <typename Acc, typename Read, typename Value>
MWM_HOST_DEVICE MWM_INLINE lane_quad<Acc> quad_sum(const patch_geometry& g, int q, Read&& read,
                                                   Value&& value) {
  lane_quad<Acc> sums;
  for (int j = 0; j < loss_lanes_per_thread; ++j) sums.v[j] = Acc(0);
  quad_walk(g, q, [&](const patch_cursor& at, int valid) {
    // Zeroed although only the first `valid` are read: compilers cannot see that, and warn.
    Acc x[loss_lanes_per_thread] = {};
    read(at, valid, x);
    MWM_LOSS_UNROLL_ALL
    for (int j = 0; j < loss_lanes_per_thread; ++j)
      if (j < valid) sums.v[j] += value(x, j);
  });
  return sums;
}

template <typename Acc, typename T>
MWM_HOST_DEVICE lane_quad<Acc> quad_target_sum(const T* target, const patch_strides& ts,
                                               const patch_geometry& g, int q, bool vector) {
  return quad_sum<Acc>(
      g, q,
      [&](const patch_cursor& at, int valid, Acc* x) {
        load_quad(target, ts, at, vector, valid, x);
      },
      [](const Acc* x, int j) { return x[j]; });
}

template <typename Acc, typename T>
MWM_HOST_DEVICE lane_quad<Acc> quad_target_squares(const T* target, const patch_strides& ts,
                                                   const patch_geometry& g, int q, bool vector,
                                                   Acc mean) {
  return quad_sum<Acc>(
      g, q,
      [&](const patch_cursor& at, int valid, Acc* x) {
        load_quad(target, ts, at, vector, valid, x);
      },
      [mean](const Acc* x, int j) {
        const Acc d = x[j] - mean;
        return d * d;
      });
}

// Thread q's lanes of the error sum: pred and target read side by side.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE lane_quad<Acc> quad_error_sum(const P* pred, const patch_strides& ps,
                                              const T* target, const patch_strides& ts,
                                              const patch_geometry& g, int q, quad_loads loads,
                                              recon_error error, target_normalization<Acc> norm) {
  return quad_sum<Acc>(
      g, q,
      [&](const patch_cursor& at, int valid, Acc* x) {
        // x holds the residuals: pred and target of the step, then p - t_hat.
        Acc t[loss_lanes_per_thread] = {};
        load_quad(pred, ps, at, loads.pred, valid, x);
        load_quad(target, ts, at, loads.target, valid, t);
        MWM_LOSS_UNROLL_ALL
        for (int j = 0; j < loss_lanes_per_thread; ++j)
          if (j < valid) x[j] = detail::residual(x[j], t[j], norm);
      },
      [error](const Acc* r, int j) {
        return error == recon_error::mse ? detail::element_error<recon_error::mse>(r[j])
                                         : detail::element_error<recon_error::l1>(r[j]);
      });
}

// Writes scale * d(element error)/d pred for thread q's elements (lane_gradient's values).
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE void quad_gradient(const P* pred, const patch_strides& ps, const T* target,
                                   const patch_strides& ts, const patch_geometry& g, int q,
                                   quad_loads loads, recon_error error,
                                   target_normalization<Acc> norm, Acc scale, P* grad,
                                   const patch_strides& gs) {
  quad_walk(g, q, [&](const patch_cursor& at, int valid) {
    Acc p[loss_lanes_per_thread] = {};
    Acc t[loss_lanes_per_thread] = {};
    load_quad(pred, ps, at, loads.pred, valid, p);
    load_quad(target, ts, at, loads.target, valid, t);
    MWM_LOSS_UNROLL_ALL
    for (int j = 0; j < loss_lanes_per_thread; ++j) {
      if (j >= valid) continue;
      const Acc r = detail::residual(p[j], t[j], norm);
      p[j] = error == recon_error::mse ? detail::element_gradient<recon_error::mse>(r, scale)
                                       : detail::element_gradient<recon_error::l1>(r, scale);
    }
    store_quad(grad, gs, at, loads.grad, valid, p);
  });
}

template <typename P>
MWM_HOST_DEVICE void quad_zero(P* grad, const patch_strides& gs, const patch_geometry& g, int q,
                               bool vector) {
  const float zeros[loss_lanes_per_thread] = {0.0f, 0.0f, 0.0f, 0.0f};
  quad_walk(g, q, [&](const patch_cursor& at, int valid) {
    store_quad(grad, gs, at, vector, valid, zeros);
  });
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
  return patch_view<Acc, P, T>{
      in.pred + steps::patch_start(in.pred_strides, grid, i / n, i % n),
      in.target + steps::patch_start(in.target_strides, grid, i / n, i % n)};
}

// The target statistics of a patch, through the warp's collective sum.
template <typename Acc, typename P, typename T, typename Warp>
MWM_HOST_DEVICE target_normalization<Acc> warp_patch_normalization(const loss_inputs<Acc, P, T>& in,
                                                                   patch_view<Acc, P, T> v,
                                                                   Warp& warp) {
  const patch_geometry& g = in.geometry;
  const std::int64_t count = g.patch_vector_size();
  const bool vector = warp.loads.target;
  const Acc mean =
      warp.total(
          [&](int lane) {
            return steps::lane_target_sum<Acc>(v.target, in.target_strides, g, lane);
          },
          [&](int q) { return quad_target_sum<Acc>(v.target, in.target_strides, g, q, vector); }) /
      static_cast<Acc>(count);
  const Acc squares = warp.total(
      [&](int lane) {
        return steps::lane_target_squares<Acc>(v.target, in.target_strides, g, lane, mean);
      },
      [&](int q) {
        return quad_target_squares<Acc>(v.target, in.target_strides, g, q, vector, mean);
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
  const Acc c = steps::patch_coefficient(in.mask, in.weight, i);
  if (c == Acc(0)) return warp_patch_result<Acc>{c, Acc(0), true};
  const patch_geometry& g = in.geometry;
  const patch_view<Acc, P, T> v = view_patch(in, i);
  target_normalization<Acc> norm{Acc(0), Acc(1)};
  if (in.options.norm_target) norm = warp_patch_normalization(in, v, warp);
  const Acc err =
      warp.total(
          [&](int lane) {
            return steps::lane_error_sum(v.pred, in.pred_strides, v.target, in.target_strides, g,
                                         lane, in.options.error, norm);
          },
          [&](int q) {
            return quad_error_sum(v.pred, in.pred_strides, v.target, in.target_strides, g, q,
                                  warp.loads, in.options.error, norm);
          }) /
      static_cast<Acc>(g.patch_vector_size());
  // The slow path only behind a non-finite error: is it the target?
  const bool finite =
      detail::finite_value(err) || steps::patch_target_finite(v.target, in.target_strides, g);
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
  return loss_data_error{steps::data_error_key(fault == loss_fault::target ? 0 : 1, i), e};
}

// The gradient factor of patch i: upstream * c / denominator.
template <typename Acc, typename P, typename T>
MWM_HOST_DEVICE MWM_INLINE Acc patch_gradient_factor(const loss_inputs<Acc, P, T>& in,
                                                     const Acc* grad_out, Acc denominator,
                                                     std::int64_t i) {
  const bool per_patch = in.options.reduction == loss_reduction::none;
  return steps::gradient_factor(per_patch ? grad_out[i] : grad_out[0],
                                steps::patch_coefficient(in.mask, in.weight, i), denominator);
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
  P* out = grad + steps::patch_start(gs, grid, i / n, i % n);
  const Acc factor = patch_gradient_factor(in, grad_out, denominator, i);
  if (factor == Acc(0)) {
    warp.each([&](int lane) { steps::lane_zero(out, gs, g, lane); },
              [&](int q) { quad_zero(out, gs, g, q, warp.loads.grad); });
    return;
  }
  const patch_view<Acc, P, T> v = view_patch(in, i);
  target_normalization<Acc> norm{Acc(0), Acc(1)};
  if (in.options.norm_target) norm = warp_patch_normalization(in, v, warp);
  const Acc scale = factor / static_cast<Acc>(g.patch_vector_size());
  warp.each(
      [&](int lane) {
        steps::lane_gradient(v.pred, in.pred_strides, v.target, in.target_strides, g, lane,
                             in.options.error, norm, scale, out, gs);
      },
      [&](int q) {
        quad_gradient(v.pred, in.pred_strides, v.target, in.target_strides, g, q, warp.loads,
                      in.options.error, norm, scale, out, gs);
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
      values[k] = steps::halving_total(a, loss_chunk);
    }
    m = chunks;
  }
  return values[0];
}

// --- The host groups (tests) ------------------------------------------------------------------

// Runs the 32 lanes one after the other (the core's lane_* walks); the collective sum is the
// core's halving tree.
struct host_warp {
  quad_loads loads;
  template <typename Lane, typename Quad>
  MWM_HOST_DEVICE auto total(Lane&& per_lane, Quad&&) -> decltype(per_lane(0)) {
    decltype(per_lane(0)) lanes[loss_lanes];
    for (int l = 0; l < loss_lanes; ++l) lanes[l] = per_lane(l);
    return steps::lane_total(lanes);
  }
  template <typename Lane, typename Quad>
  MWM_HOST_DEVICE void each(Lane&& f, Quad&&) {
    for (int l = 0; l < loss_lanes; ++l) f(l);
  }
};

// Runs the 8 threads' four-lane walks one after the other, as the kernels' threads do (with
// `loads` the vector paths: on the host four contiguous scalar reads), lane 4q + j from thread
// q; the collective sum is the core's halving tree over the 32 lanes.
struct host_quad_warp {
  quad_loads loads;
  template <typename Lane, typename Quad>
  MWM_HOST_DEVICE auto total(Lane&&, Quad&& per_thread)
      -> std::remove_cv_t<std::remove_reference_t<decltype(per_thread(0).v[0])>> {
    using Acc = std::remove_cv_t<std::remove_reference_t<decltype(per_thread(0).v[0])>>;
    Acc lanes[loss_lanes];
    for (int q = 0; q < loss_threads_per_patch; ++q) {
      const lane_quad<Acc> sums = per_thread(q);
      for (int j = 0; j < loss_lanes_per_thread; ++j)
        lanes[loss_lanes_per_thread * q + j] = sums.v[j];
    }
    return steps::lane_total(lanes);
  }
  template <typename Lane, typename Quad>
  MWM_HOST_DEVICE void each(Lane&&, Quad&& f) {
    for (int q = 0; q < loss_threads_per_patch; ++q) f(q);
  }
};

// What a group's shuffle tree computes (loss.cu's device_group), step by step: the group's
// thread t holds lanes 4t .. 4t+3; in the steps of lane stride 16, 8, 4 every thread t adds the
// same component of thread t + 4, 2, 1 (its own where that is past the group, as
// __shfl_down_sync of width 8 returns), all at once; then thread 0 adds inside: lanes 0, 1 +=
// lanes 2, 3, and lane 0 += lane 1. Equal to lane_total by construction; tests check it.
template <typename Acc>
Acc host_group_tree(const Acc* lanes) {
  Acc v[loss_threads_per_patch][loss_lanes_per_thread];
  for (int t = 0; t < loss_threads_per_patch; ++t)
    for (int j = 0; j < loss_lanes_per_thread; ++j) v[t][j] = lanes[loss_lanes_per_thread * t + j];
  for (int s = loss_threads_per_patch / 2; s > 0; s /= 2) {
    Acc next[loss_threads_per_patch][loss_lanes_per_thread];
    for (int t = 0; t < loss_threads_per_patch; ++t)
      for (int j = 0; j < loss_lanes_per_thread; ++j)
        next[t][j] = v[t][j] + (t + s < loss_threads_per_patch ? v[t + s][j] : v[t][j]);
    for (int t = 0; t < loss_threads_per_patch; ++t)
      for (int j = 0; j < loss_lanes_per_thread; ++j) v[t][j] = next[t][j];
  }
  v[0][0] += v[0][2];
  v[0][1] += v[0][3];
  v[0][0] += v[0][1];
  return v[0][0];
}

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
