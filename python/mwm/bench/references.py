"""The masking code mwm is measured against, re-implemented in plain PyTorch / numpy from the
published methods (their semantics, their loop structure, their libraries), so the speed table
compares like with like:

- MAE ``random_masking`` (models_mae.py): uniform noise, two argsorts, a gather of the mask.
- SparK ``mask``: the same on the coarse grid with ``round(N * (1 - r))`` kept, scattered into an
  active map.
- The Mask What Matters reference (SparK with targeted masking): the binary region map resized
  to the grid (nearest), then a Python loop per image and per region with ``torch.randperm``
  keeping ``int(n * (1 - r))`` cells.
- HPM / AnatoMask loss-guided masking: per sample, numpy argsort of the predicted loss, the top
  ``int(masked * hard_share)`` masked, the rest shuffled with numpy.
- BEiT v2 ``MaskingGenerator``: numpy / ``random`` block masking per sample, then the exact-count
  fix-up (unmask the surplus or mask the shortfall at random).
- SimMIM ``MaskGenerator``: per sample, numpy permutation on the coarse ``mask_patch_size`` grid,
  ``ceil(cells * r)`` masked, repeated to the model patch grid.

Conventions follow each original (MAE: 1 = masked; SparK / MWM: True = active, i.e. visible);
``masked_counts`` turns any of them into masked patches per sample.
"""

from __future__ import annotations

import math
import random
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def _require_ratio(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"references: {name} = {value}: must lie in [0, 1]")


def _require_positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"references: {name} = {value}: must be positive")


def mae_random_masking(batch: int, num_patches: int, mask_ratio: float,
                       generator: Optional[torch.Generator] = None,
                       device: Optional[torch.device] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking, index part: ``(mask (B, L) float, 1 = masked;
    ids_restore (B, L); ids_keep (B, len_keep))`` with ``len_keep = int(L * (1 - r))``.

    The token gather ``x[ids_keep]`` is left out: mwm's mask op does not move tokens either."""
    _require_positive("batch", batch)
    _require_positive("num_patches", num_patches)
    _require_ratio("mask_ratio", mask_ratio)
    len_keep = int(num_patches * (1 - mask_ratio))
    noise = torch.rand(batch, num_patches, generator=generator, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return mask, ids_restore, ids_keep


def spark_random_masking(batch: int, grid: Sequence[int], mask_ratio: float,
                         generator: Optional[torch.Generator] = None,
                         device: Optional[torch.device] = None) -> torch.Tensor:
    """SparK's random mask: the active map ``(B, 1, *grid)`` (True = visible) with
    ``round(N * (1 - r))`` visible cells chosen by argsort of uniform noise."""
    _require_positive("batch", batch)
    _require_ratio("mask_ratio", mask_ratio)
    n = math.prod(grid)
    len_keep = round(n * (1 - mask_ratio))
    idx = torch.rand(batch, n, generator=generator).argsort(dim=1)[:, :len_keep].to(device)
    active = torch.zeros(batch, n, dtype=torch.bool, device=device)
    return active.scatter_(dim=1, index=idx, value=True).view(batch, 1, *grid)


def mwm_reference_masking(region_map: torch.Tensor, grid: Sequence[int], high_ratio: float,
                          low_ratio: float, generator: Optional[torch.Generator] = None
                          ) -> torch.Tensor:
    """The Mask What Matters reference's targeted masking: the active map ``(B, 1, *grid)``
    (True = visible).

    ``region_map (B, *spatial)`` is the binary ROI map at any resolution (image or grid); it is
    resized to the grid with ``interpolate(mode="nearest")``. Then, image by image, ROI cells
    (value > 0) keep ``int(n_roi * (1 - high_ratio))`` cells drawn by ``torch.randperm`` and
    background cells keep ``int(n_bg * (1 - low_ratio))``; everything else is masked.
    """
    _require_ratio("high_ratio", high_ratio)
    _require_ratio("low_ratio", low_ratio)
    grid = tuple(int(g) for g in grid)
    if region_map.dim() != len(grid) + 1:
        raise ValueError(f"references: region_map has shape {tuple(region_map.shape)}: expected "
                         f"(B, {len(grid)} spatial sizes) for grid {grid}")
    device = region_map.device
    cells = F.interpolate(region_map.unsqueeze(1).float(), size=grid, mode="nearest").squeeze(1)
    active_maps = []
    for b in range(cells.shape[0]):
        cell_map = cells[b]
        roi = (cell_map > 0).nonzero(as_tuple=True)
        background = (cell_map == 0).nonzero(as_tuple=True)
        active = torch.zeros(grid, dtype=torch.bool, device=device)
        for coords, ratio in ((roi, high_ratio), (background, low_ratio)):
            count = len(coords[0])
            keep = max(0, int(count * (1 - ratio)))
            if count > 0 and keep > 0:
                chosen = torch.randperm(count, generator=generator, device=device)[:keep]
                active[tuple(axis[chosen] for axis in coords)] = True
        active_maps.append(active)
    return torch.stack(active_maps).unsqueeze(1)


def hpm_loss_guided_masking(loss_pred: torch.Tensor, mask_ratio: float, hard_share: float,
                            rng: Optional[np.random.Generator] = None
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """HPM / AnatoMask loss-guided masking: ``(mask (B, L) float, 1 = masked; ids_restore)``.

    ``len_keep = int(L * (1 - r))`` patches stay visible; of the ``L - len_keep`` masked ones,
    the ``int((L - len_keep) * hard_share)`` with the highest predicted loss are chosen by a numpy
    argsort per sample, the others are a numpy shuffle of the remaining patches.
    """
    _require_ratio("mask_ratio", mask_ratio)
    _require_ratio("hard_share", hard_share)
    if loss_pred.dim() != 2:
        raise ValueError(f"references: loss_pred has shape {tuple(loss_pred.shape)}: expected "
                         f"(B, L)")
    rng = rng if rng is not None else np.random.default_rng()
    batch, length = loss_pred.shape
    len_keep = int(length * (1 - mask_ratio))
    len_hard = int((length - len_keep) * hard_share)
    losses = loss_pred.detach().cpu().numpy()
    ids_shuffle = np.empty((batch, length), dtype=np.int64)
    for i in range(batch):
        hardest = np.argsort(losses[i], kind="stable")[length - len_hard:]
        rest = np.delete(np.arange(length), hardest)
        rng.shuffle(rest)
        ids_shuffle[i, :length - len_hard] = rest
        ids_shuffle[i, length - len_hard:] = hardest
    ids_shuffle_t = torch.from_numpy(ids_shuffle).to(loss_pred.device)
    ids_restore = torch.argsort(ids_shuffle_t, dim=1)
    mask = torch.ones(batch, length, device=loss_pred.device)
    mask[:, :len_keep] = 0
    return torch.gather(mask, dim=1, index=ids_restore), ids_restore


class BeitBlockMaskGenerator:
    """BEiT v2's block-wise ``MaskingGenerator`` for one ``(height, width)`` grid: blocks of
    random area in ``[min_num_patches, budget]`` and log-uniform aspect ratio, up to 10 tries per
    block, until ``num_masking_patches`` are covered; then the exact-count fix-up. Returns an
    int32 ``(height, width)`` map, 1 = masked. Draws from a ``random.Random`` and a numpy
    ``Generator`` of its own instead of the global ones."""

    def __init__(self, grid: Sequence[int], num_masking_patches: int, min_num_patches: int = 16,
                 max_num_patches: Optional[int] = None, min_aspect: float = 0.3,
                 max_aspect: Optional[float] = None, seed: Optional[int] = None) -> None:
        self.height, self.width = (int(g) for g in grid)
        if not 0 <= num_masking_patches <= self.height * self.width:
            raise ValueError(f"references: num_masking_patches = {num_masking_patches}: must lie "
                             f"in [0, {self.height * self.width}]")
        _require_positive("min_num_patches", min_num_patches)
        if min_aspect <= 0:
            raise ValueError(f"references: min_aspect = {min_aspect}: must be positive")
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect))
        self.random = random.Random(seed)
        self.np_random = np.random.default_rng(seed)

    def _add_block(self, mask: np.ndarray, budget: int) -> int:
        added = 0
        for _ in range(10):
            area = self.random.uniform(self.min_num_patches, budget)
            aspect = math.exp(self.random.uniform(*self.log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if w < self.width and h < self.height:
                top = self.random.randint(0, self.height - h)
                left = self.random.randint(0, self.width - w)
                already = mask[top:top + h, left:left + w].sum()
                if 0 < h * w - already <= budget:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                added += 1
            if added > 0:
                break
        return added

    def __call__(self) -> np.ndarray:
        mask = np.zeros((self.height, self.width), dtype=np.int32)
        count = 0
        while count < self.num_masking_patches:
            budget = min(self.num_masking_patches - count, self.max_num_patches)
            added = self._add_block(mask, budget)
            if added == 0:
                break
            count += added
        # BEiT v2 keeps the masked count exact.
        if count > self.num_masking_patches:
            rows, cols = mask.nonzero()
            reveal = self.np_random.choice(rows.shape[0], count - self.num_masking_patches,
                                           replace=False)
            mask[rows[reveal], cols[reveal]] = 0
        elif count < self.num_masking_patches:
            rows, cols = (mask == 0).nonzero()
            hide = self.np_random.choice(rows.shape[0], self.num_masking_patches - count,
                                         replace=False)
            mask[rows[hide], cols[hide]] = 1
        return mask


def beit_block_masking(generator: BeitBlockMaskGenerator, batch: int) -> np.ndarray:
    """``batch`` BEiT v2 block masks, one generator call per sample (as its data loader does):
    ``(B, height, width)`` int32, 1 = masked."""
    _require_positive("batch", batch)
    return np.stack([generator() for _ in range(batch)])


class SimMIMMaskGenerator:
    """SimMIM's ``MaskGenerator``: a random mask on the ``input_size / mask_patch_size`` grid with
    ``ceil(cells * mask_ratio)`` masked cells, repeated ``mask_patch_size / model_patch_size``
    times per axis. Returns ``(grid, grid)`` int, 1 = masked."""

    def __init__(self, input_size: int = 224, mask_patch_size: int = 32,
                 model_patch_size: int = 16, mask_ratio: float = 0.6,
                 seed: Optional[int] = None) -> None:
        if input_size % mask_patch_size or mask_patch_size % model_patch_size:
            raise ValueError(f"references: input_size = {input_size}, mask_patch_size = "
                             f"{mask_patch_size}, model_patch_size = {model_patch_size}: each "
                             f"must divide the one before")
        _require_ratio("mask_ratio", mask_ratio)
        self.rand_size = input_size // mask_patch_size
        self.scale = mask_patch_size // model_patch_size
        self.token_count = self.rand_size ** 2
        self.mask_count = int(math.ceil(self.token_count * mask_ratio))
        self.np_random = np.random.default_rng(seed)

    def __call__(self) -> np.ndarray:
        chosen = self.np_random.permutation(self.token_count)[:self.mask_count]
        mask = np.zeros(self.token_count, dtype=int)
        mask[chosen] = 1
        mask = mask.reshape(self.rand_size, self.rand_size)
        return mask.repeat(self.scale, axis=0).repeat(self.scale, axis=1)


def simmim_masking(generator: SimMIMMaskGenerator, batch: int) -> np.ndarray:
    """``batch`` SimMIM masks, one generator call per sample: ``(B, grid, grid)``, 1 = masked."""
    _require_positive("batch", batch)
    return np.stack([generator() for _ in range(batch)])


def masked_counts(masks, *, active: bool = False) -> torch.Tensor:
    """Masked patches per sample of any mask above, as int64 ``(B,)``; ``active=True`` for the
    SparK / MWM active maps (True = visible)."""
    values = torch.as_tensor(np.asarray(masks) if isinstance(masks, np.ndarray) else masks)
    flat = values.reshape(values.shape[0], -1)
    hidden = ~flat.bool() if active else flat.bool()
    return hidden.sum(dim=1).to(torch.int64)
