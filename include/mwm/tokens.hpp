// Sparse tokens for MAE-style encoders and decoders.
//
//   gather:  out[b, k] = x[b, ids_keep[b, k]]           (x (B, N, C), ids_keep (B, K))
//            a slot holding -1 (the padding of variable-total policies) gathers zeros.
//   restore: out[b, n] = x_vis[b, p] if p < visible[b] else mask_token,  p = ids_restore[b, n]
//            (MAE's decoder input: x_vis followed by mask tokens, unshuffled by ids_restore;
//            visible[b] defaults to K, and is the per-sample visible count when ids_keep was
//            padded, so that padded slots of x_vis are never read).
//   pack:    packed[cu[b] + k] = x[b, ids_keep[b, k]] for k < count[b]  (the -1-padded tail
//            of each ids_keep row is dropped), cu = cumulative counts, int32 (B + 1):
//            flash-attention's varlen layout and PyTorch's jagged nested tensors.
//   unpack:  out[b, n] = packed[cu[b] + p] if p < count[b] else mask_token, p = ids_restore[b, n]
//            (restore with the packed rows as x_vis; count[b] = cu[b + 1] - cu[b]).
//
// Per-token functions are MWM_HOST_DEVICE on raw pointers; the host drivers run them over a
// range of samples.
#pragma once

#include <cstdint>

#include "config.hpp"
#include "data_error.hpp"
#include "error.hpp"

namespace mwm {

// The id of an empty slot in ids_keep / ids_masked.
constexpr std::int64_t padding_id = -1;

// Element strides of a (B, tokens, C) tensor.
struct token_strides {
  std::int64_t batch = 0;
  std::int64_t token = 0;
  std::int64_t channel = 0;
};

namespace steps {

MWM_HOST_DEVICE MWM_INLINE std::int64_t token_offset(const token_strides& s, std::int64_t b,
                                                     std::int64_t t) {
  return b * s.batch + t * s.token;
}

// The x_vis slot that feeds restored token n at shuffled position `position`, or -1 for the mask
// token.
MWM_HOST_DEVICE MWM_INLINE std::int64_t restored_slot(std::int64_t position, std::int64_t visible) {
  return position < visible ? position : padding_id;
}

template <typename T>
MWM_HOST_DEVICE MWM_INLINE void copy_token(const T* src, std::int64_t src_stride, T* dst,
                                           std::int64_t dst_stride, std::int64_t channels) {
  for (std::int64_t c = 0; c < channels; ++c) dst[c * dst_stride] = src[c * src_stride];
}

template <typename T>
MWM_HOST_DEVICE MWM_INLINE void zero_token(T* dst, std::int64_t dst_stride, std::int64_t channels) {
  for (std::int64_t c = 0; c < channels; ++c) dst[c * dst_stride] = static_cast<T>(0.0f);
}

// dst += src, added in Acc (float for half types) and rounded once.
template <typename Acc, typename T>
MWM_HOST_DEVICE MWM_INLINE void add_token(const T* src, std::int64_t src_stride, T* dst,
                                          std::int64_t dst_stride, std::int64_t channels) {
  for (std::int64_t c = 0; c < channels; ++c)
    dst[c * dst_stride] = static_cast<T>(static_cast<Acc>(dst[c * dst_stride]) +
                                         static_cast<Acc>(src[c * src_stride]));
}

template <typename Acc, typename T>
MWM_HOST_DEVICE MWM_INLINE void accumulate_token(const T* src, std::int64_t src_stride, Acc* acc,
                                                 std::int64_t channels) {
  for (std::int64_t c = 0; c < channels; ++c) acc[c] += static_cast<Acc>(src[c * src_stride]);
}

}  // namespace steps

// ---------------------------------------------------------------------------------------------
// Validation of index tensors (dense row-major), on the host.

namespace steps {

// The checks of the index tensors, per entry, shared with the CUDA kernels: true when the
// entry is usable, else *bad describes it. Keys (data_error_key) put ids_restore before
// num_visible, each in flat order, as the host validators below scan them.
MWM_HOST_DEVICE MWM_INLINE bool keep_id_in_range(std::int64_t id, std::int64_t at,
                                                 std::int64_t slots, std::int64_t num_tokens,
                                                 data_error* bad) {
  if (id >= padding_id && id < num_tokens) return true;
  *bad = integer_data_error(data_error_code::keep_id, at, slots, id, num_tokens);
  return false;
}

MWM_HOST_DEVICE MWM_INLINE bool restore_id_in_range(std::int64_t position, std::int64_t at,
                                                    std::int64_t num_tokens, data_error* bad) {
  if (position >= 0 && position < num_tokens) return true;
  *bad = integer_data_error(data_error_code::restore_id, at, num_tokens, position, num_tokens);
  return false;
}

MWM_HOST_DEVICE MWM_INLINE bool visible_count_in_range(std::int64_t count, std::int64_t b,
                                                       std::int64_t slots, data_error* bad) {
  if (count >= 0 && count <= slots) return true;
  *bad = integer_data_error(data_error_code::num_visible, b, 0, count, slots);
  return false;
}

}  // namespace steps

constexpr int restore_id_phase = 0;
constexpr int visible_count_phase = 1;

// ---------------------------------------------------------------------------------------------
// Validation of index tensors (dense row-major), on the host: the first bad entry raises.

// Every ids_keep entry lies in [-1, N).
inline void validate_keep_ids(const std::int64_t* ids, std::int64_t batch, std::int64_t slots,
                              std::int64_t num_tokens) {
  data_error_slot first;
  data_error bad;
  for (std::int64_t i = 0; i < batch * slots; ++i) {
    if (!steps::keep_id_in_range(ids[i], i, slots, num_tokens, &bad)) {
      record_data_error(first, steps::data_error_key(0, i), bad);
      break;
    }
  }
  raise_if_data_error(first);
}

// Every ids_restore entry lies in [0, N); every visible count in [0, K].
inline void validate_restore_ids(const std::int64_t* ids_restore, const std::int64_t* visible,
                                 std::int64_t batch, std::int64_t num_tokens, std::int64_t slots) {
  data_error_slot first;
  data_error bad;
  for (std::int64_t i = 0; i < batch * num_tokens; ++i) {
    if (!steps::restore_id_in_range(ids_restore[i], i, num_tokens, &bad)) {
      record_data_error(first, steps::data_error_key(restore_id_phase, i), bad);
      break;
    }
  }
  for (std::int64_t b = 0; visible && !steps::has_data_error(first) && b < batch; ++b) {
    if (!steps::visible_count_in_range(visible[b], b, slots, &bad))
      record_data_error(first, steps::data_error_key(visible_count_phase, b), bad);
  }
  raise_if_data_error(first);
}

// ---------------------------------------------------------------------------------------------
// Host drivers over samples [begin, end); index rows are dense row-major.

// out (B, K, C) = x gathered at ids (B, K).
template <typename T>
void gather_tokens(const T* x, const token_strides& xs, const std::int64_t* ids, std::int64_t slots,
                   std::int64_t channels, T* out, const token_strides& os, std::int64_t begin,
                   std::int64_t end) {
  for (std::int64_t b = begin; b < end; ++b)
    for (std::int64_t k = 0; k < slots; ++k) {
      const std::int64_t id = ids[b * slots + k];
      T* dst = out + steps::token_offset(os, b, k);
      if (id == padding_id)
        steps::zero_token(dst, os.channel, channels);
      else
        steps::copy_token(x + steps::token_offset(xs, b, id), xs.channel, dst, os.channel,
                          channels);
    }
}

// grad_x (B, N, C) = zeros with grad (B, K, C) added at ids; padded slots contribute nothing.
template <typename Acc, typename T>
void gather_tokens_backward(const T* grad, const token_strides& gs, const std::int64_t* ids,
                            std::int64_t slots, std::int64_t num_tokens, std::int64_t channels,
                            T* grad_x, const token_strides& xs, std::int64_t begin,
                            std::int64_t end) {
  for (std::int64_t b = begin; b < end; ++b) {
    for (std::int64_t n = 0; n < num_tokens; ++n)
      steps::zero_token(grad_x + steps::token_offset(xs, b, n), xs.channel, channels);
    for (std::int64_t k = 0; k < slots; ++k) {
      const std::int64_t id = ids[b * slots + k];
      if (id == padding_id) continue;
      steps::add_token<Acc>(grad + steps::token_offset(gs, b, k), gs.channel,
                            grad_x + steps::token_offset(xs, b, id), xs.channel, channels);
    }
  }
}

namespace detail {

// One sample of a restore (restore_tokens, unpack_tokens): output token n of sample b is the row
// slot_row(slot) of the slot its shuffled position names among the `count` visible ones, else the
// mask token.
template <typename T, typename SlotRow>
void restore_sample(const SlotRow& slot_row, std::int64_t row_stride, std::int64_t b,
                    const std::int64_t* ids_restore, std::int64_t count, std::int64_t num_tokens,
                    std::int64_t channels, const T* mask_token, std::int64_t mask_stride, T* out,
                    const token_strides& os) {
  for (std::int64_t n = 0; n < num_tokens; ++n) {
    const std::int64_t slot = steps::restored_slot(ids_restore[b * num_tokens + n], count);
    T* dst = out + steps::token_offset(os, b, n);
    if (slot == padding_id)
      steps::copy_token(mask_token, mask_stride, dst, os.channel, channels);
    else
      steps::copy_token(slot_row(slot), row_stride, dst, os.channel, channels);
  }
}

}  // namespace detail

// out (B, N, C) from x_vis (B, K, C), ids_restore (B, N), mask_token (C) and the visible counts
// (null: K for every sample).
template <typename T>
void restore_tokens(const T* x_vis, const token_strides& vs, const std::int64_t* ids_restore,
                    const std::int64_t* visible, std::int64_t slots, std::int64_t num_tokens,
                    std::int64_t channels, const T* mask_token, std::int64_t mask_stride, T* out,
                    const token_strides& os, std::int64_t begin, std::int64_t end) {
  for (std::int64_t b = begin; b < end; ++b) {
    const auto slot_row = [&](std::int64_t k) { return x_vis + steps::token_offset(vs, b, k); };
    detail::restore_sample(slot_row, vs.channel, b, ids_restore, visible ? visible[b] : slots,
                           num_tokens, channels, mask_token, mask_stride, out, os);
  }
}

namespace detail {

// One sample of a restore's backward (restore_tokens_backward, unpack_tokens_backward): the rows
// slot_row(0 .. rows-1) zeroed, then each grad row added to the slot it came from (`count`
// visible slots) or to the mask token's partial sum (C).
template <typename Acc, typename T, typename SlotRow>
void restore_sample_backward(const T* grad, const token_strides& gs, std::int64_t b,
                             const std::int64_t* ids_restore, std::int64_t count, std::int64_t rows,
                             std::int64_t num_tokens, std::int64_t channels,
                             const SlotRow& slot_row, std::int64_t row_stride, Acc* partial) {
  for (std::int64_t k = 0; k < rows; ++k) steps::zero_token(slot_row(k), row_stride, channels);
  for (std::int64_t c = 0; c < channels; ++c) partial[c] = Acc(0);
  for (std::int64_t n = 0; n < num_tokens; ++n) {
    const std::int64_t slot = steps::restored_slot(ids_restore[b * num_tokens + n], count);
    const T* src = grad + steps::token_offset(gs, b, n);
    if (slot == padding_id)
      steps::accumulate_token(src, gs.channel, partial, channels);
    else
      steps::add_token<Acc>(src, gs.channel, slot_row(slot), row_stride, channels);
  }
}

}  // namespace detail

// grad_x_vis (B, K, C): grad rows added at their slots (zeros in slots no token comes from);
// mask_partials (B, C): per sample, the sum of the grad rows that came from the mask token
// (summed over samples in a fixed order by the caller, so results do not depend on threads).
template <typename Acc, typename T>
void restore_tokens_backward(const T* grad, const token_strides& gs,
                             const std::int64_t* ids_restore, const std::int64_t* visible,
                             std::int64_t slots, std::int64_t num_tokens, std::int64_t channels,
                             T* grad_x_vis, const token_strides& vs, Acc* mask_partials,
                             std::int64_t begin, std::int64_t end) {
  for (std::int64_t b = begin; b < end; ++b) {
    const auto slot_row = [&](std::int64_t k) {
      return grad_x_vis + steps::token_offset(vs, b, k);
    };
    detail::restore_sample_backward(grad, gs, b, ids_restore, visible ? visible[b] : slots, slots,
                                    num_tokens, channels, slot_row, vs.channel,
                                    mask_partials + b * channels);
  }
}

namespace steps {

// mask_token gradient (C) = sum over samples of mask_partials (B, C), in sample order.
template <typename Acc>
void sum_mask_partials(const Acc* mask_partials, std::int64_t batch, std::int64_t channels,
                       Acc* out) {
  for (std::int64_t c = 0; c < channels; ++c) out[c] = Acc(0);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t c = 0; c < channels; ++c) out[c] += mask_partials[b * channels + c];
}

}  // namespace steps

// ---------------------------------------------------------------------------------------------
// Packed visible tokens (variable counts per sample, no padding).

namespace steps {

// Row of the packed tensor that holds slot k of sample b.
MWM_HOST_DEVICE MWM_INLINE std::int64_t packed_row(const std::int32_t* cu_seqlens, std::int64_t b,
                                                   std::int64_t k) {
  return static_cast<std::int64_t>(cu_seqlens[b]) + k;
}

MWM_HOST_DEVICE MWM_INLINE std::int64_t packed_count(const std::int32_t* cu_seqlens,
                                                     std::int64_t b) {
  return static_cast<std::int64_t>(cu_seqlens[b + 1]) - cu_seqlens[b];
}

// The sample whose rows hold packed row `row` (cu_seqlens[b] <= row < cu_seqlens[b + 1]; empty
// samples are skipped): a binary search, for kernels that run one thread per packed element.
MWM_HOST_DEVICE MWM_INLINE std::int64_t packed_sample(const std::int32_t* cu_seqlens,
                                                      std::int64_t batch, std::int64_t row) {
  std::int64_t lo = 0, hi = batch;  // the answer lies in [lo, hi)
  while (hi - lo > 1) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (cu_seqlens[mid] <= row)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

// Visible count of one ids_keep row: the slots before its first -1. The padding must be a
// suffix (as every mwm policy writes it) and ids lie in [-1, N); else throws, naming the slot.
inline std::int64_t visible_prefix(const std::int64_t* row, std::int64_t slots,
                                   std::int64_t num_tokens, std::int64_t sample) {
  std::int64_t count = 0;
  while (count < slots && row[count] != padding_id) {
    if (row[count] < 0 || row[count] >= num_tokens)
      detail::require(false, "ids_keep", row[count],
                      "must lie in [-1, " + detail::to_text(num_tokens) + ") (sample " +
                          detail::to_text(sample) + ", slot " + detail::to_text(count) + ")");
    ++count;
  }
  for (std::int64_t k = count; k < slots; ++k)
    if (row[k] != padding_id)
      detail::require(false, "ids_keep", row[k],
                      "follows padding at slot " + detail::to_text(count) + " of sample " +
                          detail::to_text(sample) + " (slot " + detail::to_text(k) +
                          "): packing needs the -1 padding at the end of each row");
  return count;
}

}  // namespace steps

// cu_seqlens (B + 1) of ids_keep (B, K); returns the packed total. Totals of 2^31 and more do
// not fit the int32 offsets that varlen attention takes, and throw.
inline std::int64_t packed_offsets(const std::int64_t* ids, std::int64_t batch, std::int64_t slots,
                                   std::int64_t num_tokens, std::int32_t* cu_seqlens) {
  std::int64_t total = 0;
  cu_seqlens[0] = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    total += steps::visible_prefix(ids + b * slots, slots, num_tokens, b);
    detail::require(total <= 0x7FFFFFFF, "total visible tokens", total,
                    "must stay below 2^31 (int32 cu_seqlens); split the batch");
    cu_seqlens[b + 1] = static_cast<std::int32_t>(total);
  }
  return total;
}

// cu_seqlens given by the caller (unpack): starts at 0, never decreases, ends at `rows` (the
// packed tensor's row count), and no sample holds more than `num_tokens` rows.
inline void validate_offsets(const std::int32_t* cu_seqlens, std::int64_t batch, std::int64_t rows,
                             std::int64_t num_tokens) {
  detail::require(cu_seqlens[0] == 0, "cu_seqlens[0]", cu_seqlens[0], "must be 0");
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t count = steps::packed_count(cu_seqlens, b);
    if (count < 0 || count > num_tokens)
      detail::require(
          false, "cu_seqlens", cu_seqlens[b + 1],
          "gives sample " + detail::to_text(b) + " " + detail::to_text(count) +
              " rows; each sample holds between 0 and N = " + detail::to_text(num_tokens));
  }
  detail::require(cu_seqlens[batch] == rows, "cu_seqlens[-1]", cu_seqlens[batch],
                  "must equal packed.shape[0] = " + detail::to_text(rows));
}

// packed (total, C) rows from x (B, N, C) for samples [begin, end); `ps` is the packed tensor's
// strides with batch 0 (a packed row is addressed by token_offset(ps, 0, row)).
template <typename T>
void pack_tokens(const T* x, const token_strides& xs, const std::int64_t* ids, std::int64_t slots,
                 const std::int32_t* cu_seqlens, std::int64_t channels, T* packed,
                 const token_strides& ps, std::int64_t begin, std::int64_t end) {
  for (std::int64_t b = begin; b < end; ++b)
    for (std::int64_t k = 0; k < steps::packed_count(cu_seqlens, b); ++k)
      steps::copy_token(x + steps::token_offset(xs, b, ids[b * slots + k]), xs.channel,
                        packed + steps::token_offset(ps, 0, steps::packed_row(cu_seqlens, b, k)),
                        ps.channel, channels);
}

// grad_x (B, N, C): zeros with the packed gradient rows added at their ids.
template <typename Acc, typename T>
void pack_tokens_backward(const T* grad, const token_strides& gs, const std::int64_t* ids,
                          std::int64_t slots, const std::int32_t* cu_seqlens,
                          std::int64_t num_tokens, std::int64_t channels, T* grad_x,
                          const token_strides& xs, std::int64_t begin, std::int64_t end) {
  for (std::int64_t b = begin; b < end; ++b) {
    for (std::int64_t n = 0; n < num_tokens; ++n)
      steps::zero_token(grad_x + steps::token_offset(xs, b, n), xs.channel, channels);
    for (std::int64_t k = 0; k < steps::packed_count(cu_seqlens, b); ++k)
      steps::add_token<Acc>(grad + steps::token_offset(gs, 0, steps::packed_row(cu_seqlens, b, k)),
                            gs.channel, grad_x + steps::token_offset(xs, b, ids[b * slots + k]),
                            xs.channel, channels);
  }
}

// out (B, N, C): the decoder input from packed rows, ids_restore (B, N) and mask_token (C).
template <typename T>
void unpack_tokens(const T* packed, const token_strides& ps, const std::int32_t* cu_seqlens,
                   const std::int64_t* ids_restore, std::int64_t num_tokens, std::int64_t channels,
                   const T* mask_token, std::int64_t mask_stride, T* out, const token_strides& os,
                   std::int64_t begin, std::int64_t end) {
  for (std::int64_t b = begin; b < end; ++b) {
    const auto slot_row = [&](std::int64_t k) {
      return packed + steps::token_offset(ps, 0, steps::packed_row(cu_seqlens, b, k));
    };
    detail::restore_sample(slot_row, ps.channel, b, ids_restore, steps::packed_count(cu_seqlens, b),
                           num_tokens, channels, mask_token, mask_stride, out, os);
  }
}

// grad_packed rows of samples [begin, end) (zeros where no token reads a row) and the per-sample
// mask-token partials (B, C), summed by sum_mask_partials in sample order.
template <typename Acc, typename T>
void unpack_tokens_backward(const T* grad, const token_strides& gs, const std::int32_t* cu_seqlens,
                            const std::int64_t* ids_restore, std::int64_t num_tokens,
                            std::int64_t channels, T* grad_packed, const token_strides& ps,
                            Acc* mask_partials, std::int64_t begin, std::int64_t end) {
  for (std::int64_t b = begin; b < end; ++b) {
    const std::int64_t count = steps::packed_count(cu_seqlens, b);
    const auto slot_row = [&](std::int64_t k) {
      return grad_packed + steps::token_offset(ps, 0, steps::packed_row(cu_seqlens, b, k));
    };
    detail::restore_sample_backward(grad, gs, b, ids_restore, count, count, num_tokens, channels,
                                    slot_row, ps.channel, mask_partials + b * channels);
  }
}

}  // namespace mwm
