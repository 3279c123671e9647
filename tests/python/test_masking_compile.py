"""opcheck over every sample input of the masking ops, and torch.compile(fullgraph=True)."""

import pytest
import torch

import mwm


def _sample_index(batch, offset=0):
    return torch.arange(offset, offset + batch, dtype=torch.int64)


def _mask_args(policy, grid, batch, regions=None, scores=None, **options):
    """Positional inputs and keyword policy options of one op call; the options not given take
    the schema's defaults (blocks start at 4 patches here, so that they fit the small grids)."""
    args = (_sample_index(batch), list(grid), regions, scores, 0)
    return args, dict(dict(policy=policy, block_min_patches=4), **options)


def _mask_samples():
    g = torch.Generator().manual_seed(0)
    for grid in ((6, 6), (2, 4, 4)):
        n = 36 if len(grid) == 2 else 32
        regions = (torch.rand(3, n, generator=g) > 0.5).int()
        scores = torch.rand(3, n, generator=g)
        yield _mask_args("random", grid, 3)
        yield _mask_args("random", grid, 3, rounding="round", order="sorted")
        yield _mask_args("per_region", grid, 3, region_ratios=[0.4, 0.8], regions=regions)
        yield _mask_args("fixed_total", grid, 3, ratio=0.4, region_ratios=[0.4, 0.8],
                         regions=regions)
        yield _mask_args("weighted", grid, 3, scores=scores)
        yield _mask_args("block", grid, 3, ratio=0.4)
        yield _mask_args("coarse", grid, 3, ratio=0.5)
        yield _mask_args("loss_guided", grid, 3, scores=scores)
        yield _mask_args("attention_guided", grid, 3, scores=scores, attention_mode="hint",
                         ratio=0.5)


@pytest.mark.parametrize("call", list(_mask_samples()),
                         ids=lambda c: f"{c[1]['policy']}-{len(c[0][1])}d")
def test_opcheck_generate_masks(call):
    args, options = call
    torch.library.opcheck(torch.ops.mwm.generate_masks.default, args, options)


@pytest.mark.parametrize("args", [
    (torch.rand(2, 1, 32, 32), [4, 4], "mean", 0.5, "max", None, "error"),
    (torch.rand(2, 3, 20, 12), [4, 3], "max", 0.5, "max", None, "error"),
    (torch.rand(2, 2, 16, 16), [4, 4], "fraction", 0.3, "weighted_sum",
     torch.tensor([0.3, 0.7]), "error"),
    (torch.rand(1, 1, 8, 8, 8), [2, 2, 2], "nearest", 0.5, "max", None, "error"),
])
def test_opcheck_patch_scores(args):
    torch.library.opcheck(torch.ops.mwm.patch_scores.default, args)


def test_opcheck_regions_and_upsampling():
    scores = torch.rand(3, 16)
    torch.library.opcheck(torch.ops.mwm.regions_from_thresholds.default,
                          (scores, [0.3, 0.6], "error"))
    torch.library.opcheck(torch.ops.mwm.regions_from_quantiles.default,
                          (scores, [0.5, 0.25], "error"))
    mask = torch.rand(3, 16) > 0.5
    torch.library.opcheck(torch.ops.mwm.upsample_patch_map.default, (mask, [4, 4], [2, 2], True))
    torch.library.opcheck(torch.ops.mwm.upsample_patch_map.default,
                          (torch.rand(2, 8) > 0.5, [2, 2, 2], [2, 3, 4], False))


def _mask_and_gather(heatmaps, tokens):
    masker = mwm.TextGuidedMasker((7, 7), policy="fixed_total", ratio=0.4, seed=3)
    result = masker(heatmaps, offset=8)
    visible = torch.gather(tokens, 1, result.ids_keep.unsqueeze(-1).expand(-1, -1,
                                                                          tokens.shape[-1]))
    return visible, result.mask, result.noise, result.active_pyramid([1, 2])[1]


@pytest.mark.slow
def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    heatmaps = torch.rand(4, 224, 224)
    tokens = torch.randn(4, 49, 16)
    eager = _mask_and_gather(heatmaps, tokens)
    compiled = torch.compile(_mask_and_gather, fullgraph=True)(heatmaps, tokens)
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_compile_per_region_padded_outputs():
    torch._dynamo.reset()

    def per_region(scores):
        regions = mwm.regions_from_thresholds(scores, [0.5])
        return mwm.generate_masks((7, 7), policy="per_region", region_ratios=(0.4, 0.8),
                                  regions=regions, seed=1).ids_keep

    scores = torch.rand(3, 49)
    assert torch.equal(torch.compile(per_region, fullgraph=True)(scores), per_region(scores))
