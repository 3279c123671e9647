// The CUDA kernels of pack_tokens, unpack_tokens and their private backwards (the checks are the
// CPU impls', in ops/pack_tokens.h; ids and offsets are validated by the kernels). pack_tokens
// reads the total back to the host to size its output: the one synchronization of these ops.
#include <torch/library.h>

#include "cuda/device.h"
#include "ops/pack_tokens.h"
#include "pack_tokens.hpp"

namespace mwm_bindings {
// device.h's helpers live in mwm_bindings::gpu before the bindings restructure and in
// mwm_bindings after it; this file compiles in both layouts.
namespace gpu {}
using namespace gpu;

namespace {

std::tuple<at::Tensor, at::Tensor> pack(const pack_call& call) {
  const at::Tensor& x = call.rows;
  const c10::cuda::CUDAGuard guard(x.device());
  auto cu = at::empty({call.batch + 1}, call.ids.options().dtype(at::kInt));
  mwm::gpu::pack_offsets_async(call.ids.const_data_ptr<int64_t>(), call.batch, call.slots,
                               call.num_tokens, cu.mutable_data_ptr<std::int32_t>(),
                               current_stream());
  const int64_t total = cu[call.batch].item<int64_t>();  // synchronizes: the size is data
  auto packed = at::empty({total, call.channels}, x.options());
  mwm::gpu::pack_tokens_async(
      float_type_of(x.scalar_type()), x.const_data_ptr(), rows_strides_of(x),
      call.ids.const_data_ptr<int64_t>(), cu.const_data_ptr<std::int32_t>(), call.batch, call.slots,
      call.channels, total, packed.mutable_data_ptr(), packed_strides_of(packed), current_stream());
  return std::make_tuple(packed, cu);
}

at::Tensor pack_backward(const pack_call& call) {
  const at::Tensor& grad = call.rows;
  const c10::cuda::CUDAGuard guard(grad.device());
  auto grad_x = at::empty({call.batch, call.num_tokens, call.channels}, grad.options());
  mwm::gpu::pack_tokens_backward_async(
      float_type_of(grad.scalar_type()), grad.const_data_ptr(), packed_strides_of(grad),
      call.ids.const_data_ptr<int64_t>(), call.cu_seqlens.const_data_ptr<std::int32_t>(),
      call.batch, call.slots, call.num_tokens, call.channels, grad_x.mutable_data_ptr(),
      rows_strides_of(grad_x), current_stream());
  return grad_x;
}

at::Tensor unpack(const pack_call& call) {
  const at::Tensor& packed = call.rows;
  const at::Tensor& mask_token = *call.mask_token;
  const c10::cuda::CUDAGuard guard(packed.device());
  auto out = at::empty({call.batch, call.num_tokens, call.channels}, packed.options());
  mwm::gpu::unpack_tokens_async(
      float_type_of(packed.scalar_type()), packed.const_data_ptr(), packed_strides_of(packed),
      call.cu_seqlens.const_data_ptr<std::int32_t>(), call.ids.const_data_ptr<int64_t>(),
      call.batch, call.num_tokens, call.channels, call.num_rows, mask_token.const_data_ptr(),
      mask_token.stride(0), out.mutable_data_ptr(), rows_strides_of(out), current_stream());
  return out;
}

std::tuple<at::Tensor, at::Tensor> unpack_backward(const pack_call& call) {
  const at::Tensor& grad = call.rows;
  const c10::cuda::CUDAGuard guard(grad.device());
  auto grad_packed = at::empty({call.num_rows, call.channels}, grad.options());
  auto grad_token = at::empty({call.channels}, grad.options());
  const std::size_t bytes =
      mwm::gpu::unpack_tokens_backward_workspace_bytes(call.batch, call.channels);
  auto workspace = workspace_like(grad, bytes);
  mwm::gpu::unpack_tokens_backward_async(
      float_type_of(grad.scalar_type()), grad.const_data_ptr(), rows_strides_of(grad),
      call.cu_seqlens.const_data_ptr<std::int32_t>(), call.ids.const_data_ptr<int64_t>(),
      call.batch, call.num_tokens, call.channels, call.num_rows, grad_packed.mutable_data_ptr(),
      packed_strides_of(grad_packed), grad_token.mutable_data_ptr(), workspace.mutable_data_ptr(),
      bytes, current_stream());
  return std::make_tuple(grad_packed, grad_token);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  m.impl("pack_tokens", &mwm_bindings::pack_tokens_op<mwm_bindings::pack>);
  m.impl("_pack_tokens_backward",
         &mwm_bindings::pack_tokens_backward_op<mwm_bindings::pack_backward>);
  m.impl("unpack_tokens", &mwm_bindings::unpack_tokens_op<mwm_bindings::unpack>);
  m.impl("_unpack_tokens_backward",
         &mwm_bindings::unpack_tokens_backward_op<mwm_bindings::unpack_backward>);
}
