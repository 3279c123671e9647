// coral_loss_backward on the CPU: both input gradients of mwm/coral.hpp, one per thread when
// large.
#ifdef MWM_WITH_EIGEN

#include "cpu/coral_tensors.h"  // first: it configures Eigen

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <mwm/coral.hpp>
#include <mwm/parallel.hpp>

#include <algorithm>
#include <optional>
#include <tuple>

#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

std::tuple<at::Tensor, at::Tensor> coral_loss_backward(const at::Tensor& grad_loss,
                                                       const std::optional<at::Tensor>& grad_cov_diff,
                                                       const at::Tensor& x, const at::Tensor& y,
                                                       const at::Tensor& cov_diff) {
  check_coral_backward_args(grad_loss, grad_cov_diff, x, y, cov_diff);
  const int64_t d = x.size(1);
  const auto x_rows = x.contiguous();
  const auto y_rows = y.contiguous();
  auto grad_x = at::empty({x.size(0), d}, x.options());
  auto grad_y = at::empty({y.size(0), d}, y.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mwm::coral_loss_backward", [&] {
    translate_errors([&] {
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
      return 0;
    });
  });
  return {grad_x, grad_y};
}

}  // namespace cpu
}  // namespace mwm_bindings

#endif  // MWM_WITH_EIGEN
