#include "common/check.h"
#include "common/loss_args.h"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace mwm_bindings {
namespace gpu {
namespace {

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

}  // namespace

at::Tensor masked_recon_loss(const at::Tensor& pred, const at::Tensor& target,
                             const at::Tensor& mask, const std::optional<at::Tensor>& weight,
                             at::IntArrayRef patch_size, c10::string_view layout,
                             bool norm_target, c10::string_view error,
                             c10::string_view reduction, c10::string_view nonfinite) {
  const c10::cuda::CUDAGuard guard(pred.device());
  return translate_errors([&] {
    const auto call = prepare_loss_call(pred, target, mask, weight, patch_size, layout,
                                        norm_target, error, reduction, nonfinite);
    const auto out_dtype = at::promote_types(pred.scalar_type(), target.scalar_type());
    const auto [p, t] = launchable_pair(pred, target);
    const auto view = view_of(call, p, t);
    const bool per_patch = call.options.reduction == mwm::loss_reduction::none;
    auto out = per_patch ? at::empty({call.batch, call.num_patches()},
                                     pred.options().dtype(call.accumulate))
                         : at::empty({}, pred.options().dtype(call.accumulate));
    const std::size_t bytes = mwm::gpu::loss_workspace_bytes(view);
    auto workspace = workspace_like(pred, bytes);
    mwm::gpu::masked_recon_loss_async(view, out.mutable_data_ptr(), workspace.mutable_data_ptr(),
                                      bytes, current_stream());
    return out.to(out_dtype);
  });
}

at::Tensor masked_recon_loss_backward(const at::Tensor& grad, const at::Tensor& pred,
                                      const at::Tensor& target, const at::Tensor& mask,
                                      const std::optional<at::Tensor>& weight,
                                      at::IntArrayRef patch_size, c10::string_view layout,
                                      bool norm_target, c10::string_view error,
                                      c10::string_view reduction) {
  const c10::cuda::CUDAGuard guard(pred.device());
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
                                               workspace.mutable_data_ptr(), bytes,
                                               current_stream());
    return grad_pred.to(pred.scalar_type());
  });
}

}  // namespace gpu
}  // namespace mwm_bindings
