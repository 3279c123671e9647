// Defines _restore_tokens_backward (the gradients of restore_tokens for x_vis and mask_token)
// and its CPU kernel: per-sample partial sums of the mask token's gradient, summed in batch
// order.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/tokens.h"

namespace mwm_bindings {
namespace {

std::tuple<at::Tensor, at::Tensor> run(const token_call& call) {
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
        mwm::sum_mask_partials(per_sample, batch, channels, token_sum.mutable_data_ptr<Acc>());
        grad_token.copy_(token_sum);
      });
  return std::make_tuple(grad_vis, grad_token);
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::restore_tokens_backward_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("_restore_tokens_backward", &mwm_bindings::restore_tokens_backward_op<mwm_bindings::run>);
}
