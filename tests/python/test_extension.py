"""The extension's glue: loaded once with its version checked, op names and schemas as the
bindings define them, and the mask options that the schema, the wrapper and the fake kernel
share."""

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mwm
from mwm import _C, _extension
from mwm.masking import MASK_OPTIONS, mask_options

ROOT = Path(__file__).resolve().parents[2]

# The public keyword arguments of mwm.generate_masks and their defaults, as released in 0.1.0.
PUBLIC_MASK_DEFAULTS = dict(
    policy="random", ratio=0.75, region_ratios=(), regions=None, scores=None, seed=0, offset=0,
    sample_index=None, rounding="floor", order="random", coarse_factor=2, hard_share=0.5,
    attention_mode="high", hint_pool_share=0.2, hint_share=0.1, weight_floor=0.5,
    block_min_patches=16, block_max_patches=0, block_min_aspect=0.3, block_max_aspect=1 / 0.3,
    nan_policy="error", device=None)


def test_the_extension_has_the_packages_version_from_the_header():
    header = (ROOT / "include" / "mwm" / "config.hpp").read_text()
    numbers = [re.search(rf"#define MWM_VERSION_{part} +(\d+)", header).group(1)
               for part in ("MAJOR", "MINOR", "PATCH")]
    assert mwm.__version__ == ".".join(numbers)
    assert _C.version() == mwm.__version__


def test_a_version_mismatch_names_both_versions():
    with pytest.raises(ImportError, match=r"extension /x/_C\.so is version 0\.1\.0 but the mwm "
                                          r"Python package is version 0\.2\.0"):
        _extension.check_version("0.1.0", "0.2.0", "/x/_C.so")
    _extension.check_version("0.2.0", "0.2.0", "/x/_C.so")


def test_importing_a_package_of_another_version_than_its_extension_fails(tmp_path):
    # A copy of the package that says it is 9.9.9, next to the extension built here (0.1.0).
    package = tmp_path / "mwm"
    shutil.copytree(Path(mwm.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__", "_C*.so"))
    (package / "_build_version.py").write_text('version = "9.9.9"\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    if "MWM_EXTENSION" not in env:
        shutil.copy(_C.__file__, package / Path(_C.__file__).name)
    run = subprocess.run([sys.executable, "-c", "import mwm"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode != 0
    assert "ImportError" in run.stderr
    assert f"is version {_C.version()} but the mwm Python package is version 9.9.9" in run.stderr


def test_the_extension_module_is_loaded_once_as_mwm_C():
    assert sys.modules["mwm._C"] is _extension.extension is _C


def test_backward_ops_are_private():
    names = {name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
             if name.startswith("mwm::")}
    backward = {name for name in names if name.endswith("_backward")}
    assert all(name.startswith("_") for name in backward), sorted(backward)
    assert {"_masked_recon_loss_backward", "_gather_tokens_backward", "_restore_tokens_backward",
            "_coral_loss_backward"} <= backward


def test_generate_masks_keeps_its_public_keyword_arguments():
    signature = inspect.signature(mwm.generate_masks)
    keywords = {name: p.default for name, p in signature.parameters.items()
                if p.kind == p.KEYWORD_ONLY}
    assert keywords.keys() == PUBLIC_MASK_DEFAULTS.keys()
    keywords["region_ratios"] = tuple(keywords["region_ratios"])  # the schema's [] is a list
    assert keywords == PUBLIC_MASK_DEFAULTS


def test_the_policy_options_come_from_the_op_schema():
    schema = torch.ops.mwm.generate_masks.default._schema
    names = [argument.name for argument in schema.arguments]
    assert names[:5] == ["sample_index", "grid", "regions", "scores", "seed"]
    assert list(MASK_OPTIONS) == names[5:]
    assert set(_C.mask_option_choices()) == {"policy", "rounding", "order", "attention_mode",
                                             "nan_policy"}
    assert tuple(_C.mask_option_choices()["policy"]) == mwm.masking.POLICIES
    assert mwm.masking.POLICIES == ("random", "per_region", "fixed_total", "weighted", "block",
                                    "coarse", "loss_guided", "attention_guided")


def test_generate_masks_signature_mirrors_the_op_schema():
    # The options are defined once, in bindings/ops/generate_masks.h; the checked-in signature
    # (which IDEs and the API page read) must name the same ones, in order, with the same defaults.
    assert mwm.masking._signature_drift() == []

    def drifted(grid, *, policy="random", ratio=0.5, extra=1, **rest):
        pass

    differences = mwm.masking._signature_drift(drifted)
    assert "region_ratios: missing" in differences
    assert "extra: not an option of the op" in differences
    assert "ratio: default 0.5, the schema's 0.75" in differences


def test_generate_masks_forwards_every_option_given_and_only_those(monkeypatch):
    calls = []
    real = mwm.masking._GENERATE_MASKS
    monkeypatch.setattr(mwm.masking, "_GENERATE_MASKS",
                        lambda *args, **kwargs: calls.append(kwargs) or real(*args))
    mwm.generate_masks((4, 4), 2)
    assert calls[-1] == {}
    given = {}
    for name, default in MASK_OPTIONS.items():
        given[name] = ("x" if isinstance(default, str) else [0.5] if isinstance(default, list)
                       else type(default)(3))
    with pytest.raises(ValueError, match="policy = 'x'"):
        mwm.generate_masks((4, 4), 2, **given)
    given["policy"] = "weighted"
    monkeypatch.setattr(mwm.masking, "_GENERATE_MASKS",
                        lambda *args, **kwargs: calls.append(kwargs))
    with pytest.raises(TypeError):  # the recorder returns no outputs
        mwm.generate_masks((4, 4), 2, **given)
    assert calls[-1] == given


def test_mask_options_convert_fill_defaults_and_reject_unknown_names():
    options = mask_options(dict(ratio=1, region_ratios=(1, 0.5), coarse_factor=2.0))
    assert options["ratio"] == 1.0 and isinstance(options["ratio"], float)
    assert options["region_ratios"] == [1.0, 0.5]
    assert options["coarse_factor"] == 2 and isinstance(options["coarse_factor"], int)
    assert options["policy"] == "random" and options["nan_policy"] == "error"
    with pytest.raises(TypeError, match="unexpected keyword argument 'ratios'"):
        mask_options(dict(ratios=0.5))
    with pytest.raises(TypeError, match="unexpected keyword argument 'ratios'"):
        mwm.generate_masks((4, 4), 2, ratios=0.5)


def test_the_op_takes_the_policy_options_by_keyword_with_the_schemas_defaults():
    index = torch.arange(3)
    by_default = torch.ops.mwm.generate_masks(index, [6, 6])
    wrapped = mwm.generate_masks((6, 6), 3)
    for ours, theirs in zip(by_default, (wrapped.mask, wrapped.num_masked, wrapped.ids_shuffle,
                                         wrapped.ids_restore, wrapped.ids_keep,
                                         wrapped.ids_masked, wrapped.noise)):
        assert torch.equal(ours, theirs)
    coarse = torch.ops.mwm.generate_masks(index, [6, 6], policy="coarse", ratio=0.5,
                                          coarse_factor=3)
    assert coarse[1].tolist() == [18, 18, 18]
