// The one TORCH_LIBRARY_IMPL(mwm, CUDA, m) block; built only when torch has CUDA.
#include <torch/library.h>

#include "cuda/ops.h"

TORCH_LIBRARY_IMPL(mwm, CUDA, m) {
  using namespace mwm_bindings::gpu;
  m.impl("patch_scores", &patch_scores);
  m.impl("regions_from_thresholds", &regions_from_thresholds);
  m.impl("regions_from_quantiles", &regions_from_quantiles);
  m.impl("generate_masks", &generate_masks);
  m.impl("upsample_patch_map", &upsample_patch_map);
  m.impl("masked_recon_loss", &masked_recon_loss);
  m.impl("masked_recon_loss_backward", &masked_recon_loss_backward);
  m.impl("gather_tokens", &gather_tokens);
  m.impl("gather_tokens_backward", &gather_tokens_backward);
  m.impl("restore_tokens", &restore_tokens);
  m.impl("restore_tokens_backward", &restore_tokens_backward);
  m.impl("coral_loss", &coral_loss);
  m.impl("coral_loss_backward", &coral_loss_backward);
}
