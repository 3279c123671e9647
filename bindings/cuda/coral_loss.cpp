// coral_loss and coral_loss_backward on CUDA: the ATen composition of common/coral_aten.h on
// the inputs' device, so the covariances and gradients are cuBLAS GEMMs on the current stream.
// Nothing waits for the device: non-finite features give NaN/Inf results instead of the CPU
// kernel's ValueError.
#include <c10/cuda/CUDAGuard.h>

#include "common/coral_aten.h"
#include "cuda/ops.h"

namespace mwm_bindings {
namespace gpu {

std::tuple<at::Tensor, at::Tensor> coral_loss(const at::Tensor& x, const at::Tensor& y) {
  check_coral_features(x, y);
  const c10::cuda::CUDAGuard guard(x.device());
  return coral_loss_aten(x, y);
}

std::tuple<at::Tensor, at::Tensor> coral_loss_backward(const at::Tensor& grad_loss,
                                                       const std::optional<at::Tensor>& grad_cov_diff,
                                                       const at::Tensor& x, const at::Tensor& y,
                                                       const at::Tensor& cov_diff) {
  check_coral_backward_args(grad_loss, grad_cov_diff, x, y, cov_diff);
  const c10::cuda::CUDAGuard guard(x.device());
  return coral_loss_backward_aten(grad_loss, grad_cov_diff, x, y, cov_diff);
}

}  // namespace gpu
}  // namespace mwm_bindings
