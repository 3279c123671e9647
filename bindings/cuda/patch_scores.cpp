#include <mwm_cuda.hpp>

#include "common/check.h"
#include "common/parse.h"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace mwm_bindings {
namespace gpu {

at::Tensor patch_scores(const at::Tensor& heatmaps, at::IntArrayRef grid_sizes,
                        c10::string_view reduction, double threshold, c10::string_view combine,
                        const std::optional<at::Tensor>& prompt_weights,
                        c10::string_view nan_policy) {
  const auto grid_vec = check_grid(grid_sizes);
  const int64_t spatial = static_cast<int64_t>(grid_vec.size());
  check_dtype(heatmaps, "heatmaps", at::kFloat);
  TORCH_CHECK_VALUE(heatmaps.dim() == 2 + spatial, "mwm: heatmaps must be (B, K, ",
                    spatial == 3 ? "D, " : "", "H, W) for a ", spatial, "D grid, got shape ",
                    shape_text(heatmaps));
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  return translate_errors([&] {
    mwm::pooling_request request;
    request.grid = make_grid(grid_vec);
    request.batch = heatmaps.size(0);
    request.prompts = heatmaps.size(1);
    request.shape.depth = spatial == 3 ? heatmaps.size(2) : 1;
    request.shape.height = heatmaps.size(-2);
    request.shape.width = heatmaps.size(-1);
    request.options.reduction = parse_reduction(reduction);
    request.options.threshold = static_cast<float>(threshold);
    request.options.non_finite = parse_nan_policy(nan_policy);
    request.combine = parse_combine(combine);
    at::Tensor weights;
    if (request.combine == mwm::prompt_combine::weighted_sum) {
      TORCH_CHECK_VALUE(prompt_weights.has_value(),
                        "mwm: prompt_weights = None: combine='weighted_sum' needs one weight per "
                        "prompt");
      TORCH_CHECK_VALUE(prompt_weights->numel() == request.prompts, "mwm: prompt_weights size = ",
                        prompt_weights->numel(), ": must equal the number of prompts (",
                        request.prompts, ")");
      // On the device; the kernel rejects non-finite weights as validate_prompt_weights does.
      weights = prompt_weights->to(heatmaps.device(), at::kFloat, /*non_blocking=*/true)
                    .contiguous();
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
  });
}

}  // namespace gpu
}  // namespace mwm_bindings
