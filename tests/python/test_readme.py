"""The README's Python examples run as written.

Each ```python block of the sections below is executed in order, in one namespace per section,
after a prelude that makes the inputs the text names (the decoder's ``pred``, a SAM model's
logits, a folder with a local CLIP model); then the names it promises are checked. A renamed
function, a changed signature or a wrong shape in the README fails here.
"""

import json
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _blocks(heading):
    text = (ROOT / "README.md").read_text()
    sections = re.split(r"(?m)^## ", text)
    matches = [s for s in sections if s.startswith(heading)]
    assert len(matches) == 1, f"README has {len(matches)} sections starting with {heading!r}"
    blocks = re.findall(r"```python\n(.*?)```", matches[0], re.S)
    assert blocks, f"no python blocks in README section {heading!r}"
    return blocks


def test_python_masks_in_three_lines():
    blocks = _blocks("Python: masks in three lines")
    assert len(blocks) == 2
    ns = {}
    exec(blocks[0], ns)
    result = ns["result"]
    assert result.mask.shape == (8, 49) and result.mask.dtype == torch.bool
    assert torch.equal(result.mask.sum(1), result.num_masked)
    assert torch.equal(torch.argsort(result.noise, stable=True), result.ids_shuffle)
    assert ns["masker"].offset == 8  # "keys samples 0..7, then advances to 8"
    exec(blocks[1], ns)
    assert ns["scores"].shape == (8, 196) and ns["regions"].dtype == torch.int32
    assert ns["masks"].num_masked.tolist() == [196 - int(196 * (1 - 0.4))] * 8


def test_fused_loss_and_tokens():
    blocks = _blocks("Fused masked reconstruction loss")
    assert len(blocks) == 5
    g = torch.Generator().manual_seed(0)
    B = 2
    ns = dict(B=B, pred=torch.randn(B, 196, 768, generator=g),
              imgs=torch.randn(B, 3, 224, 224, generator=g),
              mask=torch.rand(B, 196, generator=g) > 0.25)
    exec(blocks[0], ns)  # MAE
    assert ns["loss"].dim() == 0 and torch.isfinite(ns["loss"])
    ns.update(rec_bchw=torch.randn(B, 3, 224, 224, generator=g),
              inp_bchw=torch.randn(B, 3, 224, 224, generator=g),
              active_b1ff=torch.rand(B, 1, 7, 7, generator=g) > 0.5)
    exec(blocks[1], ns)  # SparK
    assert torch.isfinite(ns["loss"])
    ns.update(x_rec=torch.randn(B, 3, 224, 224, generator=g),
              x=torch.randn(B, 3, 224, 224, generator=g),
              mask=torch.rand(B, 56, 56, generator=g) > 0.5)
    exec(blocks[2], ns)  # SimMIM
    assert torch.isfinite(ns["loss"])
    ns.update(pred=torch.randn(B, 8, 16 ** 3, generator=g),
              target=torch.randn(B, 1, 32, 32, 32, generator=g),
              mask=torch.rand(B, 8, generator=g) > 0.3)
    ns["mask"][:, 0] = True
    exec(blocks[3], ns)  # 3D, everything spelled out
    assert torch.isfinite(ns["loss"])

    class Decoder:
        mask_token = torch.zeros(64)

    ns.update(x=torch.randn(B, 196, 64, generator=g), self=Decoder())
    exec(blocks[4], ns)  # tokens
    assert ns["x_vis"].shape == (B, 49, 64) and ns["x_dec"].shape == (B, 196, 64)


@pytest.fixture()
def local_open_clip(tmp_path):
    """A tiny randomly initialized open_clip model saved as a local folder (config + weights), the
    layout the README loads with ``local-dir:``."""
    import open_clip

    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                             "patch_size": 8},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                           "layers": 2}}
    torch.manual_seed(0)
    model = open_clip.CLIP(**config)
    folder = tmp_path / "biomedclip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": config,
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder, model


def test_text_grounding(tmp_path, local_open_clip, monkeypatch):
    blocks = _blocks("Text grounding")
    assert len(blocks) == 5
    g = torch.Generator().manual_seed(1)
    ns = dict(sam_low_res_logits=torch.randn(2, 3, 256, 256, generator=g),
              iou_predictions=torch.rand(2, 3, generator=g),
              similarity=torch.randn(2, 14, 14, generator=g),
              gradcam=torch.randn(2, 224, 224, generator=g))
    exec(blocks[0], ns)  # adapters
    heat = ns["heat"]
    assert heat.shape == (2, 224, 224) and 0 <= float(heat.min()) and float(heat.max()) <= 1
    exec(blocks[1], ns)  # the region pipeline
    assert ns["roi"].shape == (2, 7, 7) and ns["result"].mask.shape == (2, 49)

    # The CLIP generator over weights loaded from a local folder.
    folder, saved = local_open_clip
    code = blocks[2].replace("/models/biomedclip", str(folder))
    assert code != blocks[2], "the README no longer loads from /models/biomedclip"
    ns["pixel_batch"] = torch.randn(2, 3, 32, 32, generator=g)
    exec(code, ns)
    loaded = ns["model"]
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name  # the weights of the folder
    clip_heat = ns["heat"]
    assert clip_heat.shape == (2, 1, 32, 32) and not clip_heat.requires_grad
    assert 0 <= float(clip_heat.min()) and float(clip_heat.max()) <= 1

    monkeypatch.chdir(ROOT)  # the prompt-bank paths are relative to the repository
    exec(blocks[3].replace("# or: mwm.", "mwm."), ns)  # prompt banks, and from_config
    assert ns["levels"].shape == (2, 14, 14) and ns["result"].mask.shape == (2, 196)

    monkeypatch.chdir(tmp_path)
    ns.update(image=torch.rand(224, 224, generator=g), images=torch.rand(2, 224, 224, generator=g),
              heat=heat)
    exec(blocks[1], ns)  # roi and result of the region pipeline again, for the pictures
    exec(blocks[4], ns)
    assert (tmp_path / "overlay.png").stat().st_size > 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert ns["picture"].dtype == torch.uint8 or str(ns["picture"].dtype) == "uint8"


def test_cpp_examples_are_the_files_the_tests_build():
    """The C++ blocks of "The C++ core" are examples/cpp/quickstart.cpp and eigen_masks.cpp
    verbatim: ctest builds and runs those (and pins quickstart's printed output)."""
    text = (ROOT / "README.md").read_text()
    section = [s for s in re.split(r"(?m)^## ", text) if s.startswith("The C++ core")]
    assert len(section) == 1
    blocks = re.findall(r"```cpp\n(.*?)```", section[0], re.S)
    files = ["examples/cpp/quickstart.cpp", "examples/cpp/eigen_masks.cpp"]
    assert len(blocks) == len(files)
    for block, name in zip(blocks, files):
        assert block == (ROOT / name).read_text(), f"README differs from {name}"
    output = re.search(r"Its output:\n\n```\n(.*?)```", section[0], re.S).group(1)
    pinned = (ROOT / "examples" / "CMakeLists.txt").read_text()
    for line in output.splitlines():  # the CMake regex writes each parenthesis as \\(
        assert line.replace("(", "\\\\(").replace(")", "\\\\)") in pinned, line
