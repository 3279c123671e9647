// The CUDA kernels of gather_tokens, restore_tokens and their private backwards (one file: the
// four launchers share their shape; the checks are the CPU impls', in ops/tokens.h). The ids
// are validated by the kernels.
#include <torch/library.h>

#include "cuda/device.h"
#include "ops/tokens.h"

namespace mwm_bindings {
namespace {

at::Tensor gather(const token_call& call) {
  const at::Tensor& x = call.rows;
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty({call.batch, call.slots, call.channels}, x.options());
  mwm::gpu::gather_tokens_async(float_type_of(x.scalar_type()), x.const_data_ptr(),
                                token_strides_of(x), call.ids.const_data_ptr<int64_t>(), call.batch,
                                call.slots, call.num_tokens, call.channels, out.mutable_data_ptr(),
                                token_strides_of(out), current_stream());
  return out;
}

at::Tensor gather_backward(const token_call& call) {
  const at::Tensor& grad = call.rows;
  const c10::cuda::CUDAGuard guard(grad.device());
  auto grad_x = at::empty({call.batch, call.num_tokens, call.channels}, grad.options());
  const std::size_t bytes =
      mwm::gpu::gather_tokens_backward_workspace_bytes(call.batch, call.slots, call.num_tokens);
  auto workspace = workspace_like(grad, bytes);
  mwm::gpu::gather_tokens_backward_async(float_type_of(grad.scalar_type()), grad.const_data_ptr(),
                                         token_strides_of(grad), call.ids.const_data_ptr<int64_t>(),
                                         call.batch, call.slots, call.num_tokens, call.channels,
                                         grad_x.mutable_data_ptr(), token_strides_of(grad_x),
                                         workspace.mutable_data_ptr(), bytes, current_stream());
  return grad_x;
}

at::Tensor restore(const token_call& call) {
  const at::Tensor& x_vis = call.rows;
  const at::Tensor& mask_token = *call.mask_token;
  const c10::cuda::CUDAGuard guard(x_vis.device());
  auto out = at::empty({call.batch, call.num_tokens, call.channels}, x_vis.options());
  mwm::gpu::restore_tokens_async(
      float_type_of(x_vis.scalar_type()), x_vis.const_data_ptr(), token_strides_of(x_vis),
      call.ids.const_data_ptr<int64_t>(), optional_data(call.visible), call.batch, call.slots,
      call.num_tokens, call.channels, mask_token.const_data_ptr(), mask_token.stride(0),
      out.mutable_data_ptr(), token_strides_of(out), current_stream());
  return out;
}

std::tuple<at::Tensor, at::Tensor> restore_backward(const token_call& call) {
  const at::Tensor& grad = call.rows;
  const c10::cuda::CUDAGuard guard(grad.device());
  auto grad_vis = at::empty({call.batch, call.slots, call.channels}, grad.options());
  auto grad_token = at::empty({call.channels}, grad.options());
  const std::size_t bytes = mwm::gpu::restore_tokens_backward_workspace_bytes(
      call.batch, call.slots, call.num_tokens, call.channels);
  auto workspace = workspace_like(grad, bytes);
  mwm::gpu::restore_tokens_backward_async(
      float_type_of(grad.scalar_type()), grad.const_data_ptr(), token_strides_of(grad),
      call.ids.const_data_ptr<int64_t>(), optional_data(call.visible), call.batch, call.slots,
      call.num_tokens, call.channels, grad_vis.mutable_data_ptr(), token_strides_of(grad_vis),
      grad_token.mutable_data_ptr(), workspace.mutable_data_ptr(), bytes, current_stream());
  return std::make_tuple(grad_vis, grad_token);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("gather_tokens", &gather_tokens_op<gather>);
  m.impl("_gather_tokens_backward", &gather_tokens_backward_op<gather_backward>);
  m.impl("restore_tokens", &restore_tokens_op<restore>);
  m.impl("_restore_tokens_backward", &restore_tokens_backward_op<restore_backward>);
}
