// The host side of the CUDA error contract as two tensor-free ops (docs/design.md, "CUDA error
// contract"): mwm.check_device_errors() and mwm.set_sync_errors() call them. They exist in
// CUDA builds only; python/mwm/device_errors.py does nothing without them.
#include <torch/library.h>

#include "common/check.h"
#include "cuda/device.h"

namespace mwm_bindings {
namespace gpu {
namespace {

void check_device_errors(int64_t device) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  translate_errors([&] { mwm::gpu::check_device_errors(current_stream()); });
}

void set_sync_errors(bool on) { mwm::gpu::set_sync_errors(on); }

}  // namespace
}  // namespace gpu
}  // namespace mwm_bindings

// Tensor-free, so a fragment with catch-all kernels rather than the per-device blocks.
TORCH_LIBRARY_FRAGMENT(mwm, m) {
  m.def("_check_device_errors(int device) -> ()", &mwm_bindings::gpu::check_device_errors);
  m.def("_set_sync_errors(bool on) -> ()", &mwm_bindings::gpu::set_sync_errors);
}
