"""mwm.coral_loss (the mwm::coral_loss op) against Deep CORAL in plain PyTorch, its gradients,
opcheck, torch.compile, bad input, and CORN's class-wise distances and consistency terms."""

import math

import pytest
import torch

import mwm
from mwm.bench.references import deep_coral
from mwm.coral import ClassWiseCoral


def features(n, d, seed, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=dtype) * scale
            + torch.linspace(-1, 2, d, dtype=dtype))


SHAPES = [(2, 2, 1), (5, 9, 3), (64, 40, 8), (17, 300, 33), (400, 350, 64)]


@pytest.mark.parametrize("n,m,d", SHAPES)
def test_matches_deep_coral_float64(n, m, d):
    x = features(n, d, 1).requires_grad_()
    y = features(m, d, 2, scale=1.7).requires_grad_()
    ours = mwm.coral_loss(x, y)
    ours.backward()
    gx, gy = x.grad.clone(), y.grad.clone()
    x.grad = y.grad = None
    reference = deep_coral(x, y)
    reference.backward()
    assert ours.shape == () and ours.dtype == torch.float64
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=0)
    torch.testing.assert_close(gx, x.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(gy, y.grad, rtol=1e-10, atol=1e-14)


def test_matches_deep_coral_float32():
    x = features(300, 32, 3, torch.float32).requires_grad_()
    y = features(200, 32, 4, torch.float32, 0.5).requires_grad_()
    ours = mwm.coral_loss(x, y)
    ours.backward()
    reference = deep_coral(x.detach().double(), y.detach().double())
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=0)
    xd, yd = x.detach().double().requires_grad_(), y.detach().double().requires_grad_()
    deep_coral(xd, yd).backward()
    torch.testing.assert_close(x.grad.double(), xd.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(y.grad.double(), yd.grad, rtol=1e-4, atol=1e-7)


def test_known_values_and_non_contiguous_inputs():
    x = features(30, 6, 5)
    assert mwm.coral_loss(x, x).item() == 0.0
    # cov(2x) = 4 cov(x): diff = -3 cov(x).
    cov = torch.cov(x.T)
    expected = 9 * (cov ** 2).sum() / (4 * 36)
    torch.testing.assert_close(mwm.coral_loss(x, 2 * x), expected, rtol=1e-12, atol=0)
    wide = features(6, 30, 6).T  # (30, 6) view with strides (1, 30)
    assert not wide.is_contiguous()
    torch.testing.assert_close(mwm.coral_loss(wide, x), deep_coral(wide, x), rtol=1e-10, atol=0)


def test_op_returns_covariance_difference():
    x, y = features(20, 5, 7), features(12, 5, 8)
    loss, cov_diff = torch.ops.mwm.coral_loss(x, y)
    torch.testing.assert_close(cov_diff, torch.cov(x.T) - torch.cov(y.T), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss, (cov_diff ** 2).sum() / 100, rtol=1e-12, atol=0)


def test_gradcheck_loss_and_both_outputs():
    x = features(7, 4, 9).requires_grad_()
    y = features(5, 4, 10, scale=2.0).requires_grad_()
    assert torch.autograd.gradcheck(mwm.coral_loss, (x, y))
    # The cov_diff output is differentiable too (the backward takes its gradient).
    assert torch.autograd.gradcheck(lambda a, b: torch.ops.mwm.coral_loss(a, b), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: torch.ops.mwm.coral_loss(a, b)[1].sum(), (x, y))


def _sample_inputs():
    for n, m, d in [(2, 3, 1), (10, 7, 4), (65, 40, 16)]:
        for dtype in (torch.float32, torch.float64):
            yield (features(n, d, n, dtype).requires_grad_(),
                   features(m, d, m + 1, dtype).requires_grad_())
    yield (features(9, 12, 3).T.requires_grad_(), features(5, 9, 4).requires_grad_())
    yield (features(8, 3, 5), features(6, 3, 6))


@pytest.mark.parametrize("args", list(_sample_inputs()))
def test_opcheck(args):
    torch.library.opcheck(torch.ops.mwm.coral_loss.default, args)


def test_opcheck_backward():
    x, y = features(11, 5, 1), features(8, 5, 2)
    _, cov_diff = torch.ops.mwm.coral_loss(x, y)
    grad = torch.tensor(0.5, dtype=torch.float64)
    torch.library.opcheck(torch.ops.mwm._coral_loss_backward.default,
                          (grad, None, x, y, cov_diff))
    torch.library.opcheck(torch.ops.mwm._coral_loss_backward.default,
                          (grad, torch.randn(5, 5, dtype=torch.float64), x, y, cov_diff))


@pytest.mark.slow
def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()

    def step(x, y):
        return mwm.coral_loss(torch.tanh(x), y * 2.0)

    x = features(50, 8, 11, torch.float32).requires_grad_()
    y = features(40, 8, 12, torch.float32).requires_grad_()
    eager = step(x, y)
    eager.backward()
    grads = x.grad.clone(), y.grad.clone()
    x.grad = y.grad = None
    compiled = torch.compile(step, fullgraph=True)(x, y)
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=0)
    torch.testing.assert_close(x.grad, grads[0], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(y.grad, grads[1], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("x,y,error,pattern", [
    (torch.randn(5, 3), torch.randn(6, 4), ValueError,
     r"y has shape \(6, 4\), its dimension 1 must equal x.shape\[1\] \(the feature dimension d\)"),
    (torch.randn(1, 3), torch.randn(6, 3), ValueError,
     r"x has shape \(1, 3\): an unbiased covariance needs at least 2 samples"),
    (torch.randn(5, 3), torch.randn(1, 3), ValueError, r"y has shape \(1, 3\)"),
    (torch.randn(5, 0), torch.randn(4, 0), ValueError, r"needs at least 1 feature"),
    (torch.randn(5), torch.randn(5, 1), ValueError,
     r"x has shape \(5,\): expected \(samples, features\)"),
    (torch.randn(5, 3), torch.randn(2, 5, 3), ValueError, r"y has shape \(2, 5, 3\)"),
    (torch.randint(0, 4, (5, 3)), torch.randn(5, 3), TypeError,
     r"x must be float32 or float64, got torch.int64"),
    (torch.randn(5, 3, dtype=torch.float16), torch.randn(5, 3), TypeError, r"torch.float16"),
    (torch.randn(5, 3), torch.randn(5, 3, dtype=torch.float64), TypeError,
     r"y must be Float, got Double"),
    ([[1.0, 2.0]], torch.randn(5, 2), TypeError, r"x must be a torch.Tensor, got list"),
])
def test_bad_input(x, y, error, pattern):
    with pytest.raises(error, match=pattern):
        mwm.coral_loss(x, y)


@pytest.mark.parametrize("value,text", [(float("nan"), "nan"), (float("inf"), "inf"),
                                        (float("-inf"), "-inf")])
def test_non_finite_features_are_rejected_naming_the_entry(value, text):
    y = torch.randn(6, 4)
    y[3, 2] = value
    with pytest.raises(ValueError, match=rf"mwm: y\[3, 2\] = {text}: features must be finite"):
        mwm.coral_loss(torch.randn(5, 4), y)


def test_backward_op_rejects_mismatched_covariance():
    x, y = features(6, 3, 1), features(6, 3, 2)
    with pytest.raises(ValueError, match=r"cov_diff has shape \(4, 4\)"):
        torch.ops.mwm._coral_loss_backward(torch.tensor(1.0, dtype=torch.float64), None, x, y,
                                          torch.zeros(4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"grad_loss has shape \(2\): must hold one value"):
        torch.ops.mwm._coral_loss_backward(torch.ones(2, dtype=torch.float64), None, x, y,
                                          torch.zeros(3, 3, dtype=torch.float64))


def test_benchmark_rows_follow_the_speed_harness_keys():
    from types import SimpleNamespace

    from mwm.bench.speed_coral import run_coral_benchmarks

    args = SimpleNamespace(coral_sizes=[(50, 40, 4)], repeats=1, warmup=0, no_compile=True)
    rows = run_coral_benchmarks(args)
    assert len(rows) == 1
    row = rows[0]
    assert row["section"] == "coral" and row["reference"] == "Deep CORAL, eager PyTorch"
    assert row["size"] == "n=50 m=40 d=4 float32" and row["repeats"] == 1
    assert row["ours_ms"] > 0 and row["reference_ms"] > 0
    assert row["ratio"] == pytest.approx(row["ours_ms"] / row["reference_ms"])
    assert row["loss_relative_difference"] < 1e-5


# --- CORN's class-wise distances -------------------------------------------------------------

def test_class_wise_matrix_entries_are_coral_distances():
    unlabeled = [features(30, 6, 1), None, features(1, 6, 2), features(12, 6, 3, scale=3.0)]
    labeled = [features(40, 6, 4), features(25, 6, 5, scale=0.3), None]
    result = mwm.class_wise_coral(unlabeled, labeled)
    assert isinstance(result, ClassWiseCoral)
    assert result.distances.shape == (4, 3) and result.valid.shape == (4, 3)
    expected_valid = torch.tensor([[True, True, False], [False] * 3, [False] * 3,
                                   [True, True, False]])
    assert torch.equal(result.valid, expected_valid)
    for i, u in enumerate(unlabeled):
        for c, group in enumerate(labeled):
            if expected_valid[i, c]:
                torch.testing.assert_close(result.distances[i, c], deep_coral(u, group),
                                           rtol=1e-10, atol=0)
            else:
                assert result.distances[i, c] == 0


def test_class_wise_matrix_is_differentiable_in_every_present_group():
    u0 = features(20, 4, 1).requires_grad_()
    u1 = features(15, 4, 2).requires_grad_()
    pool = [features(30, 4, 3).requires_grad_(), features(30, 4, 4).requires_grad_()]
    result = mwm.class_wise_coral([u0, u1], pool)
    result.distances.sum().backward()
    for t in (u0, u1, *pool):
        assert t.grad is not None and t.grad.abs().sum() > 0
    expected = sum(deep_coral(a, b) for a in (u0, u1) for b in pool)
    torch.testing.assert_close(result.distances.sum(), expected, rtol=1e-10, atol=0)


def test_class_wise_rejects_inconsistent_groups():
    with pytest.raises(ValueError,
                       match=r"labeled\[1\] is \(10, 5\) torch.float64; every group needs d = 4"):
        mwm.class_wise_coral([features(10, 4, 1)], [features(10, 4, 2), features(10, 5, 3)])
    with pytest.raises(ValueError, match="every feature group is None"):
        mwm.class_wise_coral([None], [None])
    with pytest.raises(ValueError, match="at least one class on each side"):
        mwm.class_wise_coral([], [features(10, 4, 2)])


def _matrix(values, valid):
    return ClassWiseCoral(torch.tensor(values, dtype=torch.float64), torch.tensor(valid))


def test_consistency_mse_uses_entries_valid_in_both():
    a = _matrix([[1.0, 2.0], [3.0, 4.0]], [[True, True], [False, True]])
    b = _matrix([[1.5, 0.0], [9.0, 1.0]], [[True, False], [True, True]])
    # Valid in both: (0, 0) and (1, 1).
    expected = ((1.0 - 1.5) ** 2 + (4.0 - 1.0) ** 2) / 2
    assert mwm.coral_consistency(a, b).item() == pytest.approx(expected, rel=1e-12)
    none = _matrix([[1.0, 2.0], [3.0, 4.0]], [[False, False], [False, False]])
    assert mwm.coral_consistency(a, none).item() == 0.0


def test_consistency_cross_entropy_matches_formula():
    a = _matrix([[0.1, 0.4, 0.2], [0.3, 0.05, 0.9]], [[True, True, False], [True, True, True]])
    b = _matrix([[0.2, 0.1, 5.0], [0.3, 0.3, 0.1]], [[True, True, True], [True, True, True]])
    t = 0.5
    total = 0.0
    for i, columns in enumerate([[0, 1], [0, 1, 2]]):
        za = [math.exp(-a.distances[i, c].item() / t) for c in columns]
        zb = [math.exp(-b.distances[i, c].item() / t) for c in columns]
        pa = [v / sum(za) for v in za]
        pb = [v / sum(zb) for v in zb]
        total += -sum(q * math.log(p) for p, q in zip(pa, pb))
    ours = mwm.coral_consistency(a, b, mode="cross_entropy", temperature=t)
    assert ours.item() == pytest.approx(total / 2, rel=1e-12)


def test_consistency_gradients_reach_both_branches():
    xa = features(20, 4, 1).requires_grad_()
    xb = features(20, 4, 2).requires_grad_()
    pool = [features(30, 4, 3), features(30, 4, 4)]
    for mode in ("mse", "cross_entropy"):
        xa.grad = xb.grad = None
        term = mwm.coral_consistency(mwm.class_wise_coral([xa, None], pool),
                                     mwm.class_wise_coral([xb, None], pool), mode=mode)
        term.backward()
        assert xa.grad.abs().sum() > 0 and xb.grad.abs().sum() > 0


def test_consistency_rejects_bad_arguments():
    a = _matrix([[1.0]], [[True]])
    with pytest.raises(ValueError, match="mode = 'kl': must be one of mse, cross_entropy"):
        mwm.coral_consistency(a, a, mode="kl")
    with pytest.raises(ValueError, match="differ in shape"):
        mwm.coral_consistency(a, _matrix([[1.0, 2.0]], [[True, True]]))
    with pytest.raises(ValueError, match="temperature = 0"):
        mwm.coral_consistency(a, a, mode="cross_entropy", temperature=0)


def test_class_alignment_is_mean_valid_diagonal():
    m = _matrix([[1.0, 7.0, 8.0], [2.0, 3.0, 9.0]], [[True, True, True], [True, False, True]])
    assert mwm.class_alignment(m).item() == 1.0
    m = _matrix([[1.0, 7.0], [2.0, 3.0]], [[True, True], [True, True]])
    assert mwm.class_alignment(m).item() == 2.0
    assert mwm.class_alignment(_matrix([[1.0]], [[False]])).item() == 0.0


@pytest.mark.parametrize("offset", [0.0, 50.0, -300.0])
@pytest.mark.parametrize("n,m,d", [(6400, 5000, 32), (700, 900, 96)])
def test_float32_keeps_torch_cov_accuracy_at_large_means(n, m, d, offset):
    """The op centres before its Gram products (as torch.cov does), so float32 features far
    from zero lose no more accuracy than the plain formula does."""
    g = torch.Generator().manual_seed(d)
    x = (torch.randn(n, d, generator=g) + offset).requires_grad_()
    y = (0.7 * torch.randn(m, d, generator=g) - offset).requires_grad_()
    ours = mwm.coral_loss(x, y)
    ours.backward()
    xd, yd = x.detach().double().requires_grad_(), y.detach().double().requires_grad_()
    reference = deep_coral(xd, yd)
    reference.backward()
    torch.testing.assert_close(ours.double(), reference, rtol=2e-4, atol=0)
    scale = float(xd.grad.abs().max())
    torch.testing.assert_close(x.grad.double(), xd.grad, rtol=1e-3, atol=1e-4 * scale)
    torch.testing.assert_close(y.grad.double(), yd.grad, rtol=1e-3, atol=1e-4 * scale)


def test_gradcheck_with_incoming_cov_diff_gradient_and_wide_features():
    x = features(9, 6, 21).requires_grad_()
    y = features(13, 6, 22, scale=0.5).requires_grad_()
    weight = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def f(a, b):
        loss, cov_diff = torch.ops.mwm.coral_loss(a, b)
        return 3.0 * loss + (weight * cov_diff).sum()

    assert torch.autograd.gradcheck(f, (x, y))
