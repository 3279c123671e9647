#include <mwm/torch.hpp>

#include "common/check.h"
#include "common/parse.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

at::Tensor regions_from_thresholds(const at::Tensor& scores, at::ArrayRef<double> thresholds,
                                   c10::string_view nan_policy) {
  check_dtype(scores, "scores", at::kFloat);
  check_dim(scores, "scores", 2);
  return translate_errors([&] {
    return mwm::tensors::regions_from_thresholds(
        scores, std::vector<float>(thresholds.begin(), thresholds.end()),
        parse_nan_policy(nan_policy));
  });
}

at::Tensor regions_from_quantiles(const at::Tensor& scores, at::ArrayRef<double> quantiles,
                                  c10::string_view nan_policy) {
  check_dtype(scores, "scores", at::kFloat);
  check_dim(scores, "scores", 2);
  return translate_errors([&] {
    return mwm::tensors::regions_from_quantiles(
        scores, std::vector<double>(quantiles.begin(), quantiles.end()),
        parse_nan_policy(nan_policy));
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
