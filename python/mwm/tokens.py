"""Sparse tokens for MAE-style models: the encoder's visible tokens and the decoder's full
sequence, as fused ops with their own backward.

``gather_tokens(x, ids_keep)`` is ``torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, C))``
except that the ``-1`` padding of variable-total policies (``per_region``) gathers zero rows
(with zero gradient) instead of failing. ``restore_tokens(x_vis, ids_restore, mask_token)`` is
MAE's decoder input ``gather(cat([x_vis, mask_tokens], 1), 1, ids_restore)``; with padded
``x_vis`` pass ``num_visible`` (``MaskResult.num_visible``) so that padded slots are never read.

``pack_visible_tokens(x, result)`` drops the padding altogether: the visible tokens of every
sample, in ``ids_keep`` order, one after the other in a ``(total_visible, C)`` tensor with
``cu_seqlens`` (int32 ``(B + 1,)``, sample ``b`` in rows ``[cu[b], cu[b + 1])``), the layout of
flash-attention's varlen kernels and of PyTorch's jagged nested tensors
(``torch.nested.nested_tensor_from_jagged(packed, offsets=cu_seqlens)``).
``unpack_visible_tokens(packed, cu_seqlens, result, mask_token)`` is the decoder's side: MAE's
``(B, N, C)`` decoder input, as ``restore_tokens`` builds it from padded tokens.
"""

from __future__ import annotations

from typing import Optional, Tuple

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


def _ids(result, field: str, argument: str) -> torch.Tensor:
    ids = getattr(result, field, result)
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"mwm: {argument} must be a MaskResult or an int64 {field} tensor, got "
                        f"{type(result).__name__}")
    return ids


def pack_visible_tokens(x: torch.Tensor, result) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """The visible tokens of ``x (B, N, C)`` packed without padding.

    result: a ``MaskResult`` (or its ``ids_keep (B, K)`` int64, ``-1`` padded at the end of each
    row). Returns ``packed (T, C)`` (sample ``b``'s tokens in ``ids_keep`` order in rows
    ``cu_seqlens[b]:cu_seqlens[b + 1]``, T = total visible), ``cu_seqlens (B + 1,)`` int32 and
    ``max_seqlen`` (the largest count, a Python int: reading it synchronizes a GPU, and under
    ``torch.compile`` it is a data-dependent value). Gradients flow to ``x``."""
    _require_tensor(x, "x")
    ids_keep = _ids(result, "ids_keep", "result")
    packed, cu_seqlens = torch.ops.mwm.pack_tokens(x, ids_keep)
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    max_seqlen = int(lengths.max()) if lengths.numel() else 0
    return packed, cu_seqlens, max_seqlen


def unpack_visible_tokens(packed: torch.Tensor, cu_seqlens: torch.Tensor,
                          result, mask_token: torch.Tensor) -> torch.Tensor:
    """MAE's decoder input ``(B, N, C)`` from packed visible tokens: token ``n`` of sample ``b``
    is ``packed[cu_seqlens[b] + p]`` when its shuffled position ``p = ids_restore[b, n]`` is
    below the sample's count ``cu_seqlens[b + 1] - cu_seqlens[b]``, else ``mask_token``
    (``(C,)``, ``(1, C)`` or ``(1, 1, C)``). result: a ``MaskResult`` or its ``ids_restore
    (B, N)`` int64. Gradients flow to ``packed`` and ``mask_token``."""
    _require_tensor(packed, "packed")
    _require_tensor(cu_seqlens, "cu_seqlens")
    _require_tensor(mask_token, "mask_token")
    ids_restore = _ids(result, "ids_restore", "result")
    if mask_token.dim() > 1:
        if any(s != 1 for s in mask_token.shape[:-1]):
            raise ValueError(f"mwm: mask_token has shape {tuple(mask_token.shape)}: expected (C,), "
                             "(1, C) or (1, 1, C)")
        mask_token = mask_token.reshape(mask_token.shape[-1])
    return torch.ops.mwm.unpack_tokens(packed, cu_seqlens, ids_restore, mask_token)
