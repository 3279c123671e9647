"""The CORAL ops' code (coral_math.hpp over ATen: mwm::tensors::coral_loss, what the CPU and the
CUDA op run), called on the CPU without the CPU op's finiteness check through
mwm._C._coral_loss_aten / _coral_loss_backward_aten (exactly the CUDA op's path), against the
header-only Eigen entry for C++ users (include/mwm/coral.hpp, the same maths over Eigen
products, through mwm._C._coral_loss_eigen / _coral_loss_backward_eigen), against the CPU op's
argument checks and against autograd of plain torch code."""


import pytest
import torch

import mwm  # noqa: F401  (loads the extension: registers torch.ops.mwm.*)
from mwm import _C  # the pybind11 module, wherever mwm loaded it from


def features(n, d, seed, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=dtype) * scale
            + torch.linspace(-1, 2, d, dtype=dtype))


def matrix(d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, d, generator=g, dtype=dtype)


# (n, m, d): n == m and n != m, d = 1, the minimum n = m = 2, and sizes past Eigen's blocking.
SHAPES = [(2, 2, 1), (3, 7, 1), (5, 9, 3), (40, 40, 8), (64, 17, 12), (17, 300, 33),
          (250, 120, 70)]
# dtype: (rtol, atol relative to the largest magnitude of the compared tensor)
TOLERANCE = {torch.float64: (1e-12, 1e-13), torch.float32: (2e-5, 2e-6)}


def assert_near(actual, expected, dtype):
    rtol, atol = TOLERANCE[dtype]
    assert actual.dtype == expected.dtype == dtype
    assert actual.shape == expected.shape
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,m,d", SHAPES)
def test_forward_matches_eigen_kernel(n, m, d, dtype):
    x, y = features(n, d, 1, dtype), features(m, d, 2, dtype, scale=1.7)
    loss, cov_diff = _C._coral_loss_aten(x, y)
    cpu_loss, cpu_cov_diff = _C._coral_loss_eigen(x, y)
    assert loss.shape == () and cov_diff.shape == (d, d) and cov_diff.is_contiguous()
    assert_near(cov_diff, cpu_cov_diff, dtype)
    assert_near(loss, cpu_loss, dtype)
    assert float(loss) > 0  # different scales: a zero loss would mean nothing was compared
    # Exactly symmetric, as the Eigen core mirrors its lower triangle.
    assert torch.equal(cov_diff, cov_diff.T)


@pytest.mark.parametrize("with_grad_cov_diff", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,m,d", SHAPES)
def test_backward_matches_eigen_kernel(n, m, d, dtype, with_grad_cov_diff):
    x, y = features(n, d, 3, dtype), features(m, d, 4, dtype, scale=0.6)
    _, cov_diff = torch.ops.mwm.coral_loss(x, y)
    grad_loss = torch.tensor(0.75, dtype=dtype)
    # Not symmetric: the CPU op transposes and symmetrizes it, the composition must agree.
    grad_cov_diff = matrix(d, 5, dtype) if with_grad_cov_diff else None
    gx, gy = _C._coral_loss_backward_aten(grad_loss, grad_cov_diff, x, y, cov_diff)
    cpu_gx, cpu_gy = _C._coral_loss_backward_eigen(grad_loss, grad_cov_diff, x, y, cov_diff)
    assert gx.is_contiguous() and gy.is_contiguous()
    assert_near(gx, cpu_gx, dtype)
    assert_near(gy, cpu_gy, dtype)
    assert float(gx.abs().max()) > 0 and float(gy.abs().max()) > 0


@pytest.mark.parametrize("n,m,d", [(5, 9, 3), (64, 17, 12)])
def test_backward_matches_autograd_of_plain_torch(n, m, d):
    """An independent reference: autograd through Deep CORAL written in torch, with the loss
    weighted by grad_loss and cov_diff contracted with grad_cov_diff."""
    x = features(n, d, 6).requires_grad_()
    y = features(m, d, 7, scale=1.3).requires_grad_()
    xc, yc = x - x.mean(0), y - y.mean(0)
    cov_diff = xc.T @ xc / (n - 1) - yc.T @ yc / (m - 1)
    loss = (cov_diff ** 2).sum() / (4 * d * d)
    grad_loss, grad_cov_diff = torch.tensor(-1.5, dtype=torch.float64), matrix(d, 8)
    (grad_loss * loss + (grad_cov_diff * cov_diff).sum()).backward()
    gx, gy = _C._coral_loss_backward_aten(grad_loss, grad_cov_diff, x.detach(), y.detach(),
                                          cov_diff.detach())
    torch.testing.assert_close(gx, x.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gy, y.grad, rtol=1e-10, atol=1e-12)


def test_incoming_cov_diff_gradient_is_used_and_symmetrized():
    x, y = features(30, 6, 9), features(20, 6, 10)
    _, cov_diff = _C._coral_loss_aten(x, y)
    grad_loss = torch.tensor(1.0, dtype=torch.float64)
    g = matrix(6, 11)
    plain = _C._coral_loss_backward_aten(grad_loss, None, x, y, cov_diff)
    with_g = _C._coral_loss_backward_aten(grad_loss, g, x, y, cov_diff)
    with_gt = _C._coral_loss_backward_aten(grad_loss, g.T.contiguous(), x, y, cov_diff)
    assert not torch.allclose(plain[0], with_g[0])
    torch.testing.assert_close(with_g[0], with_gt[0], rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(with_g[1], with_gt[1], rtol=1e-13, atol=1e-14)


def test_non_symmetric_cov_diff_is_read_as_the_cpu_kernel_reads_it():
    x, y = features(12, 4, 12), features(15, 4, 13)
    cov_diff = matrix(4, 14)
    grad_loss = torch.tensor(2.0, dtype=torch.float64)
    ours = _C._coral_loss_backward_aten(grad_loss, None, x, y, cov_diff)
    cpu = _C._coral_loss_backward_eigen(grad_loss, None, x, y, cov_diff)
    torch.testing.assert_close(ours[0], cpu[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours[1], cpu[1], rtol=1e-12, atol=1e-14)


def test_grad_loss_of_shape_one_and_non_contiguous_features():
    x = features(8, 20, 15).T  # (20, 8), strides (1, 20)
    y = features(11, 8, 16)
    assert not x.is_contiguous()
    _, cov_diff = torch.ops.mwm.coral_loss(x, y)
    assert_near(_C._coral_loss_aten(x, y)[1], cov_diff, torch.float64)
    grad_loss = torch.tensor([0.5], dtype=torch.float64)
    ours = _C._coral_loss_backward_aten(grad_loss, None, x, y, cov_diff)
    cpu = _C._coral_loss_backward_eigen(grad_loss, None, x, y, cov_diff)
    assert_near(ours[0], cpu[0], torch.float64)
    assert_near(ours[1], cpu[1], torch.float64)


def test_non_finite_features_propagate_instead_of_raising():
    """The device path never synchronizes, so it cannot raise on NaN like the CPU kernel."""
    x, y = features(10, 3, 17), features(9, 3, 18)
    y[3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"y\[3, 2\] = nan"):
        torch.ops.mwm.coral_loss(x, y)
    loss, cov_diff = _C._coral_loss_aten(x, y)
    assert torch.isnan(loss)
    assert torch.isnan(cov_diff[2]).all() and torch.isfinite(cov_diff[:2, :2]).all()


@pytest.mark.parametrize("x,y,error,pattern", [
    (torch.randn(5, 3), torch.randn(6, 4), ValueError,
     r"y has shape \(6, 4\), its dimension 1 must equal x.shape\[1\]"),
    (torch.randn(1, 3), torch.randn(6, 3), ValueError, r"x has shape \(1, 3\): an unbiased"),
    (torch.randn(5, 3), torch.randn(1, 3), ValueError, r"y has shape \(1, 3\): an unbiased"),
    (torch.randn(5, 0), torch.randn(4, 0), ValueError, r"needs at least 1 feature"),
    (torch.randn(5), torch.randn(5, 1), ValueError, r"x must have 2 dimensions"),
    (torch.randn(5, 3).half(), torch.randn(5, 3).half(), TypeError,
     r"x must be float32 or float64"),
    (torch.randn(5, 3), torch.randn(5, 3).double(), TypeError, r"y must be Float, got Double"),
])
def test_composition_applies_the_cpu_kernels_argument_checks(x, y, error, pattern):
    with pytest.raises(error, match=pattern):
        torch.ops.mwm.coral_loss(x, y)
    with pytest.raises(error, match=pattern):
        _C._coral_loss_aten(x, y)


BAD_BACKWARD = {
    "grad_loss": (torch.ones(2, dtype=torch.float64), None, torch.zeros(3, 3, dtype=torch.float64),
                  r"grad_loss has shape \(2\): must hold one value"),
    "cov_diff": (torch.ones((), dtype=torch.float64), None, torch.zeros(3, 4, dtype=torch.float64),
                 r"cov_diff has shape \(3, 4\), its dimension 1 must equal d = 3"),
    "grad_cov_diff": (torch.ones((), dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64),
                      torch.zeros(3, 3, dtype=torch.float64),
                      r"grad_cov_diff has shape \(4, 4\), its dimension 0 must equal d = 3"),
}


@pytest.mark.parametrize("bad", sorted(BAD_BACKWARD))
def test_backward_composition_applies_the_cpu_kernels_argument_checks(bad):
    x, y = features(6, 3, 19), features(7, 3, 20)
    grad_loss, grad_cov_diff, cov_diff, pattern = BAD_BACKWARD[bad]
    for call in (torch.ops.mwm._coral_loss_backward, _C._coral_loss_backward_aten):
        with pytest.raises(ValueError, match=pattern):
            call(grad_loss, grad_cov_diff, x, y, cov_diff)
