// Error reporting of the kernels and launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "mwm/heatmap.hpp"

#ifndef CUB_WRAPPED_NAMESPACE
// torch ships its own CUB; two copies in one process must not share symbols.
#error "mwm's CUDA sources are compiled with -DCUB_WRAPPED_NAMESPACE=mwm_cub (cuda/CMakeLists.txt)"
#endif

namespace mwm {
namespace gpu {

// Invalid data found by a kernel. The host cannot hear of it without a synchronization, so the
// thread prints the message the CPU path would raise and traps: the stream fails with an
// unspecified launch failure, as it does after PyTorch's device-side asserts.
__device__ inline void fail_integer(const char* argument, std::int64_t index, std::int64_t value,
                                    const char* requirement) {
  printf("mwm: %s[%lld] = %lld: %s\n", argument, static_cast<long long>(index),
         static_cast<long long>(value), requirement);
  __trap();
}

__device__ inline void fail_non_finite(const char* argument, std::int64_t index, float value) {
  printf("mwm: %s[%lld] = %f: NaN or infinity (pass nan_policy=zero to treat it as zero)\n",
         argument, static_cast<long long>(index), static_cast<double>(value));
  __trap();
}

// Reads values[index], trapping on NaN or infinity when the policy says they are errors.
__device__ inline float checked_value(const float* values, std::int64_t index,
                                      nan_policy non_finite, const char* argument) {
  const float v = values[index];
  if (non_finite == nan_policy::error && !detail::is_finite_value(v))
    fail_non_finite(argument, index, v);
  return v;
}

// Raised on the host when an enqueue fails (bad configuration, a sticky error from before).
inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("mwm: CUDA error in ") + what + ": " +
                             cudaGetErrorString(status));
  }
}

inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

// Blocks of `threads` covering `count` elements, for grid-stride loops that cover the rest.
inline unsigned int blocks_for(std::int64_t count, int threads) {
  const std::int64_t wanted = (count + threads - 1) / threads;
  const std::int64_t limit = std::int64_t(1) << 20;  // grid-stride loops cover the remainder
  return static_cast<unsigned int>(wanted < 1 ? 1 : (wanted > limit ? limit : wanted));
}

// Device scratch carved out of the caller's workspace, each piece aligned to 256 bytes. With a
// null base it only counts, so one function both sizes and lays out a workspace.
class workspace_carver {
 public:
  explicit workspace_carver(void* base) : base_(static_cast<char*>(base)) {}

  template <typename T>
  T* take(std::int64_t count) {
    const std::size_t at = used_;
    used_ += (static_cast<std::size_t>(count) * sizeof(T) + 255) / 256 * 256;
    return base_ ? reinterpret_cast<T*>(base_ + at) : nullptr;
  }

  void* take_bytes(std::size_t bytes) { return take<char>(static_cast<std::int64_t>(bytes)); }

  std::size_t used() const { return used_; }

 private:
  char* base_;
  std::size_t used_ = 0;
};

inline void require_workspace(std::size_t given, std::size_t needed, const char* launcher) {
  if (given < needed) {
    throw error(std::string("mwm: workspace_bytes = ") + std::to_string(given) + ": " +
                launcher + " needs " + std::to_string(needed) + " bytes");
  }
}

}  // namespace gpu
}  // namespace mwm
