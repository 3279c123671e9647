"""CORAL distances for semi-supervised segmentation, as CORN uses them.

CORN (Li et al., "Leveraging CORAL-Correlation Consistency Network for Semi-Supervised Left
Atrium MRI Segmentation", arXiv 2410.15916) compares second-order statistics of voxel features:

- :func:`coral_loss` — Deep CORAL's ``||cov(x) - cov(y)||_F^2 / (4 d^2)`` with unbiased
  covariances, the ``torch.ops.mwm.coral_loss`` op (include/mwm/coral_math.hpp over torch's
  BLAS on every device, gradients for both inputs).
- :func:`class_wise_coral` — the class x class matrix ``D[i, c]`` of CORAL distances between the
  unlabeled features predicted as class ``i`` and the labeled features of class ``c`` drawn from
  a :class:`~mwm.feature_pool.DynamicFeaturePool`.
- :func:`coral_consistency` — CORN's correlation-consistency term between the matrices of the two
  branches; :func:`class_alignment` — the matching-class (diagonal) distances.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from . import _extension  # noqa: F401  (loads the extension, which defines the ops)
from ._transforms import register_autograd

__all__ = ["ClassWiseCoral", "class_alignment", "class_wise_coral", "coral_consistency",
           "coral_loss"]

# Looked up once: the CPU kernel is always built; the CUDA kernel (the same code over cuBLAS,
# bindings/ops/coral_loss.cpp) only when the extension was built against a CUDA build of torch.
_KERNEL_DEVICES = frozenset(
    device for device in ("CPU", "CUDA")
    if torch._C._dispatch_has_kernel_for_dispatch_key("mwm::coral_loss", device))
CONSISTENCY_MODES = ("mse", "cross_entropy")


def _check_features(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"mwm: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"mwm: {name} has shape {tuple(t.shape)}: expected (samples, features)")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"mwm: {name} must be float32 or float64, got {t.dtype}")


def _check_kernel(t: torch.Tensor) -> None:
    device = t.device.type
    if device == "cuda" and "CUDA" not in _KERNEL_DEVICES:
        raise RuntimeError("mwm: coral_loss has no CUDA kernel in this build; pass CPU tensors "
                           "(x.cpu(), y.cpu()) or rebuild mwm against a CUDA build of torch")


# The op's fake kernel and autograd, so that torch.compile(fullgraph=True) traces through
# coral_loss and gradients reach both inputs.
@torch.library.register_fake("mwm::coral_loss")
def _coral_loss_fake(x, y):
    d = x.shape[1]
    return x.new_empty(()), x.new_empty((d, d))


@torch.library.register_fake("mwm::_coral_loss_backward")
def _coral_loss_backward_fake(grad_loss, grad_cov_diff, x, y, cov_diff):
    return x.new_empty(x.shape), y.new_empty(y.shape)


def _coral_setup_context(ctx, inputs, output):
    x, y = inputs
    _, cov_diff = output
    ctx.save_for_backward(x, y, cov_diff)


def _coral_backward(ctx, grad_loss, grad_cov_diff):
    x, y, cov_diff = ctx.saved_tensors
    if grad_loss is None:
        grad_loss = x.new_zeros(())
    return torch.ops.mwm._coral_loss_backward(grad_loss, grad_cov_diff, x, y, cov_diff)


_coral_loss = register_autograd("mwm::coral_loss", _coral_backward,
                                setup_context=_coral_setup_context)


def coral_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Deep CORAL distance ``||cov(x) - cov(y)||_F^2 / (4 d^2)`` of ``x (n, d)`` and
    ``y (m, d)``, as a 0-dim tensor.

    Covariances are unbiased (``n - 1``); ``n, m >= 2``; float32 or float64 (the same for
    both); on the CPU features must be finite (NaN/Inf raise ``ValueError`` naming the entry),
    on CUDA they are not checked (that would synchronize with the host) and NaN/Inf propagate
    into the loss and gradients. Gradients
    flow to both inputs (the backward is the ``mwm::_coral_loss_backward`` op), and the call
    traces under ``torch.compile(fullgraph=True)``.
    """
    _check_features(x, "x")
    _check_features(y, "y")
    _check_kernel(x)
    loss, _ = _coral_loss(x, y)
    return loss


class ClassWiseCoral(NamedTuple):
    """CORAL distances ``distances[i, c]`` between unlabeled class ``i`` and pool class ``c``;
    ``valid[i, c]`` is False (and the distance 0) where either side had fewer than 2 features."""

    distances: torch.Tensor
    valid: torch.Tensor


def class_wise_coral(unlabeled: Sequence[Optional[torch.Tensor]],
                     labeled: Sequence[Optional[torch.Tensor]]) -> ClassWiseCoral:
    """CORN's class x class CORAL matrix.

    ``unlabeled[i]`` holds the ``(n_i, d)`` unlabeled features predicted as class ``i`` (after
    confidence filtering, see :func:`mwm.feature_pool.confidence_filter`), ``labeled[c]`` the
    ``(m_c, d)`` labeled features of class ``c`` (see
    :meth:`mwm.feature_pool.DynamicFeaturePool.sample`); ``None`` or fewer than 2 rows marks a
    class as absent. Returns ``distances (len(unlabeled), len(labeled))`` in the features'
    dtype, differentiable with respect to every present feature tensor, and the ``valid`` mask.
    """
    if len(unlabeled) == 0 or len(labeled) == 0:
        raise ValueError(f"mwm: class_wise_coral needs at least one class on each side, got "
                         f"{len(unlabeled)} unlabeled and {len(labeled)} labeled groups")
    present = [t for t in list(unlabeled) + list(labeled) if t is not None]
    if not present:
        raise ValueError("mwm: class_wise_coral: every feature group is None")
    reference = present[0]
    for side, groups in (("unlabeled", unlabeled), ("labeled", labeled)):
        for k, t in enumerate(groups):
            if t is None:
                continue
            _check_features(t, f"{side}[{k}]")
            if t.shape[1] != reference.shape[1] or t.dtype != reference.dtype:
                raise ValueError(f"mwm: {side}[{k}] is {tuple(t.shape)} {t.dtype}; every group "
                                 f"needs d = {reference.shape[1]} and dtype {reference.dtype}")
    usable_u = [t is not None and t.shape[0] >= 2 for t in unlabeled]
    usable_l = [t is not None and t.shape[0] >= 2 for t in labeled]
    zero = reference.new_zeros(())
    rows = []
    for i, u in enumerate(unlabeled):
        rows.append(torch.stack([
            coral_loss(u, group) if usable_u[i] and usable_l[c] else zero
            for c, group in enumerate(labeled)]))
    valid = torch.tensor([[a and b for b in usable_l] for a in usable_u], dtype=torch.bool,
                         device=reference.device)
    return ClassWiseCoral(torch.stack(rows), valid)


def coral_consistency(first: ClassWiseCoral, second: ClassWiseCoral, *, mode: str = "mse",
                      temperature: float = 1.0) -> torch.Tensor:
    """CORN's correlation-consistency term between the CORAL matrices of the two branches.

    Our reading of the paper: each branch computes its own class x class CORAL matrix
    (:func:`class_wise_coral`) of the unlabeled features against the same labeled pool sample,
    and the term "constrains the similarity matrix to be consistent" across the branches. The
    public code builds exactly these per-pair CORAL distances; we compare them entry by entry:

    - ``mode="mse"`` (default): mean over the entries valid in both of
      ``(first.distances - second.distances) ** 2``;
    - ``mode="cross_entropy"``: CAML's omni-correlation form, which CORN's code base descends
      from — per unlabeled class ``i`` the distribution ``softmax(-D[i, :] / temperature)`` over
      the valid pool classes, and the cross-entropy ``-sum p_second * log p_first`` averaged over
      the rows with at least one valid entry.

    Gradients flow into both branches. Returns a 0-dim zero when no entry is valid in both.
    """
    if mode not in CONSISTENCY_MODES:
        raise ValueError(f"mwm: mode = {mode!r}: must be one of {', '.join(CONSISTENCY_MODES)}")
    if first.distances.shape != second.distances.shape:
        raise ValueError(f"mwm: the CORAL matrices differ in shape: "
                         f"{tuple(first.distances.shape)} vs {tuple(second.distances.shape)}")
    if not temperature > 0:
        raise ValueError(f"mwm: temperature = {temperature}: must be positive")
    valid = first.valid & second.valid
    if not bool(valid.any()):
        return first.distances.new_zeros(())
    if mode == "mse":
        return (first.distances - second.distances)[valid].pow(2).mean()
    rows = valid.any(dim=1)
    blocked = torch.finfo(first.distances.dtype).min
    log_p_first = torch.log_softmax(
        (-first.distances / temperature).masked_fill(~valid, blocked), 1)
    p_second = torch.softmax((-second.distances / temperature).masked_fill(~valid, blocked), 1)
    cross = -(p_second * log_p_first).masked_fill(~valid, 0.0).sum(dim=1)
    return cross[rows].mean()


def class_alignment(matrix: ClassWiseCoral) -> torch.Tensor:
    """Mean CORAL distance between unlabeled class ``i`` and labeled class ``i`` over the valid
    diagonal entries: the "minimize the discrepancy between labeled and unlabeled features"
    part of CORN's module. Returns a 0-dim zero when no diagonal entry is valid."""
    k = min(matrix.distances.shape)
    diagonal = torch.diagonal(matrix.distances[:k, :k])
    valid = torch.diagonal(matrix.valid[:k, :k])
    if not bool(valid.any()):
        return matrix.distances.new_zeros(())
    return diagonal[valid].mean()
