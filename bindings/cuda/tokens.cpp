// gather_tokens, restore_tokens and their backwards on CUDA (one file: the four ops share
// their argument checks with the CPU impls through common/token_args.h).
#include "common/check.h"
#include "common/token_args.h"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace mwm_bindings {
namespace gpu {

at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& ids_keep) {
  check_token_rows(x, "x", "(B, N, C)");
  check_index_rows(ids_keep, "ids_keep", x, "x", "(B, K)");
  const c10::cuda::CUDAGuard guard(x.device());
  return translate_errors([&] {
    const auto ids = ids_keep.contiguous();
    const int64_t batch = x.size(0), slots = ids.size(1), channels = x.size(2);
    auto out = at::empty({batch, slots, channels}, x.options());
    mwm::gpu::gather_tokens_async(float_type_of(x.scalar_type()), x.const_data_ptr(),
                                  token_strides_of(x), ids.const_data_ptr<int64_t>(), batch,
                                  slots, x.size(1), channels, out.mutable_data_ptr(),
                                  token_strides_of(out), current_stream());
    return out;
  });
}

at::Tensor gather_tokens_backward(const at::Tensor& grad, const at::Tensor& ids_keep,
                                  int64_t num_tokens) {
  check_token_rows(grad, "grad", "(B, K, C)");
  check_index_rows(ids_keep, "ids_keep", grad, "grad", "(B, K)");
  TORCH_CHECK_VALUE(ids_keep.size(1) == grad.size(1), "mwm: ids_keep has shape ",
                    shape_text(ids_keep), " but grad has shape ", shape_text(grad),
                    ": K must agree");
  TORCH_CHECK_VALUE(num_tokens >= 0, "mwm: num_tokens = ", num_tokens, ": must be non-negative");
  const c10::cuda::CUDAGuard guard(grad.device());
  return translate_errors([&] {
    const auto ids = ids_keep.contiguous();
    const int64_t batch = grad.size(0), slots = ids.size(1), channels = grad.size(2);
    auto grad_x = at::empty({batch, num_tokens, channels}, grad.options());
    const std::size_t bytes =
        mwm::gpu::gather_tokens_backward_workspace_bytes(batch, slots, num_tokens);
    auto workspace = workspace_like(grad, bytes);
    mwm::gpu::gather_tokens_backward_async(
        float_type_of(grad.scalar_type()), grad.const_data_ptr(), token_strides_of(grad),
        ids.const_data_ptr<int64_t>(), batch, slots, num_tokens, channels,
        grad_x.mutable_data_ptr(), token_strides_of(grad_x), workspace.mutable_data_ptr(), bytes,
        current_stream());
    return grad_x;
  });
}

at::Tensor restore_tokens(const at::Tensor& x_vis, const at::Tensor& ids_restore,
                          const at::Tensor& mask_token,
                          const std::optional<at::Tensor>& num_visible) {
  check_token_rows(x_vis, "x_vis", "(B, K, C)");
  check_index_rows(ids_restore, "ids_restore", x_vis, "x_vis", "(B, N)");
  check_same_device(mask_token, "mask_token", x_vis, "x_vis");
  TORCH_CHECK_TYPE(mask_token.scalar_type() == x_vis.scalar_type(), "mwm: mask_token is ",
                   c10::toString(mask_token.scalar_type()), " but x_vis is ",
                   c10::toString(x_vis.scalar_type()), ": they must agree");
  TORCH_CHECK_VALUE(mask_token.dim() == 1 && mask_token.size(0) == x_vis.size(2),
                    "mwm: mask_token has shape ", shape_text(mask_token), ": expected (C,) = (",
                    x_vis.size(2), ",)");
  const int64_t batch = x_vis.size(0), slots = x_vis.size(1), channels = x_vis.size(2);
  const int64_t num_tokens = ids_restore.size(1);
  TORCH_CHECK_VALUE(slots <= num_tokens, "mwm: x_vis has ", slots, " tokens but ids_restore has ",
                    num_tokens, ": K must not exceed N");
  const auto visible = checked_visible(num_visible, x_vis, "x_vis");
  const c10::cuda::CUDAGuard guard(x_vis.device());
  return translate_errors([&] {
    const auto ids = ids_restore.contiguous();
    auto out = at::empty({batch, num_tokens, channels}, x_vis.options());
    mwm::gpu::restore_tokens_async(float_type_of(x_vis.scalar_type()), x_vis.const_data_ptr(),
                                   token_strides_of(x_vis), ids.const_data_ptr<int64_t>(),
                                   optional_data(visible), batch, slots, num_tokens, channels,
                                   mask_token.const_data_ptr(), mask_token.stride(0),
                                   out.mutable_data_ptr(), token_strides_of(out),
                                   current_stream());
    return out;
  });
}

std::tuple<at::Tensor, at::Tensor> restore_tokens_backward(
    const at::Tensor& grad, const at::Tensor& ids_restore,
    const std::optional<at::Tensor>& num_visible, int64_t num_slots) {
  check_token_rows(grad, "grad", "(B, N, C)");
  check_index_rows(ids_restore, "ids_restore", grad, "grad", "(B, N)");
  TORCH_CHECK_VALUE(ids_restore.size(1) == grad.size(1), "mwm: ids_restore has shape ",
                    shape_text(ids_restore), " but grad has shape ", shape_text(grad),
                    ": N must agree");
  const int64_t batch = grad.size(0), num_tokens = grad.size(1), channels = grad.size(2);
  TORCH_CHECK_VALUE(num_slots >= 0 && num_slots <= num_tokens, "mwm: num_slots = ", num_slots,
                    ": must lie in [0, N = ", num_tokens, "]");
  const auto visible = checked_visible(num_visible, grad, "grad");
  const c10::cuda::CUDAGuard guard(grad.device());
  return translate_errors([&] {
    const auto ids = ids_restore.contiguous();
    auto grad_vis = at::empty({batch, num_slots, channels}, grad.options());
    auto grad_token = at::empty({channels}, grad.options());
    const std::size_t bytes = mwm::gpu::restore_tokens_backward_workspace_bytes(
        batch, num_slots, num_tokens, channels);
    auto workspace = workspace_like(grad, bytes);
    mwm::gpu::restore_tokens_backward_async(
        float_type_of(grad.scalar_type()), grad.const_data_ptr(), token_strides_of(grad),
        ids.const_data_ptr<int64_t>(), optional_data(visible), batch, num_slots, num_tokens,
        channels, grad_vis.mutable_data_ptr(), token_strides_of(grad_vis),
        grad_token.mutable_data_ptr(), workspace.mutable_data_ptr(), bytes, current_stream());
    return std::make_tuple(grad_vis, grad_token);
  });
}

}  // namespace gpu
}  // namespace mwm_bindings
