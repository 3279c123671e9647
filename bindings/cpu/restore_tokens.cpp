// Defines restore_tokens and its CPU kernel: the ids validated, then mwm::restore_tokens per
// sample.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/tokens.h"

namespace mwm_bindings {
namespace {

at::Tensor run(const token_call& call) {
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

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::restore_tokens_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("restore_tokens", &mwm_bindings::restore_tokens_op<mwm_bindings::run>);
}
