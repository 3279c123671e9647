// Validation of the CORAL ops' arguments, shared by the CPU (Eigen) and device (ATen) impls.
// Plain ATen: no Eigen here, so CUDA glue files can include it.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>

#include "common/check.h"

namespace mwm_bindings {

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
  TORCH_CHECK(grad_loss.device() == x.device() || grad_loss.device().is_cpu(), "mwm: grad_loss is on ",
              grad_loss.device(), " but x is on ", x.device(), ": it must be on x's device or the CPU");
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

}  // namespace mwm_bindings
