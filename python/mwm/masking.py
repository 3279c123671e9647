"""Functional masking API: heatmaps to patch scores to regions to masks.

Every function is a thin wrapper over one ``torch.ops.mwm`` op, so it runs on CPU or CUDA
tensors, inside ``torch.compile(fullgraph=True)``, and gives the same masks on every device.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from . import _extension  # loads the extension, which defines the ops
from .budget import output_widths

__all__ = ["MaskResult", "generate_masks", "heatmap_to_patch_scores", "regions_from_quantiles",
           "regions_from_thresholds", "sample_indices", "upsample_patch_map"]

# ---- fake kernels of the masking ops: output shapes from the arguments alone, so that
# torch.compile(fullgraph=True) traces through mask generation.

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


Grid = Sequence[int]
POLICIES = tuple(_extension.extension.mask_option_choices()["policy"])
_SEED_MASK = (1 << 64) - 1


def _as_grid(grid: Union[int, Grid]) -> list[int]:
    if isinstance(grid, int):
        return [grid, grid]
    grid = [int(g) for g in grid]
    if len(grid) not in (2, 3) or any(g <= 0 for g in grid):
        raise ValueError(
            f"mwm: grid = {grid}: must be 2 or 3 positive sizes (gh, gw) / (gd, gh, gw)")
    return grid


def _signed_seed(seed: int) -> int:
    # The op schema carries a signed 64-bit int; the core reads the same 64 bits unsigned.
    if not isinstance(seed, int) or seed < 0 or seed > _SEED_MASK:
        raise ValueError(f"mwm: seed = {seed!r}: must be an integer in [0, 2^64)")
    return seed - (1 << 64) if seed >= (1 << 63) else seed


def heatmap_to_patch_scores(heatmaps: torch.Tensor, grid: Union[int, Grid], *,
                            reduction: str = "mean", threshold: float = 0.5,
                            combine: str = "max",
                            prompt_weights: Optional[Sequence[float]] = None,
                            nan_policy: str = "error") -> torch.Tensor:
    """Patch scores ``(B, N)`` from heatmaps ``(B, [K,] H, W)`` (2D grid) or ``(B, [K,] D, H, W)``
    (3D grid) of any resolution.

    ``reduction``: ``mean``, ``max``, ``fraction`` (share of pixels ``> threshold``) over each
    patch's area (PyTorch adaptive-pooling cells), or ``nearest`` (``interpolate(mode="nearest")``,
    the MWM reference's resize). Several prompts ``K`` combine by ``max`` or ``weighted_sum``.
    """
    grid = _as_grid(grid)
    if not isinstance(heatmaps, torch.Tensor):
        raise TypeError(f"mwm: heatmaps must be a torch.Tensor, got {type(heatmaps).__name__}")
    if heatmaps.dim() == len(grid) + 1:
        heatmaps = heatmaps.unsqueeze(1)
    if heatmaps.dim() != len(grid) + 2:
        raise ValueError(f"mwm: heatmaps has shape {tuple(heatmaps.shape)}: expected (B, [K,] "
                         f"{'D, ' if len(grid) == 3 else ''}H, W) for grid {grid}")
    if not heatmaps.is_floating_point():
        raise TypeError(f"mwm: heatmaps must be floating point, got {heatmaps.dtype}")
    weights = None
    if prompt_weights is not None:
        weights = torch.as_tensor(prompt_weights, dtype=torch.float32)
    return torch.ops.mwm.patch_scores(heatmaps.float(), grid, reduction, float(threshold),
                                      combine, weights, nan_policy)


def regions_from_thresholds(scores: torch.Tensor, thresholds: Sequence[float], *,
                            nan_policy: str = "error") -> torch.Tensor:
    """Region index per patch ``(B, N) int32``: how many of the ascending ``thresholds`` the
    score strictly exceeds (one threshold: background 0, ROI 1)."""
    return torch.ops.mwm.regions_from_thresholds(scores, [float(t) for t in thresholds],
                                                 nan_policy)


def regions_from_quantiles(scores: torch.Tensor, quantiles: Sequence[float], *,
                           nan_policy: str = "error") -> torch.Tensor:
    """Region index per patch ``(B, N) int32`` from per-sample shares: the top ``quantiles[0]``
    of patches by score form region >= 1, the top ``quantiles[1]`` region >= 2, ... (shares
    strictly descending; ties by patch index)."""
    return torch.ops.mwm.regions_from_quantiles(scores, [float(q) for q in quantiles], nan_policy)


@dataclass
class MaskResult:
    """Masks of a batch, all from one canonical per-sample order (visible first, then masked).

    ``mask[b, n]`` is True when patch ``n`` is masked (hidden from the encoder). ``ids_keep`` and
    ``ids_masked`` are padded with -1 when totals vary per sample (``per_region``);
    ``num_masked`` gives the lengths. ``argsort(noise)`` equals ``ids_shuffle``, so passing
    ``noise`` to HF ``ViTMAEModel`` keeps exactly the visible set (for fixed totals).
    """

    mask: torch.Tensor
    num_masked: torch.Tensor
    ids_shuffle: torch.Tensor
    ids_restore: torch.Tensor
    ids_keep: torch.Tensor
    ids_masked: torch.Tensor
    noise: torch.Tensor
    grid: tuple

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid)

    @property
    def num_visible(self) -> torch.Tensor:
        return self.num_patches - self.num_masked

    def mask_ratio(self) -> torch.Tensor:
        """Share of masked patches per sample, float32 ``(B,)``."""
        return self.num_masked.float() / self.num_patches

    def active(self) -> torch.Tensor:
        """SparK's active map ``(B, 1, gh, gw)`` (3D: ``(B, 1, gd, gh, gw)``): True = visible."""
        return ~self.mask.view(self.mask.shape[0], 1, *self.grid)

    def active_pyramid(self, scales: Sequence[int]) -> list:
        """SparK's active maps repeated to each feature-map scale: for scale ``s`` the map is
        ``s`` times finer per axis than the mask grid."""
        return [upsample_patch_map(self.mask, self.grid, s, invert=True) for s in scales]

    def pixel_mask(self, patch_size: Union[int, Sequence[int]]) -> torch.Tensor:
        """The mask at pixel level, ``(B, 1, H, W)`` (3D: ``(B, 1, D, H, W)``), True = masked."""
        return upsample_patch_map(self.mask, self.grid, patch_size, invert=False)


def upsample_patch_map(values: torch.Tensor, grid: Union[int, Grid],
                       factor: Union[int, Sequence[int]], *, invert: bool = False) -> torch.Tensor:
    """A per-patch bool map ``(B, N)`` repeated ``factor`` times per axis: ``(B, 1, *grid*factor)``;
    ``invert=True`` negates it (mask to SparK active map)."""
    grid = _as_grid(grid)
    factors = [int(factor)] * len(grid) if isinstance(factor, int) else [int(f) for f in factor]
    return torch.ops.mwm.upsample_patch_map(values, grid, factors, bool(invert))


def sample_indices(batch_size: int, offset: int = 0,
                   device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """Global sample indices ``offset .. offset + batch_size - 1`` as the int64 tensor the mask
    op is keyed by."""
    if batch_size <= 0:
        raise ValueError(f"mwm: batch_size = {batch_size}: must be positive")
    if offset < 0:
        raise ValueError(f"mwm: offset = {offset}: must be non-negative")
    return torch.arange(offset, offset + batch_size, dtype=torch.int64, device=device)


def generate_masks(grid: Union[int, Grid], batch_size: Optional[int] = None, *,
                   regions: Optional[torch.Tensor] = None,
                   scores: Optional[torch.Tensor] = None,
                   seed: int = 0, offset: int = 0,
                   sample_index: Optional[torch.Tensor] = None,
                   device: Union[str, torch.device, None] = None,
                   policy: str = "random", ratio: float = 0.75,
                   region_ratios: Sequence[float] = (), rounding: str = "floor",
                   order: str = "random", coarse_factor: int = 2, hard_share: float = 0.5,
                   attention_mode: str = "high", hint_pool_share: float = 0.2,
                   hint_share: float = 0.1, weight_floor: float = 0.5,
                   block_min_patches: int = 16, block_max_patches: int = 0,
                   block_min_aspect: float = 0.3, block_max_aspect: float = 1 / 0.3,
                   nan_policy: str = "error") -> MaskResult:
    """Masks for a batch under one policy (see docs/design.md, "Policies").

    Sample ``b`` is keyed by its global index ``offset + b`` (or ``sample_index[b]``), so the same
    sample gets the same mask in any batch, on any device, thread count or DDP world size.

    - ``random`` (MAE; SparK with ``rounding="round"``), ``block`` (BEiT v2), ``coarse`` (SimMIM
      with ``rounding="ceil_mask"``): need nothing else.
    - ``per_region`` (MWM) and ``fixed_total``: ``regions (B, N) int32`` and one ratio per region
      in ``region_ratios``; ``fixed_total`` masks ``N - keep_count(N, ratio)`` in every sample.
    - ``weighted``, ``loss_guided`` (HPM), ``attention_guided`` (AttMask): ``scores (B, N)``.

    The policy options from ``policy`` on are the op's (``torch.ops.mwm.generate_masks``),
    defined once in ``bindings/ops/generate_masks.h``: this signature mirrors the op schema's
    names, order and defaults, and a test fails when the two drift apart (CONTRIBUTING.md).
    """
    options = _given_options(locals())
    if policy not in POLICIES:
        raise ValueError(f"mwm: policy = {policy!r}: must be one of {', '.join(POLICIES)}")
    grid = _as_grid(grid)
    if sample_index is None:
        for tensor in (regions, scores):
            if tensor is not None:
                if batch_size is None:
                    batch_size = tensor.shape[0]
                device = device if device is not None else tensor.device
        if batch_size is None:
            raise ValueError("mwm: batch_size = None: give batch_size, sample_index, regions or "
                             "scores")
        sample_index = sample_indices(int(batch_size), int(offset), device)
    elif sample_index.dtype != torch.int64:
        raise TypeError(f"mwm: sample_index must be int64, got {sample_index.dtype}")
    outputs = _GENERATE_MASKS(sample_index, grid, regions, scores, _signed_seed(seed), **options)
    return MaskResult(*outputs, grid=tuple(grid))


def _given_options(arguments: dict) -> dict:
    # Only the options given cross to the op (the schema fills in the rest): each keyword the op
    # parses costs about a microsecond.
    return {name: convert(arguments[name]) for name, default, convert in _FORWARDED_OPTIONS
            if arguments[name] is not default}


_GENERATE_MASKS = torch.ops.mwm.generate_masks.default
# (name, the signature's default object, the converter to the schema's type) per policy option,
# in the schema's order; test_extension.py checks the signature against MASK_OPTIONS.
_FORWARDED_OPTIONS = tuple((name, generate_masks.__kwdefaults__[name], MASK_CONVERTERS[name])
                           for name in MASK_OPTIONS if name in generate_masks.__kwdefaults__)


def _signature_drift(function=generate_masks) -> list:
    """How the policy options of ``function``'s signature (``generate_masks``) differ from the op
    schema's (names, order, defaults): empty when they agree."""
    signature = inspect.signature(function)
    names = list(signature.parameters)
    ours = {name: signature.parameters[name].default for name in names[names.index("policy"):]}
    differences = [f"{name}: missing" for name in MASK_OPTIONS if name not in ours]
    differences += [f"{name}: not an option of the op" for name in ours if name not in MASK_OPTIONS]
    if not differences and list(ours) != list(MASK_OPTIONS):
        differences.append(f"order: {list(ours)} against the schema's {list(MASK_OPTIONS)}")
    for name, default in MASK_OPTIONS.items():
        if name in ours and MASK_CONVERTERS[name](ours[name]) != default:
            differences.append(f"{name}: default {ours[name]!r}, the schema's {default!r}")
    return differences
