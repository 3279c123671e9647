import math

import pytest
import torch
import torch.nn.functional as F

from mwm.grounding import (
    boxes_to_heatmap,
    masks_to_heatmap,
    saliency_to_heatmap,
    similarity_to_heatmap,
)
from mwm.grounding.adapters import gaussian_smooth

# ------------------------------------------------------------------------------------ boxes


def test_pixel_box_covers_exactly_its_pixels():
    heat = boxes_to_heatmap([torch.tensor([[2.0, 3.0, 6.0, 8.0]])], (10, 10), [torch.tensor([0.7])])
    expected = torch.zeros(1, 10, 10)
    expected[0, 3:8, 2:6] = 0.7  # rows from y, columns from x
    assert heat.dtype == torch.float32
    assert torch.equal(heat, expected)


def test_normalized_boxes_match_pixel_boxes():
    pixel = boxes_to_heatmap([torch.tensor([[4.0, 2.0, 12.0, 6.0]])], (8, 16))
    normalized = boxes_to_heatmap([torch.tensor([[0.25, 0.25, 0.75, 0.75]])], (8, 16),
                                  normalized=True)
    assert torch.equal(pixel, normalized)
    assert pixel.sum() == 8 * 4


def test_box_expansion_is_about_the_center_and_clipped():
    grown = boxes_to_heatmap([torch.tensor([[4.0, 4.0, 6.0, 6.0]])], (10, 10), expand_ratio=2.0)
    assert torch.equal(grown[0].nonzero().amin(0), torch.tensor([3, 3]))
    assert torch.equal(grown[0].nonzero().amax(0), torch.tensor([6, 6]))
    clipped = boxes_to_heatmap([torch.tensor([[0.0, 0.0, 4.0, 4.0]])], (10, 10), expand_ratio=2.0)
    expected = torch.zeros(1, 10, 10)
    expected[0, :6, :6] = 1.0  # [-2, 6) clipped to [0, 6)
    assert torch.equal(clipped, expected)


def test_pixels_belong_to_a_box_by_their_centers():
    narrow = boxes_to_heatmap([torch.tensor([[0.6, 0.0, 1.4, 1.0]])], (1, 4))
    assert narrow.sum() == 0  # neither center 0.5 nor 1.5 is inside [0.6, 1.4)
    wide = boxes_to_heatmap([torch.tensor([[0.4, 0.0, 1.6, 1.0]])], (1, 4))
    assert torch.equal(wide[0, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_overlapping_boxes_take_the_max_score_and_images_are_independent():
    boxes = [torch.tensor([[0.0, 0.0, 6.0, 6.0], [3.0, 3.0, 8.0, 8.0]]), torch.zeros(0, 4)]
    scores = [torch.tensor([0.9, 0.4]), torch.zeros(0)]
    heat = boxes_to_heatmap(boxes, (8, 8), scores)
    assert heat.shape == (2, 8, 8)
    assert heat[0, 4, 4] == pytest.approx(0.9)  # overlap: max, not sum
    assert heat[0, 7, 7] == pytest.approx(0.4)
    assert heat[0, 0, 0] == pytest.approx(0.9)
    assert heat[1].abs().sum() == 0


def test_padded_box_tensor_ignores_zero_score_rows():
    boxes = torch.tensor([[[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 8.0, 8.0]]])
    scores = torch.tensor([[1.0, 0.0]])
    heat = boxes_to_heatmap(boxes, (8, 8), scores)
    assert heat.sum() == 4


def test_volume_boxes_fill_depth_rows_and_columns():
    heat = boxes_to_heatmap([torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])], (8, 8, 8))
    expected = torch.zeros(1, 8, 8, 8)
    expected[0, 3:6, 2:5, 1:4] = 1.0  # (x0, y0, z0, x1, y1, z1) -> [z, y, x]
    assert torch.equal(heat, expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(boxes=[torch.tensor([[5.0, 0.0, 2.0, 3.0]])]), r"boxes\[0\]\[0\]"),
        (dict(boxes=[torch.tensor([[0.0, 0.0, 2.0]])]), r"boxes\[0\] must be \(M, 4\)"),
        (dict(boxes=[torch.tensor([[0.0, 0.0, 2.0, 2.0]])], scores=[torch.tensor([1.5])]),
         r"scores\[0\] holds 1.5"),
        (dict(boxes=[torch.tensor([[0.0, 0.0, float("nan"), 2.0]])]), r"boxes\[0\]"),
        (dict(boxes=[torch.tensor([[0.0, 0.0, 2.0, 2.0]])], expand_ratio=0.0), "expand_ratio"),
        (dict(boxes=[torch.tensor([[0.0, 0.0, 2.0, 2.0]])], image_size=(0, 4)), "image_size"),
    ],
)
def test_box_errors_name_the_argument(kwargs, message):
    kwargs.setdefault("image_size", (4, 4))
    with pytest.raises(ValueError, match=message):
        boxes_to_heatmap(**kwargs)


# ------------------------------------------------------------------------------------ masks


def test_bool_masks_weighted_by_score_combine_by_max():
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[0, 1, 1:3] = True
    heat = masks_to_heatmap(masks, torch.tensor([[0.3, 0.8]]))
    assert heat.shape == (1, 4, 4)
    assert torch.allclose(heat[0, :, 0], torch.tensor([0.3, 0.8, 0.8, 0.0]))
    per_mask = masks_to_heatmap(masks, torch.tensor([[0.3, 0.8]]), combine=None)
    assert per_mask.shape == (1, 2, 4, 4)
    assert torch.equal(per_mask.amax(1), heat)


def test_logits_go_through_a_sigmoid_and_probabilities_pass_through():
    logits = torch.tensor([[[[-2.0, 0.0], [3.0, 10.0]]]])
    assert torch.allclose(masks_to_heatmap(logits), torch.sigmoid(logits)[:, 0])
    probs = torch.tensor([[[0.1, 0.9], [0.5, 0.0]]])  # (B, H, W): one mask per image
    assert torch.equal(masks_to_heatmap(probs), probs)
    assert torch.allclose(masks_to_heatmap(probs, kind="logits"), torch.sigmoid(probs))


def test_low_resolution_masks_resize_to_the_image():
    logits = torch.full((2, 1, 4, 4), -5.0)
    logits[:, :, :2, :2] = 5.0
    heat = masks_to_heatmap(logits, image_size=(16, 16))
    assert heat.shape == (2, 16, 16)
    assert heat[0, 0, 0] > 0.99 and heat[0, 15, 15] < 0.01
    assert float(heat.min()) >= 0.0 and float(heat.max()) <= 1.0


def test_volume_masks():
    masks = torch.zeros(1, 1, 3, 4, 4, dtype=torch.bool)
    masks[0, 0, 1, 2, 2] = True
    heat = masks_to_heatmap(masks, spatial_dims=3)
    assert heat.shape == (1, 3, 4, 4)
    assert heat.sum() == 1 and heat[0, 1, 2, 2] == 1


def test_mask_errors():
    with pytest.raises(ValueError, match="kind='binary'"):
        masks_to_heatmap(torch.tensor([[[[0.5]]]]), kind="binary")
    with pytest.raises(ValueError, match=r"scores must have shape \(1, 2\)"):
        masks_to_heatmap(torch.zeros(1, 2, 3, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="masks holds 2.0"):
        masks_to_heatmap(torch.full((1, 1, 2, 2), 2.0), kind="probabilities")
    with pytest.raises(ValueError, match="NaN or infinity"):
        masks_to_heatmap(torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="kind"):
        masks_to_heatmap(torch.zeros(1, 1, 2, 2), kind="soft")


# ------------------------------------------------------------------------------- similarity


def test_minmax_similarity_keeps_the_best_patch_and_spans_zero_to_one():
    torch.manual_seed(0)
    sims = torch.rand(3, 16) * 0.4 - 0.2
    heat = similarity_to_heatmap(sims, (4, 4))  # image size = grid: no resampling
    assert heat.shape == (3, 4, 4)
    flat = heat.reshape(3, -1)
    assert (torch.allclose(flat.amin(1), torch.zeros(3))
            and torch.allclose(flat.amax(1), torch.ones(3)))
    assert torch.equal(flat.argmax(1), sims.argmax(1))
    expected = ((sims - sims.amin(1, keepdim=True))
                / (sims.amax(1, keepdim=True) - sims.amin(1, keepdim=True)))
    assert torch.allclose(flat, expected, atol=1e-6)


def test_softmax_similarity_is_a_peak_normalized_softmax():
    sims = torch.tensor([[0.30, 0.25, 0.10, 0.29]])
    heat = similarity_to_heatmap(sims, (2, 2), normalize="softmax", temperature=0.05)
    soft = torch.softmax(sims / 0.05, dim=1)
    assert torch.allclose(heat.reshape(1, -1), soft / soft.max(), atol=1e-6)
    sharp = similarity_to_heatmap(sims, (2, 2), normalize="softmax", temperature=0.001)
    assert sharp.reshape(-1)[0] == 1.0 and sharp.reshape(-1)[1:].max() < 1e-4


def test_similarity_is_upsampled_bilinearly_to_the_image():
    sims = torch.zeros(1, 2, 2)
    sims[0, 1, 0] = 1.0
    heat = similarity_to_heatmap(sims, (8, 8))
    reference = F.interpolate(sims[:, None], size=(8, 8), mode="bilinear",
                              align_corners=False)[:, 0]
    assert torch.allclose(heat, reference)
    assert heat[0, 4:, :4].mean() > heat[0, :4, 4:].mean()


def test_prompt_axis_and_explicit_grid():
    sims = torch.randn(2, 3, 12)  # (B, K, N) on a 3x4 grid
    heat = similarity_to_heatmap(sims, (6, 8), grid=(3, 4))
    assert heat.shape == (2, 3, 6, 8)
    assert torch.equal(
        similarity_to_heatmap(sims[:, 1], (6, 8), grid=(3, 4)), heat[:, 1]
    )


def test_similarity_errors():
    with pytest.raises(ValueError, match="not a square grid"):
        similarity_to_heatmap(torch.randn(1, 12), (8, 8))
    with pytest.raises(ValueError, match="ends neither in the grid"):
        similarity_to_heatmap(torch.randn(1, 10), (8, 8), grid=(3, 3))
    with pytest.raises(ValueError, match="normalize"):
        similarity_to_heatmap(torch.randn(1, 4), (2, 2), normalize="sigmoid")
    with pytest.raises(ValueError, match="temperature"):
        similarity_to_heatmap(torch.randn(1, 4), (2, 2), normalize="softmax", temperature=0)


def test_constant_similarity_gives_a_zero_map_not_nan():
    heat = similarity_to_heatmap(torch.full((1, 4), 0.2), (4, 4))
    assert torch.equal(heat, torch.zeros(1, 4, 4))


# --------------------------------------------------------------------------------- saliency


def test_saliency_is_min_max_normalized_per_map():
    sal = torch.stack([torch.linspace(-3, 5, 16).reshape(4, 4),
                       torch.linspace(10, 20, 16).reshape(4, 4)])
    heat = saliency_to_heatmap(sal)
    assert torch.allclose(heat[0], (sal[0] + 3) / 8) and torch.allclose(heat[1], (sal[1] - 10) / 10)


def test_absolute_saliency_ranks_large_negative_gradients_high():
    sal = torch.tensor([[[-4.0, 0.0], [1.0, 2.0]]])
    assert saliency_to_heatmap(sal, absolute=True)[0, 0, 0] == 1.0
    assert saliency_to_heatmap(sal)[0, 0, 0] == 0.0


def test_gaussian_smoothing_preserves_mass_and_symmetry_away_from_edges():
    delta = torch.zeros(1, 21, 21)
    delta[0, 10, 10] = 1.0
    blurred = gaussian_smooth(delta, 1.5, 2)
    assert blurred.sum() == pytest.approx(1.0, abs=1e-5)
    assert (torch.allclose(blurred, blurred.flip(-1))
            and torch.allclose(blurred, blurred.transpose(-1, -2)))
    sigma_estimate = math.sqrt(float((blurred[0].sum(0) * (torch.arange(21) - 10.0) ** 2).sum()))
    assert sigma_estimate == pytest.approx(1.5, rel=0.05)
    heat = saliency_to_heatmap(delta, sigma=1.5, image_size=(42, 42))
    assert heat.shape == (1, 42, 42) and float(heat.max()) <= 1.0 and heat[0, 21, 21] > 0.9


def test_volume_saliency_and_errors():
    heat = saliency_to_heatmap(torch.randn(2, 4, 6, 6), spatial_dims=3, sigma=1.0)
    assert heat.shape == (2, 4, 6, 6)
    with pytest.raises(ValueError, match="sigma"):
        saliency_to_heatmap(torch.randn(1, 4, 4), sigma=-1)
    with pytest.raises(ValueError, match="saliency must be"):
        saliency_to_heatmap(torch.randn(4, 4))
    with pytest.raises(ValueError, match=r"saliency\[0, 1, 1\]"):
        saliency_to_heatmap(torch.tensor([[[0.0, 1.0], [2.0, float("inf")]]]))
