// Fused masked reconstruction loss (MAE, SparK, SimMIM) over patches read in place.
//
// A prediction either holds patch vectors (B, N, P) with P ordered (pd, ph, pw, c), channel
// fastest (MAE patchify), or has the image layout of the target (B, C, [D,] H, W). Both are read
// through `patch_strides`, so the target is never patchified, normalized or copied. Per patch:
//   t_hat = (t - mean) / sqrt(var + 1e-6)   (var unbiased, over the patch; when norm_target)
//   err   = mean over the patch of (pred - t_hat)^2 (mse) or |pred - t_hat| (l1)
//   c     = mask * weight
// and the loss is sum(c * err) / sum(c) (mean), the same with +1e-8 below (mean_eps, SparK),
// sum(c * err) (sum, which SimMIM's pixel-level denominator is built from), or c * err per patch
// (none). Every sum is added in the one order of loss_order.hpp, on the CPU and on the GPU.
//
// The pieces, one file each:
//   loss_options.hpp   options, strides, raw input views, geometry checks
//   loss_order.hpp     the reduction order (lanes and trees), the contract CPU and GPU share
//   loss_patch.hpp     the loss of one patch: per-element maths, per-lane sums read in place,
//                      the same sums over contiguous patch vectors, weighted loss / gradient
//   loss_bands.hpp     host drivers' band gathering and scattering
//   loss_forward.hpp   band_losses and the sums over patches (CPU)
//   loss_finish.hpp    finish_loss: the reduced value and the nonfinite = "error" reports
//   loss_backward.hpp  band_gradients (CPU)
//   loss_stream.hpp    streaming stores of the CPU gradient
#pragma once

#include "loss_backward.hpp"
#include "loss_bands.hpp"
#include "loss_finish.hpp"
#include "loss_forward.hpp"
#include "loss_options.hpp"
#include "loss_order.hpp"
#include "loss_patch.hpp"
#include "loss_stream.hpp"
