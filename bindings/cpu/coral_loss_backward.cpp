// coral_loss_backward on the CPU: mwm::tensors::coral_loss_backward, the CUDA op's code.
#include <mwm/torch.hpp>

#include <optional>
#include <tuple>

#include "common/check.h"
#include "common/coral_args.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

std::tuple<at::Tensor, at::Tensor> coral_loss_backward(
    const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  check_coral_backward_args(grad_loss, grad_cov_diff, x, y, cov_diff);
  return translate_errors([&] {
    return mwm::tensors::coral_loss_backward(grad_loss, grad_cov_diff.value_or(at::Tensor()), x, y,
                                             cov_diff);
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
