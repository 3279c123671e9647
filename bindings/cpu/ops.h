// CPU implementations of the mwm ops, one file each; registered in register.cpp.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>

namespace mwm_bindings {
namespace cpu {

at::Tensor patch_scores(const at::Tensor& heatmaps, at::IntArrayRef grid,
                        c10::string_view reduction, double threshold, c10::string_view combine,
                        const std::optional<at::Tensor>& prompt_weights,
                        c10::string_view nan_policy);

at::Tensor regions_from_thresholds(const at::Tensor& scores, at::ArrayRef<double> thresholds,
                                   c10::string_view nan_policy);
at::Tensor regions_from_quantiles(const at::Tensor& scores, at::ArrayRef<double> quantiles,
                                  c10::string_view nan_policy);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
generate_masks(const at::Tensor& sample_index, at::IntArrayRef grid, c10::string_view policy,
               double ratio, at::ArrayRef<double> region_ratios,
               const std::optional<at::Tensor>& regions, const std::optional<at::Tensor>& scores,
               int64_t seed, c10::string_view rounding, c10::string_view order,
               int64_t coarse_factor, double hard_share, c10::string_view attention_mode,
               double hint_pool_share, double hint_share, double weight_floor,
               int64_t block_min_patches, int64_t block_max_patches, double block_min_aspect,
               double block_max_aspect, c10::string_view nan_policy);

at::Tensor upsample_patch_map(const at::Tensor& values, at::IntArrayRef grid,
                              at::IntArrayRef factors, bool invert);

std::tuple<at::Tensor, at::Tensor> coral_loss(const at::Tensor& x, const at::Tensor& y);
std::tuple<at::Tensor, at::Tensor> coral_loss_backward(const at::Tensor& grad_loss,
                                                       const std::optional<at::Tensor>& grad_cov_diff,
                                                       const at::Tensor& x, const at::Tensor& y,
                                                       const at::Tensor& cov_diff);

at::Tensor masked_recon_loss(const at::Tensor& pred, const at::Tensor& target,
                             const at::Tensor& mask, const std::optional<at::Tensor>& weight,
                             at::IntArrayRef patch_size, c10::string_view layout,
                             bool norm_target, c10::string_view error,
                             c10::string_view reduction, c10::string_view nonfinite);
at::Tensor masked_recon_loss_backward(const at::Tensor& grad, const at::Tensor& pred,
                                      const at::Tensor& target, const at::Tensor& mask,
                                      const std::optional<at::Tensor>& weight,
                                      at::IntArrayRef patch_size, c10::string_view layout,
                                      bool norm_target, c10::string_view error,
                                      c10::string_view reduction);

at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& ids_keep);
at::Tensor gather_tokens_backward(const at::Tensor& grad, const at::Tensor& ids_keep,
                                  int64_t num_tokens);
at::Tensor restore_tokens(const at::Tensor& x_vis, const at::Tensor& ids_restore,
                          const at::Tensor& mask_token,
                          const std::optional<at::Tensor>& num_visible);
std::tuple<at::Tensor, at::Tensor> restore_tokens_backward(
    const at::Tensor& grad, const at::Tensor& ids_restore,
    const std::optional<at::Tensor>& num_visible, int64_t num_slots);

}  // namespace cpu
}  // namespace mwm_bindings
