// The kernels of regions_from_thresholds and regions_from_quantiles: mwm::tensors' drivers on
// the CPU and, in a CUDA build, cuda/maps.cu's launchers. Schemas and checks: ops/regions.h.
#include <torch/library.h>

#include <mwm/torch.hpp>

#include "ops/regions.h"

#ifdef MWM_WITH_CUDA
#include <algorithm>
#include <mwm_cuda.hpp>
#include <vector>
#include "cuda/device.h"
#endif

namespace mwm_bindings {
namespace {
namespace on_cpu {

at::Tensor from_thresholds(const regions_call& call) {
  return mwm::tensors::regions_from_thresholds(
      call.scores, std::vector<float>(call.cuts.begin(), call.cuts.end()), call.non_finite);
}

at::Tensor from_quantiles(const regions_call& call) {
  return mwm::tensors::regions_from_quantiles(call.scores, call.cuts, call.non_finite);
}

}  // namespace on_cpu

#ifdef MWM_WITH_CUDA
namespace on_cuda {

// Thresholds and quantile counts travel by value in the kernel's parameters: no copy to the
// device per call, so the ops can be captured in a CUDA graph.
template <typename T, typename Source>
mwm::gpu::host_values<T> launch_values(const std::vector<Source>& values, const char* name) {
  TORCH_CHECK_VALUE(static_cast<int64_t>(values.size()) <= mwm::gpu::max_host_values, "mwm: ", name,
                    " size = ", values.size(), ": the CUDA op takes at most ",
                    mwm::gpu::max_host_values, " (they travel in the kernel's parameters)");
  mwm::gpu::host_values<T> out;
  out.count = static_cast<std::int32_t>(values.size());
  std::copy(values.begin(), values.end(), out.values);
  return out;
}

at::Tensor from_thresholds(const regions_call& call) {
  const auto input = call.scores.contiguous();
  const c10::cuda::CUDAGuard guard(input.device());
  std::vector<float> cut(call.cuts.begin(), call.cuts.end());
  mwm::validate_thresholds(cut);
  auto regions = at::empty(input.sizes(), input.options().dtype(at::kInt));
  if (input.numel() == 0) return regions;
  mwm::gpu::regions_from_thresholds_async(input.const_data_ptr<float>(), input.size(0),
                                          input.size(1), launch_values<float>(cut, "thresholds"),
                                          call.non_finite, regions.mutable_data_ptr<int32_t>(),
                                          current_stream());
  return regions;
}

at::Tensor from_quantiles(const regions_call& call) {
  const auto input = call.scores.contiguous();
  const c10::cuda::CUDAGuard guard(input.device());
  mwm::validate_quantile_shares(call.cuts);
  auto regions = at::empty(input.sizes(), input.options().dtype(at::kInt));
  if (input.numel() == 0) return regions;
  const int64_t batch = input.size(0), n = input.size(1);
  std::vector<int64_t> top_counts;
  for (double share : call.cuts) top_counts.push_back(mwm::steps::quantile_count(n, share));
  const auto counts = launch_values<std::int64_t>(top_counts, "quantiles");
  const std::size_t bytes = mwm::gpu::quantile_workspace_bytes(batch, n);
  auto workspace = workspace_like(input, bytes);
  mwm::gpu::regions_from_quantiles_async(input.const_data_ptr<float>(), batch, n, counts,
                                         call.non_finite, regions.mutable_data_ptr<int32_t>(),
                                         workspace.mutable_data_ptr(), bytes, current_stream());
  return regions;
}

}  // namespace on_cuda
#endif
}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) {
  m.def(mwm_bindings::regions_from_thresholds_schema);
  m.def(mwm_bindings::regions_from_quantiles_schema);
}

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("regions_from_thresholds", &regions_op<on_cpu::from_thresholds>);
  m.impl("regions_from_quantiles", &regions_op<on_cpu::from_quantiles>);
}

#ifdef MWM_WITH_CUDA
TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("regions_from_thresholds", &regions_op<on_cuda::from_thresholds>);
  m.impl("regions_from_quantiles", &regions_op<on_cuda::from_quantiles>);
}
#endif
