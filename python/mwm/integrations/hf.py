"""HF transformers ViTMAE: pass mwm's noise as ``noise=`` to keep exactly mwm's visible set."""

from __future__ import annotations

import torch

from ..budget import keep_count
from ..masking import MaskResult


def vitmae_noise(result: MaskResult, mask_ratio: float) -> torch.Tensor:
    """``noise (B, N)`` for ``ViTMAEModel(pixel_values, noise=noise)``.

    ViTMAE keeps the ``int(N * (1 - config.mask_ratio))`` patches of smallest noise; mwm's noise
    orders visible patches first, so the two agree exactly when every sample keeps that many
    patches. That is checked here, since a variable-total policy (``per_region``) cannot be
    expressed through ViTMAE's fixed ``mask_ratio``.
    """
    n = result.num_patches
    expected = keep_count(n, mask_ratio)
    visible = result.num_visible
    if not bool((visible == expected).all()):
        raise ValueError(
            f"mwm: mask_ratio = {mask_ratio}: ViTMAE keeps {expected} of {n} patches, but the mwm "
            f"masks keep {sorted(set(visible.tolist()))}; generate them with a fixed-total "
            f"policy at ratio={mask_ratio} and rounding='floor'")
    return result.noise
