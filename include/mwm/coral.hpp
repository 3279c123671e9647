// CORAL for C++ users who hold Eigen matrices: the maths of coral_math.hpp (the one the torch op
// runs through torch's BLAS) over Eigen products, with finiteness and shape checks that name
// the offending entry. Needs Eigen; not part of the standard-library-only umbrella header
// masking.hpp.
//
//   coral(x, y) = ||cov(x) - cov(y)||_F^2 / (4 d^2),   cov(x) = (x - mean)^T (x - mean) / (n - 1),
//
// for x (n, d) and y (m, d), with its gradient for both inputs.
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "coral_math.hpp"
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
void require_same_width(const Eigen::MatrixBase<DerivedX>& x,
                        const Eigen::MatrixBase<DerivedY>& y) {
  require(x.cols() == y.cols(), "y.cols", y.cols(),
          "must equal x.cols = " + std::to_string(x.cols()) + " (the feature dimension d)");
}

// The coral_math backend over Eigen: the Gram product is a symmetric rank-n update of the
// lower triangle, mirrored.
template <typename Scalar>
struct eigen_coral_backend {
  using row_vector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

  template <typename Derived>
  static Eigen::Index rows(const Eigen::MatrixBase<Derived>& x) {
    return x.rows();
  }
  template <typename Derived>
  static Eigen::Index cols(const Eigen::MatrixBase<Derived>& x) {
    return x.cols();
  }

  template <typename Derived>
  static row_vector column_means(const Eigen::MatrixBase<Derived>& x) {
    return x.colwise().mean();
  }

  template <typename Derived>
  static feature_rows<Scalar> centered(const Eigen::MatrixBase<Derived>& x,
                                       const row_vector& mean) {
    return x.rowwise() - mean;
  }

  static covariance_matrix<Scalar> gram(const feature_rows<Scalar>& a, double alpha) {
    covariance_matrix<Scalar> out = covariance_matrix<Scalar>::Zero(a.cols(), a.cols());
    out.template selfadjointView<Eigen::Lower>().rankUpdate(a.transpose(),
                                                            static_cast<Scalar>(alpha));
    out.template triangularView<Eigen::StrictlyUpper>() = out.transpose();
    return out;
  }

  static covariance_matrix<Scalar> difference(const covariance_matrix<Scalar>& a,
                                              const covariance_matrix<Scalar>& b) {
    return a - b;
  }

  template <typename Derived>
  static Scalar squared_norm(const Eigen::MatrixBase<Derived>& m, double scale) {
    return m.squaredNorm() * static_cast<Scalar>(scale);
  }

  template <typename Derived>
  static covariance_matrix<Scalar> transposed_scaled(const Eigen::MatrixBase<Derived>& m,
                                                     Scalar grad_loss, double scale) {
    return m.transpose() * (grad_loss * static_cast<Scalar>(scale));
  }

  template <typename Derived>
  static void add_with_transpose(covariance_matrix<Scalar>& w,
                                 const Eigen::MatrixBase<Derived>& g) {
    w += g + g.transpose();
  }

  static row_vector row_times(const row_vector& mean, const covariance_matrix<Scalar>& w,
                              double scale) {
    return (mean * w) * static_cast<Scalar>(scale);
  }

  template <typename Derived>
  static feature_rows<Scalar> product_plus_row(const Eigen::MatrixBase<Derived>& x,
                                               const covariance_matrix<Scalar>& w, double alpha,
                                               const row_vector& row) {
    feature_rows<Scalar> out(x.rows(), x.cols());
    out.noalias() = x * (w * static_cast<Scalar>(alpha));
    out.rowwise() += row;
    return out;
  }
};

}  // namespace detail

// Unbiased covariance (n - 1 in the denominator) of the rows of x (n >= 2, finite), exactly
// symmetric. `name` names x in error messages.
template <typename Derived>
covariance_matrix<typename Derived::Scalar> coral_covariance(const Eigen::MatrixBase<Derived>& x,
                                                             const char* name = "x") {
  detail::require_features(x, name);
  return coral_math::covariance<detail::eigen_coral_backend<typename Derived::Scalar>>(x);
}

// ||cov_diff||_F^2 / (4 d^2) for cov_diff = cov(x) - cov(y), d x d.
template <typename Derived>
typename Derived::Scalar coral_loss_from_difference(const Eigen::MatrixBase<Derived>& cov_diff) {
  using Scalar = typename Derived::Scalar;
  detail::require(cov_diff.rows() == cov_diff.cols() && cov_diff.rows() >= 1, "cov_diff.rows",
                  cov_diff.rows(), "must be square and non-empty");
  const double d = static_cast<double>(cov_diff.rows());
  return detail::eigen_coral_backend<Scalar>::squared_norm(cov_diff, 1.0 / (4.0 * d * d));
}

template <typename Scalar>
struct coral_forward_result {
  Scalar loss;
  covariance_matrix<Scalar> cov_diff;  // cov(x) - cov(y), what the backward needs
};

// The loss and cov(x) - cov(y). x (n, d) and y (m, d) need n, m >= 2, the same d, finite values.
template <typename DerivedX, typename DerivedY>
coral_forward_result<typename DerivedX::Scalar> coral_forward(
    const Eigen::MatrixBase<DerivedX>& x, const Eigen::MatrixBase<DerivedY>& y) {
  using Scalar = typename DerivedX::Scalar;
  detail::require_same_width(x, y);
  detail::require_features(x, "x");
  detail::require_features(y, "y");
  auto result = coral_math::forward<detail::eigen_coral_backend<Scalar>>(x, y);
  return {result.loss, std::move(result.cov_diff)};
}

template <typename DerivedX, typename DerivedY>
typename DerivedX::Scalar coral_loss(const Eigen::MatrixBase<DerivedX>& x,
                                     const Eigen::MatrixBase<DerivedY>& y) {
  return coral_forward(x, y).loss;
}

// The symmetric weight W of the gradient, grad_x = xc W / (n - 1) and grad_y = -yc W / (m - 1),
// from the incoming gradients of both forward outputs: the loss (a scalar) and, when the caller
// used it, cov_diff (grad_cov_diff, d x d, may be null). See coral_math::gradient_weight.
template <typename Scalar>
covariance_matrix<Scalar> coral_gradient_weight(const covariance_matrix<Scalar>& cov_diff,
                                                Scalar grad_loss,
                                                const covariance_matrix<Scalar>* grad_cov_diff) {
  if (grad_cov_diff != nullptr) {
    detail::require(
        grad_cov_diff->rows() == cov_diff.rows() && grad_cov_diff->cols() == cov_diff.cols(),
        "grad_cov_diff.rows", grad_cov_diff->rows(),
        "must match cov_diff, " + std::to_string(cov_diff.rows()) + " x " +
            std::to_string(cov_diff.cols()));
  }
  return coral_math::gradient_weight<detail::eigen_coral_backend<Scalar>>(cov_diff, grad_loss,
                                                                          grad_cov_diff);
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
  out = coral_math::input_gradient<detail::eigen_coral_backend<Scalar>>(x, weight,
                                                                        static_cast<double>(sign));
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
  using backend = detail::eigen_coral_backend<Scalar>;
  const covariance_matrix<Scalar> weight =
      coral_gradient_weight(cov_diff, grad_loss, grad_cov_diff);
  return {coral_math::input_gradient<backend>(x, weight, 1.0),
          coral_math::input_gradient<backend>(y, weight, -1.0)};
}

}  // namespace mwm
