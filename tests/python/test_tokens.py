"""gather_tokens / restore_tokens: parity with MAE's torch.gather + cat code, the -1 padding of
variable-total masks, opcheck, gradcheck, torch.compile and bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

import mwm
from mwm.bench import references as ref

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def random_masking_ids(batch, n, keep, seed):
    """MAE's index bookkeeping on seeded noise: the first `keep` kept, and the inverse."""
    noise = torch.rand((batch, n), generator=torch.Generator().manual_seed(seed))
    _, ids_restore, ids_keep = ref.mae_masking_from_noise(noise, keep)
    return ids_keep, ids_restore


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_restore_match_mae(dtype):
    b, n, c, keep = 3, 10, 5, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn((b, n, c), generator=g).to(dtype)
    ids_keep, ids_restore = random_masking_ids(b, n, keep, 2)
    token = torch.randn((1, 1, c), generator=g).to(dtype)

    x_ref = x.clone().requires_grad_(True)
    token_ref = token.clone().requires_grad_(True)
    vis_ref = ref.mae_gather_tokens(x_ref, ids_keep)
    full_ref = ref.mae_restore_tokens(vis_ref, ids_restore, token_ref)

    x_mwm = x.clone().requires_grad_(True)
    token_mwm = token.clone().requires_grad_(True)
    vis = mwm.gather_tokens(x_mwm, ids_keep)
    full = mwm.restore_tokens(vis, ids_restore, token_mwm)
    assert torch.equal(vis, vis_ref) and torch.equal(full, full_ref)

    upstream = torch.randn(full.shape, generator=g).to(dtype)
    (full_ref * upstream).sum().backward()
    (full * upstream).sum().backward()
    assert torch.equal(x_mwm.grad, x_ref.grad)
    torch.testing.assert_close(token_mwm.grad, token_ref.grad,
                               rtol=0 if dtype == torch.float64 else 1e-2, atol=1e-3)
    assert token_mwm.grad.shape == token.shape


def test_restore_of_gather_puts_every_visible_token_back():
    b, n, c = 4, 49, 8
    x = torch.randn((b, n, c), dtype=torch.float64)
    masks = mwm.generate_masks((7, 7), b, policy="random", ratio=0.6, seed=3)
    token = torch.full((c,), -9.0, dtype=torch.float64)
    full = mwm.restore_tokens(mwm.gather_tokens(x, masks.ids_keep), masks.ids_restore, token)
    visible = ~masks.mask
    assert torch.equal(full[visible], x[visible])
    assert torch.all(full[masks.mask] == -9.0)


def test_padded_ids_of_variable_total_masks():
    """per_region masks pad ids_keep with -1: those slots gather zeros (and get no gradient), and
    restore_tokens with num_visible never reads them."""
    b, grid, c = 4, (6, 6), 3
    g = torch.Generator().manual_seed(5)
    regions = (torch.rand((b, 36), generator=g) < 0.4).to(torch.int32)
    masks = mwm.generate_masks(grid, policy="per_region", region_ratios=[0.4, 0.8],
                               regions=regions, seed=7)
    assert (masks.ids_keep == -1).any(), "the test needs padded rows"
    x = torch.randn((b, 36, c), generator=g, dtype=torch.float64, requires_grad=True)
    vis = mwm.gather_tokens(x, masks.ids_keep)
    padded = masks.ids_keep == -1
    assert torch.all(vis[padded] == 0)
    assert torch.equal(vis[~padded], x.detach()[torch.arange(b)[:, None].expand_as(padded)[~padded],
                                                masks.ids_keep[~padded]])
    # Padded slots get garbage downstream; restore must not read them.
    vis = vis + padded[..., None] * 1000.0
    token = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    full = mwm.restore_tokens(vis, masks.ids_restore, token, masks.num_visible)
    visible = ~masks.mask
    assert torch.equal(full[visible], x.detach()[visible])
    assert torch.all(full[masks.mask] == 0)
    full.sum().backward()
    assert torch.equal(x.grad, visible[..., None].expand_as(x).double())
    assert torch.equal(token.grad, torch.full((c,), float(masks.mask.sum())).double())


def token_samples():
    for dtype, contiguous in itertools.product(DTYPES, [True, False]):
        g = torch.Generator().manual_seed(11)
        b, n, c, keep = 2, 7, 4, 3
        x = torch.randn((b, n, c), generator=g).to(dtype)
        vis = torch.randn((b, keep, c), generator=g).to(dtype)
        token = torch.randn((c,), generator=g).to(dtype)
        ids_keep, ids_restore = random_masking_ids(b, n, keep, 12)
        ids_keep[1, 2] = -1
        counts = torch.tensor([keep, keep - 1])
        if not contiguous:
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
            vis = vis.transpose(0, 1).contiguous().transpose(0, 1)
            ids_keep = ids_keep.t().contiguous().t()
            ids_restore = ids_restore.t().contiguous().t()
            token = torch.randn((2 * c,), generator=g).to(dtype)[::2]
        yield dtype, contiguous, x, vis, token, ids_keep, ids_restore, counts


SAMPLES = list(token_samples())
IDS = [f"{str(s[0])[6:]}-{'contig' if s[1] else 'strided'}" for s in SAMPLES]


# The fast tier opchecks float32 contiguous and bfloat16 strided; the slow tier the other six.
FAST_OPCHECK = {"float32-contig", "bfloat16-strided"}


@pytest.mark.parametrize("sample", [
    pytest.param(s, id=name, marks=() if name in FAST_OPCHECK else (pytest.mark.slow,))
    for s, name in zip(SAMPLES, IDS)])
def test_opcheck(sample):
    _, _, x, vis, token, ids_keep, ids_restore, counts = sample
    ops = torch.ops.mwm
    torch.library.opcheck(ops.gather_tokens.default, (x.clone().requires_grad_(True), ids_keep))
    for visible in (None, counts):
        torch.library.opcheck(ops.restore_tokens.default,
                              (vis.clone().requires_grad_(True), ids_restore,
                               token.clone().requires_grad_(True), visible))
        torch.library.opcheck(ops._restore_tokens_backward.default,
                              (torch.ones_like(x), ids_restore, visible, vis.shape[1]))
    torch.library.opcheck(ops._gather_tokens_backward.default,
                          (torch.ones_like(vis), ids_keep, x.shape[1]))


@pytest.mark.parametrize("with_counts", [False, True])
def test_gradcheck(with_counts):
    g = torch.Generator().manual_seed(13)
    x = torch.randn((2, 6, 3), generator=g, dtype=torch.float64, requires_grad=True)
    token = torch.randn((3,), generator=g, dtype=torch.float64, requires_grad=True)
    ids_keep, ids_restore = random_masking_ids(2, 6, 4, 14)
    ids_keep = ids_keep.clone()
    ids_keep[0, 3] = -1
    counts = torch.tensor([3, 4]) if with_counts else None

    def chain(x_, token_):
        return mwm.restore_tokens(mwm.gather_tokens(x_, ids_keep), ids_restore, token_, counts)

    assert torch.autograd.gradcheck(chain, (x, token))


@pytest.mark.slow
def test_torch_compile_fullgraph():
    g = torch.Generator().manual_seed(15)
    x = torch.randn((2, 9, 4), generator=g)
    token = torch.randn((1, 1, 4), generator=g)
    ids_keep, ids_restore = random_masking_ids(2, 9, 3, 16)

    def decoder_input(x_, token_):
        return mwm.restore_tokens(mwm.gather_tokens(x_, ids_keep) * 2.0, ids_restore, token_)

    compiled = torch.compile(decoder_input, fullgraph=True)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    ts = [token.clone().requires_grad_(True) for _ in range(2)]
    expected = decoder_input(xs[0], ts[0])
    got = compiled(xs[1], ts[1])
    torch.testing.assert_close(got, expected)
    expected.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad)
    torch.testing.assert_close(ts[1].grad, ts[0].grad)


def test_bad_input_raises_clear_errors():
    x = torch.randn(2, 5, 3)
    ids = torch.tensor([[0, 4], [1, -1]])
    with pytest.raises(ValueError, match=r"ids_keep = 5: must lie in \[-1, 5\) \(sample 1, slot 0"):
        mwm.gather_tokens(x, torch.tensor([[0, 4], [5, 1]]))
    with pytest.raises(ValueError, match=r"ids_keep = -2"):
        mwm.gather_tokens(x, torch.tensor([[0, -2], [1, 1]]))
    with pytest.raises(TypeError, match=r"ids_keep must be Long, got Int"):
        mwm.gather_tokens(x, ids.int())
    with pytest.raises(ValueError,
                       match=r"ids_keep has shape \(3, 2\): expected \(B, K\) with B = 2"):
        mwm.gather_tokens(x, torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x has shape \(2, 5\): expected \(B, N, C\)"):
        mwm.gather_tokens(x[..., 0], ids)
    with pytest.raises(TypeError, match=r"x must be float32, float64, float16 or bfloat16"):
        mwm.gather_tokens(x.long(), ids)

    vis = torch.randn(2, 2, 3)
    restore = torch.tensor([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    token = torch.zeros(3)
    with pytest.raises(ValueError,
                       match=r"ids_restore = 5: must lie in \[0, 5\) \(sample 0, token 4\)"):
        mwm.restore_tokens(vis, torch.tensor([[0, 1, 2, 3, 5], [0, 1, 2, 3, 4]]), token)
    with pytest.raises(ValueError, match=r"mask_token has shape \(4\): expected \(C,\) = \(3,\)"):
        mwm.restore_tokens(vis, restore, torch.zeros(4))
    with pytest.raises(ValueError, match=r"mask_token has shape \(2, 3\)"):
        mwm.restore_tokens(vis, restore, torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"mask_token is Double but x_vis is Float"):
        mwm.restore_tokens(vis, restore, token.double())
    with pytest.raises(ValueError, match=r"num_visible = 3: must lie in \[0, 2\] \(sample 1"):
        mwm.restore_tokens(vis, restore, token, torch.tensor([2, 3]))
    with pytest.raises(ValueError, match=r"num_visible has shape \(3\)"):
        mwm.restore_tokens(vis, restore, token, torch.tensor([2, 2, 2]))
    with pytest.raises(ValueError, match=r"x_vis has 6 tokens but ids_restore has 5"):
        mwm.restore_tokens(torch.zeros(2, 6, 3), restore, token)
