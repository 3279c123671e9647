// coral_loss and coral_loss_backward on CUDA: mwm::tensors::coral_loss / coral_loss_backward,
// the CPU ops' code (coral_math.hpp over ATen), so the products are cuBLAS GEMMs on the current
// stream. Nothing waits for the device: non-finite features give NaN/Inf results instead of the
// CPU op's ValueError, which reads the loss back.
#include <c10/cuda/CUDAGuard.h>

#include <mwm/torch.hpp>

#include "common/check.h"
#include "common/coral_args.h"
#include "cuda/ops.h"

namespace mwm_bindings {
namespace gpu {

std::tuple<at::Tensor, at::Tensor> coral_loss(const at::Tensor& x, const at::Tensor& y) {
  check_coral_features(x, y);
  const c10::cuda::CUDAGuard guard(x.device());
  auto result = mwm::tensors::coral_loss(x, y, /*check_finite=*/false);
  return {result.loss, result.cov_diff};
}

std::tuple<at::Tensor, at::Tensor> coral_loss_backward(
    const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  check_coral_backward_args(grad_loss, grad_cov_diff, x, y, cov_diff);
  const c10::cuda::CUDAGuard guard(x.device());
  return mwm::tensors::coral_loss_backward(grad_loss, grad_cov_diff.value_or(at::Tensor()), x, y,
                                           cov_diff);
}

}  // namespace gpu
}  // namespace mwm_bindings
