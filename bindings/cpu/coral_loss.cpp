// Defines coral_loss and its CPU kernel: mwm::tensors::coral_loss (coral_math.hpp over torch's
// BLAS), the same code as the CUDA kernel, plus the finiteness check that costs nothing while the
// loss is finite.
#include <torch/library.h>

#include <mwm/torch.hpp>

#include "ops/coral_loss.h"

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::coral_loss_schema); }

namespace mwm_bindings {
namespace {

coral_pair run(const at::Tensor& x, const at::Tensor& y) {
  auto result = mwm::tensors::coral_loss(x, y, /*check_finite=*/true);
  return {result.loss, result.cov_diff};
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("coral_loss", &mwm_bindings::coral_loss_op<mwm_bindings::run>);
}
