"""Masked-image-modeling pretraining of the harness's models (`mwm-bench ratios`): the model
every configuration of a seed starts from, the input statistics, the optimizer's recipe and the
training loop, which draws each batch's masks by global sample index (see `mwm.bench.ratios`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import distributed as bdist
from .models import SparseCNN, TinyMAE

if TYPE_CHECKING:
    from .ratios import Prepared, Settings


def lesion_patches(lesions: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(L, *S) pixel masks -> (L, N) True where a patch holds any lesion pixel."""
    ndim = lesions.dim() - 1
    pool = {2: nn.functional.max_pool2d, 3: nn.functional.max_pool3d}[ndim]
    return pool(lesions[:, None].float(), patch_size).flatten(1) > 0


def draw_shifts(seed: int, batch_start: int, batch: int, ndim: int, reach: int) -> torch.Tensor:
    """(batch, ndim) integer shifts in [-reach, reach] for the global batch whose first sample
    has global index `batch_start`: every process draws the whole batch and takes its slice,
    so a `torchrun` run shifts each sample as one process does."""
    gen = torch.Generator().manual_seed(seed * 1000003 + batch_start)
    return torch.randint(-reach, reach + 1, (batch, ndim), generator=gen)


def translate(x: torch.Tensor, shifts: torch.Tensor, reach: int) -> torch.Tensor:
    """Each sample of x (B, C, *S) moved by its shift (B, ndim) in pixels; the border is
    replicated into the space the image leaves, so no artificial edge appears."""
    spatial = x.shape[2:]
    padded = nn.functional.pad(x, (reach,) * (2 * len(spatial)), mode="replicate")
    out = []
    for b, shift in enumerate(shifts.tolist()):
        window = tuple(slice(reach + d, reach + d + n) for d, n in zip(shift, spatial))
        out.append(padded[(b, slice(None)) + window])
    return torch.stack(out)


@dataclass
class PretrainStats:
    masked_share_sum: float = 0.0  # sum over samples of num_masked / N
    samples: int = 0
    lesion_masked: int = 0  # lesion patches that were masked
    lesion_total: int = 0
    background_masked: int = 0
    background_total: int = 0
    final_loss: float = float("nan")
    seconds: float = 0.0

    @property
    def effective_ratio(self) -> float:
        return self.masked_share_sum / max(self.samples, 1)


def build_model(kind: str, data: Prepared, s: Settings) -> nn.Module:
    channels = data.pretrain.images.shape[1]
    if kind == "cnn":
        stem = s.patch_size // 2 ** (len(s.cnn_widths) - 1)
        if stem < 1:
            raise ValueError(
                f"patch_size={s.patch_size} is too small for {len(s.cnn_widths)} CNN stages"
            )
        return SparseCNN(channels, s.cnn_widths, stem=stem, ndim=data.ndim)
    heads = max(1, s.mae_dim // 32)
    pixel_mean, pixel_std = pixel_statistics(data.pretrain.images)
    return TinyMAE(
        data.image_size, channels, s.patch_size, ndim=data.ndim, dim=s.mae_dim,
        depth=s.mae_depth, heads=heads, decoder_dim=s.mae_dim, decoder_depth=1,
        decoder_heads=heads, pixel_mean=pixel_mean, pixel_std=pixel_std,
        freeze_patch_embed=s.mae_freeze_patch_embed,
    )


def pixel_statistics(images: torch.Tensor, chunk: int = 64) -> Tuple[float, float]:
    """Mean and (unbiased) std of every pixel of `images`: the MAE's input standardization.
    Two passes in float64 over chunks of samples, so a large 3D set is never copied whole."""
    count = images.numel()
    if count < 2:
        raise ValueError(f"images of shape {tuple(images.shape)} hold too few pixels for a std")
    total = 0.0
    for start in range(0, images.shape[0], chunk):
        total += float(images[start:start + chunk].double().sum())
    mean = total / count
    squares = 0.0
    for start in range(0, images.shape[0], chunk):
        squares += float((images[start:start + chunk].double() - mean).pow(2).sum())
    return mean, max(math.sqrt(squares / (count - 1)), 1e-6)


def initial_model(kind: str, data: Prepared, s: Settings, seed: int) -> nn.Module:
    """The model every configuration of `seed` starts from: the same weights for all of them
    (with the same data order and probe randomness), so that their results pair up by seed."""
    torch.manual_seed(seed)
    return build_model(kind, data, s)


def _param_groups(model: nn.Module, weight_decay: float) -> list:
    """Weight decay on weight matrices and kernels only, not on norms, biases or mask tokens
    (as MAE and SparK)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "mask_token" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(
    model: nn.Module,
    data: Prepared,
    masker: Callable,
    s: Settings,
    lr: float,
    seed: int,
    ctx: bdist.DistContext,
    progress: bool = True,
    record: Optional[Dict[int, np.ndarray]] = None,
    desc: str = "pretrain",
    shift: int = 0,
    after_epoch: Optional[Callable[[int, float], None]] = None,
) -> PretrainStats:
    """Masked-image-modeling pretraining; each process takes its slice of every global batch.
    `record`, when given, receives {global sample index: mask row} for this process's samples.
    `shift` > 0 translates every image, its heatmap and its lesion by up to that many pixels
    per axis (`draw_shifts`, `translate`) before the mask is drawn; the harness passes 0 (the
    fifth MAE round of docs/harness.md measured it with benchmarks/mae_screen.py).
    `after_epoch(epochs done, last loss)`, when given, runs after every epoch (the screen's
    probes along one long schedule)."""
    images, heat = data.pretrain.images, data.pretrain.heatmaps
    roi = None
    if data.pretrain.lesions is not None:
        roi = lesion_patches(data.pretrain.lesions, s.patch_size)
    length = images.shape[0]
    global_batch = s.batch_size
    if length < global_batch:
        raise ValueError(
            f"pretrain set of {length} images is smaller than batch_size={global_batch}"
        )
    local = global_batch // ctx.world_size
    steps_per_epoch = length // global_batch
    total_steps = steps_per_epoch * s.epochs
    net = model
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    opt = torch.optim.AdamW(_param_groups(model, s.weight_decay), lr=lr, betas=(0.9, 0.95))
    warmup = max(1, int(s.warmup_share * total_steps))
    stats = PretrainStats()
    started = time.perf_counter()
    model.train()
    bar = tqdm(total=total_steps, desc=desc, leave=False, disable=not (progress and ctx.is_main))
    step = 0
    last_loss = torch.zeros(())
    for epoch in range(s.epochs):
        epoch_order = torch.Generator().manual_seed(seed * 100003 + epoch)
        order = torch.randperm(length, generator=epoch_order)
        for batch in range(steps_per_epoch):
            first = batch * global_batch + ctx.rank * local  # position of this slice in the epoch
            idx = order[first : first + local]
            offset = epoch * length + first
            batch_images, batch_heat = images[idx], heat[idx]
            inside = None if roi is None else roi[idx]
            if shift:
                shifts = draw_shifts(seed, epoch * length + batch * global_batch, global_batch,
                                     images.dim() - 2, shift)[ctx.rank * local:][:local]
                batch_images = translate(batch_images, shifts, shift)
                batch_heat = translate(batch_heat[:, None], shifts, shift)[:, 0]
                if inside is not None:
                    moved = translate(data.pretrain.lesions[idx][:, None].float(), shifts, shift)
                    inside = lesion_patches(moved[:, 0] > 0.5, s.patch_size)
            masks = masker(batch_heat, offset)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total_steps, lr, warmup)
            loss = net(batch_images.to(ctx.device, non_blocking=True), masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

            mask = masks.mask.cpu().bool()
            stats.masked_share_sum += float(masks.num_masked.double().sum()) / mask.shape[1]
            stats.samples += mask.shape[0]
            if inside is not None:
                stats.lesion_masked += int((mask & inside).sum())
                stats.lesion_total += int(inside.sum())
                stats.background_masked += int((mask & ~inside).sum())
                stats.background_total += int((~inside).sum())
            if record is not None:
                for j in range(mask.shape[0]):
                    record[offset + j] = np.packbits(mask[j].numpy())
            last_loss = loss.detach().cpu()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(last_loss):.3f}")
        if after_epoch is not None:
            after_epoch(epoch + 1, float(last_loss))
            model.train()
    bar.close()
    stats.final_loss = float(last_loss)
    stats.seconds = time.perf_counter() - started
    # Every rank saw different samples: add their counts up.
    counts = torch.tensor([
        stats.masked_share_sum, stats.samples, stats.lesion_masked, stats.lesion_total,
        stats.background_masked, stats.background_total, stats.final_loss,
    ])
    total = bdist.all_reduce_sum(ctx, counts)
    stats.masked_share_sum, stats.final_loss = float(total[0]), float(total[6]) / ctx.world_size
    stats.samples, stats.lesion_masked, stats.lesion_total = (int(v) for v in total[1:4])
    stats.background_masked, stats.background_total = int(total[4]), int(total[5])
    return stats
