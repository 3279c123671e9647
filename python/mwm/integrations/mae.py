"""MAE's ``random_masking(x, mask_ratio)`` contract, with text-guided masks."""

from __future__ import annotations

from typing import Optional

import torch

from ..masker import TextGuidedMasker
from ..masking import MaskResult, generate_masks
from ..tokens import gather_tokens


def random_masking(x: torch.Tensor, mask_ratio: float, *, heatmaps: Optional[torch.Tensor] = None,
                   masker: Optional[TextGuidedMasker] = None, grid=None, seed: int = 0,
                   offset: int = 0) -> tuple:
    """Drop-in for ``MaskedAutoencoderViT.random_masking``: returns ``(x_masked, mask,
    ids_restore)`` with ``x_masked = x`` gathered at the visible tokens, ``mask`` float
    ``(B, N)`` with 0 = keep and 1 = remove, and ``ids_restore`` the inverse permutation.

    With ``heatmaps`` the masks are text-guided: ``masker`` (a ``TextGuidedMasker`` whose policy
    keeps a fixed total, default ``fixed_total`` at ``mask_ratio`` with the MWM default region
    ratios) decides; without, it is MAE's uniform masking keyed by ``(seed, offset + b)``.
    ``grid`` defaults to the square root of ``N``.
    """
    batch, n, _ = x.shape
    if grid is None:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"mwm: x has {n} tokens, not a square grid: pass grid=(gh, gw)")
        grid = (side, side)
    if heatmaps is None:
        result = generate_masks(grid, batch, ratio=mask_ratio, seed=seed, offset=offset,
                                device=x.device)
    else:
        if masker is None:
            masker = TextGuidedMasker(grid, policy="fixed_total", ratio=mask_ratio, seed=seed,
                                      offset=offset)
        if masker.policy == "per_region":
            raise ValueError("mwm: masker.policy = 'per_region': MAE's encoder needs the same "
                             "number of visible tokens in every sample; use 'fixed_total' or "
                             "'weighted'")
        result = masker(heatmaps.to(x.device))
    return apply_mae_masks(x, result)


def apply_mae_masks(x: torch.Tensor, result: MaskResult) -> tuple:
    """``(x_masked, mask, ids_restore)`` of MAE from an mwm result with a fixed total."""
    # A variable total pads ids_keep with -1, which gather_tokens reads as zero rows; MAE's
    # encoder would take those for tokens, so such a result is refused here.
    if bool((result.ids_keep < 0).any()):
        counts = sorted(set(result.num_visible.tolist()))
        raise ValueError(f"mwm: result has visible counts {counts} per sample: MAE's encoder "
                         "needs the same number of visible tokens in every sample (a policy "
                         "with a fixed total, e.g. 'fixed_total' or 'weighted')")
    x_masked = gather_tokens(x, result.ids_keep)
    return x_masked, result.mask.to(x.dtype), result.ids_restore
