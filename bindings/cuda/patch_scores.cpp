// The CUDA kernel of patch_scores: the pooling launcher on the current stream.
#include <torch/library.h>

#include <mwm_cuda.hpp>

#include "cuda/device.h"
#include "ops/patch_scores.h"

namespace mwm_bindings {
namespace {

at::Tensor run(const patch_scores_call& call) {
  const at::Tensor& heatmaps = call.heatmaps;
  const int64_t spatial = static_cast<int64_t>(call.grid.size());
  TORCH_CHECK_VALUE(heatmaps.dim() == 2 + spatial, "mwm: heatmaps must be (B, K, ",
                    spatial == 3 ? "D, " : "", "H, W) for a ", spatial, "D grid, got shape ",
                    shape_text(heatmaps));
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  mwm::pooling_request request;
  request.grid = make_grid(call.grid);
  request.batch = heatmaps.size(0);
  request.prompts = heatmaps.size(1);
  request.shape.depth = spatial == 3 ? heatmaps.size(2) : 1;
  request.shape.height = heatmaps.size(-2);
  request.shape.width = heatmaps.size(-1);
  request.options = call.options;
  request.combine = call.combine;
  at::Tensor weights;
  if (call.prompt_weights != nullptr) {
    const at::Tensor& given = *call.prompt_weights;
    TORCH_CHECK_VALUE(given.numel() == request.prompts, "mwm: prompt_weights size = ",
                      given.numel(), ": must equal the number of prompts (", request.prompts,
                      ")");
    // On the device; the kernel rejects non-finite weights as validate_prompt_weights does.
    weights = given.to(heatmaps.device(), at::kFloat, /*non_blocking=*/true).contiguous();
  }
  TORCH_CHECK_VALUE(request.prompts > 0, "mwm: prompts = 0: need at least one heatmap");
  mwm::validate_heatmap_shape(request.shape);
  const auto input = heatmaps.contiguous();
  auto scores = at::empty({request.batch, request.grid.num_patches()}, heatmaps.options());
  if (request.batch == 0) return scores;
  const std::size_t bytes = mwm::gpu::patch_scores_workspace_bytes(request);
  auto workspace = workspace_like(heatmaps, bytes);
  mwm::gpu::patch_scores_async(request, input.const_data_ptr<float>(),
                               weights.defined() ? weights.const_data_ptr<float>() : nullptr,
                               scores.mutable_data_ptr<float>(), workspace.mutable_data_ptr(),
                               bytes, current_stream());
  return scores;
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  m.impl("patch_scores", &mwm_bindings::patch_scores_op<mwm_bindings::run>);
}
