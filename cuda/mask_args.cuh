// What the mask kernels of both paths (one block per sample, segmented sorts) read, and the
// per-element input helpers they share. Device code: included by the .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "device_checks.cuh"
#include "selection_steps.cuh"

namespace mwm {
namespace gpu {

// Kernel arguments, passed by value (about 800 bytes, within the kernel parameter limit).
struct mask_args {
  policy_params params;
  grid_shape grid;  // the patch grid: outputs, regions and scores rows are N long
  grid_shape sel;   // the selection grid (the coarse grid of `coarse`, else the patch grid)
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  const std::int64_t* sample_index = nullptr;
  const std::int32_t* regions = nullptr;
  const float* scores = nullptr;
  nan_policy non_finite = nan_policy::error;
  std::uint8_t* blocked = nullptr;  // (batch, Ns) BEiT blocks of the `block` policy
  batch_outputs out;
  index_widths widths{0, 0};
  error_sink errors;
};

// The CPU path checks the scores (validate_request) before any region (select_sample).
constexpr int scores_phase = 0;
constexpr int regions_phase = 1;

// Score of patch i of sample b; NaN and infinity are data errors (read as 0) unless nan_policy
// says zero.
__device__ inline float sample_score(const mask_args& a, std::int64_t b, std::int64_t i) {
  return checked_value(a.scores, b * a.grid.num_patches() + i, a.non_finite, data_argument::scores,
                       a.errors, scores_phase);
}

// Group of cell i of sample b when it comes straight from the inputs (the core's
// cell_group_from_inputs); the guided kinds rank scores first. A bad region is recorded and
// counts as group 0.
__device__ inline std::int32_t input_group(const mask_args& a, std::int64_t b, std::int64_t i) {
  const std::int64_t row = b * a.grid.num_patches();
  const std::int32_t* regions = a.regions ? a.regions + row : nullptr;
  const std::uint8_t* blocked = a.blocked ? a.blocked + b * a.sel.num_patches() : nullptr;
  std::int32_t group = 0;
  data_error bad;
  if (!steps::cell_group_from_inputs(a.params, regions, blocked, i, &group, &bad)) {
    bad.index += row;
    record_data_error(a.errors, steps::data_error_key(regions_phase, bad.index), bad);
  }
  return group;
}

// Selection key of cell i of sample b (only `weighted` reads a score here).
__device__ inline selection_key cell_key(const mask_args& a, std::int64_t b, std::uint64_t sample,
                                         std::int64_t i) {
  const float score = a.params.kind == policy_kind::weighted ? sample_score(a, b, i) : 0.0f;
  return steps::patch_key(a.params, a.seed, sample, static_cast<std::uint32_t>(i), score);
}

// Path launchers (masks_block.cu, masks_segmented.cu); `a.blocked` is filled already.
void launch_masks_in_blocks(const mask_args& a, std::int64_t batch, cudaStream_t stream);

std::size_t segmented_masks_workspace_bytes(const mask_args& a, std::int64_t batch);
void launch_masks_segmented(const mask_args& a, std::int64_t batch, void* workspace,
                            cudaStream_t stream);

}  // namespace gpu
}  // namespace mwm
