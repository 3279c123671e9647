// Bodies of the token kernels around the core's per-token functions of tokens.hpp: the forward
// passes copy rows (a row per group of lanes, vectorized where aligned), the backward passes run
// one thread per (sample, row, channel) element. The backward passes add rows in the order the host
// drivers do: a stable per-sample sort of the destinations gives, for every destination, the run of
// its sources in ascending source order (starts from mark_group_starts). A host compiler reads this
// file too.
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

MWM_HOST_DEVICE MWM_INLINE token_element token_element_of(std::int64_t element, std::int64_t rows,
                                                          std::int64_t channels) {
  const std::int64_t row = element / channels;
  return token_element{row / rows, row % rows, element % channels};
}

// ---- forward: one row of C values per group of `lanes` threads ----------------------------
// Lane l of a row moves elements l, l + lanes, ... or, when the launcher found both rows dense
// and 16-byte aligned (V > 1), the V-element vectors l, l + lanes, ...: neighbouring lanes
// touch neighbouring addresses either way, so a warp's loads and stores are coalesced.

template <typename T, int V>
struct alignas(sizeof(T) * V) token_vector {
  T v[V];
};

// Lane `lane`'s part of a row copy; a null `src` writes zeros (padding, or a row whose id is bad).
template <int V, typename T>
MWM_HOST_DEVICE MWM_INLINE void copy_row_part(const T* src, std::int64_t src_stride, T* dst,
                                              std::int64_t dst_stride, std::int64_t channels,
                                              int lane, int lanes) {
  if constexpr (V > 1) {
    using vector = token_vector<T, V>;
    for (std::int64_t i = lane; i < channels / V; i += lanes) {
      vector value;
      if (src) {
        value = reinterpret_cast<const vector*>(src)[i];
      } else {
        steps::zero_token(value.v, 1, V);
      }
      reinterpret_cast<vector*>(dst)[i] = value;
    }
  } else {
    for (std::int64_t c = lane; c < channels; c += lanes) {
      if (src)
        steps::copy_token(src + c * src_stride, src_stride, dst + c * dst_stride, dst_stride, 1);
      else
        steps::zero_token(dst + c * dst_stride, dst_stride, 1);
    }
  }
}

// gather_tokens, row `row` = b * K + k of out (B, K, C). Every lane checks the id it uses and
// reads through it only when it is in range; returns false with *bad when it is not.
template <int V, typename T>
MWM_HOST_DEVICE MWM_INLINE bool gather_row_part(const T* x, const token_strides& xs,
                                                const std::int64_t* ids, std::int64_t slots,
                                                std::int64_t num_tokens, std::int64_t channels,
                                                T* out, const token_strides& os, std::int64_t row,
                                                int lane, int lanes, data_error* bad) {
  const std::int64_t b = row / slots;
  const std::int64_t id = ids[row];
  const bool ok = steps::keep_id_in_range(id, row, slots, num_tokens, bad);
  const T* src = ok && id != padding_id ? x + steps::token_offset(xs, b, id) : nullptr;
  copy_row_part<V>(src, xs.channel, out + steps::token_offset(os, b, row % slots), os.channel,
                   channels, lane, lanes);
  return ok;
}

// The phase (data_error_key) of a row's data error, or none_phase.
constexpr int none_phase = -1;

// restore_tokens, row `row` = b * N + n of out (B, N, C): x_vis[b, p] for p = ids_restore[b, n]
// below the visible count, else the mask token. Returns the phase of *bad when ids_restore or
// num_visible is out of range there (the row is then zeros), else none_phase.
template <int V, typename T>
MWM_HOST_DEVICE MWM_INLINE int restore_row_part(const T* x_vis, const token_strides& vs,
                                                const std::int64_t* ids_restore,
                                                const std::int64_t* visible, std::int64_t slots,
                                                std::int64_t num_tokens, std::int64_t channels,
                                                const T* mask_token, std::int64_t mask_stride,
                                                T* out, const token_strides& os, std::int64_t row,
                                                int lane, int lanes, data_error* bad) {
  const std::int64_t b = row / num_tokens;
  const std::int64_t position = ids_restore[row];
  const std::int64_t count = visible ? visible[b] : slots;
  int phase = none_phase;
  if (!steps::restore_id_in_range(position, row, num_tokens, bad))
    phase = restore_id_phase;
  else if (!steps::visible_count_in_range(count, b, slots, bad))
    phase = visible_count_phase;
  const std::int64_t slot = steps::restored_slot(position, count);
  const T* src = nullptr;
  std::int64_t src_stride = 0;
  if (phase == none_phase && slot == padding_id) {
    src = mask_token;
    src_stride = mask_stride;
  } else if (phase == none_phase) {
    src = x_vis + steps::token_offset(vs, b, slot);
    src_stride = vs.channel;
  }
  copy_row_part<V>(src, src_stride, out + steps::token_offset(os, b, row % num_tokens), os.channel,
                   channels, lane, lanes);
  return phase;
}

// The key a data error of phase `phase` found in row `row` of sample b is recorded under.
MWM_HOST_DEVICE MWM_INLINE std::uint64_t restore_error_key(int phase, std::int64_t row,
                                                           std::int64_t b) {
  return steps::data_error_key(phase, phase == visible_count_phase ? b : row);
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
                                                            std::int64_t num_tokens, std::int64_t b,
                                                            std::int64_t row) {
  const std::int64_t count = visible ? visible[b] : slots;
  return steps::restored_slot(ids_restore[b * num_tokens + row], count);
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

// Element (b, row, c) of a token gradient (B, destinations, C): zero, then the grad rows whose
// destination is `row`, in source order. `sources` holds each sample's source rows (B,
// source_rows) sorted by destination; the runs' starts cover destinations + 1 keys.
// gather_tokens_backward: destinations N, sources the K slots; restore_tokens_backward:
// destinations K, sources the N tokens.
template <typename Acc, typename T>
MWM_HOST_DEVICE void sum_sources_element(const T* grad, const token_strides& gs,
                                         const std::int32_t* sources, const std::int64_t* starts,
                                         std::int64_t source_rows, std::int64_t destinations,
                                         std::int64_t channels, T* out, const token_strides& os,
                                         std::int64_t element) {
  const token_element e = token_element_of(element, destinations, channels);
  T* dst = out + steps::token_offset(os, e.b, e.row) + e.c * os.channel;
  steps::zero_token(dst, os.channel, 1);
  const source_run run = run_of(starts, destinations + 1, e.b, destination_key(e.row));
  for (std::int64_t r = run.first; r < run.last; ++r) {
    const std::int64_t source = sources[e.b * source_rows + r];
    steps::add_token<Acc>(grad + steps::token_offset(gs, e.b, source) + e.c * gs.channel,
                          gs.channel, dst, os.channel, 1);
  }
}

// Mask-token partial of sample b, channel c: the grad rows that came from the mask token, in
// token order; stored channel-major, partials[c * B + b], for the per-channel sum below.
template <typename Acc, typename T>
MWM_HOST_DEVICE void mask_partial_element(const T* grad, const token_strides& gs,
                                          const std::int32_t* sources, const std::int64_t* starts,
                                          std::int64_t batch, std::int64_t slots,
                                          std::int64_t num_tokens, std::int64_t channels,
                                          Acc* partials, std::int64_t element) {
  const std::int64_t b = element / channels;
  const std::int64_t c = element % channels;
  Acc partial = Acc(0);
  const source_run run = run_of(starts, slots + 1, b, destination_key(padding_id));
  for (std::int64_t r = run.first; r < run.last; ++r) {
    const std::int64_t n = sources[b * num_tokens + r];
    steps::accumulate_token(grad + steps::token_offset(gs, b, n) + c * gs.channel, gs.channel,
                            &partial, 1);
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
