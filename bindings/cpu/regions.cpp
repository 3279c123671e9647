#include <ATen/Parallel.h>

#include "common/check.h"
#include "common/parse.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {
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
  return translate_errors([&] {
    std::vector<float> cut(thresholds.begin(), thresholds.end());
    mwm::validate_thresholds(cut);
    const auto policy = parse_nan_policy(nan_policy);
    auto regions = at::empty(input.sizes(), input.options().dtype(at::kInt));
    if (input.numel() == 0) return regions;
    mwm::validate_no_non_finite(input.data_ptr<float>(), input.numel(), "scores", policy);
    const int64_t n = input.size(1);
    at::parallel_for(0, input.size(0), 1, [&](int64_t begin, int64_t end) {
      mwm::regions_by_thresholds(input.data_ptr<float>() + begin * n, end - begin, n, cut,
                                 regions.data_ptr<int32_t>() + begin * n, mwm::nan_policy::zero);
    });
    return regions;
  });
}

at::Tensor regions_from_quantiles(const at::Tensor& scores, at::ArrayRef<double> quantiles,
                                  c10::string_view nan_policy) {
  const auto input = checked_scores(scores);
  return translate_errors([&] {
    std::vector<double> shares(quantiles.begin(), quantiles.end());
    mwm::validate_quantile_shares(shares);
    const auto policy = parse_nan_policy(nan_policy);
    auto regions = at::empty(input.sizes(), input.options().dtype(at::kInt));
    if (input.numel() == 0) return regions;
    mwm::validate_no_non_finite(input.data_ptr<float>(), input.numel(), "scores", policy);
    const int64_t n = input.size(1);
    at::parallel_for(0, input.size(0), 1, [&](int64_t begin, int64_t end) {
      mwm::regions_by_quantiles(input.data_ptr<float>() + begin * n, end - begin, n, shares,
                                regions.data_ptr<int32_t>() + begin * n, mwm::nan_policy::zero,
                                1);
    });
    return regions;
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
