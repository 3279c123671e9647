// Validation of the token ops' arguments (shared by the CPU and CUDA impls).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <mwm/masking.hpp>

#include <optional>

#include "common/check.h"

namespace mwm_bindings {

inline void check_token_float(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
                   "mwm: ", name, " must be float32, float64, float16 or bfloat16, got ",
                   c10::toString(s));
}

inline mwm::token_strides token_strides_of(const at::Tensor& t) {
  return mwm::token_strides{t.stride(0), t.stride(1), t.stride(2)};
}

// Token rows (B, tokens, C) of a floating dtype.
inline void check_token_rows(const at::Tensor& t, const char* name, const char* shape) {
  check_token_float(t, name);
  TORCH_CHECK_VALUE(t.dim() == 3, "mwm: ", name, " has shape ", shape_text(t), ": expected ",
                    shape);
}

// An index tensor (B, width) int64 on the device of `ref`.
inline void check_index_rows(const at::Tensor& ids, const char* name, const at::Tensor& ref,
                             const char* ref_name, const char* shape) {
  check_dtype(ids, name, at::kLong);
  check_same_device(ids, name, ref, ref_name);
  TORCH_CHECK_VALUE(ids.dim() == 2 && ids.size(0) == ref.size(0), "mwm: ", name, " has shape ",
                    shape_text(ids), ": expected ", shape, " with B = ", ref.size(0));
}

// The per-sample visible counts (B,) int64, when given.
inline at::Tensor checked_visible(const std::optional<at::Tensor>& num_visible,
                                  const at::Tensor& ref, const char* ref_name) {
  if (!num_visible.has_value()) return at::Tensor();
  check_dtype(*num_visible, "num_visible", at::kLong);
  check_same_device(*num_visible, "num_visible", ref, ref_name);
  TORCH_CHECK_VALUE(num_visible->dim() == 1 && num_visible->size(0) == ref.size(0),
                    "mwm: num_visible has shape ", shape_text(*num_visible), ": expected (B,) = (",
                    ref.size(0), ",)");
  return num_visible->contiguous();
}

inline const int64_t* optional_data(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<int64_t>() : nullptr;
}

}  // namespace mwm_bindings
