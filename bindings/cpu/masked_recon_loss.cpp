// Defines masked_recon_loss and its CPU kernel: the core's band losses in parallel, then
// finish_loss in batch order.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "ops/masked_recon_loss.h"

namespace mwm_bindings {
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
  auto losses = at::empty({call.batch, n}, pred.options().dtype(call.accumulate));
  Acc* per_patch = losses.template mutable_data_ptr<Acc>();
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  at::parallel_for(0, mwm::band_count(call.geometry, call.batch), band_grain(call),
                   [&](int64_t begin, int64_t end) {
                     band_scratch<Acc> scratch(call.geometry);
                     const int64_t bad =
                         mwm::band_losses(in, begin, end, per_patch, scratch.data());
                     if (bad >= 0) store_min(first_bad, bad);
                   });
  const int64_t bad = first_bad.load();
  // Throws (ValueError) for a non-finite target patch, and under nonfinite "error" for a result
  // that would hold a NaN or an infinity.
  const Acc loss = mwm::finish_loss(in, per_patch,
                                    bad == std::numeric_limits<int64_t>::max() ? int64_t(-1) : bad);
  const bool per_patch_result = call.options.reduction == mwm::loss_reduction::none;
  // A float16 (or bfloat16) result, when both inputs have that type, can overflow in the final
  // rounding alone; finish_loss has checked the float32 values (all finite for none; mean's 0/0
  // stays NaN).
  const bool narrow = out_dtype == at::kHalf || out_dtype == at::kBFloat16;
  if (call.options.nonfinite == mwm::nonfinite_policy::error && narrow) {
    const bool half = out_dtype == at::kHalf;
    const auto overflows = [half](Acc v) {
      const float rounded = half ? static_cast<float>(static_cast<at::Half>(v))
                                 : static_cast<float>(static_cast<at::BFloat16>(v));
      return std::isfinite(static_cast<double>(v)) && !std::isfinite(rounded);
    };
    const int64_t values = per_patch_result ? call.batch * n : 1;
    for (int64_t i = 0; i < values; ++i) {
      const Acc v = per_patch_result ? per_patch[i] : loss;
      TORCH_CHECK_VALUE(!overflows(v), "mwm: the loss ",
                        per_patch_result ? "of sample " + std::to_string(i / n) + ", patch " +
                                               std::to_string(i % n) + " "
                                         : std::string(),
                        "= ", static_cast<double>(v), " overflows ", half ? "float16" : "bfloat16",
                        " (the dtype of both inputs); pass a float32 target, or nonfinite = "
                        "\"propagate\" to get the infinity");
    }
  }
  if (per_patch_result) return losses.to(out_dtype);
  return at::scalar_tensor(static_cast<double>(loss), pred.options().dtype(out_dtype));
}

at::Tensor run(const loss_call& call, const at::Tensor& pred, const at::Tensor& target) {
  const auto out_dtype = at::promote_types(pred.scalar_type(), target.scalar_type());
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, pred.scalar_type(), "masked_recon_loss", [&] {
        using P = scalar_t;
        AT_DISPATCH_FLOATING_TYPES_AND2(
            at::kHalf, at::kBFloat16, target.scalar_type(), "masked_recon_loss", [&] {
              using T = scalar_t;
              using Acc = std::conditional_t<std::is_same_v<P, double> || std::is_same_v<T, double>,
                                             double, float>;
              out = loss_forward<Acc, P, T>(call, pred, target, out_dtype);
            });
      });
  return out;
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::masked_recon_loss_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("masked_recon_loss", &mwm_bindings::masked_recon_loss_op<mwm_bindings::run>);
}
