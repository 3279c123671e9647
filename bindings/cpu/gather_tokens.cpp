#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "common/check.h"
#include "common/token_args.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& ids_keep) {
  check_token_rows(x, "x", "(B, N, C)");
  check_index_rows(ids_keep, "ids_keep", x, "x", "(B, K)");
  return translate_errors([&] {
    const auto ids = ids_keep.contiguous();
    const int64_t batch = x.size(0), slots = ids.size(1), channels = x.size(2);
    mwm::validate_keep_ids(ids.const_data_ptr<int64_t>(), batch, slots, x.size(1));
    auto out = at::empty({batch, slots, channels}, x.options());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gather_tokens",
                                    [&] {
      const auto* src = x.const_data_ptr<scalar_t>();
      auto* dst = out.mutable_data_ptr<scalar_t>();
      const auto xs = token_strides_of(x);
      const auto os = token_strides_of(out);
      const auto* rows = ids.const_data_ptr<int64_t>();
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        mwm::gather_tokens(src, xs, rows, slots, channels, dst, os, begin, end);
      });
    });
    return out;
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
