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


# The mask op's arguments, read from its schema (bindings/ops/generate_masks.h lists the policy
# options once; the schema carries their names, types and defaults).
MASK_SCHEMA = torch.ops.mwm.generate_masks.default._schema
MASK_INPUTS = ("sample_index", "grid", "regions", "scores", "seed")
MASK_OPTIONS = {argument.name: argument.default_value for argument in MASK_SCHEMA.arguments
                if argument.name not in MASK_INPUTS}


def _converter(schema_type: str):
    if schema_type == "float":
        return float
    if schema_type == "int":
        return int
    if schema_type in ("List[float]", "float[]"):
        return lambda values: [float(v) for v in values]
    return lambda value: value  # str: the op names the choices when the value is not one


MASK_CONVERTERS = {argument.name: _converter(str(argument.type))
                   for argument in MASK_SCHEMA.arguments if argument.name in MASK_OPTIONS}


def mask_options(given: dict) -> dict:
    """Every policy option of a call, from the keyword arguments ``given``: converted to the
    schema's types, the schema's defaults filled in. An unknown name raises TypeError."""
    for name in given:
        if name not in MASK_OPTIONS:
            raise TypeError(f"generate_masks() got an unexpected keyword argument {name!r}")
    return {name: MASK_CONVERTERS[name](given[name]) if name in given else default
            for name, default in MASK_OPTIONS.items()}


def _bound_mask_arguments(args, kwargs) -> dict:
    names = [argument.name for argument in MASK_SCHEMA.arguments]
    bound = {argument.name: argument.default_value for argument in MASK_SCHEMA.arguments
             if argument.has_default_value()}
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


@torch.library.register_fake("mwm::generate_masks")
def _generate_masks_fake(*args, **kwargs):
    call = _bound_mask_arguments(args, kwargs)
    sample_index, grid = call["sample_index"], call["grid"]
    # The device kernels check this too; on fake and meta tensors only this check runs.
    for name in ("regions", "scores"):
        tensor = call[name]
        if tensor is not None and tensor.device != sample_index.device:
            raise RuntimeError(f"mwm: {name} is on {tensor.device} but sample_index is on "
                               f"{sample_index.device}")
    batch = sample_index.shape[0]
    n = math.prod(grid)
    keep, masked = output_widths(call["policy"], grid, call["ratio"], call["rounding"],
                                 call["coarse_factor"], call["attention_mode"],
                                 call["hint_pool_share"], call["hint_share"])
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
