#include <ATen/Parallel.h>

#include "common/check.h"
#include "common/parse.h"
#include "cpu/ops.h"

namespace mwm_bindings {
namespace cpu {

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
  const int64_t batch = sample_index.size(0);
  TORCH_CHECK_VALUE(batch > 0, "mwm: batch size = 0: need at least one sample");
  const auto indices = sample_index.contiguous();
  return translate_errors([&] {
    mwm::mask_request request;
    request.grid = make_grid(grid_vec);
    request.batch = batch;
    request.seed = static_cast<std::uint64_t>(seed);
    request.sample_index = indices.data_ptr<int64_t>();
    request.non_finite = parse_nan_policy(nan_policy);
    mwm::mask_policy& p = request.policy;
    p.kind = parse_policy(policy);
    p.ratio = ratio;
    p.region_ratios.assign(region_ratios.begin(), region_ratios.end());
    p.rounding = parse_rounding(rounding);
    p.order = parse_order(order);
    p.coarse_factor = coarse_factor;
    p.hard_share = hard_share;
    p.attention = parse_attention(attention_mode);
    p.hint_pool_share = hint_pool_share;
    p.hint_share = hint_share;
    p.weight_floor = weight_floor;
    p.block.min_patches = block_min_patches;
    p.block.max_patches = block_max_patches;
    p.block.min_aspect = block_min_aspect;
    p.block.max_aspect = block_max_aspect;
    const int64_t n = request.grid.num_patches();

    at::Tensor region_rows, score_rows;
    if (mwm::uses_regions(p.kind)) {
      TORCH_CHECK_VALUE(regions.has_value(), "mwm: regions = None: policy '", std::string(policy),
                        "' needs region indices (B, N)");
      check_dtype(*regions, "regions", at::kInt);
      check_dim(*regions, "regions", 2);
      check_same_device(*regions, "regions", sample_index, "sample_index");
      check_size(*regions, "regions", 0, batch, "the batch size");
      check_size(*regions, "regions", 1, n, "the number of patches");
      region_rows = regions->contiguous();
      request.regions = region_rows.data_ptr<int32_t>();
    }
    if (mwm::uses_scores(p.kind)) {
      TORCH_CHECK_VALUE(scores.has_value(), "mwm: scores = None: policy '", std::string(policy),
                        "' needs patch scores (B, N)");
      check_dtype(*scores, "scores", at::kFloat);
      check_dim(*scores, "scores", 2);
      check_same_device(*scores, "scores", sample_index, "sample_index");
      check_size(*scores, "scores", 0, batch, "the batch size");
      check_size(*scores, "scores", 1, n, "the number of patches");
      score_rows = scores->contiguous();
      request.scores = score_rows.data_ptr<float>();
    }
    mwm::validate_request(request);
    TORCH_CHECK_VALUE(n <= mwm::max_patches_for_noise, "mwm: grid has ", n,
                      " patches: at most 2^24 are supported (float32 noise)");
    const auto params = mwm::make_policy_params(p, request.grid);
    const auto widths = mwm::output_widths(p, request.grid);
    const auto long_options = sample_index.options();
    auto mask = at::empty({batch, n}, long_options.dtype(at::kBool));
    auto num_masked = at::empty({batch}, long_options);
    auto ids_shuffle = at::empty({batch, n}, long_options);
    auto ids_restore = at::empty({batch, n}, long_options);
    auto ids_keep = at::empty({batch, widths.keep}, long_options);
    auto ids_masked = at::empty({batch, widths.masked}, long_options);
    auto noise = at::empty({batch, n}, long_options.dtype(at::kFloat));
    mwm::batch_outputs out;
    out.mask = reinterpret_cast<std::uint8_t*>(mask.data_ptr<bool>());
    out.num_masked = num_masked.data_ptr<int64_t>();
    out.ids_shuffle = ids_shuffle.data_ptr<int64_t>();
    out.ids_restore = ids_restore.data_ptr<int64_t>();
    out.ids_keep = ids_keep.data_ptr<int64_t>();
    out.ids_masked = ids_masked.data_ptr<int64_t>();
    out.noise = noise.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      mwm::generate_sample_range(request, params, widths, out, begin, end);
    });
    return std::make_tuple(mask, num_masked, ids_shuffle, ids_restore, ids_keep, ids_masked,
                           noise);
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
