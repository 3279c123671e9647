"""Seed-paired screening of the benchmark's MAE ViT (docs/harness-mae.md, "Third round" to
"Ninth round"): pretrain each configuration on every seed, probe the frozen encoder, print
the paired gain over `none`.


    python benchmarks/mae_screen.py '{}'                                   # the quick setting
    python benchmarks/mae_screen.py '{"legacy_init": true, "starts": true}'
    python benchmarks/mae_screen.py '{"starts": true}'
    python benchmarks/mae_screen.py '{"pixel_stats": false}'
    python benchmarks/mae_screen.py '{"patch_size": 4}'
    python benchmarks/mae_screen.py '{"epochs": 16, "lr": 1.5e-3, "seeds": [0, 1, 2]}'
    python benchmarks/mae_screen.py '{"decoder_depth": 2, "seeds": [0, 1, 2]}'
    python benchmarks/mae_screen.py '{"lr": 3e-3, "seeds": [0, 1, 2]}'
    python benchmarks/mae_screen.py '{"norm_pix": false, "seeds": [0, 1, 2]}'
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "decays": [1e-3, 1e-1, 1],
        "reads": ["prenorm", "embed", "block1", "block2", "mean2", "mean3"]}'
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "mae_depth": 2}'
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "mae_dim": 128,
        "mae_depth": 2}'
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "stem": 16}'
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "stem": 16,
        "stem_norm": false}'
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "mae_depth": 1}'
    python benchmarks/mae_screen.py '{"seeds": [3, 4], "zero": false, "mae_depth": 1}'
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "mae_depth": 1,
        "epochs": 8}'                                                      # also "epochs": 2
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "mae_depth": 1,
        "mae_dim": 128}'                                         # stopped after seeds 0, 1
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "mae_depth": 1,
        "stem": 16}'                                          # also with "stem_norm": false
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "decoder_dim": 32}'
    python benchmarks/mae_screen.py '{"seeds": [0, 1, 2], "zero": false, "decoder_dim": 32,
        "mae_depth": 1}'
    python benchmarks/mae_screen.py '{"zero": false, "mae_depth": 1, "configs": ["none",
        "random-0.7", "mwm-0.8/0.4", "fixed-0.4"]}'

Fifth round:

    python benchmarks/mae_screen.py '{"zero": false, "lesion": true}'
    python benchmarks/mae_screen.py '{"zero": false, "shift": 8}'
    python benchmarks/mae_screen.py '{"zero": false, "mae_depth": 1, "shift": 8}'
    python benchmarks/mae_screen.py '{"zero": false, "mae_depth": 1, "shift": 8, "configs":
        ["none", "random-0.7", "mwm-0.8/0.4", "mwm-0.7/0.3", "mwm-0.6/0.2", "fixed-0.4",
        "weighted-0.4"]}'
    python benchmarks/mae_screen.py '{"seeds": [0], "zero": false,
        "no_pos": true}'                                   # also "learned_pos": true
    python benchmarks/mae_screen.py '{"seeds": [0], "zero": false,
        "pretrain_samples": 4096, "epochs": 1}'

Sixth round:

    python benchmarks/mae_screen.py '{"zero": false, "target_sigma": 1}'     # also 2
    python benchmarks/mae_screen.py '{"zero": false, "visible_weight": 1}'   # also 0.25, 3, 10
    python benchmarks/mae_screen.py '{"zero": false, "visible_weight": 1, "mae_depth": 1}'
    python benchmarks/mae_screen.py '{"zero": false, "visible_weight": 3, "epochs": 8}'
    python benchmarks/mae_screen.py '{"zero": false, "batch_size": 16, "lr": 5e-4}'  # also depth 1
    python benchmarks/mae_screen.py '{"zero": false, "train_samples": 64}'   # also 128, 32
    python benchmarks/mae_screen.py '{"zero": false, "train_samples": 64, "seeds": [5, 6, 7, 8, 9]}'
    python benchmarks/mae_screen.py '{"zero": false, "train_samples": 64, "mae_depth": 1}'
    python benchmarks/mae_screen.py '{"zero": false, "train_samples": 64, "configs": ["none",
        "random-0.7", "mwm-0.8/0.4", "mwm-0.7/0.3", "mwm-0.6/0.2", "fixed-0.4", "weighted-0.4"]}'

Seventh round:

    python benchmarks/mae_screen.py '{"zero": false, "seeds": [0], "epochs": 128,
        "probe_epochs": [4, 8, 16, 32, 64, 96]}'                           # also "seeds": [1]
    python benchmarks/mae_screen.py '{"zero": false, "seeds": [0, 1], "epochs": 64,
        "probe_epochs": [4, 16, 32], "reads": ["block1", "prenorm"]}'
    python benchmarks/mae_screen.py '{"zero": false, "seeds": [0], "epochs": 64,
        "decoder_depth": 4, "probe_epochs": [8, 16, 32], "reads": ["block1", "prenorm"]}'
    python benchmarks/mae_screen.py '{"zero": false, "seeds": [0, 1, 2], "epochs": 8,
        "decoder_depth": 4, "probe_epochs": [4]}'                     # also "seeds": [3, 4]
    python benchmarks/mae_screen.py '{"zero": false, "mae_dim": 32}'       # also seeds 5-9
    python benchmarks/mae_screen.py '{"zero": false, "patch_size": 16}'

Eighth round (schedule settings are `Settings` overrides):

    python benchmarks/mae_screen.py '{"zero": false}'
    python benchmarks/mae_screen.py '{"zero": false, "warmup_share": 0.0}'  # also 0.25, 0.5
    python benchmarks/mae_screen.py '{"zero": false, "warmup_share": 0.5, "lr": 3e-3}'
    python benchmarks/mae_screen.py '{"zero": false, "warmup_share": 0.5, "epochs": 8}'
    python benchmarks/mae_screen.py '{"zero": false, "warmup_share": 0.0, "lr": 3e-4}'
    python benchmarks/mae_screen.py '{"zero": false, "lr": 3e-4, "epochs": 16}'
    python benchmarks/mae_screen.py '{"zero": false, "weight_decay": 0.0}'   # also 0.3
    python benchmarks/mae_screen.py '{"zero": false, "configs": ["none", "random-0.75",
        "random-0.9"]}'
    python benchmarks/mae_screen.py '{"zero": false, "frozen_embed": true}'  # also "epochs": 8, 16
    python benchmarks/mae_screen.py '{"zero": false, "mae_depth": 1}'
    python benchmarks/mae_screen.py '{"zero": false, "frozen_embed": true, "mae_depth": 1}'
    python benchmarks/mae_screen.py '{"zero": false, "frozen_embed": true, "mae_depth": 1,
        "seeds": [5, 6, 7, 8, 9]}'
    python benchmarks/mae_screen.py '{"zero": false, "mae_depth": 1, "seeds": [7, 8],
        "configs": ["none"], "starts": true}'
    python benchmarks/mae_screen.py '{"zero": false, "hog_cell": 4}'  # also "lr": 2e-3; "epochs": 8
    python benchmarks/mae_screen.py '{"zero": false, "hog_cell": 8}'
    python benchmarks/mae_screen.py '{"zero": false, "deep": [1]}'   # also with "epochs": 8
    python benchmarks/mae_screen.py '{"zero": false, "deep": [2]}'   # also "deep": [1, 2]

The harness changed under these rows. Rounds 3-8 ran a depth-3 MAE with a trained patch
embedding, probed from three starts capped at 100 L-BFGS iterations: to rerun them as they
were, add `"before_ninth": true` (the keys of `BEFORE_NINTH` under the row's own: "probe_steps"
100, "probe_random_starts" 0, "mae_depth" 3, "mae_freeze_patch_embed" false). The ninth round's
rows below up to the 4x4 patches ran with the probe converged but still from three starts and
on the depth-3 MAE: add `"before_ninth": true, "probe_steps": 1000`.

Ninth round:

    python benchmarks/mae_screen.py '{"zero": false}'                       # also seeds 5-9
    python benchmarks/mae_screen.py '{"zero": false, "probe_steps": 100}'
    python benchmarks/mae_screen.py '{"zero": false, "layer_scale": 0.1}'   # also 1e-4
    python benchmarks/mae_screen.py '{"zero": false, "layer_scale": 0.1, "epochs": 16,
        "probe_epochs": [4, 8], "lr": 3e-3, "seeds": [0, 1, 2]}'
    python benchmarks/mae_screen.py '{"zero": false, "local": 1}'           # also 2
    python benchmarks/mae_screen.py '{"zero": false, "local": 2, "epochs": 16, "probe_epochs": [8]}'
    python benchmarks/mae_screen.py '{"zero": false, "local": 2, "epochs": 32,
        "probe_epochs": [16], "seeds": [0, 1, 2]}'
    python benchmarks/mae_screen.py '{"zero": false, "patch_size": 4, "local": 4}'
    python benchmarks/mae_screen.py '{"zero": false, "patch_size": 4}'
    python benchmarks/mae_screen.py '{"zero": false, "patch_size": 4, "epochs": 16,
        "probe_epochs": [8], "seeds": [0, 1, 2]}'                      # also "seeds": [3, 4]

Ninth round, with the probe's eight starts (the harness's probe since):

    python benchmarks/mae_screen.py '{"zero": false, "mae_depth": 3,
        "mae_freeze_patch_embed": false}'
    python benchmarks/mae_screen.py '{"zero": false, "mae_freeze_patch_embed": false}'
    python benchmarks/mae_screen.py '{"zero": false}'                  # the harness's MAE since
    python benchmarks/mae_screen.py '{"zero": false, "seeds": [5, 6, 7, 8, 9]}'

The JSON holds `Settings` overrides of the quick preset (brain; seeds 0-4 unless "seeds" is
given) plus "configs" (default none and random-0.6), "lr", "decoder_depth" (default 1),
"norm_pix" (default true), "pixel_stats" (default true: the harness's input standardization;
false feeds raw pixels), "legacy_init" (default false; true: the MAE before the third round,
raw pixels and the convolution's default initialization of the patch embedding) and "starts"
(default false; true also prints, for every model, the training objective and test accuracy
of eight L-BFGS starts: the probe's three - zero weights, tempered 16-4-1, tempered 8-1 - and
five random ones), "zero" (default true; false skips the zero-start row), "decays" (extra
probe L2 strengths on the same last-layer features, rows "wd<value>") and "reads" (extra
readouts probed with the harness's probe, rows named as in `readouts`: "prenorm", "embed",
"blockK", "meanK"), "stem" (default 0; > 0: the patch-local stem `PatchLocalStem` of that
inner width replaces the patch embedding), "stem_norm" (default true: the stem's tokens
layer-normalized), "decoder_dim" (default: the encoder's width), "shift" (pixels of random
translation of the pretraining images and heatmaps, `pretraining.translate`; default 0), "no_pos"
(true: the encoder's position embedding is zeroed, the decoder keeps its own), "learned_pos"
(true: a learned position embedding, std 0.02, replaces the encoder's sin-cos one),
"frozen_embed" (true: the patch embedding keeps its random initialization, MoCo v3's random
patch projection), "layer_scale" (> 0: each encoder block's two residual branches scaled by a
learned per-channel LayerScale starting there, CaiT's), "local" (> 0: encoder tokens attend only
to tokens within that many patches on the grid, LoMaR's local windows; random masks only),
"hog_cell" (> 0: the loss's target is MaskFeat's HOG of each masked patch, 9 bins per cell of
that side, `hog_patches`), "deep" (block numbers, 1-based, whose outputs
are also decoded, each through its own copy of the decoder: DeepMIM's deep supervision),
"probe_epochs" (a list of epochs: the pretraining encoder is also probed after each, rows
"e<K>", and with "reads" also "e<K>_<readout>", so one long schedule shows the gain along
it),
"target_sigma" (> 0: the loss's target is the image blurred by a Gaussian of that sigma in
pixels, PixMIM's low-pass target), "visible_weight" (> 0: the visible patches join the loss
with that weight, the masked ones keeping 1) and
"lesion" (true: rows "lesion" and "lesion_embed", a linear classifier of the lesion's type, 3
classes, on the one token holding most of each lesion, of the last layer and of the tokens
entering the first block). "probe" is the harness's
classifier probe (lowest objective of its three starts), "zero" the same fit from zero
weights alone (the probe before the third round). One torch thread: deterministic.
"""

from __future__ import annotations

import copy
import json
import sys

import torch

import mwm
from mwm.bench import distributed as bdist
from mwm.bench import models as M
from mwm.bench import pretraining as PT
from mwm.bench import probes as P
from mwm.bench import ratios as R

# The harness's settings before the ninth round (see the docstring).
BEFORE_NINTH = {"probe_steps": 100, "probe_random_starts": 0, "mae_depth": 3,
          "mae_freeze_patch_embed": False}


def start_table(train_x, train_y, test_x, test_y, num_classes, max_iter):
    """(name, training objective, test accuracy) of each of the probe's starts, one fit each."""
    a, b = P._standardize(train_x, test_x, dim=(0, 2))
    a, b = P._channels_last(a), P._channels_last(b)
    names = [f"T{'-'.join(f'{t:g}' for t in sched)}" for sched in P.PROBE_SCHEDULES]
    names += [f"random{r}" for r in range(P.PROBE_RANDOM_STARTS)]
    rows = []
    for name, (start, sched) in zip(names, P.probe_starts(a.shape[2], num_classes)):
        weight = start.clone().requires_grad_()
        bias = torch.zeros(num_classes, requires_grad=True)
        objective = P._fit_from(a, train_y, weight, bias, sched, 1e-2, max_iter)
        with torch.no_grad():
            predicted = P._pooled_logits(b, weight, bias).argmax(dim=1)
        rows.append((name, objective, float((predicted == test_y).float().mean())))
    return rows


@torch.no_grad()
def readouts(model, images, names, batch_size=128):
    """(L, C, P) features per readout name: "last" (the harness: the final norm of the last
    block), "prenorm" (the last block before the final norm), "blockK" (block K's output,
    1-based, through the final norm), "embed" (the tokens entering the first block),
    "meanK" (the mean of the last K blocks' outputs through the final norm)."""
    model.eval()
    chunks = {name: [] for name in names}
    for start in range(0, images.shape[0], batch_size):
        x = model._tokens(images[start:start + batch_size])
        outs = [x]
        for blk in model.blocks:
            x = blk(x)
            outs.append(x)
        for name in names:
            if name == "last":
                f = model.norm(outs[-1])
            elif name == "prenorm":
                f = outs[-1]
            elif name == "embed":
                f = outs[0]
            elif name.startswith("block"):
                f = model.norm(outs[int(name[5:])])
            elif name.startswith("mean"):
                f = torch.stack([model.norm(o) for o in outs[-int(name[4:]):]]).mean(0)
            else:
                raise ValueError(f"readout {name!r} unknown")
            chunks[name].append(f.transpose(1, 2))
    model.train()
    return {name: torch.cat(c) for name, c in chunks.items()}


class PatchLocalStem(torch.nn.Module):
    """A two-layer patch embedding that never crosses a patch border (2x2 stride-2, GELU, then
    (p/2)x(p/2) stride p/2), so a masked patch stays invisible; each layer Xavier-initialized
    like MAE's patch embedding; with `normalize`, the tokens' content is layer-normalized (no
    affine), so that its scale matches the sin-cos position embedding's whatever the stem's
    gain."""

    def __init__(self, dim, patch_size, width, normalize):
        super().__init__()
        self.normalize = normalize
        self.inner = torch.nn.Conv2d(1, width, 2, stride=2)
        self.outer = torch.nn.Conv2d(width, dim, patch_size // 2, stride=patch_size // 2)
        for conv in (self.inner, self.outer):
            kernel = conv.weight.data
            torch.nn.init.xavier_uniform_(kernel.view(kernel.shape[0], -1))
            torch.nn.init.zeros_(conv.bias)

    def forward(self, x):
        y = self.outer(torch.nn.functional.gelu(self.inner(x)))
        if not self.normalize:
            return y
        return torch.nn.functional.layer_norm(y.movedim(1, -1), y.shape[1:2]).movedim(-1, 1)


def lesion_tokens(features, split, patch_size):
    """(features (M, C, 1), labels 0..K-2) at the patch that holds most of each image's lesion,
    images with a lesion only: what a token there says about the lesion's type, without the
    pooling over positions."""
    share = torch.nn.functional.avg_pool2d(split.lesions[:, None].float(), patch_size).flatten(1)
    has = (split.labels > 0) & (share.amax(1) > 0)
    where = share[has].argmax(1)
    tokens = features[has].gather(2, where[:, None, None].expand(-1, features.shape[1], 1))
    return tokens, split.labels[has] - 1


def build(data, s, seed, decoder_depth, pixel_stats, legacy_init, stem=0, stem_norm=True,
          decoder_dim=None):
    mean, std = PT.pixel_statistics(data.pretrain.images) if pixel_stats else (0.0, 1.0)
    torch.manual_seed(seed)
    heads = max(1, s.mae_dim // 32)
    model = M.TinyMAE(data.image_size, 1, s.patch_size, dim=s.mae_dim, depth=s.mae_depth,
                      freeze_patch_embed=s.mae_freeze_patch_embed,
                      heads=heads, decoder_dim=decoder_dim or s.mae_dim,
                      decoder_depth=decoder_depth, decoder_heads=heads, pixel_mean=mean,
                      pixel_std=std)
    if legacy_init:
        # The convolution's default initialization, as the MAE had it: the patch embedding is
        # the first module TinyMAE draws, so the same seed gives the same kernel.
        torch.manual_seed(seed)
        default = torch.nn.Conv2d(1, s.mae_dim, s.patch_size, stride=s.patch_size)
        model.patch_embed.load_state_dict(default.state_dict())
    if stem:
        model.patch_embed = PatchLocalStem(s.mae_dim, s.patch_size, stem, stem_norm)
    return model


def use_lowpass_target(sigma):
    """Reconstruct a Gaussian-blurred image instead of the image itself (PixMIM's low-pass
    target): the loss of every model built afterwards stops rewarding pixel noise."""
    plain = M.reconstruction_loss

    def lowpass_loss(pred, images, mask, norm_pix=True, patch_size=8):
        return plain(pred, gaussian_blur(images, sigma), mask, norm_pix, patch_size=patch_size)

    M.reconstruction_loss = lowpass_loss


def use_visible_patches_in_loss(weight):
    """Add the visible patches to the loss with `weight` (masked ones keep weight 1): the encoder
    is also asked to keep each visible token's own content, which the probe reads."""
    def with_visible(pred, images, mask, norm_pix=True, patch_size=8):
        w = torch.where(mask, torch.ones((), dtype=pred.dtype),
                        torch.full((), float(weight), dtype=pred.dtype))
        return mwm.masked_recon_loss(pred, images, torch.ones_like(mask), patch_size,
                                     weight=w, norm_target=norm_pix)

    M.reconstruction_loss = with_visible


def hog_patches(images, patch_size, cell, bins=9):
    """MaskFeat's target: per patch, the histograms of oriented gradients (unsigned, `bins`
    bins, weighted by the gradient's magnitude) of its `cell` x `cell` cells, each cell's
    histogram L2-normalized; (B, N, bins * (patch_size // cell) ** 2) in the grid's row-major
    patch order."""
    x = images[:, :1]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]
    gy = padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]
    magnitude = torch.sqrt(gx ** 2 + gy ** 2)[:, 0]
    angle = torch.atan2(gy, gx)[:, 0].remainder(torch.pi)
    which = (angle / torch.pi * bins).long().clamp(max=bins - 1)
    hist = torch.zeros(x.shape[0], bins, *x.shape[2:], dtype=x.dtype)
    hist.scatter_(1, which[:, None], magnitude[:, None])
    hist = torch.nn.functional.avg_pool2d(hist, cell) * cell * cell  # (B, bins, H/c, W/c)
    hist = hist / (hist.norm(dim=1, keepdim=True) + 1e-6)
    per = patch_size // cell
    b, k, gh, gw = hist.shape
    hist = hist.view(b, k, gh // per, per, gw // per, per)
    return hist.permute(0, 2, 4, 3, 5, 1).reshape(b, (gh // per) * (gw // per), per * per * k)


def use_hog_target(cell):
    """Predict each masked patch's HOG (`hog_patches`) instead of its pixels (MaskFeat): the
    target keeps edges and shapes and drops smooth intensity."""
    def hog_loss(pred, images, mask, norm_pix=True, patch_size=8):
        target = hog_patches(images, patch_size, cell)
        per_patch = ((pred - target) ** 2).mean(-1)
        weight = mask.to(per_patch.dtype)
        return (per_patch * weight).sum() / weight.sum().clamp(min=1)

    M.reconstruction_loss = hog_loss


_DECODER_PARTS = ("norm", "decoder_embed", "mask_token", "decoder_blocks", "decoder_norm",
                  "decoder_pred")


def decode(parts, decoder_pos, packed, cu_seqlens, masks):
    """The MAE's decoder on packed visible tokens, with the modules named `_DECODER_PARTS` of
    `parts` (the TinyMAE itself, or a copy of them): the predicted patches (B, N, P)."""
    x = mwm.unpack_visible_tokens(parts.decoder_embed(parts.norm(packed)), cu_seqlens,
                                  masks.ids_restore, parts.mask_token)
    x = x + decoder_pos
    for blk in parts.decoder_blocks:
        x = blk(x)
    return parts.decoder_pred(parts.decoder_norm(x))


def _decoder_copy(model):
    """A copy of the MAE's decoder, with its own copy of the final norm, for one side output."""
    side = torch.nn.Module()
    for name in _DECODER_PARTS:
        setattr(side, name, copy.deepcopy(getattr(model, name)))
    return side


def use_deep_supervision(model, blocks, norm_pix):
    """Also reconstruct the masked patches from the outputs of `blocks` (1-based), each through
    its own copy of the decoder, the losses averaged with the last block's (DeepMIM)."""
    model.side_decoders = torch.nn.ModuleDict({str(k): _decoder_copy(model) for k in blocks})

    def forward(images, masks):
        tokens = model._tokens(images)
        packed, cu_seqlens, _ = mwm.pack_visible_tokens(tokens, masks.ids_keep)

        def loss_of(parts, tokens_k):
            pred = decode(parts, model.decoder_pos, tokens_k, cu_seqlens, masks)
            return M.reconstruction_loss(pred, images, masks.mask, norm_pix,
                                         patch_size=model.patch_size)

        # Each side loss is built as soon as its block has run: the order in which autograd
        # then sums the gradients into a block's output, and so the run's bits, follow from it.
        losses = []
        for k, blk in enumerate(model.blocks, start=1):
            packed = blk.forward_packed(packed, cu_seqlens)
            if str(k) in model.side_decoders:
                losses.append(loss_of(model.side_decoders[str(k)], packed))
        losses.append(loss_of(model, packed))
        return sum(losses) / len(losses)

    model.forward = forward


class LayerScale(torch.nn.Module):
    """A learned per-channel scale on a residual branch, starting at `init` (CaiT, DeiT III,
    BEiT: timm's ``init_values``): a block starts close to the identity."""

    def __init__(self, dim, init):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x):
        return x * self.gamma


def use_layer_scale(model, init):
    """Scale both residual branches of every encoder block by a `LayerScale` starting at `init`;
    the weights keep their draw (the scales are constants, drawn from no generator)."""
    for blk in model.blocks:
        dim = blk.proj.out_features
        blk.proj = torch.nn.Sequential(blk.proj, LayerScale(dim, init))
        blk.mlp = torch.nn.Sequential(*blk.mlp, LayerScale(dim, init))


def use_local_attention(model, radius):
    """Let each encoder token attend only to the tokens within `radius` patches of it on the
    grid (Chebyshev distance; LoMaR's local windows), in pretraining and in the probe's
    features. Equal visible counts only (the random and fixed-total policies)."""
    grid_w = model.grid[1]

    def allowed(ids):  # ids (B, T) patch indices -> (B, T, T)
        row, col = ids // grid_w, ids % grid_w
        near = ((row[:, :, None] - row[:, None, :]).abs() <= radius)
        return near & ((col[:, :, None] - col[:, None, :]).abs() <= radius)

    def encode(x, ids):
        pairs = allowed(ids)
        for blk in model.blocks:
            x = blk(x, pairs=pairs)
        return model.norm(x)

    def features(images):
        x = model._tokens(images)
        ids = torch.arange(model.num_patches).expand(x.shape[0], -1)
        x = encode(x, ids)
        return [x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *model.grid)]

    def decoder_input(tokens, masks, uniform):
        if not uniform:
            raise ValueError("local attention: the screen supports equal visible counts only")
        n = model.num_patches
        ids_keep = masks.ids_keep[:, : n - int(masks.num_masked[0])].long()
        x = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
        x = model.decoder_embed(encode(x, ids_keep))
        shuffled = torch.cat([x, model.mask_token.expand(x.shape[0], n - x.shape[1], -1)], 1)
        return torch.gather(shuffled, 1,
                            masks.ids_restore.long()[..., None].expand(-1, -1, x.shape[-1]))

    model.features = features
    model._decoder_input_padded = decoder_input


def gaussian_blur(images, sigma):
    radius = max(1, round(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=images.dtype) / sigma) ** 2)
    taps = taps / taps.sum()
    x = torch.nn.functional.pad(images, (radius,) * 4, mode="reflect")
    x = torch.nn.functional.conv2d(x, taps.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(x, taps.view(1, 1, -1, 1))


def main(argv):
    torch.set_num_threads(1)
    over = json.loads(argv[0]) if argv else {}
    if over.pop("before_ninth", False):
        over = {**BEFORE_NINTH, **over}
    configs = over.pop("configs", ["none", "random-0.6"])
    seeds = over.pop("seeds", [0, 1, 2, 3, 4])
    decoder_depth = over.pop("decoder_depth", 1)
    norm_pix = over.pop("norm_pix", True)
    legacy_init = over.pop("legacy_init", False)
    pixel_stats = over.pop("pixel_stats", not legacy_init)
    show_starts = over.pop("starts", False)
    lr = over.pop("lr", None)
    reads = over.pop("reads", None)  # readout names (see `readouts`): extra probe rows
    stem = over.pop("stem", 0)  # > 0: a PatchLocalStem of this inner width
    stem_norm = over.pop("stem_norm", True)
    decoder_dim = over.pop("decoder_dim", None)  # default: the encoder's width
    show_zero = over.pop("zero", True)  # false: skip the zero-start probe row
    decays = over.pop("decays", [])  # extra probe L2 strengths on the last layer
    shift = over.pop("shift", 0)  # > 0: pretraining translation by up to this many pixels
    no_pos = over.pop("no_pos", False)  # true: the encoder gets no position embedding
    learned_pos = over.pop("learned_pos", False)  # true: a learned position embedding
    frozen_embed = over.pop("frozen_embed", False)  # true: the patch embedding stays random
    layer_scale = over.pop("layer_scale", 0)  # > 0: LayerScale on the encoder's blocks
    local = over.pop("local", 0)  # > 0: encoder attention within this many patches
    lesion = over.pop("lesion", False)  # true: probe the lesion's token alone (rows "lesion*")
    target_sigma = over.pop("target_sigma", 0)  # > 0: low-pass reconstruction target
    if target_sigma:
        use_lowpass_target(target_sigma)
    probe_epochs = over.pop("probe_epochs", [])  # also probe after these epochs (rows "e<K>")
    deep = over.pop("deep", [])  # blocks (1-based) whose outputs are also decoded (DeepMIM)
    hog_cell = over.pop("hog_cell", 0)  # > 0: MaskFeat's HOG target with cells of this side
    if hog_cell:
        use_hog_target(hog_cell)
    visible_weight = over.pop("visible_weight", 0)  # > 0: visible patches in the loss too
    if visible_weight:
        use_visible_patches_in_loss(visible_weight)
    s = R.preset("quick", models=("mae",), seeds=tuple(seeds), **over)
    R.validate_settings(s)
    lr = lr or s.lr["mae"]
    data = R.prepare_builtin("brain", s)
    k = len(data.class_names)
    ctx = bdist.DistContext()
    results = {}
    for seed in seeds:
        for name in configs:
            config = R.parse_config(name)
            model = build(data, s, seed, decoder_depth, pixel_stats, legacy_init, stem,
                          stem_norm, decoder_dim)
            model.forward.__func__.__defaults__ = (norm_pix,)  # the loss's target normalization
            if hog_cell:
                width = 9 * (s.patch_size // hog_cell) ** 2
                model.decoder_pred = torch.nn.Linear(model.decoder_pred.in_features, width)
            if layer_scale:
                use_layer_scale(model, layer_scale)
            if local:
                use_local_attention(model, local)
            if frozen_embed:
                model.patch_embed.requires_grad_(False)  # MoCo v3's random patch projection
            if deep:  # after the decoder's last change: the side decoders copy it
                use_deep_supervision(model, deep, norm_pix)
            if no_pos:
                model.pos.zero_()  # the decoder keeps its own
            if learned_pos:
                # ViT's learned embedding (std 0.02), drawn from its own stream so that the
                # other weights stay the same draw; the decoder keeps its sin-cos one.
                gen = torch.Generator().manual_seed(seed)
                start = 0.02 * torch.randn(model.pos.shape, generator=gen)
                del model._buffers["pos"]
                model.pos = torch.nn.Parameter(start)
            cpu = torch.device("cpu")
            labels = (data.train.labels, data.test.labels)

            def probe_now():
                train = P.extract_features(model, data.train.images, cpu).positions()
                test = P.extract_features(model, data.test.images, cpu).positions()
                return train, test, P.linear_probe(train, labels[0], test, labels[1], k,
                                                   max_iter=s.probe_steps,
                                                   random_starts=s.probe_random_starts)

            along = {}

            def probe_along(epoch, last_loss):
                if epoch not in probe_epochs:
                    return
                along[f"e{epoch}"] = probe_now()[2]
                if reads:
                    tr, te = (readouts(model, data.train.images, reads),
                              readouts(model, data.test.images, reads))
                    for r in reads:
                        along[f"e{epoch}_{r}"] = P.linear_probe(
                            tr[r], labels[0], te[r], labels[1], k, max_iter=s.probe_steps,
                            random_starts=s.probe_random_starts)
                print(f"   {seed} {name} epoch {epoch} loss {last_loss:.4f}:", {
                    key: round(100 * v, 1) for key, v in along.items()
                    if key == f"e{epoch}" or key.startswith(f"e{epoch}_")}, flush=True)

            loss = None
            if config.policy != "none":
                masker = config.masker(data.grid, seed, s.thresholds, s.reduction)
                loss = PT.pretrain(model, data, masker, s, lr, seed, ctx, progress=False,
                                  shift=shift, after_epoch=probe_along)
                loss = round(loss.final_loss, 4)
            train, test, accuracy = probe_now()
            row = {"probe": accuracy}
            if show_zero:
                row["zero"] = P.linear_probe(train, labels[0], test, labels[1], k,
                                             max_iter=s.probe_steps, schedules=((1.0,),),
                                             random_starts=0)
            for wd in decays:
                row[f"wd{wd:g}"] = P.linear_probe(train, labels[0], test, labels[1], k,
                                                  weight_decay=wd, max_iter=s.probe_steps,
                                                  random_starts=s.probe_random_starts)
            if lesion:
                emb = readouts(model, data.train.images, ["embed"])["embed"]
                emb_te = readouts(model, data.test.images, ["embed"])["embed"]
                for key, (a, b) in {"lesion": (train, test), "lesion_embed": (emb, emb_te)}.items():
                    (xa, ya), (xb, yb) = (lesion_tokens(a, data.train, s.patch_size),
                                          lesion_tokens(b, data.test, s.patch_size))
                    row[key] = P.linear_probe(xa, ya, xb, yb, k - 1, max_iter=s.probe_steps,
                                              random_starts=s.probe_random_starts)
            if reads:
                tr = readouts(model, data.train.images, reads)
                te = readouts(model, data.test.images, reads)
                for r in reads:
                    row[r] = P.linear_probe(tr[r], labels[0], te[r], labels[1], k,
                                            max_iter=s.probe_steps,
                                            random_starts=s.probe_random_starts)
            for epoch in probe_epochs:  # the unpretrained encoder is the same at every epoch
                row[f"e{epoch}"] = along.get(f"e{epoch}", row["probe"])
                for r in reads or []:
                    row[f"e{epoch}_{r}"] = along.get(f"e{epoch}_{r}", row[r])
            results[(seed, name)] = row
            print(seed, name, {key: round(100 * v, 1) for key, v in row.items()}, "loss", loss,
                  flush=True)
            if show_starts:
                table = start_table(train, labels[0], test, labels[1], k, s.probe_steps)
                best = min(obj for _, obj, _ in table)
                print("   starts (objective - best, accuracy %):", "  ".join(
                    f"{n} {obj - best:.3f} {100 * acc:.1f}" for n, obj, acc in table), flush=True)
    for key in results[(seeds[0], configs[0])]:
        for name in configs:
            mean = sum(results[(sd, name)][key] for sd in seeds) / len(seeds)
            print(f"MEAN {key} {name}: {100 * mean:.1f}")
        for name in configs[1:]:
            gains = [100 * (results[(sd, name)][key] - results[(sd, "none")][key]) for sd in seeds]
            print(f"GAIN {key} {name} - none: {sum(gains) / len(gains):+.1f} per seed "
                  f"{[round(g, 1) for g in gains]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
