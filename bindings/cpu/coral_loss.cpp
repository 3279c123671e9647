// coral_loss on the CPU: mwm::tensors::coral_loss (coral_math.hpp over torch's BLAS), the same
// code as the CUDA op, plus the finiteness check that costs nothing while the loss is finite.
#include <mwm/torch.hpp>

#include <tuple>

#include "common/check.h"
#include "common/coral_args.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

std::tuple<at::Tensor, at::Tensor> coral_loss(const at::Tensor& x, const at::Tensor& y) {
  check_coral_features(x, y);
  return translate_errors([&] {
    auto result = mwm::tensors::coral_loss(x, y, /*check_finite=*/true);
    return std::make_tuple(result.loss, result.cov_diff);
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
