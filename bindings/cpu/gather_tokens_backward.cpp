// Defines _gather_tokens_backward (the gradient of gather_tokens for x) and its CPU kernel:
// gradients scattered back per sample, repeats accumulated.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/tokens.h"

namespace mwm_bindings {
namespace {

at::Tensor run(const token_call& call) {
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

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::gather_tokens_backward_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("_gather_tokens_backward", &mwm_bindings::gather_tokens_backward_op<mwm_bindings::run>);
}
