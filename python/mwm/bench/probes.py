"""Frozen-encoder probes: a linear classifier and a per-pixel linear segmentation head.

Both read features computed once with the encoder frozen (`extract_features`), so a probe costs
a few seconds and measures what pretraining put into the representation, not what fine-tuning
could add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class Features:
    pooled: torch.Tensor  # (L, F): mean and max of the coarsest map, for classification
    maps: List[torch.Tensor]  # per scale (L, C_s, *grid_s), for segmentation


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 128,
    progress: bool = False,
    desc: str = "features",
) -> Features:
    """Run `model.features` over `images` in eval mode with nothing masked."""
    was_training = model.training
    model.eval()
    maps: List[List[torch.Tensor]] = []
    starts = range(0, images.shape[0], batch_size)
    for start in tqdm(starts, desc=desc, leave=False, disable=not progress):
        out = model.features(images[start : start + batch_size].to(device))
        maps.append([f.float().cpu() for f in out])
    model.train(was_training)
    per_scale = [torch.cat([m[s] for m in maps]) for s in range(len(maps[0]))]
    coarse = per_scale[-1].flatten(2)
    pooled = torch.cat([coarse.mean(dim=2), coarse.amax(dim=2)], dim=1)
    return Features(pooled, per_scale)


def _standardize(train: torch.Tensor, test: torch.Tensor, dim):
    mean = train.mean(dim=dim, keepdim=True)
    std = train.std(dim=dim, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    seed: int = 0,
    steps: int = 300,
    lr: float = 0.02,
    weight_decay: float = 1e-3,
) -> float:
    """Test accuracy of a multinomial logistic regression on standardized features."""
    if train_x.shape[0] != train_y.shape[0] or test_x.shape[0] != test_y.shape[0]:
        raise ValueError(
            f"features and labels disagree: train {tuple(train_x.shape)} vs {tuple(train_y.shape)}, "
            f"test {tuple(test_x.shape)} vs {tuple(test_y.shape)}"
        )
    train_x, test_x = _standardize(train_x, test_x, dim=0)
    gen = torch.Generator().manual_seed(seed)
    weight = (torch.randn(train_x.shape[1], num_classes, generator=gen) * 0.01).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = F.cross_entropy(train_x @ weight + bias, train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        predicted = (test_x @ weight + bias).argmax(dim=1)
    return float((predicted == test_y).float().mean())


def _segmentation_logits(maps, weights, bias, size):
    mode = "bilinear" if len(size) == 2 else "trilinear"
    logits = bias
    for m, w in zip(maps, weights):
        # A 1x1 conv commutes with linear upsampling, so each scale is projected at its own
        # resolution and only the one-channel logits are upsampled.
        projected = torch.einsum("bc...,c->b...", m, w)[:, None]
        logits = logits + F.interpolate(projected, size=size, mode=mode, align_corners=False)
    return logits[:, 0]


def dice_scores(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-sample Dice of boolean masks (L, *S); NaN where both are empty."""
    pred, truth = pred.flatten(1).float(), truth.flatten(1).float()
    inter = (pred * truth).sum(1)
    total = pred.sum(1) + truth.sum(1)
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, float("nan")))


def segmentation_probe(
    train_maps: List[torch.Tensor],
    train_masks: torch.Tensor,
    test_maps: List[torch.Tensor],
    test_masks: torch.Tensor,
    seed: int = 0,
    steps: int = 200,
    batch_size: int = 64,
    lr: float = 0.05,
) -> float:
    """Mean Dice on the test images that contain a lesion, for a linear per-pixel head on the
    frozen multi-scale feature maps (logits upsampled to the image size)."""
    size = tuple(train_masks.shape[1:])
    standardized = [_standardize(a, b, dim=(0, *range(2, a.dim()))) for a, b in zip(train_maps, test_maps)]
    train_maps = [a for a, _ in standardized]
    test_maps = [b for _, b in standardized]
    gen = torch.Generator().manual_seed(seed)
    weights = [(torch.randn(m.shape[1], generator=gen) * 0.01).requires_grad_() for m in train_maps]
    bias = torch.zeros(1, 1, *([1] * len(size)), requires_grad=True)
    opt = torch.optim.Adam([*weights, bias], lr=lr)
    positive_share = float(train_masks.float().mean().clamp(1e-4, 0.5))
    pos_weight = torch.tensor((1 - positive_share) / positive_share).sqrt()
    n = train_masks.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        logits = _segmentation_logits([m[idx] for m in train_maps], weights, bias, size)
        truth = train_masks[idx].float()
        prob = logits.sigmoid()
        soft_dice = 1 - (2 * (prob * truth).sum() + 1) / (prob.sum() + truth.sum() + 1)
        bce = F.binary_cross_entropy_with_logits(logits, truth, pos_weight=pos_weight)
        loss = bce + soft_dice
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = _segmentation_logits(test_maps, weights, bias, size) > 0
    scores = dice_scores(pred, test_masks)
    has_lesion = test_masks.flatten(1).any(1)
    if not bool(has_lesion.any()):
        return float("nan")
    return float(scores[has_lesion].mean())
