// The packed-token ops: pack_tokens puts the visible tokens of x (B, N, C) at ids_keep (B, K),
// -1 padded at the end of each row, one after the other into (T, C) rows with int32 cu_seqlens
// (B + 1); unpack_tokens builds MAE's decoder input (B, N, C) from those rows, ids_restore and
// a mask token. _pack_tokens_backward and _unpack_tokens_backward are their private gradients.
// The schemas, the checks both backends share, and the op entries that run a backend on the
// checked call (ops/pack_tokens.cpp). The maths is in mwm/tokens.hpp.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <mwm/masking.hpp>

#include <tuple>

#include "common/token_checks.h"

namespace mwm_bindings {

inline constexpr char pack_tokens_schema[] =
    "pack_tokens(Tensor x, Tensor ids_keep) -> (Tensor packed, Tensor cu_seqlens)";
inline constexpr char pack_tokens_backward_schema[] =
    "_pack_tokens_backward(Tensor grad, Tensor ids_keep, Tensor cu_seqlens, int num_tokens) "
    "-> Tensor";
inline constexpr char unpack_tokens_schema[] =
    "unpack_tokens(Tensor packed, Tensor cu_seqlens, Tensor ids_restore, Tensor mask_token) "
    "-> Tensor";
inline constexpr char unpack_tokens_backward_schema[] =
    "_unpack_tokens_backward(Tensor grad, Tensor cu_seqlens, Tensor ids_restore, SymInt num_rows) "
    "-> (Tensor grad_packed, Tensor grad_mask_token)";

// cu_seqlens (B + 1,) int32 on the device of `ref`; returns B.
inline int64_t check_cu_seqlens(const at::Tensor& cu, const at::Tensor& ref, const char* ref_name) {
  check_dtype(cu, "cu_seqlens", at::kInt);
  check_same_device(cu, "cu_seqlens", ref, ref_name);
  TORCH_CHECK_VALUE(cu.dim() == 1 && cu.size(0) >= 1, "mwm: cu_seqlens has shape ", shape_text(cu),
                    ": expected (B + 1,)");
  return cu.size(0) - 1;
}

// Packed rows address as (batch 0, row, channel) in the core's token_strides.
inline mwm::token_strides packed_strides_of(const at::Tensor& t) {
  return mwm::token_strides{0, t.stride(0), t.stride(1)};
}

template <token_pair_run Run>
std::tuple<at::Tensor, at::Tensor> pack_tokens_op(const at::Tensor& x, const at::Tensor& ids_keep) {
  const token_call call = keep_ids_call(x, ids_keep);
  return translate_errors([&] { return Run(call); });
}

template <token_run Run>
at::Tensor pack_tokens_backward_op(const at::Tensor& grad, const at::Tensor& ids_keep,
                                   const at::Tensor& cu_seqlens, int64_t num_tokens) {
  check_token_rows(grad, "grad", 2, "(T, C)");
  const int64_t batch = check_cu_seqlens(cu_seqlens, grad, "grad");
  check_index_rows(ids_keep, "ids_keep", grad, "grad", batch, "(B, K)");
  TORCH_CHECK_VALUE(num_tokens >= 0, "mwm: num_tokens = ", num_tokens, ": must be non-negative");
  return translate_errors([&] {
    token_call call(grad);
    call.ids = ids_keep.contiguous();
    call.cu_seqlens = cu_seqlens.contiguous();
    call.batch = batch;
    call.slots = ids_keep.size(1);
    call.num_tokens = num_tokens;
    call.channels = grad.size(1);
    call.num_rows = grad.size(0);
    return Run(call);
  });
}

template <token_run Run>
at::Tensor unpack_tokens_op(const at::Tensor& packed, const at::Tensor& cu_seqlens,
                            const at::Tensor& ids_restore, const at::Tensor& mask_token) {
  check_token_rows(packed, "packed", 2, "(T, C)");
  const int64_t batch = check_cu_seqlens(cu_seqlens, packed, "packed");
  check_index_rows(ids_restore, "ids_restore", packed, "packed", batch, "(B, N)");
  check_mask_token(mask_token, packed, "packed");
  return translate_errors([&] {
    token_call call(packed);
    call.ids = ids_restore.contiguous();
    call.cu_seqlens = cu_seqlens.contiguous();
    call.mask_token = &mask_token;
    call.batch = batch;
    call.num_tokens = ids_restore.size(1);
    call.channels = packed.size(1);
    call.num_rows = packed.size(0);
    return Run(call);
  });
}

template <token_pair_run Run>
std::tuple<at::Tensor, at::Tensor> unpack_tokens_backward_op(const at::Tensor& grad,
                                                             const at::Tensor& cu_seqlens,
                                                             const at::Tensor& ids_restore,
                                                             c10::SymInt num_rows) {
  check_token_rows(grad, "grad", 3, "(B, N, C)");
  const int64_t batch = check_cu_seqlens(cu_seqlens, grad, "grad");
  TORCH_CHECK_VALUE(grad.size(0) == batch, "mwm: grad has shape ", shape_text(grad),
                    " but cu_seqlens holds ", batch, " samples");
  check_index_rows(ids_restore, "ids_restore", grad, "grad", batch, "(B, N)");
  TORCH_CHECK_VALUE(ids_restore.size(1) == grad.size(1), "mwm: ids_restore has shape ",
                    shape_text(ids_restore), " but grad has shape ", shape_text(grad),
                    ": N must agree");
  const int64_t rows = num_rows.guard_int(__FILE__, __LINE__);
  TORCH_CHECK_VALUE(rows >= 0, "mwm: num_rows = ", rows, ": must be non-negative");
  return translate_errors([&] {
    token_call call(grad);
    call.ids = ids_restore.contiguous();
    call.cu_seqlens = cu_seqlens.contiguous();
    call.batch = batch;
    call.num_tokens = grad.size(1);
    call.channels = grad.size(2);
    call.num_rows = rows;
    return Run(call);
  });
}

}  // namespace mwm_bindings
