// What every CUDA impl needs: the tensors' device made current, its current stream, and
// device scratch memory from PyTorch's caching allocator.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <mwm_cuda.hpp>

#include <cstddef>

namespace mwm_bindings {

// c10's stream header rather than ATen/cuda/CUDAContext.h, which pulls in cuBLAS and cuSPARSE
// headers that a minimal toolkit does not have.
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Scratch bytes on the device of `like`; the caching allocator makes this cheap and it never
// synchronizes.
inline at::Tensor workspace_like(const at::Tensor& like, std::size_t bytes) {
  return at::empty({static_cast<int64_t>(bytes > 0 ? bytes : 1)}, like.options().dtype(at::kByte));
}

// The launchers' name for a floating dtype (float32, float64, float16, bfloat16).
inline mwm::gpu::float_type float_type_of(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return mwm::gpu::float_type::float32;
    case at::kDouble:
      return mwm::gpu::float_type::float64;
    case at::kHalf:
      return mwm::gpu::float_type::float16;
    case at::kBFloat16:
      return mwm::gpu::float_type::bfloat16;
    default:
      TORCH_CHECK_TYPE(false, "mwm: unsupported dtype ", c10::toString(type));
  }
}

}  // namespace mwm_bindings
