"""The code blocks of README.md and docs/*.md run as written.

Every ```python block of a page is executed in order, in one namespace per page, after a prelude
that makes the inputs the text names (the decoder's ``pred``, a SAM model's logits, a folder with
a local CLIP model); then the names it promises are checked. A page without a test of its own
below runs its blocks in an empty namespace, so a block added anywhere is run. A renamed
function, a changed signature or a wrong shape in the docs fails here.

A block that cannot run here is preceded by ``<!-- snippet: no-run (why) -->``: it is still
compiled, and the reason must be given. Every ```cpp block must be the whole of, or a contiguous
excerpt of, the examples/ file the text before it names; ctest builds and runs those files.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))
NO_RUN = re.compile(r"<!-- snippet: no-run \((?P<why>[^)]*)\) -->")
EXAMPLE_FILE = re.compile(r"examples/[\w/]+\.(?:cpp|hpp)")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    before: str  # the text between the previous block and this one
    no_run: Optional[str]  # the reason, when marked


def code_blocks(page: str, lang: Optional[str] = None, root: Path = ROOT) -> List[Block]:
    """The fenced blocks of a page (of one language when given), in order."""
    lines = (root / page).read_text().split("\n")
    blocks, prose, i = [], [], 0
    while i < len(lines):
        opening = re.match(r"^```(\w*)\s*$", lines[i])
        if not opening:
            prose.append(lines[i])
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{page}:{start + 1}: code block is never closed"
        marker = next((m for m in (NO_RUN.search(p) for p in prose[-2:]) if m), None)
        blocks.append(Block(page, start + 1, opening.group(1), "\n".join(body) + "\n",
                            "\n".join(prose), marker.group("why") if marker else None))
        prose = []
        i += 1
    return [b for b in blocks if lang is None or b.lang == lang]


def runnable(page: str, root: Path = ROOT) -> List[Block]:
    return [b for b in code_blocks(page, "python", root) if b.no_run is None]


def run(block: Block, ns: dict, code: Optional[str] = None) -> None:
    exec(compile(code if code is not None else block.code, f"{block.page}:{block.line}", "exec"),
         ns)


# --- README.md ---------------------------------------------------------------------------------

def test_readme():
    blocks = runnable("README.md")
    assert len(blocks) == 1
    ns = {}
    run(blocks[0], ns)
    result = ns["result"]
    assert result.mask.shape == (8, 49) and result.mask.dtype == torch.bool
    assert ns["masker"].offset == 8  # "keys samples 0..7, then advances to 8"
    assert result.active().shape == (8, 1, 7, 7)
    assert ns["loss"].dim() == 0 and torch.isfinite(ns["loss"])
    assert ns["pred"].grad is not None and ns["pred"].grad.shape == ns["pred"].shape


# --- docs/user-guide.md ------------------------------------------------------------------------

def test_user_guide():
    blocks = runnable("docs/user-guide.md")
    assert len(blocks) == 2
    ns = {}
    run(blocks[0], ns)
    result = ns["result"]
    assert result.mask.shape == (8, 49) and result.mask.dtype == torch.bool
    assert torch.equal(result.mask.sum(1), result.num_masked)
    assert torch.equal(torch.argsort(result.noise, stable=True), result.ids_shuffle)
    assert ns["masker"].offset == 8  # "keys samples 0..7, then advances to 8"
    run(blocks[1], ns)
    assert ns["scores"].shape == (8, 196) and ns["regions"].dtype == torch.int32
    assert ns["masks"].num_masked.tolist() == [196 - int(196 * (1 - 0.4))] * 8


# --- docs/loss.md ------------------------------------------------------------------------------

def test_loss_page():
    blocks = runnable("docs/loss.md")
    assert len(blocks) == 5
    g = torch.Generator().manual_seed(0)
    B = 2
    ns = dict(B=B, pred=torch.randn(B, 196, 768, generator=g),
              imgs=torch.randn(B, 3, 224, 224, generator=g),
              mask=torch.rand(B, 196, generator=g) > 0.25)
    run(blocks[0], ns)  # MAE
    assert ns["loss"].dim() == 0 and torch.isfinite(ns["loss"])
    ns.update(rec_bchw=torch.randn(B, 3, 224, 224, generator=g),
              inp_bchw=torch.randn(B, 3, 224, 224, generator=g),
              active_b1ff=torch.rand(B, 1, 7, 7, generator=g) > 0.5)
    run(blocks[1], ns)  # SparK
    assert torch.isfinite(ns["loss"])
    ns.update(x_rec=torch.randn(B, 3, 224, 224, generator=g),
              x=torch.randn(B, 3, 224, 224, generator=g),
              mask=torch.rand(B, 56, 56, generator=g) > 0.5)
    run(blocks[2], ns)  # SimMIM
    assert torch.isfinite(ns["loss"])
    ns.update(pred=torch.randn(B, 8, 16 ** 3, generator=g),
              target=torch.randn(B, 1, 32, 32, 32, generator=g),
              mask=torch.rand(B, 8, generator=g) > 0.3)
    ns["mask"][:, 0] = True
    run(blocks[3], ns)  # 3D, everything spelled out
    assert torch.isfinite(ns["loss"])

    class Decoder:
        mask_token = torch.zeros(64)

    ns.update(x=torch.randn(B, 196, 64, generator=g), self=Decoder())
    run(blocks[4], ns)  # tokens
    assert ns["x_vis"].shape == (B, 49, 64) and ns["x_dec"].shape == (B, 196, 64)


# --- docs/coral.md -----------------------------------------------------------------------------

def test_coral_page():
    blocks = runnable("docs/coral.md")
    assert len(blocks) == 2
    ns = {}
    run(blocks[0], ns)  # the loss
    assert ns["loss"].dim() == 0 and torch.isfinite(ns["loss"])
    assert ns["x"].grad.shape == (4096, 32) and ns["y"].grad.shape == (2048, 32)

    # CORN's module: two branches' features and predictions of a batch of 2 labeled volumes.
    g = torch.Generator().manual_seed(2)
    B, d, side = 2, 8, 8
    labels = torch.randint(0, 2, (B, side, side, side), generator=g)
    prob_a = torch.softmax(torch.randn(B, 2, side, side, side, generator=g), 1)
    ns = dict(mwm=ns["mwm"], num_labeled=4, d=d, labeled_ids=torch.tensor([0, 3]),
              feat_a=torch.randn(B, d, side, side, side, generator=g),
              feat_b=torch.randn(B, d, side, side, side, generator=g),
              labels=labels, pred_a=labels.clone(), pred_b=labels.clone(), prob_a=prob_a,
              prob_b=torch.softmax(torch.randn(B, 2, side, side, side, generator=g), 1))
    run(blocks[1], ns)
    assert all(s is not None and s.shape == (256, d) for s in ns["sample"])
    for matrix in (ns["m_a"], ns["m_b"]):
        assert matrix.distances.shape == (2, 2) and bool(matrix.valid.all())
    assert ns["term"].dim() == 0 and torch.isfinite(ns["term"])


# --- docs/grounding.md -------------------------------------------------------------------------

@pytest.fixture()
def local_open_clip(tmp_path):
    """A tiny randomly initialized open_clip model saved as a local folder (config + weights), the
    layout docs/grounding.md loads with ``local-dir:``."""
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


def test_grounding_page(tmp_path, local_open_clip, monkeypatch):
    blocks = runnable("docs/grounding.md")
    assert len(blocks) == 5
    g = torch.Generator().manual_seed(1)
    ns = dict(sam_low_res_logits=torch.randn(2, 3, 256, 256, generator=g),
              iou_predictions=torch.rand(2, 3, generator=g),
              similarity=torch.randn(2, 14, 14, generator=g),
              gradcam=torch.randn(2, 224, 224, generator=g))
    run(blocks[0], ns)  # adapters
    heat = ns["heat"]
    assert heat.shape == (2, 224, 224) and 0 <= float(heat.min()) and float(heat.max()) <= 1
    run(blocks[1], ns)  # the region pipeline
    assert ns["roi"].shape == (2, 7, 7) and ns["result"].mask.shape == (2, 49)

    # The CLIP generator over weights loaded from a local folder.
    folder, saved = local_open_clip
    code = blocks[2].code.replace("/models/biomedclip", str(folder))
    assert code != blocks[2].code, "docs/grounding.md no longer loads from /models/biomedclip"
    ns["pixel_batch"] = torch.randn(2, 3, 32, 32, generator=g)
    run(blocks[2], ns, code)
    loaded = ns["model"]
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name  # the weights of the folder
    clip_heat = ns["heat"]
    assert clip_heat.shape == (2, 1, 32, 32) and not clip_heat.requires_grad
    assert 0 <= float(clip_heat.min()) and float(clip_heat.max()) <= 1

    monkeypatch.chdir(ROOT)  # the prompt-bank paths are relative to the repository
    run(blocks[3], ns, blocks[3].code.replace("# or: mwm.", "mwm."))  # prompt banks, from_config
    assert ns["levels"].shape == (2, 14, 14) and ns["result"].mask.shape == (2, 196)

    monkeypatch.chdir(tmp_path)
    ns.update(image=torch.rand(224, 224, generator=g), images=torch.rand(2, 224, 224, generator=g),
              heat=heat)
    run(blocks[1], ns)  # roi and result of the region pipeline again, for the pictures
    run(blocks[4], ns)
    assert (tmp_path / "overlay.png").stat().st_size > 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert ns["picture"].dtype == torch.uint8 or str(ns["picture"].dtype) == "uint8"


# --- every other page --------------------------------------------------------------------------

PAGES_WITH_TESTS = {"README.md", "docs/user-guide.md", "docs/loss.md", "docs/coral.md",
                    "docs/grounding.md"}


@pytest.mark.parametrize("page", [p for p in PAGES if p not in PAGES_WITH_TESTS])
def test_other_pages_run(page, tmp_path, monkeypatch):
    """Blocks of pages without a test above need no inputs: they run in an empty namespace."""
    monkeypatch.chdir(tmp_path)
    ns = {}
    for block in runnable(page):
        run(block, ns)


def test_pages_with_tests_have_python_blocks():
    for page in PAGES_WITH_TESTS:
        assert runnable(page), f"{page} has no runnable python block: drop its test or the entry"


def test_blocks_marked_no_run_say_why_and_compile():
    marked = [b for page in PAGES for b in code_blocks(page) if b.no_run is not None]
    for block in marked:
        assert block.no_run.strip(), f"{block.page}:{block.line}: no-run without a reason"
        assert block.lang == "python", f"{block.page}:{block.line}: no-run marks only python"
        compile(block.code, f"{block.page}:{block.line}", "exec")
    # The marker is for what cannot run here (a GPU, a model that is not in the repository).
    assert len(marked) <= 3, [f"{b.page}:{b.line}" for b in marked]


def test_the_parser_sees_markers_and_blocks(tmp_path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("Text.\n\n<!-- snippet: no-run (needs a GPU) -->\n```python\nx = 1\n```\n\n"
                    "More.\n\n```python\ny = 2\n```\n\n```bash\nls\n```\n")
    blocks = code_blocks("docs/page.md", root=tmp_path)
    assert [(b.lang, b.no_run, b.code) for b in blocks] == [
        ("python", "needs a GPU", "x = 1\n"), ("python", None, "y = 2\n"), ("bash", None, "ls\n")]
    assert [b.code for b in runnable("docs/page.md", tmp_path)] == ["y = 2\n"]


# --- C++ blocks --------------------------------------------------------------------------------

def _is_excerpt(block: str, text: str) -> bool:
    """Whether the block's lines are the whole file or a contiguous run of its lines."""
    if block == text:
        return True
    want, have = block.rstrip("\n").split("\n"), text.split("\n")
    return any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1))


@pytest.mark.parametrize("page", PAGES)
def test_cpp_blocks_are_the_example_files(page):
    """Each C++ block is (an excerpt of) the examples/ file its text names: ctest builds and runs
    those files, so the code in the docs compiles."""
    for block in code_blocks(page, "cpp"):
        named = EXAMPLE_FILE.findall(block.before)
        assert named, f"{page}:{block.line}: the text before a cpp block names no examples/ file"
        source = (ROOT / named[-1]).read_text()
        assert _is_excerpt(block.code, source), f"{page}:{block.line} differs from {named[-1]}"
        lines = re.search(r"lines (\d+)[–-](\d+)", block.before)
        if lines:  # the line numbers the text gives are those of the excerpt
            first, last = int(lines.group(1)), int(lines.group(2))
            assert block.code.rstrip("\n").split("\n") == source.split("\n")[first - 1:last], (
                f"{page}:{block.line}: the block is not lines {first}-{last} of {named[-1]}")


def test_cpp_page_shows_both_examples_whole_and_quickstart_output():
    blocks = code_blocks("docs/cpp.md", "cpp")
    files = ["examples/cpp/quickstart.cpp", "examples/cpp/eigen_masks.cpp"]
    assert [b.code for b in blocks[:2]] == [(ROOT / f).read_text() for f in files]
    text = (ROOT / "docs" / "cpp.md").read_text()
    output = re.search(r"Its output:\n\n```\n(.*?)```", text, re.S).group(1)
    pinned = (ROOT / "examples" / "CMakeLists.txt").read_text()
    for line in output.splitlines():  # the CMake regex writes each parenthesis as \\(
        assert line.replace("(", "\\\\(").replace(")", "\\\\)") in pinned, line


# --- the README's shape ------------------------------------------------------------------------

def test_readme_starts_with_the_two_commands_and_stays_short():
    text = (ROOT / "README.md").read_text()
    assert len(text.split("\n")) <= 251, "README.md is at most 250 lines; move detail to docs/"
    first = code_blocks("README.md")[0]
    assert first.lang == "bash"
    commands = [line.split("#")[0].strip() for line in first.code.strip().split("\n")]
    assert commands == ["scripts/main.sh", "scripts/test.sh"]  # .ci/run calls scripts/test.sh


@pytest.mark.parametrize("page", ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"])
def test_links_of_the_root_pages_resolve(page):
    """Relative links of the pages GitHub shows at the root point to files that exist (the docs
    pages' own links are checked by mkdocs build --strict)."""
    text = (ROOT / page).read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"\w+://", t)]
    assert local or page == "CHANGELOG.md"
    for target in local:
        assert (ROOT / target).exists(), f"{page} links to {target}, which does not exist"
