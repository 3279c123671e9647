#include <mwm_cuda.hpp>

#include "common/check.h"
#include "common/parse.h"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace mwm_bindings {
namespace gpu {
namespace {

at::Tensor checked_scores(const at::Tensor& scores) {
  check_dtype(scores, "scores", at::kFloat);
  check_dim(scores, "scores", 2);
  return scores.contiguous();
}

}  // namespace

at::Tensor regions_from_thresholds(const at::Tensor& scores, at::ArrayRef<double> thresholds,
                                   c10::string_view nan_policy) {
  const auto input = checked_scores(scores);
  const c10::cuda::CUDAGuard guard(scores.device());
  return translate_errors([&] {
    std::vector<float> cut(thresholds.begin(), thresholds.end());
    mwm::validate_thresholds(cut);
    const auto policy = parse_nan_policy(nan_policy);
    auto regions = at::empty(input.sizes(), input.options().dtype(at::kInt));
    if (input.numel() == 0) return regions;
    const auto device_cut = device_copy(cut, input, at::kFloat);
    mwm::gpu::regions_from_thresholds_async(
        input.const_data_ptr<float>(), input.size(0), input.size(1),
        device_cut.const_data_ptr<float>(), static_cast<std::int32_t>(cut.size()), policy,
        regions.mutable_data_ptr<int32_t>(), current_stream());
    return regions;
  });
}

at::Tensor regions_from_quantiles(const at::Tensor& scores, at::ArrayRef<double> quantiles,
                                  c10::string_view nan_policy) {
  const auto input = checked_scores(scores);
  const c10::cuda::CUDAGuard guard(scores.device());
  return translate_errors([&] {
    std::vector<double> shares(quantiles.begin(), quantiles.end());
    mwm::validate_quantile_shares(shares);
    const auto policy = parse_nan_policy(nan_policy);
    auto regions = at::empty(input.sizes(), input.options().dtype(at::kInt));
    if (input.numel() == 0) return regions;
    const int64_t batch = input.size(0), n = input.size(1);
    std::vector<int64_t> top_counts;
    for (double share : shares) top_counts.push_back(mwm::quantile_count(n, share));
    const auto device_counts = device_copy(top_counts, input, at::kLong);
    const std::size_t bytes = mwm::gpu::quantile_workspace_bytes(batch, n);
    auto workspace = workspace_like(input, bytes);
    mwm::gpu::regions_from_quantiles_async(
        input.const_data_ptr<float>(), batch, n, device_counts.const_data_ptr<int64_t>(),
        static_cast<std::int32_t>(top_counts.size()), policy, regions.mutable_data_ptr<int32_t>(),
        workspace.mutable_data_ptr(), bytes, current_stream());
    return regions;
  });
}

}  // namespace gpu
}  // namespace mwm_bindings
