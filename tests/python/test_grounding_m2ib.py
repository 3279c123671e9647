"""M2IB attribution over small random CLIP-style models built here; nothing downloads."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from test_grounding_clip import EOS, _make_torchvision_importable, char_tokenizer  # noqa: E402

_make_torchvision_importable()

from mwm.grounding import m2ib_heatmaps  # noqa: E402
from mwm.grounding.m2ib import encode_prompts  # noqa: E402


def tiny_hf_clip(layers=3, seed=0, dtype=torch.float32):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=100,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            eos_token_id=EOS,
            bos_token_id=98,
            pad_token_id=0,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
        ),
        projection_dim=16,
    )
    return CLIPModel(config).to(dtype).eval()


@pytest.fixture(scope="module")
def hf_clip():
    return tiny_hf_clip()


@pytest.fixture(scope="module")
def open_clip_tiny(tmp_path_factory):
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_m2ib")
    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 3,
            "width": 32,
            "head_width": 16,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }
    (folder / "mwm-m2ib-tiny-vit.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model = open_clip.create_model("mwm-m2ib-tiny-vit", pretrained=None)
    return model.eval(), open_clip.get_tokenizer("mwm-m2ib-tiny-vit")


class TimmTower(torch.nn.Module):
    """BiomedCLIP's open_clip vision tower structure: a timm ViT `trunk` and a linear `head`."""

    def __init__(self, depth=2, global_pool="token", embed_dim=32, out_dim=16):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.trunk = VisionTransformer(
            img_size=32,
            patch_size=8,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=2,
            num_classes=0,
            global_pool=global_pool,
        )
        self.head = torch.nn.Sequential(
            torch.nn.Dropout(0.0), torch.nn.Linear(embed_dim, out_dim, bias=False)
        )

    def forward(self, images):
        return self.head(self.trunk(images))


class TinyBiomedClip(torch.nn.Module):
    def __init__(self, **tower):
        super().__init__()
        self.visual = TimmTower(**tower)
        self.text = torch.nn.Embedding(50, self.visual.head[1].out_features)

    def encode_image(self, images):
        return self.visual(images)

    def encode_text(self, ids):
        return self.text(ids).mean(1)


def id_tokenizer(prompts):
    return torch.tensor([[len(p) % 50, (ord(p[0]) * 7) % 50] for p in prompts])


OPTIONS = dict(layer=1, steps=4, samples=3)


def images_of(seed, count=3):
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------- shapes


def test_shapes_and_range_for_every_backend(hf_clip, open_clip_tiny):
    torch.manual_seed(0)
    biomed = TinyBiomedClip().eval()
    oc_model, oc_tokenizer = open_clip_tiny
    images = images_of(1)
    # The timm tower pools its class token right after its last block: the bottleneck goes on
    # block 0 so that patch tokens still feed the embedding through attention.
    cases = [(hf_clip, char_tokenizer, 1), (oc_model, oc_tokenizer, 1), (biomed, id_tokenizer, 0)]
    for model, tokenizer, layer in cases:
        options = dict(OPTIONS, layer=layer)
        heat = m2ib_heatmaps(
            model, images, ["a tumor", "the skull"], tokenizer=tokenizer, **options
        )
        assert heat.shape == (3, 2, 32, 32) and heat.dtype == torch.float32
        assert float(heat.min()) == 0.0 and float(heat.max()) == pytest.approx(1.0)
        single = m2ib_heatmaps(
            model, images, "a tumor", tokenizer=tokenizer, image_size=(20, 28), **options
        )
        assert single.shape == (3, 20, 28)
        assert not torch.allclose(heat[:, 0], heat[:, 1], atol=1e-3)  # the prompt matters


def test_prompts_as_token_ids_match_prompts_as_strings(hf_clip):
    images = images_of(2, 2)
    tokens = char_tokenizer(["lesion", "bone"])
    by_text = m2ib_heatmaps(
        hf_clip, images, ["lesion", "bone"], tokenizer=char_tokenizer, **OPTIONS
    )
    by_ids = m2ib_heatmaps(hf_clip, images, tokens, **OPTIONS)
    by_embedding = m2ib_heatmaps(
        hf_clip, images, text_embeddings=encode_prompts(hf_clip, tokens), **OPTIONS
    )
    assert torch.equal(by_text, by_ids)
    assert torch.equal(by_text, by_embedding)


def test_transformers_tokenizer_saved_locally(hf_clip, tmp_path):
    """Strings through a transformers tokenizer built offline from a tiny vocabulary."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "tumor</w>": 3, "t": 4, "u": 5}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    heat = m2ib_heatmaps(hf_clip, images_of(3, 1), ["a tumor"], tokenizer=tokenizer, **OPTIONS)
    ids = tokenizer(["a tumor"], return_tensors="pt")
    assert torch.equal(heat, m2ib_heatmaps(hf_clip, images_of(3, 1), dict(ids), **OPTIONS))


# ------------------------------------------------------------------------------ batching


@pytest.mark.parametrize("backend", ["transformers", "timm"])
def test_batching_gives_each_pair_its_own_heatmap(backend):
    if backend == "transformers":
        model, tokenizer = tiny_hf_clip(dtype=torch.float64), char_tokenizer
    else:
        torch.manual_seed(1)
        model, tokenizer = TinyBiomedClip().to(torch.float64).eval(), id_tokenizer
    options = dict(OPTIONS, layer=1 if backend == "transformers" else 0)
    images = images_of(4, 3).double()
    prompts = ["a tumor", "skull", "brain"]
    batched = m2ib_heatmaps(model, images, prompts, tokenizer=tokenizer, **options)
    assert not torch.allclose(batched[:, 0], batched[:, 1], atol=1e-3)
    for b in range(3):
        for k, prompt in enumerate(prompts):
            alone = m2ib_heatmaps(model, images[b : b + 1], prompt, tokenizer=tokenizer, **options)
            assert torch.allclose(batched[b, k], alone[0], atol=1e-6), (b, k)
    # float32 too, at float32 tolerance
    model32 = model.float()
    batched32 = m2ib_heatmaps(model32, images.float(), prompts, tokenizer=tokenizer, **options)
    alone32 = m2ib_heatmaps(model32, images[2:3].float(), prompts, tokenizer=tokenizer, **options)
    assert torch.allclose(batched32[2], alone32[0], atol=1e-3)


def test_the_same_seed_gives_the_same_maps_and_another_seed_others(hf_clip):
    images = images_of(5, 2)
    first = m2ib_heatmaps(hf_clip, images, ["tumor"], tokenizer=char_tokenizer, seed=3, **OPTIONS)
    again = m2ib_heatmaps(hf_clip, images, ["tumor"], tokenizer=char_tokenizer, seed=3, **OPTIONS)
    other = m2ib_heatmaps(hf_clip, images, ["tumor"], tokenizer=char_tokenizer, seed=4, **OPTIONS)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-4)


def test_optimization_changes_the_map():
    """With zero steps the map is the initial bottleneck's information, not the optimized one."""
    model = tiny_hf_clip()
    images = images_of(6, 1)
    start = m2ib_heatmaps(model, images, ["tumor"], tokenizer=char_tokenizer, layer=1, steps=0)
    optimized = m2ib_heatmaps(model, images, ["tumor"], tokenizer=char_tokenizer, layer=1, steps=10)
    assert not torch.allclose(start, optimized, atol=1e-2)


# ------------------------------------------------------------------------- model untouched


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_the_model_is_left_exactly_as_it_was():
    model = tiny_hf_clip()
    model.train()
    model.text_model.eval()  # a mixed train/eval state must come back as it was
    frozen = model.text_projection.weight
    frozen.requires_grad_(False)
    before = _snapshot(model)
    modes = {name: m.training for name, m in model.named_modules()}
    heat = m2ib_heatmaps(
        model, images_of(7, 2), ["tumor", "bone"], tokenizer=char_tokenizer, **OPTIONS
    )
    assert heat.shape == (2, 2, 32, 32)
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name
        assert param.grad is None, name
        assert param.requires_grad == (param is not frozen), name
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_and_flags_are_restored_after_an_error(hf_clip):
    hf_clip.train()
    try:
        with pytest.raises(ValueError, match="text embeddings have dimension 5"):
            m2ib_heatmaps(hf_clip, images_of(8, 1), text_embeddings=torch.randn(1, 5), **OPTIONS)
    finally:
        modes = [m.training for m in hf_clip.modules()]
        hf_clip.eval()
    assert all(modes)
    assert all(not m._forward_hooks for m in hf_clip.modules())
    assert all(p.requires_grad and p.grad is None for p in hf_clip.parameters())


def test_works_under_no_grad_and_leaves_no_graph(hf_clip):
    with torch.no_grad():
        heat = m2ib_heatmaps(
            hf_clip, images_of(9, 1), ["tumor"], tokenizer=char_tokenizer, **OPTIONS
        )
    assert not heat.requires_grad and heat.grad_fn is None
    assert float(heat.max()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- known answer


def _region_images(count, seed):
    """Noise images with a bright 16x16 square (2x2 patches of 8 px) at a random patch corner."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 3, 32, 32, generator=g) * 0.5
    inside = torch.zeros(count, 32, 32, dtype=torch.bool)
    for b in range(count):
        r, c = (int(v) * 8 for v in torch.randint(0, 3, (2,), generator=g))
        images[b, :, r : r + 16, c : c + 16] = torch.tensor([2.0, -1.5, 1.0])[:, None, None]
        inside[b, r : r + 16, c : c + 16] = True
    return images, inside


@pytest.mark.parametrize("seed", [2, 3])
def test_saliency_concentrates_where_the_text_embedding_matches_the_image(seed):
    """The prompt's embedding is the model's embedding of an image made only of the square's
    pattern, so the square is what the prompt names: the bottleneck must keep it. The tower
    average-pools its patch tokens, so the embedding of a patch set is a smooth function of
    those patches' features (a random class-token attention gives no such known answer)."""
    torch.manual_seed(seed)
    model = TinyBiomedClip(depth=2, global_pool="avg").eval()
    images, inside = _region_images(4, seed=11)
    pattern = torch.tensor([2.0, -1.5, 1.0])[None, :, None, None].expand(1, 3, 32, 32)
    with torch.no_grad():
        target = model.encode_image(pattern)
    heat = m2ib_heatmaps(model, images, text_embeddings=target, layer=0)
    assert heat.shape == (4, 1, 32, 32)
    for b in range(4):
        mean_in = float(heat[b, 0][inside[b]].mean())
        mean_out = float(heat[b, 0][~inside[b]].mean())
        assert mean_in > mean_out + 0.25, (b, mean_in, mean_out)


# --------------------------------------------------------------------------------- errors


def test_bad_arguments_name_themselves(hf_clip):
    images = images_of(10, 1)

    def run(**options):
        return m2ib_heatmaps(
            hf_clip, images, ["tumor"], tokenizer=char_tokenizer, **{"layer": 1, **options}
        )

    with pytest.raises(ValueError, match="layer = 3: the vision tower has 3 blocks"):
        run(layer=3)
    with pytest.raises(ValueError, match="steps = -1"):
        run(steps=-1)
    with pytest.raises(ValueError, match="samples = 0"):
        run(samples=0)
    with pytest.raises(ValueError, match="beta = -1"):
        run(beta=-1.0)
    with pytest.raises(ValueError, match="var = 0"):
        run(var=0.0)
    with pytest.raises(ValueError, match="images must be"):
        m2ib_heatmaps(hf_clip, images[0], ["tumor"], tokenizer=char_tokenizer, layer=1)
    with pytest.raises(ValueError, match="tokenizer is None"):
        m2ib_heatmaps(hf_clip, images, ["tumor"], layer=1)
    with pytest.raises(ValueError, match="exactly one of"):
        m2ib_heatmaps(hf_clip, images, layer=1)
    with pytest.raises(TypeError, match="neither a transformers CLIPModel"):
        m2ib_heatmaps(torch.nn.Linear(2, 2), images, text_embeddings=torch.randn(1, 2))
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images"):
        m2ib_heatmaps(hf_clip, bad, ["tumor"], tokenizer=char_tokenizer, layer=1)
