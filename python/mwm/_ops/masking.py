"""Fake kernels of the masking ops: output shapes from the arguments alone, so that
``torch.compile(fullgraph=True)`` traces through mask generation."""

from __future__ import annotations

import math

import torch

from ..budget import output_widths


@torch.library.register_fake("mwm::patch_scores")
def _patch_scores_fake(heatmaps, grid, reduction, threshold, combine, prompt_weights, nan_policy):
    return heatmaps.new_empty((heatmaps.shape[0], math.prod(grid)))


@torch.library.register_fake("mwm::regions_from_thresholds")
def _regions_from_thresholds_fake(scores, thresholds, nan_policy):
    return scores.new_empty(scores.shape, dtype=torch.int32)


@torch.library.register_fake("mwm::regions_from_quantiles")
def _regions_from_quantiles_fake(scores, quantiles, nan_policy):
    return scores.new_empty(scores.shape, dtype=torch.int32)


@torch.library.register_fake("mwm::generate_masks")
def _generate_masks_fake(sample_index, grid, policy, ratio, region_ratios, regions, scores, seed,
                         rounding, order, coarse_factor, hard_share, attention_mode,
                         hint_pool_share, hint_share, *rest):
    # The device kernels check this too; on fake and meta tensors only this check runs.
    for name, tensor in (("regions", regions), ("scores", scores)):
        if tensor is not None and tensor.device != sample_index.device:
            raise RuntimeError(f"mwm: {name} is on {tensor.device} but sample_index is on "
                               f"{sample_index.device}")
    batch = sample_index.shape[0]
    n = math.prod(grid)
    keep, masked = output_widths(policy, grid, ratio, rounding, coarse_factor, attention_mode,
                                 hint_pool_share, hint_share)
    as_long = dict(dtype=torch.int64)
    return (
        sample_index.new_empty((batch, n), dtype=torch.bool),
        sample_index.new_empty((batch,), **as_long),
        sample_index.new_empty((batch, n), **as_long),
        sample_index.new_empty((batch, n), **as_long),
        sample_index.new_empty((batch, keep), **as_long),
        sample_index.new_empty((batch, masked), **as_long),
        sample_index.new_empty((batch, n), dtype=torch.float32),
    )


@torch.library.register_fake("mwm::upsample_patch_map")
def _upsample_patch_map_fake(values, grid, factors, invert):
    return values.new_empty((values.shape[0], 1, *[g * f for g, f in zip(grid, factors)]))
