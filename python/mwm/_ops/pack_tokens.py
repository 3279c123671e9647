"""Fake kernels and autograd of the packed-token ops: gradients flow to ``x`` (pack) and to
``packed`` and ``mask_token`` (unpack), never to the index tensors or ``cu_seqlens``.

``pack_tokens``' row count is the number of visible tokens, known only from the data: its fake
kernel returns a fresh unbacked size (``get_ctx().new_dynamic_size()``), so a compiled graph
holds it as a symbol (``torch._dynamo.config.capture_dynamic_output_shape_ops``)."""

from __future__ import annotations

import torch


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


def _pack_setup(ctx, inputs, output):
    x, ids_keep = inputs
    ctx.save_for_backward(ids_keep, output[1])
    ctx.num_tokens = x.shape[1]


def _pack_backward(ctx, grad_packed, _grad_cu_seqlens):
    ids_keep, cu_seqlens = ctx.saved_tensors
    grad_x = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.ops.mwm._pack_tokens_backward(grad_packed, ids_keep, cu_seqlens,
                                                     ctx.num_tokens)
    return grad_x, None


def _unpack_setup(ctx, inputs, output):
    packed, cu_seqlens, ids_restore, mask_token = inputs
    ctx.save_for_backward(cu_seqlens, ids_restore)
    ctx.num_rows = packed.shape[0]


def _unpack_backward(ctx, grad):
    cu_seqlens, ids_restore = ctx.saved_tensors
    grad_packed = grad_token = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[3]:
        grad_packed, grad_token = torch.ops.mwm._unpack_tokens_backward(
            grad, cu_seqlens, ids_restore, ctx.num_rows)
    return (grad_packed if ctx.needs_input_grad[0] else None, None, None,
            grad_token if ctx.needs_input_grad[3] else None)


# The backward ops are linear in their gradient input, and each one's adjoint is the forward op
# it differentiates: second derivatives (gradgradcheck, double backward) come for free.
def _pack_backward_setup(ctx, inputs, output):
    grad, ids_keep, cu_seqlens, num_tokens = inputs
    ctx.save_for_backward(ids_keep)


def _pack_backward_backward(ctx, grad_grad_x):
    (ids_keep,) = ctx.saved_tensors
    return torch.ops.mwm.pack_tokens(grad_grad_x, ids_keep)[0], None, None, None


def _unpack_backward_setup(ctx, inputs, output):
    grad, cu_seqlens, ids_restore, num_rows = inputs
    ctx.save_for_backward(cu_seqlens, ids_restore)
    ctx.channels = grad.shape[2]


def _unpack_backward_backward(ctx, grad_grad_packed, grad_grad_token):
    cu_seqlens, ids_restore = ctx.saved_tensors
    if grad_grad_token is None:
        grad_grad_token = grad_grad_packed.new_zeros((ctx.channels,))
    return (torch.ops.mwm.unpack_tokens(grad_grad_packed, cu_seqlens, ids_restore,
                                        grad_grad_token), None, None, None)


torch.library.register_autograd("mwm::pack_tokens", _pack_backward, setup_context=_pack_setup)
torch.library.register_autograd("mwm::_pack_tokens_backward", _pack_backward_backward,
                                setup_context=_pack_backward_setup)
torch.library.register_autograd("mwm::_unpack_tokens_backward", _unpack_backward_backward,
                                setup_context=_unpack_backward_setup)
torch.library.register_autograd("mwm::unpack_tokens", _unpack_backward,
                                setup_context=_unpack_setup)
