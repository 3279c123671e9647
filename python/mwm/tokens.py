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

from . import _extension  # noqa: F401  (loads the extension, which defines the ops)
from ._transforms import register_autograd

__all__ = ["gather_tokens", "pack_visible_tokens", "restore_tokens", "unpack_visible_tokens"]


def _require_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"mwm: {name} must be a torch.Tensor, got {type(value).__name__}")


def _mask_token_vector(mask_token: torch.Tensor) -> torch.Tensor:
    """MAE's mask-token parameter, ``(C,)``, ``(1, C)`` or ``(1, 1, C)``, as the ops' ``(C,)``."""
    if mask_token.dim() > 1:
        if any(s != 1 for s in mask_token.shape[:-1]):
            raise ValueError(f"mwm: mask_token has shape {tuple(mask_token.shape)}: expected (C,), "
                             "(1, C) or (1, 1, C)")
        mask_token = mask_token.reshape(mask_token.shape[-1])
    return mask_token


def gather_tokens(x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """``x (B, N, C)`` at ``ids_keep (B, K)`` int64 -> ``(B, K, C)``; ``-1`` slots give zeros.
    Ids outside ``[-1, N)`` raise ValueError."""
    _require_tensor(x, "x")
    _require_tensor(ids_keep, "ids_keep")
    return _gather_tokens(x, ids_keep)


def restore_tokens(x_vis: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor,
                   num_visible: Optional[torch.Tensor] = None) -> torch.Tensor:
    """MAE's decoder input ``(B, N, C)``: token ``n`` is ``x_vis[b, p]`` when its position
    ``p = ids_restore[b, n]`` is below the sample's visible count (``num_visible[b]``, default
    ``K``), else ``mask_token``. ``mask_token``: ``(C,)``, ``(1, C)`` or ``(1, 1, C)`` (MAE's
    parameter shape). Gradients flow to ``x_vis`` and ``mask_token``."""
    _require_tensor(x_vis, "x_vis")
    _require_tensor(ids_restore, "ids_restore")
    _require_tensor(mask_token, "mask_token")
    mask_token = _mask_token_vector(mask_token)
    if num_visible is not None:
        _require_tensor(num_visible, "num_visible")
    return _restore_tokens(x_vis, ids_restore, mask_token, num_visible)


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
    packed, cu_seqlens = _pack_tokens(x, ids_keep)
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
    mask_token = _mask_token_vector(mask_token)
    return _unpack_tokens(packed, cu_seqlens, ids_restore, mask_token)


# ---- fake kernels and autograd of the token ops ----------------------------------------------
# Gradients flow to the token tensors (x, x_vis, packed) and mask_token, never to the index
# tensors or cu_seqlens. pack_tokens' row count is the number of visible tokens, known only from
# the data: its fake kernel returns a fresh unbacked size (get_ctx().new_dynamic_size()), so a
# compiled graph holds it as a symbol (torch._dynamo.config.capture_dynamic_output_shape_ops).

@torch.library.register_fake("mwm::gather_tokens")
def _gather_tokens_fake(x, ids_keep):
    return x.new_empty((x.shape[0], ids_keep.shape[1], x.shape[2]))


@torch.library.register_fake("mwm::_gather_tokens_backward")
def _gather_tokens_backward_fake(grad, ids_keep, num_tokens):
    return grad.new_empty((grad.shape[0], num_tokens, grad.shape[2]))


@torch.library.register_fake("mwm::restore_tokens")
def _restore_tokens_fake(x_vis, ids_restore, mask_token, num_visible):
    return x_vis.new_empty((x_vis.shape[0], ids_restore.shape[1], x_vis.shape[2]))


@torch.library.register_fake("mwm::_restore_tokens_backward")
def _restore_tokens_backward_fake(grad, ids_restore, num_visible, num_slots):
    return (grad.new_empty((grad.shape[0], num_slots, grad.shape[2])),
            grad.new_empty((grad.shape[2],)))


@torch.library.register_fake("mwm::pack_tokens")
def _pack_tokens_fake(x, ids_keep):
    total = torch.library.get_ctx().new_dynamic_size()
    return (x.new_empty((total, x.shape[2])),
            ids_keep.new_empty((x.shape[0] + 1,), dtype=torch.int32))


@torch.library.register_fake("mwm::_pack_tokens_backward")
def _pack_tokens_backward_fake(grad, ids_keep, cu_seqlens, num_tokens):
    return grad.new_empty((ids_keep.shape[0], num_tokens, grad.shape[1]))


@torch.library.register_fake("mwm::unpack_tokens")
def _unpack_tokens_fake(packed, cu_seqlens, ids_restore, mask_token):
    return packed.new_empty((ids_restore.shape[0], ids_restore.shape[1], packed.shape[1]))


@torch.library.register_fake("mwm::_unpack_tokens_backward")
def _unpack_tokens_backward_fake(grad, cu_seqlens, ids_restore, num_rows):
    return grad.new_empty((num_rows, grad.shape[2])), grad.new_empty((grad.shape[2],))


def _register_gradient(op: str, backward: str, grad_inputs: Tuple[int, ...], saved, size):
    """The autograd of token op ``op``: its gradient is the private op ``backward(grad,
    *saved(inputs, output), size(inputs))``, which returns the gradients of the inputs at
    positions ``grad_inputs`` (in that order); it runs only when one of them is needed. Returns
    the op as the wrappers call it (through mwm._transforms under a torch.func transform)."""
    backward_op = getattr(torch.ops.mwm, backward)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*saved(inputs, output))
        ctx.size = size(inputs)

    def gradient(ctx, grad, *_grads_of_other_outputs):
        grads = [None] * len(ctx.needs_input_grad)
        if any(ctx.needs_input_grad[i] for i in grad_inputs):
            # A backward op with its own autograd (double backward) is called as the wrappers
            # call ops, so that it works inside a torch.func transform too.
            call = _DIFFERENTIABLE_BACKWARDS.get(backward, backward_op)
            results = call(grad, *ctx.saved_tensors, ctx.size)
            results = results if isinstance(results, tuple) else (results,)
            for i, result in zip(grad_inputs, results):
                if ctx.needs_input_grad[i]:
                    grads[i] = result
        return tuple(grads)

    return register_autograd(f"mwm::{op}", gradient, setup_context=setup_context)


# (x, ids_keep) -> grad_x; (x_vis, ids_restore, mask_token, num_visible) -> grad_x_vis,
# grad_mask_token; (x, ids_keep) -> grad_x; (packed, cu_seqlens, ids_restore, mask_token) ->
# grad_packed, grad_mask_token.
_gather_tokens = _register_gradient("gather_tokens", "_gather_tokens_backward", (0,),
                                    saved=lambda inputs, output: (inputs[1],),
                                    size=lambda inputs: inputs[0].shape[1])
_restore_tokens = _register_gradient("restore_tokens", "_restore_tokens_backward", (0, 2),
                                     saved=lambda inputs, output: (inputs[1], inputs[3]),
                                     size=lambda inputs: inputs[0].shape[1])
_pack_tokens = _register_gradient("pack_tokens", "_pack_tokens_backward", (0,),
                                  saved=lambda inputs, output: (inputs[1], output[1]),
                                  size=lambda inputs: inputs[0].shape[1])
_unpack_tokens = _register_gradient("unpack_tokens", "_unpack_tokens_backward", (0, 3),
                                    saved=lambda inputs, output: (inputs[1], inputs[2]),
                                    size=lambda inputs: inputs[0].shape[0])


# The packed backward ops are linear in their gradient input, and each one's adjoint is the
# forward op it differentiates: second derivatives (gradgradcheck, double backward) come free.
def _pack_backward_setup(ctx, inputs, output):
    grad, ids_keep, cu_seqlens, num_tokens = inputs
    ctx.save_for_backward(ids_keep)


def _pack_backward_backward(ctx, grad_grad_x):
    (ids_keep,) = ctx.saved_tensors
    return _pack_tokens(grad_grad_x, ids_keep)[0], None, None, None


def _unpack_backward_setup(ctx, inputs, output):
    grad, cu_seqlens, ids_restore, num_rows = inputs
    ctx.save_for_backward(cu_seqlens, ids_restore)
    ctx.channels = grad.shape[2]


def _unpack_backward_backward(ctx, grad_grad_packed, grad_grad_token):
    cu_seqlens, ids_restore = ctx.saved_tensors
    if grad_grad_token is None:
        grad_grad_token = grad_grad_packed.new_zeros((ctx.channels,))
    return (_unpack_tokens(grad_grad_packed, cu_seqlens, ids_restore, grad_grad_token), None,
            None, None)


_DIFFERENTIABLE_BACKWARDS = {
    "_pack_tokens_backward": register_autograd("mwm::_pack_tokens_backward",
                                               _pack_backward_backward,
                                               setup_context=_pack_backward_setup),
    "_unpack_tokens_backward": register_autograd("mwm::_unpack_tokens_backward",
                                                 _unpack_backward_backward,
                                                 setup_context=_unpack_backward_setup),
}
