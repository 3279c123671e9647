// Defines _coral_loss_backward (the gradients of coral_loss for x and y) and its CPU kernel:
// mwm::tensors::coral_loss_backward, the CUDA kernel's code.
#include <torch/library.h>

#include <mwm/torch.hpp>

#include <optional>

#include "ops/coral_loss.h"

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::coral_loss_backward_schema); }

namespace mwm_bindings {
namespace {

coral_pair run(const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
               const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  return mwm::tensors::coral_loss_backward(grad_loss, grad_cov_diff.value_or(at::Tensor()), x, y,
                                           cov_diff);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("_coral_loss_backward", &mwm_bindings::coral_loss_backward_op<mwm_bindings::run>);
}
