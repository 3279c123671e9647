// upsample_patch_map: a per-patch bool map (B, N) on `grid` -> (B, 1, grid * factors),
// optionally negated (SparK's active map is the negated mask). The schema, the shared checks
// and output shape, and the op entry that runs a backend (cpu/ and cuda/upsample_patch_map.cpp).
#pragma once

#include <ATen/ATen.h>

#include <mwm/masking.hpp>

#include <vector>

#include "common/check.h"
#include "common/parse.h"

namespace mwm_bindings {

inline constexpr char upsample_patch_map_schema[] =
    "upsample_patch_map(Tensor values, int[] grid, int[] factors, bool invert) -> Tensor";

struct upsample_call {
  at::Tensor values;  // (B, N) bool, contiguous
  mwm::grid_shape grid;
  int64_t depth_factor = 1, height_factor = 1, width_factor = 1;
  bool invert = false;
  std::vector<int64_t> out_shape;  // (B, 1, [gd * fd,] gh * fh, gw * fw)
};

template <at::Tensor (*Run)(const upsample_call&)>
at::Tensor upsample_patch_map_op(const at::Tensor& values, at::IntArrayRef grid_sizes,
                                 at::IntArrayRef factors, bool invert) {
  const auto grid_vec = check_grid(grid_sizes);
  TORCH_CHECK_VALUE(factors.size() == grid_vec.size(), "mwm: factors = ", factors,
                    ": need one factor per grid axis (grid ", grid_sizes, ")");
  for (auto f : factors) {
    TORCH_CHECK_VALUE(f > 0, "mwm: factors = ", factors, ": every factor must be positive");
  }
  check_dtype(values, "values", at::kBool);
  check_dim(values, "values", 2);
  return translate_errors([&] {
    upsample_call call;
    call.grid = make_grid(grid_vec);
    check_size(values, "values", 1, call.grid.num_patches(), "the number of patches");
    const bool volumetric = grid_vec.size() == 3;
    call.depth_factor = volumetric ? factors[0] : 1;
    call.height_factor = factors[factors.size() - 2];
    call.width_factor = factors[factors.size() - 1];
    call.invert = invert;
    call.out_shape = {values.size(0), 1};
    if (volumetric) call.out_shape.push_back(call.grid.depth * call.depth_factor);
    call.out_shape.push_back(call.grid.height * call.height_factor);
    call.out_shape.push_back(call.grid.width * call.width_factor);
    call.values = values.contiguous();
    return Run(call);
  });
}

}  // namespace mwm_bindings
