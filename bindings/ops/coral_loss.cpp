// The CORAL op's kernels: coral_loss and _coral_loss_backward are mwm::tensors::coral_loss /
// coral_loss_backward (coral_math.hpp over ATen) on every device, so on CUDA the products are
// cuBLAS GEMMs on the current stream. The CPU kernel adds the finiteness check, which costs
// nothing while the loss is finite; on CUDA nothing waits for the device, and non-finite
// features give NaN/Inf results instead of the CPU's ValueError. Schemas: ops/coral_loss.h.
#include <torch/library.h>

#include <mwm/torch.hpp>

#include <optional>

#include "ops/coral_loss.h"

#ifdef MWM_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#endif

namespace mwm_bindings {
namespace {
namespace on_cpu {

coral_pair forward(const at::Tensor& x, const at::Tensor& y) {
  auto result = mwm::tensors::coral_loss(x, y, /*check_finite=*/true);
  return {result.loss, result.cov_diff};
}

coral_pair backward(const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
                    const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  return mwm::tensors::coral_loss_backward(grad_loss, grad_cov_diff.value_or(at::Tensor()), x, y,
                                           cov_diff);
}

}  // namespace on_cpu

#ifdef MWM_WITH_CUDA
namespace on_cuda {

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

}  // namespace on_cuda
#endif
}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) {
  m.def(mwm_bindings::coral_loss_schema);
  m.def(mwm_bindings::coral_loss_backward_schema);
}

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("coral_loss", &coral_loss_op<on_cpu::forward>);
  m.impl("_coral_loss_backward", &coral_loss_backward_op<on_cpu::backward>);
}

#ifdef MWM_WITH_CUDA
TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("coral_loss", &coral_loss_op<on_cuda::forward>);
  m.impl("_coral_loss_backward", &coral_loss_backward_op<on_cuda::backward>);
}
#endif
