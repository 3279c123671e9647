"""MWM_CPU_VECTOR_BITS through the torch ops: masks, pooled scores, the fused loss and its
gradient have the same bits on the AVX-512, AVX2 and portable kernels (each capped run is a
fresh process: the cap is read once), and a bad value is an error that names the variable."""

import os
import subprocess
import sys

import pytest

# Every CPU path that has vector variants: random keys and the sorting network (random,
# per_region masks over 196 and 64 patches), area-mean pooling of heatmaps of 2D and 3D grids,
# the loss's gathers and patch steps (C = 3 with 16- and 8-pixel patch rows, C = 1 in 3D, both
# errors, with and without the normalization, a non-contiguous target), forward and gradient.
SCRIPT = r"""
import hashlib
import torch
import mwm

torch.manual_seed(0)
digest = hashlib.sha256()


def add(t):
    digest.update(t.detach().contiguous().cpu().numpy().tobytes())


for grid in ([14, 14], [8, 8], [4, 4, 4]):
    result = mwm.generate_masks(grid, 32, seed=5, ratio=0.6)
    add(result.mask), add(result.ids_restore), add(result.ids_keep)
    n = 1
    for g in grid:
        n *= g
    regions = (torch.arange(32 * n).reshape(32, n) % 3 == 0).int()
    result = mwm.generate_masks(grid, policy="per_region", regions=regions,
                                region_ratios=[0.4, 0.8], seed=7)
    add(result.mask), add(result.ids_keep)
add(mwm.heatmap_to_patch_scores(torch.rand(8, 224, 224), 14))
add(mwm.heatmap_to_patch_scores(torch.rand(4, 2, 64, 64), 8, combine="max"))
add(mwm.heatmap_to_patch_scores(torch.rand(2, 32, 32, 32), [4, 4, 4]))
cases = [((4, 3, 64, 64), 16), ((4, 3, 64, 64), 8), ((2, 1, 32, 32, 32), 16)]
for shape, p in cases:
    target = torch.randn(shape) * 3 + 40
    n = 1
    for s in shape[2:]:
        n *= s // p
    pred = torch.randn(shape[0], n, p ** (len(shape) - 2) * shape[1])
    mask = torch.rand(shape[0], n) < 0.7
    for norm in (True, False):
        for error in ("mse", "l1"):
            for tgt in (target, target.transpose(-1, -2).contiguous().transpose(-1, -2)):
                x = pred.clone().requires_grad_()
                loss = mwm.masked_recon_loss(x, tgt, mask, p, norm_target=norm, error=error)
                loss.backward()
                add(loss), add(x.grad)
from mwm import _extension

print(_extension.extension.cpu_vector_bits())
print(digest.hexdigest())
"""


def _run(bits):
    env = dict(os.environ)
    env.pop("MWM_CPU_VECTOR_BITS", None)
    if bits is not None:
        env["MWM_CPU_VECTOR_BITS"] = bits
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                    reason="MWM_CPU_VECTOR_BITS caps the x86 kernels only")
def test_every_vector_unit_gives_the_same_bits():
    digests, units = {}, {}
    for bits in (None, "256", "128"):
        done = _run(bits)
        assert done.returncode == 0, done.stderr[-2000:]
        units[bits], digests[bits] = map(str.strip, done.stdout.strip().splitlines()[-2:])
    assert len(set(digests.values())) == 1, digests
    # The cap is what the kernels run on: the CPU's unit, at most the cap.
    assert int(units[None]) in (128, 256, 512)
    assert int(units["256"]) == min(256, int(units[None]))
    assert units["128"] == "128"


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                    reason="MWM_CPU_VECTOR_BITS caps the x86 kernels only")
def test_a_bad_cap_is_an_error_naming_the_variable():
    done = _run("avx2")
    assert done.returncode != 0
    assert "MWM_CPU_VECTOR_BITS='avx2'" in done.stderr
    assert "512, 256 or 128" in done.stderr
