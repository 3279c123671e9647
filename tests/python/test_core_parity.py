"""Every masking op against the C++ core called directly (no torch in between).

``core_driver.cpp`` (next to this file) is compiled here with the system C++ compiler against
``include/mwm`` alone; it reads a request as text and prints the core's outputs. The torch ops
and the Python wrappers (argument parsing, seed and offset handling, strides, dtypes, the
per-sample parallel loop) must give exactly what the core gives, bit for bit, for every op,
policy, reduction and region rule, in 2D and 3D. Invalid requests must fail with the core's
own message.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import mwm

HERE = Path(__file__).resolve().parent
INCLUDE = HERE.parents[1] / "include"


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") \
        or shutil.which("clang++")
    assert compiler, "test_core_parity needs a C++17 compiler (set CXX); the C++ tests need one too"
    binary = tmp_path_factory.mktemp("core") / "core_driver"
    subprocess.run([compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror",
                    f"-I{INCLUDE}", str(HERE / "core_driver.cpp"), "-o", str(binary),
                    "-pthread"], check=True, capture_output=True, text=True)

    def run(*tokens):
        text = " ".join(_token(t) for t in tokens)
        done = subprocess.run([str(binary)], input=text, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        if done.stdout.startswith("mwm_error "):
            return done.stdout[len("mwm_error "):].strip()
        out = {}
        for line in done.stdout.splitlines():
            name, count, *values = line.split()
            assert len(values) == int(count)
            out[name] = values
        return out

    return run


def _token(value):
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1)
        if flat.is_floating_point():
            return " ".join(repr(float(v)) for v in flat.tolist())
        return " ".join(str(int(v)) for v in flat.tolist())
    if isinstance(value, (list, tuple)):
        return " ".join(_token(v) for v in value)
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def _floats(values, shape):
    return torch.tensor([float(v) for v in values], dtype=torch.float32).reshape(shape)


def _ints(values, shape, dtype=torch.int64):
    return torch.tensor([int(v) for v in values], dtype=dtype).reshape(shape)


def _grid3(grid):
    return [len(grid), *grid]


# ------------------------------------------------------------------------------ patch_scores

SCORE_CASES = [
    # heatmap shape (B, K, [D,] H, W), grid, reduction, combine, weights
    ((3, 1, 37, 53), (7, 7), "mean", "max", None),
    ((3, 1, 37, 53), (7, 7), "max", "max", None),
    ((3, 1, 37, 53), (7, 7), "fraction", "max", None),
    ((3, 1, 37, 53), (7, 7), "nearest", "max", None),
    ((2, 3, 224, 224), (14, 14), "mean", "max", None),
    ((2, 3, 20, 12), (4, 3), "fraction", "weighted_sum", [0.2, 0.5, 0.3]),
    ((2, 1, 11, 9, 10), (4, 3, 3), "mean", "max", None),
    ((2, 2, 16, 16, 16), (4, 4, 4), "nearest", "weighted_sum", [0.7, 0.3]),
    ((1, 1, 7, 5), (14, 10), "nearest", "max", None),  # a grid finer than the heatmap
]


@pytest.mark.parametrize("shape,grid,reduction,combine,weights", SCORE_CASES)
def test_patch_scores_equal_the_core(core, shape, grid, reduction, combine, weights):
    heat = torch.rand(shape, generator=torch.Generator().manual_seed(len(shape) + shape[-1]))
    got = mwm.heatmap_to_patch_scores(heat, grid, reduction=reduction, threshold=0.4,
                                      combine=combine, prompt_weights=weights)
    spatial = list(shape[2:]) if len(shape) == 5 else [1, *shape[2:]]
    out = core("scores", _grid3(grid), shape[0], shape[1], spatial, reduction, 0.4, "error",
               combine, len(weights or []), weights or [], heat)
    expected = _floats(out["scores"], got.shape)
    assert torch.equal(got, expected)
    # A non-contiguous view of the same values gives the same scores.
    view = heat.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert torch.equal(mwm.heatmap_to_patch_scores(view, grid, reduction=reduction,
                                                   threshold=0.4, combine=combine,
                                                   prompt_weights=weights), expected)


def test_patch_scores_nan_policy_zero_equals_the_core(core):
    heat = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    heat[0, 0, 3, 4] = float("nan")
    heat[1, 0, 20, 1] = float("inf")
    got = mwm.heatmap_to_patch_scores(heat, (7, 7), nan_policy="zero")
    out = core("scores", [2, 7, 7], 2, 1, [1, 28, 28], "mean", 0.5, "zero", "max", 0, [], heat)
    assert torch.equal(got, _floats(out["scores"], got.shape))
    assert "heatmaps" in core("scores", [2, 7, 7], 2, 1, [1, 28, 28], "mean", 0.5, "error", "max",
                              0, [], heat)


# -------------------------------------------------------------------------------- regions

def test_threshold_and_quantile_regions_equal_the_core(core):
    g = torch.Generator().manual_seed(5)
    scores = torch.rand(4, 49, generator=g)
    scores[:, 10:20] = 0.5  # ties, and values equal to a threshold
    scores[2, 30] = -0.0
    scores[2, 31] = 0.0
    for thresholds in ([0.5], [0.2, 0.5, 0.8]):
        got = mwm.regions_from_thresholds(scores, thresholds)
        out = core("thresholds", 4, 49, len(thresholds), thresholds, "error", scores)
        assert torch.equal(got, _ints(out["regions"], (4, 49), torch.int32))
    for quantiles in ([0.3], [0.5, 0.1]):
        got = mwm.regions_from_quantiles(scores, quantiles)
        out = core("quantiles", 4, 49, len(quantiles), quantiles, "error", scores)
        assert torch.equal(got, _ints(out["regions"], (4, 49), torch.int32))


# ----------------------------------------------------------------------------- generate_masks

POLICIES = [
    ("random", {}),
    ("random", dict(rounding="round", order="sorted", ratio=0.6)),
    ("random", dict(rounding="ceil_mask", ratio=0.55)),
    ("per_region", dict(region_ratios=[0.4, 0.8])),
    ("per_region", dict(region_ratios=[0.2, 0.5, 0.9], order="sorted")),
    ("fixed_total", dict(ratio=0.6, region_ratios=[0.4, 0.8])),
    ("fixed_total", dict(ratio=0.5, region_ratios=[0.0, 0.5, 0.9], rounding="round")),
    ("weighted", dict(ratio=0.6, weight_floor=0.2)),
    ("block", dict(ratio=0.4, block_min_patches=4)),
    ("block", dict(ratio=0.5, block_min_patches=2, block_max_patches=10, block_min_aspect=0.5,
                   block_max_aspect=2.0)),
    ("coarse", dict(ratio=0.5, coarse_factor=2, rounding="ceil_mask")),
    ("loss_guided", dict(ratio=0.75, hard_share=0.3)),
    ("attention_guided", dict(ratio=0.5, attention_mode="high", rounding="floor_mask")),
    ("attention_guided", dict(ratio=0.5, attention_mode="low", rounding="floor_mask")),
    ("attention_guided", dict(ratio=0.5, attention_mode="hint", hint_pool_share=0.3,
                              hint_share=0.1)),
]
DEFAULTS = dict(ratio=0.75, region_ratios=[], rounding="floor", order="random", coarse_factor=2,
                hard_share=0.5, attention_mode="high", hint_pool_share=0.2, hint_share=0.1,
                weight_floor=0.5, block_min_patches=16, block_max_patches=0,
                block_min_aspect=0.3, block_max_aspect=1 / 0.3)


def _core_masks(core, grid, batch, seed, offset, policy, options, index, regions, scores):
    o = dict(DEFAULTS, **options)
    return core("masks", _grid3(grid), batch, seed, offset, policy, o["ratio"],
                len(o["region_ratios"]), o["region_ratios"], o["rounding"], o["order"],
                o["coarse_factor"], o["hard_share"], o["attention_mode"], o["hint_pool_share"],
                o["hint_share"], o["weight_floor"], o["block_min_patches"],
                o["block_max_patches"], o["block_min_aspect"], o["block_max_aspect"], "error",
                int(index is not None), [] if index is None else index,
                int(regions is not None), [] if regions is None else regions,
                int(scores is not None), [] if scores is None else scores)


def _assert_same(result, out, batch, n):
    assert torch.equal(result.mask, _ints(out["mask"], (batch, n)).bool())
    assert torch.equal(result.num_masked, _ints(out["num_masked"], (batch,)))
    for name in ("ids_shuffle", "ids_restore", "ids_keep", "ids_masked"):
        got = getattr(result, name)
        assert torch.equal(got, _ints(out[name], got.shape)), name
    assert torch.equal(result.noise, _floats(out["noise"], (batch, n)))


@pytest.mark.parametrize("grid", [(14, 14), (4, 4, 6)], ids=["14x14", "4x4x6"])
@pytest.mark.parametrize("policy,options", POLICIES,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(POLICIES)])
def test_generate_masks_equal_the_core(core, grid, policy, options):
    n = 1
    for s in grid:
        n *= s
    batch = 5
    g = torch.Generator().manual_seed(n + len(policy))
    levels = len(options.get("region_ratios", [])) or 2
    regions = torch.randint(0, levels, (batch, n), generator=g, dtype=torch.int32) \
        if policy in ("per_region", "fixed_total") else None
    scores = torch.rand(batch, n, generator=g) \
        if policy in ("weighted", "loss_guided", "attention_guided") else None
    for seed, offset in ((0, 0), (2024, 37), (2**64 - 5, 2**33 + 1)):
        result = mwm.generate_masks(grid, batch, policy=policy, regions=regions, scores=scores,
                                    seed=seed, offset=offset, **options)
        out = _core_masks(core, grid, batch, seed, offset, policy, options, None, regions,
                          scores)
        _assert_same(result, out, batch, n)
    # Global indices in any order (a shuffled loader), through the sample_index tensor.
    index = torch.tensor([9, 2, 2**40, 0, 5])
    result = mwm.generate_masks(grid, policy=policy, regions=regions, scores=scores, seed=7,
                                sample_index=index, batch_size=batch, **options)
    _assert_same(result, _core_masks(core, grid, batch, 7, 0, policy, options, index, regions,
                                     scores), batch, n)


def test_text_guided_masker_equals_the_core_pipeline(core):
    heat = torch.rand(3, 56, 56, generator=torch.Generator().manual_seed(8))
    masker = mwm.TextGuidedMasker((7, 7), region_ratios=(0.3, 0.9), thresholds=(0.5,),
                                  seed=99, offset=12)
    result = masker(heat)
    scores = _floats(core("scores", [2, 7, 7], 3, 1, [1, 56, 56], "mean", 0.5, "error", "max", 0,
                          [], heat)["scores"], (3, 49))
    regions = _ints(core("thresholds", 3, 49, 1, [0.5], "error", scores)["regions"], (3, 49),
                    torch.int32)
    out = _core_masks(core, (7, 7), 3, 99, 12, "per_region", dict(region_ratios=[0.3, 0.9]),
                      None, regions, None)
    _assert_same(result, out, 3, 49)


# --------------------------------------------------------------------------- upsample_patch_map

@pytest.mark.parametrize("grid,factors,invert", [((7, 7), (4, 4), True), ((3, 5), (2, 3), False),
                                                 ((2, 3, 4), (2, 1, 3), True)])
def test_upsample_patch_map_equals_the_core(core, grid, factors, invert):
    n = 1
    for s in grid:
        n *= s
    values = torch.rand(2, n, generator=torch.Generator().manual_seed(n)) > 0.5
    got = mwm.upsample_patch_map(values, grid, factors, invert=invert)
    f3 = [1, *factors] if len(grid) == 2 else list(factors)
    out = core("upsample", _grid3(grid), f3, invert, 2, values.int())
    assert torch.equal(got, _ints(out["values"], got.shape).bool())


# ------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("call,core_request", [
    (lambda: mwm.generate_masks((7, 7), 2, ratio=1.5),
     ("masks", [2, 7, 7], 2, 0, 0, "random", 1.5, 0, "floor", "random", 2, 0.5, "high", 0.2, 0.1,
      0.5, 16, 0, 0.3, 1 / 0.3, "error", 0, 0, 0)),
    (lambda: mwm.regions_from_thresholds(torch.rand(2, 4), [0.6, 0.3]),
     ("thresholds", 2, 4, 2, [0.6, 0.3], "error", torch.zeros(2, 4))),
    (lambda: mwm.regions_from_quantiles(torch.rand(2, 4), [1.5]),
     ("quantiles", 2, 4, 1, [1.5], "error", torch.zeros(2, 4))),
    (lambda: mwm.generate_masks((7, 7), 2, policy="coarse", coarse_factor=2),
     ("masks", [2, 7, 7], 2, 0, 0, "coarse", 0.75, 0, "floor", "random", 2, 0.5, "high", 0.2,
      0.1, 0.5, 16, 0, 0.3, 1 / 0.3, "error", 0, 0, 0)),
])
def test_invalid_requests_fail_with_the_core_message(core, call, core_request):
    message = core(*core_request)
    assert isinstance(message, str) and message.startswith("mwm: "), message
    with pytest.raises(ValueError) as raised:
        call()
    assert message in str(raised.value)
