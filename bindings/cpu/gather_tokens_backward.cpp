#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "common/check.h"
#include "common/token_args.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

at::Tensor gather_tokens_backward(const at::Tensor& grad, const at::Tensor& ids_keep,
                                  int64_t num_tokens) {
  check_token_rows(grad, "grad", "(B, K, C)");
  check_index_rows(ids_keep, "ids_keep", grad, "grad", "(B, K)");
  TORCH_CHECK_VALUE(ids_keep.size(1) == grad.size(1), "mwm: ids_keep has shape ",
                    shape_text(ids_keep), " but grad has shape ", shape_text(grad),
                    ": K must agree");
  TORCH_CHECK_VALUE(num_tokens >= 0, "mwm: num_tokens = ", num_tokens, ": must be non-negative");
  return translate_errors([&] {
    const auto ids = ids_keep.contiguous();
    const int64_t batch = grad.size(0), slots = ids.size(1), channels = grad.size(2);
    mwm::validate_keep_ids(ids.const_data_ptr<int64_t>(), batch, slots, num_tokens);
    auto grad_x = at::empty({batch, num_tokens, channels}, grad.options());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                    "gather_tokens_backward", [&] {
      using Acc = at::opmath_type<scalar_t>;
      const auto* src = grad.const_data_ptr<scalar_t>();
      auto* dst = grad_x.mutable_data_ptr<scalar_t>();
      const auto gs = token_strides_of(grad);
      const auto xs = token_strides_of(grad_x);
      const auto* rows = ids.const_data_ptr<int64_t>();
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        mwm::gather_tokens_backward<Acc>(src, gs, rows, slots, num_tokens, channels, dst, xs,
                                         begin, end);
      });
    });
    return grad_x;
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
