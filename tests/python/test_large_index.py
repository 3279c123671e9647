"""Tensors past 2^31 elements: the CPU loss, the token ops and heatmap pooling (the first step of
text-guided masks) must index with 64-bit integers.

The inputs are tensors of just over 2^31 elements (4.3 to 8.7 GB each) made with torch.empty:
only the pages the test writes, and the op reads, become resident, because the loss never reads
an unmasked patch, gather_tokens only reads the rows it gathers and nearest pooling only reads
one pixel per patch (nan_policy="zero" skips the scan for NaN). The outputs that the ops
write in full (the loss gradient, gather_tokens' backward, restore_tokens) are 4.3 GB each, one
test at a time, so the peak stays near 4.5 GB. Every checked value sits at an element offset above
2^31 (and one below), and is compared with a float64 reference computed on slices: a 32-bit
offset would wrap there and read or write another element (or crash)."""

from __future__ import annotations

import gc

import pytest
import torch

import mwm
from mwm.bench.references import generic_reference

# Near 5 GB resident at the peak: the large_memory tier (CONTRIBUTING.md, "Test tiers").
pytestmark = pytest.mark.large_memory

LIMIT = 2 ** 31

# ViT-B/16 at 224 px: N = 196 patches of P = 768 values. B * N * P = 2,152,550,400 > 2^31, and
# sample B - 1 starts at element 2,152,399,872: its every patch lies past 2^31.
B, C, SIZE, PATCH = 14300, 3, 224, 16
GRID = SIZE // PATCH
N, P = GRID * GRID, C * PATCH * PATCH

# (sample, patch) of the masked patches: below and above 2^31 elements, in both the prediction
# (b * N * P + n * P) and the target (b * C * H * W + ...), which have the same element count.
PICKS = [(0, 0), (7000, 101), (14265, 195), (B - 1, 0), (B - 1, 100), (B - 1, N - 1)]


def _patch_rows(n):
    gh, gw = divmod(n, GRID)
    return slice(gh * PATCH, (gh + 1) * PATCH), slice(gw * PATCH, (gw + 1) * PATCH)


def test_loss_forward_and_backward_past_2_31_elements():
    g = torch.Generator().manual_seed(0)
    pred = torch.empty((B, N, P), dtype=torch.float16)
    target = torch.empty((B, C, SIZE, SIZE), dtype=torch.float32)  # 8.6 GB, nearly all unread
    image_pred = torch.empty((B, C, SIZE, SIZE), dtype=torch.float16)
    mask = torch.zeros((B, N), dtype=torch.bool)
    # The picked patches start below and above 2^31 elements in both tensors the op reads.
    for tensor, offsets in ((pred, [pred[b, n].storage_offset() for b, n in PICKS]),
                            (target, [target[b, :, _patch_rows(n)[0], _patch_rows(n)[1]]
                                      .storage_offset() for b, n in PICKS])):
        assert tensor.numel() > LIMIT and min(offsets) < LIMIT < max(offsets)
    for b, n in PICKS:
        rows, cols = _patch_rows(n)
        mask[b, n] = True
        pred[b, n] = torch.randn(P, generator=g).half()
        target[b, :, rows, cols] = torch.randn((C, PATCH, PATCH), generator=g) + b % 5
        # The same prediction in the image layout (patch vector order (ph, pw, c)).
        image_pred[b, :, rows, cols] = pred[b, n].reshape(PATCH, PATCH, C).permute(2, 0, 1)

    # The float64 reference on slices: one single-patch image per pick.
    ref_pred = torch.stack([pred[b, n].double() for b, n in PICKS]).unsqueeze(1)
    ref_target = torch.stack([target[b, :, _patch_rows(n)[0], _patch_rows(n)[1]].double()
                              for b, n in PICKS])
    ones = torch.ones((len(PICKS), 1), dtype=torch.bool)
    ref_pred.requires_grad_(True)
    expected = generic_reference(ref_pred, ref_target, ones, None, PATCH, True, "mse", "none")
    expected.sum().backward()  # d(mean)/dp = this / len(PICKS)

    per_patch = mwm.masked_recon_loss(pred, target, mask, PATCH, norm_target=True,
                                      reduction="none")
    assert per_patch.shape == (B, N) and per_patch.dtype == torch.float32
    got = torch.stack([per_patch[b, n].double() for b, n in PICKS])
    torch.testing.assert_close(got, expected.detach()[:, 0], rtol=1e-5, atol=0)
    assert torch.count_nonzero(per_patch) == len(PICKS)

    image = mwm.masked_recon_loss(image_pred, target, mask, PATCH, norm_target=True,
                                  reduction="none")
    assert torch.equal(image, per_patch)  # the image layout reads the same values
    del image_pred, image
    gc.collect()

    x = pred.requires_grad_(True)
    loss = mwm.masked_recon_loss(x, target, mask, PATCH, norm_target=True)
    torch.testing.assert_close(loss.double(), expected.detach().mean(), rtol=1e-5, atol=0)
    loss.backward()
    grad = x.grad
    assert grad.shape == (B, N, P) and grad.dtype == torch.float16
    for k, (b, n) in enumerate(PICKS):
        torch.testing.assert_close(grad[b, n].double(), ref_pred.grad[k, 0] / len(PICKS),
                                   rtol=2.0 ** -10, atol=1e-7)
    # Unmasked patches next to the picks, and the very last elements, get exact zeros.
    for b, n in [(B - 1, N - 2), (B - 1, 1), (14265, 194), (7000, 100), (B // 2, 0)]:
        assert torch.count_nonzero(grad[b, n]) == 0


def test_gather_tokens_and_its_backward_past_2_31_elements():
    # x (2, 2^20, 1040): sample 1's tokens start at element 1,090,519,040 and end past 2^31.
    b_, n_, c_ = 2, 2 ** 20, 1040
    assert b_ * n_ * c_ > LIMIT and n_ * c_ + (n_ - 1) * c_ > LIMIT
    x = torch.empty((b_, n_, c_), dtype=torch.float16)
    ids_keep = torch.tensor([[3, n_ - 1, -1, 70000], [n_ - 1, 0, n_ - 5, 1_000_000]])
    g = torch.Generator().manual_seed(1)
    for b in range(b_):
        for i in ids_keep[b].tolist():
            if i >= 0:
                x[b, i] = torch.randn(c_, generator=g).half()
    out = mwm.gather_tokens(x, ids_keep)
    assert out.shape == (b_, 4, c_)
    for b in range(b_):
        for k, i in enumerate(ids_keep[b].tolist()):
            expected = x[b, i] if i >= 0 else torch.zeros(c_, dtype=torch.float16)
            assert torch.equal(out[b, k], expected), (b, k, i)

    grad_out = torch.randn((b_, 4, c_), generator=g).half()
    grad_x = torch.ops.mwm._gather_tokens_backward(grad_out, ids_keep, n_)
    assert grad_x.shape == (b_, n_, c_)
    for b in range(b_):
        for k, i in enumerate(ids_keep[b].tolist()):
            if i >= 0:
                assert torch.equal(grad_x[b, i], grad_out[b, k]), (b, k, i)
    for b, i in [(1, n_ - 2), (1, n_ - 4), (1, 1), (0, n_ - 2), (1, n_ // 2)]:
        assert torch.count_nonzero(grad_x[b, i]) == 0


def test_restore_tokens_past_2_31_elements():
    b_, n_, c_, k_ = 2, 2 ** 20, 1040, 3
    g = torch.Generator().manual_seed(2)
    x_vis = torch.randn((b_, k_, c_), generator=g).half()
    mask_token = torch.randn(c_, generator=g).half()
    # Visible slots 0..2 land on the last tokens of sample 1 (past 2^31) and the first and
    # middle ones of sample 0; every other token takes the mask token.
    ids_restore = torch.empty((b_, n_), dtype=torch.int64)
    ids_restore[1] = (torch.arange(n_) + k_) % n_          # token n_-3+k gets slot k
    ids_restore[0] = (torch.arange(n_) - n_ // 2) % n_      # token n_/2+k gets slot k
    out = mwm.restore_tokens(x_vis, ids_restore, mask_token)
    assert out.shape == (b_, n_, c_)
    for k in range(k_):
        assert torch.equal(out[1, n_ - k_ + k], x_vis[1, k])
        assert torch.equal(out[0, n_ // 2 + k], x_vis[0, k])
    for b, n in [(1, n_ - k_ - 1), (1, 0), (0, n_ - 1), (1, n_ // 2), (0, 0)]:
        assert torch.equal(out[b, n], mask_token), (b, n)


def test_nearest_heatmap_pooling_past_2_31_elements():
    # One 46800 x 46800 float32 heatmap (2,190,240,000 pixels, 8.8 GB, all but 3136 unread) on
    # a 56 x 56 grid: the pixel index of the last patch, (45964 * 46800 + 45964), is past 2^31
    # in the pooling's own arithmetic, not only in a pointer sum.
    side, cells = 46800, 56
    heat = torch.empty((1, side, side), dtype=torch.float32)
    # PyTorch's own nearest index rule, on the index line itself.
    line = torch.arange(side, dtype=torch.float32).view(1, 1, side)
    source = torch.nn.functional.interpolate(line, size=cells, mode="nearest").long().view(-1)
    assert source[-1] * side + source[-1] > LIMIT
    values = torch.randn((cells, cells), generator=torch.Generator().manual_seed(3))
    rows, cols = source.view(-1, 1).expand(cells, cells), source.view(1, -1).expand(cells, cells)
    heat[0][rows, cols] = values
    scores = mwm.heatmap_to_patch_scores(heat, (cells, cells), reduction="nearest",
                                         nan_policy="zero")
    assert torch.equal(scores, values.view(1, -1))
