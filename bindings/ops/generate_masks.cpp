// generate_masks: its definition, the CPU kernel (mwm::tensors::generate_masks over the request)
// and, in a CUDA build, the glue of the mask launcher on the current stream. Schema, options and
// checks: ops/generate_masks.h.
#include <torch/library.h>

#include <mwm/torch.hpp>

#include "ops/generate_masks.h"

#ifdef MWM_WITH_CUDA
#include <mwm_cuda.hpp>

#include "cuda/device.h"
#endif

namespace mwm_bindings {
namespace {
namespace on_cpu {

mask_outputs run(const mask_call& call) {
  const mwm::mask_request& request = call.request;
  const auto out =
      mwm::tensors::generate_masks(call.sample_index, request.grid, request.policy, request.seed,
                                   call.regions, call.scores, request.non_finite);
  return std::make_tuple(out.mask, out.num_masked, out.ids_shuffle, out.ids_restore, out.ids_keep,
                         out.ids_masked, out.noise);
}

}  // namespace on_cpu

#ifdef MWM_WITH_CUDA
namespace on_cuda {

mask_outputs run(const mask_call& call) {
  const mwm::mask_request& request = call.request;
  const c10::cuda::CUDAGuard guard(call.sample_index.device());
  const int64_t batch = request.batch;
  const int64_t n = request.grid.num_patches();
  TORCH_CHECK_VALUE(n <= mwm::max_patches_for_noise, "mwm: grid has ", n,
                    " patches: at most 2^24 are supported (float32 noise)");
  const auto widths = mwm::output_widths(request.policy, request.grid);
  const auto long_options = call.sample_index.options();
  auto mask = at::empty({batch, n}, long_options.dtype(at::kBool));
  auto num_masked = at::empty({batch}, long_options);
  auto ids_shuffle = at::empty({batch, n}, long_options);
  auto ids_restore = at::empty({batch, n}, long_options);
  auto ids_keep = at::empty({batch, widths.keep}, long_options);
  auto ids_masked = at::empty({batch, widths.masked}, long_options);
  auto noise = at::empty({batch, n}, long_options.dtype(at::kFloat));
  mwm::batch_outputs out;
  out.mask = reinterpret_cast<std::uint8_t*>(mask.mutable_data_ptr<bool>());
  out.num_masked = num_masked.mutable_data_ptr<int64_t>();
  out.ids_shuffle = ids_shuffle.mutable_data_ptr<int64_t>();
  out.ids_restore = ids_restore.mutable_data_ptr<int64_t>();
  out.ids_keep = ids_keep.mutable_data_ptr<int64_t>();
  out.ids_masked = ids_masked.mutable_data_ptr<int64_t>();
  out.noise = noise.mutable_data_ptr<float>();
  const std::size_t bytes = mwm::gpu::mask_workspace_bytes(request);
  auto workspace = workspace_like(call.sample_index, bytes);
  mwm::gpu::generate_masks_async(request, out, workspace.mutable_data_ptr(), bytes,
                                 current_stream());
  return std::make_tuple(mask, num_masked, ids_shuffle, ids_restore, ids_keep, ids_masked, noise);
}

}  // namespace on_cuda
#endif
}  // namespace
}  // namespace mwm_bindings

TORCH_LIBRARY_FRAGMENT(mwm, m) { m.def(mwm_bindings::generate_masks_schema().c_str()); }

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings;
  m.impl("generate_masks", &generate_masks_op<on_cpu::run>);
}

#ifdef MWM_WITH_CUDA
TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings;
  m.impl("generate_masks", &generate_masks_op<on_cuda::run>);
}
#endif
