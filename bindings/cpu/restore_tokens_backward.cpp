#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "common/check.h"
#include "common/token_args.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

std::tuple<at::Tensor, at::Tensor> restore_tokens_backward(
    const at::Tensor& grad, const at::Tensor& ids_restore,
    const std::optional<at::Tensor>& num_visible, int64_t num_slots) {
  check_token_rows(grad, "grad", "(B, N, C)");
  check_index_rows(ids_restore, "ids_restore", grad, "grad", "(B, N)");
  TORCH_CHECK_VALUE(ids_restore.size(1) == grad.size(1), "mwm: ids_restore has shape ",
                    shape_text(ids_restore), " but grad has shape ", shape_text(grad),
                    ": N must agree");
  const int64_t batch = grad.size(0), num_tokens = grad.size(1), channels = grad.size(2);
  TORCH_CHECK_VALUE(num_slots >= 0 && num_slots <= num_tokens, "mwm: num_slots = ", num_slots,
                    ": must lie in [0, N = ", num_tokens, "]");
  const auto visible = checked_visible(num_visible, grad, "grad");
  return translate_errors([&] {
    const auto ids = ids_restore.contiguous();
    mwm::validate_restore_ids(ids.const_data_ptr<int64_t>(), optional_data(visible), batch,
                              num_tokens, num_slots);
    auto grad_vis = at::empty({batch, num_slots, channels}, grad.options());
    auto grad_token = at::empty({channels}, grad.options());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                    "restore_tokens_backward", [&] {
      using Acc = at::opmath_type<scalar_t>;
      const auto acc_type = c10::CppTypeToScalarType<Acc>::value;
      auto partials = at::empty({batch, channels}, grad.options().dtype(acc_type));
      auto token_sum = at::empty({channels}, grad.options().dtype(acc_type));
      const auto* src = grad.const_data_ptr<scalar_t>();
      auto* dst = grad_vis.mutable_data_ptr<scalar_t>();
      auto* per_sample = partials.mutable_data_ptr<Acc>();
      const auto gs = token_strides_of(grad);
      const auto vs = token_strides_of(grad_vis);
      const auto* rows = ids.const_data_ptr<int64_t>();
      const auto* counts = optional_data(visible);
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        mwm::restore_tokens_backward(src, gs, rows, counts, num_slots, num_tokens, channels,
                                     dst, vs, per_sample, begin, end);
      });
      mwm::sum_mask_partials(per_sample, batch, channels, token_sum.mutable_data_ptr<Acc>());
      grad_token.copy_(token_sum);
    });
    return std::make_tuple(grad_vis, grad_token);
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
