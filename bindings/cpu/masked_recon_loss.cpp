#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/check.h"
#include "common/loss_args.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

namespace {

// Lowers `slot` to `value` if smaller; threads report their first bad patch this way so that the
// error names the first one in batch order.
void store_min(std::atomic<int64_t>& slot, int64_t value) {
  int64_t seen = slot.load();
  while (value < seen && !slot.compare_exchange_weak(seen, value)) {
  }
}

template <typename Acc, typename P, typename T>
at::Tensor loss_forward(const loss_call& call, const at::Tensor& pred, const at::Tensor& target,
                        at::ScalarType out_dtype) {
  const auto in = loss_inputs_of<Acc, P, T>(call, pred, target);
  const int64_t n = call.num_patches();
  const int64_t count = call.batch * n;
  auto losses = at::empty({call.batch, n}, pred.options().dtype(call.accumulate));
  Acc* per_patch = losses.template mutable_data_ptr<Acc>();
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  at::parallel_for(0, mwm::band_count(call.geometry, call.batch), band_grain(call),
                   [&](int64_t begin, int64_t end) {
                     std::vector<Acc> scratch(mwm::band_scratch_size(call.geometry));
                     const int64_t bad =
                         mwm::band_losses(in, begin, end, per_patch, scratch.data());
                     if (bad >= 0) store_min(first_bad, bad);
                   });
  const int64_t bad = first_bad.load();
  TORCH_CHECK_VALUE(bad == std::numeric_limits<int64_t>::max(), "mwm: target has a non-finite ",
                    "value (NaN or Inf) in sample ", bad / std::max<int64_t>(n, 1), ", patch ",
                    bad % std::max<int64_t>(n, 1), ", which the loss reads (a masked patch)");
  if (call.options.reduction == mwm::loss_reduction::none) return losses.to(out_dtype);
  const Acc total = mwm::coefficient_total(in.mask, in.weight, count);
  const Acc loss = mwm::reduce_patch_losses(per_patch, count, call.options.reduction, total);
  return at::scalar_tensor(static_cast<double>(loss), pred.options().dtype(out_dtype));
}

}  // namespace

at::Tensor masked_recon_loss(const at::Tensor& pred, const at::Tensor& target,
                             const at::Tensor& mask, const std::optional<at::Tensor>& weight,
                             at::IntArrayRef patch_size, c10::string_view layout,
                             bool norm_target, c10::string_view error,
                             c10::string_view reduction) {
  return translate_errors([&] {
    const auto call = prepare_loss_call(pred, target, mask, weight, patch_size, layout,
                                        norm_target, error, reduction);
    const auto out_dtype = at::promote_types(pred.scalar_type(), target.scalar_type());
    at::Tensor out;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(),
                                    "masked_recon_loss", [&] {
      using P = scalar_t;
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, target.scalar_type(),
                                      "masked_recon_loss", [&] {
        using T = scalar_t;
        using Acc = std::conditional_t<std::is_same_v<P, double> || std::is_same_v<T, double>,
                                       double, float>;
        out = loss_forward<Acc, P, T>(call, pred, target, out_dtype);
      });
    });
    return out;
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
