// The reduction order of the loss: the one order in which every sum of the loss is added, on
// the CPU and on the GPU, so that both produce the same bits by construction (docs/loss.md,
// "Reduction order"; docs/design.md, "Reduction order").
//
// Within a patch (sums over its P elements, in patch-vector order e = 0 .. P-1):
//   lane l (0 <= l < 32) adds v[l], v[l + 32], v[l + 64], ... from 0, in increasing e;
//   the 32 lane sums are then added by the halving tree below.
// Over patches (sum(c * err) and sum(c), in flat order i = b * N + n):
//   chunks of 256 consecutive values, the last one padded with zeros, each added by the halving
//   tree; the chunk totals are a new sequence, added the same way until one value is left.
// The halving tree of a width-W array (W a power of two): for s = W/2, W/4, ..., 1, every
// t < s does a[t] += a[t + s]; the result is a[0]. This is what a warp does with shuffles
// (v += shfl_down(v, s)) and a block does in shared memory, so a GPU thread per lane or per
// value follows it without reordering anything. Every function here is the same code on both
// sides (MWM_HOST_DEVICE); host code is compiled with -ffp-contract=off and device code with
// --fmad=false, so no addition is fused with the multiplication before it.
#pragma once

#include <cstdint>

#include "config.hpp"

namespace mwm {

// Lanes of the per-patch sums: a warp's width on the GPU, 32 independent accumulators (two to
// four vector registers) on the CPU.
constexpr int loss_lanes = 32;

// Values per chunk of the sums over patches: a block of 256 threads on the GPU.
constexpr int loss_chunk = 256;

namespace steps {

// The lane that element e of a patch vector is added in.
MWM_HOST_DEVICE MWM_INLINE int lane_of_element(std::int64_t e) {
  return static_cast<int>(e % loss_lanes);
}

// One step of the halving tree: a[t] += a[t + stride]. Both the host loops below and the
// kernels' threads run this step, for every t < stride, stride = width/2 .. 1.
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE void halving_step(Acc* a, int stride, int t) {
  a[t] += a[t + stride];
}

// The halving tree over a[0 .. width), in place; returns a[0]. width: a power of two.
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc halving_total(Acc* a, int width) {
  for (int stride = width / 2; stride > 0; stride /= 2)
    for (int t = 0; t < stride; ++t) halving_step(a, stride, t);
  return a[0];
}

// The sum of a patch's 32 lane sums.
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE Acc lane_total(Acc* lanes) {
  return halving_total(lanes, loss_lanes);
}

}  // namespace steps

namespace detail {

// The number of values at `level` of the sum over `count` values (level 0: the values).
MWM_HOST_DEVICE MWM_INLINE std::int64_t values_at_level(std::int64_t count, int level) {
  for (int l = 0; l < level; ++l) count = (count + loss_chunk - 1) / loss_chunk;
  return count;
}

// Value k of `level`: the input itself at level 0, else the halving tree of chunk k of the
// level below. Recursion depth = levels (<= 4 below 2^32 values); no allocation.
template <typename Acc, typename Value>
Acc value_at_level(const Value& value, std::int64_t count, int level, std::int64_t k) {
  if (level == 0) return value(k);
  const std::int64_t below = values_at_level(count, level - 1);
  Acc chunk[loss_chunk];
  for (int j = 0; j < loss_chunk; ++j) {
    const std::int64_t at = k * loss_chunk + j;
    chunk[j] = at < below ? value_at_level<Acc>(value, count, level - 1, at) : Acc(0);
  }
  return steps::halving_total(chunk, loss_chunk);
}

}  // namespace detail

namespace steps {

// The sum of value(0) .. value(count - 1) in the order above (0 for count 0): a chunk tree at
// each level until one value is left. `value(i)` returns an Acc; it is called once per index.
template <typename Acc, typename Value>
Acc ordered_total(const Value& value, std::int64_t count) {
  if (count <= 0) return Acc(0);
  int levels = 1;  // at least one chunk tree, even for one value (0 + x: -0.0 becomes +0.0)
  while (detail::values_at_level(count, levels) > 1) ++levels;
  return detail::value_at_level<Acc>(value, count, levels, 0);
}

// The same over an array.
template <typename Acc>
Acc ordered_total(const Acc* values, std::int64_t count) {
  return ordered_total<Acc>([values](std::int64_t i) { return values[i]; }, count);
}

}  // namespace steps

}  // namespace mwm
