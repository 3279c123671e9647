"""The region pipeline of Mask What Matters (arXiv 2509.23054): heatmap to binary ROI map.

Reference method, per heatmap: threshold (strict >) -> keep the k largest connected components
(8-connectivity in 2D, 26 in 3D) -> replace each component by its bounding box scaled by
`expand_ratio` about its center, clipped to the map -> fill the boxes -> binary ROI map, which
the reference then resizes to the mask grid with nearest-neighbour interpolation.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage

from ._checks import as_float_tensor, pixel_range, positive_float, require_finite, spatial_size
from .adapters import resize_maps

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_NUM_COMPONENTS",
    "mwm_region_map",
    "largest_component_boxes",
    "region_level_map",
]

DEFAULT_THRESHOLD = 0.3
DEFAULT_NUM_COMPONENTS = 2

# A box is a tuple of half-open (begin, end) pixel ranges, one per axis in array order.
Box = Tuple[Tuple[int, int], ...]


def largest_component_boxes(
    binary: np.ndarray, num_components: Optional[int], expand_ratio: float = 1.0
) -> List[Box]:
    """Bounding boxes of the `num_components` largest connected components of one binary map.

    Components connect through faces, edges and corners (8-connectivity in 2D, 26 in 3D).
    Equal sizes keep the component found first in row-major scan order. Each box is scaled by
    `expand_ratio` about its center and clipped; boxes come largest component first.
    """
    structure = np.ones((3,) * binary.ndim, dtype=bool)
    labels, count = ndimage.label(binary, structure=structure)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    # Stable sort on -size: equal sizes stay in label order, which is scan order.
    ranked = np.argsort(-sizes, kind="stable")
    if num_components is not None:
        ranked = ranked[:num_components]
    extents = ndimage.find_objects(labels)
    boxes = []
    for label_index in ranked:
        box = []
        for axis, extent in enumerate(extents[label_index]):
            center = (extent.start + extent.stop) / 2.0
            half = (extent.stop - extent.start) / 2.0 * expand_ratio
            box.append(pixel_range(center - half, center + half, binary.shape[axis]))
        boxes.append(tuple(box))
    return boxes


def mwm_region_map(
    heatmaps,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    num_components: Optional[int] = DEFAULT_NUM_COMPONENTS,
    expand_ratio: float = 1.0,
    grid: Optional[Sequence[int]] = None,
    spatial_dims: int = 2,
) -> torch.Tensor:
    """Binary ROI maps from heatmaps, the MWM reference pipeline.

    heatmaps: (B, H, W) (or (B, D, H, W) with spatial_dims=3), any real values; usually in
        [0, 1] from `mwm.grounding.adapters`. NaN or infinity is an error.
    threshold: a pixel is a candidate when its value is strictly greater.
    num_components: how many of the largest connected components to keep (None keeps all).
    expand_ratio: each component's bounding box is scaled by this factor about its center
        (1.0 keeps the tight box), then clipped to the map.
    grid: when given, the ROI map is resized to this patch grid, e.g. (7, 7), with PyTorch's
        nearest rule (source = floor(dst * in / out)), as the reference does.

    Returns a bool tensor (B, *S) -- or (B, *grid) -- on the heatmaps' device; True is ROI.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims = {spatial_dims!r}: must be 2 (images) or 3 (volumes)")
    values = as_float_tensor(heatmaps, "heatmaps")
    if values.dim() != spatial_dims + 1:
        raise ValueError(
            f"heatmaps must be (B, {'D, ' if spatial_dims == 3 else ''}H, W), got shape "
            f"{tuple(values.shape)}"
        )
    require_finite(values, "heatmaps")
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
            or threshold != threshold):
        raise ValueError(f"threshold = {threshold!r}: must be a number")
    if num_components is not None and (
        isinstance(num_components, bool) or not isinstance(num_components, int)
        or num_components < 1
    ):
        raise ValueError(f"num_components = {num_components!r}: must be a positive int or None")
    expand = positive_float(expand_ratio, "expand_ratio")
    cells = None if grid is None else spatial_size(tuple(grid), "grid", (spatial_dims,))

    above = (values > threshold).cpu().numpy()
    roi = np.zeros(above.shape, dtype=bool)
    for b in range(above.shape[0]):
        for box in largest_component_boxes(above[b], num_components, expand):
            roi[b][tuple(slice(begin, end) for begin, end in box)] = True
    out = torch.from_numpy(roi)
    if cells is not None:
        out = resize_maps(out.to(torch.float32), cells, mode="nearest") > 0.5
    return out.to(values.device)


def region_level_map(roi_maps, levels: Sequence[int], num_levels: int) -> torch.Tensor:
    """Several binary ROI maps (B, K, *S) to one map whose value encodes the region.

    Prompt k's ROI gets the value levels[k] / num_levels (levels are 1..num_levels), the rest 0;
    where ROIs overlap the highest level wins. With the thresholds (l - 0.5) / num_levels for
    l = 1..num_levels, a masker's strict-threshold regions then recover the levels exactly (see
    `mwm.grounding.prompt_bank.masker_kwargs_from_prompt_bank`).
    """
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"num_levels = {num_levels!r}: must be a positive int")
    maps = torch.as_tensor(roi_maps)
    if maps.dtype != torch.bool:
        raise TypeError(f"roi_maps must be a bool tensor (B, K, *S), got dtype {maps.dtype}")
    if maps.dim() < 3:
        raise ValueError(f"roi_maps must be (B, K, *S), got shape {tuple(maps.shape)}")
    if len(levels) != maps.shape[1]:
        raise ValueError(
            f"levels has {len(levels)} entries but roi_maps has {maps.shape[1]} prompts (axis 1)"
        )
    for level in levels:
        if (isinstance(level, bool) or not isinstance(level, int)
                or not 1 <= level <= num_levels):
            raise ValueError(
                f"levels holds {level!r}: each level must be an int in [1, {num_levels}]")
    scale = torch.tensor([lv / num_levels for lv in levels], dtype=torch.float32,
                         device=maps.device)
    weights = scale.reshape(1, -1, *([1] * (maps.dim() - 2)))
    return (maps.to(torch.float32) * weights).amax(dim=1)
