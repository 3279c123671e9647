// Defines regions_from_thresholds and regions_from_quantiles and their CPU kernels.
#include <torch/library.h>

#include <mwm/torch.hpp>

#include "ops/regions.h"

namespace mwm_bindings {
namespace {

at::Tensor from_thresholds(const regions_call& call) {
  return mwm::tensors::regions_from_thresholds(
      call.scores, std::vector<float>(call.cuts.begin(), call.cuts.end()), call.non_finite);
}

at::Tensor from_quantiles(const regions_call& call) {
  return mwm::tensors::regions_from_quantiles(call.scores, call.cuts, call.non_finite);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) {
  m.def(mwm_bindings::regions_from_thresholds_schema);
  m.def(mwm_bindings::regions_from_quantiles_schema);
}

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("regions_from_thresholds", &regions_op<from_thresholds>);
  m.impl("regions_from_quantiles", &regions_op<from_quantiles>);
}
