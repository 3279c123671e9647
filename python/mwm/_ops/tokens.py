"""Fake kernels and autograd of the token ops: gradients flow to ``x`` (gather) and to ``x_vis``
and ``mask_token`` (restore), never to the index tensors."""

from __future__ import annotations

import torch


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


def _gather_setup(ctx, inputs, output):
    x, ids_keep = inputs
    ctx.save_for_backward(ids_keep)
    ctx.num_tokens = x.shape[1]


def _gather_backward(ctx, grad):
    (ids_keep,) = ctx.saved_tensors
    grad_x = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.ops.mwm._gather_tokens_backward(grad, ids_keep, ctx.num_tokens)
    return grad_x, None


def _restore_setup(ctx, inputs, output):
    x_vis, ids_restore, mask_token, num_visible = inputs
    ctx.save_for_backward(ids_restore, num_visible)
    ctx.num_slots = x_vis.shape[1]


def _restore_backward(ctx, grad):
    ids_restore, num_visible = ctx.saved_tensors
    grad_x_vis = grad_token = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
        grad_x_vis, grad_token = torch.ops.mwm._restore_tokens_backward(
            grad, ids_restore, num_visible, ctx.num_slots)
    return (grad_x_vis if ctx.needs_input_grad[0] else None, None,
            grad_token if ctx.needs_input_grad[2] else None, None)


torch.library.register_autograd("mwm::gather_tokens", _gather_backward,
                                setup_context=_gather_setup)
torch.library.register_autograd("mwm::restore_tokens", _restore_backward,
                                setup_context=_restore_setup)
