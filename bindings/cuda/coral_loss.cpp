// The CUDA kernels of coral_loss and _coral_loss_backward: the ATen composition of
// ops/coral_aten.h on the inputs' device, so the covariances and gradients are cuBLAS GEMMs on
// the current stream. Nothing waits for the device: non-finite features give NaN/Inf results
// instead of the CPU kernel's ValueError.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "ops/coral_aten.h"

namespace mwm_bindings {
namespace {

coral_pair forward(const at::Tensor& x, const at::Tensor& y) {
  const c10::cuda::CUDAGuard guard(x.device());
  return coral_loss_aten(x, y);
}

coral_pair backward(const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
                    const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  const c10::cuda::CUDAGuard guard(x.device());
  return coral_loss_backward_aten(grad_loss, grad_cov_diff, x, y, cov_diff);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("coral_loss", &coral_loss_op<forward>);
  m.impl("_coral_loss_backward", &coral_loss_backward_op<backward>);
}
