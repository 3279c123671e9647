// CORAL (correlation alignment, Sun & Saenko, "Deep CORAL", 2016) as CORN uses it
// (arXiv 2410.15916), written once over a matrix backend:
//
//   coral(x, y) = ||D||_F^2 / (4 d^2),  D = cov(x) - cov(y),  cov(x) = xc^T xc / (n - 1),
//
// for x (n, d), y (m, d), xc = x minus its column means. The backend supplies the matrix
// products (torch's BLAS through ATen in the torch op on every device, Eigen for C++ users of
// coral.hpp); the formula, its coefficients and the gradient live here only.
//
// Cost: two d x d Gram products forward (the centred copies are made so that float32 keeps
// torch.cov's accuracy when the means are large), two (n, d) x (d, d) products backward, where
// the centring is a rank-1 correction folded into the product's bias row instead of a copy:
//   grad_x = xc W / (n - 1) = (x W - 1 (mean_x^T W)) / (n - 1).
// Autograd through the plain PyTorch formula runs six products (two per Gram and its
// gradient pair per input) and keeps the centred copies alive.
//
// A backend B provides (Matrix: a dense row-major (rows, cols) value; Vector: a row of d values;
// Scalar: the incoming loss gradient, a number or a device value; the functions below take any
// input type the backend accepts, e.g. Eigen maps):
//   rows(x), cols(x)
//   column_means(x) -> Vector
//   centered(x, mean) -> Matrix                              x - 1 mean^T
//   gram(a, alpha) -> Matrix                                 alpha a^T a, exactly symmetric
//   difference(a, b) -> Matrix                               a - b
//   squared_norm(D, scale) -> Loss                           scale * sum(D .* D)
//   transposed_scaled(D, grad_loss, scale) -> Matrix         grad_loss * scale * D^T
//   add_with_transpose(W, G)                                 W += G + G^T
//   row_times(mean, W, scale) -> Vector                      scale * mean^T W
//   product_plus_row(x, W, alpha, row) -> Matrix             alpha x W + 1 row^T
#pragma once

#include <cstdint>
#include <utility>

namespace mwm {
namespace coral_math {

// Outputs of the forward: the loss and what the backward needs, D = cov(x) - cov(y).
template <typename Loss, typename Matrix>
struct forward_result {
  Loss loss;
  Matrix cov_diff;
};

// Unbiased covariance of the rows of x (n >= 2), exactly symmetric.
template <typename B, typename X>
auto covariance(const X& x) {
  const double n = static_cast<double>(B::rows(x));
  return B::gram(B::centered(x, B::column_means(x)), 1.0 / (n - 1.0));
}

// The loss and D = cov(x) - cov(y), exactly symmetric. n, m >= 2 and equal widths are the
// caller's checks.
template <typename B, typename X, typename Y>
auto forward(const X& x, const Y& y) {
  const double d = static_cast<double>(B::cols(x));
  // Two exactly symmetric covariances: their difference is exactly symmetric too, and equals
  // covariance(x) - covariance(y) bit for bit.
  auto diff = B::difference(covariance<B>(x), covariance<B>(y));
  auto loss = B::squared_norm(diff, 1.0 / (4.0 * d * d));
  return forward_result<decltype(loss), decltype(diff)>{std::move(loss), std::move(diff)};
}

// Weight W of both input gradients from the incoming gradients of the two forward outputs:
// d loss / d D = D / (2 d^2), and cov = xc^T xc / (n - 1) turns a gradient G on it into
// xc (G + G^T) / (n - 1) on xc, so W = grad_loss * D^T / d^2 (+ G + G^T for a gradient G on
// cov_diff; null when the caller did not use cov_diff). D^T rather than D keeps the result of
// a backend that reads a row-major D as column-major; for the D the forward returns the two
// are equal. Centring passes the gradient through unchanged because the columns of xc W have
// zero mean.
template <typename B, typename M, typename Scalar, typename G>
auto gradient_weight(const M& cov_diff, const Scalar& grad_loss, const G* grad_cov_diff) {
  const double d = static_cast<double>(B::cols(cov_diff));
  auto weight = B::transposed_scaled(cov_diff, grad_loss, 1.0 / (d * d));
  if (grad_cov_diff != nullptr) B::add_with_transpose(weight, *grad_cov_diff);
  return weight;
}

// sign * xc W / (n - 1), the centring folded in as the rank-1 row -sign * mean^T W / (n - 1).
template <typename B, typename X, typename W>
auto input_gradient(const X& x, const W& weight, double sign) {
  const double scale = sign / (static_cast<double>(B::rows(x)) - 1.0);
  return B::product_plus_row(x, weight, scale, B::row_times(B::column_means(x), weight, -scale));
}

template <typename Matrix>
struct gradients {
  Matrix grad_x;
  Matrix grad_y;
};

// Gradients of forward() for both inputs, given its cov_diff.
template <typename B, typename X, typename Y, typename M, typename Scalar, typename G>
auto backward(const X& x, const Y& y, const M& cov_diff, const Scalar& grad_loss,
              const G* grad_cov_diff) {
  const auto weight = gradient_weight<B>(cov_diff, grad_loss, grad_cov_diff);
  auto grad_x = input_gradient<B>(x, weight, 1.0);
  auto grad_y = input_gradient<B>(y, weight, -1.0);
  return gradients<decltype(grad_x)>{std::move(grad_x), std::move(grad_y)};
}

}  // namespace coral_math
}  // namespace mwm
