// Defines coral_loss and its CPU kernel: the two covariances of mwm/coral.hpp, one per thread
// when large. The kernel needs Eigen; without it only the CUDA kernel registers.
#include <torch/library.h>

#include "ops/coral_loss.h"

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::coral_loss_schema); }

#ifdef MWM_WITH_EIGEN

#include "cpu/coral_tensors.h"  // first: it configures Eigen

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <mwm/coral.hpp>
#include <mwm/parallel.hpp>

#include <algorithm>
#include <tuple>

namespace mwm_bindings {
namespace {

coral_pair run(const at::Tensor& x, const at::Tensor& y) {
  const auto x_rows = x.contiguous();
  const auto y_rows = y.contiguous();
  const int64_t d = x.size(1);
  auto loss = at::empty({}, x.options());
  auto cov_diff = at::empty({d, d}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mwm::coral_loss", [&] {
    const auto xs = feature_view<scalar_t>(x_rows);
    const auto ys = feature_view<scalar_t>(y_rows);
    mwm::covariance_matrix<scalar_t> covs[2];
    const int threads = threads_for_pair(std::max(x.size(0), y.size(0)), d);
    mwm::detail::parallel_chunks(2, threads, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        covs[i] = i == 0 ? mwm::coral_covariance(xs, "x") : mwm::coral_covariance(ys, "y");
      }
    });
    // Symmetric, so the column-major Eigen result is also the row-major tensor.
    Eigen::Map<mwm::covariance_matrix<scalar_t>> diff(cov_diff.data_ptr<scalar_t>(), d, d);
    diff = covs[0] - covs[1];
    *loss.data_ptr<scalar_t>() = mwm::coral_loss_from_difference(diff);
  });
  return {loss, cov_diff};
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("coral_loss", &mwm_bindings::coral_loss_op<mwm_bindings::run>);
}

#endif  // MWM_WITH_EIGEN
