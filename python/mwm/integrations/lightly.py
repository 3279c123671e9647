"""lightly's MAE utilities: ``idx_keep`` / ``idx_mask`` over a sequence whose token 0 is the
class token."""

from __future__ import annotations

import torch

from ..masking import MaskResult


def lightly_token_indices(result: MaskResult, class_token: bool = True) -> tuple:
    """``(idx_keep, idx_mask)`` as lightly's ``random_token_mask`` returns them: with a class
    token, index 0 is always kept and patch ``n`` is token ``n + 1``."""
    if bool((result.num_visible != result.num_visible[0]).any()):
        raise ValueError("mwm: lightly needs the same number of kept tokens per sample; use a "
                         "fixed-total policy")
    if not class_token:
        return result.ids_keep, result.ids_masked
    batch = result.ids_keep.shape[0]
    cls = torch.zeros(batch, 1, dtype=result.ids_keep.dtype, device=result.ids_keep.device)
    return torch.cat([cls, result.ids_keep + 1], dim=1), result.ids_masked + 1
