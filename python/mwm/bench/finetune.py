"""Short end-to-end fine-tuning: how much a pretrained encoder helps when the encoder may adapt.

A frozen linear probe asks whether the classes are linearly separable in the encoder's features
as they are. MAE's features are known to read poorly that way and well after fine-tuning (He et
al. 2021), and Mask What Matters fine-tunes; on the phantoms an unpretrained ViT's random patch
embedding passes each patch's pixels nearly unchanged to a linear probe, a strong baseline
that pretraining cannot beat by moving the tokens towards anatomy (docs/harness.md). So the
benchmark's accuracy comes from fine-tuning: the encoder and a classification head are
trained together for a fixed, small budget, with the same head, optimizer, schedule and data
order for every configuration of a seed, pretrained or not.

The head is the linear probe's, made trainable: every scale of ``model.features`` pooled onto
the coarsest grid, a batch norm without affine parameters (MAE's linear probe puts one before
its head), a per-position linear map to class logits, and log-sum-exp pooling over positions,
so that a lesion covering a few positions decides the class.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

CPU = torch.device("cpu")


class PositionwiseHead(nn.Module):
    """Class logits (B, K) from multi-scale feature maps [(B, C_s, *grid_s)], coarsest last."""

    def __init__(self, channels: Sequence[int], num_classes: int, ndim: int):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim={ndim} must be 2 or 3")
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must be at least 2")
        total = int(sum(channels))
        norm = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim]
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[ndim]
        self.ndim = ndim
        self.norm = norm(total, affine=False)
        self.linear = conv(total, num_classes, 1)
        # Zero weights: the head starts from no opinion, the same for every configuration.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, maps: List[torch.Tensor]) -> torch.Tensor:
        coarse = maps[-1].shape[2:]
        pool = F.adaptive_avg_pool2d if self.ndim == 2 else F.adaptive_avg_pool3d
        x = torch.cat([m if m.shape[2:] == coarse else pool(m, coarse) for m in maps], dim=1)
        return torch.logsumexp(self.linear(self.norm(x)).flatten(2), dim=2)


@dataclass(frozen=True)
class FinetuneRecipe:
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_share: float = 0.1

    def check(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"finetune {name}={getattr(self, name)} must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"finetune lr={self.lr} must be positive")
        if self.weight_decay < 0:
            raise ValueError(f"finetune weight_decay={self.weight_decay} must be non-negative")
        if not 0 <= self.warmup_share < 1:
            raise ValueError(f"finetune warmup_share={self.warmup_share} must lie in [0, 1)")


def warmup_cosine(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to 0 at `total` (MAE's schedule)."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def _param_groups(modules: Sequence[nn.Module], weight_decay: float) -> list:
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "mask_token" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _feature_channels(model: nn.Module, example: torch.Tensor) -> List[int]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        channels = [int(f.shape[1]) for f in model.features(example[:1])]
    model.train(was_training)
    return channels


def batch_order(num_samples: int, seed: int, epochs: int) -> List[torch.Tensor]:
    """The fine-tuning order of every epoch: a function of the seed alone, so every
    configuration of a seed (pretrained or not) is fine-tuned on the same batches."""
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    return [torch.randperm(num_samples, generator=gen) for _ in range(epochs)]


def finetune(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    seed: int,
    recipe: FinetuneRecipe = FinetuneRecipe(),
    device: torch.device = CPU,
) -> Tuple[nn.Module, PositionwiseHead]:
    """A copy of `model` (left untouched) and a fresh `PositionwiseHead`, trained together on
    `images` (L, C, *S) and `labels` (L,) with AdamW, warmup and cosine decay. Deterministic for
    a given seed: the head starts from zeros and the batch order is `batch_order`'s."""
    recipe.check()
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                         "must hold as many samples")
    encoder = copy.deepcopy(model).to(device)
    for p in encoder.parameters():
        p.requires_grad_(True)
    head = PositionwiseHead(_feature_channels(encoder, images), num_classes,
                            images.dim() - 2).to(device)
    opt = torch.optim.AdamW(_param_groups([encoder, head], recipe.weight_decay), lr=recipe.lr)
    n = images.shape[0]
    batch = min(recipe.batch_size, n)
    steps_per_epoch = n // batch
    total = steps_per_epoch * recipe.epochs
    warmup = max(1, int(recipe.warmup_share * total))
    encoder.train()
    head.train()
    step = 0
    for order in batch_order(n, seed, recipe.epochs):
        for b in range(steps_per_epoch):
            idx = order[b * batch:(b + 1) * batch]
            for group in opt.param_groups:
                group["lr"] = warmup_cosine(step, total, recipe.lr, warmup)
            logits = head(encoder.features(images[idx].to(device)))
            loss = F.cross_entropy(logits, labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    encoder.eval()
    head.eval()
    return encoder, head


@torch.no_grad()
def accuracy(encoder: nn.Module, head: PositionwiseHead, images: torch.Tensor,
             labels: torch.Tensor, device: torch.device = CPU,
             batch_size: int = 128) -> float:
    """Share of `images` whose class `head(encoder.features(...))` gets right."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                         "must hold as many samples")
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = head(encoder.features(images[start:start + batch_size].to(device)))
        correct += int((logits.argmax(dim=1).cpu() == labels[start:start + batch_size]).sum())
    return correct / max(1, images.shape[0])


def finetune_accuracy(
    model: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    seed: int,
    recipe: FinetuneRecipe = FinetuneRecipe(),
    device: torch.device = CPU,
) -> float:
    """Test accuracy after `finetune` on the training images; `model` is left untouched."""
    encoder, head = finetune(model, train_images, train_labels, num_classes, seed, recipe,
                             device)
    return accuracy(encoder, head, test_images, test_labels, device)
