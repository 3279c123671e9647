"""Property-based tests of mwm.masked_recon_loss against the plain-PyTorch formula of docs/design.md
(test_loss.generic_reference, on MAE's patchify): random 2D and 3D shapes, patch sizes, channels,
layouts (patch vectors or images, contiguous or strided), target normalization, mse/l1, optional
weights, every reduction, value ranges with large offsets; float64, relative tolerance 1e-10 on
the loss and on the gradient. Also: the reductions agree with each other, both layouts give the
same bits, patches outside the loss get zero gradient, and a NaN prediction in a masked patch is
reported by its (sample, patch) unless nonfinite="propagate"."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mwm
from test_loss import generic_reference, patchify, unpatchify

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
RTOL = 1e-10
REDUCTIONS = ("mean", "mean_eps", "sum", "none")


@st.composite
def loss_cases(draw):
    """One valid masked_recon_loss call in float64, with its inputs drawn from a seed."""
    dims = draw(st.sampled_from([2, 3]))
    most_patch, most_cells = (4, 4) if dims == 2 else (3, 3)
    patch = [draw(st.integers(1, most_patch)) for _ in range(dims)]
    cells = [draw(st.integers(1, most_cells)) for _ in range(dims)]
    channels = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 3))
    vector = channels * math.prod(patch)
    case = {
        "shape": (batch, channels, *[c * p for c, p in zip(cells, patch)]),
        "patch": patch,
        "layout": draw(st.sampled_from(["patch", "image"])),
        "strided": draw(st.booleans()),
        "norm": vector >= 2 and draw(st.booleans()),
        "error": draw(st.sampled_from(["mse", "l1"])),
        "weighted": draw(st.booleans()),
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "offset": draw(st.floats(-50.0, 50.0)),
        "scale": draw(st.floats(0.01, 100.0)),
        "mask_share": draw(st.floats(0.0, 1.0)),
        "seed": draw(st.integers(0, 2 ** 31 - 1)),
    }
    return case


def make_inputs(case):
    g = torch.Generator().manual_seed(case["seed"])
    shape, p = case["shape"], case["patch"]
    n = math.prod(s // q for s, q in zip(shape[2:], p))
    vector = shape[1] * math.prod(p)
    target = case["offset"] + case["scale"] * torch.randn(shape, generator=g, dtype=torch.float64)
    pred = case["scale"] * torch.randn((shape[0], n, vector), generator=g, dtype=torch.float64)
    mask = torch.rand((shape[0], n), generator=g) < case["mask_share"]
    weight = None
    if case["weighted"]:
        weight = torch.rand((shape[0], n), generator=g, dtype=torch.float64) * 2.0 + 0.1
    return pred, target, mask, weight


def mwm_pred(case, pred_vectors, target):
    """pred in the case's layout (and memory order) from patch vectors."""
    x = pred_vectors if case["layout"] == "patch" else unpatchify(pred_vectors, case["patch"],
                                                                  target.shape)
    if case["strided"]:  # (non-contiguous unless an axis has size 1)
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    return x


def as_vectors(case, grad, target):
    return grad if case["layout"] == "patch" else patchify(grad, case["patch"])


def call(case, pred, target, mask, weight, reduction=None, **kwargs):
    if case["strided"]:
        target = target.transpose(-1, -2).contiguous().transpose(-1, -2)
    return mwm.masked_recon_loss(pred, target, mask, case["patch"], weight=weight,
                                 norm_target=case["norm"], error=case["error"],
                                 reduction=reduction or case["reduction"], **kwargs)


@PROPERTY_SETTINGS
@given(loss_cases())
def test_loss_and_gradient_match_the_plain_pytorch_formula(case):
    pred, target, mask, weight = make_inputs(case)
    args = (target, mask, weight, case["patch"], case["norm"], case["error"], case["reduction"])
    ref_pred = pred.clone().requires_grad_(True)
    expected = generic_reference(ref_pred, *args)
    upstream = torch.rand(expected.shape, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(case["seed"] + 1)) + 0.5
    (expected * upstream).sum().backward()

    x = mwm_pred(case, pred, target).detach().requires_grad_(True)
    got = call(case, x, target, mask, weight)
    (got * upstream).sum().backward()
    assert got.dtype == torch.float64 and got.shape == expected.shape
    nothing = mask.sum() == 0 or (weight is not None and (mask * weight).sum() == 0)
    if case["reduction"] == "mean" and nothing:
        assert torch.isnan(got) and torch.isnan(expected)  # 0 / 0, as MAE
        return
    torch.testing.assert_close(got, expected.detach(), rtol=RTOL, atol=1e-300)
    grad = as_vectors(case, x.grad, target)
    scale = ref_pred.grad.abs().max().item()
    torch.testing.assert_close(grad, ref_pred.grad, rtol=RTOL, atol=1e-12 * scale + 1e-300)
    # Patches outside the loss (mask False) get exactly zero.
    outside = ~mask
    assert torch.count_nonzero(grad[outside]) == 0


@PROPERTY_SETTINGS
@given(loss_cases())
def test_reductions_and_layouts_agree(case):
    pred, target, mask, weight = make_inputs(case)
    x = mwm_pred(case, pred, target)
    none = call(case, x, target, mask, weight, "none")
    total = call(case, x, target, mask, weight, "sum")
    mean = call(case, x, target, mask, weight, "mean")
    mean_eps = call(case, x, target, mask, weight, "mean_eps")
    coefficients = mask.to(torch.float64) * (1.0 if weight is None else weight)
    # The sum of the per-patch losses is the sum (bit for bit up to the order of additions).
    torch.testing.assert_close(none.sum(), total, rtol=1e-12, atol=1e-300)
    assert torch.count_nonzero(none[~mask]) == 0
    torch.testing.assert_close(mean_eps, total / (coefficients.sum() + 1e-8), rtol=1e-12,
                               atol=1e-300)
    if coefficients.sum() > 0:
        torch.testing.assert_close(mean, total / coefficients.sum(), rtol=1e-12, atol=0)
    else:
        assert torch.isnan(mean) and mean_eps == 0
    # Patch vectors and images, contiguous or strided, are the same numbers added in the same
    # order: the same bits.
    other = dict(case, layout="image" if case["layout"] == "patch" else "patch",
                 strided=not case["strided"])
    y = mwm_pred(other, pred, target)
    assert torch.equal(call(other, y, target, mask, weight, "none"), none)


@PROPERTY_SETTINGS
@given(loss_cases(), st.data())
def test_a_nan_prediction_in_a_masked_patch_is_named(case, data):
    pred, target, mask, weight = make_inputs(case)
    masked = mask.nonzero().tolist()
    if not masked:
        mask[0, 0] = True
        masked = [[0, 0]]
    hits = data.draw(st.lists(st.sampled_from(masked), min_size=1, max_size=3))
    for b, n in hits:
        pred[b, n, data.draw(st.integers(0, pred.shape[2] - 1))] = float("nan")
    first = min(b * pred.shape[1] + n for b, n in hits)
    x = mwm_pred(case, pred, target)
    with pytest.raises(ValueError, match=rf"pred has a non-finite value \(NaN or Inf\) in "
                                         rf"sample {first // pred.shape[1]}, patch "
                                         rf"{first % pred.shape[1]},"):
        call(case, x, target, mask, weight)
    out = call(case, x, target, mask, weight, nonfinite="propagate")
    if case["reduction"] == "none":
        bad = torch.zeros_like(mask)
        for b, n in hits:
            bad[b, n] = True
        assert torch.equal(torch.isnan(out), bad)
    else:
        assert torch.isnan(out)
