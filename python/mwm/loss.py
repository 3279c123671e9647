"""Fused masked reconstruction losses: MAE, SparK and SimMIM without patchifying the target.

``masked_recon_loss`` reads the target images where they are, normalizes each patch on the fly
(MAE ``norm_pix_loss``: ``(t - mean) / sqrt(var + 1e-6)``, unbiased variance over the patch),
averages the error over the patch and reduces over the masked patches. The backward writes only
the gradient of ``pred``; on the CPU, when ``pred`` needs a gradient, the forward writes it
for ``grad_output == 1`` in its own pass over the patches and the backward hands it over (or
recomputes it for any other ``grad_output``), the same bits either way. ``mae_loss``,
``spark_loss`` and ``simmim_loss`` are the published losses expressed through it.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from . import _extension  # noqa: F401  (loads the extension, which defines the ops)
from ._transforms import register_autograd

__all__ = ["empty_loss_cache", "loss_cache_bytes", "mae_loss", "masked_recon_loss", "simmim_loss",
           "spark_loss"]

PatchSize = Union[int, Sequence[int]]
LAYOUTS = ("patch", "image")
ERRORS = ("mse", "l1")
REDUCTIONS = ("mean", "mean_eps", "sum", "none")
NONFINITE = ("default", "error", "propagate")


def loss_cache_bytes() -> int:
    """Bytes of the one gradient block the CPU loss holds for its next gradient (0 when none).

    A freed CPU gradient of 4 MiB or more is kept (at most one block) and reused by the next
    gradient of the same size up to twice smaller, which saves the kernel's zeroing of fresh
    pages on every step; ``MWM_LOSS_GRADIENT_CACHE=0`` in the environment turns this off
    (docs/design.md, "The loss gradient's memory on the CPU")."""
    return int(torch.ops.mwm._loss_gradient_cache_bytes())


def empty_loss_cache() -> None:
    """Releases the gradient block the CPU loss holds (see ``loss_cache_bytes``); gradients
    still alive are not affected."""
    torch.ops.mwm._empty_loss_gradient_cache()


def _require_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"mwm: {name} must be a torch.Tensor, got {type(value).__name__}")


def _patch_sizes(patch_size: PatchSize, target: torch.Tensor) -> list[int]:
    spatial = target.dim() - 2
    if spatial not in (2, 3):
        raise ValueError(f"mwm: target has shape {tuple(target.shape)}: expected (B, C, H, W) or "
                         "(B, C, D, H, W)")
    if isinstance(patch_size, int):
        return [patch_size] * spatial
    sizes = [int(p) for p in patch_size]
    if len(sizes) != spatial:
        raise ValueError(f"mwm: patch_size = {tuple(sizes)}: need {spatial} sizes for target of "
                         f"shape {tuple(target.shape)}")
    return sizes


def masked_recon_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      patch_size: PatchSize, *, weight: Optional[torch.Tensor] = None,
                      layout: Optional[str] = None, norm_target: bool = False,
                      error: str = "mse", reduction: str = "mean",
                      nonfinite: str = "default") -> torch.Tensor:
    """Masked reconstruction loss over patches.

    ``pred``: patch vectors ``(B, N, P)`` ordered ``(pd, ph, pw, c)`` (MAE/HF ``patchify``) or an
    image shaped like ``target``; ``layout`` is inferred from ``pred.dim()`` when None.
    ``target``: ``(B, C, H, W)`` or ``(B, C, D, H, W)``, read in place. ``mask``: ``(B, N)`` bool,
    True = masked (the patches the loss covers). ``weight``: optional ``(B, N)`` per-patch
    weights. ``error``: ``mse`` or ``l1``, averaged over the patch. ``reduction``: ``mean`` =
    ``sum(mask*w*err) / sum(mask*w)`` (MAE; NaN when nothing is masked), ``mean_eps`` = the same
    with ``+1e-8`` in the denominator (SparK), ``sum`` = ``sum(mask*w*err)``, ``none`` = the
    per-patch ``mask*w*err`` ``(B, N)``. Patches with ``mask*w == 0`` are never read. A NaN/Inf in
    a target patch the loss reads raises ValueError. Gradient: to ``pred`` only.

    ``nonfinite``: what happens when the result would hold a NaN or an infinity although the
    targets it reads are finite. ``"default"`` is ``"error"`` on the CPU and ``"propagate"`` on
    CUDA, where fp16 training needs the NaN/Inf to reach AMP's GradScaler (docs/design.md, "The
    loss under AMP"). ``"error"`` raises ValueError naming the cause --
    ``pred`` (a NaN/Inf prediction in a masked patch), ``weight``, or an overflow -- and the first
    such (sample, patch); the check costs one test of the reduced value (a pass over the ``(B, N)``
    per-patch losses for ``reduction="none"``), and patches are only re-read once a value is
    non-finite. ``"propagate"`` returns the NaN/Inf as torch would (e.g. for fp16 training where
    AMP's GradScaler should skip the step). The one NaN ``"error"`` returns is ``mean``'s
    documented ``0/0`` when nothing is masked.
    """
    _require_tensor(pred, "pred")
    _require_tensor(target, "target")
    _require_tensor(mask, "mask")
    if weight is not None:
        _require_tensor(weight, "weight")
    if mask.dtype != torch.bool:
        raise TypeError(f"mwm: mask must be torch.bool (True = masked), got {mask.dtype}; pass "
                        "soft or 0/1 float masks as weight=")
    if layout is None:
        layout = "patch" if pred.dim() == 3 else "image"
    sizes = _patch_sizes(patch_size, target)
    if not isinstance(nonfinite, str):
        raise TypeError(f"mwm: nonfinite must be a str ({' or '.join(NONFINITE)}), got "
                        f"{type(nonfinite).__name__}")
    args = (pred, target, mask, weight, sizes, layout, bool(norm_target), error, reduction,
            nonfinite)
    if _gradient_in_forward(pred, reduction):
        return torch.ops.mwm._masked_recon_loss_fused(*args)[0]
    return _masked_recon_loss(*args)


FUSED_REDUCTIONS = ("mean", "mean_eps", "sum")


def _gradient_in_forward(pred: torch.Tensor, reduction) -> bool:
    """Whether the forward should also write ``grad_pred`` for ``grad_output == 1`` (the CPU op
    ``_masked_recon_loss_fused``): the loss is the last op of a forward whose backward will need
    that gradient, and writing it while each patch is in cache saves the backward's second read
    of pred and target. Not under ``torch.compile``, which traces the plain op and its backward
    (inductor schedules both), nor under a torch.func transform (which needs the plain op's
    autograd.Function, mwm._transforms), nor on CUDA, whose backward kernel is unchanged."""
    return (pred.requires_grad and torch.is_grad_enabled() and pred.device.type == "cpu"
            and reduction in FUSED_REDUCTIONS and not torch.compiler.is_compiling()
            and not torch._C._are_functorch_transforms_active())


def _mask_and_weight(mask: torch.Tensor):
    """A bool mask as it is; a 0/1 (or soft) numeric mask as weights over all patches, which is
    exactly how MAE's float mask enters ``(loss * mask).sum() / mask.sum()``."""
    _require_tensor(mask, "mask")
    if mask.dtype == torch.bool:
        return mask, None
    if mask.is_complex() or not (mask.is_floating_point() or mask.dtype in (
            torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"mwm: mask must be bool or a real 0/1 tensor, got {mask.dtype}")
    weight = mask if mask.is_floating_point() else mask.to(torch.float32)
    return torch.ones(mask.shape, dtype=torch.bool, device=mask.device), weight


def mae_loss(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor,
             patch_size: PatchSize = 16, *, norm_pix_loss: bool = False,
             nonfinite: str = "default") -> torch.Tensor:
    """MAE's (and HF ViTMAE's) ``forward_loss(imgs, pred, mask)``: ``pred (B, N, P)``,
    ``imgs (B, C, H, W)`` (or 3D), ``mask (B, N)`` bool or MAE's 0/1 float mask.
    ``nonfinite`` as in ``masked_recon_loss``."""
    mask, weight = _mask_and_weight(mask)
    return masked_recon_loss(pred, imgs, mask, patch_size, weight=weight, layout="patch",
                             norm_target=norm_pix_loss, error="mse", reduction="mean",
                             nonfinite=nonfinite)


def spark_loss(rec: torch.Tensor, inp: torch.Tensor, active: torch.Tensor,
               patch_size: PatchSize = 32, *, nonfinite: str = "default") -> torch.Tensor:
    """SparK's reconstruction loss: ``rec`` and ``inp`` images ``(B, C, H, W)`` (or 3D), ``active``
    SparK's map ``(B, 1, h, w)`` (True = visible); per-patch normalized target, mse, averaged over
    the non-active patches with ``+1e-8`` in the denominator. ``nonfinite`` as in
    ``masked_recon_loss``."""
    _require_tensor(active, "active")
    if active.dtype != torch.bool:
        raise TypeError(f"mwm: active must be torch.bool (True = visible), got {active.dtype}")
    mask = active.logical_not().flatten(1)
    return masked_recon_loss(rec, inp, mask, patch_size, layout="image", norm_target=True,
                             error="mse", reduction="mean_eps", nonfinite=nonfinite)


def simmim_loss(x_rec: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                patch_size: PatchSize, *, nonfinite: str = "default") -> torch.Tensor:
    """SimMIM's loss: ``sum(|x - x_rec| * m) / (sum(m) + 1e-5) / C`` with ``m`` the mask repeated
    to pixels. ``mask``: ``(B, h, w)`` (or ``(B, N)``) on the model patch grid, bool or 0/1.

    Per patch that is ``sum(mask * err) * q / (q * sum(mask) + 1e-5)`` with ``q`` pixels per
    patch and ``err`` the l1 error averaged over the patch's ``C * q`` values. ``nonfinite`` as
    in ``masked_recon_loss``.
    """
    _require_tensor(mask, "mask")
    mask = mask.flatten(1) if mask.dim() > 2 else mask
    mask, weight = _mask_and_weight(mask)
    pixels = math.prod(_patch_sizes(patch_size, x))
    total = masked_recon_loss(x_rec, x, mask, patch_size, weight=weight, layout="image",
                              error="l1", reduction="sum", nonfinite=nonfinite)
    covered = (mask.sum() if weight is None else weight.sum()).to(total.dtype)
    return total * pixels / (covered * pixels + 1e-5)


# ---- fake kernel and autograd of the masked reconstruction loss ------------------------------
# The gradient flows to ``pred`` only, through ``mwm::_masked_recon_loss_backward``.

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


_masked_recon_loss = register_autograd("mwm::masked_recon_loss", _backward,
                                       setup_context=_setup_context)


# ---- the fused pair: the forward returns grad_pred for grad_output == 1 ----------------------
# The backward hands that tensor over when grad_output == 1 (checked in C++ after the conversion
# the unfused backward makes, so the bits are that backward's), and otherwise overwrites it in
# place with the unfused backward's result. It is handed over once: a second backward of a
# retained graph computes a fresh gradient, since the first one may now be ``pred.grad``.

@torch.library.register_fake("mwm::_masked_recon_loss_fused")
def _masked_recon_loss_fused_fake(pred, target, mask, weight, patch_size, layout, norm_target,
                                  error, reduction, nonfinite="default"):
    if reduction not in FUSED_REDUCTIONS:
        raise ValueError(f"mwm: reduction = {reduction!r}: the fused forward and gradient takes a "
                         "reduced loss (mean, mean_eps or sum)")
    loss = pred.new_empty((), dtype=torch.promote_types(pred.dtype, target.dtype))
    return loss, torch.empty_like(pred, memory_format=torch.contiguous_format)


@torch.library.register_fake("mwm::_masked_recon_loss_backward_inplace")
def _masked_recon_loss_backward_inplace_fake(grad_pred, grad, pred, target, mask, weight,
                                             patch_size, layout, norm_target, error, reduction):
    return None


def _traced(*tensors) -> bool:
    """True when the backward is being traced (AOT autograd, make_fx, opcheck): fake or
    functional tensors, or a dispatch mode on. A traced graph must not mutate the forward's
    output, so it takes the unfused backward, whose values are the same."""
    return (any(type(t) is not torch.Tensor for t in tensors)
            or is_in_torch_dispatch_mode())


def _fused_setup_context(ctx, inputs, output):
    pred, target, mask, weight, *options = inputs
    _, grad_pred = output
    # grad_pred is data for the backward, not a differentiable result; no zeros are made for it.
    ctx.mark_non_differentiable(grad_pred)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(pred, target, mask, weight, grad_pred)
    ctx.options = options[:5]
    ctx.unit_gradient_handed_over = False


def _fused_backward(ctx, grad, _grad_of_grad_pred):
    none = (None,) * (len(ctx.needs_input_grad) - 1)
    if grad is None or not ctx.needs_input_grad[0]:
        return (None,) + none
    pred, target, mask, weight, grad_pred = ctx.saved_tensors
    if ctx.unit_gradient_handed_over or _traced(grad_pred, grad):
        return (torch.ops.mwm._masked_recon_loss_backward(grad, pred, target, mask, weight,
                                                          *ctx.options),) + none
    ctx.unit_gradient_handed_over = True
    torch.ops.mwm._masked_recon_loss_backward_inplace(grad_pred, grad, pred, target, mask, weight,
                                                      *ctx.options)
    return (grad_pred,) + none


# Plain registration: under a torch.func transform the wrapper never takes the fused op.
torch.library.register_autograd("mwm::_masked_recon_loss_fused", _fused_backward,
                                setup_context=_fused_setup_context)
