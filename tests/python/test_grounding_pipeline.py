"""TextRegionPipeline and SAM refinement over tiny random models built here; nothing downloads."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from test_grounding_clip import _make_torchvision_importable, char_tokenizer  # noqa: E402

_make_torchvision_importable()

from test_grounding_m2ib import tiny_hf_clip  # noqa: E402

from mwm.grounding import (  # noqa: E402
    SamBoxRefiner,
    TextRegionPipeline,
    largest_component_boxes,
    m2ib_heatmaps,
    mwm_region_map,
    prompt_bank_from_dict,
    resize_maps,
)
from mwm.grounding.pipeline import display_rgb  # noqa: E402
from mwm.grounding.sam import scaled_bounding_box  # noqa: E402

M2IB = dict(layer=1, steps=3, samples=2)


def tiny_sam(seed=0):
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    vision = SamVisionConfig(
        hidden_size=32,
        output_channels=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=8,
        mlp_dim=64,
        global_attn_indexes=[1],
        window_size=4,
        num_pos_feats=8,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        mlp_dim=32,
        iou_head_hidden_dim=16,
    )
    torch.manual_seed(seed)
    model = SamModel(
        SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    )
    processor = SamProcessor(
        image_processor=SamImageProcessor(
            size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}
        )
    )
    return model.eval(), processor


@pytest.fixture(scope="module")
def sam():
    return SamBoxRefiner(*tiny_sam())


@pytest.fixture(scope="module")
def hf_clip():
    return tiny_hf_clip()


def raw_images(seed, shapes=((40, 48), (32, 32), (50, 30))):
    g = np.random.default_rng(seed)
    return [g.normal(100.0, 30.0, size=shape).astype(np.float32) for shape in shapes]


# ----------------------------------------------------------------------------------- SAM


def test_sam_masks_come_back_at_image_size(sam):
    image = display_rgb(raw_images(0)[0])
    boxes = [((4, 20), (6, 30)), ((10, 38), (20, 46))]
    masks = sam.masks(image, boxes)
    assert masks.shape == (2, 40, 48) and masks.dtype == bool
    assert sam.masks(image, []).shape == (0, 40, 48)
    assert np.array_equal(masks, sam.masks(image, boxes))  # deterministic


def test_sam_refinement_fills_each_segments_scaled_bounding_box(sam):
    image = display_rgb(raw_images(1)[0])
    boxes = [((4, 20), (6, 30)), ((10, 38), (20, 46))]
    masks = sam.masks(image, boxes)
    roi, filled = sam.refine(image, boxes, expand_ratio=1.5)
    expected = np.zeros((40, 48), dtype=bool)
    for mask, box in zip(masks, filled):
        if mask.any():
            rows, cols = np.nonzero(mask)
            r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            hr, hc = (r1 - r0) * 0.75, (c1 - c0) * 0.75
            mid_r, mid_c = (r0 + r1) / 2, (c0 + c1) / 2
            want = (
                (max(0, int(np.ceil(mid_r - hr - 0.5))), min(40, int(np.ceil(mid_r + hr - 0.5)))),
                (max(0, int(np.ceil(mid_c - hc - 0.5))), min(48, int(np.ceil(mid_c + hc - 0.5)))),
            )
            assert box == want
        expected[box[0][0] : box[0][1], box[1][0] : box[1][1]] = True
    assert np.array_equal(roi, expected)


def test_an_empty_segment_keeps_its_scaled_prompt_box(sam, monkeypatch):
    image = display_rgb(raw_images(2)[0])
    monkeypatch.setattr(
        sam, "masks", lambda image, boxes: np.zeros((len(boxes), 40, 48), dtype=bool)
    )
    roi, filled = sam.refine(image, [((10, 20), (10, 30))], expand_ratio=2.0)
    assert filled == [((5, 25), (0, 40))]
    assert roi.sum() == 20 * 40


def test_sam_loads_from_a_local_folder(sam, tmp_path):
    sam.model.save_pretrained(tmp_path / "sam")
    sam.processor.save_pretrained(tmp_path / "sam")
    loaded = SamBoxRefiner.from_pretrained(tmp_path / "sam")
    image = display_rgb(raw_images(3)[0])
    boxes = [((4, 20), (6, 30))]
    assert np.array_equal(loaded.masks(image, boxes), sam.masks(image, boxes))


def test_sam_errors(sam):
    with pytest.raises(ValueError, match="uint8 RGB"):
        sam.masks(np.zeros((8, 8), dtype=np.uint8), [((0, 4), (0, 4))])
    with pytest.raises(TypeError, match="SamModel"):
        SamBoxRefiner(torch.nn.Linear(2, 2), sam.processor)


# ------------------------------------------------------------------------------ pipeline


def test_pipeline_is_m2ib_then_the_reference_region_step(hf_clip):
    pipeline = TextRegionPipeline(hf_clip, char_tokenizer, prompts=["tumor", "edema"], m2ib=M2IB)
    images = raw_images(4)
    out = pipeline(images)
    pixels = pipeline.pixels(images)
    assert pixels.shape == (3, 3, 32, 32)
    direct = m2ib_heatmaps(hf_clip, pixels, ["tumor", "edema"], tokenizer=char_tokenizer, **M2IB)
    for i, image in enumerate(images):
        heat = resize_maps(direct[i], image.shape).clamp(0, 1)
        assert torch.allclose(out.heatmaps[i], heat, atol=1e-6)
        assert out.heatmaps[i].shape == (2, *image.shape)
        expected = mwm_region_map(heat, threshold=0.3, num_components=2)
        assert torch.equal(out.roi_maps[i], expected)
        assert torch.equal(out.region_maps[i], expected.any(0).float())
        assert all(len(b) <= 2 for b in out.boxes[i])
    assert pipeline.masker_kwargs == {"thresholds": [0.5], "region_ratios": [0.4, 0.8]}


def test_similarity_attribution_and_expand_ratio(hf_clip):
    from mwm.grounding import ClipHeatmapGenerator

    pipeline = TextRegionPipeline(
        hf_clip,
        char_tokenizer,
        prompts=["tumor"],
        attribution="similarity",
        threshold=0.5,
        num_components=1,
        expand_ratio=1.4,
    )
    images = raw_images(5, shapes=((32, 32), (32, 32)))
    out = pipeline(images)
    heat = ClipHeatmapGenerator(hf_clip, char_tokenizer)(pipeline.pixels(images), ["tumor"])
    assert torch.allclose(torch.stack(out.heatmaps), heat, atol=1e-6)
    expected = mwm_region_map(heat[:, 0], threshold=0.5, num_components=1, expand_ratio=1.4)
    assert torch.equal(out.stacked_region_maps(), expected.float())


def test_the_masker_reads_the_region_maps(hf_clip):
    pipeline = TextRegionPipeline(hf_clip, char_tokenizer, prompts=["tumor"], m2ib=M2IB)
    out = pipeline(raw_images(6, shapes=((32, 32), (32, 32), (32, 32))))
    regions = out.stacked_region_maps()
    masker = pipeline.masker((4, 4), region_ratios=[0.0, 1.0])  # mask exactly the ROI patches
    result = masker(regions)
    roi_patches = regions.reshape(3, 4, 8, 4, 8).mean(dim=(2, 4)).reshape(3, 16) > 0.5
    assert torch.equal(result.mask.bool(), roi_patches)
    assert 0 < int(roi_patches.sum()) < 48


def test_prompt_bank_levels(hf_clip):
    bank = prompt_bank_from_dict(
        {
            "version": 1,
            "presets": {"default": {"high": 0.8, "low": 0.4}},
            "default_preset": "default",
            "modalities": {
                "mri": {
                    "prompts": [
                        {"text": "tumor", "ratio": "high"},
                        {"text": "brain", "ratio": 0.6},
                    ],
                    "background": "low",
                    "threshold": 0.4,
                    "num_components": 1,
                }
            },
        }
    )
    pipeline = TextRegionPipeline(
        hf_clip, char_tokenizer, prompt_bank=bank, modality="mri", m2ib=M2IB
    )
    assert pipeline.threshold == 0.4 and pipeline.num_components == 1
    assert pipeline.masker_kwargs == {"thresholds": [0.25, 0.75], "region_ratios": [0.4, 0.6, 0.8]}
    out = pipeline(raw_images(7, shapes=((32, 32),)))
    roi = out.roi_maps[0]
    level = torch.where(roi[0], 1.0, torch.where(roi[1], 0.5, 0.0))  # tumor (level 2) wins overlaps
    assert torch.equal(out.region_maps[0], level)
    assert pipeline.masker((4, 4))(out.stacked_region_maps()).mask.shape == (1, 16)


def test_pipeline_with_sam(hf_clip, sam):
    pipeline = TextRegionPipeline(
        hf_clip, char_tokenizer, prompts=["tumor"], sam=sam, expand_ratio=1.2, m2ib=M2IB
    )
    images = raw_images(8, shapes=((40, 48),))
    out = pipeline(images)
    heat = out.heatmaps[0][0]
    tight = largest_component_boxes((heat > 0.3).numpy(), 2, 1.0)
    masks = sam.masks(display_rgb(images[0]), tight)
    assert len(out.boxes[0][0]) == len(tight) > 0
    for box, mask in zip(out.boxes[0][0], masks):
        if mask.any():
            assert box == scaled_bounding_box(mask, 1.2)
    filled = np.zeros((40, 48), dtype=bool)
    for (r0, r1), (c0, c1) in out.boxes[0][0]:
        filled[r0:r1, c0:c1] = True
    assert np.array_equal(out.roi_maps[0][0].numpy(), filled)


def test_pipeline_errors(hf_clip):
    with pytest.raises(ValueError, match="attribution = 'gradcam'"):
        TextRegionPipeline(hf_clip, char_tokenizer, prompts=["a"], attribution="gradcam")
    with pytest.raises(ValueError, match="pass prompts"):
        TextRegionPipeline(hf_clip, char_tokenizer)
    with pytest.raises(ValueError, match="go together"):
        TextRegionPipeline(hf_clip, char_tokenizer, modality="mri")
    with pytest.raises(ValueError, match="preset = 'huge'"):
        TextRegionPipeline(hf_clip, char_tokenizer, prompts=["a"], preset="huge")
    pipeline = TextRegionPipeline(hf_clip, char_tokenizer, prompts=["a"], m2ib=M2IB)
    with pytest.raises(ValueError, match=r"images\[1\] has shape"):
        pipeline([np.zeros((8, 8)), np.zeros((2, 8, 8))])
    with pytest.raises(ValueError, match=r"images\[0\] holds NaN"):
        pipeline([np.full((8, 8), np.nan)])
    with pytest.raises(ValueError, match="pass \\[image\\]"):
        pipeline(np.zeros((8, 8)))


def test_bad_m2ib_options_fail_when_the_pipeline_is_built(hf_clip):
    with pytest.raises(ValueError, match="layer = 9: the vision tower has 3 blocks"):
        TextRegionPipeline(hf_clip, char_tokenizer, prompts=["a"], m2ib=dict(layer=9))
    with pytest.raises(ValueError, match="samples = 0"):
        TextRegionPipeline(hf_clip, char_tokenizer, prompts=["a"], m2ib=dict(layer=1, samples=0))
    with pytest.raises(ValueError, match=r"m2ib\['tokenizer'\] is set by the pipeline"):
        TextRegionPipeline(hf_clip, char_tokenizer, prompts=["a"], m2ib=dict(tokenizer=None))
