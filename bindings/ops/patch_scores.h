// patch_scores: heatmaps (B, K, [D,] H, W) float32 -> patch scores (B, N) float32. The schema,
// the argument parsing both backends share, and the op entry that runs a backend on the parsed
// call (cpu/patch_scores.cpp, cuda/patch_scores.cpp).
#pragma once

#include <ATen/ATen.h>

#include <mwm/masking.hpp>
#include <mwm/torch.hpp>

#include <optional>
#include <vector>

#include "common/check.h"
#include "common/parse.h"

namespace mwm_bindings {

inline constexpr char patch_scores_schema[] =
    "patch_scores(Tensor heatmaps, int[] grid, str reduction, float threshold, str combine, "
    "Tensor? prompt_weights, str nan_policy) -> Tensor";

inline mwm::pool_reduction parse_reduction(c10::string_view v) {
  return parse_choice<mwm::pool_reduction>("reduction", v,
                                           {{"mean", mwm::pool_reduction::mean},
                                            {"max", mwm::pool_reduction::max},
                                            {"fraction", mwm::pool_reduction::fraction},
                                            {"nearest", mwm::pool_reduction::nearest}});
}

inline mwm::prompt_combine parse_combine(c10::string_view v) {
  return parse_choice<mwm::prompt_combine>(
      "combine", v,
      {{"max", mwm::prompt_combine::max}, {"weighted_sum", mwm::prompt_combine::weighted_sum}});
}

struct patch_scores_call {
  explicit patch_scores_call(const at::Tensor& given) : heatmaps(given) {}
  const at::Tensor& heatmaps;
  std::vector<int64_t> grid;
  mwm::pool_options options;
  mwm::prompt_combine combine = mwm::prompt_combine::max;
  const at::Tensor* prompt_weights = nullptr;  // set for weighted_sum only
};

// The CPU computation: the weights, wherever they are, read into a host vector. The CUDA kernel
// runs it too when the heatmaps are on the CPU (the dispatcher picks the CUDA kernel when only
// prompt_weights is a CUDA tensor), so a mix gives what the CPU op gives for CPU weights.
inline at::Tensor patch_scores_on_cpu(const patch_scores_call& call) {
  std::vector<float> weights;
  if (call.prompt_weights != nullptr) {
    const auto w = call.prompt_weights->to(at::kFloat).contiguous().cpu();
    weights.assign(w.const_data_ptr<float>(), w.const_data_ptr<float>() + w.numel());
  }
  return mwm::tensors::patch_scores(call.heatmaps, make_grid(call.grid), call.options, call.combine,
                                    weights);
}

// The op for one backend: `Run` computes the scores of a checked call.
template <at::Tensor (*Run)(const patch_scores_call&)>
at::Tensor patch_scores_op(const at::Tensor& heatmaps, at::IntArrayRef grid,
                           c10::string_view reduction, double threshold, c10::string_view combine,
                           const std::optional<at::Tensor>& prompt_weights,
                           c10::string_view nan_policy) {
  patch_scores_call call(heatmaps);
  call.grid = check_grid(grid);
  check_dtype(heatmaps, "heatmaps", at::kFloat);
  return translate_errors([&] {
    call.options.reduction = parse_reduction(reduction);
    call.options.threshold = static_cast<float>(threshold);
    call.options.non_finite = parse_nan_policy(nan_policy);
    call.combine = parse_combine(combine);
    if (call.combine == mwm::prompt_combine::weighted_sum) {
      TORCH_CHECK_VALUE(prompt_weights.has_value(),
                        "mwm: prompt_weights = None: combine='weighted_sum' needs one weight per "
                        "prompt");
      call.prompt_weights = &*prompt_weights;
    }
    return Run(call);
  });
}

}  // namespace mwm_bindings
