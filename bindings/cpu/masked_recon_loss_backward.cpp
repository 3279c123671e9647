#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <type_traits>
#include <vector>

#include "common/check.h"
#include "common/loss_args.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

namespace {

template <typename Acc, typename P, typename T>
void loss_backward(const loss_call& call, const at::Tensor& grad, const at::Tensor& pred,
                   const at::Tensor& target, at::Tensor& grad_pred) {
  const auto in = loss_inputs_of<Acc, P, T>(call, pred, target);
  const int64_t count = call.batch * call.num_patches();
  const auto upstream = grad.to(call.accumulate).contiguous();
  const Acc* grad_out = upstream.template const_data_ptr<Acc>();
  const Acc denominator = mwm::loss_denominator(
      call.options.reduction, mwm::coefficient_total(in.mask, in.weight, count));
  const auto gs = layout_strides(call.geometry, call.patch_layout, grad_pred.strides());
  P* out = grad_pred.template mutable_data_ptr<P>();
  at::parallel_for(0, mwm::band_count(call.geometry, call.batch), band_grain(call),
                   [&](int64_t begin, int64_t end) {
                     std::vector<Acc> scratch(mwm::band_scratch_size(call.geometry));
                     mwm::band_gradients(in, grad_out, denominator, out, gs, begin, end,
                                         scratch.data());
                   });
}

}  // namespace

at::Tensor masked_recon_loss_backward(const at::Tensor& grad, const at::Tensor& pred,
                                      const at::Tensor& target, const at::Tensor& mask,
                                      const std::optional<at::Tensor>& weight,
                                      at::IntArrayRef patch_size, c10::string_view layout,
                                      bool norm_target, c10::string_view error,
                                      c10::string_view reduction) {
  return translate_errors([&] {
    const auto call = prepare_loss_call(pred, target, mask, weight, patch_size, layout,
                                        norm_target, error, reduction);
    TORCH_CHECK_TYPE(grad.is_floating_point(), "mwm: grad must be floating point, got ",
                     c10::toString(grad.scalar_type()));
    check_same_device(grad, "grad", pred, "pred");
    if (call.options.reduction == mwm::loss_reduction::none) {
      TORCH_CHECK_VALUE(grad.dim() == 2 && grad.size(0) == call.batch &&
                            grad.size(1) == call.num_patches(),
                        "mwm: grad has shape ", shape_text(grad), ": reduction 'none' expects (",
                        call.batch, ", ", call.num_patches(), ")");
    } else {
      TORCH_CHECK_VALUE(grad.numel() == 1, "mwm: grad has shape ", shape_text(grad),
                        ": a reduced loss expects a single value");
    }
    auto grad_pred =
        at::empty(pred.sizes(), pred.options().memory_format(at::MemoryFormat::Contiguous));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(),
                                    "masked_recon_loss_backward", [&] {
      using P = scalar_t;
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, target.scalar_type(),
                                      "masked_recon_loss_backward", [&] {
        using T = scalar_t;
        using Acc = std::conditional_t<std::is_same_v<P, double> || std::is_same_v<T, double>,
                                       double, float>;
        loss_backward<Acc, P, T>(call, grad, pred, target, grad_pred);
      });
    });
    return grad_pred;
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
