#include <torch/library.h>

#include "cpu/ops.h"

TORCH_LIBRARY_IMPL(mwm, CPU, m) {
  using namespace mwm_bindings::cpu;
  m.impl("patch_scores", &patch_scores);
  m.impl("regions_from_thresholds", &regions_from_thresholds);
  m.impl("regions_from_quantiles", &regions_from_quantiles);
  m.impl("generate_masks", &generate_masks);
  m.impl("upsample_patch_map", &upsample_patch_map);
  m.impl("coral_loss", &coral_loss);
  m.impl("coral_loss_backward", &coral_loss_backward);
  m.impl("masked_recon_loss", &masked_recon_loss);
  m.impl("masked_recon_loss_backward", &masked_recon_loss_backward);
  m.impl("gather_tokens", &gather_tokens);
  m.impl("gather_tokens_backward", &gather_tokens_backward);
  m.impl("restore_tokens", &restore_tokens);
  m.impl("restore_tokens_backward", &restore_tokens_backward);
}
