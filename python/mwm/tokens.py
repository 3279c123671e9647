"""Sparse tokens for MAE-style models: the encoder's visible tokens and the decoder's full
sequence, as fused ops with their own backward.

``gather_tokens(x, ids_keep)`` is ``torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, C))``
except that the ``-1`` padding of variable-total policies (``per_region``) gathers zero rows
(with zero gradient) instead of failing. ``restore_tokens(x_vis, ids_restore, mask_token)`` is
MAE's decoder input ``gather(cat([x_vis, mask_tokens], 1), 1, ids_restore)``; with padded
``x_vis`` pass ``num_visible`` (``MaskResult.num_visible``) so that padded slots are never read.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _extension  # noqa: F401  (loads the ops, their fake kernels and autograd)


def _require_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"mwm: {name} must be a torch.Tensor, got {type(value).__name__}")


def gather_tokens(x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """``x (B, N, C)`` at ``ids_keep (B, K)`` int64 -> ``(B, K, C)``; ``-1`` slots give zeros.
    Ids outside ``[-1, N)`` raise ValueError."""
    _require_tensor(x, "x")
    _require_tensor(ids_keep, "ids_keep")
    return torch.ops.mwm.gather_tokens(x, ids_keep)


def restore_tokens(x_vis: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor,
                   num_visible: Optional[torch.Tensor] = None) -> torch.Tensor:
    """MAE's decoder input ``(B, N, C)``: token ``n`` is ``x_vis[b, p]`` when its position
    ``p = ids_restore[b, n]`` is below the sample's visible count (``num_visible[b]``, default
    ``K``), else ``mask_token``. ``mask_token``: ``(C,)``, ``(1, C)`` or ``(1, 1, C)`` (MAE's
    parameter shape). Gradients flow to ``x_vis`` and ``mask_token``."""
    _require_tensor(x_vis, "x_vis")
    _require_tensor(ids_restore, "ids_restore")
    _require_tensor(mask_token, "mask_token")
    if mask_token.dim() > 1:
        if any(s != 1 for s in mask_token.shape[:-1]):
            raise ValueError(f"mwm: mask_token has shape {tuple(mask_token.shape)}: expected (C,), "
                             "(1, C) or (1, 1, C)")
        mask_token = mask_token.reshape(mask_token.shape[-1])
    if num_visible is not None:
        _require_tensor(num_visible, "num_visible")
    return torch.ops.mwm.restore_tokens(x_vis, ids_restore, mask_token, num_visible)
