// The kernels of upsample_patch_map: mwm::upsample_patch_map per sample on the CPU and, in a
// CUDA build, cuda/maps.cu's launcher. Schema and checks: ops/upsample_patch_map.h.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/upsample_patch_map.h"

#ifdef MWM_WITH_CUDA
#include <mwm_cuda.hpp>
#include "cuda/device.h"
#endif

namespace mwm_bindings {
namespace {
namespace on_cpu {

at::Tensor run(const upsample_call& call) {
  auto out = at::empty(call.out_shape, call.values.options());
  const int64_t n = call.grid.num_patches();
  const int64_t cells = n * call.depth_factor * call.height_factor * call.width_factor;
  const auto* in = reinterpret_cast<const std::uint8_t*>(call.values.const_data_ptr<bool>());
  auto* dst = reinterpret_cast<std::uint8_t*>(out.mutable_data_ptr<bool>());
  at::parallel_for(0, call.values.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      mwm::upsample_patch_map(in + b * n, call.grid, call.depth_factor, call.height_factor,
                              call.width_factor, call.invert, dst + b * cells);
    }
  });
  return out;
}

}  // namespace on_cpu

#ifdef MWM_WITH_CUDA
namespace on_cuda {

at::Tensor run(const upsample_call& call) {
  const c10::cuda::CUDAGuard guard(call.values.device());
  auto out = at::empty(call.out_shape, call.values.options());
  mwm::gpu::upsample_patch_map_async(
      reinterpret_cast<const std::uint8_t*>(call.values.const_data_ptr<bool>()),
      call.values.size(0), call.grid, call.depth_factor, call.height_factor, call.width_factor,
      call.invert, reinterpret_cast<std::uint8_t*>(out.mutable_data_ptr<bool>()), current_stream());
  return out;
}

}  // namespace on_cuda
#endif
}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::upsample_patch_map_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("upsample_patch_map", &upsample_patch_map_op<on_cpu::run>);
}

#ifdef MWM_WITH_CUDA
TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("upsample_patch_map", &upsample_patch_map_op<on_cuda::run>);
}
#endif
