// The CUDA kernel of upsample_patch_map.
#include <torch/library.h>

#include <mwm_cuda.hpp>

#include "cuda/device.h"
#include "ops/upsample_patch_map.h"

namespace mwm_bindings {
namespace {

at::Tensor run(const upsample_call& call) {
  const c10::cuda::CUDAGuard guard(call.values.device());
  auto out = at::empty(call.out_shape, call.values.options());
  mwm::gpu::upsample_patch_map_async(
      reinterpret_cast<const std::uint8_t*>(call.values.const_data_ptr<bool>()),
      call.values.size(0), call.grid, call.depth_factor, call.height_factor, call.width_factor,
      call.invert, reinterpret_cast<std::uint8_t*>(out.mutable_data_ptr<bool>()), current_stream());
  return out;
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  m.impl("upsample_patch_map", &mwm_bindings::upsample_patch_map_op<mwm_bindings::run>);
}
