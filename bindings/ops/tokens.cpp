// The token ops' kernels: gather_tokens, restore_tokens and their private backwards on the CPU
// (the ids validated on the host, then the core's drivers of mwm/tokens.hpp per sample) and, in
// a CUDA build, their CUDA glue (the launchers of cuda/tokens.cu on the current stream; the ids
// are validated by the kernels). The schemas and the checks both backends share: ops/tokens.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/tokens.h"

#ifdef MWM_WITH_CUDA
#include "cuda/device.h"
#endif

namespace mwm_bindings {
namespace {
namespace on_cpu {

at::Tensor gather(const token_call& call) {
  const at::Tensor& x = call.rows;
  mwm::validate_keep_ids(call.ids.const_data_ptr<int64_t>(), call.batch, call.slots,
                         call.num_tokens);
  auto out = at::empty({call.batch, call.slots, call.channels}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gather_tokens", [&] {
    const auto* src = x.const_data_ptr<scalar_t>();
    auto* dst = out.mutable_data_ptr<scalar_t>();
    const auto xs = token_strides_of(x);
    const auto os = token_strides_of(out);
    const auto* rows = call.ids.const_data_ptr<int64_t>();
    at::parallel_for(0, call.batch, 1, [&](int64_t begin, int64_t end) {
      mwm::gather_tokens(src, xs, rows, call.slots, call.channels, dst, os, begin, end);
    });
  });
  return out;
}

at::Tensor gather_backward(const token_call& call) {
  const at::Tensor& grad = call.rows;
  mwm::validate_keep_ids(call.ids.const_data_ptr<int64_t>(), call.batch, call.slots,
                         call.num_tokens);
  auto grad_x = at::empty({call.batch, call.num_tokens, call.channels}, grad.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "gather_tokens_backward", [&] {
        using Acc = at::opmath_type<scalar_t>;
        const auto* src = grad.const_data_ptr<scalar_t>();
        auto* dst = grad_x.mutable_data_ptr<scalar_t>();
        const auto gs = token_strides_of(grad);
        const auto xs = token_strides_of(grad_x);
        const auto* rows = call.ids.const_data_ptr<int64_t>();
        at::parallel_for(0, call.batch, 1, [&](int64_t begin, int64_t end) {
          mwm::gather_tokens_backward<Acc>(src, gs, rows, call.slots, call.num_tokens,
                                           call.channels, dst, xs, begin, end);
        });
      });
  return grad_x;
}

at::Tensor restore(const token_call& call) {
  const at::Tensor& x_vis = call.rows;
  const at::Tensor& mask_token = *call.mask_token;
  mwm::validate_restore_ids(call.ids.const_data_ptr<int64_t>(), optional_data(call.visible),
                            call.batch, call.num_tokens, call.slots);
  auto out = at::empty({call.batch, call.num_tokens, call.channels}, x_vis.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x_vis.scalar_type(), "restore_tokens", [&] {
        const auto* src = x_vis.const_data_ptr<scalar_t>();
        const auto* token = mask_token.const_data_ptr<scalar_t>();
        auto* dst = out.mutable_data_ptr<scalar_t>();
        const auto vs = token_strides_of(x_vis);
        const auto os = token_strides_of(out);
        const auto* rows = call.ids.const_data_ptr<int64_t>();
        const auto* counts = optional_data(call.visible);
        at::parallel_for(0, call.batch, 1, [&](int64_t begin, int64_t end) {
          mwm::restore_tokens(src, vs, rows, counts, call.slots, call.num_tokens, call.channels,
                              token, mask_token.stride(0), dst, os, begin, end);
        });
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor> restore_backward(const token_call& call) {
  const at::Tensor& grad = call.rows;
  const int64_t batch = call.batch, channels = call.channels;
  mwm::validate_restore_ids(call.ids.const_data_ptr<int64_t>(), optional_data(call.visible), batch,
                            call.num_tokens, call.slots);
  auto grad_vis = at::empty({batch, call.slots, channels}, grad.options());
  auto grad_token = at::empty({channels}, grad.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "restore_tokens_backward", [&] {
        using Acc = at::opmath_type<scalar_t>;
        const auto acc_type = c10::CppTypeToScalarType<Acc>::value;
        auto partials = at::empty({batch, channels}, grad.options().dtype(acc_type));
        auto token_sum = at::empty({channels}, grad.options().dtype(acc_type));
        const auto* src = grad.const_data_ptr<scalar_t>();
        auto* dst = grad_vis.mutable_data_ptr<scalar_t>();
        auto* per_sample = partials.mutable_data_ptr<Acc>();
        const auto gs = token_strides_of(grad);
        const auto vs = token_strides_of(grad_vis);
        const auto* rows = call.ids.const_data_ptr<int64_t>();
        const auto* counts = optional_data(call.visible);
        at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
          mwm::restore_tokens_backward(src, gs, rows, counts, call.slots, call.num_tokens, channels,
                                       dst, vs, per_sample, begin, end);
        });
        mwm::steps::sum_mask_partials(per_sample, batch, channels,
                                      token_sum.mutable_data_ptr<Acc>());
        grad_token.copy_(token_sum);
      });
  return std::make_tuple(grad_vis, grad_token);
}

}  // namespace on_cpu

#ifdef MWM_WITH_CUDA
namespace on_cuda {

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

}  // namespace on_cuda
#endif
}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) {
  m.def(mwm_bindings::gather_tokens_schema);
  m.def(mwm_bindings::gather_tokens_backward_schema);
  m.def(mwm_bindings::restore_tokens_schema);
  m.def(mwm_bindings::restore_tokens_backward_schema);
}

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("gather_tokens", &gather_tokens_op<on_cpu::gather>);
  m.impl("_gather_tokens_backward", &gather_tokens_backward_op<on_cpu::gather_backward>);
  m.impl("restore_tokens", &restore_tokens_op<on_cpu::restore>);
  m.impl("_restore_tokens_backward", &restore_tokens_backward_op<on_cpu::restore_backward>);
}

#ifdef MWM_WITH_CUDA
TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("gather_tokens", &gather_tokens_op<on_cuda::gather>);
  m.impl("_gather_tokens_backward", &gather_tokens_backward_op<on_cuda::gather_backward>);
  m.impl("restore_tokens", &restore_tokens_op<on_cuda::restore>);
  m.impl("_restore_tokens_backward", &restore_tokens_backward_op<on_cuda::restore_backward>);
}
#endif
