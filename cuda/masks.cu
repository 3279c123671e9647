// generate_masks_async: host-side validation, the BEiT block placement, and the choice between
// one block per sample and the segmented sorts.
#include <string>

#include "mask_args.cuh"
#include "mwm_cuda.hpp"

namespace mwm {
namespace gpu {
namespace {

// place_blocks is sequential within a sample (each block depends on the ones before), so one
// thread runs one sample.
__global__ void place_blocks_kernel(const mask_args a, std::int64_t batch) {
  const std::int64_t ns = a.sel.num_patches();
  for (std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < batch;
       b += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    steps::place_blocks(a.blocked + b * ns, a.sel, a.params.block,
                        steps::masked_total(a.params, ns), a.seed,
                        steps::global_sample_index(a.sample_index, a.offset, b));
  }
}

// What validate_request checks without reading device memory; the kernels check the data.
void validate_device_request(const mask_request& request, const batch_outputs& out) {
  detail::require(request.batch > 0 && request.batch <= 0x7FFFFFFF, "batch", request.batch,
                  "must lie in [1, 2^31)");
  detail::require(request.grid.num_patches() > 0, "grid patches", request.grid.num_patches(),
                  "must be positive");
  validate_policy(request.policy, request.grid);
  const char* policy = policy_name(request.policy.kind);
  if (uses_regions(request.policy.kind)) {
    detail::require(request.regions != nullptr, "regions", "null",
                    std::string("are required by policy ") + policy);
  }
  if (uses_scores(request.policy.kind)) {
    detail::require(request.scores != nullptr, "scores", "null",
                    std::string("are required by policy ") + policy);
  }
  detail::require(out.noise == nullptr || request.grid.num_patches() <= max_patches_for_noise,
                  "grid patches", request.grid.num_patches(),
                  "must be at most 2^24 for the noise output");
}

mask_args make_args(const mask_request& request, const batch_outputs& out) {
  mask_args a;
  a.params = make_policy_params(request.policy, request.grid);
  a.grid = request.grid;
  a.sel = steps::selection_grid(a.params, request.grid);
  a.seed = request.seed;
  a.offset = request.offset;
  a.sample_index = request.sample_index;
  a.regions = request.regions;
  a.scores = request.scores;
  a.non_finite = request.non_finite;
  a.out = out;
  a.widths = output_widths(request.policy, request.grid);
  return a;
}

bool fits_one_block(const mask_args& a) {
  return tier_for(a.grid.num_patches()) != block_tier::segmented;
}

std::int64_t blocked_bytes(const mask_args& a, std::int64_t batch) {
  return a.params.kind == policy_kind::block ? batch * a.sel.num_patches() : 0;
}

}  // namespace

std::size_t mask_workspace_bytes(const mask_request& request) {
  validate_device_request(request, batch_outputs{});
  const mask_args a = make_args(request, batch_outputs{});
  workspace_carver carve(nullptr);
  carve.take<std::uint8_t>(blocked_bytes(a, request.batch));
  if (!fits_one_block(a)) carve.take_bytes(segmented_masks_workspace_bytes(a, request.batch));
  return carve.used();
}

void generate_masks_async(const mask_request& request, const batch_outputs& out, void* workspace,
                          std::size_t workspace_bytes, cudaStream_t stream) {
  validate_device_request(request, out);
  require_workspace(workspace_bytes, mask_workspace_bytes(request), "generate_masks_async");
  mask_args a = make_args(request, out);
  a.errors = begin_checked_launch(stream);
  workspace_carver carve(workspace);
  a.blocked = carve.take<std::uint8_t>(blocked_bytes(a, request.batch));
  if (a.params.kind == policy_kind::block) {
    constexpr int threads = 64;
    place_blocks_kernel<<<blocks_for(request.batch, threads), threads, 0, stream>>>(a,
                                                                                    request.batch);
    check_launch("place_blocks_kernel");
  }
  if (fits_one_block(a)) {
    launch_masks_in_blocks(a, request.batch, stream);
  } else {
    const std::size_t bytes = segmented_masks_workspace_bytes(a, request.batch);
    launch_masks_segmented(a, request.batch, carve.take_bytes(bytes), stream);
  }
  end_checked_launch(stream);
}

}  // namespace gpu
}  // namespace mwm
