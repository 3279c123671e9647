#include <mwm/torch.hpp>

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
  check_dtype(heatmaps, "heatmaps", at::kFloat);
  return translate_errors([&] {
    mwm::pool_options options;
    options.reduction = parse_reduction(reduction);
    options.threshold = static_cast<float>(threshold);
    options.non_finite = parse_nan_policy(nan_policy);
    const auto mode = parse_combine(combine);
    std::vector<float> weights;
    if (mode == mwm::prompt_combine::weighted_sum) {
      TORCH_CHECK_VALUE(prompt_weights.has_value(),
                        "mwm: prompt_weights = None: combine='weighted_sum' needs one weight per "
                        "prompt");
      const auto w = prompt_weights->to(at::kFloat).contiguous().cpu();
      weights.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
    }
    return mwm::tensors::patch_scores(heatmaps, make_grid(grid_vec), options, mode, weights);
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
