"""Every op on every device (the `device` fixture of conftest.py: cpu, and cuda marked `cuda`):
values against the CPU path or a plain-torch reference, autograd and gradcheck, opcheck,
torch.compile(fullgraph=True), every data error with the CPU's exact message (on CUDA raised by
mwm.check_device_errors(), the deferred point of the CUDA error contract), and the launcher
paths the CUDA kernels take: both block tiers (<= 512 and 513-2048 patches), the segmented
sorts over one and two chunks, the sample_index path, CUDA-graph capture of masks + loss, and
two streams at once. `pytest -m cuda` runs the GPU part alone."""

from __future__ import annotations

import math

import pytest
import torch

import mwm
from mwm.bench.references import generic_reference, unpatchify

ops = torch.ops.mwm

# (grid, batch): the 128x4 block tier, the 256x8 block tier at both ends, the segmented sorts
# with one chunk and with two (2^20 patches per chunk: 256 samples of 4096).
TIERS = [
    pytest.param((14, 14), 8, id="block128x4-196"),
    pytest.param((24, 22), 4, id="block256x8-528"),
    pytest.param((32, 64), 4, id="block256x8-2048"),
    pytest.param((64, 64), 3, id="segmented-4096"),
    pytest.param((64, 64), 300, id="segmented-two-chunks"),
]
POLICIES = ["random", "per_region", "fixed_total", "weighted", "block", "coarse", "loss_guided",
            "attention_guided"]


def mask_inputs(grid, batch, seed):
    g = torch.Generator().manual_seed(seed)
    n = math.prod(grid)
    regions = torch.randint(0, 3, (batch, n), generator=g, dtype=torch.int32)
    scores = torch.floor(torch.rand((batch, n), generator=g) * 8) / 8  # many ties
    sample_index = torch.randint(0, 1 << 40, (batch,), generator=g, dtype=torch.int64)
    return regions, scores, sample_index


def masks_on(device, grid, policy, regions, scores, sample_index):
    kwargs = {}
    if policy in ("per_region", "fixed_total"):
        kwargs = {"regions": regions.to(device), "region_ratios": [0.4, 0.8, 0.6]}
    if policy in ("weighted", "loss_guided", "attention_guided"):
        kwargs = {"scores": scores.to(device)}
    return mwm.generate_masks(list(grid), policy=policy, seed=123,
                              sample_index=sample_index.to(device), **kwargs)


MASK_FIELDS = ["mask", "num_masked", "ids_shuffle", "ids_restore", "ids_keep", "ids_masked",
               "noise"]


def fields(result):
    return {name: getattr(result, name).cpu() for name in MASK_FIELDS if hasattr(result, name)}


def device_error(device, run):
    """The ValueError message of `run` on `device`: at once on the CPU; on CUDA the op returns
    and mwm.check_device_errors() raises (the deferred point of the CUDA error contract)."""
    with pytest.raises(ValueError) as info:
        run()
        if device == "cuda":
            mwm.check_device_errors()
    return str(info.value)


# --- masks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("grid,batch", TIERS)
def test_masks_match_the_cpu_on_every_tier(device, grid, batch, policy):
    regions, scores, sample_index = mask_inputs(grid, batch, seed=batch)
    expected = fields(masks_on("cpu", grid, policy, regions, scores, sample_index))
    got = fields(masks_on(device, grid, policy, regions, scores, sample_index))
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    # Keyed by the sample index: the last samples alone give the same rows (sample_index path).
    tail = fields(masks_on(device, grid, policy, regions[1:], scores[1:], sample_index[1:]))
    for name in ("mask", "ids_shuffle"):
        assert torch.equal(tail[name], expected[name][1:]), name


def test_masks_offset_path_matches_sample_index(device):
    grid, batch = (14, 14), 5
    by_offset = mwm.generate_masks(list(grid), batch, seed=9, offset=40, device=device)
    by_index = mwm.generate_masks(list(grid), seed=9,
                                  sample_index=torch.arange(40, 45, device=device))
    assert torch.equal(by_offset.ids_shuffle.cpu(), by_index.ids_shuffle.cpu())


# --- patch maps --------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "max", "fraction", "nearest"])
@pytest.mark.parametrize("combine", ["max", "weighted_sum"])
def test_patch_scores_match_the_cpu(device, reduction, combine):
    g = torch.Generator().manual_seed(3)
    heat = torch.rand((3, 2, 50, 45), generator=g)
    weights = [0.25, 1.5] if combine == "weighted_sum" else None
    kwargs = {"reduction": reduction, "combine": combine, "prompt_weights": weights}
    expected = mwm.heatmap_to_patch_scores(heat, [14, 14], **kwargs)
    got = mwm.heatmap_to_patch_scores(heat.to(device), [14, 14], **kwargs)
    assert got.device.type == device
    assert torch.equal(got.cpu(), expected)
    # Per sample: the last two heatmaps alone give the same rows.
    assert torch.equal(mwm.heatmap_to_patch_scores(heat[1:].to(device), [14, 14], **kwargs).cpu(),
                       expected[1:])


@pytest.mark.parametrize("n", [196, 1500, 5000], ids=["block128x4", "block256x8", "segmented"])
def test_quantile_and_threshold_regions_match_the_cpu(device, n):
    g = torch.Generator().manual_seed(n)
    scores = torch.floor(torch.rand((3, n), generator=g) * 16) / 16
    expected = mwm.regions_from_quantiles(scores, [0.5, 0.2])
    got = mwm.regions_from_quantiles(scores.to(device), [0.5, 0.2])
    assert torch.equal(got.cpu(), expected)
    assert torch.equal(mwm.regions_from_quantiles(scores[2:].to(device), [0.5, 0.2]).cpu(),
                       expected[2:])
    # Thresholds: the number of thresholds each score strictly exceeds.
    thresholds = [0.25, 0.5, 0.9]
    reference = (scores[..., None] > torch.tensor(thresholds)).sum(-1).to(torch.int32)
    got = mwm.regions_from_thresholds(scores.to(device), thresholds)
    assert torch.equal(got.cpu(), reference)


@pytest.mark.parametrize("grid,factor", [((4, 6), (3, 2)), ((2, 3, 4), (2, 2, 3))])
def test_upsample_matches_repeat_interleave(device, grid, factor):
    g = torch.Generator().manual_seed(1)
    values = torch.rand((2, math.prod(grid)), generator=g) < 0.5
    reference = values.reshape(2, 1, *grid)
    for axis, f in enumerate(factor):
        reference = reference.repeat_interleave(f, dim=2 + axis)
    got = mwm.upsample_patch_map(values.to(device), list(grid), list(factor))
    assert torch.equal(got.cpu().reshape(reference.shape), reference)


# --- tokens ------------------------------------------------------------------------------------

TOKEN_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def token_case(device, dtype, channels, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, n, k = 4, 12, 5
    x = torch.randn((b, n, channels), generator=g).to(dtype).to(device)
    ids_shuffle = torch.argsort(torch.rand((b, n), generator=g), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :k].clone()
    ids_keep[1, 0] = ids_keep[1, 1]  # a duplicate: its gradient is the sum of both slots
    ids_keep[2, 4] = -1  # padding
    token = torch.randn((channels,), generator=g).to(dtype).to(device)
    return x, ids_keep.to(device), ids_restore.to(device), token


# C = 7: one element per lane; C = 64: 16-byte vectors (the rows are dense and aligned).
@pytest.mark.parametrize("channels", [7, 64])
@pytest.mark.parametrize("dtype", TOKEN_DTYPES)
def test_tokens_match_torch_gather(device, dtype, channels):
    x, ids_keep, ids_restore, token = token_case(device, dtype, channels)
    x_ref = x.detach().clone().requires_grad_(True)
    padded = torch.cat([x_ref, torch.zeros_like(x_ref[:, :1])], dim=1)  # row N: zeros for -1
    safe = torch.where(ids_keep < 0, x.shape[1], ids_keep)
    vis_ref = torch.gather(padded, 1, safe[..., None].expand(-1, -1, x.shape[2]))
    x_mwm = x.detach().clone().requires_grad_(True)
    vis = mwm.gather_tokens(x_mwm, ids_keep)
    assert torch.equal(vis, vis_ref)
    upstream = torch.randn(vis.shape, generator=torch.Generator().manual_seed(5)).to(dtype)
    vis_ref.backward(upstream.to(device))
    vis.backward(upstream.to(device))
    torch.testing.assert_close(x_mwm.grad, x_ref.grad, rtol=0, atol=0)

    visible = torch.tensor([5, 3, 0, 5], device=device)
    full = mwm.restore_tokens(vis.detach(), ids_restore, token, visible)
    table = torch.cat([vis.detach(), token.expand(vis.shape[0], 1, -1)], dim=1)
    slot = torch.where(ids_restore < visible[:, None], ids_restore, vis.shape[1])
    assert torch.equal(full, torch.gather(table, 1, slot[..., None].expand(-1, -1, x.shape[2])))


@pytest.mark.parametrize("with_counts", [False, True])
def test_tokens_gradcheck(device, with_counts):
    x, ids_keep, ids_restore, token = token_case(device, torch.float64, 3, seed=2)
    visible = torch.tensor([5, 2, 4, 0], device=device) if with_counts else None

    def chain(x, token):
        return mwm.restore_tokens(mwm.gather_tokens(x, ids_keep), ids_restore, token, visible)

    assert torch.autograd.gradcheck(chain, (x.requires_grad_(True), token.requires_grad_(True)))


def test_tokens_opcheck(device):
    x, ids_keep, ids_restore, token = token_case(device, torch.float32, 8, seed=3)
    torch.library.opcheck(ops.gather_tokens.default, (x.requires_grad_(True), ids_keep))
    vis = torch.randn((4, 5, 8), device=device, requires_grad=True)
    visible = torch.tensor([5, 1, 3, 2], device=device)
    torch.library.opcheck(ops.restore_tokens.default,
                          (vis, ids_restore, token.requires_grad_(True), visible))


@pytest.mark.slow
def test_tokens_compile_fullgraph(device):
    x, ids_keep, ids_restore, token = token_case(device, torch.float32, 8, seed=4)

    def decoder_input(x, token):
        return mwm.restore_tokens(mwm.gather_tokens(x, ids_keep) * 2.0, ids_restore, token)

    compiled = torch.compile(decoder_input, fullgraph=True)
    assert torch.equal(compiled(x, token), decoder_input(x, token))


# --- loss --------------------------------------------------------------------------------------

def loss_case(device, dims, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape, p = ((2, 3, 32, 48), (16, 16)) if dims == 2 else ((2, 1, 16, 16, 16), (8, 8, 8))
    target = torch.randn(shape, generator=g, dtype=torch.float64)
    n = math.prod(s // q for s, q in zip(shape[2:], p))
    pred = torch.randn((shape[0], n, shape[1] * math.prod(p)), generator=g, dtype=torch.float64)
    mask = torch.rand((shape[0], n), generator=g) < 0.6
    mask[:, 0] = True
    weight = torch.rand((shape[0], n), generator=g, dtype=torch.float64) + 0.5
    return pred, target, mask, weight, p


TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3,
             torch.bfloat16: 2e-2}


@pytest.mark.parametrize("reduction", ["mean", "mean_eps", "sum", "none"])
@pytest.mark.parametrize("error", ["mse", "l1"])
@pytest.mark.parametrize("layout", ["patch", "image"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("dims", [2, 3])
def test_loss_matches_the_formula(device, dims, dtype, layout, error, reduction):
    pred64, target64, mask, weight64, p = loss_case(device, dims, dtype, seed=dims)
    # Half predictions against a float32 target (AMP's case), otherwise one dtype.
    target_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    pred_vectors = pred64.to(dtype)
    target = target64.to(target_dtype)
    weight = weight64.to(target_dtype)
    expected = generic_reference(pred_vectors.double(), target.double(), mask, weight.double(), p,
                                 True, error, reduction)
    # The image layout: the same prediction as an image (the inverse of patchify).
    pred_in = unpatchify(pred_vectors, p, target.shape) if layout == "image" else pred_vectors
    pred_dev = pred_in.to(device).requires_grad_(True)
    got = mwm.masked_recon_loss(pred_dev, target.to(device), mask.to(device), list(p),
                                weight=weight.to(device), norm_target=True, error=error,
                                reduction=reduction)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(got.double().cpu(), expected, rtol=tol, atol=tol)
    if device == "cuda":  # the same op on the CPU, for the gradient
        cpu_pred = pred_in.clone().requires_grad_(True)
        cpu_loss = mwm.masked_recon_loss(cpu_pred, target, mask, list(p), weight=weight,
                                         norm_target=True, error=error, reduction=reduction)
        upstream = torch.ones_like(cpu_loss)
        cpu_loss.backward(upstream)
        got.backward(upstream.to(device))
        torch.testing.assert_close(pred_dev.grad.cpu(), cpu_pred.grad, rtol=tol, atol=tol)
    else:
        got.backward(torch.ones_like(got))
        assert torch.isfinite(pred_dev.grad).all()


@pytest.mark.slow
def test_loss_gradcheck_opcheck_and_compile(device):
    pred, target, mask, weight, p = loss_case(device, 2, torch.float64, seed=5)
    pred = pred.to(device).requires_grad_(True)
    args = (target.to(device), mask.to(device), list(p))

    def loss(pred):
        return mwm.masked_recon_loss(pred, *args, weight=weight.to(device), norm_target=True)

    assert torch.autograd.gradcheck(loss, (pred,))
    torch.library.opcheck(ops.masked_recon_loss.default,
                          (pred, args[0], args[1], weight.to(device), list(p), "patch", True,
                           "mse", "mean", "error"))
    compiled = torch.compile(loss, fullgraph=True)
    torch.testing.assert_close(compiled(pred), loss(pred), rtol=0, atol=0)


# --- every data error, with the CPU's message ----------------------------------------------

def _bad_ids_keep(device):
    x = torch.randn((2, 6, 4), device=device)
    ids = torch.tensor([[0, 1, 2], [5, 1 << 40, -3]], device=device)
    return lambda: mwm.gather_tokens(x, ids)


def _bad_ids_restore(device):
    x_vis = torch.randn((2, 3, 4), device=device)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 1, 2, -(1 << 50), 4, 6]], device=device)
    return lambda: mwm.restore_tokens(x_vis, ids, torch.zeros(4, device=device))


def _bad_num_visible(device):
    x_vis = torch.randn((2, 3, 4), device=device)
    ids = torch.arange(6, device=device).repeat(2, 1)
    visible = torch.tensor([2, 9], device=device)
    return lambda: mwm.restore_tokens(x_vis, ids, torch.zeros(4, device=device), visible)


def _bad_gather_backward(device):
    grad = torch.randn((2, 3, 4), device=device)
    ids = torch.tensor([[0, 7, 2], [5, 1, 1]], device=device)
    return lambda: ops._gather_tokens_backward(grad, ids, 6)


def _nan_heatmaps(device):
    heat = torch.rand((2, 20, 20))
    heat[1, 3, 4] = float("nan")
    heat[1, 9, 9] = float("inf")
    return lambda: mwm.heatmap_to_patch_scores(heat.to(device), [4, 4])


def _nan_scores_thresholds(device):
    scores = torch.rand((2, 196))
    scores[1, 5] = float("-inf")
    return lambda: mwm.regions_from_thresholds(scores.to(device), [0.5])


def _nan_scores_quantiles(n):
    def case(device):
        scores = torch.rand((2, n))
        scores[1, n - 3] = float("nan")
        scores[1, 7] = float("nan")
        return lambda: mwm.regions_from_quantiles(scores.to(device), [0.5])
    return case


def _bad_regions(grid):
    def case(device):
        n = math.prod(grid)
        regions = torch.ones((2, n), dtype=torch.int32)
        regions[1, 5] = 7
        regions[1, 2] = -1
        return lambda: mwm.generate_masks(list(grid), regions=regions.to(device),
                                          policy="per_region", region_ratios=[0.5, 0.75])
    return case


def _nan_mask_scores(grid):
    def case(device):
        scores = torch.rand((2, math.prod(grid)))
        scores[0, 11] = float("nan")
        return lambda: mwm.generate_masks(list(grid), scores=scores.to(device),
                                          policy="weighted")
    return case


ERRORS = [
    pytest.param(_bad_ids_keep, "ids_keep = 1099511627776", id="ids_keep"),
    pytest.param(_bad_ids_restore, "ids_restore = -1125899906842624", id="ids_restore"),
    pytest.param(_bad_num_visible, "num_visible = 9", id="num_visible"),
    pytest.param(_bad_gather_backward, "ids_keep = 7", id="gather_backward-ids"),
    pytest.param(_nan_heatmaps, "heatmaps[", id="heatmaps-nan"),
    pytest.param(_nan_scores_thresholds, "scores[201] = -inf", id="thresholds-scores"),
    pytest.param(_nan_scores_quantiles(196), "scores[203] = nan", id="quantiles-128x4"),
    pytest.param(_nan_scores_quantiles(1500), "scores[1507] = nan", id="quantiles-256x8"),
    pytest.param(_nan_scores_quantiles(5000), "scores[5007] = nan", id="quantiles-segmented"),
    pytest.param(_bad_regions((14, 14)), "regions = ", id="regions-128x4"),
    pytest.param(_bad_regions((32, 32)), "regions = ", id="regions-256x8"),
    pytest.param(_bad_regions((64, 64)), "regions = ", id="regions-segmented"),
    pytest.param(_nan_mask_scores((14, 14)), "scores[11] = nan", id="mask-scores-128x4"),
    pytest.param(_nan_mask_scores((64, 64)), "scores[11] = nan", id="mask-scores-segmented"),
]


@pytest.mark.parametrize("make_case,words", ERRORS)
def test_every_data_error_raises_the_cpu_message(device, make_case, words):
    cpu_message = device_error("cpu", make_case("cpu"))
    assert words in cpu_message
    assert device_error(device, make_case(device)) == cpu_message
    if device == "cuda":  # the context survives: the next op works and raises nothing
        x = torch.randn((2, 6, 4), device=device)
        ids = torch.tensor([[0, 1, 2], [5, 4, 3]], device=device)
        expected = x.cpu()[torch.arange(2)[:, None], ids.cpu()]
        assert torch.equal(mwm.gather_tokens(x, ids).cpu(), expected)
        mwm.check_device_errors()


def test_sync_errors_raise_in_the_failing_call(device):
    run = _bad_ids_keep(device)
    mwm.set_sync_errors(True)
    try:
        with pytest.raises(ValueError, match="ids_keep = 1099511627776"):
            run()  # no check_device_errors: the call itself waits and raises
    finally:
        mwm.set_sync_errors(False)


# --- CUDA graphs and streams ---------------------------------------------------------------

def train_step(regions, sample_index, pred, target):
    """Masks of a per-region policy, then the loss over the masked patches."""
    masks = mwm.generate_masks([14, 14], policy="per_region", regions=regions,
                               region_ratios=[0.5, 0.9], sample_index=sample_index, seed=3)
    loss = mwm.masked_recon_loss(pred, target, masks.mask, [16, 16], norm_target=True)
    return masks.mask, loss


def step_inputs(device, seed):
    g = torch.Generator().manual_seed(seed)
    regions = torch.randint(0, 2, (4, 196), generator=g, dtype=torch.int32)
    sample_index = torch.randint(0, 1 << 30, (4,), generator=g)
    pred = torch.randn((4, 196, 768), generator=g)
    target = torch.randn((4, 3, 224, 224), generator=g)
    return [t.to(device) for t in (regions, sample_index, pred, target)]


def test_graph_capture_of_masks_and_loss(device):
    static = step_inputs(device, 0)
    if device == "cuda":
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up, outside the capture (allocates the error slot)
                train_step(*static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            mask_out, loss_out = train_step(*static)

        def replay():
            graph.replay()
            return mask_out, loss_out
    else:
        def replay():
            return train_step(*static)
    for seed in (1, 2):
        fresh = step_inputs(device, seed)
        for dst, src in zip(static, fresh):
            dst.copy_(src)
        mask_got, loss_got = replay()
        cpu_inputs = [t.cpu() for t in fresh]
        mask_expected, loss_expected = train_step(*cpu_inputs)
        assert torch.equal(mask_got.cpu(), mask_expected)
        torch.testing.assert_close(loss_got.cpu(), loss_expected, rtol=2e-5, atol=0)
    if device == "cuda":
        mwm.check_device_errors()


def test_two_streams_at_once(device):
    inputs = [step_inputs(device, seed) for seed in (7, 8)]
    if device == "cuda":
        streams = [torch.cuda.Stream() for _ in inputs]
        outputs = []
        for stream, args in zip(streams, inputs):
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                outputs.append(train_step(*args))
        for stream in streams:
            torch.cuda.current_stream().wait_stream(stream)
    else:
        outputs = [train_step(*args) for args in inputs]
    for (mask_got, loss_got), args in zip(outputs, inputs):
        mask_expected, loss_expected = train_step(*[t.cpu() for t in args])
        assert torch.equal(mask_got.cpu(), mask_expected)
        torch.testing.assert_close(loss_got.cpu(), loss_expected, rtol=2e-5, atol=0)


# Last in the file, so that a regression to a trapping loss kernel cannot hide the tests above.
def test_loss_target_error_raises_the_cpu_message(device):
    pred, target, mask, weight, p = loss_case(device, 2, torch.float32, seed=9)
    target = target.float()
    target[1, 0, 0, 0] = float("nan")  # patch 0 of sample 1, which mask covers

    def run_on(dev):
        return lambda: mwm.masked_recon_loss(pred.float().to(dev), target.to(dev),
                                             mask.to(dev), list(p))

    cpu_message = device_error("cpu", run_on("cpu"))
    assert "target has a non-finite value" in cpu_message and "sample 1, patch 0" in cpu_message
    assert device_error(device, run_on(device)) == cpu_message


def test_loss_default_nonfinite_raises_on_cpu_and_propagates_on_cuda(device):
    """A NaN prediction under the default: the CPU raises at once; CUDA returns the NaN loss and
    gradient (AMP's GradScaler must see them to skip the step) and records no error, while an
    explicit nonfinite="error" records it (docs/design.md, "The loss under AMP")."""
    target = torch.randn((2, 3, 8, 8))
    pred = torch.randn((2, 4, 48))
    pred[1, 2, 5] = float("nan")
    mask = torch.ones((2, 4), dtype=torch.bool)
    if device == "cpu":
        with pytest.raises(ValueError, match=r"pred has a non-finite value.*sample 1, patch 2"):
            mwm.masked_recon_loss(pred, target, mask, 4)
        return
    pred = pred.to(device).requires_grad_()
    loss = mwm.masked_recon_loss(pred, target.to(device), mask.to(device), 4)
    loss.backward()
    mwm.check_device_errors()  # nothing was recorded
    assert torch.isnan(loss.detach().cpu()) and torch.isnan(pred.grad.cpu()).any()
    message = device_error(device, lambda: mwm.masked_recon_loss(
        pred.detach(), target.to(device), mask.to(device), 4, nonfinite="error"))
    assert "pred has a non-finite value" in message and "sample 1, patch 2" in message
