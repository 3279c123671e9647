("ClipHeatmapGenerator over small randomly initialized CLIP models built here; "
 "nothing downloads.")

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mwm.grounding import ClipHeatmapGenerator  # noqa: E402


def _import_open_clip():
    import open_clip

    return open_clip


# ------------------------------------------------------------------------- transformers CLIP

@pytest.fixture(scope="module")
def hf_clip(tiny_hf_clip):
    return tiny_hf_clip(layers=2)


def test_hf_heatmaps_shape_range_and_batching(char_tokenizer, hf_clip):
    generator = ClipHeatmapGenerator(hf_clip, char_tokenizer)
    assert generator.backend == "transformers"
    torch.manual_seed(1)
    images = torch.randn(3, 3, 32, 32)
    heat = generator(images, ["a tumor", "brain tissue"])
    assert heat.shape == (3, 2, 32, 32) and heat.dtype == torch.float32
    assert float(heat.min()) >= 0.0 and float(heat.max()) <= 1.0
    single = generator(images[1:2], "a tumor")
    assert single.shape == (1, 32, 32)
    assert torch.allclose(single[0], heat[1, 0], atol=1e-5)  # batching does not change a map


def test_hf_similarity_is_the_cosine_of_projected_patch_and_text_embeddings(
        char_tokenizer, hf_clip):
    generator = ClipHeatmapGenerator(hf_clip, char_tokenizer)
    torch.manual_seed(2)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden = hf_clip.vision_model(pixel_values=images).last_hidden_state[:, 1:]
        patches = hf_clip.visual_projection(hf_clip.vision_model.post_layernorm(hidden))
        tokens = char_tokenizer(["lesion"])
        text = hf_clip.text_projection(hf_clip.text_model(**tokens).pooler_output)
    expected = F.cosine_similarity(patches, text[:, None], dim=-1).reshape(2, 1, 4, 4)
    assert torch.allclose(generator.similarity(images, ["lesion"]), expected, atol=1e-5)


def test_a_matching_text_embedding_lights_up_its_patch(char_tokenizer, hf_clip):
    generator = ClipHeatmapGenerator(hf_clip, char_tokenizer)
    torch.manual_seed(3)
    images = torch.randn(1, 3, 32, 32)
    patches = generator.patch_embeddings(images)  # (1, 4, 4, E)
    target = patches[0, 2, 1]
    heat = generator(images, text_embeddings=target[None], image_size=(4, 4))
    assert heat.shape == (1, 1, 4, 4)
    assert heat[0, 0, 2, 1] == pytest.approx(1.0)
    assert int(heat[0, 0].argmax()) == 2 * 4 + 1


def test_prompts_change_the_map_and_calls_are_deterministic(char_tokenizer, hf_clip):
    generator = ClipHeatmapGenerator(hf_clip, char_tokenizer)
    torch.manual_seed(4)
    images = torch.randn(2, 3, 32, 32)
    first = generator(images, ["tumor", "skull"])
    again = ClipHeatmapGenerator(hf_clip, char_tokenizer)(images, ["tumor", "skull"])
    assert torch.equal(first, again)
    assert not torch.allclose(first[:, 0], first[:, 1], atol=1e-3)
    other_images = generator(images.flip(-1), ["tumor", "skull"])
    assert not torch.allclose(first, other_images, atol=1e-3)


def test_softmax_normalization_peaks_at_one(char_tokenizer, hf_clip):
    generator = ClipHeatmapGenerator(hf_clip, char_tokenizer, normalize="softmax", temperature=0.05)
    heat = generator(torch.randn(2, 3, 32, 32), ["tumor"], image_size=(4, 4))
    assert torch.allclose(heat.reshape(2, -1).amax(1), torch.ones(2))


def test_generator_errors(char_tokenizer, hf_clip):
    generator = ClipHeatmapGenerator(hf_clip)
    with pytest.raises(ValueError, match="no tokenizer"):
        generator(torch.randn(1, 3, 32, 32), ["tumor"])
    with pytest.raises(ValueError, match="images must be"):
        generator(torch.randn(3, 32, 32), text_embeddings=torch.randn(1, 16))
    with pytest.raises(ValueError, match="exactly one of"):
        generator(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="dimension 16"):
        generator(torch.randn(1, 3, 32, 32), text_embeddings=torch.randn(1, 5))
    with pytest.raises(ValueError, match="prompts holds ''"):
        ClipHeatmapGenerator(hf_clip, char_tokenizer)(torch.randn(1, 3, 32, 32), [""])
    with pytest.raises(TypeError, match="neither an open_clip CLIP"):
        ClipHeatmapGenerator(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------ open_clip


@pytest.fixture(scope="module")
def open_clip_tiny(tmp_path_factory):
    open_clip = _import_open_clip()
    folder = tmp_path_factory.mktemp("open_clip_configs")
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                       "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 2},
    }
    (folder / "mwm-test-tiny-vit.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model = open_clip.create_model("mwm-test-tiny-vit", pretrained=None)
    tokenizer = open_clip.get_tokenizer("mwm-test-tiny-vit")
    return open_clip, model, tokenizer


def test_open_clip_heatmaps_match_the_projected_patch_tokens(open_clip_tiny):
    _, model, tokenizer = open_clip_tiny
    generator = ClipHeatmapGenerator(model, tokenizer)
    assert generator.backend == "open_clip"
    torch.manual_seed(5)
    images = torch.randn(2, 3, 32, 32)
    heat = generator(images, ["a brain tumor", "the skull"])
    assert heat.shape == (2, 2, 32, 32)
    assert float(heat.min()) >= 0.0 and float(heat.max()) <= 1.0
    assert not model.visual.output_tokens  # restored after the call
    # The pooled class token through the same path is what open_clip's encode_image returns,
    # so the patch tokens come out of the same layer norm and projection.
    visual = model.visual
    with torch.no_grad():
        x = visual.transformer(visual._embeds(images))
        expected_patches = visual.ln_post(x)[:, 1:] @ visual.proj
        text = model.encode_text(tokenizer(["a brain tumor"]))
        assert torch.allclose(visual.ln_post(x)[:, 0] @ visual.proj, model.encode_image(images),
                              atol=1e-5)
    expected = F.cosine_similarity(expected_patches, text[:, None], dim=-1).reshape(2, 1, 4, 4)
    assert torch.allclose(generator.similarity(images, ["a brain tumor"]), expected, atol=1e-5)
    assert torch.equal(heat, generator(images, ["a brain tumor", "the skull"]))
    assert not torch.allclose(heat[:, 0], heat[:, 1], atol=1e-3)


def test_timm_tower_like_biomedclip():
    """BiomedCLIP's open_clip tower is a TimmModel: a timm ViT `trunk` pooling its class token and
    a linear `head`. A tiny tower of that structure (the real TimmModel only builds 224 px ViTs)."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)

    class TimmTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = VisionTransformer(
                img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0
            )
            self.head = torch.nn.Sequential(torch.nn.Dropout(0.0),
                                            torch.nn.Linear(32, 16, bias=False))

        def forward(self, images):
            return self.head(self.trunk(images))

    class TinyBiomedClip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = TimmTower()
            self.text = torch.nn.Embedding(50, 16)

        def encode_text(self, ids):
            return self.text(ids).mean(1)

    model = TinyBiomedClip()
    generator = ClipHeatmapGenerator(model,
                                     lambda prompts: torch.tensor([[len(p), 1] for p in prompts]))
    assert generator.backend == "open_clip"
    images = torch.randn(2, 3, 32, 32)
    patches = generator.patch_embeddings(images)
    assert patches.shape == (2, 4, 4, 16)
    with torch.no_grad():
        tokens = model.visual.trunk.forward_features(images)
        # The class token through the same norm and head is the tower's image embedding.
        assert torch.allclose(model.visual.head(tokens[:, 0]), model.visual(images), atol=1e-5)
        expected = F.normalize(model.visual.head(tokens[:, 1:]), dim=-1).reshape(2, 4, 4, 16)
    assert torch.allclose(patches, expected, atol=1e-5)
    heat = generator(images, ["tumor", "tissue"])
    assert heat.shape == (2, 2, 32, 32) and float(heat.max()) <= 1.0


def test_from_encoders_accepts_any_model():
    torch.manual_seed(6)
    projection = torch.randn(3 * 16, 8)

    def patch_encoder(images):
        cells = images.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, 3, 2, 3, 4, 4) on 8x12 images
        cells = cells.permute(0, 2, 3, 1, 4, 5).reshape(images.shape[0], 6, -1)
        return cells @ projection

    vocabulary = {"tumor": torch.randn(8), "tissue": torch.randn(8)}
    generator = ClipHeatmapGenerator.from_encoders(
        patch_encoder, lambda ps: torch.stack([vocabulary[p] for p in ps]))
    heat = generator(torch.randn(2, 3, 8, 12), ["tumor", "tissue"])
    assert heat.shape == (2, 2, 8, 12)
    assert generator.patch_embeddings(torch.randn(1, 3, 8, 12)).shape == (1, 2, 3, 8)


def test_weights_saved_to_a_local_folder_give_the_same_maps(char_tokenizer, hf_clip, tmp_path):
    """docs/grounding.md's route: a CLIP model loaded from local files, nothing downloaded."""
    from transformers import CLIPModel

    hf_clip.save_pretrained(tmp_path / "clip")
    loaded = CLIPModel.from_pretrained(tmp_path / "clip", local_files_only=True)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    expected = ClipHeatmapGenerator(hf_clip, char_tokenizer)(images, ["tumor", "skull"])
    got = ClipHeatmapGenerator(loaded, char_tokenizer)(images, ["tumor", "skull"])
    assert torch.equal(got, expected)


def test_maps_carry_no_autograd_graph(char_tokenizer, hf_clip):
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    generator = ClipHeatmapGenerator(hf_clip, char_tokenizer)
    heat = generator(images, ["tumor"])
    assert not heat.requires_grad and heat.grad_fn is None
    assert not generator.similarity(images, ["tumor"]).requires_grad
    assert not generator.patch_embeddings(images).requires_grad
