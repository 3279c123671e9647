// The tensor checks the token ops (ops/tokens.h) and the packed-token ops (ops/pack_tokens.h)
// share: token rows of a floating dtype, int64 index rows, the mask token.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <mwm/tokens.hpp>

#include <tuple>

#include "common/check.h"

namespace mwm_bindings {

inline void check_token_float(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
                   "mwm: ", name, " must be float32, float64, float16 or bfloat16, got ",
                   c10::toString(s));
}

// Token rows of a floating dtype with `dim` dimensions: (B, tokens, C), or (T, C) when packed.
inline void check_token_rows(const at::Tensor& t, const char* name, int64_t dim,
                             const char* shape) {
  check_token_float(t, name);
  TORCH_CHECK_VALUE(t.dim() == dim, "mwm: ", name, " has shape ", shape_text(t), ": expected ",
                    shape);
}

// An index tensor (B, width) int64 on the device of `ref`.
inline void check_index_rows(const at::Tensor& ids, const char* name, const at::Tensor& ref,
                             const char* ref_name, int64_t batch, const char* shape) {
  check_dtype(ids, name, at::kLong);
  check_same_device(ids, name, ref, ref_name);
  TORCH_CHECK_VALUE(ids.dim() == 2 && ids.size(0) == batch, "mwm: ", name, " has shape ",
                    shape_text(ids), ": expected ", shape, " with B = ", batch);
}

// mask_token (C,) of the dtype and on the device of `rows`, whose last dimension is C.
inline void check_mask_token(const at::Tensor& mask_token, const at::Tensor& rows,
                             const char* rows_name) {
  check_same_device(mask_token, "mask_token", rows, rows_name);
  TORCH_CHECK_TYPE(mask_token.scalar_type() == rows.scalar_type(), "mwm: mask_token is ",
                   c10::toString(mask_token.scalar_type()), " but ", rows_name, " is ",
                   c10::toString(rows.scalar_type()), ": they must agree");
  const int64_t channels = rows.size(-1);
  TORCH_CHECK_VALUE(mask_token.dim() == 1 && mask_token.size(0) == channels,
                    "mwm: mask_token has shape ", shape_text(mask_token), ": expected (C,) = (",
                    channels, ",)");
}

// The core's element strides of token rows (B, tokens, C).
inline mwm::token_strides token_strides_of(const at::Tensor& t) {
  return mwm::token_strides{t.stride(0), t.stride(1), t.stride(2)};
}

// A checked call of any token or packed-token op. `rows` is the op's first tensor (x, x_vis,
// packed or grad); `slots` is K, `num_tokens` is N, `num_rows` the packed row count T.
struct token_call {
  explicit token_call(const at::Tensor& first) : rows(first) {}
  const at::Tensor& rows;
  at::Tensor ids;         // ids_keep or ids_restore, contiguous
  at::Tensor visible;     // num_visible, contiguous; undefined when not given
  at::Tensor cu_seqlens;  // contiguous int32 (B + 1); undefined for the padded ops and pack_tokens
  const at::Tensor* mask_token = nullptr;
  int64_t batch = 0, slots = 0, num_tokens = 0, channels = 0, num_rows = 0;
};

using token_run = at::Tensor (*)(const token_call&);
using token_pair_run = std::tuple<at::Tensor, at::Tensor> (*)(const token_call&);

// The checked call of an op on x (B, N, C) and ids_keep (B, K): gather_tokens, pack_tokens.
inline token_call keep_ids_call(const at::Tensor& x, const at::Tensor& ids_keep) {
  check_token_rows(x, "x", 3, "(B, N, C)");
  check_index_rows(ids_keep, "ids_keep", x, "x", x.size(0), "(B, K)");
  token_call call(x);
  call.ids = ids_keep.contiguous();
  call.batch = x.size(0);
  call.slots = ids_keep.size(1);
  call.num_tokens = x.size(1);
  call.channels = x.size(2);
  return call;
}

}  // namespace mwm_bindings
