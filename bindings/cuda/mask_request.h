// The generate_masks op arguments turned into the core's mask_request, checked as the CPU impl
// checks them (data checks on device tensors are the kernels' job).
#pragma once

#include <ATen/ATen.h>

#include <mwm/masking.hpp>

#include <optional>
#include <string>

#include "common/check.h"
#include "common/parse.h"

namespace mwm_bindings {
namespace gpu {

struct mask_call {
  mwm::mask_request request;
  at::Tensor regions;  // contiguous rows the request points into
  at::Tensor scores;
  at::Tensor sample_index;
};

inline mask_call make_mask_call(
    const at::Tensor& sample_index, const std::vector<int64_t>& grid_vec, c10::string_view policy,
    double ratio, at::ArrayRef<double> region_ratios, const std::optional<at::Tensor>& regions,
    const std::optional<at::Tensor>& scores, int64_t seed, c10::string_view rounding,
    c10::string_view order, int64_t coarse_factor, double hard_share,
    c10::string_view attention_mode, double hint_pool_share, double hint_share,
    double weight_floor, int64_t block_min_patches, int64_t block_max_patches,
    double block_min_aspect, double block_max_aspect, c10::string_view nan_policy) {
  mask_call call;
  mwm::mask_request& request = call.request;
  call.sample_index = sample_index.contiguous();
  request.grid = make_grid(grid_vec);
  request.batch = sample_index.size(0);
  request.seed = static_cast<std::uint64_t>(seed);
  request.sample_index = call.sample_index.const_data_ptr<int64_t>();
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
  const int64_t batch = request.batch;
  const int64_t n = request.grid.num_patches();
  if (mwm::uses_regions(p.kind)) {
    TORCH_CHECK_VALUE(regions.has_value(), "mwm: regions = None: policy '", std::string(policy),
                      "' needs region indices (B, N)");
    check_dtype(*regions, "regions", at::kInt);
    check_dim(*regions, "regions", 2);
    check_same_device(*regions, "regions", sample_index, "sample_index");
    check_size(*regions, "regions", 0, batch, "the batch size");
    check_size(*regions, "regions", 1, n, "the number of patches");
    call.regions = regions->contiguous();
    request.regions = call.regions.const_data_ptr<int32_t>();
  }
  if (mwm::uses_scores(p.kind)) {
    TORCH_CHECK_VALUE(scores.has_value(), "mwm: scores = None: policy '", std::string(policy),
                      "' needs patch scores (B, N)");
    check_dtype(*scores, "scores", at::kFloat);
    check_dim(*scores, "scores", 2);
    check_same_device(*scores, "scores", sample_index, "sample_index");
    check_size(*scores, "scores", 0, batch, "the batch size");
    check_size(*scores, "scores", 1, n, "the number of patches");
    call.scores = scores->contiguous();
    request.scores = call.scores.const_data_ptr<float>();
  }
  return call;
}

}  // namespace gpu
}  // namespace mwm_bindings
