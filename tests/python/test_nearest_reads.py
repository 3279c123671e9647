"""`nearest` pooling reads and validates only the pixels it samples (PyTorch's
interpolate(mode="nearest") index rule): a NaN elsewhere cannot change a score, so it is not an
error; a NaN at a sampled pixel is, named by its index. The area reductions read every pixel."""

import pytest
import torch
import torch.nn.functional as F

import mwm


def _sampled(shape, grid):
    """Flat indices of the pixels interpolate(mode="nearest") reads for `grid`."""
    index = torch.arange(int(torch.tensor(shape).prod()), dtype=torch.float64).view(1, 1, *shape)
    return set(F.interpolate(index, size=grid, mode="nearest").flatten().long().tolist())


@pytest.mark.parametrize("shape,grid", [((224, 224), (7, 7)), ((30, 17), (4, 6)),
                                        ((5, 3), (7, 7)), ((12, 10, 9), (4, 4, 4))])
def test_nan_outside_the_sampled_pixels_changes_nothing(shape, grid):
    g = torch.Generator().manual_seed(3)
    heat = torch.rand(2, *shape, generator=g)
    expected = mwm.heatmap_to_patch_scores(heat, grid, reduction="nearest")
    sampled = _sampled(shape, grid)
    pixels = heat[1].numel()
    unsampled = [p for p in range(pixels) if p not in sampled]
    assert unsampled or len(sampled) == pixels
    poisoned = heat.clone()
    poisoned[1].view(-1)[unsampled] = float("nan")
    scores = mwm.heatmap_to_patch_scores(poisoned, grid, reduction="nearest")
    assert torch.equal(scores, expected)
    if unsampled:  # the area mean reads every pixel, so it sees the NaN
        with pytest.raises(ValueError, match=r"NaN or infinity"):
            mwm.heatmap_to_patch_scores(poisoned, grid, reduction="mean")


def test_nan_at_a_sampled_pixel_is_an_error_naming_it():
    heat = torch.rand(3, 224, 224)
    sampled = sorted(_sampled((224, 224), (7, 7)))
    heat[2].view(-1)[sampled[5]] = float("inf")
    heat[2].view(-1)[sampled[5] - 1] = float("nan")  # not sampled: not the one named
    flat = 2 * 224 * 224 + sampled[5]
    with pytest.raises(ValueError, match=rf"heatmaps\[{flat}\] = inf"):
        mwm.heatmap_to_patch_scores(heat, (7, 7), reduction="nearest")
    scores = mwm.heatmap_to_patch_scores(heat, (7, 7), reduction="nearest", nan_policy="zero")
    assert scores[2, 5] == 0


def test_text_guided_masker_ignores_nan_the_reference_never_reads():
    g = torch.Generator().manual_seed(5)
    heat = torch.rand(4, 64, 64, generator=g)
    masker = mwm.TextGuidedMasker((8, 8), region_ratios=(0.4, 0.8), thresholds=(0.3,),
                                  reduction="nearest", seed=1)
    expected = masker(heat, offset=0)
    poisoned = heat.clone()
    sampled = _sampled((64, 64), (8, 8))
    unsampled = [p for p in range(64 * 64) if p not in sampled]
    poisoned.view(4, -1)[:, unsampled] = float("nan")
    result = masker(poisoned, offset=0)
    assert torch.equal(result.mask, expected.mask)
    assert torch.equal(result.ids_restore, expected.ids_restore)
