// Defines patch_scores and its CPU kernel (ops/patch_scores.h: mwm::tensors::patch_scores).
#include <torch/library.h>

#include "ops/patch_scores.h"

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::patch_scores_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("patch_scores", &patch_scores_op<patch_scores_on_cpu>);
}
