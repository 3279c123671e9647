// regions_from_thresholds / regions_from_quantiles: scores (B, N) float32 -> region indices
// (B, N) int32. Schemas, the shared checks, and the op entries that run a backend on the
// checked call (cpu/regions.cpp, cuda/regions.cpp).
#pragma once

#include <ATen/ATen.h>

#include <mwm/masking.hpp>

#include <vector>

#include "common/check.h"
#include "common/parse.h"

namespace mwm_bindings {

inline constexpr char regions_from_thresholds_schema[] =
    "regions_from_thresholds(Tensor scores, float[] thresholds, str nan_policy) -> Tensor";
inline constexpr char regions_from_quantiles_schema[] =
    "regions_from_quantiles(Tensor scores, float[] quantiles, str nan_policy) -> Tensor";

// `cuts` holds the thresholds or the quantile shares, as the op received them.
struct regions_call {
  explicit regions_call(const at::Tensor& given) : scores(given) {}
  const at::Tensor& scores;
  std::vector<double> cuts;
  mwm::nan_policy non_finite = mwm::nan_policy::error;
};

using regions_run = at::Tensor (*)(const regions_call&);

template <regions_run Run>
at::Tensor regions_op(const at::Tensor& scores, at::ArrayRef<double> cuts,
                      c10::string_view nan_policy) {
  check_dtype(scores, "scores", at::kFloat);
  check_dim(scores, "scores", 2);
  return translate_errors([&] {
    regions_call call(scores);
    call.cuts = cuts.vec();
    call.non_finite = parse_nan_policy(nan_policy);
    return Run(call);
  });
}

}  // namespace mwm_bindings
