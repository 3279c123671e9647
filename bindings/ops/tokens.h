// The token ops: gather_tokens picks x (B, N, C) at ids_keep (B, K) (-1 gathers zeros);
// restore_tokens builds MAE's decoder input from x_vis (B, K, C), ids_restore (B, N),
// mask_token (C) and optional visible counts (B,); _gather_tokens_backward and
// _restore_tokens_backward are their private gradients. The schemas, the checks both backends
// share, and the op entries that run a backend on the checked call (ops/tokens.cpp).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <mwm/masking.hpp>

#include <optional>
#include <tuple>

#include "common/token_checks.h"

namespace mwm_bindings {

inline constexpr char gather_tokens_schema[] = "gather_tokens(Tensor x, Tensor ids_keep) -> Tensor";
inline constexpr char gather_tokens_backward_schema[] =
    "_gather_tokens_backward(Tensor grad, Tensor ids_keep, int num_tokens) -> Tensor";
inline constexpr char restore_tokens_schema[] =
    "restore_tokens(Tensor x_vis, Tensor ids_restore, Tensor mask_token, "
    "Tensor? num_visible) -> Tensor";
inline constexpr char restore_tokens_backward_schema[] =
    "_restore_tokens_backward(Tensor grad, Tensor ids_restore, Tensor? num_visible, "
    "int num_slots) -> (Tensor grad_x_vis, Tensor grad_mask_token)";

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

template <token_run Run>
at::Tensor gather_tokens_op(const at::Tensor& x, const at::Tensor& ids_keep) {
  const token_call call = keep_ids_call(x, ids_keep);
  return translate_errors([&] { return Run(call); });
}

template <token_run Run>
at::Tensor gather_tokens_backward_op(const at::Tensor& grad, const at::Tensor& ids_keep,
                                     int64_t num_tokens) {
  check_token_rows(grad, "grad", 3, "(B, K, C)");
  check_index_rows(ids_keep, "ids_keep", grad, "grad", grad.size(0), "(B, K)");
  TORCH_CHECK_VALUE(ids_keep.size(1) == grad.size(1), "mwm: ids_keep has shape ",
                    shape_text(ids_keep), " but grad has shape ", shape_text(grad),
                    ": K must agree");
  TORCH_CHECK_VALUE(num_tokens >= 0, "mwm: num_tokens = ", num_tokens, ": must be non-negative");
  return translate_errors([&] {
    token_call call(grad);
    call.ids = ids_keep.contiguous();
    call.batch = grad.size(0);
    call.slots = ids_keep.size(1);
    call.num_tokens = num_tokens;
    call.channels = grad.size(2);
    return Run(call);
  });
}

template <token_run Run>
at::Tensor restore_tokens_op(const at::Tensor& x_vis, const at::Tensor& ids_restore,
                             const at::Tensor& mask_token,
                             const std::optional<at::Tensor>& num_visible) {
  check_token_rows(x_vis, "x_vis", 3, "(B, K, C)");
  check_index_rows(ids_restore, "ids_restore", x_vis, "x_vis", x_vis.size(0), "(B, N)");
  check_mask_token(mask_token, x_vis, "x_vis");
  TORCH_CHECK_VALUE(x_vis.size(1) <= ids_restore.size(1), "mwm: x_vis has ", x_vis.size(1),
                    " tokens but ids_restore has ", ids_restore.size(1), ": K must not exceed N");
  auto visible = checked_visible(num_visible, x_vis, "x_vis");
  return translate_errors([&] {
    token_call call(x_vis);
    call.ids = ids_restore.contiguous();
    call.visible = visible;
    call.mask_token = &mask_token;
    call.batch = x_vis.size(0);
    call.slots = x_vis.size(1);
    call.num_tokens = ids_restore.size(1);
    call.channels = x_vis.size(2);
    return Run(call);
  });
}

template <token_pair_run Run>
std::tuple<at::Tensor, at::Tensor> restore_tokens_backward_op(
    const at::Tensor& grad, const at::Tensor& ids_restore,
    const std::optional<at::Tensor>& num_visible, int64_t num_slots) {
  check_token_rows(grad, "grad", 3, "(B, N, C)");
  check_index_rows(ids_restore, "ids_restore", grad, "grad", grad.size(0), "(B, N)");
  TORCH_CHECK_VALUE(ids_restore.size(1) == grad.size(1), "mwm: ids_restore has shape ",
                    shape_text(ids_restore), " but grad has shape ", shape_text(grad),
                    ": N must agree");
  TORCH_CHECK_VALUE(num_slots >= 0 && num_slots <= grad.size(1), "mwm: num_slots = ", num_slots,
                    ": must lie in [0, N = ", grad.size(1), "]");
  auto visible = checked_visible(num_visible, grad, "grad");
  return translate_errors([&] {
    token_call call(grad);
    call.ids = ids_restore.contiguous();
    call.visible = visible;
    call.batch = grad.size(0);
    call.slots = num_slots;
    call.num_tokens = grad.size(1);
    call.channels = grad.size(2);
    return Run(call);
  });
}

}  // namespace mwm_bindings
