"""Pictures of grounding and masking: heatmap, region map and patch mask over the image.

`overlay_rgb` composes one picture as a uint8 RGB array with numpy (fast enough for a CLI that
writes one overlay per image); `overlay_figure` lays several samples out as a grid of panels
with matplotlib's Agg canvas (no pyplot, no display needed). Both can save a PNG.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["overlay_rgb", "overlay_figure", "figure_to_array", "save_png"]

ROI_COLOR = np.array([0.15, 0.85, 1.0])  # cyan outline / tint of region-of-interest cells
MASK_GRAY = 0.5
MASK_OPACITY = 0.7

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_numpy(value, argument: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"{argument} must be an array, got {type(value).__name__}")
    return array


def _image_rgb(image) -> np.ndarray:
    """(H, W), (H, W, 3|4) or (3, H, W) of any range -> float (H, W, 3) in [0, 1]."""
    array = _to_numpy(image, "image").astype(np.float64)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (3, H, W), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("image holds NaN or infinity")
    low, high = float(array.min()), float(array.max())
    array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return array


def _resize(values: np.ndarray, size, mode: str) -> np.ndarray:
    if values.shape == tuple(size):
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    if mode == "nearest":
        out = F.interpolate(tensor, size=tuple(size), mode="nearest")
    else:
        out = F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def _grid_cells(grid, count: int, argument: str):
    if grid is None:
        side = int(round(count**0.5))
        if side * side != count:
            raise ValueError(
                f"{argument} has {count} patches, not a square grid: pass grid=(gh, gw)")
        return side, side
    gh, gw = (int(grid), int(grid)) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))
    if gh * gw != count:
        raise ValueError(f"{argument} has {count} patches but grid {gh}x{gw} has {gh * gw}")
    return gh, gw


def _boundary(regions: np.ndarray) -> np.ndarray:
    """Pixels inside a region (> 0) with a 4-neighbour of another value: every region's outline."""
    padded = np.pad(regions, 1, mode="constant", constant_values=0)
    center = padded[1:-1, 1:-1]
    differs = np.zeros(regions.shape, dtype=bool)
    for neighbour in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
        differs |= neighbour != center
    return differs & (regions > 0)


def _thicken(edge: np.ndarray, width: int) -> np.ndarray:
    out = edge.copy()
    for _ in range(max(0, width - 1)):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def overlay_rgb(
    image,
    *,
    heatmap=None,
    region_map=None,
    mask=None,
    grid=None,
    alpha: float = 0.45,
    cmap: str = "inferno",
    outline_width: Optional[int] = None,
) -> np.ndarray:
    """One picture (H, W, 3) uint8: the image, a colored heatmap, the ROI outline, masked patches.

    image: (H, W) grayscale, (H, W, 3) RGB or (3, H, W), any range (min-max scaled for display).
    heatmap: (h, w) in [0, 1], any resolution (bilinear to the image), blended with `alpha`.
    region_map: (h, w) bool, region indices or levels, any resolution (nearest); the outline of
        every region above 0 is drawn.
    mask: (N,) or (gh, gw) bool, True = masked (the MAE convention); masked patches are grayed.
    grid: (gh, gw) of a flat mask; square grids are inferred.
    """
    rgb = _image_rgb(image)
    height, width = rgb.shape[:2]
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha = {alpha}: must lie in [0, 1]")
    if heatmap is not None:
        heat = _to_numpy(heatmap, "heatmap").astype(np.float64)
        if heat.ndim != 2:
            raise ValueError(f"heatmap must be (h, w), got shape {heat.shape}")
        heat = np.clip(_resize(heat, (height, width), "linear"), 0.0, 1.0)
        import matplotlib

        colors = matplotlib.colormaps[cmap](heat)[..., :3]
        rgb = (1.0 - alpha) * rgb + alpha * colors
    if mask is not None:
        cells = _to_numpy(mask, "mask").astype(bool)
        if cells.ndim == 1:
            cells = cells.reshape(_grid_cells(grid, cells.size, "mask"))
        if cells.ndim != 2:
            raise ValueError(f"mask must be (N,) or (gh, gw), got shape {cells.shape}")
        masked = _resize(cells.astype(np.float32), (height, width), "nearest") > 0.5
        rgb[masked] = (1.0 - MASK_OPACITY) * rgb[masked] + MASK_OPACITY * MASK_GRAY
    if region_map is not None:
        regions = _to_numpy(region_map, "region_map").astype(np.float64)
        if regions.ndim != 2:
            raise ValueError(f"region_map must be (h, w), got shape {regions.shape}")
        resized = _resize(regions, (height, width), "nearest")
        width_px = outline_width or max(1, round(min(height, width) / 112))
        edge = _thicken(_boundary(resized), width_px)
        rgb[edge] = ROI_COLOR
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(array: np.ndarray, path: Union[str, os.PathLike]) -> Path:
    """Writes an (H, W, 3|4) uint8 array as PNG atomically (temporary file, then rename)."""
    from PIL import Image

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            Image.fromarray(np.ascontiguousarray(array)).save(stream, format="PNG")
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return target


def figure_to_array(figure) -> np.ndarray:
    """The rendered (H, W, 4) uint8 RGBA pixels of a matplotlib figure on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = (figure.canvas if isinstance(figure.canvas, FigureCanvasAgg)
              else FigureCanvasAgg(figure))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def _per_sample(value, count: int, argument: str):
    if value is None:
        return [None] * count
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = list(_to_numpy(value, argument))
    if len(items) != count:
        raise ValueError(f"{argument} has {len(items)} samples but images has {count}")
    return items


def overlay_figure(
    images,
    *,
    heatmaps=None,
    region_maps=None,
    masks=None,
    grid=None,
    row_titles: Optional[Sequence[str]] = None,
    column_titles: Optional[Sequence[str]] = None,
    panel_size: float = 2.6,
    dpi: int = 100,
    path: Optional[Union[str, os.PathLike]] = None,
):
    """A matplotlib Figure: one row per sample, one column per panel.

    Panels: the image; the heatmap over it (when heatmaps are given); the region map on the
    patch grid (region_maps); the mask (masks, True = masked) with the ROI outline. images is a
    (B, ...) array/tensor or a list of B images; the others are (B, ...) or lists of B.
    Saves a PNG when `path` is given. Uses an Agg canvas, never pyplot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    samples = (list(images) if isinstance(images, (list, tuple))
               else list(_to_numpy(images, "images")))
    if not samples:
        raise ValueError("images must hold at least one image")
    count = len(samples)
    heats = _per_sample(heatmaps, count, "heatmaps")
    regions = _per_sample(region_maps, count, "region_maps")
    cells = _per_sample(masks, count, "masks")
    panels = ["image"]
    if heatmaps is not None:
        panels.append("heatmap")
    if region_maps is not None:
        panels.append("regions")
    if masks is not None:
        panels.append("mask")
    default_titles = {
        "image": "image",
        "heatmap": "heatmap",
        "regions": "region map",
        "mask": "mask (gray = masked)",
    }
    titles = (list(column_titles) if column_titles is not None
              else [default_titles[p] for p in panels])
    if len(titles) != len(panels):
        raise ValueError(
            f"column_titles has {len(titles)} entries for {len(panels)} panels {panels}")
    if row_titles is not None and len(row_titles) != count:
        raise ValueError(f"row_titles has {len(row_titles)} entries for {count} samples")

    figure = Figure(figsize=(panel_size * len(panels), panel_size * count + 0.4), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.subplots(count, len(panels), squeeze=False)
    for row in range(count):
        image = samples[row]
        sample_grid = grid[row] if isinstance(grid, list) else grid
        for column, panel in enumerate(panels):
            if panel == "image":
                picture = overlay_rgb(image)
            elif panel == "heatmap":
                picture = overlay_rgb(image, heatmap=heats[row], alpha=0.6)
            elif panel == "regions":
                picture = _region_panel(image, regions[row])
            else:
                picture = overlay_rgb(image, mask=cells[row], grid=sample_grid,
                                      region_map=regions[row])
            ax = axes[row][column]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[column], fontsize=10)
            if column == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[row], fontsize=9)
    figure.tight_layout()
    if path is not None:
        save_png(figure_to_array(figure), path)
    return figure


def _region_panel(image, region_map) -> np.ndarray:
    """The image with every region tinted (ROI levels brighter) and the patch grid drawn."""
    rgb = _image_rgb(image)
    height, width = rgb.shape[:2]
    if region_map is None:
        return (rgb * 255 + 0.5).astype(np.uint8)
    regions = _to_numpy(region_map, "region_map").astype(np.float64)
    if regions.ndim != 2:
        raise ValueError(f"region_map must be (h, w), got shape {regions.shape}")
    top = float(regions.max()) if regions.size and regions.max() > 0 else 1.0
    level = _resize(regions / top, (height, width), "nearest")
    tint = 0.55 * level[..., None]
    rgb = (1.0 - tint) * rgb + tint * ROI_COLOR
    gh, gw = regions.shape
    if gh < height and gw < width:  # draw the patch grid when the map is at patch resolution
        rows = (np.arange(1, gh) * height) // gh
        cols = (np.arange(1, gw) * width) // gw
        rgb[rows, :] = 0.8 * rgb[rows, :] + 0.2
        rgb[:, cols] = 0.8 * rgb[:, cols] + 0.2
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
