// CORAL (correlation alignment, Sun & Saenko, "Deep CORAL", 2016) as used by CORN
// (arXiv 2410.15916): the distance between the second-order statistics of two feature sets,
//
//   coral(x, y) = ||cov(x) - cov(y)||_F^2 / (4 d^2),   cov(x) = (x - mean)^T (x - mean) / (n - 1),
//
// for x (n, d) and y (m, d), with its gradient for both inputs. Needs Eigen; not part of the
// standard-library-only umbrella header masking.hpp.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "error.hpp"

namespace mwm {

// Features, one sample per row: the layout of a contiguous (n, d) tensor.
template <typename Scalar>
using feature_rows = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A d x d covariance (symmetric, so its storage order never matters to a reader).
template <typename Scalar>
using covariance_matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

namespace detail {

// Names the first non-finite entry, so the message points at the bad feature.
template <typename Derived>
void require_finite(const Eigen::MatrixBase<Derived>& x, const char* name) {
  if (x.allFinite()) return;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) {
      if (!std::isfinite(static_cast<double>(x(i, j)))) {
        const std::string where =
            std::string(name) + "[" + std::to_string(i) + ", " + std::to_string(j) + "]";
        require(false, where.c_str(), x(i, j), "features must be finite (no NaN or Inf)");
      }
    }
  }
}

template <typename Derived>
void require_features(const Eigen::MatrixBase<Derived>& x, const char* name) {
  const std::string rows = std::string(name) + ".rows";
  const std::string cols = std::string(name) + ".cols";
  require(x.rows() >= 2, rows.c_str(), x.rows(),
          "an unbiased covariance needs at least 2 samples (rows)");
  require(x.cols() >= 1, cols.c_str(), x.cols(), "needs at least 1 feature (column)");
  require_finite(x, name);
}

template <typename DerivedX, typename DerivedY>
void require_same_width(const Eigen::MatrixBase<DerivedX>& x, const Eigen::MatrixBase<DerivedY>& y) {
  require(x.cols() == y.cols(), "y.cols", y.cols(),
          "must equal x.cols = " + std::to_string(x.cols()) + " (the feature dimension d)");
}

// x minus its column means; both the covariance and the gradient are built on it.
template <typename Derived>
feature_rows<typename Derived::Scalar> centered(const Eigen::MatrixBase<Derived>& x) {
  return x.rowwise() - x.colwise().mean();
}

}  // namespace detail

// Unbiased covariance (n - 1 in the denominator) of the rows of x (n >= 2, finite). `name`
// names x in error messages. Only the lower triangle is computed (a symmetric rank-n update),
// then mirrored.
template <typename Derived>
covariance_matrix<typename Derived::Scalar> coral_covariance(const Eigen::MatrixBase<Derived>& x,
                                                             const char* name = "x") {
  using Scalar = typename Derived::Scalar;
  detail::require_features(x, name);
  const feature_rows<Scalar> xc = detail::centered(x);
  covariance_matrix<Scalar> cov = covariance_matrix<Scalar>::Zero(x.cols(), x.cols());
  cov.template selfadjointView<Eigen::Lower>().rankUpdate(xc.transpose(),
                                                         Scalar(1) / Scalar(x.rows() - 1));
  cov.template triangularView<Eigen::StrictlyUpper>() = cov.transpose();
  return cov;
}

// ||cov_diff||_F^2 / (4 d^2) for cov_diff = cov(x) - cov(y), d x d.
template <typename Derived>
typename Derived::Scalar coral_loss_from_difference(const Eigen::MatrixBase<Derived>& cov_diff) {
  using Scalar = typename Derived::Scalar;
  detail::require(cov_diff.rows() == cov_diff.cols() && cov_diff.rows() >= 1, "cov_diff.rows",
                  cov_diff.rows(), "must be square and non-empty");
  const Scalar d = static_cast<Scalar>(cov_diff.rows());
  return cov_diff.squaredNorm() / (Scalar(4) * d * d);
}

template <typename Scalar>
struct coral_forward_result {
  Scalar loss;
  covariance_matrix<Scalar> cov_diff;  // cov(x) - cov(y), what the backward needs
};

// The loss and cov(x) - cov(y). x (n, d) and y (m, d) need n, m >= 2, the same d, finite values.
template <typename DerivedX, typename DerivedY>
coral_forward_result<typename DerivedX::Scalar> coral_forward(const Eigen::MatrixBase<DerivedX>& x,
                                                              const Eigen::MatrixBase<DerivedY>& y) {
  detail::require_same_width(x, y);
  coral_forward_result<typename DerivedX::Scalar> result;
  result.cov_diff = coral_covariance(x, "x") - coral_covariance(y, "y");
  result.loss = coral_loss_from_difference(result.cov_diff);
  return result;
}

template <typename DerivedX, typename DerivedY>
typename DerivedX::Scalar coral_loss(const Eigen::MatrixBase<DerivedX>& x,
                                     const Eigen::MatrixBase<DerivedY>& y) {
  return coral_forward(x, y).loss;
}

// The symmetric weight W of the gradient, grad_x = xc W / (n - 1) and grad_y = -yc W / (m - 1),
// from the incoming gradients of both forward outputs: the loss (a scalar) and, when the caller
// used it, cov_diff (grad_cov_diff, d x d, may be null).
//   d loss / d cov_diff = cov_diff / (2 d^2), and cov = xc^T xc / (n - 1) turns a gradient G on
//   cov into xc (G + G^T) / (n - 1) on xc; centering passes it through unchanged because the
//   columns of xc (G + G^T) already have zero mean.
template <typename Scalar>
covariance_matrix<Scalar> coral_gradient_weight(const covariance_matrix<Scalar>& cov_diff,
                                                Scalar grad_loss,
                                                const covariance_matrix<Scalar>* grad_cov_diff) {
  const Scalar d = static_cast<Scalar>(cov_diff.rows());
  covariance_matrix<Scalar> weight = cov_diff * (grad_loss / (d * d));
  if (grad_cov_diff != nullptr) {
    detail::require(grad_cov_diff->rows() == cov_diff.rows() && grad_cov_diff->cols() == cov_diff.cols(),
                    "grad_cov_diff.rows", grad_cov_diff->rows(),
                    "must match cov_diff, " + std::to_string(cov_diff.rows()) + " x " +
                        std::to_string(cov_diff.cols()));
    weight += *grad_cov_diff + grad_cov_diff->transpose();
  }
  return weight;
}

// out = sign * centered(x) * weight / (n - 1): the gradient of one input. `out` is n x d.
template <typename Derived, typename Out>
void coral_input_gradient(const Eigen::MatrixBase<Derived>& x,
                          const covariance_matrix<typename Derived::Scalar>& weight,
                          typename Derived::Scalar sign, const Eigen::MatrixBase<Out>& out_) {
  using Scalar = typename Derived::Scalar;
  auto& out = const_cast<Eigen::MatrixBase<Out>&>(out_);  // Eigen's idiom for output arguments
  detail::require(x.rows() >= 2, "x.rows", x.rows(), "needs at least 2 samples (rows)");
  detail::require(weight.rows() == x.cols() && weight.cols() == x.cols(), "weight.rows",
                  weight.rows(), "must be d x d with d = " + std::to_string(x.cols()));
  detail::require(out.rows() == x.rows() && out.cols() == x.cols(), "out.rows", out.rows(),
                  "must have the shape of x");
  out.noalias() = detail::centered(x) * (weight * (sign / Scalar(x.rows() - 1)));
}

template <typename Scalar>
struct coral_gradients {
  feature_rows<Scalar> grad_x;
  feature_rows<Scalar> grad_y;
};

// Gradients of coral_forward for both inputs, given cov_diff from the forward pass.
template <typename DerivedX, typename DerivedY>
coral_gradients<typename DerivedX::Scalar> coral_backward(
    const Eigen::MatrixBase<DerivedX>& x, const Eigen::MatrixBase<DerivedY>& y,
    const covariance_matrix<typename DerivedX::Scalar>& cov_diff,
    typename DerivedX::Scalar grad_loss,
    const covariance_matrix<typename DerivedX::Scalar>* grad_cov_diff = nullptr) {
  using Scalar = typename DerivedX::Scalar;
  detail::require_same_width(x, y);
  detail::require(cov_diff.rows() == x.cols() && cov_diff.cols() == x.cols(), "cov_diff.rows",
                  cov_diff.rows(), "must be d x d with d = " + std::to_string(x.cols()));
  const covariance_matrix<Scalar> weight = coral_gradient_weight(cov_diff, grad_loss, grad_cov_diff);
  coral_gradients<Scalar> grads;
  grads.grad_x.resize(x.rows(), x.cols());
  grads.grad_y.resize(y.rows(), y.cols());
  coral_input_gradient(x, weight, Scalar(1), grads.grad_x);
  coral_input_gradient(y, weight, Scalar(-1), grads.grad_y);
  return grads;
}

}  // namespace mwm
