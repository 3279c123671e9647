// The CUDA launchers of mwm: raw device pointers and a stream, no torch. Every launcher only
// enqueues work on `stream` (no host synchronization); host-side arguments are validated here
// with mwm::error, data that lives on the device (region indices, NaN scores) is checked by the
// kernels, which print the mwm message and trap, failing the stream as a device-side assert
// does. Scratch memory is the caller's: ask the *_workspace_bytes function, allocate that many
// bytes of device memory (any alignment of 256 bytes), pass it in.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "mwm/masking.hpp"

namespace mwm {
namespace gpu {

// ---- masks -------------------------------------------------------------------------------

// Samples whose patch count fits this stay in one thread block each (cub::BlockRadixSort);
// larger grids use cub::DeviceSegmentedRadixSort over chunks of samples.
constexpr std::int64_t max_patches_in_block = 2048;

// Device bytes generate_masks_async needs for this request (grid, batch, policy).
std::size_t mask_workspace_bytes(const mask_request& request);

// The outputs of generate_masks_into for every sample, bit-identical to the CPU path.
// request.sample_index (or offset), regions and scores, and every non-null pointer of `out`
// are device memory; request.threads is ignored.
void generate_masks_async(const mask_request& request, const batch_outputs& out,
                          void* workspace, std::size_t workspace_bytes, cudaStream_t stream);

// ---- heatmaps to scores to regions --------------------------------------------------------

// Device bytes patch_scores_async needs (the per-prompt scores when prompts are combined).
std::size_t patch_scores_workspace_bytes(const pooling_request& request);

// heatmaps (batch, prompts, D, H, W) -> scores (batch, N), as heatmaps_to_scores.
// `prompt_weights` (device, `prompts` floats) is read for weighted_sum only; the host vector
// request.prompt_weights is ignored.
void patch_scores_async(const pooling_request& request, const float* heatmaps,
                        const float* prompt_weights, float* scores, void* workspace,
                        std::size_t workspace_bytes, cudaStream_t stream);

// scores (batch, n) -> regions by `count` strictly ascending thresholds (device memory; the
// caller validates them on the host with validate_thresholds).
void regions_from_thresholds_async(const float* scores, std::int64_t batch, std::int64_t n,
                                   const float* thresholds, std::int32_t count,
                                   nan_policy non_finite, std::int32_t* regions,
                                   cudaStream_t stream);

std::size_t quantile_workspace_bytes(std::int64_t batch, std::int64_t n);

// scores (batch, n) -> regions by per-sample quantiles; top_counts (device, num_shares values)
// holds quantile_count(n, share_q) of shares the caller validated with validate_quantile_shares.
void regions_from_quantiles_async(const float* scores, std::int64_t batch, std::int64_t n,
                                  const std::int64_t* top_counts, std::int32_t num_shares,
                                  nan_policy non_finite, std::int32_t* regions, void* workspace,
                                  std::size_t workspace_bytes, cudaStream_t stream);

// values (batch, N) bool -> (batch, 1, D*fd, H*fh, W*fw), negated when `invert`.
void upsample_patch_map_async(const std::uint8_t* values, std::int64_t batch, grid_shape grid,
                              std::int64_t fd, std::int64_t fh, std::int64_t fw, bool invert,
                              std::uint8_t* out, cudaStream_t stream);

}  // namespace gpu
}  // namespace mwm
