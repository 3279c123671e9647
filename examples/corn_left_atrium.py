"""CORN-style semi-supervised 3D segmentation of left-atrium phantoms, with and without the
CORAL correlation-consistency term.

A small two-branch 3D network (a shared encoder, a V-Net-like transposed-convolution decoder and
an upsampling decoder, as in CAML/CORN's dual-decoder designs) is trained on 5% and 10% labeled
phantoms (mwm.examples_data.left_atrium) with

- the supervised loss (cross-entropy + Dice on the labeled volumes, both branches), and
- the cross-branch pseudo-label consistency of the unlabeled volumes (both settings),
- and, in the "CORAL" setting, CORN's module: labeled voxel features that both branches get
  right refresh a DynamicFeaturePool (EMA 0.9); unlabeled voxels on which the branches agree are
  confidence-filtered (most and least confident quarter per class), and each branch's class x
  class CORAL matrix against a pool sample enters a consistency term between the branches plus
  the matching-class alignment.

Test Dice (mean of the two branches' probabilities) is printed per setting.

    python examples/corn_left_atrium.py            # 24^3, 200 steps: about 4 min on one core
    python examples/corn_left_atrium.py --quick    # 16^3, 80 steps: under 1 min
    python examples/corn_left_atrium.py --seeds 0 1 2 --json corn.json

With one torch thread (the default) runs are deterministic: the same seed gives the same Dice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import mwm
from mwm.examples_data.left_atrium import left_atrium_dataset


@dataclasses.dataclass
class Config:
    size: int = 24               # phantom side (voxels)
    train_volumes: int = 40      # labeled + unlabeled
    test_volumes: int = 8
    label_share: float = 0.1     # 0.05 -> 2 labeled of 40, 0.1 -> 4
    steps: int = 200
    labeled_per_batch: int = 2
    unlabeled_per_batch: int = 2
    width: int = 8               # channels of the first stage = the CORAL feature width d
    lr: float = 1e-2
    coral: bool = True
    coral_weight: float = 0.01   # on consistency + alignment of the CORAL matrices
    alignment_weight: float = 1.0
    pool_slot_capacity: int = 256
    pool_sample: int = 256       # labeled features per class drawn for each step
    filter_per_side: int = 256   # most / least confident unlabeled features per class
    consistency_weight: float = 1.0
    rampup_steps: int = 60
    seed: int = 0
    data_seed: int = 2024


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
                         nn.ReLU(inplace=True))


class Decoder(nn.Module):
    """Two upsampling stages back to full resolution; `transposed` picks V-Net's learned
    upsampling, otherwise trilinear upsampling followed by a convolution. Returns the logits and
    the full-resolution features the segmentation head reads: CORAL compares those, so a
    collapse of the compared features would cost segmentation accuracy (a separate projection
    head can shrink its output to make every covariance vanish)."""

    def __init__(self, width: int, classes: int, transposed: bool):
        super().__init__()

        def up(cin, cout):
            if transposed:
                return nn.ConvTranspose3d(cin, cout, 2, stride=2)
            return nn.Sequential(nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                                 nn.Conv3d(cin, cout, 1))

        self.up2 = up(4 * width, 2 * width)
        self.block2 = conv_block(2 * width, 2 * width)
        self.up1 = up(2 * width, width)
        self.block1 = conv_block(width, width)
        self.head = nn.Conv3d(width, classes, 1)

    def forward(self, skips):
        s1, s2, bottom = skips
        x = self.block2(self.up2(bottom) + s2)
        x = self.block1(self.up1(x) + s1)
        return self.head(x), x


class TwoBranchNet(nn.Module):
    def __init__(self, width: int = 8, classes: int = 2):
        super().__init__()
        self.enc1 = conv_block(1, width)
        self.enc2 = nn.Sequential(nn.Conv3d(width, 2 * width, 2, stride=2),
                                  conv_block(2 * width, 2 * width))
        self.enc3 = nn.Sequential(nn.Conv3d(2 * width, 4 * width, 2, stride=2),
                                  conv_block(4 * width, 4 * width))
        self.branch_a = Decoder(width, classes, transposed=True)
        self.branch_b = Decoder(width, classes, transposed=False)

    def forward(self, x):
        s1 = self.enc1(x)
        s2 = self.enc2(s1)
        skips = (s1, s2, self.enc3(s2))
        logits_a, feat_a = self.branch_a(skips)
        logits_b, feat_b = self.branch_b(skips)
        return logits_a, logits_b, feat_a, feat_b


def soft_dice_loss(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    foreground = probabilities[:, 1]
    truth = (target == 1).float()
    overlap = (foreground * truth).sum()
    return 1.0 - (2 * overlap + 1e-5) / (foreground.sum() + truth.sum() + 1e-5)


def sharpen(p: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    powered = p ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


def dice_score(prediction: torch.Tensor, target: torch.Tensor) -> float:
    overlap = float(((prediction == 1) & (target == 1)).sum())
    total = float((prediction == 1).sum() + (target == 1).sum())
    return 2 * overlap / total if total else 1.0


def random_flip(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    for axis in range(3):
        if bool(torch.rand((), generator=generator) < 0.5):
            images = images.flip(2 + axis)
            labels = labels.flip(1 + axis)
    return images, labels


def voxel_rows(features: torch.Tensor) -> torch.Tensor:
    """(B, d, D, H, W) -> (B*D*H*W, d)."""
    return features.permute(0, 2, 3, 4, 1).reshape(-1, features.shape[1])


def coral_term(config: Config, pool: mwm.DynamicFeaturePool, prob_a, prob_b, feat_a, feat_b):
    """CORN's module on the unlabeled part of a batch; None while the pool lacks a class."""
    sample = pool.sample(config.pool_sample)
    if any(s is None for s in sample):
        return None
    confidence, predicted = prob_a.max(dim=1)
    agree = (predicted == prob_b.argmax(dim=1)).flatten()
    groups = mwm.confidence_filter(predicted.flatten()[agree], confidence.flatten()[agree].detach(),
                                   pool.num_classes, top=0.25, bottom=0.25,
                                   max_per_side=config.filter_per_side)
    rows_a = voxel_rows(feat_a)[agree]
    rows_b = voxel_rows(feat_b)[agree]
    matrix_a = mwm.class_wise_coral([rows_a[g] for g in groups], sample)
    matrix_b = mwm.class_wise_coral([rows_b[g] for g in groups], sample)
    alignment = 0.5 * (mwm.class_alignment(matrix_a) + mwm.class_alignment(matrix_b))
    return mwm.coral_consistency(matrix_a, matrix_b) + config.alignment_weight * alignment


def evaluate(model: TwoBranchNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    scores = []
    with torch.no_grad():
        for k in range(images.shape[0]):
            logits_a, logits_b, _, _ = model(images[k:k + 1])
            probabilities = 0.5 * (logits_a.softmax(1) + logits_b.softmax(1))
            scores.append(dice_score(probabilities.argmax(1)[0], labels[k]))
    model.train()
    return sum(scores) / len(scores)


def load_data(config: Config):
    train = left_atrium_dataset(config.train_volumes, seed=config.data_seed, size=config.size)
    test = left_atrium_dataset(config.test_volumes, seed=config.data_seed, size=config.size,
                               first_index=config.train_volumes)
    return train, test


def train(config: Config, data=None) -> Dict[str, object]:
    """Trains one setting; returns its test Dice, timing and the last losses."""
    started = time.perf_counter()
    (images, labels), (test_images, test_labels) = data if data is not None else load_data(config)
    num_labeled = max(1, round(config.label_share * config.train_volumes))
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = TwoBranchNet(config.width)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    pool = mwm.DynamicFeaturePool(num_labeled, 2, config.width,
                                  slot_capacity=config.pool_slot_capacity, momentum=0.9,
                                  seed=config.seed)
    last: Dict[str, float] = {}
    coral_steps = 0
    for step in range(config.steps):
        ramp = min(1.0, (step + 1) / config.rampup_steps)
        labeled = torch.randint(0, num_labeled, (config.labeled_per_batch,), generator=generator)
        unlabeled = torch.randint(num_labeled, config.train_volumes, (config.unlabeled_per_batch,),
                                  generator=generator)
        batch_images, batch_labels = random_flip(images[torch.cat([labeled, unlabeled])],
                                                 labels[torch.cat([labeled, unlabeled])], generator)
        n_l = config.labeled_per_batch
        logits_a, logits_b, feat_a, feat_b = model(batch_images)
        prob_a, prob_b = logits_a.softmax(1), logits_b.softmax(1)
        target = batch_labels[:n_l]
        supervised = sum(F.cross_entropy(logits[:n_l], target) + soft_dice_loss(p[:n_l], target)
                         for logits, p in ((logits_a, prob_a), (logits_b, prob_b)))
        consistency = (F.mse_loss(prob_a, sharpen(prob_b).detach())
                       + F.mse_loss(prob_b, sharpen(prob_a).detach()))
        loss = supervised + config.consistency_weight * ramp * consistency
        last = {"supervised": supervised.item(), "consistency": consistency.item()}
        if config.coral:
            pool.update(labeled, 0.5 * (feat_a[:n_l] + feat_b[:n_l]).detach(), target,
                        [logits_a[:n_l].argmax(1), logits_b[:n_l].argmax(1)])
            term = coral_term(config, pool, prob_a[n_l:], prob_b[n_l:], feat_a[n_l:], feat_b[n_l:])
            if term is not None:
                loss = loss + config.coral_weight * ramp * term
                last["coral"] = term.item()
                coral_steps += 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    dice = evaluate(model, test_images, test_labels)
    return {"label_share": config.label_share, "labeled": num_labeled, "coral": config.coral,
            "dice": dice, "coral_steps": coral_steps, "seconds": time.perf_counter() - started,
            "last_losses": last}


def run(base: Config, label_shares: Sequence[float],
        seeds: Sequence[int]) -> List[Dict[str, object]]:
    data = load_data(base)
    rows = []
    for share in label_shares:
        for coral in (False, True):
            for seed in seeds:
                config = dataclasses.replace(base, label_share=share, coral=coral, seed=seed)
                rows.append(train(config, data))
                r = rows[-1]
                print(f"labels {share:>4.0%} ({r['labeled']:>2} volumes)  "
                      f"{'with' if coral else 'without':>7} CORAL  seed {seed}  "
                      f"Dice {r['dice']:.4f}  ({r['seconds']:.1f} s)", flush=True)
    if len(seeds) > 1:
        for share in label_shares:
            means = []
            for coral in (False, True):
                scores = [r["dice"] for r in rows
                          if r["label_share"] == share and r["coral"] == coral]
                means.append(sum(scores) / len(scores))
            print(f"labels {share:>4.0%}: mean Dice over {len(seeds)} seeds  without CORAL "
                  f"{means[0]:.4f}  with CORAL {means[1]:.4f}")
    return rows


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16^3 volumes, 80 steps")
    parser.add_argument("--steps", type=int, help="training steps per setting")
    parser.add_argument("--size", type=int, help="phantom side in voxels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: these convolutions are small, and two "
                             "OpenMP threads ran up to 10x slower whenever another process "
                             "shared the cores; on an idle machine 2 gains about 1.5x at 24^3)")
    parser.add_argument("--json", help="write the result rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = Config(size=16, steps=80, rampup_steps=25) if args.quick else Config()
    if args.steps is not None:
        base = dataclasses.replace(base, steps=args.steps)
    if args.size is not None:
        base = dataclasses.replace(base, size=args.size)
    print(f"CORN example: {base.train_volumes} training phantoms of {base.size}^3, "
          f"{base.test_volumes} test, {base.steps} steps, torch threads {torch.get_num_threads()}")
    started = time.perf_counter()
    rows = run(base, (0.05, 0.1), args.seeds)
    print(f"total {time.perf_counter() - started:.1f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)
    return rows


if __name__ == "__main__":
    main()
