"""benchmarks/mae_screen.py, whose rows docs/harness-mae.md quotes: its targets and a tiny run."""
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mae_screen.py"
TINY = ('"seeds": [0], "pretrain_samples": 64, "train_samples": 32, "test_samples": 32, '
        '"epochs": 2, "probe_steps": 5, "zero": false')


def test_hog_target_puts_an_edge_in_the_cells_it_crosses_and_its_orientation_bin(repo_script):
    screen = repo_script("benchmarks/mae_screen.py")
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, :, 8:] = 1.0  # a vertical edge between columns 7 and 8
    hog = screen.hog_patches(image, patch_size=8, cell=4).view(4, 2, 2, 9)  # patch, cell, bin
    assert hog.shape == (4, 2, 2, 9)
    crossed = torch.zeros(4, 2, 2, dtype=torch.bool)
    crossed[[0, 2], :, 1] = True  # the left patches' right cells
    crossed[[1, 3], :, 0] = True  # the right patches' left cells
    norms = hog.norm(dim=-1)
    assert torch.allclose(norms[crossed], torch.ones(8), atol=1e-5)
    assert torch.equal(norms[~crossed], torch.zeros(8))
    assert torch.equal(hog[crossed].argmax(-1), torch.zeros(8, dtype=torch.long))  # horizontal
    # The same edge turned: it now crosses the upper patches' lower cells and the lower
    # patches' upper cells, with its gradient vertical (bin 4 of 9).
    turned = screen.hog_patches(image.transpose(2, 3), patch_size=8, cell=4).view(4, 2, 2, 9)
    crossed_turned = torch.zeros(4, 2, 2, dtype=torch.bool)
    crossed_turned[[0, 1], 1, :] = True
    crossed_turned[[2, 3], 0, :] = True
    assert torch.equal(turned.norm(dim=-1)[~crossed_turned], torch.zeros(8))
    assert torch.equal(turned[crossed_turned].argmax(-1), torch.full((8,), 4, dtype=torch.long))


def test_a_tiny_screen_with_the_eighth_rounds_keys_prints_the_paired_gain():
    keys = ('"hog_cell": 4, "frozen_embed": true, "warmup_share": 0.25, "weight_decay": 0.1, '
            '"deep": [1]')
    done = subprocess.run([sys.executable, str(SCRIPT), "{" + TINY + ", " + keys + "}"],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stderr
    gain = re.search(r"^GAIN probe random-0\.6 - none: ([+-]\d+\.\d) per seed \[(.*)\]$",
                     done.stdout, re.M)
    assert gain, done.stdout
    assert float(gain.group(1)) == float(gain.group(2))  # one seed: the mean is that seed's
    losses = re.findall(r"^0 random-0\.6 .* loss (\d+\.\d+)$", done.stdout, re.M)
    assert len(losses) == 1 and float(losses[0]) > 0


def test_a_tiny_screen_with_the_ninth_rounds_keys_on_the_earlier_harness_runs():
    keys = '"before_ninth": true, "layer_scale": 0.1, "local": 1, "starts": true'
    done = subprocess.run([sys.executable, str(SCRIPT), "{" + TINY + ", " + keys + "}"],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^GAIN probe random-0\.6 - none: [+-]\d+\.\d per seed", done.stdout, re.M)
    # "starts": every start of the probe, eight, each with its objective and accuracy.
    starts = re.findall(r"starts \(objective - best, accuracy %\): (.*)$", done.stdout, re.M)
    assert len(starts) == 2 and all(len(row.split("  ")) == 8 for row in starts)


def test_a_screen_with_a_bad_setting_names_it():
    done = subprocess.run([sys.executable, str(SCRIPT), "{" + TINY + ', "warmup_share": 1.5}'],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode != 0
    assert "warmup_share=1.5" in done.stderr


def _tiny_mae(seed=0):
    from mwm.bench import models as M
    torch.manual_seed(seed)
    return M.TinyMAE(32, 1, 8, dim=32, depth=2, heads=1, decoder_dim=32, decoder_depth=1,
                     decoder_heads=1)


def test_local_attention_over_the_whole_grid_is_the_plain_encoder_and_a_radius_narrows_it(
        repo_script):
    import mwm
    screen = repo_script("benchmarks/mae_screen.py")
    images = torch.randn(3, 1, 32, 32)
    masks = mwm.generate_masks((4, 4), 3, policy="random", ratio=0.5, seed=1)
    plain, wide, narrow = _tiny_mae(), _tiny_mae(), _tiny_mae()
    screen.use_local_attention(wide, radius=3)  # the 4x4 grid: every pair within 3 patches
    screen.use_local_attention(narrow, radius=1)
    with torch.no_grad():
        assert torch.allclose(wide.features(images)[0], plain.features(images)[0], atol=1e-5)
        assert torch.allclose(wide(images, masks), plain(images, masks), atol=1e-5)
        assert not torch.allclose(narrow.features(images)[0], plain.features(images)[0],
                                  atol=1e-3)
        # Radius 1 in each of two blocks: the top-left token sees two patches far, so the
        # bottom-right patch (three away) does not reach it.
        changed = images.clone()
        changed[..., 24:, 24:] += 1.0
        f, g = narrow.features(images)[0], narrow.features(changed)[0]
        assert torch.allclose(f[..., 0, 0], g[..., 0, 0], atol=1e-6)
        assert not torch.allclose(f[..., 3, 3], g[..., 3, 3], atol=1e-3)


def test_layer_scale_starting_at_one_is_the_plain_encoder_and_a_small_one_nearly_skips_blocks(
        repo_script):
    screen = repo_script("benchmarks/mae_screen.py")
    images = torch.randn(2, 1, 32, 32)
    plain, unit, small = _tiny_mae(), _tiny_mae(), _tiny_mae()
    screen.use_layer_scale(unit, 1.0)
    screen.use_layer_scale(small, 1e-6)
    with torch.no_grad():
        assert torch.allclose(unit.features(images)[0], plain.features(images)[0], atol=1e-6)
        skipped = small.norm(small._tokens(images))
        assert torch.allclose(small.features(images)[0].flatten(2).transpose(1, 2), skipped,
                              atol=1e-4)
    assert sum(p.numel() for p in small.parameters()) == sum(
        p.numel() for p in plain.parameters()) + 2 * 2 * 32  # two scales in each of two blocks
