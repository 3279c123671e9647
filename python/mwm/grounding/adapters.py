"""Detector, segmenter, vision-language and saliency outputs to heatmaps in [0, 1].

Every adapter returns a float32 tensor shaped (B, *image_size) -- (B, H, W) for images,
(B, D, H, W) for volumes -- that the MWM region pipeline (`mwm.grounding.regions`) or a
text-guided masker consumes directly. Heatmap value 1 means "the prompt is here".
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ._checks import (
    as_float_tensor,
    pixel_range,
    positive_float,
    require_finite,
    require_ndim,
    require_unit_interval,
    spatial_size,
)

__all__ = [
    "boxes_to_heatmap",
    "masks_to_heatmap",
    "similarity_to_heatmap",
    "saliency_to_heatmap",
    "normalize_maps",
    "resize_maps",
]


# --------------------------------------------------------------------------------------------
# shared helpers


def normalize_maps(maps: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Min-max normalization of each map over its last `spatial_dims` axes.

    A constant map has no peak to point at, so it becomes all zeros rather than NaN.
    """
    flat = maps.reshape(*maps.shape[: maps.dim() - spatial_dims], -1)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    scaled = torch.where(span > 0, (flat - low) / safe_span, torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def resize_maps(maps: torch.Tensor, size: Sequence[int], mode: str = "linear") -> torch.Tensor:
    """Resizes the last len(size) axes of `maps`; every leading axis is kept.

    mode "linear" is bilinear (2D) / trilinear (3D) with align_corners=False; "nearest" is
    PyTorch's nearest rule (source index floor(dst * in / out)), the rule of the MWM reference.
    """
    size = tuple(int(s) for s in size)
    spatial = len(size)
    if tuple(maps.shape[-spatial:]) == size:
        return maps
    lead = maps.shape[: maps.dim() - spatial]
    flat = maps.reshape(-1, 1, *maps.shape[-spatial:])
    if mode == "nearest":
        out = F.interpolate(flat, size=size, mode="nearest")
    elif mode == "linear":
        interp = "bilinear" if spatial == 2 else "trilinear"
        out = F.interpolate(flat, size=size, mode=interp, align_corners=False)
    else:
        raise ValueError(f"mode = {mode!r}: must be 'linear' or 'nearest'")
    return out.reshape(*lead, *size)


def _check_spatial_dims(spatial_dims) -> int:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims = {spatial_dims!r}: must be 2 (images) or 3 (volumes)")
    return spatial_dims


# --------------------------------------------------------------------------------------------
# boxes (Grounding DINO, OWL-ViT, any detector)


def boxes_to_heatmap(
    boxes,
    image_size: Sequence[int],
    scores=None,
    *,
    normalized: bool = False,
    expand_ratio: float = 1.0,
) -> torch.Tensor:
    """Detector boxes with scores to heatmaps (B, *image_size).

    boxes: per image, an (M, 4) array of xyxy corners `(x0, y0, x1, y1)` (x = column, y = row),
        or (M, 6) `(x0, y0, z0, x1, y1, z1)` for volumes (z = slice); either a list of B such
        arrays (M may differ per image) or one (B, M, 4|6) tensor.
    image_size: (H, W) or (D, H, W).
    scores: matching (M,) per image, in [0, 1]; None means score 1 for every box. A padded
        (B, M, ...) tensor can mark unused rows with score 0.
    normalized: corners are fractions of the image size (OWL-ViT / Grounding DINO post-processing
        with target sizes omitted) instead of pixels.
    expand_ratio: each box is scaled by this factor about its center before clipping.

    A pixel belongs to a box when its center lies inside it; the box is clipped to the image.
    Overlapping boxes combine by the maximum of their scores; pixels in no box are 0.
    """
    size = spatial_size(image_size, "image_size")
    ndim = len(size)
    expand = positive_float(expand_ratio, "expand_ratio")
    per_image_boxes = _per_image(boxes, "boxes")
    if scores is None:
        per_image_scores = [None] * len(per_image_boxes)
    else:
        per_image_scores = _per_image(scores, "scores")
        if len(per_image_scores) != len(per_image_boxes):
            raise ValueError(
                f"scores has {len(per_image_scores)} images but boxes has {len(per_image_boxes)}"
            )
    if not per_image_boxes:
        raise ValueError("boxes must hold at least one image")
    # Axis order of the corners (x, y[, z]) is the reverse of the array order ([D,] H, W).
    axis_of_corner = list(reversed(range(ndim)))
    heat = torch.zeros((len(per_image_boxes), *size), dtype=torch.float32)
    for b, (image_boxes, image_scores) in enumerate(zip(per_image_boxes, per_image_scores)):
        corners = as_float_tensor(image_boxes, f"boxes[{b}]").to(torch.float64).cpu()
        if corners.numel() == 0:
            continue
        if corners.dim() != 2 or corners.shape[1] != 2 * ndim:
            raise ValueError(
                f"boxes[{b}] must be (M, {2 * ndim}) corners for image_size {size}, "
                f"got shape {tuple(corners.shape)}"
            )
        require_finite(corners, f"boxes[{b}]")
        if image_scores is None:
            weights = torch.ones(corners.shape[0], dtype=torch.float64)
        else:
            weights = as_float_tensor(image_scores, f"scores[{b}]").to(torch.float64).cpu()
            if weights.shape != (corners.shape[0],):
                raise ValueError(
                    f"scores[{b}] must have shape ({corners.shape[0]},) to match boxes[{b}], "
                    f"got {tuple(weights.shape)}"
                )
            require_finite(weights, f"scores[{b}]")
            require_unit_interval(weights, f"scores[{b}]")
        if normalized:
            scale = torch.tensor([size[a] for a in axis_of_corner] * 2, dtype=torch.float64)
            corners = corners * scale
        low, high = corners[:, :ndim], corners[:, ndim:]
        bad = (high < low).any(dim=1).nonzero()
        if bad.numel():
            m = int(bad[0])
            raise ValueError(
                f"boxes[{b}][{m}] = {corners[m].tolist()}: the second corner must not be "
                "smaller than the first (xyxy format)"
            )
        center = (low + high) / 2
        half = (high - low) / 2 * expand
        for m in range(corners.shape[0]):
            score = float(weights[m])
            if score == 0.0:
                continue
            region = [slice(None)] * ndim
            for c, axis in enumerate(axis_of_corner):
                begin, end = pixel_range(
                    float(center[m, c] - half[m, c]), float(center[m, c] + half[m, c]), size[axis]
                )
                region[axis] = slice(begin, end)
            view = heat[b][tuple(region)]
            view.clamp_(min=score)
    return heat


def _per_image(value, argument: str) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if tensor.dim() < 1:
        raise ValueError(f"{argument} must be batched (a list per image or a (B, ...) tensor)")
    return list(tensor.unbind(0))


# --------------------------------------------------------------------------------------------
# segmentation masks (SAM, MedSAM, any segmenter)

_MASK_KINDS = ("auto", "binary", "probabilities", "logits")


def masks_to_heatmap(
    masks,
    scores=None,
    *,
    kind: str = "auto",
    combine: Optional[str] = "max",
    image_size: Optional[Sequence[int]] = None,
    spatial_dims: int = 2,
) -> torch.Tensor:
    """Segmentation masks (B, K, *S) or (B, *S) to heatmaps.

    kind: "binary" (bool or 0/1 values), "probabilities" (values in [0, 1]), "logits" (any real,
        passed through a sigmoid: SAM's `return_logits=True` / low-res logits), or "auto": bool
        tensors are binary, floating tensors inside [0, 1] are probabilities, anything else logits.
    scores: (B, K) confidences in [0, 1] (SAM's predicted IoU, a detector score); each mask is
        weighted by its score.
    combine: "max" merges the K masks into (B, *S); None keeps (B, K, *S).
    image_size: resize (bilinear) to this size, e.g. SAM's 256x256 low-res logits to the image.
    spatial_dims: 2 for images (H, W), 3 for volumes (D, H, W).
    """
    spatial = _check_spatial_dims(spatial_dims)
    if kind not in _MASK_KINDS:
        raise ValueError(f"kind = {kind!r}: must be one of {_MASK_KINDS}")
    if combine not in ("max", None):
        raise ValueError(f"combine = {combine!r}: must be 'max' or None")
    is_bool = isinstance(masks, torch.Tensor) and masks.dtype == torch.bool
    values = as_float_tensor(masks, "masks")
    require_ndim(values, "masks", (spatial + 1, spatial + 2),
                 f"(B, K, *S) or (B, *S) with {spatial} spatial axes")
    if values.dim() == spatial + 1:
        values = values.unsqueeze(1)
    require_finite(values, "masks")
    values = values.to(torch.float32)
    if kind == "auto":
        if is_bool:
            kind = "binary"
        elif values.numel() and float(values.min()) >= 0.0 and float(values.max()) <= 1.0:
            kind = "probabilities"
        else:
            kind = "logits"
    if kind == "binary":
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError("masks: kind='binary' needs bool or 0/1 values, found others")
        heat = values
    elif kind == "probabilities":
        require_unit_interval(values, "masks")
        heat = values
    else:
        heat = torch.sigmoid(values)
    if scores is not None:
        weights = as_float_tensor(scores, "scores").to(torch.float32)
        if weights.shape != heat.shape[:2]:
            raise ValueError(
                f"scores must have shape {tuple(heat.shape[:2])} (B, K), got {tuple(weights.shape)}"
            )
        require_finite(weights, "scores")
        require_unit_interval(weights, "scores")
        heat = heat * weights.reshape(*weights.shape, *([1] * spatial)).to(heat.device)
    if image_size is not None:
        heat = resize_maps(heat, spatial_size(image_size, "image_size", (spatial,))).clamp_(0, 1)
    if combine == "max":
        heat = heat.amax(dim=1)
    return heat.contiguous()


# --------------------------------------------------------------------------------------------
# patch-text similarity (CLIP, BiomedCLIP, SigLIP)


def similarity_to_heatmap(
    similarity,
    image_size: Sequence[int],
    *,
    grid: Optional[Sequence[int]] = None,
    normalize: str = "minmax",
    temperature: float = 0.07,
) -> torch.Tensor:
    """Patch-text cosine similarities to heatmaps at image resolution.

    similarity: (B, gh, gw) or (B, N) -- or (B, K, gh, gw) / (B, K, N) for K prompts when
        `grid` is given. (B, N) without `grid` needs a square N.
    image_size: (H, W) (or (D, H, W) with a 3D grid) of the output.
    normalize: "minmax" rescales each map to [0, 1]; "softmax" is a softmax over the patches at
        `temperature`, rescaled so that the best patch is 1 (exp((s - max s) / T)): a low
        temperature keeps only the patches close to the best match.
    The normalized grid is upsampled bilinearly (align_corners=False).
    """
    size = spatial_size(image_size, "image_size")
    values = as_float_tensor(similarity, "similarity").to(torch.float32)
    require_finite(values, "similarity")
    if grid is None:
        if values.dim() == 2:
            side = math.isqrt(values.shape[1])
            if side * side != values.shape[1]:
                raise ValueError(
                    f"similarity has shape {tuple(values.shape)}: {values.shape[1]} patches are "
                    "not a square grid, pass grid=(gh, gw)"
                )
            values = values.reshape(values.shape[0], side, side)
        elif values.dim() not in (3, 4):
            raise ValueError(
                f"similarity must be (B, gh, gw), (B, K, gh, gw) or (B, N), got shape "
                f"{tuple(values.shape)}"
            )
        cells = tuple(values.shape[-2:]) if len(size) == 2 else tuple(values.shape[-3:])
        if values.dim() - len(cells) not in (1, 2):
            raise ValueError(
                f"similarity must be (B, *grid) or (B, K, *grid) for image_size {size}, got "
                f"shape {tuple(values.shape)}"
            )
    else:
        cells = spatial_size(tuple(grid), "grid")
        n = math.prod(cells)
        if tuple(values.shape[-len(cells):]) != cells:
            if values.shape[-1] != n:
                raise ValueError(
                    f"similarity has shape {tuple(values.shape)}, which ends neither in the grid "
                    f"{cells} nor in its {n} patches"
                )
            values = values.reshape(*values.shape[:-1], *cells)
        if values.dim() - len(cells) not in (1, 2):
            raise ValueError(
                f"similarity must have a batch axis (and optionally a prompt axis) before the "
                f"grid, got shape {tuple(values.shape)}"
            )
    if len(cells) != len(size):
        raise ValueError(f"grid {cells} and image_size {size} must have the same number of axes")
    spatial = len(cells)
    if normalize == "minmax":
        maps = normalize_maps(values, spatial)
    elif normalize == "softmax":
        temp = positive_float(temperature, "temperature")
        flat = values.reshape(*values.shape[: values.dim() - spatial], -1)
        maps = torch.exp((flat - flat.amax(dim=-1, keepdim=True)) / temp).reshape(values.shape)
    else:
        raise ValueError(f"normalize = {normalize!r}: must be 'minmax' or 'softmax'")
    return resize_maps(maps, size).clamp_(0.0, 1.0).contiguous()


# --------------------------------------------------------------------------------------------
# saliency (Grad-CAM, M2IB, attention rollout, any real-valued map)


def saliency_to_heatmap(
    saliency,
    *,
    image_size: Optional[Sequence[int]] = None,
    sigma: float = 0.0,
    absolute: bool = False,
    spatial_dims: int = 2,
) -> torch.Tensor:
    """Any real-valued map (B, *S) -- or (B, K, *S) -- to heatmaps in [0, 1].

    absolute: take |saliency| first (signed gradients); otherwise the lowest value maps to 0.
    sigma: Gaussian smoothing in pixels of the input map (0 disables it), applied before the
        per-map min-max normalization.
    image_size: resize (bilinear) to this size after normalization.
    """
    spatial = _check_spatial_dims(spatial_dims)
    values = as_float_tensor(saliency, "saliency").to(torch.float32)
    require_ndim(values, "saliency", (spatial + 1, spatial + 2),
                 f"(B, *S) or (B, K, *S) with {spatial} spatial axes")
    require_finite(values, "saliency")
    if absolute:
        values = values.abs()
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"sigma = {sigma!r}: must be a number >= 0")
    if sigma > 0:
        values = gaussian_smooth(values, float(sigma), spatial)
    maps = normalize_maps(values, spatial)
    if image_size is not None:
        maps = resize_maps(maps, spatial_size(image_size, "image_size", (spatial,)))
    return maps.clamp_(0.0, 1.0).contiguous()


def gaussian_smooth(maps: torch.Tensor, sigma: float, spatial_dims: int) -> torch.Tensor:
    """Separable Gaussian blur of the last `spatial_dims` axes (edges replicated)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2.0 * sigma * sigma))
    kernel = (kernel / kernel.sum()).to(maps.device)
    shape = maps.shape
    out = maps.reshape(-1, 1, *shape[-spatial_dims:])
    for axis in range(spatial_dims):
        # Move the axis to smooth last, blur it as a 1D signal, move it back.
        dim = 2 + axis
        moved = out.movedim(dim, -1)
        moved_shape = moved.shape
        line = moved.reshape(-1, 1, moved_shape[-1])
        line = F.pad(line, (radius, radius), mode="replicate")
        line = F.conv1d(line, kernel.view(1, 1, -1))
        out = line.reshape(moved_shape).movedim(-1, dim)
    return out.reshape(shape)
