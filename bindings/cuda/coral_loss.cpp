// The CUDA kernels of coral_loss and _coral_loss_backward: mwm::tensors::coral_loss /
// coral_loss_backward, the CPU kernels' code (coral_math.hpp over ATen), so the products are
// cuBLAS GEMMs on the current stream. Nothing waits for the device: non-finite features give
// NaN/Inf results instead of the CPU kernel's ValueError, which reads the loss back.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <mwm/torch.hpp>

#include <optional>

#include "ops/coral_loss.h"

namespace mwm_bindings {
namespace {

coral_pair forward(const at::Tensor& x, const at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto result = mwm::tensors::coral_loss(x, y, /*check_finite=*/false);
  return {result.loss, result.cov_diff};
}

coral_pair backward(const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
                    const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  const c10::cuda::CUDAGuard guard(x.device());
  return mwm::tensors::coral_loss_backward(grad_loss, grad_cov_diff.value_or(at::Tensor()), x, y,
                                           cov_diff);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("coral_loss", &coral_loss_op<forward>);
  m.impl("_coral_loss_backward", &coral_loss_backward_op<backward>);
}
