#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "common/check.h"
#include "common/token_args.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

at::Tensor restore_tokens(const at::Tensor& x_vis, const at::Tensor& ids_restore,
                          const at::Tensor& mask_token,
                          const std::optional<at::Tensor>& num_visible) {
  check_token_rows(x_vis, "x_vis", "(B, K, C)");
  check_index_rows(ids_restore, "ids_restore", x_vis, "x_vis", "(B, N)");
  check_same_device(mask_token, "mask_token", x_vis, "x_vis");
  TORCH_CHECK_TYPE(mask_token.scalar_type() == x_vis.scalar_type(), "mwm: mask_token is ",
                   c10::toString(mask_token.scalar_type()), " but x_vis is ",
                   c10::toString(x_vis.scalar_type()), ": they must agree");
  TORCH_CHECK_VALUE(mask_token.dim() == 1 && mask_token.size(0) == x_vis.size(2),
                    "mwm: mask_token has shape ", shape_text(mask_token), ": expected (C,) = (",
                    x_vis.size(2), ",)");
  const int64_t batch = x_vis.size(0), slots = x_vis.size(1), channels = x_vis.size(2);
  const int64_t num_tokens = ids_restore.size(1);
  TORCH_CHECK_VALUE(slots <= num_tokens, "mwm: x_vis has ", slots, " tokens but ids_restore has ",
                    num_tokens, ": K must not exceed N");
  const auto visible = checked_visible(num_visible, x_vis, "x_vis");
  return translate_errors([&] {
    const auto ids = ids_restore.contiguous();
    mwm::validate_restore_ids(ids.const_data_ptr<int64_t>(), optional_data(visible), batch,
                              num_tokens, slots);
    auto out = at::empty({batch, num_tokens, channels}, x_vis.options());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x_vis.scalar_type(),
                                    "restore_tokens", [&] {
      const auto* src = x_vis.const_data_ptr<scalar_t>();
      const auto* token = mask_token.const_data_ptr<scalar_t>();
      auto* dst = out.mutable_data_ptr<scalar_t>();
      const auto vs = token_strides_of(x_vis);
      const auto os = token_strides_of(out);
      const auto* rows = ids.const_data_ptr<int64_t>();
      const auto* counts = optional_data(visible);
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        mwm::restore_tokens(src, vs, rows, counts, slots, num_tokens, channels, token,
                            mask_token.stride(0), dst, os, begin, end);
      });
    });
    return out;
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
