// The CORAL ops as a composition of ATen calls: the device-agnostic implementation behind the
// CUDA kernel (where the products are cuBLAS GEMMs), also exposed by mwm._C as
// _coral_loss_aten / _coral_loss_backward_aten so that the CPU tests compare it with the Eigen
// kernel of bindings/cpu/coral_loss*.cpp. Same semantics as include/mwm/coral.hpp, without its finiteness
// check: raising on NaN/Inf would need the values on the host (a device synchronization), so
// non-finite features propagate into the loss and gradients instead.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "ops/coral_loss.h"

namespace mwm_bindings {
namespace coral_aten {

// x minus its column means.
inline at::Tensor centered(const at::Tensor& x) { return x - x.mean(0, /*keepdim=*/true); }

// Unbiased covariance xc^T xc / (n - 1), made exactly symmetric as the Eigen core makes it (its
// lower triangle mirrored): the backward reads cov_diff the way the CPU kernel does, which
// relies on that symmetry.
inline at::Tensor covariance(const at::Tensor& x) {
  const auto xc = centered(x);
  const auto product = at::matmul(xc.t(), xc).mul_(1.0 / static_cast<double>(x.size(0) - 1));
  return at::tril(product) + at::tril(product, -1).t();
}

// mwm::coral_gradient_weight: cov_diff * grad_loss / d^2 (+ G + G^T for an incoming gradient G
// on cov_diff). The CPU kernel maps the row-major cov_diff as a column-major matrix, i.e. reads
// its transpose (cov_diff itself when it comes from the forward); the transpose here keeps the
// two identical for any input.
inline at::Tensor gradient_weight(const at::Tensor& grad_loss,
                                  const std::optional<at::Tensor>& grad_cov_diff,
                                  const at::Tensor& cov_diff) {
  const double d = static_cast<double>(cov_diff.size(0));
  auto weight = cov_diff.t() * (grad_loss.reshape({}) / (d * d));
  if (grad_cov_diff) weight = weight + (*grad_cov_diff + grad_cov_diff->t());
  return weight;
}

// mwm::coral_input_gradient: sign * xc (W * 1 / (n - 1)).
inline at::Tensor input_gradient(const at::Tensor& x, const at::Tensor& weight, double sign) {
  return at::matmul(centered(x), weight * (sign / static_cast<double>(x.size(0) - 1)));
}

}  // namespace coral_aten

// coral_loss(x, y) -> (loss, cov_diff): loss = sum(cov_diff^2) / (4 d^2) as a 0-dim tensor,
// cov_diff = cov(x) - cov(y), d x d. No host synchronization.
inline std::tuple<at::Tensor, at::Tensor> coral_loss_aten(const at::Tensor& x, const at::Tensor& y) {
  check_coral_features(x, y);
  const double d = static_cast<double>(x.size(1));
  auto cov_diff = coral_aten::covariance(x) - coral_aten::covariance(y);
  auto loss = cov_diff.square().sum() / (4.0 * d * d);
  return {loss, cov_diff};
}

// _coral_loss_backward(grad_loss, grad_cov_diff?, x, y, cov_diff) -> (grad_x, grad_y):
// grad_x = xc W / (n - 1), grad_y = -yc W / (m - 1). grad_loss stays a tensor (no .item()).
inline std::tuple<at::Tensor, at::Tensor> coral_loss_backward_aten(
    const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  check_coral_backward_args(grad_loss, grad_cov_diff, x, y, cov_diff);
  const auto weight = coral_aten::gradient_weight(grad_loss, grad_cov_diff, cov_diff);
  return {coral_aten::input_gradient(x, weight, 1.0), coral_aten::input_gradient(y, weight, -1.0)};
}

}  // namespace mwm_bindings
