// Tensor checks and Eigen views shared by the CORAL op files (coral_loss*.cpp).
#pragma once

// mwm splits the work itself (x's and y's halves on two threads). Eigen's own OpenMP split of one
// product would nest inside that and, with OpenMP's spinning barriers, stall on a busy machine.
// Only the CORAL files use Eigen in the extension, so every Eigen instantiation agrees.
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <Eigen/Core>

#include <algorithm>

#include <mwm/coral.hpp>

#include "common/check.h"

namespace mwm_bindings {
namespace cpu {

// x and y: 2-D (samples, features), float32/float64, same dtype and device, same width.
inline void check_coral_features(const at::Tensor& x, const at::Tensor& y) {
  check_dim(x, "x", 2);
  check_dim(y, "y", 2);
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                   "mwm: x must be float32 or float64, got ", c10::toString(x.scalar_type()));
  check_dtype(y, "y", x.scalar_type());
  check_same_device(y, "y", x, "x");
  check_size(y, "y", 1, x.size(1), "x.shape[1] (the feature dimension d)");
  TORCH_CHECK_VALUE(x.size(0) >= 2, "mwm: x has shape ", shape_text(x),
                    ": an unbiased covariance needs at least 2 samples (rows)");
  TORCH_CHECK_VALUE(y.size(0) >= 2, "mwm: y has shape ", shape_text(y),
                    ": an unbiased covariance needs at least 2 samples (rows)");
  TORCH_CHECK_VALUE(x.size(1) >= 1, "mwm: x has shape ", shape_text(x),
                    ": needs at least 1 feature (column)");
}

template <typename Scalar>
Eigen::Map<const mwm::feature_rows<Scalar>> feature_view(const at::Tensor& contiguous) {
  return {contiguous.data_ptr<Scalar>(), contiguous.size(0), contiguous.size(1)};
}

template <typename Scalar>
Eigen::Map<mwm::feature_rows<Scalar>> mutable_feature_view(at::Tensor& contiguous) {
  return {contiguous.data_ptr<Scalar>(), contiguous.size(0), contiguous.size(1)};
}

// Threads for the two independent halves of an op (x's and y's covariance or gradient): two when
// the work (multiply-adds) is large enough to pay for starting a thread, one otherwise.
inline int threads_for_pair(int64_t rows, int64_t width) {
  const bool large = rows * width * width >= (int64_t(1) << 20);
  return large ? std::min(2, at::get_num_threads()) : 1;
}

}  // namespace cpu
}  // namespace mwm_bindings
