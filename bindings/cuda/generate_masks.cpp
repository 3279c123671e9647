#include <mwm_cuda.hpp>

#include "common/check.h"
#include "cuda/device.h"
#include "cuda/mask_request.h"
#include "cuda/ops.h"

namespace mwm_bindings {
namespace gpu {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
generate_masks(const at::Tensor& sample_index, at::IntArrayRef grid_sizes,
               c10::string_view policy, double ratio, at::ArrayRef<double> region_ratios,
               const std::optional<at::Tensor>& regions, const std::optional<at::Tensor>& scores,
               int64_t seed, c10::string_view rounding, c10::string_view order,
               int64_t coarse_factor, double hard_share, c10::string_view attention_mode,
               double hint_pool_share, double hint_share, double weight_floor,
               int64_t block_min_patches, int64_t block_max_patches, double block_min_aspect,
               double block_max_aspect, c10::string_view nan_policy) {
  const auto grid_vec = check_grid(grid_sizes);
  check_dtype(sample_index, "sample_index", at::kLong);
  check_dim(sample_index, "sample_index", 1);
  TORCH_CHECK_VALUE(sample_index.size(0) > 0, "mwm: batch size = 0: need at least one sample");
  const c10::cuda::CUDAGuard guard(sample_index.device());
  return translate_errors([&] {
    const mask_call call = make_mask_call(
        sample_index, grid_vec, policy, ratio, region_ratios, regions, scores, seed, rounding,
        order, coarse_factor, hard_share, attention_mode, hint_pool_share, hint_share,
        weight_floor, block_min_patches, block_max_patches, block_min_aspect, block_max_aspect,
        nan_policy);
    const mwm::mask_request& request = call.request;
    const int64_t batch = request.batch;
    const int64_t n = request.grid.num_patches();
    TORCH_CHECK_VALUE(n <= mwm::max_patches_for_noise, "mwm: grid has ", n,
                      " patches: at most 2^24 are supported (float32 noise)");
    const auto widths = mwm::output_widths(request.policy, request.grid);
    const auto long_options = sample_index.options();
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
    auto workspace = workspace_like(sample_index, bytes);
    mwm::gpu::generate_masks_async(request, out, workspace.mutable_data_ptr(), bytes,
                                   current_stream());
    return std::make_tuple(mask, num_masked, ids_shuffle, ids_restore, ids_keep, ids_masked,
                           noise);
  });
}

}  // namespace gpu
}  // namespace mwm_bindings
