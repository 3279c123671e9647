"""TextGuidedMasker: one object from heatmaps to every output, keyed by global sample index."""

import pytest
import torch

import mwm


def _heatmaps(batch, seed=0):
    return torch.rand(batch, 56, 56, generator=torch.Generator().manual_seed(seed))


def _pipeline(heatmaps, offset=None, sample_index=None):
    """The masker's defaults written out with the functional API."""
    scores = mwm.heatmap_to_patch_scores(heatmaps, (7, 7), reduction="mean")
    regions = mwm.regions_from_thresholds(scores, [0.5])
    return mwm.generate_masks((7, 7), heatmaps.shape[0], policy="per_region",
                              region_ratios=(0.4, 0.8), regions=regions, seed=3,
                              offset=offset or 0, sample_index=sample_index)


def test_each_call_advances_the_offset_by_the_batch_size():
    heat = _heatmaps(10)
    masker = mwm.TextGuidedMasker((7, 7), seed=3)
    first, second = masker(heat[:4]), masker(heat[4:])
    assert masker.offset == 10
    whole = mwm.TextGuidedMasker((7, 7), seed=3)(heat)
    for name in ("mask", "num_masked", "ids_keep", "ids_masked", "ids_restore", "noise"):
        assert torch.equal(torch.cat([getattr(first, name), getattr(second, name)]),
                           getattr(whole, name)), name
    assert torch.equal(second.ids_keep, _pipeline(heat[4:], offset=4).ids_keep)
    # A new masker starting at offset 0 repeats the first call; another seed does not.
    assert torch.equal(mwm.TextGuidedMasker((7, 7), seed=3)(heat[:4]).mask, first.mask)
    assert not torch.equal(mwm.TextGuidedMasker((7, 7), seed=4)(heat[:4]).ids_keep,
                           first.ids_keep)


def test_explicit_offset_or_sample_index_does_not_advance():
    heat = _heatmaps(6, seed=1)
    masker = mwm.TextGuidedMasker((7, 7), seed=3, offset=100)
    at = masker(heat, offset=20)
    assert masker.offset == 100
    index = torch.tensor([20, 21, 22, 23, 24, 25])
    by_index = masker(heat, sample_index=index)
    assert masker.offset == 100
    assert torch.equal(at.ids_keep, by_index.ids_keep)
    assert torch.equal(at.ids_keep, _pipeline(heat, offset=20).ids_keep)
    # Global indices in any order: each sample keeps its own mask.
    shuffled = masker(heat.flip(0), sample_index=index.flip(0))
    assert torch.equal(shuffled.ids_keep.flip(0), at.ids_keep)


def test_one_result_holds_every_output():
    heat = torch.zeros(2, 224, 224)
    heat[0, :96, :96] = 1.0  # a 3x3-cell ROI in sample 0, none in sample 1
    result = mwm.TextGuidedMasker.from_preset((7, 7), "default", seed=0)(heat)
    n_roi = 9
    expected = [(n_roi - int(n_roi * (1 - 0.8))) + (40 - int(40 * (1 - 0.4))), 49 - int(49 * 0.6)]
    assert result.num_masked.tolist() == expected
    assert torch.equal(result.mask.sum(1), result.num_masked)
    for b in range(2):
        k = 49 - int(result.num_masked[b])
        keep = result.ids_keep[b]
        assert bool((keep[k:] == -1).all()) and not bool(result.mask[b, keep[:k]].any())
        order = torch.argsort(result.noise[b], stable=True)
        assert torch.equal(order[:k], keep[:k])
        assert torch.equal(torch.argsort(result.ids_restore[b]), order)
    assert torch.equal(result.active(), ~result.mask.view(2, 1, 7, 7))
    pyramid = result.active_pyramid([1, 2, 4])
    assert [tuple(p.shape) for p in pyramid] == [(2, 1, 7, 7), (2, 1, 14, 14), (2, 1, 28, 28)]
    assert torch.equal(pyramid[2][:, :, ::4, ::4], result.active())
    pixels = result.pixel_mask(32)
    assert pixels.shape == (2, 1, 224, 224)
    assert torch.equal(pixels[:, :, ::32, ::32], result.mask.view(2, 1, 7, 7))


def test_quantile_regions_and_other_policies():
    heat = _heatmaps(3, seed=2)
    masker = mwm.TextGuidedMasker((7, 7), quantiles=(0.25,), policy="fixed_total", ratio=0.5,
                                  seed=1)
    result = masker(heat)
    assert result.num_masked.tolist() == [49 - int(49 * 0.5)] * 3
    scores = mwm.heatmap_to_patch_scores(heat, (7, 7))
    regions = mwm.regions_from_quantiles(scores, [0.25])
    expected = mwm.generate_masks((7, 7), 3, policy="fixed_total", ratio=0.5,
                                  region_ratios=(0.4, 0.8), regions=regions, seed=1)
    assert torch.equal(result.ids_keep, expected.ids_keep)
    weighted = mwm.TextGuidedMasker((7, 7), policy="weighted", ratio=0.5, seed=1)(heat)
    assert torch.equal(weighted.ids_keep, mwm.generate_masks(
        (7, 7), 3, policy="weighted", ratio=0.5, scores=scores, seed=1).ids_keep)


def test_masker_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"thresholds = None and quantiles = None"):
        mwm.TextGuidedMasker((7, 7), thresholds=None)
    with pytest.raises(ValueError,
                       match=r"preset = 'heavy': must be one of default, medium, light"):
        mwm.TextGuidedMasker.from_preset((7, 7), "heavy")
    with pytest.raises(ValueError, match=r"region_ratios = \[0.4\]: need 2 ratios"):
        mwm.TextGuidedMasker((7, 7), region_ratios=(0.4,))
