// masked_recon_loss, its private backward _masked_recon_loss_backward and the fused pair
// _masked_recon_loss_fused / _masked_recon_loss_backward_inplace: the schemas, the
// arguments validated once and turned into the core's patch geometry, strides and options, and
// the op entries that run a backend on the checked call (cpu/ and cuda/masked_recon_loss*.cpp).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <mwm/masking.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common/check.h"
#include "common/parse.h"

namespace mwm_bindings {

// pred (B, N, P) ("patch") or like target ("image"), target (B, C, [D,] H, W) read in place,
// mask (B, N) bool, weight (B, N); reduction mean | mean_eps | sum -> scalar, none -> (B, N).
// nonfinite: "error" raises ValueError when the result would be NaN/Inf (naming pred, weight or
// the overflow and the first such patch), "propagate" returns it, "default" is "error" on the CPU
// and "propagate" on CUDA (so AMP's GradScaler can skip a step: docs/design.md, "The loss under
// AMP"). The backward returns grad_pred only.
inline constexpr char masked_recon_loss_schema[] =
    "masked_recon_loss(Tensor pred, Tensor target, Tensor mask, Tensor? weight, "
    "int[] patch_size, str layout, bool norm_target, str error, str reduction, "
    "str nonfinite=\"default\") -> Tensor";
inline constexpr char masked_recon_loss_backward_schema[] =
    "_masked_recon_loss_backward(Tensor grad, Tensor pred, Tensor target, Tensor mask, "
    "Tensor? weight, int[] patch_size, str layout, bool norm_target, str error, "
    "str reduction) -> Tensor";
// The forward that also returns grad_pred for grad_output = 1, written in the same pass over the
// patches (CPU; reductions mean, mean_eps, sum): what mwm.masked_recon_loss runs when pred needs
// a gradient. Its backward, _masked_recon_loss_backward_inplace, leaves that gradient as it is
// when grad == 1 exactly and otherwise overwrites it with _masked_recon_loss_backward's result
// for grad, so every gradient has the bits of the unfused backward (docs/loss.md, "The gradient
// written by the forward").
inline constexpr char masked_recon_loss_fused_schema[] =
    "_masked_recon_loss_fused(Tensor pred, Tensor target, Tensor mask, Tensor? weight, "
    "int[] patch_size, str layout, bool norm_target, str error, str reduction, "
    "str nonfinite=\"default\") -> (Tensor, Tensor)";
inline constexpr char masked_recon_loss_backward_inplace_schema[] =
    "_masked_recon_loss_backward_inplace(Tensor(a!) grad_pred, Tensor grad, Tensor pred, "
    "Tensor target, Tensor mask, Tensor? weight, int[] patch_size, str layout, bool norm_target, "
    "str error, str reduction) -> ()";

inline mwm::recon_error parse_recon_error(c10::string_view v) {
  return parse_choice<mwm::recon_error>(
      "error", v, {{"mse", mwm::recon_error::mse}, {"l1", mwm::recon_error::l1}});
}

inline mwm::loss_reduction parse_loss_reduction(c10::string_view v) {
  return parse_choice<mwm::loss_reduction>("reduction", v,
                                           {{"mean", mwm::loss_reduction::mean},
                                            {"mean_eps", mwm::loss_reduction::mean_eps},
                                            {"sum", mwm::loss_reduction::sum},
                                            {"none", mwm::loss_reduction::none}});
}

inline mwm::nonfinite_policy parse_nonfinite(c10::string_view v, bool on_cuda) {
  const auto policy =
      parse_choice<mwm::nonfinite_policy>("nonfinite", v,
                                          {{"default", mwm::nonfinite_policy::error},
                                           {"error", mwm::nonfinite_policy::error},
                                           {"propagate", mwm::nonfinite_policy::propagate}});
  return v == "default" && on_cuda ? mwm::nonfinite_policy::propagate : policy;
}

// True for the patch layout (B, N, P), false for the image layout.
inline bool parse_patch_layout(c10::string_view v) {
  return parse_choice<bool>("layout", v, {{"patch", true}, {"image", false}});
}

inline void check_loss_float(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
                   "mwm: ", name, " must be float32, float64, float16 or bfloat16, got ",
                   c10::toString(s));
}

// Accumulation type: float64 when either input is float64, float32 otherwise.
inline at::ScalarType loss_accumulate_type(const at::Tensor& pred, const at::Tensor& target) {
  return pred.scalar_type() == at::kDouble || target.scalar_type() == at::kDouble ? at::kDouble
                                                                                  : at::kFloat;
}

// Patch strides of a tensor in the prediction's layout with the given element strides.
inline mwm::patch_strides layout_strides(const mwm::patch_geometry& g, bool patch_layout,
                                         at::IntArrayRef strides) {
  if (patch_layout) return mwm::vector_patch_strides(g, strides[0], strides[1], strides[2]);
  const bool volumetric = strides.size() == 5;
  const size_t h = strides.size() - 2;
  return mwm::image_patch_strides(g, strides[0], strides[1], volumetric ? strides[2] : 0,
                                  strides[h], strides[h + 1]);
}

struct loss_call {
  mwm::patch_geometry geometry;
  int64_t batch = 0;
  bool patch_layout = true;
  mwm::loss_options options;
  mwm::patch_strides pred_strides;
  mwm::patch_strides target_strides;
  at::ScalarType accumulate = at::kFloat;
  at::Tensor mask;    // (B, N) bool, contiguous
  at::Tensor weight;  // (B, N) in the accumulation type, contiguous; undefined: all ones

  int64_t num_patches() const { return geometry.grid.num_patches(); }
};

// Validates every argument (shapes, dtypes, devices, option names) and builds the call. The
// backward passes no `nonfinite` (it has nothing to report: the forward did).
inline loss_call prepare_loss_call(const at::Tensor& pred, const at::Tensor& target,
                                   const at::Tensor& mask, const std::optional<at::Tensor>& weight,
                                   at::IntArrayRef patch_size, c10::string_view layout,
                                   bool norm_target, c10::string_view error,
                                   c10::string_view reduction,
                                   c10::string_view nonfinite = "default") {
  loss_call call;
  call.options.error = parse_recon_error(error);
  call.options.reduction = parse_loss_reduction(reduction);
  call.options.nonfinite = parse_nonfinite(nonfinite, pred.is_cuda());
  call.options.norm_target = norm_target;
  call.patch_layout = parse_patch_layout(layout);
  check_loss_float(pred, "pred");
  check_loss_float(target, "target");
  check_same_device(target, "target", pred, "pred");
  check_same_device(mask, "mask", pred, "pred");
  TORCH_CHECK_VALUE(patch_size.size() == 2 || patch_size.size() == 3,
                    "mwm: patch_size = ", patch_size,
                    ": must have 2 (ph, pw) or 3 (pd, ph, pw) sizes");
  const bool volumetric = patch_size.size() == 3;
  TORCH_CHECK_VALUE(target.dim() == static_cast<int64_t>(patch_size.size()) + 2,
                    "mwm: target has shape ", shape_text(target), ": expected (B, C, ",
                    volumetric ? "D, H, W" : "H, W", ") for patch_size ", patch_size);
  call.batch = target.size(0);
  call.geometry = volumetric ? mwm::make_geometry_3d(target.size(1), target.size(2), target.size(3),
                                                     target.size(4), patch_size[0], patch_size[1],
                                                     patch_size[2])
                             : mwm::make_geometry_2d(target.size(1), target.size(2), target.size(3),
                                                     patch_size[0], patch_size[1]);
  mwm::validate_loss_geometry(call.geometry, call.options);
  const int64_t n = call.num_patches();
  if (call.patch_layout) {
    TORCH_CHECK_VALUE(pred.dim() == 3, "mwm: pred has shape ", shape_text(pred),
                      ": layout 'patch' expects (B, N, P) = (", call.batch, ", ", n, ", ",
                      call.geometry.patch_vector_size(), ") for target ", shape_text(target),
                      " and patch_size ", patch_size);
    check_size(pred, "pred", 0, call.batch, "the batch size of target");
    check_size(pred, "pred", 1, n, "the number of patches N");
    check_size(pred, "pred", 2, call.geometry.patch_vector_size(),
               "the patch vector size P = C * patch volume");
  } else {
    TORCH_CHECK_VALUE(pred.sizes() == target.sizes(), "mwm: pred has shape ", shape_text(pred),
                      ": layout 'image' expects the shape of target ", shape_text(target));
  }
  check_dtype(mask, "mask", at::kBool);
  check_dim(mask, "mask", 2);
  check_size(mask, "mask", 0, call.batch, "the batch size of target");
  check_size(mask, "mask", 1, n, "the number of patches N");
  call.mask = mask.contiguous();
  call.accumulate = loss_accumulate_type(pred, target);
  if (weight.has_value()) {
    TORCH_CHECK_TYPE(weight->is_floating_point(), "mwm: weight must be floating point, got ",
                     c10::toString(weight->scalar_type()));
    check_same_device(*weight, "weight", pred, "pred");
    check_dim(*weight, "weight", 2);
    check_size(*weight, "weight", 0, call.batch, "the batch size of target");
    check_size(*weight, "weight", 1, n, "the number of patches N");
    call.weight = weight->to(call.accumulate).contiguous();
  }
  call.pred_strides = layout_strides(call.geometry, call.patch_layout, pred.strides());
  call.target_strides = layout_strides(call.geometry, false, target.strides());
  return call;
}

// The core's view of the inputs of a prepared call.
template <typename Acc, typename P, typename T>
mwm::loss_inputs<Acc, P, T> loss_inputs_of(const loss_call& call, const at::Tensor& pred,
                                           const at::Tensor& target) {
  mwm::loss_inputs<Acc, P, T> in;
  in.geometry = call.geometry;
  in.batch = call.batch;
  in.pred = pred.const_data_ptr<P>();
  in.pred_strides = call.pred_strides;
  in.target = target.const_data_ptr<T>();
  in.target_strides = call.target_strides;
  in.mask = reinterpret_cast<const std::uint8_t*>(call.mask.const_data_ptr<bool>());
  in.weight = call.weight.defined() ? call.weight.const_data_ptr<Acc>() : nullptr;
  in.options = call.options;
  return in;
}

// Bands (rows of patches) per parallel task: about 32k elements, so that small images do not
// make tiny tasks.
inline int64_t band_grain(const loss_call& call) {
  const int64_t band = call.geometry.grid.width * call.geometry.patch_vector_size();
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, band));
}

// The band scratch of the CPU drivers (mwm::band_scratch_size elements), reused by each thread
// from call to call instead of allocated per call; a buffer above `kept` elements is the
// call's own (so that one huge image does not pin memory in every thread).
template <typename Acc>
class band_scratch {
 public:
  explicit band_scratch(const mwm::patch_geometry& g) {
    const auto size = static_cast<size_t>(mwm::band_scratch_size(g));
    std::vector<Acc>& reused = thread_buffer();
    if (size > kept) {
      own_.resize(size);
      data_ = own_.data();
      return;
    }
    if (reused.size() < size) reused.resize(size);
    data_ = reused.data();
  }
  Acc* data() { return data_; }

 private:
  static constexpr size_t kept = size_t(1) << 22;
  static std::vector<Acc>& thread_buffer() {
    thread_local std::vector<Acc> buffer;
    return buffer;
  }
  std::vector<Acc> own_;
  Acc* data_ = nullptr;
};

// Asks Linux for transparent huge pages behind a fresh, large output before it is first
// written. Large blocks come straight from mmap, so every call's output is faulted in anew; at
// 4 KiB a page that costs about as much as writing it twice (docs/speed.md, "The loss on the
// CPU"), at 2 MiB a fraction. A hint only (under THP "madvise", the usual default; no effect
// under "never", not needed under "always"): the values written are the same either way.
inline void advise_huge_pages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t huge = uintptr_t(2) << 20;
  if (data == nullptr || bytes < static_cast<int64_t>(2 * huge)) return;
  const uintptr_t first = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (first + huge - 1) & ~(huge - 1);
  const uintptr_t end = (first + static_cast<uintptr_t>(bytes)) & ~(huge - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// The forward for one backend: `Run` computes the loss of a checked call.
using loss_run = at::Tensor (*)(const loss_call&, const at::Tensor& pred, const at::Tensor& target);

template <loss_run Run>
at::Tensor masked_recon_loss_op(const at::Tensor& pred, const at::Tensor& target,
                                const at::Tensor& mask, const std::optional<at::Tensor>& weight,
                                at::IntArrayRef patch_size, c10::string_view layout,
                                bool norm_target, c10::string_view error,
                                c10::string_view reduction, c10::string_view nonfinite) {
  return translate_errors([&] {
    const auto call = prepare_loss_call(pred, target, mask, weight, patch_size, layout, norm_target,
                                        error, reduction, nonfinite);
    return Run(call, pred, target);
  });
}

// The incoming gradient of a backward: floating point, on pred's device, one value for a reduced
// loss or (B, N) for reduction none.
inline void check_loss_grad(const loss_call& call, const at::Tensor& grad, const at::Tensor& pred) {
  TORCH_CHECK_TYPE(grad.is_floating_point(), "mwm: grad must be floating point, got ",
                   c10::toString(grad.scalar_type()));
  check_same_device(grad, "grad", pred, "pred");
  if (call.options.reduction == mwm::loss_reduction::none) {
    TORCH_CHECK_VALUE(
        grad.dim() == 2 && grad.size(0) == call.batch && grad.size(1) == call.num_patches(),
        "mwm: grad has shape ", shape_text(grad), ": reduction 'none' expects (", call.batch, ", ",
        call.num_patches(), ")");
  } else {
    TORCH_CHECK_VALUE(grad.numel() == 1, "mwm: grad has shape ", shape_text(grad),
                      ": a reduced loss expects a single value");
  }
}

// The backward for one backend: `Run` computes grad_pred of a checked call and upstream `grad`.
using loss_backward_run = at::Tensor (*)(const loss_call&, const at::Tensor& grad,
                                         const at::Tensor& pred, const at::Tensor& target);

template <loss_backward_run Run>
at::Tensor masked_recon_loss_backward_op(const at::Tensor& grad, const at::Tensor& pred,
                                         const at::Tensor& target, const at::Tensor& mask,
                                         const std::optional<at::Tensor>& weight,
                                         at::IntArrayRef patch_size, c10::string_view layout,
                                         bool norm_target, c10::string_view error,
                                         c10::string_view reduction) {
  return translate_errors([&] {
    const auto call = prepare_loss_call(pred, target, mask, weight, patch_size, layout, norm_target,
                                        error, reduction);
    check_loss_grad(call, grad, pred);
    return Run(call, grad, pred, target);
  });
}

// The fused forward for one backend: `Run` returns the loss and grad_pred for grad_output = 1.
using loss_fused_run = std::tuple<at::Tensor, at::Tensor> (*)(const loss_call&,
                                                              const at::Tensor& pred,
                                                              const at::Tensor& target);

template <loss_fused_run Run>
std::tuple<at::Tensor, at::Tensor> masked_recon_loss_fused_op(
    const at::Tensor& pred, const at::Tensor& target, const at::Tensor& mask,
    const std::optional<at::Tensor>& weight, at::IntArrayRef patch_size, c10::string_view layout,
    bool norm_target, c10::string_view error, c10::string_view reduction,
    c10::string_view nonfinite) {
  return translate_errors([&] {
    const auto call = prepare_loss_call(pred, target, mask, weight, patch_size, layout, norm_target,
                                        error, reduction, nonfinite);
    TORCH_CHECK_VALUE(call.options.reduction != mwm::loss_reduction::none,
                      "mwm: reduction = 'none': the fused forward and gradient takes a reduced "
                      "loss (mean, mean_eps or sum)");
    return Run(call, pred, target);
  });
}

// The backward of the fused forward for one backend: `Run` turns grad_pred (the gradient for
// grad_output = 1, as the fused forward returned it) into the gradient for `grad`, in place.
using loss_backward_inplace_run = void (*)(const loss_call&, const at::Tensor& grad,
                                           const at::Tensor& pred, const at::Tensor& target,
                                           at::Tensor& grad_pred);

template <loss_backward_inplace_run Run>
void masked_recon_loss_backward_inplace_op(const at::Tensor& grad_pred, const at::Tensor& grad,
                                           const at::Tensor& pred, const at::Tensor& target,
                                           const at::Tensor& mask,
                                           const std::optional<at::Tensor>& weight,
                                           at::IntArrayRef patch_size, c10::string_view layout,
                                           bool norm_target, c10::string_view error,
                                           c10::string_view reduction) {
  translate_errors([&] {
    const auto call = prepare_loss_call(pred, target, mask, weight, patch_size, layout, norm_target,
                                        error, reduction);
    TORCH_CHECK_VALUE(call.options.reduction != mwm::loss_reduction::none,
                      "mwm: reduction = 'none': the fused forward and gradient takes a reduced "
                      "loss (mean, mean_eps or sum)");
    check_loss_grad(call, grad, pred);
    check_same_device(grad_pred, "grad_pred", pred, "pred");
    check_dtype(grad_pred, "grad_pred", pred.scalar_type());
    TORCH_CHECK_VALUE(grad_pred.sizes() == pred.sizes() && grad_pred.is_contiguous(),
                      "mwm: grad_pred has shape ", shape_text(grad_pred),
                      grad_pred.is_contiguous() ? "" : " (not contiguous)",
                      ": expected a contiguous tensor shaped like pred ", shape_text(pred));
    at::Tensor out = grad_pred;
    Run(call, grad, pred, target, out);
    return 0;
  });
}

}  // namespace mwm_bindings
