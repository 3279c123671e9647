// Every mwm op, declared once. Implementations register per backend in cpu/register.cpp and
// cuda/register.cpp; fake kernels and autograd are registered in python/mwm/_ops.
#include <torch/library.h>

TORCH_LIBRARY(mwm, m) {
  // Heatmaps (B, K, [D,] H, W) float32 -> patch scores (B, N) float32.
  m.def(
      "patch_scores(Tensor heatmaps, int[] grid, str reduction, float threshold, str combine, "
      "Tensor? prompt_weights, str nan_policy) -> Tensor");
  // Scores (B, N) float32 -> region indices (B, N) int32.
  m.def("regions_from_thresholds(Tensor scores, float[] thresholds, str nan_policy) -> Tensor");
  m.def("regions_from_quantiles(Tensor scores, float[] quantiles, str nan_policy) -> Tensor");
  // Masks for the samples whose global indices are `sample_index` (B,) int64.
  m.def(
      "generate_masks(Tensor sample_index, int[] grid, str policy, float ratio, "
      "float[] region_ratios, Tensor? regions, Tensor? scores, int seed, str rounding, str order, "
      "int coarse_factor, float hard_share, str attention_mode, float hint_pool_share, "
      "float hint_share, float weight_floor, int block_min_patches, int block_max_patches, "
      "float block_min_aspect, float block_max_aspect, str nan_policy) -> (Tensor mask, "
      "Tensor num_masked, Tensor ids_shuffle, Tensor ids_restore, Tensor ids_keep, "
      "Tensor ids_masked, Tensor noise)");
  // Per-patch map (B, N) on `grid` -> (B, 1, grid * factors), optionally negated (SparK's active
  // map is the negated mask).
  m.def("upsample_patch_map(Tensor values, int[] grid, int[] factors, bool invert) -> Tensor");
  // CORAL ||cov(x) - cov(y)||_F^2 / (4 d^2) of x (n, d) and y (m, d), float32/float64; also
  // returns cov(x) - cov(y) (d, d), which the backward reuses.
  m.def("coral_loss(Tensor x, Tensor y) -> (Tensor loss, Tensor cov_diff)");
  m.def(
      "coral_loss_backward(Tensor grad_loss, Tensor? grad_cov_diff, Tensor x, Tensor y, "
      "Tensor cov_diff) -> (Tensor grad_x, Tensor grad_y)");
  // Masked reconstruction loss: pred (B, N, P) ("patch") or like target ("image"), target
  // (B, C, [D,] H, W) read in place, mask (B, N) bool, weight (B, N); reduction mean | mean_eps |
  // sum -> scalar, none -> (B, N). nonfinite: "error" raises ValueError when the result would be
  // NaN/Inf (naming pred, weight or the overflow and the first such patch), "propagate" returns
  // it. The backward returns grad_pred only.
  m.def(
      "masked_recon_loss(Tensor pred, Tensor target, Tensor mask, Tensor? weight, "
      "int[] patch_size, str layout, bool norm_target, str error, str reduction, "
      "str nonfinite=\"error\") -> Tensor");
  m.def(
      "masked_recon_loss_backward(Tensor grad, Tensor pred, Tensor target, Tensor mask, "
      "Tensor? weight, int[] patch_size, str layout, bool norm_target, str error, "
      "str reduction) -> Tensor");
  // Tokens: x (B, N, C) at ids_keep (B, K) (-1 gathers zeros); MAE's decoder input from x_vis
  // (B, K, C), ids_restore (B, N), mask_token (C) and optional visible counts (B,).
  m.def("gather_tokens(Tensor x, Tensor ids_keep) -> Tensor");
  m.def("gather_tokens_backward(Tensor grad, Tensor ids_keep, int num_tokens) -> Tensor");
  m.def(
      "restore_tokens(Tensor x_vis, Tensor ids_restore, Tensor mask_token, "
      "Tensor? num_visible) -> Tensor");
  m.def(
      "restore_tokens_backward(Tensor grad, Tensor ids_restore, Tensor? num_visible, "
      "int num_slots) -> (Tensor grad_x_vis, Tensor grad_mask_token)");
}
