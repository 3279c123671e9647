"""Bad input to the masking API raises a clear error naming the argument and the value."""

import pytest
import torch

import mwm


@pytest.mark.parametrize("call,error,words", [
    (lambda: mwm.generate_masks((7, 7), 2, ratio=1.5), ValueError, ["ratio", "1.5"]),
    (lambda: mwm.generate_masks((7, 7), 2, ratio=-0.1), ValueError, ["ratio"]),
    (lambda: mwm.generate_masks((7, 0), 2), ValueError, ["grid"]),
    (lambda: mwm.generate_masks((7, 7), 0), ValueError, ["batch_size", "0"]),
    (lambda: mwm.generate_masks((7, 7), 2, policy="magic"), ValueError, ["policy", "magic"]),
    (lambda: mwm.generate_masks((7, 7), 2, rounding="up"), ValueError, ["rounding", "up"]),
    (lambda: mwm.generate_masks((7, 7), 2, order="shuffled"), ValueError, ["order"]),
    (lambda: mwm.generate_masks((7, 7), 2, policy="per_region", region_ratios=(0.4, 0.8)),
     ValueError, ["regions"]),
    (lambda: mwm.generate_masks((7, 7), policy="per_region", region_ratios=(0.4, 0.8),
                                regions=torch.full((2, 49), 2, dtype=torch.int32)),
     ValueError, ["regions", "2"]),
    (lambda: mwm.generate_masks((7, 7), policy="per_region", region_ratios=(0.4, 0.8),
                                regions=torch.zeros(2, 48, dtype=torch.int32)),
     ValueError, ["regions", "49"]),
    (lambda: mwm.generate_masks((7, 7), policy="per_region", region_ratios=(0.4, 0.8),
                                regions=torch.zeros(2, 49)), TypeError, ["regions", "Int"]),
    (lambda: mwm.generate_masks((7, 7), policy="per_region", region_ratios=(0.4, 1.2),
                                regions=torch.zeros(2, 49, dtype=torch.int32)),
     ValueError, ["region_ratios", "1.2"]),
    (lambda: mwm.generate_masks((7, 7), policy="weighted",
                                scores=torch.full((2, 49), float("nan"))),
     ValueError, ["scores", "nan"]),
    (lambda: mwm.generate_masks((7, 7), policy="coarse", batch_size=1, coarse_factor=2),
     ValueError, ["coarse_factor", "2"]),
    (lambda: mwm.generate_masks((7, 7), 1, seed=-1), ValueError, ["seed"]),
    (lambda: mwm.heatmap_to_patch_scores(torch.rand(2, 8, 8), (4, 4),
                                         reduction="median"), ValueError, ["reduction", "median"]),
    (lambda: mwm.heatmap_to_patch_scores(torch.rand(2, 8), (4, 4)), ValueError, ["heatmaps"]),
    (lambda: mwm.heatmap_to_patch_scores(torch.ones(2, 8, 8, dtype=torch.int64), (4, 4)),
     TypeError, ["heatmaps"]),
    (lambda: mwm.heatmap_to_patch_scores(torch.full((1, 8, 8), float("inf")), (4, 4)),
     ValueError, ["heatmaps", "inf"]),
    (lambda: mwm.heatmap_to_patch_scores(torch.rand(1, 2, 8, 8), (4, 4), combine="weighted_sum",
                                         prompt_weights=[1.0]), ValueError, ["prompt_weights"]),
    (lambda: mwm.regions_from_thresholds(torch.rand(2, 4), [0.5, 0.3]), ValueError,
     ["thresholds", "ascending"]),
    (lambda: mwm.regions_from_quantiles(torch.rand(2, 4), [0.2, 0.5]), ValueError,
     ["quantiles", "descending"]),
    (lambda: mwm.upsample_patch_map(torch.zeros(2, 16, dtype=torch.bool), (4, 4), 0),
     ValueError, ["factors"]),
])
def test_bad_input_is_named(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message


def test_nan_policy_zero_accepts_non_finite_heatmaps():
    heat = torch.rand(1, 8, 8)
    heat[0, 0, 0] = float("nan")
    scores = mwm.heatmap_to_patch_scores(heat, (4, 4), nan_policy="zero")
    clean = heat.clone()
    clean[0, 0, 0] = 0.0
    torch.testing.assert_close(scores, mwm.heatmap_to_patch_scores(clean, (4, 4)))


def test_masker_checks_region_ratio_count():
    with pytest.raises(ValueError, match="region_ratios"):
        mwm.TextGuidedMasker((7, 7), region_ratios=(0.4, 0.6, 0.8), thresholds=(0.5,))


@pytest.mark.parametrize("policy", ["per_region", "fixed_total"])
def test_one_region_ratio_rejects_region_ids_other_than_zero(policy):
    # A binary ROI map given one ratio would otherwise be masked as if it were all one region.
    regions = torch.zeros(2, 16, dtype=torch.int32)
    regions[1, 5] = 1
    with pytest.raises(ValueError, match=r"regions = 1: must lie in \[0, 1\)"):
        mwm.generate_masks((4, 4), policy=policy, regions=regions, region_ratios=(0.5,))
    ok = mwm.generate_masks((4, 4), policy=policy, regions=torch.zeros_like(regions),
                            region_ratios=(0.5,), ratio=0.5)
    assert ok.mask.sum(1).tolist() == [8, 8]


@pytest.mark.parametrize("name", ["regions", "scores"])
def test_inputs_on_another_device_than_sample_index_are_named(name):
    policy = "per_region" if name == "regions" else "weighted"
    dtype = torch.int32 if name == "regions" else torch.float32
    kwargs = {name: torch.zeros(2, 49, dtype=dtype, device="meta")}
    with pytest.raises(RuntimeError, match=f"mwm: {name} is on meta but sample_index is on cpu"):
        mwm.generate_masks((7, 7), policy=policy, region_ratios=(0.4, 0.8),
                           sample_index=torch.arange(2), **kwargs)
    # On one device (meta here) the shapes come out as on the CPU.
    result = mwm.generate_masks((7, 7), policy=policy, region_ratios=(0.4, 0.8), ratio=0.5,
                                sample_index=torch.arange(2, device="meta"), **kwargs)
    assert result.ids_keep.device.type == "meta" and result.mask.shape == (2, 49)
