"""The fused masked reconstruction loss: parity with MAE, SparK and SimMIM written from their
published code in plain PyTorch (float64, rtol 1e-10), gradients, opcheck over every sample,
torch.compile, mixed precision, determinism across threads, and bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import mwm
from mwm.bench.references import (
    generic_reference,
    mae_forward_loss,
    patchify,
    simmim_forward_loss,
    spark_forward_loss,
    unpatchify,
)

RTOL = 1e-10


# --- Inputs ------------------------------------------------------------------------------------

def make_case(dims, batch=2, channels=3, seed=0, dtype=torch.float64, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    if dims == 2:
        shape, p = (batch, channels, 8, 12), (4, 4)
    else:
        shape, p = (batch, channels, 4, 6, 8), (2, 3, 4)
    target = (torch.randn(shape, generator=g, dtype=torch.float64) + offset).to(dtype)
    n = math.prod(s // q for s, q in zip(shape[2:], p))
    pvec = channels * math.prod(p)
    pred = torch.randn((batch, n, pvec), generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand((batch, n), generator=g) < 0.6
    mask[:, 0] = True
    weight = (torch.rand((batch, n), generator=g, dtype=torch.float64) + 0.5).to(dtype)
    return pred, target, mask, weight, p


# --- Parity ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_mae_forward_loss_parity(dims, norm_pix_loss):
    pred, imgs, mask, _, p = make_case(dims, seed=1, offset=3.0)
    float_mask = mask.to(torch.float64)
    pred_ref = pred.clone().requires_grad_(True)
    expected = mae_forward_loss(imgs, pred_ref, float_mask, p, norm_pix_loss)
    expected.backward()
    for m in (mask, float_mask):  # mwm's bool mask and MAE's own 0/1 float mask
        pred_mwm = pred.clone().requires_grad_(True)
        got = mwm.mae_loss(pred_mwm, imgs, m, p, norm_pix_loss=norm_pix_loss)
        got.backward()
        torch.testing.assert_close(got, expected.detach(), rtol=RTOL, atol=0)
        torch.testing.assert_close(pred_mwm.grad, pred_ref.grad, rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("dims", [2, 3])
def test_spark_loss_parity(dims):
    _, inp, mask, _, p = make_case(dims, seed=2, offset=-2.0)
    g = torch.Generator().manual_seed(7)
    rec = torch.randn(inp.shape, generator=g, dtype=torch.float64)
    grid = [s // q for s, q in zip(inp.shape[2:], p)]
    active = ~mask.view(inp.shape[0], 1, *grid)
    rec_ref = rec.clone().requires_grad_(True)
    expected = spark_forward_loss(inp, rec_ref, active, p)
    expected.backward()
    rec_mwm = rec.clone().requires_grad_(True)
    got = mwm.spark_loss(rec_mwm, inp, active, p)
    got.backward()
    torch.testing.assert_close(got, expected.detach(), rtol=RTOL, atol=0)
    torch.testing.assert_close(rec_mwm.grad, rec_ref.grad, rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("shape,patch", [((2, 3, 8, 12), 4), ((2, 1, 4, 8, 6), 2)])
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int64, torch.float64])
def test_simmim_loss_parity(shape, patch, mask_dtype):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x_rec = torch.randn(shape, generator=g, dtype=torch.float64)
    grid = [s // patch for s in shape[2:]]
    mask_grid = (torch.rand((shape[0], *grid), generator=g) < 0.6).to(mask_dtype)
    rec_ref = x_rec.clone().requires_grad_(True)
    expected = simmim_forward_loss(x, rec_ref, mask_grid, patch, shape[1])
    expected.backward()
    rec_mwm = x_rec.clone().requires_grad_(True)
    got = mwm.simmim_loss(rec_mwm, x, mask_grid, patch)
    got.backward()
    torch.testing.assert_close(got, expected.detach(), rtol=RTOL, atol=0)
    torch.testing.assert_close(rec_mwm.grad, rec_ref.grad, rtol=RTOL, atol=1e-15)


def test_published_code_rounds_the_epsilons_away():
    """With SparK's and SimMIM's integer masks the published code divides by float32(count + eps)
    == count: that is mwm's plain 'mean' (mse with norm for SparK, l1 for SimMIM)."""
    _, inp, mask, _, p = make_case(2, seed=2, offset=-2.0)
    rec = torch.randn(inp.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    active = ~mask.view(inp.shape[0], 1, 2, 3)
    published = spark_forward_loss(inp, rec, active, p, count_dtype=None)
    mean = mwm.masked_recon_loss(rec, inp, mask, p, norm_target=True, reduction="mean")
    torch.testing.assert_close(published, mean, rtol=RTOL, atol=0)
    assert not torch.equal(published, mwm.spark_loss(rec, inp, active, p))

    g = torch.Generator().manual_seed(8)
    x, x_rec = torch.randn((2, 2, 2, 32, 32), generator=g, dtype=torch.float64).unbind(1)
    integer_mask = (torch.rand((2, 8, 8), generator=g) < 0.6).long()  # >= 256 masked pixels
    published = simmim_forward_loss(x, x_rec, integer_mask, 4, 2, count_dtype=None)
    mean = mwm.masked_recon_loss(x_rec, x, integer_mask.flatten(1).bool(), 4, error="l1",
                                 reduction="mean")
    torch.testing.assert_close(published, mean, rtol=RTOL, atol=0)


def test_simmim_differs_from_mean_by_its_epsilon_only():
    """SimMIM's denominator is (pixels * masked + 1e-5), so 'mean' is SimMIM up to a relative
    1e-5 / (pixels * masked): why simmim_loss is built on 'sum' rather than 'mean'."""
    _, x, mask, _, p = make_case(2, seed=5)
    g = torch.Generator().manual_seed(10)
    x_rec = torch.randn(x.shape, generator=g, dtype=torch.float64)
    simmim = mwm.simmim_loss(x_rec, x, mask, p)
    mean = mwm.masked_recon_loss(x_rec, x, mask, p, error="l1", reduction="mean")
    relative = (mean - simmim) / simmim
    expected = 1e-5 / (math.prod(p) * mask.sum().item())
    assert relative.item() == pytest.approx(expected, rel=1e-6)


OPTIONS = list(itertools.product(["patch", "image"], [False, True], ["mse", "l1"],
                                 ["mean", "mean_eps", "sum", "none"], [2, 3]))


@pytest.mark.parametrize("layout,norm,error,reduction,dims", OPTIONS)
def test_every_option_matches_the_formula(layout, norm, error, reduction, dims):
    pred, target, mask, weight, p = make_case(dims, seed=11, offset=5.0)
    pred_ref = pred.clone().requires_grad_(True)
    expected = generic_reference(pred_ref, target, mask, weight, p, norm, error, reduction)
    upstream = torch.rand(expected.shape, dtype=torch.float64) + 0.5
    (expected * upstream).sum().backward()
    source = pred if layout == "patch" else unpatchify(pred, p, target.shape)
    pred_mwm = source.clone().requires_grad_(True)
    got = mwm.masked_recon_loss(pred_mwm, target, mask, p, weight=weight, norm_target=norm,
                                error=error, reduction=reduction)
    (got * upstream).sum().backward()
    torch.testing.assert_close(got, expected.detach(), rtol=RTOL, atol=1e-300)
    grad = pred_mwm.grad if layout == "patch" else patchify(pred_mwm.grad, p)
    torch.testing.assert_close(grad, pred_ref.grad, rtol=RTOL, atol=1e-15)


def test_strided_inputs_are_read_in_place():
    pred, target, mask, weight, p = make_case(2, seed=12)
    expected = mwm.masked_recon_loss(pred, target, mask, p, weight=weight, norm_target=True)
    channels_last = target.contiguous(memory_format=torch.channels_last)
    transposed = pred.transpose(1, 2).contiguous().transpose(1, 2)
    assert not transposed.is_contiguous() and not channels_last.is_contiguous()
    got = mwm.masked_recon_loss(transposed, channels_last, mask, p, weight=weight,
                                norm_target=True)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
    image = unpatchify(pred, p, target.shape).contiguous(memory_format=torch.channels_last)
    got = mwm.masked_recon_loss(image, channels_last, mask, p, weight=weight, norm_target=True)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)


# --- Mixed precision, determinism ---------------------------------------------------------------

def test_half_predictions_accumulate_in_float32():
    g = torch.Generator().manual_seed(13)
    target = torch.rand((4, 3, 32, 32), generator=g)
    pred16 = torch.randn((4, 4, 768), generator=g).to(torch.bfloat16)
    mask = torch.ones((4, 4), dtype=torch.bool)
    exact = generic_reference(pred16.double(), target.double(), mask, None, 16, True, "mse",
                              "mean")
    mixed = mwm.masked_recon_loss(pred16, target, mask, 16, norm_target=True)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed.double(), exact, rtol=1e-5, atol=0)
    # Both in bfloat16: the result is rounded once to bfloat16 (a bfloat16 accumulation over
    # 768-element patches would be off by far more than this half-ulp).
    both = mwm.masked_recon_loss(pred16, target.to(torch.bfloat16), mask, 16, norm_target=True)
    assert both.dtype == torch.bfloat16
    exact16 = generic_reference(pred16.double(), target.to(torch.bfloat16).double(), mask, None,
                                16, True, "mse", "mean")
    torch.testing.assert_close(both.double(), exact16, rtol=2.0 ** -8, atol=0)
    # The gradient in float16 equals the float64 gradient rounded to float16.
    pred_half = pred16.to(torch.float16).requires_grad_(True)
    mwm.masked_recon_loss(pred_half, target, mask, 16, norm_target=True).backward()
    pred_ref = pred16.to(torch.float16).double().requires_grad_(True)
    generic_reference(pred_ref, target.double(), mask, None, 16, True, "mse", "mean").backward()
    assert pred_half.grad.dtype == torch.float16
    torch.testing.assert_close(pred_half.grad.double(), pred_ref.grad, rtol=2.0 ** -10, atol=1e-7)


def test_results_do_not_depend_on_the_thread_count():
    g = torch.Generator().manual_seed(14)
    target = torch.randn((8, 3, 64, 64), generator=g)
    pred = torch.randn((8, 16, 768), generator=g)
    mask = torch.rand((8, 16), generator=g) < 0.7
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            x = pred.clone().requires_grad_(True)
            loss = mwm.masked_recon_loss(x, target, mask, 16, norm_target=True)
            loss.backward()
            results.append((loss.detach(), x.grad))
    finally:
        torch.set_num_threads(previous)
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0]) and torch.equal(grad, results[0][1])


def contract_order_sum(values):
    """The loss's order over patches (docs/design.md, "Reduction order"), in float32 torch ops:
    zero-padded chunks of 256, each added by the halving tree (a[t] += a[t + s], s = 128 .. 1),
    level after level until one value is left."""
    level = values.reshape(-1)
    while True:
        chunks = -(-level.numel() // 256)
        a = torch.zeros(chunks * 256, dtype=level.dtype)
        a[: level.numel()] = level
        a = a.reshape(chunks, 256)
        s = 128
        while s > 0:
            a = a[:, :s] + a[:, s: 2 * s]
            s //= 2
        level = a.reshape(-1)
        if level.numel() == 1:
            return level[0]


def test_the_reduction_follows_the_documented_order_and_batch_splits_keep_the_bits():
    # 6 * 196 = 1176 patches: five chunks at the first level, weights spread over decades.
    g = torch.Generator().manual_seed(15)
    target = torch.randn((6, 3, 224, 224), generator=g)
    pred = torch.randn((6, 196, 768), generator=g)
    mask = torch.rand((6, 196), generator=g) < 0.75
    weight = torch.rand((6, 196), generator=g) * 10.0 ** torch.randint(-2, 3, (6, 196),
                                                                       generator=g)
    kwargs = dict(weight=weight, norm_target=True)
    per_patch = mwm.masked_recon_loss(pred, target, mask, 16, reduction="none", **kwargs)
    total = mwm.masked_recon_loss(pred, target, mask, 16, reduction="sum", **kwargs)
    mean = mwm.masked_recon_loss(pred, target, mask, 16, reduction="mean", **kwargs)
    coefficients = torch.where(mask, weight, torch.zeros(()))
    assert torch.equal(total, contract_order_sum(per_patch))
    assert torch.equal(mean, contract_order_sum(per_patch) / contract_order_sum(coefficients))
    # Another order (torch's own sum) gives other bits here, so the check above can fail.
    assert not torch.equal(total, per_patch.sum())
    # The per-patch losses of a batch are those of its halves.
    halves = [mwm.masked_recon_loss(pred[k: k + 3], target[k: k + 3], mask[k: k + 3], 16,
                                    reduction="none", weight=weight[k: k + 3], norm_target=True)
              for k in (0, 3)]
    assert torch.equal(per_patch, torch.cat(halves))


# --- opcheck, gradcheck, compile ----------------------------------------------------------------

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def sample_inputs():
    """(pred, target, mask, weight, patch_size, layout, norm, error, reduction) over device cpu x
    dtype x contiguity x layout x norm x error x reduction x 2D/3D."""
    for dtype, contiguous, layout, norm, error, reduction, dims in itertools.product(
            DTYPES, [True, False], ["patch", "image"], [False, True], ["mse", "l1"],
            ["mean", "mean_eps", "sum", "none"], [2, 3]):
        pred, target, mask, weight, p = make_case(dims, dtype=dtype, seed=dims)
        if layout == "image":
            pred = unpatchify(pred, p, target.shape)
        if not contiguous:
            if layout == "patch":
                pred = pred.transpose(1, 2).contiguous().transpose(1, 2)
            else:
                pred = pred.transpose(-1, -2).contiguous().transpose(-1, -2)
            target = target.transpose(-1, -2).contiguous().transpose(-1, -2)
            mask = mask.t().contiguous().t()
        use_weight = weight if reduction in ("mean", "none") else None
        yield (pred.requires_grad_(True), target, mask, use_weight, list(p), layout, norm, error,
               reduction)


SAMPLES = list(sample_inputs())


def _opcheck_tier(index):
    """The fast tier keeps 32 of the 512 samples: the product runs (norm, error, reduction,
    dims) fastest inside each (dtype, contiguity, layout) group of 32, and group g keeps the
    g-th (norm, error, reduction) in 2D and 3D, so every dtype, contiguity and layout and every
    (norm, error, reduction) pair is opchecked there; the slow tier runs the other 480."""
    group, combination = divmod(index, 32)
    return () if combination // 2 == group else (pytest.mark.slow,)


def sample_id(sample):
    pred, target, _, weight, _, layout, norm, error, reduction = sample
    return (f"{str(pred.dtype)[6:]}-{'contig' if pred.is_contiguous() else 'strided'}-{layout}-"
            f"{'norm' if norm else 'raw'}-{error}-{reduction}-{target.dim() - 2}d"
            f"{'-weighted' if weight is not None else ''}")


@pytest.mark.parametrize("sample", [pytest.param(s, id=sample_id(s), marks=_opcheck_tier(i))
                                    for i, s in enumerate(SAMPLES)])
def test_opcheck(sample):
    # pred requires grad, so opcheck's autograd and AOT checks also run the backward op (real
    # kernel against its fake) for every sample.
    torch.library.opcheck(torch.ops.mwm.masked_recon_loss.default, sample)


BACKWARD_SAMPLES = [s for s in SAMPLES if s[0].dtype == torch.float32 and s[6] and s[7] == "mse"]


@pytest.mark.parametrize("sample", BACKWARD_SAMPLES, ids=[sample_id(s) for s in BACKWARD_SAMPLES])
def test_opcheck_backward_op(sample):
    pred, *rest = sample
    out = torch.ops.mwm.masked_recon_loss(pred.detach(), *rest)
    assert (out.dim() == 2) == (rest[-1] == "none")
    grad = torch.rand(out.shape, dtype=out.dtype)
    torch.library.opcheck(torch.ops.mwm._masked_recon_loss_backward.default,
                          (grad, pred.detach(), *rest))


def test_opcheck_mixed_dtypes():
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32)
    sample = (pred.to(torch.bfloat16).requires_grad_(True), target, mask, weight, list(p),
              "patch", True, "mse", "mean")
    torch.library.opcheck(torch.ops.mwm.masked_recon_loss.default, sample)


@pytest.mark.parametrize("layout,norm,error,reduction,dims", OPTIONS)
def test_gradcheck(layout, norm, error, reduction, dims):
    pred, target, mask, weight, p = make_case(dims, batch=1, channels=2, seed=15)
    if layout == "image":
        pred = unpatchify(pred, p, target.shape)
    pred.requires_grad_(True)

    def loss(x):
        return mwm.masked_recon_loss(x, target, mask, p, weight=weight, norm_target=norm,
                                     error=error, reduction=reduction)

    assert torch.autograd.gradcheck(loss, (pred,), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.slow
def test_torch_compile_fullgraph():
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32, seed=16)

    def step(x, imgs, m, w):
        per_patch = mwm.masked_recon_loss(x, imgs, m, p, weight=w, norm_target=True,
                                          reduction="none")
        return mwm.mae_loss(x, imgs, m, p, norm_pix_loss=True) + per_patch.sum() * 0.5

    compiled = torch.compile(step, fullgraph=True)
    eager_x = pred.clone().requires_grad_(True)
    compiled_x = pred.clone().requires_grad_(True)
    expected = step(eager_x, target, mask, weight)
    expected.backward()
    got = compiled(compiled_x, target, mask, weight)
    got.backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(compiled_x.grad, eager_x.grad)


# --- Bad input ------------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32)
    loss = mwm.masked_recon_loss
    with pytest.raises(ValueError, match=r"pred has shape \(2, 5, 48\), its dimension 1 must "
                                         r"equal the number of patches N = 6"):
        loss(pred[:, :5], target, mask, p)
    with pytest.raises(ValueError, match=r"dimension 2 must equal the patch vector size P"):
        loss(pred[:, :, :40], target, mask, p)
    with pytest.raises(ValueError, match=r"layout 'image' expects the shape of target"):
        loss(torch.zeros(2, 3, 8, 8), target, mask, p)
    with pytest.raises(ValueError, match=r"mask has shape \(2, 5\)"):
        loss(pred, target, mask[:, :5], p)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 6\)"):
        loss(pred, target, torch.ones(3, 6, dtype=torch.bool), p)
    with pytest.raises(TypeError, match=r"mask must be torch.bool"):
        loss(pred, target, mask.float(), p)
    with pytest.raises(TypeError, match=r"mask must be Bool, got Float"):
        torch.ops.mwm.masked_recon_loss(pred, target, mask.float(), None, list(p), "patch",
                                        False, "mse", "mean")
    with pytest.raises(ValueError, match=r"image width = 12: must be divisible by patch width = 5"):
        loss(pred, target, mask, (4, 5))
    with pytest.raises(ValueError, match=r"image depth = 4: must be divisible by patch depth = 3"):
        loss(torch.zeros(1, 2, 6), torch.zeros(1, 1, 4, 4, 4), torch.ones(1, 2, dtype=torch.bool),
             (3, 2, 2))
    with pytest.raises(ValueError, match=r"patch_size = \(4, 4, 4\): need 2 sizes"):
        loss(pred, target, mask, (4, 4, 4))
    with pytest.raises(ValueError, match=r"weight has shape \(2, 5\)"):
        loss(pred, target, mask, p, weight=weight[:, :5])
    with pytest.raises(TypeError, match=r"pred must be float32, float64, float16 or bfloat16, "
                                        r"got Long"):
        loss(pred.long(), target, mask, p)
    with pytest.raises(ValueError, match=r"reduction = 'avg': must be one of mean, mean_eps, "
                                         r"sum, none"):
        loss(pred, target, mask, p, reduction="avg")
    with pytest.raises(ValueError, match=r"error = 'l2': must be one of mse, l1"):
        loss(pred, target, mask, p, error="l2")
    with pytest.raises(ValueError, match=r"layout = 'tokens': must be one of patch, image"):
        loss(pred, target, mask, p, layout="tokens")
    with pytest.raises(ValueError, match=r"patch vector size = 1: norm_target needs at least 2"):
        loss(torch.zeros(1, 16, 1), torch.zeros(1, 1, 4, 4), torch.ones(1, 16, dtype=torch.bool),
             1, norm_target=True)
    with pytest.raises(TypeError, match=r"active must be torch.bool"):
        mwm.spark_loss(target, target, torch.ones(2, 1, 2, 3), 4)


def test_non_finite_target_in_a_masked_patch_raises():
    pred, target, mask, _, p = make_case(2, dtype=torch.float32)
    bad = target.clone()
    mask = torch.zeros_like(mask)
    mask[1, 4] = True  # patch 4 of the 2x3 grid: rows 4..7, columns 4..7
    bad[1, 2, 5, 6] = float("nan")
    for norm in (False, True):
        with pytest.raises(ValueError, match=r"target has a non-finite value \(NaN or Inf\) in "
                                             r"sample 1, patch 4"):
            mwm.masked_recon_loss(pred, bad, mask, p, norm_target=norm)
    bad[1, 2, 5, 6] = float("inf")
    with pytest.raises(ValueError, match=r"sample 1, patch 4"):
        mwm.masked_recon_loss(pred, bad, mask, p)
    # Patches outside the loss are never read, so a NaN there does not matter.
    mask[1, 4] = False
    mask[0, 0] = True
    assert torch.isfinite(mwm.masked_recon_loss(pred, bad, mask, p, norm_target=True))


# --- Non-finite results: nonfinite="error" (default) reports, "propagate" returns them ----------

def _one_bad_prediction():
    """Masked patches (0, 5) and (1, 3); a NaN prediction in (1, 3), an Inf one in the unmasked
    patch (1, 4), which the loss never reads."""
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32)
    mask = torch.zeros_like(mask)
    mask[0, 5] = mask[1, 3] = True
    pred[1, 3, 7] = float("nan")
    pred[1, 4, 0] = float("inf")
    return pred, target, mask, weight, p


@pytest.mark.parametrize("layout", ["patch", "image"])
@pytest.mark.parametrize("reduction", ["mean", "mean_eps", "sum", "none"])
def test_a_non_finite_prediction_raises_by_default(layout, reduction):
    pred, target, mask, _, p = _one_bad_prediction()
    if layout == "image":
        pred = unpatchify(pred, p, target.shape)
    with pytest.raises(ValueError, match=r"^mwm: pred has a non-finite value \(NaN or Inf\) in "
                                         r"sample 1, patch 3, which the loss reads \(a masked "
                                         r"patch\); nonfinite = \"propagate\" returns"):
        mwm.masked_recon_loss(pred, target, mask, p, reduction=reduction)
    with pytest.raises(ValueError, match=r"sample 1, patch 3"):
        mwm.masked_recon_loss(pred, target, mask, p, reduction=reduction, nonfinite="error")


@pytest.mark.parametrize("reduction", ["mean", "mean_eps", "sum", "none"])
def test_a_non_finite_prediction_propagates_on_request(reduction):
    pred, target, mask, _, p = _one_bad_prediction()
    x = pred.clone().requires_grad_(True)
    out = mwm.masked_recon_loss(x, target, mask, p, reduction=reduction, nonfinite="propagate")
    if reduction == "none":
        assert torch.isnan(out[1, 3]) and torch.isfinite(out[0, 5]) and out[1, 4] == 0
        out.sum().backward()
    else:
        assert torch.isnan(out)
        out.backward()
    # Only the NaN element's own gradient is NaN (mse: 2 (p - t) c / P); the unmasked Inf
    # patch gets zeros.
    assert torch.isnan(x.grad).sum() == 1 and torch.isnan(x.grad[1, 3, 7])
    assert torch.equal(x.grad[1, 4], torch.zeros_like(x.grad[1, 4]))
    # The same with every prediction finite: no error, the same value as before (the check
    # changes nothing about a finite result).
    pred[1, 3, 7] = 0.5
    finite = mwm.masked_recon_loss(pred, target, mask, p, reduction=reduction)
    torch.testing.assert_close(finite, mwm.masked_recon_loss(pred, target, mask, p,
                                                             reduction=reduction,
                                                             nonfinite="propagate"),
                               rtol=0, atol=0)


def test_non_finite_weight_and_overflow_are_named():
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32)
    mask = torch.ones_like(mask)
    mask[0, 1] = False
    w = weight.clone()
    w[0, 1] = float("nan")  # unmasked: never read
    w[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"^mwm: weight of sample 1, patch 2 = inf: must be "
                                         r"finite where mask is True"):
        mwm.masked_recon_loss(pred, target, mask, p, weight=w)
    assert torch.isnan(mwm.masked_recon_loss(pred, target, mask, p, weight=w,
                                             nonfinite="propagate"))  # inf / inf
    # Finite float32 values whose squared error overflows float32.
    big = pred.clone()
    big[0, 4] = 3e19
    with pytest.raises(ValueError, match=r"^mwm: the loss of sample 0, patch 4 overflows "
                                         r"float32 \(pred, target and weight are finite there"):
        mwm.masked_recon_loss(big, target, mask, p, reduction="none")
    # Per-patch losses finite (~4e37 each: (2e18)^2 times weight 10), their sum over 11 masked
    # patches not.
    near = torch.full_like(pred, 2e18)
    ten = torch.full_like(weight, 10.0)
    with pytest.raises(ValueError, match=r"^mwm: the reduced loss overflows float32 \(every "
                                         r"patch's loss is finite, their sum is not\)"):
        mwm.masked_recon_loss(near, target, mask, p, weight=ten, reduction="sum")
    assert torch.isfinite(mwm.masked_recon_loss(near, target, mask, p, weight=ten,
                                                reduction="none")).all()
    # float16 inputs: the float32 loss is finite, its float16 rounding is not.
    p16, t16 = torch.full_like(pred, 200.0).half(), torch.full_like(target, -200.0).half()
    with pytest.raises(ValueError, match=r"^mwm: the loss = 160000 overflows float16"):
        mwm.masked_recon_loss(p16, t16, mask, p)
    with pytest.raises(ValueError, match=r"^mwm: the loss of sample 0, patch 0 = 160000 "
                                         r"overflows float16"):
        mwm.masked_recon_loss(p16, t16, mask, p, reduction="none")
    assert torch.isinf(mwm.masked_recon_loss(p16, t16, mask, p, nonfinite="propagate"))
    assert mwm.masked_recon_loss(p16, t16.float(), mask, p).item() == 160000.0


def test_nonfinite_reaches_the_published_losses_and_is_validated():
    pred, target, mask, _, p = _one_bad_prediction()
    with pytest.raises(ValueError, match=r"pred has a non-finite value"):
        mwm.mae_loss(pred, target, mask, p)
    assert torch.isnan(mwm.mae_loss(pred, target, mask, p, nonfinite="propagate"))
    image = unpatchify(pred, p, target.shape)
    active = ~mask.view(2, 1, 2, 3)
    with pytest.raises(ValueError, match=r"sample 1, patch 3"):
        mwm.spark_loss(image, target, active, p)
    assert torch.isnan(mwm.spark_loss(image, target, active, p, nonfinite="propagate"))
    with pytest.raises(ValueError, match=r"sample 1, patch 3"):
        mwm.simmim_loss(image, target, mask, p)
    assert torch.isnan(mwm.simmim_loss(image, target, mask, p, nonfinite="propagate"))
    with pytest.raises(ValueError, match=r"nonfinite = 'ignore': must be one of default, "
                                         r"error, propagate"):
        mwm.masked_recon_loss(pred, target, mask, p, nonfinite="ignore")
    with pytest.raises(TypeError, match=r"nonfinite must be a str"):
        mwm.masked_recon_loss(pred, target, mask, p, nonfinite=False)
    # "default" is "error" on the CPU, and so is the op's schema default.
    with pytest.raises(ValueError, match=r"pred has a non-finite value"):
        mwm.masked_recon_loss(pred, target, mask, p, nonfinite="default")
    with pytest.raises(ValueError, match=r"pred has a non-finite value"):
        torch.ops.mwm.masked_recon_loss(pred, target, mask, None, list(p), "patch", False, "mse",
                                        "mean")


@pytest.mark.slow
def test_nonfinite_under_torch_compile_fullgraph():
    pred, target, mask, _, p = _one_bad_prediction()

    def loss(x, nonfinite):
        return mwm.masked_recon_loss(x, target, mask, p, norm_target=True, nonfinite=nonfinite)

    propagate = torch.compile(lambda x: loss(x, "propagate"), fullgraph=True)
    strict = torch.compile(lambda x: loss(x, "error"), fullgraph=True)
    assert torch.isnan(propagate(pred))
    with pytest.raises(ValueError, match=r"sample 1, patch 3"):
        strict(pred)
    good = pred.clone()
    good[1, 3, 7] = 0.0
    torch.testing.assert_close(strict(good), loss(good, "error"))
    torch.testing.assert_close(propagate(good), loss(good, "error"))


def test_opcheck_with_nonfinite():
    pred, target, mask, weight, p = make_case(3, dtype=torch.float32)
    for nonfinite in ("error", "propagate"):
        for reduction in ("mean", "none"):
            sample = (pred.clone().requires_grad_(True), target, mask, weight, list(p), "patch",
                      True, "mse", reduction, nonfinite)
            torch.library.opcheck(torch.ops.mwm.masked_recon_loss.default, sample)


def test_no_masked_patch():
    pred, target, mask, _, p = make_case(2, dtype=torch.float64)
    none = torch.zeros_like(mask)
    assert torch.isnan(mwm.masked_recon_loss(pred, target, none, p))  # as MAE: 0 / 0
    assert mwm.masked_recon_loss(pred, target, none, p, reduction="mean_eps").item() == 0.0
