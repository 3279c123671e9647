// Defines gather_tokens and its CPU kernel: the ids validated, then mwm::gather_tokens per sample.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/tokens.h"

namespace mwm_bindings {
namespace {

at::Tensor run(const token_call& call) {
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

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::gather_tokens_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("gather_tokens", &mwm_bindings::gather_tokens_op<mwm_bindings::run>);
}
