// Defines generate_masks and its CPU kernel: mwm::tensors::generate_masks over the request.
#include <torch/library.h>

#include <mwm/torch.hpp>

#include "ops/generate_masks.h"

namespace mwm_bindings {
namespace {

mask_outputs run(const mask_call& call) {
  const mwm::mask_request& request = call.request;
  const auto out =
      mwm::tensors::generate_masks(call.sample_index, request.grid, request.policy, request.seed,
                                   call.regions, call.scores, request.non_finite);
  return std::make_tuple(out.mask, out.num_masked, out.ids_shuffle, out.ids_restore, out.ids_keep,
                         out.ids_masked, out.noise);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::generate_masks_schema().c_str()); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("generate_masks", &mwm_bindings::generate_masks_op<mwm_bindings::run>);
}
