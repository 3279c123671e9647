#include <mwm_cuda.hpp>

#include "common/check.h"
#include "common/parse.h"
#include "cuda/device.h"
#include "cuda/ops.h"

namespace mwm_bindings {
namespace gpu {

at::Tensor upsample_patch_map(const at::Tensor& values, at::IntArrayRef grid_sizes,
                              at::IntArrayRef factors, bool invert) {
  const auto grid_vec = check_grid(grid_sizes);
  TORCH_CHECK_VALUE(factors.size() == grid_vec.size(), "mwm: factors = ", factors,
                    ": need one factor per grid axis (grid ", grid_sizes, ")");
  for (auto f : factors) {
    TORCH_CHECK_VALUE(f > 0, "mwm: factors = ", factors, ": every factor must be positive");
  }
  check_dtype(values, "values", at::kBool);
  check_dim(values, "values", 2);
  const c10::cuda::CUDAGuard guard(values.device());
  return translate_errors([&] {
    const auto grid = make_grid(grid_vec);
    check_size(values, "values", 1, grid.num_patches(), "the number of patches");
    const bool volumetric = grid_vec.size() == 3;
    const int64_t fd = volumetric ? factors[0] : 1;
    const int64_t fh = factors[factors.size() - 2];
    const int64_t fw = factors[factors.size() - 1];
    std::vector<int64_t> shape{values.size(0), 1};
    if (volumetric) shape.push_back(grid.depth * fd);
    shape.push_back(grid.height * fh);
    shape.push_back(grid.width * fw);
    auto out = at::empty(shape, values.options());
    const auto input = values.contiguous();
    mwm::gpu::upsample_patch_map_async(
        reinterpret_cast<const std::uint8_t*>(input.const_data_ptr<bool>()), values.size(0), grid,
        fd, fh, fw, invert, reinterpret_cast<std::uint8_t*>(out.mutable_data_ptr<bool>()),
        current_stream());
    return out;
  });
}

}  // namespace gpu
}  // namespace mwm_bindings
