// The CUDA kernels of masked_recon_loss and _masked_recon_loss_backward.
#include <torch/library.h>

#include "cuda/device.h"
#include "ops/masked_recon_loss.h"

namespace mwm_bindings {
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

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("masked_recon_loss", &masked_recon_loss_op<forward>);
  m.impl("_masked_recon_loss_backward", &masked_recon_loss_backward_op<backward>);
}
