// The CUDA launchers of mwm: raw device pointers and a stream, no torch. Every launcher only
// enqueues work on `stream` (no host synchronization); host-side arguments are validated here
// with mwm::error. Data that lives on the device (ids, region indices, NaN scores) is checked
// by the kernels, which record the first bad value into the device's error slot and carry on
// with a safe value; the error is raised later with the CPU path's message (see "data errors"
// below). Scratch memory is the caller's: ask the *_workspace_bytes function, allocate that
// many bytes of device memory (any alignment of 256 bytes), pass it in.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "mwm/loss.hpp"
#include "mwm/masking.hpp"
#include "mwm/tokens.hpp"

namespace mwm {
namespace gpu {

// ---- data errors ----------------------------------------------------------------------------
// The contract (docs/design.md, "CUDA error contract"): a kernel that finds bad data records
// the first error (smallest flat index, the one the CPU path raises) of the first launcher
// call that fails into its device's slot, never traps, and the launcher returns without
// waiting. The error is raised as mwm::error with the CPU path's message
//   - by check_device_errors(stream), which waits for `stream`;
//   - by a later launcher call on the device, without waiting, once the asynchronous copy of
//     the slot that followed the failing call has reached the host;
//   - before the failing launcher returns, waiting for its stream, under set_sync_errors(true)
//     or the environment variable MWM_SYNC_ERRORS=1 (the debug switch).
// Raising clears the slot. Inside CUDA graph capture nothing is queried or copied (the graph
// records into the slot on every replay; call check_device_errors after a replay). The slot of
// a device is allocated at the first launcher call on it, which must not be inside a capture.

void check_device_errors(cudaStream_t stream);
void set_sync_errors(bool on);
bool sync_errors();

// ---- masks -------------------------------------------------------------------------------

// Samples whose patch count fits this stay in one thread block each (cub::BlockRadixSort);
// larger grids use cub::DeviceSegmentedRadixSort over chunks of samples.
constexpr std::int64_t max_patches_in_block = 2048;

// Device bytes generate_masks_async needs for this request (grid, batch, policy).
std::size_t mask_workspace_bytes(const mask_request& request);

// The outputs of generate_masks_into for every sample, bit-identical to the CPU path.
// request.sample_index (or offset), regions and scores, and every non-null pointer of `out`
// are device memory; request.threads is ignored.
void generate_masks_async(const mask_request& request, const batch_outputs& out, void* workspace,
                          std::size_t workspace_bytes, cudaStream_t stream);

// ---- heatmaps to scores to regions --------------------------------------------------------

// A small host array passed by value in the kernel's parameters: no host-to-device copy per
// call, so the launch can be captured in a CUDA graph and nothing waits for the host.
constexpr std::int32_t max_host_values = 64;

template <typename T>
struct host_values {
  std::int32_t count = 0;
  T values[max_host_values] = {};
};

// combine = weighted_sum: one weight per prompt, on the device (`device`, checked finite by a
// kernel) or by value (`by_value`, when `device` is null; the caller checks them on the host).
struct prompt_weight_values {
  const float* device = nullptr;
  host_values<float> by_value;
};

// Device bytes patch_scores_async needs (the per-prompt scores when prompts are combined).
std::size_t patch_scores_workspace_bytes(const pooling_request& request);

// heatmaps (batch, prompts, D, H, W) -> scores (batch, N), as heatmaps_to_scores.
// `prompt_weights` (`prompts` floats) is read for weighted_sum only; the host vector
// request.prompt_weights is ignored.
void patch_scores_async(const pooling_request& request, const float* heatmaps,
                        const prompt_weight_values& prompt_weights, float* scores, void* workspace,
                        std::size_t workspace_bytes, cudaStream_t stream);

// scores (batch, n) -> regions by strictly ascending thresholds (validated on the host with
// validate_thresholds).
void regions_from_thresholds_async(const float* scores, std::int64_t batch, std::int64_t n,
                                   const host_values<float>& thresholds, nan_policy non_finite,
                                   std::int32_t* regions, cudaStream_t stream);

std::size_t quantile_workspace_bytes(std::int64_t batch, std::int64_t n);

// scores (batch, n) -> regions by per-sample quantiles; top_counts holds quantile_count(n,
// share_q) of the shares the caller validated with validate_quantile_shares.
void regions_from_quantiles_async(const float* scores, std::int64_t batch, std::int64_t n,
                                  const host_values<std::int64_t>& top_counts,
                                  nan_policy non_finite, std::int32_t* regions, void* workspace,
                                  std::size_t workspace_bytes, cudaStream_t stream);

// values (batch, N) bool -> (batch, 1, D*fd, H*fh, W*fw), negated when `invert`.
void upsample_patch_map_async(const std::uint8_t* values, std::int64_t batch, grid_shape grid,
                              std::int64_t fd, std::int64_t fh, std::int64_t fw, bool invert,
                              std::uint8_t* out, cudaStream_t stream);

// ---- masked reconstruction loss ------------------------------------------------------------

enum class float_type { float32, float64, float16, bfloat16 };

// A masked_recon_loss call on device memory. Supported (pred, target) types: equal types, or a
// float16 / bfloat16 prediction with a float32 target; callers convert other pairs exactly to
// one of these (a wider type holds every value of a narrower one, and the gradient of a wider
// prediction rounds to the narrower type once, as the direct computation does).
struct loss_call_view {
  patch_geometry geometry;
  std::int64_t batch = 0;
  const void* pred = nullptr;
  float_type pred_type = float_type::float32;
  patch_strides pred_strides;
  const void* target = nullptr;
  float_type target_type = float_type::float32;
  patch_strides target_strides;
  const std::uint8_t* mask = nullptr;  // (B, N), dense
  const void* weight = nullptr;        // (B, N) dense in the accumulation type, or null
  loss_options options;
};

bool loss_types_supported(float_type pred, float_type target);

// The accumulation type: float64 when pred or target is float64, float32 otherwise.
inline float_type loss_accumulation_type(float_type pred, float_type target) {
  return pred == float_type::float64 || target == float_type::float64 ? float_type::float64
                                                                      : float_type::float32;
}

std::size_t loss_workspace_bytes(const loss_call_view& call);

// `out` (accumulation type): the reduced loss, or (B, N) per-patch losses for reduction none.
// Per-block partial sums (cub::BlockReduce) are added in a fixed order by a second kernel, so
// the value is the same on every run; no floating-point atomics.
void masked_recon_loss_async(const loss_call_view& call, void* out, void* workspace,
                             std::size_t workspace_bytes, cudaStream_t stream);

// grad_out (accumulation type): one value, or (B, N) for reduction none. grad_pred has the
// prediction's type and the strides `grad_strides`; every element is written.
void masked_recon_loss_backward_async(const loss_call_view& call, const void* grad_out,
                                      void* grad_pred, const patch_strides& grad_strides,
                                      void* workspace, std::size_t workspace_bytes,
                                      cudaStream_t stream);

// ---- tokens ---------------------------------------------------------------------------------
// Token rows (B, rows, C) with element strides; index rows (B, width) int64, dense. Ids outside
// their range are data errors (the host validators' validate_*_ids messages); the rows they
// would fill are written as zeros and nothing is read through them. Gradients
// add their sources in the order the host drivers do, so they match bit for bit.

// out (B, K, C) = x (B, N, C) at ids_keep (B, K); -1 gathers zeros.
void gather_tokens_async(float_type type, const void* x, const token_strides& xs,
                         const std::int64_t* ids_keep, std::int64_t batch, std::int64_t slots,
                         std::int64_t num_tokens, std::int64_t channels, void* out,
                         const token_strides& os, cudaStream_t stream);

std::size_t gather_tokens_backward_workspace_bytes(std::int64_t batch, std::int64_t slots,
                                                   std::int64_t num_tokens);

// grad_x (B, N, C): zeros with grad (B, K, C) added at ids_keep.
void gather_tokens_backward_async(float_type type, const void* grad, const token_strides& gs,
                                  const std::int64_t* ids_keep, std::int64_t batch,
                                  std::int64_t slots, std::int64_t num_tokens,
                                  std::int64_t channels, void* grad_x, const token_strides& xs,
                                  void* workspace, std::size_t workspace_bytes,
                                  cudaStream_t stream);

// out (B, N, C) from x_vis (B, K, C), ids_restore (B, N), the visible counts (B) or null (K),
// and mask_token (C, element stride mask_stride).
void restore_tokens_async(float_type type, const void* x_vis, const token_strides& vs,
                          const std::int64_t* ids_restore, const std::int64_t* visible,
                          std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                          std::int64_t channels, const void* mask_token, std::int64_t mask_stride,
                          void* out, const token_strides& os, cudaStream_t stream);

std::size_t restore_tokens_backward_workspace_bytes(std::int64_t batch, std::int64_t slots,
                                                    std::int64_t num_tokens, std::int64_t channels);

// grad_x_vis (B, K, C) and grad_mask_token (C, dense) of restore_tokens.
void restore_tokens_backward_async(float_type type, const void* grad, const token_strides& gs,
                                   const std::int64_t* ids_restore, const std::int64_t* visible,
                                   std::int64_t batch, std::int64_t slots, std::int64_t num_tokens,
                                   std::int64_t channels, void* grad_x_vis, const token_strides& vs,
                                   void* grad_mask_token, void* workspace,
                                   std::size_t workspace_bytes, cudaStream_t stream);

}  // namespace gpu
}  // namespace mwm
