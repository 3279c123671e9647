"""Fake kernels and autograd of the masked reconstruction loss: the gradient flows to ``pred``
only, through ``mwm::_masked_recon_loss_backward``."""

from __future__ import annotations

import math

import torch


def _num_patches(target, patch_size):
    return math.prod(size // p for size, p in zip(target.shape[2:], patch_size))


@torch.library.register_fake("mwm::masked_recon_loss")
def _masked_recon_loss_fake(pred, target, mask, weight, patch_size, layout, norm_target, error,
                            reduction, nonfinite="default"):
    dtype = torch.promote_types(pred.dtype, target.dtype)
    if reduction == "none":
        return pred.new_empty((target.shape[0], _num_patches(target, patch_size)), dtype=dtype)
    return pred.new_empty((), dtype=dtype)


@torch.library.register_fake("mwm::_masked_recon_loss_backward")
def _masked_recon_loss_backward_fake(grad, pred, target, mask, weight, patch_size, layout,
                                     norm_target, error, reduction):
    return torch.empty_like(pred, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    # inputs: pred, target, mask, weight, patch_size, layout, norm_target, error, reduction and
    # nonfinite, which the backward does not take (the forward has already checked the result).
    pred, target, mask, weight, *options = inputs
    ctx.save_for_backward(pred, target, mask, weight)
    ctx.options = options[:5]


def _backward(ctx, grad):
    pred, target, mask, weight = ctx.saved_tensors
    grad_pred = None
    if ctx.needs_input_grad[0]:
        grad_pred = torch.ops.mwm._masked_recon_loss_backward(grad, pred, target, mask, weight,
                                                              *ctx.options)
    return (grad_pred,) + (None,) * (len(ctx.needs_input_grad) - 1)


torch.library.register_autograd("mwm::masked_recon_loss", _backward,
                                setup_context=_setup_context)
