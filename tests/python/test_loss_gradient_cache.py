"""The block the CPU loss keeps for its next gradient (docs/design.md, "The loss gradient's
memory on the CPU"): a freed gradient's block is reused by the next one, never while the
previous gradient is alive, at most one block is held, ``mwm.empty_loss_cache()`` frees it,
``MWM_LOSS_GRADIENT_CACHE=0`` turns it off, and a reused (dirty) block gets the bits of the
unfused backward."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import mwm

PATCH = 16


def make_case(batch=8, seed=0, masked=0.75):
    """A 2D RGB case whose gradient (batch x 196 x 768 float32, 4.6 MiB at batch 8) is above the
    cache's 4 MiB floor."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn((batch, 3, 224, 224), generator=g)
    pred = torch.randn((batch, 196, 3 * PATCH * PATCH), generator=g).requires_grad_(True)
    mask = torch.rand((batch, 196), generator=g) < masked
    return pred, imgs, mask


def fused_gradient(pred, imgs, mask):
    pred.grad = None
    mwm.mae_loss(pred, imgs, mask, PATCH, norm_pix_loss=True).backward()
    grad = pred.grad
    pred.grad = None
    return grad


def unfused_gradient(pred, imgs, mask):
    loss = torch.ops.mwm.masked_recon_loss(pred.detach(), imgs, mask, None, [PATCH, PATCH],
                                           "patch", True, "mse", "mean", "default")
    return torch.ops.mwm._masked_recon_loss_backward(torch.ones_like(loss), pred.detach(), imgs,
                                                     mask, None, [PATCH, PATCH], "patch", True,
                                                     "mse", "mean")


@pytest.fixture(autouse=True)
def empty_cache():
    mwm.empty_loss_cache()
    yield
    mwm.empty_loss_cache()


def test_a_freed_gradient_block_is_reused_by_the_next_gradient():
    pred, imgs, mask = make_case()
    first = fused_gradient(pred, imgs, mask)
    address, nbytes = first.data_ptr(), first.nbytes
    assert mwm.loss_cache_bytes() == 0
    assert torch.ops.mwm._loss_gradient_live_bytes() == nbytes  # what the benchmark adds
    del first
    assert mwm.loss_cache_bytes() == nbytes
    assert torch.ops.mwm._loss_gradient_live_bytes() == 0
    second = fused_gradient(pred, imgs, mask)
    assert second.data_ptr() == address
    assert mwm.loss_cache_bytes() == 0


def test_a_live_gradient_is_never_handed_out_again():
    pred, imgs, mask = make_case()
    first = fused_gradient(pred, imgs, mask)
    kept = first.clone()
    second = fused_gradient(pred, imgs, mask)
    assert second.data_ptr() != first.data_ptr()
    assert torch.equal(first, kept)  # the second step wrote elsewhere
    assert torch.equal(second, kept)


def test_at_most_one_block_is_held():
    pred, imgs, mask = make_case()
    grads = [fused_gradient(pred, imgs, mask) for _ in range(3)]
    nbytes = grads[0].nbytes
    del grads
    assert mwm.loss_cache_bytes() == nbytes


def test_empty_loss_cache_frees_the_block_and_leaves_live_gradients_alone():
    pred, imgs, mask = make_case()
    alive = fused_gradient(pred, imgs, mask)
    kept = alive.clone()
    fused_gradient(pred, imgs, mask)  # freed at once: its block is cached
    assert mwm.loss_cache_bytes() > 0
    mwm.empty_loss_cache()
    assert mwm.loss_cache_bytes() == 0
    assert torch.equal(alive, kept)
    del alive
    assert mwm.loss_cache_bytes() == kept.nbytes


def test_a_reused_dirty_block_gets_the_unfused_bits():
    pred, imgs, mask = make_case(seed=1)
    # The first gradient fills the block with values of another mask; every element of the
    # second must be rewritten (zeros outside the loss included).
    fused_gradient(pred, imgs, ~mask)
    assert mwm.loss_cache_bytes() > 0
    reused = fused_gradient(pred, imgs, mask)
    assert torch.equal(reused, unfused_gradient(pred, imgs, mask))


def test_a_block_is_reused_only_by_a_gradient_that_fits_it():
    small = make_case(batch=8)
    large = make_case(batch=20)
    fused_gradient(*large)
    held = mwm.loss_cache_bytes()
    assert held > 0
    grad = fused_gradient(*small)  # less than half the block: not handed out
    assert mwm.loss_cache_bytes() == held
    small_bytes = grad.nbytes
    del grad
    # The freed block replaces the held one (a process moving to another shape keeps the new
    # one), and the next gradient of that shape takes it.
    assert mwm.loss_cache_bytes() == small_bytes
    again = fused_gradient(*small)
    assert mwm.loss_cache_bytes() == 0
    del again
    assert mwm.loss_cache_bytes() == small_bytes


def test_small_gradients_are_not_cached():
    pred, imgs, mask = make_case(batch=1)  # 0.6 MiB, below the 4 MiB floor
    fused_gradient(pred, imgs, mask)
    assert mwm.loss_cache_bytes() == 0


def test_the_cache_does_not_grow_over_steps():
    pred, imgs, mask = make_case()
    nbytes = pred.nbytes
    for _ in range(5):
        pred.grad = None
        mwm.mae_loss(pred, imgs, mask, PATCH, norm_pix_loss=True).backward()
        assert mwm.loss_cache_bytes() == 0  # the live gradient took the block
    pred.grad = None
    assert mwm.loss_cache_bytes() == nbytes


def test_the_environment_variable_turns_the_cache_off():
    code = ("import torch, mwm\n"
            "g = torch.Generator().manual_seed(0)\n"
            "pred = torch.randn((8, 196, 768), generator=g).requires_grad_(True)\n"
            "imgs = torch.randn((8, 3, 224, 224), generator=g)\n"
            "mask = torch.rand((8, 196), generator=g) < 0.75\n"
            "for _ in range(2):\n"
            "    pred.grad = None\n"
            "    mwm.mae_loss(pred, imgs, mask, 16, norm_pix_loss=True).backward()\n"
            "pred.grad = None\n"
            "print(mwm.loss_cache_bytes())\n")
    env = dict(os.environ, MWM_LOSS_GRADIENT_CACHE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "0"
