// Packed visible tokens on the GPU: pack / unpack and their gradients, one thread per element,
// each running the core's per-token functions (mwm/tokens.hpp) on one channel. The gradients
// gather rather than scatter: every output element sums its sources in the CPU drivers' order,
// so results are deterministic, need no atomics, and duplicated ids add up as on the CPU. Bad
// ids and offsets are recorded into the device's error slot (device_checks.cuh) and read as
// safe values; the host raises the CPU path's message.
#include "device_checks.cuh"
#include "element_kernels.cuh"
#include "pack_tokens.hpp"

namespace mwm {
namespace gpu {
namespace {

// One thread per sample: the visible prefix of its ids_keep row, checked as visible_prefix does.
__global__ void pack_counts_kernel(const std::int64_t* ids, std::int64_t batch, std::int64_t slots,
                                   std::int64_t num_tokens, std::int32_t* cu_seqlens,
                                   const error_sink errors) {
  MWM_FOR_ELEMENTS(b, batch) {
    const std::int64_t* row = ids + b * slots;
    std::int64_t count = 0;
    while (count < slots && row[count] != padding_id) ++count;
    for (std::int64_t k = 0; k < slots; ++k) {
      const std::int64_t at = b * slots + k;
      data_error bad;
      if (k < count && !steps::keep_id_in_range(row[k], at, slots, num_tokens, &bad)) {
        record_data_error(errors, steps::data_error_key(0, at), bad);
        count = k;  // a bad id ends the sample: nothing past it is read
      } else if (k >= count && row[k] != padding_id) {
        record_data_error(errors, steps::data_error_key(0, at),
                          steps::integer_data_error(data_error_code::keep_padding, at, slots,
                                                    row[k], num_tokens));
      }
    }
    cu_seqlens[b + 1] = static_cast<std::int32_t>(count);
  }
}

// One thread: the running sum of the counts (B is the batch size: a short loop).
__global__ void pack_scan_kernel(std::int64_t batch, std::int32_t* cu_seqlens,
                                 const error_sink errors) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  std::int64_t total = 0;
  cu_seqlens[0] = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t next = total + cu_seqlens[b + 1];
    if (next > 0x7FFFFFFF) {
      record_data_error(
          errors, steps::data_error_key(1, b + 1),
          steps::integer_data_error(data_error_code::packed_total, b + 1, 0, next, 0x7FFFFFFF));
    } else {
      total = next;  // past the limit the remaining samples pack nothing
    }
    cu_seqlens[b + 1] = static_cast<std::int32_t>(total);
  }
}

template <typename T>
__global__ void pack_kernel(const T* x, const token_strides xs, const std::int64_t* ids,
                            const std::int32_t* cu_seqlens, std::int64_t batch, std::int64_t slots,
                            std::int64_t channels, std::int64_t count, T* packed,
                            const token_strides ps) {
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t row = e / channels, c = e % channels;
    const std::int64_t b = steps::packed_sample(cu_seqlens, batch, row);
    const std::int64_t k = row - cu_seqlens[b];
    steps::copy_token(x + steps::token_offset(xs, b, ids[b * slots + k]) + c * xs.channel,
                      xs.channel, packed + steps::token_offset(ps, 0, row) + c * ps.channel,
                      ps.channel, 1);
  }
}

template <typename Acc, typename T>
__global__ void pack_backward_kernel(const T* grad, const token_strides gs, const std::int64_t* ids,
                                     const std::int32_t* cu_seqlens, std::int64_t slots,
                                     std::int64_t num_tokens, std::int64_t channels,
                                     std::int64_t count, T* grad_x, const token_strides xs) {
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t c = e % channels, n = (e / channels) % num_tokens;
    const std::int64_t b = e / (channels * num_tokens);
    T* dst = grad_x + steps::token_offset(xs, b, n) + c * xs.channel;
    steps::zero_token(dst, xs.channel, 1);
    for (std::int64_t k = 0; k < steps::packed_count(cu_seqlens, b); ++k)
      if (ids[b * slots + k] == n)
        steps::add_token<Acc>(
            grad + steps::token_offset(gs, 0, steps::packed_row(cu_seqlens, b, k)) + c * gs.channel,
            gs.channel, dst, xs.channel, 1);
  }
}

// Offsets and ids_restore of an unpack, checked once per sample / token; false when the element
// must not be read (it then gets zeros, or the mask token).
__device__ inline bool check_unpack(const std::int32_t* cu_seqlens, const std::int64_t* ids_restore,
                                    std::int64_t batch, std::int64_t num_tokens, std::int64_t total,
                                    std::int64_t b, std::int64_t n, bool record,
                                    const error_sink& errors) {
  bool ok = true;
  const std::int64_t count = steps::packed_count(cu_seqlens, b);
  if (cu_seqlens[0] != 0 || cu_seqlens[batch] != total) {
    ok = false;
    if (record && b == 0 && n == 0) {
      const bool first = cu_seqlens[0] != 0;
      record_data_error(
          errors, steps::data_error_key(0, first ? 0 : batch),
          steps::integer_data_error(data_error_code::packed_total, first ? 0 : batch, 0,
                                    first ? cu_seqlens[0] : cu_seqlens[batch], first ? 0 : total));
    }
  }
  if (count < 0 || count > num_tokens || cu_seqlens[b] < 0 || cu_seqlens[b + 1] > total) {
    ok = false;
    if (record && n == 0)
      record_data_error(errors, steps::data_error_key(0, b + 1),
                        steps::integer_data_error(data_error_code::packed_offset, b + 1, 0,
                                                  cu_seqlens[b + 1], num_tokens));
  }
  const std::int64_t at = b * num_tokens + n;
  data_error bad;
  if (!steps::restore_id_in_range(ids_restore[at], at, num_tokens, &bad)) {
    ok = false;
    if (record) record_data_error(errors, steps::data_error_key(1, at), bad);
  }
  return ok;
}

template <typename T>
__global__ void unpack_kernel(const T* packed, const token_strides ps,
                              const std::int32_t* cu_seqlens, const std::int64_t* ids_restore,
                              std::int64_t batch, std::int64_t num_tokens, std::int64_t channels,
                              std::int64_t total, const T* mask_token, std::int64_t mask_stride,
                              std::int64_t count, T* out, const token_strides os,
                              const error_sink errors) {
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t c = e % channels, n = (e / channels) % num_tokens;
    const std::int64_t b = e / (channels * num_tokens);
    const bool ok =
        check_unpack(cu_seqlens, ids_restore, batch, num_tokens, total, b, n, c == 0, errors);
    const std::int64_t slot = ok ? steps::restored_slot(ids_restore[b * num_tokens + n],
                                                        steps::packed_count(cu_seqlens, b))
                                 : padding_id;
    T* dst = out + steps::token_offset(os, b, n) + c * os.channel;
    if (slot == padding_id)
      steps::copy_token(mask_token + c * mask_stride, mask_stride, dst, os.channel, 1);
    else
      steps::copy_token(packed +
                            steps::token_offset(ps, 0, steps::packed_row(cu_seqlens, b, slot)) +
                            c * ps.channel,
                        ps.channel, dst, os.channel, 1);
  }
}

template <typename Acc, typename T>
__global__ void unpack_backward_kernel(const T* grad, const token_strides gs,
                                       const std::int32_t* cu_seqlens,
                                       const std::int64_t* ids_restore, std::int64_t batch,
                                       std::int64_t num_tokens, std::int64_t channels,
                                       std::int64_t total, std::int64_t count, T* grad_packed,
                                       const token_strides ps, const error_sink errors) {
  MWM_FOR_ELEMENTS(e, count) {
    const std::int64_t row = e / channels, c = e % channels;
    const std::int64_t b = steps::packed_sample(cu_seqlens, batch, row);
    const std::int64_t k = row - cu_seqlens[b], visible = steps::packed_count(cu_seqlens, b);
    T* dst = grad_packed + steps::token_offset(ps, 0, row) + c * ps.channel;
    steps::zero_token(dst, ps.channel, 1);
    for (std::int64_t n = 0; n < num_tokens; ++n)
      if (check_unpack(cu_seqlens, ids_restore, batch, num_tokens, total, b, n, false, errors) &&
          steps::restored_slot(ids_restore[b * num_tokens + n], visible) == k)
        steps::add_token<Acc>(grad + steps::token_offset(gs, b, n) + c * gs.channel, gs.channel,
                              dst, ps.channel, 1);
  }
}

// Per (sample, channel): the sum of the gradient rows that came from the mask token; the
// offsets and ids are checked here, since a sample may have no packed rows to check them.
template <typename Acc, typename T>
__global__ void unpack_mask_partials_kernel(const T* grad, const token_strides gs,
                                            const std::int32_t* cu_seqlens,
                                            const std::int64_t* ids_restore, std::int64_t batch,
                                            std::int64_t num_tokens, std::int64_t channels,
                                            std::int64_t total, Acc* partials,
                                            const error_sink errors) {
  MWM_FOR_ELEMENTS(e, batch * channels) {
    const std::int64_t b = e / channels, c = e % channels;
    const std::int64_t visible = steps::packed_count(cu_seqlens, b);
    Acc sum = Acc(0);
    for (std::int64_t n = 0; n < num_tokens; ++n) {
      const bool ok =
          check_unpack(cu_seqlens, ids_restore, batch, num_tokens, total, b, n, c == 0, errors);
      if (ok && steps::restored_slot(ids_restore[b * num_tokens + n], visible) == padding_id)
        steps::accumulate_token(grad + steps::token_offset(gs, b, n) + c * gs.channel, gs.channel,
                                &sum, 1);
    }
    partials[e] = sum;
  }
}

template <typename Acc, typename T>
__global__ void unpack_mask_gradient_kernel(const Acc* partials, std::int64_t batch,
                                            std::int64_t channels, T* out) {
  MWM_FOR_ELEMENTS(c, channels) {
    Acc sum = Acc(0);
    for (std::int64_t b = 0; b < batch; ++b) sum += partials[b * channels + c];
    out[c] = static_cast<T>(sum);
  }
}

void require_pack_shape(std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                        std::int64_t channels, std::int64_t total) {
  detail::require(batch >= 0, "batch", batch, "must not be negative");
  detail::require(slots >= 0, "slots", slots, "must not be negative");
  detail::require(num_tokens >= 0, "num_tokens", num_tokens, "must not be negative");
  detail::require(channels >= 0, "channels", channels, "must not be negative");
  detail::require(total >= 0 && total <= 0x7FFFFFFF, "total", total, "must lie in [0, 2^31)");
}

}  // namespace

void pack_offsets_async(const std::int64_t* ids_keep, std::int64_t batch, std::int64_t slots,
                        std::int64_t num_tokens, std::int32_t* cu_seqlens, cudaStream_t stream) {
  require_pack_shape(batch, slots, num_tokens, 0, 0);
  const error_sink errors = begin_checked_launch(stream);
  if (batch > 0) {
    pack_counts_kernel<<<blocks_for(batch, element_threads), element_threads, 0, stream>>>(
        ids_keep, batch, slots, num_tokens, cu_seqlens, errors);
    check_launch("pack_counts_kernel");
  }
  pack_scan_kernel<<<1, 1, 0, stream>>>(batch, cu_seqlens, errors);
  check_launch("pack_scan_kernel");
  end_checked_launch(stream);
}

void pack_tokens_async(float_type type, const void* x, const token_strides& xs,
                       const std::int64_t* ids_keep, const std::int32_t* cu_seqlens,
                       std::int64_t batch, std::int64_t slots, std::int64_t channels,
                       std::int64_t total, void* packed, const token_strides& ps,
                       cudaStream_t stream) {
  require_pack_shape(batch, slots, 0, channels, total);
  const std::int64_t count = total * channels;
  if (count == 0) return;
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    pack_kernel<<<blocks_for(count, element_threads), element_threads, 0, stream>>>(
        static_cast<const T*>(x), xs, ids_keep, cu_seqlens, batch, slots, channels, count,
        static_cast<T*>(packed), ps);
    check_launch("pack_kernel");
  });
}

void pack_tokens_backward_async(float_type type, const void* grad, const token_strides& gs,
                                const std::int64_t* ids_keep, const std::int32_t* cu_seqlens,
                                std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                                std::int64_t channels, void* grad_x, const token_strides& xs,
                                cudaStream_t stream) {
  require_pack_shape(batch, slots, num_tokens, channels, 0);
  const std::int64_t count = batch * num_tokens * channels;
  if (count == 0) return;
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    using Acc = typename accumulate_of<T>::type;
    pack_backward_kernel<Acc><<<blocks_for(count, element_threads), element_threads, 0, stream>>>(
        static_cast<const T*>(grad), gs, ids_keep, cu_seqlens, slots, num_tokens, channels, count,
        static_cast<T*>(grad_x), xs);
    check_launch("pack_backward_kernel");
  });
}

void unpack_tokens_async(float_type type, const void* packed, const token_strides& ps,
                         const std::int32_t* cu_seqlens, const std::int64_t* ids_restore,
                         std::int64_t batch, std::int64_t num_tokens, std::int64_t channels,
                         std::int64_t total, const void* mask_token, std::int64_t mask_stride,
                         void* out, const token_strides& os, cudaStream_t stream) {
  require_pack_shape(batch, 0, num_tokens, channels, total);
  const std::int64_t count = batch * num_tokens * channels;
  if (count == 0) return;
  const error_sink errors = begin_checked_launch(stream);
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    unpack_kernel<<<blocks_for(count, element_threads), element_threads, 0, stream>>>(
        static_cast<const T*>(packed), ps, cu_seqlens, ids_restore, batch, num_tokens, channels,
        total, static_cast<const T*>(mask_token), mask_stride, count, static_cast<T*>(out), os,
        errors);
    check_launch("unpack_kernel");
  });
  end_checked_launch(stream);
}

std::size_t unpack_tokens_backward_workspace_bytes(std::int64_t batch, std::int64_t channels) {
  return static_cast<std::size_t>(batch * channels) * sizeof(double);
}

void unpack_tokens_backward_async(float_type type, const void* grad, const token_strides& gs,
                                  const std::int32_t* cu_seqlens, const std::int64_t* ids_restore,
                                  std::int64_t batch, std::int64_t num_tokens,
                                  std::int64_t channels, std::int64_t total, void* grad_packed,
                                  const token_strides& ps, void* grad_mask_token, void* workspace,
                                  std::size_t workspace_bytes, cudaStream_t stream) {
  require_pack_shape(batch, 0, num_tokens, channels, total);
  detail::require(workspace_bytes >= unpack_tokens_backward_workspace_bytes(batch, channels),
                  "workspace_bytes", static_cast<std::int64_t>(workspace_bytes),
                  "is smaller than unpack_tokens_backward_workspace_bytes");
  const error_sink errors = begin_checked_launch(stream);
  with_float_type(type, [&](auto tag) {
    using T = decltype(tag);
    using Acc = typename accumulate_of<T>::type;
    const std::int64_t rows = total * channels;
    if (rows > 0) {
      unpack_backward_kernel<Acc>
          <<<blocks_for(rows, element_threads), element_threads, 0, stream>>>(
              static_cast<const T*>(grad), gs, cu_seqlens, ids_restore, batch, num_tokens, channels,
              total, rows, static_cast<T*>(grad_packed), ps, errors);
      check_launch("unpack_backward_kernel");
    }
    if (channels == 0) return;
    auto* partials = static_cast<Acc*>(workspace);
    if (batch > 0) {
      unpack_mask_partials_kernel<Acc>
          <<<blocks_for(batch * channels, element_threads), element_threads, 0, stream>>>(
              static_cast<const T*>(grad), gs, cu_seqlens, ids_restore, batch, num_tokens, channels,
              total, partials, errors);
      check_launch("unpack_mask_partials_kernel");
    }
    unpack_mask_gradient_kernel<Acc>
        <<<blocks_for(channels, element_threads), element_threads, 0, stream>>>(
            partials, batch, channels, static_cast<T*>(grad_mask_token));
    check_launch("unpack_mask_gradient_kernel");
  });
  end_checked_launch(stream);
}

}  // namespace gpu
}  // namespace mwm
