"""Where the phantoms' heatmaps come from: how good the guidance of text-guided masking is.

`mwm-bench ratios --heatmaps SOURCE`:

- ``sim`` (default): the simulated grounding model (`grounding_sim.SimulatedGrounder`): boxes
  around the lesion with jitter, misses and false positives (``--jitter/--miss-rate/--fp-rate``).
- ``gt``: the same boxes without any error (jitter 0, no misses, no false positives): the best
  guidance a box-shaped grounding can give.
- ``noisy``: the simulated boxes blended with a smooth random field,
  ``quality * boxes + (1 - quality) * field`` (``--heatmap-quality``, 1 = the boxes, 0 = noise
  that knows nothing about the image), so a sweep shows how the result moves with guidance quality.
- ``clip``: mwm's CLIP grounding pipeline (`mwm.grounding.ClipHeatmapGenerator`) on a small,
  randomly initialized patch encoder and text embedding: a real pipeline with an untrained model,
  whose heatmaps follow the image's texture, not the lesion.

Every source is deterministic in ``(seed, sample index)``.
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

SOURCES = ("sim", "gt", "noisy", "clip")


def check_source(source: str, quality: float) -> None:
    if source not in SOURCES:
        raise ValueError(f"heatmaps={source!r} must be one of {', '.join(SOURCES)}")
    if not (isinstance(quality, (int, float)) and 0.0 <= float(quality) <= 1.0):
        raise ValueError(f"heatmap_quality={quality!r} must lie in [0, 1]")


def smooth_field(shape: Sequence[int], seed: int, index: int,
                 sigma_share: float = 0.08) -> np.ndarray:
    """A smooth random field with values in [0, 1] (min-max normalized), blob size about
    `sigma_share` of the image side; deterministic in (seed, index)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x5EED, int(index)])
    white = rng.standard_normal(tuple(shape))
    field = ndimage.gaussian_filter(white, sigma=max(1.0, sigma_share * max(shape)), mode="wrap")
    lo, hi = field.min(), field.max()
    return ((field - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def noisy_heatmaps(clean: torch.Tensor, quality: float, seed: int, start: int) -> torch.Tensor:
    """``quality * clean + (1 - quality) * smooth_field`` per sample (sample i has global index
    ``start + i``)."""
    if quality == 1.0:
        return clean.clone()
    fields = np.stack([smooth_field(clean.shape[1:], seed, start + i)
                       for i in range(clean.shape[0])])
    return quality * clean + (1.0 - quality) * torch.from_numpy(fields)


class _RandomPatchEncoder(nn.Module):
    """Conv patchify + GELU + linear: (B, C, H, W) -> (B, N, E) projected patch tokens."""

    def __init__(self, channels: int, patch: int, dim: int, generator: torch.Generator):
        super().__init__()
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.proj = nn.Linear(dim, dim)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) / max(1, p[0].numel()) ** 0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.embed(images).flatten(2).transpose(1, 2)))


def random_clip_heatmaps(images: torch.Tensor, prompt: str, seed: int, patch: int = 4,
                         dim: int = 32, batch_size: int = 256) -> torch.Tensor:
    """Heatmaps (L, H, W) of `prompt` from mwm's CLIP pipeline on a random model (2D images)."""
    from mwm.grounding import ClipHeatmapGenerator

    if images.dim() != 4:
        raise ValueError(f"heatmaps='clip' grounds 2D images (L, C, H, W), got shape "
                         f"{tuple(images.shape)}")
    gen = torch.Generator().manual_seed(seed)
    encoder = _RandomPatchEncoder(images.shape[1], patch, dim, gen).eval()
    text_gen = torch.Generator().manual_seed(zlib.crc32(prompt.encode()) ^ (seed & 0xFFFF))
    text = torch.randn(1, dim, generator=text_gen)
    grounder = ClipHeatmapGenerator.from_encoders(
        encoder, lambda prompts: text.expand(len(prompts), -1))
    parts = [grounder(images[i : i + batch_size], prompt)
             for i in range(0, images.shape[0], batch_size)]
    return torch.cat(parts).float()
