// masked_recon_loss and _masked_recon_loss_backward (its gradient for pred), and the CPU-only
// pair _masked_recon_loss_fused (the loss and the gradient for grad_output = 1 in one pass) /
// _masked_recon_loss_backward_inplace: their definitions, the CPU kernels (the core's band
// losses and band gradients in parallel, then finish_loss in batch order) and, in a CUDA build,
// the glue of the loss launchers. Schemas and checks: ops/masked_recon_loss.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "ops/loss_gradient_cache.h"
#include "ops/masked_recon_loss.h"

#ifdef MWM_WITH_CUDA
#include "cuda/device.h"
#endif

namespace mwm_bindings {
namespace {
namespace on_cpu {

// Lowers `slot` to `value` if smaller; threads report their first bad patch this way so that the
// error names the first one in batch order.
void store_min(std::atomic<int64_t>& slot, int64_t value) {
  int64_t seen = slot.load();
  while (value < seen && !slot.compare_exchange_weak(seen, value)) {
  }
}

// The gradient's strides and the band gradients of all bands for the upstream values `grad_out`
// (one value, or one per patch for none): band_gradients in parallel.
template <typename Acc, typename P, typename T>
void write_band_gradients(const loss_call& call, const mwm::loss_inputs<Acc, P, T>& in,
                          const Acc* grad_out, Acc denominator, at::Tensor& grad_pred) {
  const auto gs = layout_strides(call.geometry, call.patch_layout, grad_pred.strides());
  P* out = grad_pred.template mutable_data_ptr<P>();
  at::parallel_for(0, mwm::band_count(call.geometry, call.batch), band_grain(call),
                   [&](int64_t begin, int64_t end) {
                     band_scratch<Acc> scratch(call.geometry);
                     mwm::band_gradients(in, grad_out, denominator, out, gs, begin, end,
                                         scratch.data());
                   });
}

// The loss; with `unit_grad` (a reduced loss), also the gradient for grad_output = 1 into it:
// written by the forward's own pass over the patches when the denominator allows
// (mwm::fused_gradient_exact), else by band_gradients with upstream 1 once the loss is known
// to be valid (sum(mask * weight) is 0 or NaN: every factor is NaN, unread patches included).
template <typename Acc, typename P, typename T>
at::Tensor loss_forward(const loss_call& call, const at::Tensor& pred, const at::Tensor& target,
                        at::ScalarType out_dtype, at::Tensor* unit_grad = nullptr) {
  const auto in = loss_inputs_of<Acc, P, T>(call, pred, target);
  const int64_t n = call.num_patches();
  auto losses = at::empty({call.batch, n}, pred.options().dtype(call.accumulate));
  Acc* per_patch = losses.template mutable_data_ptr<Acc>();
  Acc denominator = Acc(0);
  mwm::unit_gradient<Acc, P> gradient{};
  bool fused = false;
  if (unit_grad) {
    denominator = mwm::steps::loss_denominator(
        call.options.reduction, mwm::coefficient_total(in.mask, in.weight, call.batch * n));
    gradient = {denominator, unit_grad->template mutable_data_ptr<P>(),
                layout_strides(call.geometry, call.patch_layout, unit_grad->strides())};
    fused = mwm::fused_gradient_exact(denominator);
  }
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  at::parallel_for(0, mwm::band_count(call.geometry, call.batch), band_grain(call),
                   [&](int64_t begin, int64_t end) {
                     band_scratch<Acc> scratch(call.geometry);
                     const int64_t bad = mwm::band_losses(in, begin, end, per_patch, scratch.data(),
                                                          fused ? &gradient : nullptr);
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
  if (unit_grad && !fused) {
    const Acc one = Acc(1);
    write_band_gradients(call, in, &one, denominator, *unit_grad);
  }
  if (per_patch_result) return losses.to(out_dtype);
  return at::scalar_tensor(static_cast<double>(loss), pred.options().dtype(out_dtype));
}

// Runs Body<Acc, P, T>() for the dtypes of pred and target (Acc: float64 when either is, else
// float32).
template <typename Body>
void dispatch_loss_types(const at::Tensor& pred, const at::Tensor& target, Body&& body) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, pred.scalar_type(), "masked_recon_loss", [&] {
        using P = scalar_t;
        AT_DISPATCH_FLOATING_TYPES_AND2(
            at::kHalf, at::kBFloat16, target.scalar_type(), "masked_recon_loss", [&] {
              using T = scalar_t;
              using Acc = std::conditional_t<std::is_same_v<P, double> || std::is_same_v<T, double>,
                                             double, float>;
              body(Acc(), P(), T());
            });
      });
}

at::Tensor forward(const loss_call& call, const at::Tensor& pred, const at::Tensor& target) {
  const auto out_dtype = at::promote_types(pred.scalar_type(), target.scalar_type());
  at::Tensor out;
  dispatch_loss_types(pred, target, [&](auto acc, auto p, auto t) {
    out = loss_forward<decltype(acc), decltype(p), decltype(t)>(call, pred, target, out_dtype);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> forward_with_unit_gradient(const loss_call& call,
                                                              const at::Tensor& pred,
                                                              const at::Tensor& target) {
  const auto out_dtype = at::promote_types(pred.scalar_type(), target.scalar_type());
  // Uninitialized: the drivers write every element (zeros outside the loss).
  auto grad_pred = cached_gradient_like(pred);
  at::Tensor out;
  dispatch_loss_types(pred, target, [&](auto acc, auto p, auto t) {
    out = loss_forward<decltype(acc), decltype(p), decltype(t)>(call, pred, target, out_dtype,
                                                                &grad_pred);
  });
  return {out, grad_pred};
}

// The gradient for the upstream values `grad` into grad_pred (every element written).
template <typename Acc, typename P, typename T>
void loss_backward(const loss_call& call, const at::Tensor& grad, const at::Tensor& pred,
                   const at::Tensor& target, at::Tensor& grad_pred) {
  const auto in = loss_inputs_of<Acc, P, T>(call, pred, target);
  const int64_t count = call.batch * call.num_patches();
  const auto upstream = grad.to(call.accumulate).contiguous();
  const Acc denominator = mwm::steps::loss_denominator(
      call.options.reduction, mwm::coefficient_total(in.mask, in.weight, count));
  write_band_gradients(call, in, upstream.template const_data_ptr<Acc>(), denominator, grad_pred);
}

at::Tensor backward(const loss_call& call, const at::Tensor& grad, const at::Tensor& pred,
                    const at::Tensor& target) {
  // Uninitialized: the drivers write every element (zeros outside the loss).
  auto grad_pred = cached_gradient_like(pred);
  dispatch_loss_types(pred, target, [&](auto acc, auto p, auto t) {
    loss_backward<decltype(acc), decltype(p), decltype(t)>(call, grad, pred, target, grad_pred);
  });
  return grad_pred;
}

// grad_pred holds the gradient for grad_output = 1 (the fused forward's). The upstream value is
// compared after its conversion to the accumulation type, which is the value the backward would
// compute with: equal to 1 there, the gradient already has the backward's bits (1 * c == c);
// otherwise the backward runs into grad_pred.
void backward_inplace(const loss_call& call, const at::Tensor& grad, const at::Tensor& pred,
                      const at::Tensor& target, at::Tensor& grad_pred) {
  dispatch_loss_types(pred, target, [&](auto acc, auto p, auto t) {
    using Acc = decltype(acc);
    const Acc upstream = grad.to(call.accumulate).item<Acc>();
    if (upstream == Acc(1)) return;
    loss_backward<Acc, decltype(p), decltype(t)>(call, grad, pred, target, grad_pred);
  });
}

}  // namespace on_cpu

#ifdef MWM_WITH_CUDA
namespace on_cuda {

// The launchers run equal dtypes, or a float16/bfloat16 prediction with a float32 target; any
// other pair is converted exactly to its promoted type first (every value of the narrower type
// is a value of the wider one, so the result is the one the direct computation gives).
std::pair<at::Tensor, at::Tensor> launchable_pair(const at::Tensor& pred,
                                                  const at::Tensor& target) {
  const auto p = float_type_of(pred.scalar_type());
  const auto t = float_type_of(target.scalar_type());
  if (mwm::gpu::loss_types_supported(p, t)) return {pred, target};
  const auto wide = at::promote_types(pred.scalar_type(), target.scalar_type());
  return {pred.to(wide), target.to(wide)};
}

mwm::gpu::loss_call_view view_of(const loss_call& call, const at::Tensor& pred,
                                 const at::Tensor& target) {
  mwm::gpu::loss_call_view view;
  view.geometry = call.geometry;
  view.batch = call.batch;
  view.pred = pred.const_data_ptr();
  view.pred_type = float_type_of(pred.scalar_type());
  view.pred_strides = layout_strides(call.geometry, call.patch_layout, pred.strides());
  view.target = target.const_data_ptr();
  view.target_type = float_type_of(target.scalar_type());
  view.target_strides = layout_strides(call.geometry, false, target.strides());
  view.mask = reinterpret_cast<const std::uint8_t*>(call.mask.const_data_ptr<bool>());
  view.weight = call.weight.defined() ? call.weight.const_data_ptr() : nullptr;
  view.options = call.options;
  return view;
}

at::Tensor forward(const loss_call& call, const at::Tensor& pred, const at::Tensor& target) {
  const c10::cuda::CUDAGuard guard(pred.device());
  const auto out_dtype = at::promote_types(pred.scalar_type(), target.scalar_type());
  const auto [p, t] = launchable_pair(pred, target);
  const auto view = view_of(call, p, t);
  const bool per_patch = call.options.reduction == mwm::loss_reduction::none;
  auto out =
      per_patch ? at::empty({call.batch, call.num_patches()}, pred.options().dtype(call.accumulate))
                : at::empty({}, pred.options().dtype(call.accumulate));
  const std::size_t bytes = mwm::gpu::loss_workspace_bytes(view);
  auto workspace = workspace_like(pred, bytes);
  mwm::gpu::masked_recon_loss_async(view, out.mutable_data_ptr(), workspace.mutable_data_ptr(),
                                    bytes, current_stream());
  return out.to(out_dtype);
}

at::Tensor backward(const loss_call& call, const at::Tensor& grad, const at::Tensor& pred,
                    const at::Tensor& target) {
  const c10::cuda::CUDAGuard guard(pred.device());
  const auto [p, t] = launchable_pair(pred, target);
  const auto view = view_of(call, p, t);
  const auto upstream = grad.to(call.accumulate).contiguous();
  // In the launched prediction's dtype; rounded to pred's dtype once when that was narrower.
  auto grad_pred = at::empty(p.sizes(), p.options().memory_format(at::MemoryFormat::Contiguous));
  const auto gs = layout_strides(call.geometry, call.patch_layout, grad_pred.strides());
  const std::size_t bytes = mwm::gpu::loss_workspace_bytes(view);
  auto workspace = workspace_like(pred, bytes);
  mwm::gpu::masked_recon_loss_backward_async(view, upstream.const_data_ptr(),
                                             grad_pred.mutable_data_ptr(), gs,
                                             workspace.mutable_data_ptr(), bytes, current_stream());
  return grad_pred.to(pred.scalar_type());
}

}  // namespace on_cuda
#endif
}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) {
  m.def(mwm_bindings::masked_recon_loss_schema);
  m.def(mwm_bindings::masked_recon_loss_backward_schema);
  m.def(mwm_bindings::masked_recon_loss_fused_schema);
  m.def(mwm_bindings::masked_recon_loss_backward_inplace_schema);
}

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("masked_recon_loss", &masked_recon_loss_op<on_cpu::forward>);
  m.impl("_masked_recon_loss_backward", &masked_recon_loss_backward_op<on_cpu::backward>);
  m.impl("_masked_recon_loss_fused",
         &masked_recon_loss_fused_op<on_cpu::forward_with_unit_gradient>);
  m.impl("_masked_recon_loss_backward_inplace",
         &masked_recon_loss_backward_inplace_op<on_cpu::backward_inplace>);
}

#ifdef MWM_WITH_CUDA
TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("masked_recon_loss", &masked_recon_loss_op<on_cuda::forward>);
  m.impl("_masked_recon_loss_backward", &masked_recon_loss_backward_op<on_cuda::backward>);
}
#endif
