// coral_loss and its private backward _coral_loss_backward: the schemas, the argument checks
// the CPU (Eigen) and CUDA (ATen) impls share, and the op entries that run a backend on checked
// arguments (cpu/coral_loss*.cpp, cuda/coral_loss.cpp). Plain ATen: no Eigen here, so CUDA glue
// files can include it.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>
#include <tuple>

#include "common/check.h"

namespace mwm_bindings {

// CORAL ||cov(x) - cov(y)||_F^2 / (4 d^2) of x (n, d) and y (m, d), float32/float64; also
// returns cov(x) - cov(y) (d, d), which the backward reuses.
inline constexpr char coral_loss_schema[] =
    "coral_loss(Tensor x, Tensor y) -> (Tensor loss, Tensor cov_diff)";
inline constexpr char coral_loss_backward_schema[] =
    "_coral_loss_backward(Tensor grad_loss, Tensor? grad_cov_diff, Tensor x, Tensor y, "
    "Tensor cov_diff) -> (Tensor grad_x, Tensor grad_y)";

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

// The backward's arguments besides x and y: grad_loss holds one value, cov_diff and (when
// given) grad_cov_diff are d x d in x's dtype and on x's device.
inline void check_coral_backward_args(const at::Tensor& grad_loss,
                                      const std::optional<at::Tensor>& grad_cov_diff,
                                      const at::Tensor& x, const at::Tensor& y,
                                      const at::Tensor& cov_diff) {
  check_coral_features(x, y);
  const int64_t d = x.size(1);
  TORCH_CHECK_VALUE(grad_loss.numel() == 1, "mwm: grad_loss has shape ", shape_text(grad_loss),
                    ": must hold one value (the gradient of the scalar loss)");
  check_dtype(grad_loss, "grad_loss", x.scalar_type());
  // A CPU value is fine (read as a scalar without a device transfer); any other device is not.
  TORCH_CHECK(grad_loss.device() == x.device() || grad_loss.device().is_cpu(),
              "mwm: grad_loss is on ", grad_loss.device(), " but x is on ", x.device(),
              ": it must be on x's device or the CPU");
  check_dim(cov_diff, "cov_diff", 2);
  check_dtype(cov_diff, "cov_diff", x.scalar_type());
  check_size(cov_diff, "cov_diff", 0, d, "d");
  check_size(cov_diff, "cov_diff", 1, d, "d");
  check_same_device(cov_diff, "cov_diff", x, "x");
  if (grad_cov_diff) {
    check_dim(*grad_cov_diff, "grad_cov_diff", 2);
    check_dtype(*grad_cov_diff, "grad_cov_diff", x.scalar_type());
    check_size(*grad_cov_diff, "grad_cov_diff", 0, d, "d");
    check_size(*grad_cov_diff, "grad_cov_diff", 1, d, "d");
    check_same_device(*grad_cov_diff, "grad_cov_diff", x, "x");
  }
}

using coral_pair = std::tuple<at::Tensor, at::Tensor>;
using coral_run = coral_pair (*)(const at::Tensor& x, const at::Tensor& y);
using coral_backward_run = coral_pair (*)(const at::Tensor& grad_loss,
                                          const std::optional<at::Tensor>& grad_cov_diff,
                                          const at::Tensor& x, const at::Tensor& y,
                                          const at::Tensor& cov_diff);

template <coral_run Run>
coral_pair coral_loss_op(const at::Tensor& x, const at::Tensor& y) {
  check_coral_features(x, y);
  return translate_errors([&] { return Run(x, y); });
}

template <coral_backward_run Run>
coral_pair coral_loss_backward_op(const at::Tensor& grad_loss,
                                  const std::optional<at::Tensor>& grad_cov_diff,
                                  const at::Tensor& x, const at::Tensor& y,
                                  const at::Tensor& cov_diff) {
  check_coral_backward_args(grad_loss, grad_cov_diff, x, y, cov_diff);
  return translate_errors([&] { return Run(grad_loss, grad_cov_diff, x, y, cov_diff); });
}

}  // namespace mwm_bindings
