// The per-device error slots of the kernels and the points where their errors are raised on
// the host (docs/design.md, "CUDA error contract"). One slot per device, allocated once at the
// first checked launch; a pinned host mirror of it is refreshed by an asynchronous copy after
// a launch, and the next launch looks at the mirror without waiting (an event query).
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "device_checks.cuh"
#include "mwm_cuda.hpp"

namespace mwm {
namespace gpu {
namespace {

struct device_error_state {
  data_error_slot* slot = nullptr;    // device memory, zeros when no error is recorded
  data_error_slot* mirror = nullptr;  // pinned host memory, the slot as last copied
  cudaEvent_t copied = nullptr;       // recorded after the copy into `mirror`
  bool copy_in_flight = false;
  std::mutex mutex;
};

std::mutex states_mutex;
std::vector<std::unique_ptr<device_error_state>> states;
std::atomic<unsigned long long> launches{0};
// -1: not read yet from MWM_SYNC_ERRORS.
std::atomic<int> sync_mode{-1};

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(stream, &status), "cudaStreamIsCapturing");
  return status != cudaStreamCaptureStatusNone;
}

device_error_state& state_of_current_device(cudaStream_t stream) {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(states_mutex);
  if (states.size() <= static_cast<std::size_t>(device)) states.resize(device + 1);
  auto& state = states[device];
  if (state) return *state;
  if (capturing(stream)) {
    throw error("mwm: device " + detail::to_text(device) +
                ": the first mwm CUDA op on a device must run outside CUDA graph capture "
                "(it allocates the device's error slot); run the op once before capturing, as "
                "a warm-up");
  }
  auto fresh = std::make_unique<device_error_state>();
  check_cuda(cudaMalloc(&fresh->slot, sizeof(data_error_slot)), "cudaMalloc (error slot)");
  check_cuda(cudaMemset(fresh->slot, 0, sizeof(data_error_slot)), "cudaMemset (error slot)");
  check_cuda(cudaMallocHost(&fresh->mirror, sizeof(data_error_slot)), "cudaMallocHost");
  std::memset(static_cast<void*>(fresh->mirror), 0, sizeof(data_error_slot));
  check_cuda(cudaEventCreateWithFlags(&fresh->copied, cudaEventDisableTiming), "cudaEventCreate");
  state = std::move(fresh);
  return *state;
}

// Takes the recorded error off the device: the slot is cleared on `stream` and the mirror
// forgotten, so one error is raised once.
[[noreturn]] void raise_and_clear(device_error_state& st, const data_error& e,
                                  cudaStream_t stream) {
  std::memset(static_cast<void*>(st.mirror), 0, sizeof(data_error_slot));
  check_cuda(cudaMemsetAsync(st.slot, 0, sizeof(data_error_slot), stream),
             "cudaMemsetAsync (error slot)");
  raise_data_error(e);
}

// The blocking check, with st.mutex held.
void check_now(device_error_state& st, cudaStream_t stream) {
  if (st.copy_in_flight) {
    check_cuda(cudaEventSynchronize(st.copied), "cudaEventSynchronize (error slot)");
    st.copy_in_flight = false;
  }
  data_error_slot seen;
  check_cuda(cudaMemcpyAsync(&seen, st.slot, sizeof seen, cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync (error slot)");
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize (error slot)");
  if (steps::has_data_error(seen)) raise_and_clear(st, seen.error, stream);
}

}  // namespace

bool sync_errors() {
  int mode = sync_mode.load();
  if (mode < 0) {
    const char* env = std::getenv("MWM_SYNC_ERRORS");
    mode = env != nullptr && env[0] != '\0' && std::strcmp(env, "0") != 0 ? 1 : 0;
    int unread = -1;
    sync_mode.compare_exchange_strong(unread, mode);
    mode = sync_mode.load();
  }
  return mode == 1;
}

void set_sync_errors(bool on) { sync_mode.store(on ? 1 : 0); }

void check_device_errors(cudaStream_t stream) {
  device_error_state& st = state_of_current_device(stream);
  std::lock_guard<std::mutex> lock(st.mutex);
  check_now(st, stream);
}

// Without waiting: raises the error of the last finished copy of the slot, if any; returns
// whether a copy is still under way (st.mutex held).
static bool poll(device_error_state& st, cudaStream_t stream) {
  if (!st.copy_in_flight) return false;
  const cudaError_t status = cudaEventQuery(st.copied);
  if (status == cudaErrorNotReady) return true;
  check_cuda(status, "cudaEventQuery (error slot)");
  st.copy_in_flight = false;
  if (steps::has_data_error(*st.mirror)) raise_and_clear(st, st.mirror->error, stream);
  return false;
}

error_sink begin_checked_launch(cudaStream_t stream) {
  device_error_state& st = state_of_current_device(stream);
  const error_sink sink{st.slot, launches.fetch_add(1) + 1};
  if (capturing(stream)) return sink;  // no queries inside a capture; the graph records
  std::lock_guard<std::mutex> lock(st.mutex);
  poll(st, stream);
  return sink;
}

void end_checked_launch(cudaStream_t stream) {
  device_error_state& st = state_of_current_device(stream);
  if (capturing(stream)) return;
  std::lock_guard<std::mutex> lock(st.mutex);
  if (sync_errors()) {
    check_now(st, stream);
    return;
  }
  if (poll(st, stream)) return;  // one copy at a time; a later call copies this one's errors
  check_cuda(
      cudaMemcpyAsync(st.mirror, st.slot, sizeof(data_error_slot), cudaMemcpyDeviceToHost, stream),
      "cudaMemcpyAsync (error slot)");
  check_cuda(cudaEventRecord(st.copied, stream), "cudaEventRecord (error slot)");
  st.copy_in_flight = true;
}

}  // namespace gpu
}  // namespace mwm
