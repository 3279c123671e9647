#include <mwm/torch.hpp>

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
  return translate_errors([&] {
    mwm::mask_request request;
    request.grid = make_grid(grid_vec);
    request.batch = batch;
    request.seed = static_cast<std::uint64_t>(seed);
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
      region_rows = *regions;
    }
    if (mwm::uses_scores(p.kind)) {
      TORCH_CHECK_VALUE(scores.has_value(), "mwm: scores = None: policy '", std::string(policy),
                        "' needs patch scores (B, N)");
      check_dtype(*scores, "scores", at::kFloat);
      check_dim(*scores, "scores", 2);
      check_same_device(*scores, "scores", sample_index, "sample_index");
      check_size(*scores, "scores", 0, batch, "the batch size");
      check_size(*scores, "scores", 1, n, "the number of patches");
      score_rows = *scores;
    }
    const auto out = mwm::tensors::generate_masks(sample_index, request.grid, p, request.seed,
                                                  region_rows, score_rows, request.non_finite);
    return std::make_tuple(out.mask, out.num_masked, out.ids_shuffle, out.ids_restore,
                           out.ids_keep, out.ids_masked, out.noise);
  });
}

}  // namespace cpu
}  // namespace mwm_bindings
