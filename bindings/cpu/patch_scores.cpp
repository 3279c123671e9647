#include <ATen/Parallel.h>

#include "common/check.h"
#include "common/parse.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

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
    if (request.combine == mwm::prompt_combine::weighted_sum) {
      TORCH_CHECK_VALUE(prompt_weights.has_value(),
                        "mwm: prompt_weights = None: combine='weighted_sum' needs one weight per "
                        "prompt");
      const auto weights = prompt_weights->to(at::kFloat).contiguous().cpu();
      request.prompt_weights.assign(weights.data_ptr<float>(),
                                    weights.data_ptr<float>() + weights.numel());
    }
    mwm::validate_heatmap_shape(request.shape);
    mwm::validate_prompt_weights(request.prompts, request.combine, request.prompt_weights);
    const auto input = heatmaps.contiguous();
    auto scores = at::empty({request.batch, request.grid.num_patches()}, heatmaps.options());
    if (request.batch == 0) return scores;
    mwm::validate_no_non_finite(input.data_ptr<float>(), input.numel(), "heatmaps",
                                request.options.non_finite);
    // The core batches over samples; run it per chunk on torch's pool.
    const int64_t pixels = request.shape.num_pixels() * request.prompts;
    const int64_t n = request.grid.num_patches();
    at::parallel_for(0, request.batch, 1, [&](int64_t begin, int64_t end) {
      mwm::pooling_request chunk = request;
      chunk.batch = end - begin;
      chunk.threads = 1;
      chunk.options.non_finite = mwm::nan_policy::zero;  // validated above
      mwm::heatmaps_to_scores(chunk, input.data_ptr<float>() + begin * pixels,
                              scores.data_ptr<float>() + begin * n);
    });
    return scores;
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
