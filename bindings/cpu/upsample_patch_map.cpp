// Defines upsample_patch_map and its CPU kernel: mwm::upsample_patch_map per sample.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/upsample_patch_map.h"

namespace mwm_bindings {
namespace {

at::Tensor run(const upsample_call& call) {
  auto out = at::empty(call.out_shape, call.values.options());
  const int64_t n = call.grid.num_patches();
  const int64_t cells = n * call.depth_factor * call.height_factor * call.width_factor;
  const auto* in = reinterpret_cast<const std::uint8_t*>(call.values.const_data_ptr<bool>());
  auto* dst = reinterpret_cast<std::uint8_t*>(out.mutable_data_ptr<bool>());
  at::parallel_for(0, call.values.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      mwm::upsample_patch_map(in + b * n, call.grid, call.depth_factor, call.height_factor,
                              call.width_factor, call.invert, dst + b * cells);
    }
  });
  return out;
}

}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::upsample_patch_map_schema); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  m.impl("upsample_patch_map", &mwm_bindings::upsample_patch_map_op<mwm_bindings::run>);
}
