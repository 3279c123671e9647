// Launchers of the packed-token kernels (cuda/pack_tokens.cu): raw device pointers and a stream,
// no torch, as mwm_cuda.hpp's. The maths is mwm/tokens.hpp's; ids and offsets that live on the
// device are checked by the kernels, which record the first bad value in the device's error slot
// (the contract of mwm_cuda.hpp, "data errors") and never trap.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "mwm/tokens.hpp"
#include "mwm_cuda.hpp"

namespace mwm {
namespace gpu {

// cu_seqlens (B + 1) of ids_keep (B, K): each row's visible prefix, checked (ids in [-1, N),
// the -1 padding at the end, a total below 2^31). The caller reads cu_seqlens[B] to size packed.
void pack_offsets_async(const std::int64_t* ids_keep, std::int64_t batch, std::int64_t slots,
                        std::int64_t num_tokens, std::int32_t* cu_seqlens, cudaStream_t stream);

// packed (total, C) rows from x (B, N, C); `ps` addresses a packed row as (0, row, channel).
void pack_tokens_async(float_type type, const void* x, const token_strides& xs,
                       const std::int64_t* ids_keep, const std::int32_t* cu_seqlens,
                       std::int64_t batch, std::int64_t slots, std::int64_t channels,
                       std::int64_t total, void* packed, const token_strides& ps,
                       cudaStream_t stream);

// grad_x (B, N, C) of pack_tokens: the packed gradient rows added at their ids, in slot order.
void pack_tokens_backward_async(float_type type, const void* grad, const token_strides& gs,
                                const std::int64_t* ids_keep, const std::int32_t* cu_seqlens,
                                std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                                std::int64_t channels, void* grad_x, const token_strides& xs,
                                cudaStream_t stream);

// out (B, N, C) from packed rows (total, C), ids_restore (B, N) and mask_token (C); checks the
// offsets (0 first, `total` last, 0..N rows per sample) and ids_restore in [0, N).
void unpack_tokens_async(float_type type, const void* packed, const token_strides& ps,
                         const std::int32_t* cu_seqlens, const std::int64_t* ids_restore,
                         std::int64_t batch, std::int64_t num_tokens, std::int64_t channels,
                         std::int64_t total, const void* mask_token, std::int64_t mask_stride,
                         void* out, const token_strides& os, cudaStream_t stream);

// Device bytes unpack_tokens_backward_async needs (the per-sample mask-token partials).
std::size_t unpack_tokens_backward_workspace_bytes(std::int64_t batch, std::int64_t channels);

// grad_packed (total, C) and grad_mask_token (C, dense) of unpack_tokens; the mask-token
// gradient sums per-sample partials in sample order, as the CPU does.
void unpack_tokens_backward_async(float_type type, const void* grad, const token_strides& gs,
                                  const std::int32_t* cu_seqlens, const std::int64_t* ids_restore,
                                  std::int64_t batch, std::int64_t num_tokens,
                                  std::int64_t channels, std::int64_t total, void* grad_packed,
                                  const token_strides& ps, void* grad_mask_token, void* workspace,
                                  std::size_t workspace_bytes, cudaStream_t stream);

}  // namespace gpu
}  // namespace mwm
