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

#include "ops/coral_loss.h"

namespace mwm_bindings {

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

}  // namespace mwm_bindings
