"""The runnable examples run."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("script", ["mae_dropin.py", "hf_vitmae_noise.py",
                                    "spark_active_masks.py", "lightly_mae_tokens.py",
                                    "dataloader_masks.py"])
def test_example_runs(script):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    # The torchvision shim of conftest does not reach a subprocess; run through a launcher that
    # applies it first.
    launcher = ("import runpy, sys, conftest; sys.argv = [sys.argv[1]]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
    completed = subprocess.run(
        [sys.executable, "-c", launcher, os.path.join(ROOT, "examples", script)],
        cwd=os.path.dirname(os.path.abspath(__file__)), env=env, capture_output=True, text=True,
        timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_the_readme_picture_is_made_by_its_command(tmp_path):
    """docs/images/overlay.png (shown in docs/grounding.md) is what
    examples/make_overlay_picture.py draws."""
    import numpy as np
    from PIL import Image

    out = tmp_path / "overlay.png"
    completed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "make_overlay_picture.py"), "--out",
         str(out)], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, MPLBACKEND="Agg"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    drawn = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    shipped = np.asarray(Image.open(os.path.join(ROOT, "docs", "images", "overlay.png"))
                         .convert("RGB"), dtype=np.int16)
    assert drawn.shape == shipped.shape
    # Identical here; a little room for another matplotlib's text anti-aliasing.
    assert np.abs(drawn - shipped).mean() < 1.0
