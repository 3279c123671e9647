import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# transformers, timm and open_clip import torchvision, which fails to import beside a CPU torch
# when its wheel is a CUDA build; mwm.grounding makes it importable the same way for users.
from mwm.grounding.torchvision_compat import ensure_torchvision_importable  # noqa: E402

ensure_torchvision_importable()


# --- devices --------------------------------------------------------------------------------
# Tests that take the `device` fixture run once per device, as torchvision's tests do: on the
# CPU always, and on CUDA when a device is present. The CUDA variants carry the `cuda` marker
# (pyproject.toml), so `pytest -m cuda` runs the GPU part alone; without a device they are
# collected and skipped with the reason "no CUDA device". Use DEVICES with
# pytest.mark.parametrize where a fixture does not fit.
import pytest  # noqa: E402

CUDA_SKIP_REASON = "no CUDA device"

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda",
                 marks=[pytest.mark.cuda,
                        pytest.mark.skipif(not torch.cuda.is_available(),
                                           reason=CUDA_SKIP_REASON)]),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """"cpu", then "cuda" (marked `cuda`, skipped without a device)."""
    return request.param


# --- tiny random CLIP models for the grounding tests -------------------------------------------
# Built here, shared as fixtures (test files do not import each other); nothing downloads.
CLIP_BOS, CLIP_EOS = 98, 99


def _char_tokenizer(prompts):
    """Character ids, ending in EOS, padded with 0: enough for a randomly initialized CLIP."""
    rows = [[CLIP_BOS] + [3 + ord(c) % 90 for c in p][:13] + [CLIP_EOS] for p in prompts]
    length = max(map(len, rows))
    ids = torch.tensor([r + [0] * (length - len(r)) for r in rows])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def _tiny_hf_clip(layers=3, seed=0, dtype=torch.float32):
    """A transformers CLIPModel with 32-wide towers on 32 px images (patch 8), seeded."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=16, eos_token_id=CLIP_EOS,
            bos_token_id=CLIP_BOS, pad_token_id=0,
        ),
        vision_config=dict(
            image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
            num_hidden_layers=layers, num_attention_heads=4,
        ),
        projection_dim=16,
    )
    return CLIPModel(config).to(dtype).eval()


@pytest.fixture(scope="session")
def char_tokenizer():
    """The tokenizer function for the tiny CLIP models."""
    return _char_tokenizer


@pytest.fixture(scope="session")
def tiny_hf_clip():
    """The factory ``tiny_hf_clip(layers=3, seed=0, dtype=torch.float32)``."""
    return _tiny_hf_clip


def _tiny_sam(seed=0):
    """A transformers SamModel (32-wide vision tower on 64 px images) and its processor, seeded."""
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


@pytest.fixture(scope="session")
def tiny_sam():
    """The factory ``tiny_sam(seed=0) -> (model, processor)``."""
    return _tiny_sam


# --- the repository's scripts ---------------------------------------------------------------
import importlib.util  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load_repo_script(relative_path: str):
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo_script():
    """Imports a script of the repository as a module: ``repo_script("benchmarks/x.py")``."""
    return _load_repo_script
