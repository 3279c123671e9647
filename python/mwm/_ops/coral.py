"""Fake kernel and autograd of the CORAL op, so that ``torch.compile(fullgraph=True)`` traces
through ``mwm.coral_loss`` and gradients reach both inputs."""

from __future__ import annotations

import torch


@torch.library.register_fake("mwm::coral_loss")
def _coral_loss_fake(x, y):
    d = x.shape[1]
    return x.new_empty(()), x.new_empty((d, d))


@torch.library.register_fake("mwm::_coral_loss_backward")
def _coral_loss_backward_fake(grad_loss, grad_cov_diff, x, y, cov_diff):
    return x.new_empty(x.shape), y.new_empty(y.shape)


def _setup_context(ctx, inputs, output):
    x, y = inputs
    _, cov_diff = output
    ctx.save_for_backward(x, y, cov_diff)


def _backward(ctx, grad_loss, grad_cov_diff):
    x, y, cov_diff = ctx.saved_tensors
    if grad_loss is None:
        grad_loss = x.new_zeros(())
    return torch.ops.mwm._coral_loss_backward(grad_loss, grad_cov_diff, x, y, cov_diff)


torch.library.register_autograd("mwm::coral_loss", _backward, setup_context=_setup_context)
