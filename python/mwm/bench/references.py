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

The second part of the file holds the formula references that the tests compare mwm with and
the benchmarks time it against (random keys, counts, orders, MAE's token bookkeeping, the
MAE / SparK / SimMIM losses, Deep CORAL): one implementation of each, for both.
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
    return mae_masking_from_noise(noise, len_keep)


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


# =============================================================================================
# Formula references for the tests and the benchmarks
#
# Independent plain-Python / plain-PyTorch versions of what mwm computes, written from the
# contracts (docs/design.md) and the published methods, not from mwm's C++ code. The tests compare
# mwm with them; the benchmarks time mwm against them. Everything below is kept apart from the
# speed references above so that each part can change without touching the other.
# =============================================================================================

# --- Counter-based random keys (Philox4x32-10, Salmon et al., SC'11) and mwm's keying ---------

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def philox4x32_10(counter, key):
    """Philox4x32 with 10 rounds: four 32-bit counter words and two key words in, four out."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        p0, p1 = PHILOX_M0 * c0, PHILOX_M1 * c2
        c0, c1, c2, c3 = (((p1 >> 32) ^ c1 ^ k0) & MASK32, p1 & MASK32,
                          ((p0 >> 32) ^ c3 ^ k1) & MASK32, p0 & MASK32)
    return c0, c1, c2, c3


def random_u32(seed, sample, patch, draw=0):
    """The first Philox word for (seed, sample, patch, draw), keyed as docs/design.md says."""
    counter = (sample & MASK32, patch, draw, (sample >> 32) & MASK32)
    return philox4x32_10(counter, (seed & MASK32, (seed >> 32) & MASK32))[0]


def random_key(seed, sample, patch):
    """A patch's 64-bit sort key: its random word above, its index below (ties impossible)."""
    return (random_u32(seed, sample, patch) << 32) | patch


# --- Counts, selection and the canonical order -----------------------------------------------

def keep_count(n, ratio, rounding="floor"):
    """Visible patches out of ``n`` at mask ratio ``ratio`` under each rounding rule."""
    if rounding == "floor":
        return int(n * (1.0 - ratio))
    if rounding == "round":
        return int(round(n * (1.0 - ratio)))
    if rounding == "ceil_mask":
        return n - math.ceil(n * ratio)
    return n - int(n * ratio)


def canonical_order(keys_by_patch, visible, order="random"):
    """Visible patches first, then masked, each by key (random) or by index (sorted)."""
    def sort(p):
        return keys_by_patch[p] if order == "random" else p
    shown = sorted((p for p in range(len(keys_by_patch)) if visible[p]), key=sort)
    hidden = sorted((p for p in range(len(keys_by_patch)) if not visible[p]), key=sort)
    return shown + hidden, len(shown)


def select_by_groups(keys, groups, keep):
    """The ``keep[g]`` patches of each group ``g`` with the smallest keys are visible."""
    visible = [False] * len(keys)
    for g, k in keep.items():
        members = sorted((p for p in range(len(keys)) if groups[p] == g), key=lambda p: keys[p])
        for p in members[:k]:
            visible[p] = True
    return visible


def random_masks(n, ratio, seed, sample, rounding="floor", order="random"):
    """The random policy for one sample: ``(ids_shuffle as a list, visible count)``."""
    keys = [random_key(seed, sample, p) for p in range(n)]
    visible = select_by_groups(keys, [0] * n, {0: keep_count(n, ratio, rounding)})
    return canonical_order(keys, visible, order)


def per_region_masks(regions, ratios, seed, sample, order="random"):
    """The per_region policy for one sample: each region keeps ``int(n_r * (1 - ratio_r))``."""
    n = len(regions)
    keys = [random_key(seed, sample, p) for p in range(n)]
    keep = {r: keep_count(sum(1 for x in regions if x == r), ratio)
            for r, ratio in enumerate(ratios)}
    return canonical_order(keys, select_by_groups(keys, regions, keep), order)


def share_budget(counts, ratios, masked):
    """fixed_total's split: proportional to round(ratio * 65536) * n_r, capped, largest
    remainder with ties to the lower region."""
    q = [int(round(min(max(r, 0.0), 1.0) * 65536)) for r in ratios]
    masked = min(masked, sum(counts))
    capped = [c == 0 for c in counts]
    while True:
        left = masked - sum(c for c, cap in zip(counts, capped) if cap)
        weights = [0 if cap else qi * c for qi, c, cap in zip(q, counts, capped)]
        if sum(weights) == 0:
            weights = [0 if cap else c for c, cap in zip(counts, capped)]
        total = sum(weights)
        newly = [r for r in range(len(counts))
                 if not capped[r] and left * weights[r] >= counts[r] * total]
        if not newly:
            break
        for r in newly:
            capped[r] = True
    out, rem = [], []
    for r in range(len(counts)):
        if capped[r]:
            out.append(counts[r])
            rem.append(-1)
        else:
            out.append(left * weights[r] // total if total else 0)
            rem.append(left * weights[r] % total if total else 0)
    short = masked - sum(out)
    for r in sorted(range(len(counts)), key=lambda r: (-rem[r], r)):
        if short == 0:
            break
        if rem[r] >= 0 and out[r] < counts[r]:
            out[r] += 1
            short -= 1
    return out


# --- MAE's token bookkeeping (models_mae.py), given the noise ----------------------------------

def mae_masking_from_noise(noise: torch.Tensor, len_keep: int
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE random_masking's index part for a given ``noise (B, L)``: ``(mask (B, L) float,
    1 = masked; ids_restore (B, L); ids_keep (B, len_keep))``."""
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(noise.shape, device=noise.device)
    mask[:, :len_keep] = 0
    return torch.gather(mask, dim=1, index=ids_restore), ids_restore, ids_keep


def mae_gather_tokens(x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """MAE's ``x_masked = torch.gather(x, 1, ids_keep[..., None].repeat(1, 1, D))``."""
    return torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, x.shape[-1]))


def mae_restore_tokens(x_vis: torch.Tensor, ids_restore: torch.Tensor,
                       mask_token: torch.Tensor) -> torch.Tensor:
    """MAE forward_decoder without the cls token: append mask tokens, then unshuffle."""
    b, k, c = x_vis.shape
    mask_tokens = mask_token.reshape(1, 1, c).repeat(b, ids_restore.shape[1] - k, 1)
    x_ = torch.cat([x_vis, mask_tokens], dim=1)
    return torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, c))


def mae_random_masking_with_noise(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor
                                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's ``random_masking(x, mask_ratio)`` drawn with ``noise``: ``(x_masked, mask,
    ids_restore)``, ``len_keep = int(L * (1 - mask_ratio))``."""
    len_keep = int(x.shape[1] * (1 - mask_ratio))
    mask, ids_restore, ids_keep = mae_masking_from_noise(noise, len_keep)
    return mae_gather_tokens(x, ids_keep), mask, ids_restore


# --- Reconstruction losses, from the published code --------------------------------------------

def patchify(imgs: torch.Tensor, p) -> torch.Tensor:
    """MAE's patchify (2D) and its straightforward 3D extension: (B, N, P), P = (pd, ph, pw, c).
    ``p`` is one size for every axis or one per axis."""
    p = [p] * (imgs.dim() - 2) if isinstance(p, int) else list(p)
    b, c = imgs.shape[:2]
    if imgs.dim() == 4:
        h, w = imgs.shape[2] // p[0], imgs.shape[3] // p[1]
        x = imgs.reshape(b, c, h, p[0], w, p[1])
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(b, h * w, p[0] * p[1] * c)
    d, h, w = imgs.shape[2] // p[0], imgs.shape[3] // p[1], imgs.shape[4] // p[2]
    x = imgs.reshape(b, c, d, p[0], h, p[1], w, p[2])
    x = torch.einsum("ncdohpwq->ndhwopqc", x)
    return x.reshape(b, d * h * w, p[0] * p[1] * p[2] * c)


def unpatchify(x: torch.Tensor, p, shape) -> torch.Tensor:
    """The inverse of patchify: patch vectors back to an image of ``shape``."""
    index = torch.arange(math.prod(shape[1:]), dtype=torch.int64).reshape(1, *shape[1:])
    order = patchify(index, p)[0].reshape(-1)
    out = torch.empty((shape[0], math.prod(shape[1:])), dtype=x.dtype)
    out[:, order] = x.reshape(shape[0], -1)
    return out.reshape(shape)


def mae_forward_loss(imgs, pred, mask, p, norm_pix_loss):
    """MAE models_mae.py forward_loss (identical in HF ViTMAE); ``mask`` 0/1, 1 = masked."""
    target = patchify(imgs, p)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = (pred - target) ** 2
    loss = loss.mean(dim=-1)
    loss = (loss * mask).sum() / mask.sum()
    return loss


# SparK and SimMIM add their epsilon to an integer count (non_active.sum(), mask.sum()), which
# torch promotes to float32, where +1e-8 / +1e-5 round away for any count >= 1 / >= 256. The
# references below take `count_dtype`: float64 evaluates the published formula exactly (what mwm
# computes); None keeps the published code's own promotion.

def spark_forward_loss(inp_bchw, rec_bchw, active_b1ff, p, count_dtype=torch.float64):
    """SparK pretrain/spark.py: the loss part of SparK.forward (torch.var is unbiased)."""
    inp, rec = patchify(inp_bchw, p), patchify(rec_bchw, p)
    mean = inp.mean(dim=-1, keepdim=True)
    var = (inp.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
    inp = (inp - mean) / var
    l2_loss = ((rec - inp) ** 2).mean(dim=2, keepdim=False)
    non_active = active_b1ff.logical_not().int().view(active_b1ff.shape[0], -1)
    count = non_active.sum() if count_dtype is None else non_active.sum().to(count_dtype)
    return l2_loss.mul_(non_active).sum() / (count + 1e-8)


def simmim_forward_loss(x, x_rec, mask, patch_size, in_chans, count_dtype=torch.float64):
    """SimMIM models/simmim.py: l1 on pixels, masked, divided by (mask pixels + 1e-5) and C."""
    for axis in range(1, mask.dim()):
        mask = mask.repeat_interleave(patch_size, axis)
    mask = mask.unsqueeze(1).contiguous()
    loss_recon = F.l1_loss(x, x_rec, reduction="none")
    count = mask.sum() if count_dtype is None else mask.sum().to(count_dtype)
    return (loss_recon * mask).sum() / (count + 1e-5) / in_chans


def generic_reference(pred_vectors, target, mask, weight, p, norm, error, reduction):
    """docs/design.md's masked reconstruction loss on patchified tensors (any option)."""
    t = patchify(target, p)
    if norm:
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
    diff = pred_vectors - t
    err = (diff ** 2 if error == "mse" else diff.abs()).mean(-1)
    c = mask.to(err.dtype) * (1.0 if weight is None else weight)
    if reduction == "none":
        return c * err
    total = (c * err).sum()
    if reduction == "sum":
        return total
    return total / (c.sum() + (1e-8 if reduction == "mean_eps" else 0.0))


# --- Deep CORAL (Sun & Saenko 2016) ------------------------------------------------------------

def deep_coral(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Deep CORAL written out: unbiased covariances, ``||C_x - C_y||_F^2 / (4 d^2)``."""
    d = x.shape[1]
    xc = x - x.mean(0, keepdim=True)
    yc = y - y.mean(0, keepdim=True)
    cov_x = xc.T @ xc / (x.shape[0] - 1)
    cov_y = yc.T @ yc / (y.shape[0] - 1)
    return ((cov_x - cov_y) ** 2).sum() / (4 * d * d)
