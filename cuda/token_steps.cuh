// Per-element bodies of the token kernels: one thread per (sample, token, channel) element runs
// the core's per-token functions of tokens.hpp on a one-channel slice, so neighbouring threads
// touch neighbouring channels. The backward passes add rows in the order the host drivers do:
// a stable per-sample sort of the destinations gives, for every destination, the run of its
// sources in ascending source order (starts from mark_group_starts). A host compiler reads
// this file too.
#pragma once

#include <cstdint>

#include "mwm/config.hpp"
#include "mwm/tokens.hpp"
#include "selection_steps.cuh"

namespace mwm {
namespace gpu {

struct token_element {
  std::int64_t b;
  std::int64_t row;  // token or slot
  std::int64_t c;
};

MWM_HOST_DEVICE MWM_INLINE token_element token_element_of(std::int64_t element,
                                                          std::int64_t rows,
                                                          std::int64_t channels) {
  const std::int64_t row = element / channels;
  return token_element{row / rows, row % rows, element % channels};
}

// gather_tokens, element (b, k, c) of out (B, K, C).
template <typename T>
MWM_HOST_DEVICE void gather_element(const T* x, const token_strides& xs, const std::int64_t* ids,
                                    std::int64_t slots, std::int64_t channels, T* out,
                                    const token_strides& os, std::int64_t element) {
  const token_element e = token_element_of(element, slots, channels);
  const std::int64_t id = ids[e.b * slots + e.row];
  T* dst = out + token_offset(os, e.b, e.row) + e.c * os.channel;
  if (id == padding_id) zero_token(dst, os.channel, 1);
  else copy_token(x + token_offset(xs, e.b, id) + e.c * xs.channel, xs.channel, dst, os.channel, 1);
}

// restore_tokens, element (b, n, c) of out (B, N, C).
template <typename T>
MWM_HOST_DEVICE void restore_element(const T* x_vis, const token_strides& vs,
                                     const std::int64_t* ids_restore,
                                     const std::int64_t* visible, std::int64_t slots,
                                     std::int64_t num_tokens, std::int64_t channels,
                                     const T* mask_token, std::int64_t mask_stride, T* out,
                                     const token_strides& os, std::int64_t element) {
  const token_element e = token_element_of(element, num_tokens, channels);
  const std::int64_t count = visible ? visible[e.b] : slots;
  const std::int64_t slot = restored_slot(ids_restore[e.b * num_tokens + e.row], count);
  T* dst = out + token_offset(os, e.b, e.row) + e.c * os.channel;
  if (slot == padding_id)
    copy_token(mask_token + e.c * mask_stride, mask_stride, dst, os.channel, 1);
  else
    copy_token(x_vis + token_offset(vs, e.b, slot) + e.c * vs.channel, vs.channel, dst,
               os.channel, 1);
}

// ---- backward: destinations sorted per sample ---------------------------------------------

// Sort key of a source row whose destination is `destination` (-1: padding for gather, the mask
// token for restore): runs are keyed destination + 1, so key 0 holds the -1 rows.
MWM_HOST_DEVICE MWM_INLINE std::uint32_t destination_key(std::int64_t destination) {
  return static_cast<std::uint32_t>(destination + 1);
}

// Destination of row `row` of sample b in restore_tokens_backward: its x_vis slot or -1.
MWM_HOST_DEVICE MWM_INLINE std::int64_t restore_destination(const std::int64_t* ids_restore,
                                                            const std::int64_t* visible,
                                                            std::int64_t slots,
                                                            std::int64_t num_tokens,
                                                            std::int64_t b, std::int64_t row) {
  const std::int64_t count = visible ? visible[b] : slots;
  return restored_slot(ids_restore[b * num_tokens + row], count);
}

// Sources of destination key `key` of sample b: positions [first, last) of its sorted row.
struct source_run {
  std::int64_t first;
  std::int64_t last;
};

// starts: per sample, keys + 1 entries from mark_group_starts over the sorted keys (null when
// the samples have no source rows at all: every run is empty).
MWM_HOST_DEVICE MWM_INLINE source_run run_of(const std::int64_t* starts, std::int64_t keys,
                                             std::int64_t b, std::uint32_t key) {
  if (!starts) return source_run{0, 0};
  const std::int64_t* row = starts + b * (keys + 1);
  return source_run{row[key], row[key + 1]};
}

// gather_tokens_backward, element (b, n, c) of grad_x (B, N, C): zero, then the grad rows of
// the slots that gathered token n, in slot order. `sources` holds the sorted slot rows (B, K).
template <typename Acc, typename T>
MWM_HOST_DEVICE void gather_backward_element(const T* grad, const token_strides& gs,
                                             const std::int32_t* sources,
                                             const std::int64_t* starts, std::int64_t slots,
                                             std::int64_t num_tokens, std::int64_t channels,
                                             T* grad_x, const token_strides& xs,
                                             std::int64_t element) {
  const token_element e = token_element_of(element, num_tokens, channels);
  T* dst = grad_x + token_offset(xs, e.b, e.row) + e.c * xs.channel;
  zero_token(dst, xs.channel, 1);
  const source_run run = run_of(starts, num_tokens + 1, e.b, destination_key(e.row));
  for (std::int64_t r = run.first; r < run.last; ++r) {
    const std::int64_t k = sources[e.b * slots + r];
    add_token<Acc>(grad + token_offset(gs, e.b, k) + e.c * gs.channel, gs.channel, dst,
                   xs.channel, 1);
  }
}

// restore_tokens_backward, element (b, k, c) of grad_x_vis (B, K, C). `sources` holds the
// sorted token rows (B, N).
template <typename Acc, typename T>
MWM_HOST_DEVICE void restore_backward_element(const T* grad, const token_strides& gs,
                                              const std::int32_t* sources,
                                              const std::int64_t* starts, std::int64_t slots,
                                              std::int64_t num_tokens, std::int64_t channels,
                                              T* grad_x_vis, const token_strides& vs,
                                              std::int64_t element) {
  const token_element e = token_element_of(element, slots, channels);
  T* dst = grad_x_vis + token_offset(vs, e.b, e.row) + e.c * vs.channel;
  zero_token(dst, vs.channel, 1);
  const source_run run = run_of(starts, slots + 1, e.b, destination_key(e.row));
  for (std::int64_t r = run.first; r < run.last; ++r) {
    const std::int64_t n = sources[e.b * num_tokens + r];
    add_token<Acc>(grad + token_offset(gs, e.b, n) + e.c * gs.channel, gs.channel, dst,
                   vs.channel, 1);
  }
}

// Mask-token partial of sample b, channel c: the grad rows that came from the mask token, in
// token order; stored channel-major, partials[c * B + b], for the per-channel sum below.
template <typename Acc, typename T>
MWM_HOST_DEVICE void mask_partial_element(const T* grad, const token_strides& gs,
                                          const std::int32_t* sources,
                                          const std::int64_t* starts, std::int64_t batch,
                                          std::int64_t slots, std::int64_t num_tokens,
                                          std::int64_t channels, Acc* partials,
                                          std::int64_t element) {
  const std::int64_t b = element / channels;
  const std::int64_t c = element % channels;
  Acc partial = Acc(0);
  const source_run run = run_of(starts, slots + 1, b, destination_key(padding_id));
  for (std::int64_t r = run.first; r < run.last; ++r) {
    const std::int64_t n = sources[b * num_tokens + r];
    accumulate_token(grad + token_offset(gs, b, n) + c * gs.channel, gs.channel, &partial, 1);
  }
  partials[c * batch + b] = partial;
}

// The mask token's gradient at channel c: its partials summed in sample order (the order of
// the host's sum_mask_partials), rounded once to T.
template <typename Acc, typename T>
MWM_HOST_DEVICE void mask_gradient_element(const Acc* partials, std::int64_t batch, T* out,
                                           std::int64_t c) {
  Acc total = Acc(0);
  for (std::int64_t b = 0; b < batch; ++b) total += partials[c * batch + b];
  out[c] = static_cast<T>(total);
}

}  // namespace gpu
}  // namespace mwm
