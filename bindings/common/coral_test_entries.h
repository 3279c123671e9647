// CORAL entries for tests/python/test_coral_aten.py, exposed by mwm._C (not public API):
// - _coral_loss_aten / _coral_loss_backward_aten: the ops' code (mwm::tensors, coral_math.hpp
//   over ATen) without the CPU finiteness check, i.e. exactly what the CUDA op runs;
// - _coral_loss_eigen / _coral_loss_backward_eigen (built with Eigen, MWM_WITH_EIGEN): the
//   header-only Eigen entry of include/mwm/coral.hpp for C++ users, the same coral_math.hpp
//   over Eigen products.
#pragma once

#include <ATen/ATen.h>

#include <mwm/torch.hpp>

#include <optional>
#include <tuple>

#include "common/check.h"
#include "ops/coral_loss.h"

namespace mwm_bindings {

inline std::tuple<at::Tensor, at::Tensor> coral_loss_aten(const at::Tensor& x,
                                                          const at::Tensor& y) {
  check_coral_features(x, y);
  auto result = mwm::tensors::coral_loss(x, y, /*check_finite=*/false);
  return {result.loss, result.cov_diff};
}

inline std::tuple<at::Tensor, at::Tensor> coral_loss_backward_aten(
    const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  check_coral_backward_args(grad_loss, grad_cov_diff, x, y, cov_diff);
  return mwm::tensors::coral_loss_backward(grad_loss, grad_cov_diff.value_or(at::Tensor()), x, y,
                                           cov_diff);
}

}  // namespace mwm_bindings

#ifdef MWM_WITH_EIGEN

#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <Eigen/Core>

#include <mwm/coral.hpp>

#include <optional>
#include <tuple>

#include "common/check.h"
#include "ops/coral_loss.h"

namespace mwm_bindings {
namespace coral_eigen {

template <typename Scalar>
mwm::feature_rows<Scalar> rows_of(const at::Tensor& t) {
  const auto values = t.contiguous();
  return Eigen::Map<const mwm::feature_rows<Scalar>>(values.template data_ptr<Scalar>(), t.size(0),
                                                     t.size(1));
}

template <typename Scalar, typename Derived>
at::Tensor tensor_of(const Eigen::MatrixBase<Derived>& m, const at::TensorOptions& options) {
  auto out = at::empty({m.rows(), m.cols()}, options);
  Eigen::Map<mwm::feature_rows<Scalar>> view(out.template data_ptr<Scalar>(), m.rows(), m.cols());
  view = m;
  return out;
}

}  // namespace coral_eigen

inline std::tuple<at::Tensor, at::Tensor> coral_loss_eigen(const at::Tensor& x,
                                                           const at::Tensor& y) {
  check_coral_features(x, y);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mwm::coral_loss_eigen", [&] {
    return translate_errors([&] {
      const auto result =
          mwm::coral_forward(coral_eigen::rows_of<scalar_t>(x), coral_eigen::rows_of<scalar_t>(y));
      return std::make_tuple(at::scalar_tensor(result.loss, x.options()),
                             coral_eigen::tensor_of<scalar_t>(result.cov_diff, x.options()));
    });
  });
}

inline std::tuple<at::Tensor, at::Tensor> coral_loss_backward_eigen(
    const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  check_coral_backward_args(grad_loss, grad_cov_diff, x, y, cov_diff);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mwm::coral_loss_backward_eigen", [&] {
    return translate_errors([&] {
      using covariance = mwm::covariance_matrix<scalar_t>;
      const covariance diff = coral_eigen::rows_of<scalar_t>(cov_diff);
      std::optional<covariance> incoming;
      if (grad_cov_diff) incoming = coral_eigen::rows_of<scalar_t>(*grad_cov_diff);
      const auto grads =
          mwm::coral_backward(coral_eigen::rows_of<scalar_t>(x), coral_eigen::rows_of<scalar_t>(y),
                              diff, grad_loss.item<scalar_t>(), incoming ? &*incoming : nullptr);
      return std::make_tuple(coral_eigen::tensor_of<scalar_t>(grads.grad_x, x.options()),
                             coral_eigen::tensor_of<scalar_t>(grads.grad_y, y.options()));
    });
  });
}

}  // namespace mwm_bindings

#endif  // MWM_WITH_EIGEN
