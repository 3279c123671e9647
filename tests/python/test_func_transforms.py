"""torch.func transforms over the loss ops: grad, jacrev and vmap(grad) give what autograd gives.

torch.library's generated autograd.Function is refused by torch.func, so the wrappers route the
op through mwm._transforms under a transform; these tests fail if that path is lost or its
gradient differs from the registered backward's."""
import warnings

import pytest
import torch

import mwm

# (target shape, patch size): 2D and 3D.
SHAPES = [((2, 3, 32, 32), 16), ((2, 1, 16, 16, 16), 8)]


def loss_inputs(shape, patch, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(shape, generator=generator, dtype=dtype)
    spatial = shape[2:]
    num_patches = 1
    for size in spatial:
        num_patches *= size // patch
    width = shape[1] * patch ** len(spatial)
    pred = torch.randn(shape[0], num_patches, width, generator=generator, dtype=dtype)
    mask = torch.rand(shape[0], num_patches, generator=generator) > 0.4
    mask[:, 0] = True
    weight = torch.rand(shape[0], num_patches, generator=generator, dtype=dtype)
    return pred, target, mask, weight


def autograd_gradient(loss, pred):
    leaf = pred.clone().requires_grad_()
    loss(leaf).backward()
    return leaf.grad


@pytest.mark.parametrize("shape,patch", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "mean_eps", "sum"])
@pytest.mark.parametrize("norm_target", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_grad_equals_backward(shape, patch, reduction, norm_target, weighted):
    pred, target, mask, weight = loss_inputs(shape, patch)

    def loss(p):
        return mwm.masked_recon_loss(p, target, mask, patch, reduction=reduction,
                                     norm_target=norm_target,
                                     weight=weight if weighted else None)

    assert torch.equal(torch.func.grad(loss)(pred), autograd_gradient(loss, pred))


@pytest.mark.parametrize("shape,patch", SHAPES)
def test_grad_of_l1_in_image_layout(shape, patch):
    pred, target, mask, _ = loss_inputs(shape, patch)
    image = torch.randn_like(target)

    def loss(p):
        return mwm.masked_recon_loss(p, target, mask, patch, error="l1", layout="image")

    gradient = torch.func.grad(loss)(image)
    assert gradient.shape == image.shape
    assert torch.equal(gradient, autograd_gradient(loss, image))


def test_jacrev_of_per_patch_losses_matches_rowwise_autograd():
    pred, target, mask, _ = loss_inputs(*SHAPES[0])

    def losses(p):
        return mwm.masked_recon_loss(p, target, mask, 16, reduction="none")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # functorch's fallback: no batching rule
        jacobian = torch.func.jacrev(losses)(pred)
    batch, patches = mask.shape
    assert jacobian.shape == (batch, patches, *pred.shape)
    for b in range(batch):
        for n in range(patches):
            leaf = pred.clone().requires_grad_()
            losses(leaf)[b, n].backward()
            torch.testing.assert_close(jacobian[b, n], leaf.grad, rtol=0, atol=1e-12)
    assert not jacobian[~mask].any(), "an unmasked patch's loss has a gradient"


def test_per_sample_gradients_with_vmap_of_grad():
    pred, target, mask, _ = loss_inputs(*SHAPES[0])
    stacked = torch.stack([pred, pred.flip(0), 2 * pred])

    def loss(p):
        return mwm.masked_recon_loss(p, target, mask, 16, norm_target=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gradients = torch.func.vmap(torch.func.grad(loss))(stacked)
    for gradient, one in zip(gradients, stacked):
        torch.testing.assert_close(gradient, autograd_gradient(loss, one), rtol=0, atol=1e-12)


def test_grad_of_coral_loss_reaches_both_inputs():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    y = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    grad_x, grad_y = torch.func.grad(mwm.coral_loss, argnums=(0, 1))(x, y)
    leaf_x, leaf_y = x.clone().requires_grad_(), y.clone().requires_grad_()
    mwm.coral_loss(leaf_x, leaf_y).backward()
    assert torch.equal(grad_x, leaf_x.grad)
    assert torch.equal(grad_y, leaf_y.grad)
    assert grad_x.abs().sum() > 0 and grad_y.abs().sum() > 0


def test_outside_a_transform_the_fused_path_still_runs():
    # The functorch route must not take over plain autograd: the CPU forward still writes the
    # gradient (the fused op), which a plain .backward() hands over.
    pred, target, mask, _ = loss_inputs(*SHAPES[0], dtype=torch.float32)
    leaf = pred.clone().requires_grad_()
    loss = mwm.masked_recon_loss(leaf, target, mask, 16)
    assert "_masked_recon_loss_fused" in type(loss.grad_fn).__name__


def test_grad_of_mae_loss_equals_backward():
    pred, target, mask, _ = loss_inputs(*SHAPES[0])

    def loss(p):
        return mwm.mae_loss(p, target, mask, 16, norm_pix_loss=True)

    assert torch.equal(torch.func.grad(loss)(pred), autograd_gradient(loss, pred))


def test_grad_through_the_token_ops_equals_backward():
    generator = torch.Generator().manual_seed(5)
    regions = (torch.rand(3, 16, generator=generator) > 0.5).to(torch.int32)
    result = mwm.generate_masks((4, 4), policy="per_region", regions=regions,
                                region_ratios=(0.3, 0.8))
    x = torch.randn(3, 16, 8, generator=generator, dtype=torch.float64)
    token = torch.randn(8, generator=generator, dtype=torch.float64)

    def loss(x, token):
        packed, cu_seqlens, _ = mwm.pack_visible_tokens(x, result)
        unpacked = mwm.unpack_visible_tokens(packed * 2, cu_seqlens, result, token)
        visible = mwm.gather_tokens(x, result.ids_keep)
        restored = mwm.restore_tokens(visible, result.ids_restore, token, result.num_visible)
        return (unpacked ** 2).sum() + (restored ** 3).sum()

    grad_x, grad_token = torch.func.grad(loss, argnums=(0, 1))(x, token)
    leaf_x, leaf_token = x.clone().requires_grad_(), token.clone().requires_grad_()
    loss(leaf_x, leaf_token).backward()
    assert torch.equal(grad_x, leaf_x.grad)
    assert torch.equal(grad_token, leaf_token.grad)
    assert grad_token.abs().sum() > 0


def test_second_derivative_of_packing_under_torch_func():
    # grad of grad runs the packed backward ops' own backward inside a transform.
    generator = torch.Generator().manual_seed(6)
    result = mwm.generate_masks((4, 4), 2, ratio=0.5)
    x = torch.randn(2, 16, 4, generator=generator, dtype=torch.float64)
    direction = torch.randn_like(x)

    def loss(x):
        packed, _, _ = mwm.pack_visible_tokens(x, result)
        return (packed ** 3).sum()

    def directional(x):
        return (torch.func.grad(loss)(x) * direction).sum()

    second = torch.func.grad(directional)(x)
    visible = torch.zeros_like(x, dtype=torch.bool)
    visible[torch.arange(2)[:, None], result.ids_keep] = True
    expected = torch.where(visible, 6 * x * direction, torch.zeros_like(x))
    torch.testing.assert_close(second, expected, rtol=1e-12, atol=1e-12)
