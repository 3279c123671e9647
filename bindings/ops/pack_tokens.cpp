// The packed-token ops' kernels: pack_tokens, unpack_tokens and their private backwards on the
// CPU (the ids and offsets validated on the host, then the core's drivers of mwm/tokens.hpp per
// sample) and, in a CUDA build, their CUDA glue (cuda/pack_tokens.cu's launchers; ids and offsets
// are validated by the kernels; pack_tokens reads the total back to the host to size its output,
// the one synchronization of these ops). Schemas and shared checks: ops/pack_tokens.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "ops/pack_tokens.h"

#ifdef MWM_WITH_CUDA
#include "cuda/device.h"
#include "pack_tokens.hpp"
#endif

namespace mwm_bindings {
namespace {
namespace on_cpu {

// The offsets ids_keep gives, checked against the cu_seqlens a backward receives.
void require_offsets_of(const token_call& call) {
  std::vector<std::int32_t> expected(static_cast<std::size_t>(call.batch + 1));
  mwm::packed_offsets(call.ids.const_data_ptr<int64_t>(), call.batch, call.slots, call.num_tokens,
                      expected.data());
  const auto* given = call.cu_seqlens.const_data_ptr<std::int32_t>();
  for (int64_t b = 0; b <= call.batch; ++b)
    TORCH_CHECK_VALUE(given[b] == expected[b], "mwm: cu_seqlens[", b, "] = ", given[b],
                      " but ids_keep gives ", expected[b], ": pass the pack's own cu_seqlens");
  TORCH_CHECK_VALUE(expected[call.batch] == call.num_rows, "mwm: grad has ", call.num_rows,
                    " rows but ids_keep packs ", expected[call.batch]);
}

std::tuple<at::Tensor, at::Tensor> pack(const token_call& call) {
  const at::Tensor& x = call.rows;
  auto cu = at::empty({call.batch + 1}, call.ids.options().dtype(at::kInt));
  auto* offsets = cu.mutable_data_ptr<std::int32_t>();
  const int64_t total = mwm::packed_offsets(call.ids.const_data_ptr<int64_t>(), call.batch,
                                            call.slots, call.num_tokens, offsets);
  auto packed = at::empty({total, call.channels}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pack_tokens", [&] {
    const auto* src = x.const_data_ptr<scalar_t>();
    auto* dst = packed.mutable_data_ptr<scalar_t>();
    const auto xs = token_strides_of(x);
    const auto ps = packed_strides_of(packed);
    const auto* ids = call.ids.const_data_ptr<int64_t>();
    at::parallel_for(0, call.batch, 1, [&](int64_t begin, int64_t end) {
      mwm::pack_tokens(src, xs, ids, call.slots, offsets, call.channels, dst, ps, begin, end);
    });
  });
  return std::make_tuple(packed, cu);
}

at::Tensor pack_backward(const token_call& call) {
  const at::Tensor& grad = call.rows;
  require_offsets_of(call);
  auto grad_x = at::empty({call.batch, call.num_tokens, call.channels}, grad.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "pack_tokens_backward", [&] {
        using Acc = at::opmath_type<scalar_t>;
        const auto* src = grad.const_data_ptr<scalar_t>();
        auto* dst = grad_x.mutable_data_ptr<scalar_t>();
        const auto gs = packed_strides_of(grad);
        const auto xs = token_strides_of(grad_x);
        const auto* ids = call.ids.const_data_ptr<int64_t>();
        const auto* offsets = call.cu_seqlens.const_data_ptr<std::int32_t>();
        at::parallel_for(0, call.batch, 1, [&](int64_t begin, int64_t end) {
          mwm::pack_tokens_backward<Acc>(src, gs, ids, call.slots, offsets, call.num_tokens,
                                         call.channels, dst, xs, begin, end);
        });
      });
  return grad_x;
}

void validate_unpack(const token_call& call) {
  mwm::validate_offsets(call.cu_seqlens.const_data_ptr<std::int32_t>(), call.batch, call.num_rows,
                        call.num_tokens);
  mwm::validate_restore_ids(call.ids.const_data_ptr<int64_t>(), nullptr, call.batch,
                            call.num_tokens, 0);
}

at::Tensor unpack(const token_call& call) {
  const at::Tensor& packed = call.rows;
  validate_unpack(call);
  const at::Tensor& mask_token = *call.mask_token;
  auto out = at::empty({call.batch, call.num_tokens, call.channels}, packed.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, packed.scalar_type(), "unpack_tokens", [&] {
        const auto* src = packed.const_data_ptr<scalar_t>();
        const auto* token = mask_token.const_data_ptr<scalar_t>();
        auto* dst = out.mutable_data_ptr<scalar_t>();
        const auto ps = packed_strides_of(packed);
        const auto os = token_strides_of(out);
        const auto* ids = call.ids.const_data_ptr<int64_t>();
        const auto* offsets = call.cu_seqlens.const_data_ptr<std::int32_t>();
        at::parallel_for(0, call.batch, 1, [&](int64_t begin, int64_t end) {
          mwm::unpack_tokens(src, ps, offsets, ids, call.num_tokens, call.channels, token,
                             mask_token.stride(0), dst, os, begin, end);
        });
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor> unpack_backward(const token_call& call) {
  const at::Tensor& grad = call.rows;
  validate_unpack(call);
  auto grad_packed = at::empty({call.num_rows, call.channels}, grad.options());
  auto grad_token = at::empty({call.channels}, grad.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "unpack_tokens_backward", [&] {
        using Acc = at::opmath_type<scalar_t>;
        std::vector<Acc> partials(static_cast<std::size_t>(call.batch * call.channels));
        const auto* src = grad.const_data_ptr<scalar_t>();
        auto* dst = grad_packed.mutable_data_ptr<scalar_t>();
        const auto gs = token_strides_of(grad);
        const auto ps = packed_strides_of(grad_packed);
        const auto* ids = call.ids.const_data_ptr<int64_t>();
        const auto* offsets = call.cu_seqlens.const_data_ptr<std::int32_t>();
        at::parallel_for(0, call.batch, 1, [&](int64_t begin, int64_t end) {
          mwm::unpack_tokens_backward<Acc>(src, gs, offsets, ids, call.num_tokens, call.channels,
                                           dst, ps, partials.data(), begin, end);
        });
        std::vector<Acc> total(static_cast<std::size_t>(call.channels));
        mwm::steps::sum_mask_partials(partials.data(), call.batch, call.channels, total.data());
        auto* token = grad_token.mutable_data_ptr<scalar_t>();
        for (int64_t c = 0; c < call.channels; ++c) token[c] = static_cast<scalar_t>(total[c]);
      });
  return std::make_tuple(grad_packed, grad_token);
}

}  // namespace on_cpu

#ifdef MWM_WITH_CUDA
namespace on_cuda {

std::tuple<at::Tensor, at::Tensor> pack(const token_call& call) {
  const at::Tensor& x = call.rows;
  const c10::cuda::CUDAGuard guard(x.device());
  auto cu = at::empty({call.batch + 1}, call.ids.options().dtype(at::kInt));
  mwm::gpu::pack_offsets_async(call.ids.const_data_ptr<int64_t>(), call.batch, call.slots,
                               call.num_tokens, cu.mutable_data_ptr<std::int32_t>(),
                               current_stream());
  const int64_t total = cu[call.batch].item<int64_t>();  // synchronizes: the size is data
  auto packed = at::empty({total, call.channels}, x.options());
  mwm::gpu::pack_tokens_async(
      float_type_of(x.scalar_type()), x.const_data_ptr(), token_strides_of(x),
      call.ids.const_data_ptr<int64_t>(), cu.const_data_ptr<std::int32_t>(), call.batch, call.slots,
      call.channels, total, packed.mutable_data_ptr(), packed_strides_of(packed), current_stream());
  return std::make_tuple(packed, cu);
}

at::Tensor pack_backward(const token_call& call) {
  const at::Tensor& grad = call.rows;
  const c10::cuda::CUDAGuard guard(grad.device());
  auto grad_x = at::empty({call.batch, call.num_tokens, call.channels}, grad.options());
  mwm::gpu::pack_tokens_backward_async(
      float_type_of(grad.scalar_type()), grad.const_data_ptr(), packed_strides_of(grad),
      call.ids.const_data_ptr<int64_t>(), call.cu_seqlens.const_data_ptr<std::int32_t>(),
      call.batch, call.slots, call.num_tokens, call.channels, grad_x.mutable_data_ptr(),
      token_strides_of(grad_x), current_stream());
  return grad_x;
}

at::Tensor unpack(const token_call& call) {
  const at::Tensor& packed = call.rows;
  const at::Tensor& mask_token = *call.mask_token;
  const c10::cuda::CUDAGuard guard(packed.device());
  auto out = at::empty({call.batch, call.num_tokens, call.channels}, packed.options());
  mwm::gpu::unpack_tokens_async(
      float_type_of(packed.scalar_type()), packed.const_data_ptr(), packed_strides_of(packed),
      call.cu_seqlens.const_data_ptr<std::int32_t>(), call.ids.const_data_ptr<int64_t>(),
      call.batch, call.num_tokens, call.channels, call.num_rows, mask_token.const_data_ptr(),
      mask_token.stride(0), out.mutable_data_ptr(), token_strides_of(out), current_stream());
  return out;
}

std::tuple<at::Tensor, at::Tensor> unpack_backward(const token_call& call) {
  const at::Tensor& grad = call.rows;
  const c10::cuda::CUDAGuard guard(grad.device());
  auto grad_packed = at::empty({call.num_rows, call.channels}, grad.options());
  auto grad_token = at::empty({call.channels}, grad.options());
  const std::size_t bytes =
      mwm::gpu::unpack_tokens_backward_workspace_bytes(call.batch, call.channels);
  auto workspace = workspace_like(grad, bytes);
  mwm::gpu::unpack_tokens_backward_async(
      float_type_of(grad.scalar_type()), grad.const_data_ptr(), token_strides_of(grad),
      call.cu_seqlens.const_data_ptr<std::int32_t>(), call.ids.const_data_ptr<int64_t>(),
      call.batch, call.num_tokens, call.channels, call.num_rows, grad_packed.mutable_data_ptr(),
      packed_strides_of(grad_packed), grad_token.mutable_data_ptr(), workspace.mutable_data_ptr(),
      bytes, current_stream());
  return std::make_tuple(grad_packed, grad_token);
}

}  // namespace on_cuda
#endif
}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) {
  m.def(mwm_bindings::pack_tokens_schema);
  m.def(mwm_bindings::pack_tokens_backward_schema);
  m.def(mwm_bindings::unpack_tokens_schema);
  m.def(mwm_bindings::unpack_tokens_backward_schema);
}

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("pack_tokens", &pack_tokens_op<on_cpu::pack>);
  m.impl("_pack_tokens_backward", &pack_tokens_backward_op<on_cpu::pack_backward>);
  m.impl("unpack_tokens", &unpack_tokens_op<on_cpu::unpack>);
  m.impl("_unpack_tokens_backward", &unpack_tokens_backward_op<on_cpu::unpack_backward>);
}

#ifdef MWM_WITH_CUDA
TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("pack_tokens", &pack_tokens_op<on_cuda::pack>);
  m.impl("_pack_tokens_backward", &pack_tokens_backward_op<on_cuda::pack_backward>);
  m.impl("unpack_tokens", &unpack_tokens_op<on_cuda::unpack>);
  m.impl("_unpack_tokens_backward", &unpack_tokens_backward_op<on_cuda::unpack_backward>);
}
#endif
