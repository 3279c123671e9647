"""The gradient the CPU forward writes for grad_output == 1 (``_masked_recon_loss_fused``) and
its backward (``_masked_recon_loss_backward_inplace``): bit for bit the unfused backward's
gradient for every option, dtype, layout and upstream value, across repeated backwards of a
retained graph, with the degenerate denominators, without a copy of the gradient; opcheck of
both ops; the wrapper's choice of path."""

from __future__ import annotations

import itertools

import pytest
import torch

import mwm
from mwm.bench.references import unpatchify

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
BITS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
        torch.bfloat16: torch.int16}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal element bits (NaN payloads and signed zeros included), shapes and dtypes."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.contiguous().view(BITS[a.dtype]), b.contiguous().view(BITS[b.dtype]))


def make_case(dims, dtype=torch.float32, seed=0):
    """pred (B, N, P), target, mask (B, N) with patch 0 masked, weights in [0.5, 1.5), patch
    size: a 2D RGB case of 6 patches and a 3D two-channel case of 8 (P = 48 and 36)."""
    g = torch.Generator().manual_seed(seed)
    if dims == 2:
        shape, p = (2, 3, 8, 12), (4, 4)
    else:
        shape, p = (2, 2, 4, 6, 8), (2, 3, 2)
    target = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1).to(dtype)
    n = 1
    for s, q in zip(shape[2:], p):
        n *= s // q
    pvec = shape[1]
    for q in p:
        pvec *= q
    pred = torch.randn((shape[0], n, pvec), generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand((shape[0], n), generator=g) < 0.7
    mask[:, 0] = True
    weight = (torch.rand((shape[0], n), generator=g, dtype=torch.float64) + 0.5).to(dtype)
    return pred, target, mask, weight, p


def options_case(dims, dtype, layout, contiguous, weighted, seed=0):
    pred, target, mask, weight, p = make_case(dims, dtype=dtype, seed=seed)
    if layout == "image":
        pred = unpatchify(pred, p, target.shape)
    if not contiguous:
        if layout == "patch":
            pred = pred.transpose(1, 2).contiguous().transpose(1, 2)
        else:
            pred = pred.transpose(-1, -2).contiguous().transpose(-1, -2)
        target = target.transpose(-1, -2).contiguous().transpose(-1, -2)
    return pred, target, mask, weight if weighted else None, list(p)


def unfused_gradients(pred, target, mask, weight, p, options, upstreams):
    """The plain op's loss, and pred.grad after one backward per upstream value (retained
    graph)."""
    x = pred.detach().clone().requires_grad_(True)
    loss = torch.ops.mwm.masked_recon_loss(x, target, mask, weight, p, *options)
    grads = []
    for k, upstream in enumerate(upstreams):
        loss.backward(torch.tensor(upstream, dtype=loss.dtype), retain_graph=k + 1 < len(upstreams))
        grads.append(x.grad.clone())
    return loss.detach(), grads


def fused_gradients(pred, target, mask, weight, p, options, upstreams):
    x = pred.detach().clone().requires_grad_(True)
    loss = mwm.masked_recon_loss(x, target, mask, p, weight=weight, layout=options[0],
                                 norm_target=options[1], error=options[2], reduction=options[3],
                                 nonfinite=options[4])
    assert "fused" in type(loss.grad_fn).__name__.lower()
    grads = []
    for k, upstream in enumerate(upstreams):
        loss.backward(torch.tensor(upstream, dtype=loss.dtype), retain_graph=k + 1 < len(upstreams))
        grads.append(x.grad.clone())
    return loss.detach(), grads


CASES = list(itertools.product([2, 3], DTYPES, ["patch", "image"], [True, False], [False, True],
                               ["mse", "l1"], ["mean", "mean_eps", "sum"]))


def case_id(case):
    dims, dtype, layout, norm, weighted, error, reduction = case
    return (f"{dims}d-{str(dtype)[6:]}-{layout}-{'norm' if norm else 'raw'}-"
            f"{'weighted' if weighted else 'unweighted'}-{error}-{reduction}")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_the_fused_gradient_has_the_unfused_bits(case):
    dims, dtype, layout, norm, weighted, error, reduction = case
    pred, target, mask, weight, p = options_case(dims, dtype, layout, contiguous=dims == 2,
                                                 weighted=weighted, seed=dims)
    options = (layout, norm, error, reduction, "default")
    # grad_output 1 (the stored gradient), then GradScaler-like and fractional upstreams through
    # the retained graph, then 1 again (a fresh gradient: the first was handed over).
    upstreams = [1.0, 65536.0, 0.375, 1.0]
    loss, expected = unfused_gradients(pred, target, mask, weight, p, options, upstreams)
    got_loss, got = fused_gradients(pred, target, mask, weight, p, options, upstreams)
    assert same_bits(got_loss, loss)
    for e, g in zip(expected, got):
        assert same_bits(g, e)


@pytest.mark.parametrize("upstream", [1.0, 0.5, 3.0, -1.0, 0.0])
@pytest.mark.parametrize("dims", [2, 3])
def test_a_first_backward_with_any_upstream_has_the_unfused_bits(upstream, dims):
    pred, target, mask, weight, p = options_case(dims, torch.float32, "patch", True, True,
                                                 seed=5)
    options = ("patch", True, "mse", "mean", "default")
    _, expected = unfused_gradients(pred, target, mask, weight, p, options, [upstream])
    _, got = fused_gradients(pred, target, mask, weight, p, options, [upstream])
    assert same_bits(got[0], expected[0])


def test_a_weighted_sum_of_losses_has_the_unfused_bits():
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32, seed=6)
    plain_x = pred.clone().requires_grad_(True)
    fused_x = pred.clone().requires_grad_(True)
    args = (target, mask, weight, p, "patch", True, "mse")
    plain = (torch.ops.mwm.masked_recon_loss(plain_x, *args, "mean") * 0.7
             + torch.ops.mwm.masked_recon_loss(plain_x, *args, "sum") * 0.3)
    plain.backward()
    fused = (mwm.masked_recon_loss(fused_x, target, mask, p, weight=weight, norm_target=True) * 0.7
             + mwm.masked_recon_loss(fused_x, target, mask, p, weight=weight, norm_target=True,
                                     reduction="sum") * 0.3)
    fused.backward()
    assert same_bits(fused_x.grad, plain_x.grad)


def test_a_zeroed_grad_between_backwards_of_a_retained_graph():
    # The first backward hands the stored gradient over as pred.grad; zeroing it in place
    # (optimizer.zero_grad(set_to_none=False)) must not change what the second backward gives.
    pred, target, mask, weight, p = make_case(3, dtype=torch.float32, seed=7)
    results = []
    for fused in (False, True):
        x = pred.clone().requires_grad_(True)
        if fused:
            loss = mwm.masked_recon_loss(x, target, mask, p, weight=weight, norm_target=True)
        else:
            loss = torch.ops.mwm.masked_recon_loss(x, target, mask, weight, p, "patch", True,
                                                   "mse", "mean")
        loss.backward(retain_graph=True)
        first = x.grad.clone()
        x.grad.zero_()
        loss.backward()
        results.append((first, x.grad.clone()))
    assert same_bits(results[1][0], results[0][0]) and same_bits(results[1][1], results[0][1])
    assert same_bits(results[1][1], results[1][0])


def test_the_stored_gradient_becomes_pred_grad_without_a_copy():
    # Once the graph releases it, autograd's accumulation takes the stored tensor itself as
    # pred.grad (a copy would be allocated while the stored one is alive: another address).
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32, seed=8)
    for upstream in (1.0, 2.0):
        x = pred.clone().requires_grad_(True)
        loss, stored = torch.ops.mwm._masked_recon_loss_fused(x, target, mask, weight, p, "patch",
                                                             True, "mse", "mean")
        assert not stored.requires_grad
        address = stored.data_ptr()
        del stored
        loss.backward(torch.tensor(upstream))
        assert x.grad.data_ptr() == address


@pytest.mark.parametrize("reduction", ["mean", "mean_eps", "sum"])
def test_a_non_finite_prediction_propagates_with_the_unfused_bits(reduction):
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32, seed=9)
    pred[1, 3, 7] = float("nan")
    pred[0, 2, 1] = float("inf")
    mask[1, 3] = mask[0, 2] = True
    options = ("patch", True, "mse", reduction, "propagate")
    loss, expected = unfused_gradients(pred, target, mask, weight, p, options, [1.0, 2.0])
    got_loss, got = fused_gradients(pred, target, mask, weight, p, options, [1.0, 2.0])
    assert torch.isnan(loss) and same_bits(got_loss, loss)
    assert same_bits(got[0], expected[0]) and same_bits(got[1], expected[1])
    # Under "error" the forward raises before any gradient is handed out.
    x = pred.clone().requires_grad_(True)
    with pytest.raises(ValueError, match=r"pred has a non-finite value"):
        mwm.masked_recon_loss(x, target, mask, p, weight=weight, norm_target=True,
                              reduction=reduction)
    assert x.grad is None


@pytest.mark.parametrize("what", ["nothing masked", "nan weight", "tiny weights"])
def test_degenerate_denominators_have_the_unfused_bits(what):
    # sum(mask * weight) == 0 or NaN: every factor is NaN, unread patches included (the op then
    # computes the gradient after its pass); tiny weights: factors that underflow to zero.
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32, seed=10)
    if what == "nothing masked":
        mask = torch.zeros_like(mask)
    elif what == "nan weight":
        weight[0, 0] = float("nan")
    else:
        weight[:, ::2] = 1e-30
        weight[0, 1] = 1e30
    for reduction in ("mean", "mean_eps", "sum"):
        options = ("patch", False, "l1", reduction, "propagate")
        loss, expected = unfused_gradients(pred, target, mask, weight, p, options, [1.0])
        got_loss, got = fused_gradients(pred, target, mask, weight, p, options, [1.0])
        assert same_bits(got_loss, loss) and same_bits(got[0], expected[0])


def test_the_wrapper_takes_the_plain_op_where_nothing_is_fused():
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32, seed=11)
    x = pred.clone().requires_grad_(True)
    per_patch = mwm.masked_recon_loss(x, target, mask, p, reduction="none")
    assert "fused" not in type(per_patch.grad_fn).__name__.lower()
    with torch.no_grad():
        assert mwm.masked_recon_loss(x, target, mask, p).grad_fn is None
    assert mwm.masked_recon_loss(pred, target, mask, p).grad_fn is None
    assert "fused" in type(mwm.masked_recon_loss(x, target, mask, p).grad_fn).__name__.lower()


def test_fused_ops_reject_bad_arguments():
    pred, target, mask, weight, p = make_case(2, dtype=torch.float32, seed=12)
    with pytest.raises(ValueError, match=r"^mwm: reduction = 'none': the fused forward"):
        torch.ops.mwm._masked_recon_loss_fused(pred, target, mask, weight, p, "patch", True,
                                               "mse", "none")
    args = (pred, target, mask, weight, p, "patch", True, "mse", "mean")
    with pytest.raises(ValueError, match=r"^mwm: grad_pred has shape \(2, 6, 47\): expected"):
        torch.ops.mwm._masked_recon_loss_backward_inplace(torch.zeros(2, 6, 47), torch.tensor(2.0),
                                                          *args)
    with pytest.raises(TypeError, match=r"^mwm: grad_pred must be Float, got Double"):
        torch.ops.mwm._masked_recon_loss_backward_inplace(pred.double(), torch.tensor(2.0), *args)
    with pytest.raises(ValueError, match=r"^mwm: grad has shape \(2\): a reduced loss"):
        torch.ops.mwm._masked_recon_loss_backward_inplace(torch.zeros_like(pred), torch.ones(2),
                                                          *args)


def opcheck_samples():
    """(pred, target, mask, weight, patch_size, layout, norm, error, reduction) over dtype x
    contiguity x layout x norm x error x reduction (reduced ones) x 2D/3D, pred requiring grad."""
    for dtype, contiguous, layout, norm, error, reduction, dims in itertools.product(
            DTYPES, [True, False], ["patch", "image"], [False, True], ["mse", "l1"],
            ["mean", "mean_eps", "sum"], [2, 3]):
        pred, target, mask, weight, p = options_case(dims, dtype, layout, contiguous,
                                                     weighted=reduction == "mean", seed=dims)
        yield (pred.requires_grad_(True), target, mask, weight, p, layout, norm, error,
               reduction)


def sample_id(sample):
    pred, target, _, weight, _, layout, norm, error, reduction = sample
    return (f"{str(pred.dtype)[6:]}-{'contig' if pred.is_contiguous() else 'strided'}-{layout}-"
            f"{'norm' if norm else 'raw'}-{error}-{reduction}-{target.dim() - 2}d"
            f"{'-weighted' if weight is not None else ''}")


REDUCED_SAMPLES = list(opcheck_samples())


def _fused_tier(index):
    """The fast tier keeps one sample in 11 (35 of 384; 11 is prime to every factor of the
    product, so every dtype, contiguity, layout, norm, error, reduction and dims is among them);
    the slow tier runs the others."""
    return () if index % 11 == 0 else (pytest.mark.slow,)


@pytest.mark.parametrize("sample", [pytest.param(s, id=sample_id(s), marks=_fused_tier(i))
                                    for i, s in enumerate(REDUCED_SAMPLES)])
def test_opcheck_fused(sample):
    torch.library.opcheck(torch.ops.mwm._masked_recon_loss_fused.default, sample)


@pytest.mark.parametrize("upstream", [1.0, 0.25])
@pytest.mark.parametrize("sample", [s for s in REDUCED_SAMPLES
                                    if s[0].dtype == torch.float32 and s[6] and s[7] == "mse"],
                         ids=sample_id)
def test_opcheck_backward_inplace(sample, upstream):
    pred, *rest = sample
    _, stored = torch.ops.mwm._masked_recon_loss_fused(pred.detach(), *rest)
    torch.library.opcheck(torch.ops.mwm._masked_recon_loss_backward_inplace.default,
                          (stored, torch.tensor(upstream), pred.detach(), *rest))


def test_the_benchmark_counts_the_bytes_of_the_path_it_times():
    # speed_loss's bandwidth share counts the fused path's bytes (2 * masked share + 1 tensors);
    # the step it times must take that path, and its unfused reference the other one.
    from mwm.bench import speed_loss

    case = speed_loss.QUICK_CASES[0]
    pred, imgs, mask = speed_loss._inputs(case)
    pred.requires_grad_(True)
    methods = dict(speed_loss._methods(case, compile_reference=False, unfused_reference=True))
    assert "fused" in type(methods["mwm"](pred, imgs, mask).grad_fn).__name__.lower()
    assert "fused" not in type(methods["unfused"](pred, imgs, mask).grad_fn).__name__.lower()
    tensor = case.batch * case.num_patches * case.patch_vector * 4
    share = mask.float().mean().item()
    assert speed_loss.fused_bytes(case, mask) == int(2 * share * tensor + tensor)
    # Both give the same loss and gradient bits.
    grads = []
    for name in ("mwm", "unfused"):
        pred.grad = None
        methods[name](pred, imgs, mask).backward()
        grads.append(pred.grad)
    assert same_bits(grads[0], grads[1])
