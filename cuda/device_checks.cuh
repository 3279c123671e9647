// Error reporting of the kernels and launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "launch_plans.hpp"
#include "mwm/data_error.hpp"
#include "mwm/heatmap.hpp"

#ifndef CUB_WRAPPED_NAMESPACE
// torch ships its own CUB; two copies in one process must not share symbols.
#error "mwm's CUDA sources are compiled with -DCUB_WRAPPED_NAMESPACE=mwm_cub (cuda/CMakeLists.txt)"
#endif

namespace mwm {
namespace gpu {

// Bad data found by a kernel (an id out of range, a NaN under nan_policy::error) never traps:
// the thread records it into the device's error slot and the kernel goes on with a safe value,
// so the stream and the CUDA context stay usable and the host raises the CPU path's message
// later (mwm_cuda.hpp, "data errors"; docs/design.md, "CUDA error contract").
struct error_sink {
  data_error_slot* slot = nullptr;
  unsigned long long launch = 0;  // the launcher call: the first call that records owns the slot
};

// Records `e` under `key` (data_error_key) unless the slot holds an error of an earlier
// launcher call or one with a smaller key: the first error of the first failing call is kept
// whatever order the threads run in. The lock orders the writers of `error`; only failing
// threads take it.
__device__ inline void record_data_error(const error_sink& sink, std::uint64_t key,
                                         const data_error& e) {
  data_error_slot* s = sink.slot;
  const unsigned long long owner = atomicCAS(&s->owner, 0ull, sink.launch);
  if (owner != 0ull && owner != sink.launch) return;
  const auto inverted = static_cast<unsigned long long>(~key);
  if (atomicMax(&s->inverted_key, inverted) >= inverted) return;
  while (atomicCAS(&s->lock, 0u, 1u) != 0u) {
  }
  __threadfence();
  // A thread with a smaller key may have raised inverted_key since: it writes after us.
  if (atomicMax(&s->inverted_key, 0ull) == inverted) s->error = e;
  __threadfence();
  atomicExch(&s->lock, 0u);
}

// Reads values[index]; a NaN or infinity under nan_policy::error is recorded and read as 0.
// `phase` orders it after the checks the CPU path runs first (data_error_key).
__device__ inline float checked_value(const float* values, std::int64_t index,
                                      nan_policy non_finite, data_argument argument,
                                      const error_sink& errors, int phase = 0) {
  const float v = values[index];
  if (non_finite == nan_policy::zero) return detail::finite_or_zero(v);
  data_error bad;
  if (steps::finite_or_error(v, argument, index, &bad)) return v;
  record_data_error(errors, steps::data_error_key(phase, index), bad);
  return 0.0f;
}

// The launchers' side of the slot (device_errors.cu). A launcher whose kernels check data
// calls begin_checked_launch first (it raises, without waiting, an error that an earlier call
// recorded and that has reached the host) and end_checked_launch after its last kernel (it
// starts the copy of the slot to the host, or, under sync errors, waits and raises).
error_sink begin_checked_launch(cudaStream_t stream);
void end_checked_launch(cudaStream_t stream);

// Raised on the host when an enqueue fails (bad configuration, a sticky error from before).
inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("mwm: CUDA error in ") + what + ": " +
                             cudaGetErrorString(status));
  }
}

inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

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
    throw error(std::string("mwm: workspace_bytes = ") + std::to_string(given) + ": " + launcher +
                " needs " + std::to_string(needed) + " bytes");
  }
}

}  // namespace gpu
}  // namespace mwm
