// The end of the forward: the reduced loss, and the errors of nonfinite = "error" (which patch,
// and why) with the messages the Python layer raises as ValueError.
#pragma once

#include <cstdint>
#include <string>

#include "data_error.hpp"
#include "error.hpp"
#include "loss_forward.hpp"
#include "loss_patch.hpp"

namespace mwm {

namespace detail {

template <typename Acc>
const char* accumulation_name() {
  return sizeof(Acc) == sizeof(float) ? "float32" : "float64";
}

inline std::string patch_place(std::int64_t index, std::int64_t num_patches) {
  const std::int64_t n = num_patches > 0 ? num_patches : 1;
  return "sample " + to_text(index / n) + ", patch " + to_text(index % n);
}

constexpr const char* propagate_hint =
    "; nonfinite = \"propagate\" returns the non-finite loss instead";

// Throws mwm::error describing `fault` at patch `index` (flat b * N + n).
template <typename Acc, typename P, typename T>
[[noreturn]] void throw_loss_fault(const loss_inputs<Acc, P, T>& in, loss_fault fault,
                                   std::int64_t index) {
  const std::string place = patch_place(index, in.geometry.grid.num_patches());
  switch (fault) {
    case loss_fault::target:
      throw mwm::error("mwm: target has a non-finite value (NaN or Inf) in " + place +
                       ", which the loss reads (a masked patch)");
    case loss_fault::weight:
      throw mwm::error("mwm: weight of " + place + " = " + to_text(in.weight[index]) +
                       ": must be finite where mask is True" + propagate_hint);
    case loss_fault::pred:
      throw mwm::error("mwm: pred has a non-finite value (NaN or Inf) in " + place +
                       ", which the loss reads (a masked patch)" + propagate_hint);
    default:
      throw mwm::error("mwm: the loss of " + place + " overflows " + accumulation_name<Acc>() +
                       " (pred, target and weight are finite there: |pred - target| is too "
                       "large)" +
                       propagate_hint);
  }
}

// Throws for the first patch (in flat order) whose loss is not finite; returns when all are.
template <typename Acc, typename P, typename T>
void require_finite_patch_losses(const loss_inputs<Acc, P, T>& in, const Acc* losses,
                                 std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    const loss_fault fault = steps::patch_loss_fault(in, i, losses[i]);
    if (fault != loss_fault::none) throw_loss_fault(in, fault, i);
  }
}

}  // namespace detail

// Whether a reduced loss must be reported under nonfinite "error" once every patch loss is
// known finite: it is not finite, and it is not mean's documented 0/0 of nothing masked. The
// CPU's finish_loss and the GPU's finish kernel decide with this one test.
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE bool reduced_loss_overflows(loss_reduction reduction,
                                                       Acc coefficient_sum, Acc loss) {
  if (detail::finite_value(loss)) return false;
  return !(reduction == loss_reduction::mean && coefficient_sum == Acc(0));
}

// The error of a reduced loss that overflows the accumulation type Acc (its bits in `bound`),
// raised by the CPU and recorded in the device's error slot by the GPU: the same words.
template <typename Acc>
MWM_HOST_DEVICE MWM_INLINE data_error reduced_loss_overflow_error() {
  data_error e;
  e.code = data_error_code::loss_sum_overflow;
  e.bound = static_cast<std::int64_t>(sizeof(Acc) * 8);
  return e;
}

// The end of the forward, after band_losses ran over every band and wrote the per-patch losses
// c * err (count = batch * N of them); `first_bad_target` is the first index band_losses
// reported (or -1). Throws mwm::error for that non-finite target patch; under
// nonfinite_policy::error also when the result would hold a NaN or an infinity, naming the first
// patch whose loss is not finite and why (weight, pred, or an overflow of the error), or the
// overflow of the reduction. The one non-finite result it lets through is `mean`'s 0/0 when
// sum(mask * weight) == 0 (nothing masked; MAE's semantics, documented). Returns the reduced loss;
// 0 for reduction none, whose result is the per-patch losses themselves.
template <typename Acc, typename P, typename T>
Acc finish_loss(const loss_inputs<Acc, P, T>& in, const Acc* losses,
                std::int64_t first_bad_target) {
  if (first_bad_target >= 0) detail::throw_loss_fault(in, loss_fault::target, first_bad_target);
  const std::int64_t count = in.batch * in.geometry.grid.num_patches();
  const bool check = in.options.nonfinite == nonfinite_policy::error;
  if (in.options.reduction == loss_reduction::none) {
    if (check) detail::require_finite_patch_losses(in, losses, count);
    return Acc(0);
  }
  const Acc total = coefficient_total(in.mask, in.weight, count);
  const Acc loss = reduce_patch_losses(losses, count, in.options.reduction, total);
  if (check && !detail::finite_value(loss)) {
    detail::require_finite_patch_losses(in, losses, count);
    if (reduced_loss_overflows(in.options.reduction, total, loss))
      raise_data_error(reduced_loss_overflow_error<Acc>());
  }
  return loss;
}

}  // namespace mwm
