"""The masking ops against independent references of docs/design.md's semantics."""

import math

import pytest
import torch
import torch.nn.functional as F

import mwm
from mwm.bench import references as ref


@pytest.mark.parametrize("seed,offset", [(0, 0), (7, 5), (2**40 + 3, 2**33 + 1)])
@pytest.mark.parametrize("rounding", ["floor", "round", "ceil_mask", "floor_mask"])
@pytest.mark.parametrize("order", ["random", "sorted"])
def test_random_policy_matches_reference_order(seed, offset, rounding, order):
    grid, ratio = (4, 5), 0.65
    result = mwm.generate_masks(grid, 3, ratio=ratio, seed=seed, offset=offset,
                                rounding=rounding, order=order)
    for b in range(3):
        expected, visible = ref.random_masks(20, ratio, seed, offset + b, rounding, order)
        assert result.ids_shuffle[b].tolist() == expected
        assert int(result.num_masked[b]) == 20 - visible


def test_per_region_matches_mwm_formula_and_reference_order():
    torch.manual_seed(0)
    grid = (7, 7)
    regions = (torch.rand(6, 49) > 0.6).int()
    ratios = (0.4, 0.8)
    result = mwm.generate_masks(grid, policy="per_region", region_ratios=ratios,
                                regions=regions, seed=3, offset=10)
    for b in range(6):
        row = regions[b].tolist()
        expected, visible = ref.per_region_masks(row, ratios, 3, 10 + b)
        assert result.ids_shuffle[b].tolist() == expected
        for r, ratio in enumerate(ratios):
            n_r = row.count(r)
            masked_r = int(result.mask[b][regions[b] == r].sum())
            assert masked_r == n_r - int(n_r * (1 - ratio))


def test_per_region_python_float_semantics():
    # 10 ROI patches at 0.8: int(10 * (1 - 0.8)) = int(1.9999999999999996) = 1 kept.
    regions = torch.zeros(1, 16, dtype=torch.int32)
    regions[0, :10] = 1
    result = mwm.generate_masks((4, 4), policy="per_region", region_ratios=(0.0, 0.8),
                                regions=regions)
    assert int(result.mask[0, :10].sum()) == 9
    assert int(result.mask[0, 10:].sum()) == 0


def test_mae_len_keep_on_196_patches():
    result = mwm.generate_masks((14, 14), 2, ratio=0.7)
    assert result.ids_keep.shape == (2, 58)
    assert result.num_masked.tolist() == [138, 138]


@pytest.mark.parametrize("ratios,total", [((0.4, 0.8), 0.5), ((0.0, 1.0), 0.3),
                                          ((0.2, 0.5, 0.9), 0.6), ((0.0, 0.0), 0.4)])
def test_fixed_total_split_matches_largest_remainder_reference(ratios, total):
    torch.manual_seed(1)
    regions = torch.randint(0, len(ratios), (8, 36), dtype=torch.int32)
    result = mwm.generate_masks((6, 6), policy="fixed_total", ratio=total, region_ratios=ratios,
                                regions=regions, seed=5)
    masked_total = 36 - ref.keep_count(36, total)
    assert result.num_masked.tolist() == [masked_total] * 8
    for b in range(8):
        counts = [int((regions[b] == r).sum()) for r in range(len(ratios))]
        expected = ref.share_budget(counts, ratios, masked_total)
        got = [int(result.mask[b][regions[b] == r].sum()) for r in range(len(ratios))]
        assert got == expected


POLICY_CASES = [
    dict(policy="random", ratio=0.75),
    dict(policy="per_region", region_ratios=(0.4, 0.8)),
    dict(policy="fixed_total", ratio=0.4, region_ratios=(0.4, 0.8)),
    dict(policy="weighted", ratio=0.5),
    dict(policy="block", ratio=0.4, block_min_patches=4),
    dict(policy="coarse", ratio=0.6, coarse_factor=2),
    dict(policy="loss_guided", ratio=0.75, hard_share=0.5),
    dict(policy="attention_guided", ratio=0.5, attention_mode="high"),
    dict(policy="attention_guided", ratio=0.5, attention_mode="low"),
    dict(policy="attention_guided", ratio=0.5, attention_mode="hint", hint_pool_share=0.2,
         hint_share=0.1, rounding="floor_mask"),
]


def _inputs(case, batch, n, generator_seed=0):
    g = torch.Generator().manual_seed(generator_seed)
    kwargs = dict(case)
    if case["policy"] in ("per_region", "fixed_total"):
        kwargs["regions"] = (torch.rand(batch, n, generator=g) > 0.5).int()
    if case["policy"] in ("weighted", "loss_guided", "attention_guided"):
        kwargs["scores"] = torch.rand(batch, n, generator=g)
    return kwargs


@pytest.mark.parametrize("case", POLICY_CASES,
                         ids=lambda c: c["policy"] + c.get("attention_mode", ""))
@pytest.mark.parametrize("grid", [(8, 8), (4, 4, 4)])
def test_outputs_are_consistent(case, grid):
    n = math.prod(grid)
    result = mwm.generate_masks(grid, 5, seed=11, **_inputs(case, 5, n))
    assert torch.equal(torch.argsort(result.noise, dim=1, stable=True), result.ids_shuffle)
    assert torch.equal(torch.argsort(result.ids_shuffle, dim=1), result.ids_restore)
    assert torch.equal(result.mask.sum(1), result.num_masked)
    for b in range(5):
        visible = n - int(result.num_masked[b])
        keep = result.ids_keep[b]
        assert keep[:visible].tolist() == result.ids_shuffle[b, :visible].tolist()
        assert bool((keep[visible:] == -1).all())
        assert not bool(result.mask[b, keep[:visible]].any())
        masked = result.ids_masked[b][: n - visible]
        assert bool(result.mask[b, masked].all())


@pytest.mark.parametrize("case", POLICY_CASES,
                         ids=lambda c: c["policy"] + c.get("attention_mode", ""))
def test_batch_split_and_offset_invariance(case):
    n = 64
    kwargs = _inputs(case, 6, n)
    whole = mwm.generate_masks((8, 8), 6, seed=4, offset=100, **kwargs)
    for start in range(6):
        part_kwargs = dict(kwargs)
        for key in ("regions", "scores"):
            if key in part_kwargs:
                part_kwargs[key] = part_kwargs[key][start:start + 1]
        part = mwm.generate_masks((8, 8), 1, seed=4, offset=100 + start, **part_kwargs)
        assert torch.equal(part.ids_shuffle[0], whole.ids_shuffle[start])


def test_thread_count_does_not_change_masks():
    regions = (torch.rand(64, 196) > 0.5).int()
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(mwm.generate_masks((14, 14), policy="per_region",
                                              region_ratios=(0.4, 0.8),
                                              regions=regions).ids_shuffle)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_sample_index_tensor_keys_masks():
    indices = torch.tensor([5, 2, 9], dtype=torch.int64)
    keyed = mwm.generate_masks((6, 6), sample_index=indices, seed=1)
    for row, index in enumerate(indices.tolist()):
        single = mwm.generate_masks((6, 6), 1, seed=1, offset=index)
        assert torch.equal(keyed.ids_shuffle[row], single.ids_shuffle[0])


def test_weighted_masks_heavier_patches_more_often():
    scores = torch.zeros(400, 16)
    scores[:, :8] = 1.0
    result = mwm.generate_masks((4, 4), policy="weighted", ratio=0.5, scores=scores,
                                weight_floor=0.2)
    heavy = result.mask[:, :8].float().mean()
    light = result.mask[:, 8:].float().mean()
    assert result.num_masked.unique().tolist() == [8]
    assert heavy > light + 0.2


def test_loss_guided_masks_the_hardest_share():
    scores = torch.arange(16, dtype=torch.float32).flip(0).repeat(3, 1)  # patch 0 hardest
    result = mwm.generate_masks((4, 4), policy="loss_guided", ratio=0.5, hard_share=0.5,
                                scores=scores)
    assert bool(result.mask[:, :4].all())  # int(8 * 0.5) = 4 hardest
    assert result.num_masked.tolist() == [8, 8, 8]


def test_attention_high_low_and_hint_follow_attmask():
    scores = torch.arange(20, dtype=torch.float32).unsqueeze(0)  # patch 19 most attended
    high = mwm.generate_masks((4, 5), policy="attention_guided", ratio=0.3,
                              rounding="floor_mask", scores=scores)
    assert sorted(high.ids_masked[0].tolist()) == [14, 15, 16, 17, 18, 19]
    low = mwm.generate_masks((4, 5), policy="attention_guided", ratio=0.3,
                             rounding="floor_mask", attention_mode="low", scores=scores)
    assert sorted(low.ids_masked[0].tolist()) == [0, 1, 2, 3, 4, 5]
    hint = mwm.generate_masks((4, 5), policy="attention_guided", ratio=0.5,
                              rounding="floor_mask", attention_mode="hint",
                              hint_pool_share=0.2, hint_share=0.1, scores=scores)
    masked = set(hint.ids_masked[0][: int(hint.num_masked[0])].tolist())
    # int(20*0.5) = 10 most attended, of which int(20*0.1) = 2 of the top int(20*0.2) = 4 shown.
    assert len(masked) == 8
    assert masked <= set(range(10, 20))
    assert set(range(10, 16)) <= masked


def test_coarse_masks_whole_cells():
    result = mwm.generate_masks((8, 8), 4, policy="coarse", ratio=0.6, coarse_factor=2,
                                rounding="ceil_mask")
    grid = result.mask.view(4, 4, 2, 4, 2)
    assert bool((grid.all(dim=4).all(dim=2) == grid.any(dim=4).any(dim=2)).all())
    assert result.num_masked.tolist() == [math.ceil(16 * 0.6) * 4] * 4


@pytest.mark.parametrize("reduction", ["mean", "max", "fraction", "nearest"])
@pytest.mark.parametrize("size", [(224, 224), (100, 60), (5, 3), (7, 7)])
def test_patch_scores_match_torch_pooling(reduction, size):
    heat = torch.rand(3, *size)
    grid = (7, 7)
    got = mwm.heatmap_to_patch_scores(heat, grid, reduction=reduction, threshold=0.4)
    x = heat.unsqueeze(1)
    if reduction == "mean":
        expected = F.adaptive_avg_pool2d(x.double(), grid).float()
    elif reduction == "max":
        expected = F.adaptive_max_pool2d(x, grid)
    elif reduction == "fraction":
        expected = F.adaptive_avg_pool2d((x > 0.4).double(), grid).float()
    else:
        expected = F.interpolate(x, size=grid, mode="nearest")
    torch.testing.assert_close(got, expected.flatten(1), rtol=1e-6, atol=1e-7)


def test_patch_scores_3d_and_prompt_combination():
    heat = torch.rand(2, 3, 16, 12, 8)
    got = mwm.heatmap_to_patch_scores(heat, (4, 3, 2), combine="max")
    pooled = F.adaptive_avg_pool3d(heat.double(), (4, 3, 2)).float().flatten(2)
    torch.testing.assert_close(got, pooled.max(dim=1).values)
    weights = [0.5, 0.25, 0.25]
    got = mwm.heatmap_to_patch_scores(heat, (4, 3, 2), combine="weighted_sum",
                                      prompt_weights=weights)
    expected = (pooled.double() * torch.tensor(weights, dtype=torch.float64)[None, :, None]).sum(1)
    torch.testing.assert_close(got, expected.float())


def test_regions_thresholds_strict_and_quantiles_tie_by_index():
    scores = torch.tensor([[0.1, 0.3, 0.30001, 0.7, 0.3, 0.9]])
    regions = mwm.regions_from_thresholds(scores, [0.3, 0.7])
    assert regions.tolist() == [[0, 0, 1, 1, 0, 2]]
    tied = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.2, 0.9]])
    regions = mwm.regions_from_quantiles(tied, [0.5])  # top int(6*0.5) = 3: 5, then 0, 1
    assert regions.tolist() == [[1, 1, 0, 0, 0, 1]]


def test_upsampling_gives_spark_pyramid_and_pixel_masks():
    result = mwm.generate_masks((7, 7), 2, ratio=0.6, rounding="round")
    active = result.active()
    assert active.shape == (2, 1, 7, 7) and torch.equal(active.flatten(1), ~result.mask)
    pyramid = result.active_pyramid([1, 2, 4])
    for scale, level in zip([1, 2, 4], pyramid):
        expected = active.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
        assert torch.equal(level, expected)
    pixels = result.pixel_mask(32)
    assert pixels.shape == (2, 1, 224, 224)
    assert torch.equal(pixels[:, :, ::32, ::32].flatten(1), result.mask)


def test_non_contiguous_inputs_give_the_same_result():
    regions = (torch.rand(49, 4) > 0.5).int()
    contiguous = regions.t().contiguous()
    a = mwm.generate_masks((7, 7), policy="per_region", region_ratios=(0.4, 0.8),
                           regions=regions.t())
    b = mwm.generate_masks((7, 7), policy="per_region", region_ratios=(0.4, 0.8),
                           regions=contiguous)
    assert torch.equal(a.ids_shuffle, b.ids_shuffle)
    heat = torch.rand(4, 32, 32).transpose(1, 2)
    torch.testing.assert_close(mwm.heatmap_to_patch_scores(heat, 4),
                               mwm.heatmap_to_patch_scores(heat.contiguous(), 4))
