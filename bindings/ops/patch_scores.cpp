// The kernels of patch_scores: mwm::tensors::patch_scores on the CPU (patch_scores_on_cpu in
// ops/patch_scores.h, with the schema and the checks both backends share) and, in a CUDA build,
// cuda/maps.cu's pooling launcher on the current stream.
#include <torch/library.h>

#include "ops/patch_scores.h"

#ifdef MWM_WITH_CUDA
#include <mwm_cuda.hpp>

#include <algorithm>
#include <vector>

#include "cuda/device.h"

namespace mwm_bindings {
namespace {
namespace on_cuda {

// Weights given on the host travel by value in the kernel's parameters (no copy to the device
// per call, so the op can be captured in a CUDA graph); weights on a CUDA device are read there.
mwm::gpu::prompt_weight_values launch_weights(const at::Tensor& given, const at::Tensor& heatmaps,
                                              int64_t prompts, at::Tensor& keep_alive) {
  TORCH_CHECK_VALUE(given.numel() == prompts, "mwm: prompt_weights size = ", given.numel(),
                    ": must equal the number of prompts (", prompts, ")");
  mwm::gpu::prompt_weight_values weights;
  if (given.is_cuda()) {
    // The kernel rejects non-finite weights as validate_prompt_weights does.
    keep_alive = given.to(heatmaps.device(), at::kFloat).contiguous();
    weights.device = keep_alive.const_data_ptr<float>();
    return weights;
  }
  TORCH_CHECK_VALUE(prompts <= mwm::gpu::max_host_values, "mwm: prompt_weights size = ", prompts,
                    ": the CUDA op takes at most ", mwm::gpu::max_host_values,
                    " weights from the host (they travel in the kernel's parameters); pass "
                    "prompt_weights as a CUDA tensor for more prompts");
  const auto host = given.to(at::kFloat).contiguous();
  const std::vector<float> values(host.const_data_ptr<float>(),
                                  host.const_data_ptr<float>() + prompts);
  mwm::validate_prompt_weights(prompts, mwm::prompt_combine::weighted_sum, values);
  weights.by_value.count = static_cast<std::int32_t>(prompts);
  std::copy(values.begin(), values.end(), weights.by_value.values);
  return weights;
}

at::Tensor run(const patch_scores_call& call) {
  const at::Tensor& heatmaps = call.heatmaps;
  // Only prompt_weights on a CUDA device: computed as the CPU op computes it.
  if (!heatmaps.is_cuda()) return patch_scores_on_cpu(call);
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
  at::Tensor device_weights;
  mwm::gpu::prompt_weight_values weights;
  if (call.prompt_weights != nullptr) {
    weights = launch_weights(*call.prompt_weights, heatmaps, request.prompts, device_weights);
  }
  TORCH_CHECK_VALUE(request.prompts > 0, "mwm: prompts = 0: need at least one heatmap");
  mwm::validate_heatmap_shape(request.shape);
  const auto input = heatmaps.contiguous();
  auto scores = at::empty({request.batch, request.grid.num_patches()}, heatmaps.options());
  if (request.batch == 0) return scores;
  const std::size_t bytes = mwm::gpu::patch_scores_workspace_bytes(request);
  auto workspace = workspace_like(heatmaps, bytes);
  mwm::gpu::patch_scores_async(request, input.const_data_ptr<float>(), weights,
                               scores.mutable_data_ptr<float>(), workspace.mutable_data_ptr(),
                               bytes, current_stream());
  return scores;
}

}  // namespace on_cuda
}  // namespace
}  // namespace mwm_bindings
#endif

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::patch_scores_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("patch_scores", &patch_scores_op<patch_scores_on_cpu>);
}

#ifdef MWM_WITH_CUDA
TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("patch_scores", &patch_scores_op<on_cuda::run>);
}
#endif
