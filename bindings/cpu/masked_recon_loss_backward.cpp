// Defines _masked_recon_loss_backward (the gradient of masked_recon_loss for pred) and its CPU
// kernel: the core's band gradients in parallel.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>

#include "ops/masked_recon_loss.h"

namespace mwm_bindings {
namespace {

template <typename Acc, typename P, typename T>
void loss_backward(const loss_call& call, const at::Tensor& grad, const at::Tensor& pred,
                   const at::Tensor& target, at::Tensor& grad_pred) {
  const auto in = loss_inputs_of<Acc, P, T>(call, pred, target);
  const int64_t count = call.batch * call.num_patches();
  const auto upstream = grad.to(call.accumulate).contiguous();
  const Acc* grad_out = upstream.template const_data_ptr<Acc>();
  const Acc denominator = mwm::loss_denominator(call.options.reduction,
                                                mwm::coefficient_total(in.mask, in.weight, count));
  const auto gs = layout_strides(call.geometry, call.patch_layout, grad_pred.strides());
  P* out = grad_pred.template mutable_data_ptr<P>();
  at::parallel_for(0, mwm::band_count(call.geometry, call.batch), band_grain(call),
                   [&](int64_t begin, int64_t end) {
                     band_scratch<Acc> scratch(call.geometry);
                     mwm::band_gradients(in, grad_out, denominator, out, gs, begin, end,
                                         scratch.data());
                   });
}

at::Tensor run(const loss_call& call, const at::Tensor& grad, const at::Tensor& pred,
               const at::Tensor& target) {
  // Every element is written by the drivers (zeros for patches outside the loss), so no
  // zero fill; the fresh block gets huge pages before it is touched.
  auto grad_pred =
      at::empty(pred.sizes(), pred.options().memory_format(at::MemoryFormat::Contiguous));
  advise_huge_pages(grad_pred.data_ptr(), grad_pred.nbytes());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, pred.scalar_type(), "masked_recon_loss_backward", [&] {
        using P = scalar_t;
        AT_DISPATCH_FLOATING_TYPES_AND2(
            at::kHalf, at::kBFloat16, target.scalar_type(), "masked_recon_loss_backward", [&] {
              using T = scalar_t;
              using Acc = std::conditional_t<std::is_same_v<P, double> || std::is_same_v<T, double>,
                                             double, float>;
              loss_backward<Acc, P, T>(call, grad, pred, target, grad_pred);
            });
      });
  return grad_pred;
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::masked_recon_loss_backward_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("_masked_recon_loss_backward",
         &mwm_bindings::masked_recon_loss_backward_op<mwm_bindings::run>);
}
