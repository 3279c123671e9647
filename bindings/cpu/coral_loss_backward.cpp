// Defines _coral_loss_backward (the gradients of coral_loss for x and y) and its CPU kernel:
// both input gradients of mwm/coral.hpp, one per thread when large. The kernel needs Eigen.
#include <torch/library.h>

#include "ops/coral_loss.h"

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::coral_loss_backward_schema); }

#ifdef MWM_WITH_EIGEN

#include "cpu/coral_tensors.h"  // first: it configures Eigen

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <mwm/coral.hpp>
#include <mwm/parallel.hpp>

#include <algorithm>
#include <optional>
#include <tuple>

namespace mwm_bindings {
namespace {

coral_pair run(const at::Tensor& grad_loss, const std::optional<at::Tensor>& grad_cov_diff,
               const at::Tensor& x, const at::Tensor& y, const at::Tensor& cov_diff) {
  const int64_t d = x.size(1);
  const auto x_rows = x.contiguous();
  const auto y_rows = y.contiguous();
  auto grad_x = at::empty({x.size(0), d}, x.options());
  auto grad_y = at::empty({y.size(0), d}, y.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mwm::coral_loss_backward", [&] {
    using covariance = mwm::covariance_matrix<scalar_t>;
    // Row-major tensors copied into column-major matrices: the transpose of what they hold,
    // which for cov_diff (symmetric) is itself and for grad_cov_diff is fixed below.
    const auto diff_values = cov_diff.contiguous();
    const covariance diff = Eigen::Map<const covariance>(diff_values.data_ptr<scalar_t>(), d, d);
    std::optional<covariance> incoming;
    if (grad_cov_diff) {
      const auto values = grad_cov_diff->contiguous();
      incoming = Eigen::Map<const covariance>(values.data_ptr<scalar_t>(), d, d).transpose();
    }
    const covariance weight = mwm::coral_gradient_weight(
        diff, grad_loss.item<scalar_t>(), incoming ? &*incoming : nullptr);
    auto gx = mutable_feature_view<scalar_t>(grad_x);
    auto gy = mutable_feature_view<scalar_t>(grad_y);
    const auto xs = feature_view<scalar_t>(x_rows);
    const auto ys = feature_view<scalar_t>(y_rows);
    const int threads = threads_for_pair(std::max(x.size(0), y.size(0)), d);
    mwm::detail::parallel_chunks(2, threads, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (i == 0) {
          mwm::coral_input_gradient(xs, weight, scalar_t(1), gx);
        } else {
          mwm::coral_input_gradient(ys, weight, scalar_t(-1), gy);
        }
      }
    });
  });
  return {grad_x, grad_y};
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("_coral_loss_backward", &mwm_bindings::coral_loss_backward_op<mwm_bindings::run>);
}

#endif  // MWM_WITH_EIGEN
