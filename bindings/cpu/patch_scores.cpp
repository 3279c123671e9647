// Defines patch_scores and its CPU kernel: mwm::tensors::patch_scores over the heatmaps.
#include <torch/library.h>

#include <mwm/torch.hpp>

#include "ops/patch_scores.h"

namespace mwm_bindings {
namespace {

at::Tensor run(const patch_scores_call& call) {
  std::vector<float> weights;
  if (call.prompt_weights != nullptr) {
    const auto w = call.prompt_weights->to(at::kFloat).contiguous().cpu();
    weights.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
  }
  return mwm::tensors::patch_scores(call.heatmaps, make_grid(call.grid), call.options,
                                    call.combine, weights);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::patch_scores_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("patch_scores", &mwm_bindings::patch_scores_op<mwm_bindings::run>);
}
