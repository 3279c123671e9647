"""A simulated text-grounding model: the stand-in for a vision-language model in the benchmark.

Mask What Matters localizes the prompt with a real vision-language pipeline (the reference code:
BiomedCLIP saliency, thresholded, the largest components refined and replaced by their bounding
boxes scaled by ``expand_ratio``). Such models are not available offline and are far too slow
for a 2-core benchmark, so this module imitates their *output*: boxes around the structure a
prompt names, with the errors real grounding makes, at rates you choose:

- ``jitter``: each box's centre moves by N(0, jitter * box extent) per axis and its extent is
  scaled by exp(N(0, jitter));
- ``miss_rate``: each true box is dropped with this probability;
- ``fp_rate``: the number of false-positive boxes per image is Poisson(fp_rate), each placed
  uniformly with an extent drawn from ``fp_extent`` (a share of the image side).

It reads the phantom's ground-truth masks, so it is *not* a model of anything clinically real;
it only controls how good the guidance is. Everything is deterministic in
``(seed, sample index, prompt)``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage

from ..grounding.adapters import boxes_to_heatmap as grounding_boxes_to_heatmap
from .phantoms import PROMPT_TARGETS, PhantomSample


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel units, ``lo`` inclusive and ``hi`` exclusive per axis
    (axis order of the image: ``[depth,] row, col``)."""

    lo: Tuple[float, ...]
    hi: Tuple[float, ...]
    score: float
    is_true: bool  # drawn from a real structure (False: a simulated false positive)

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.lo) + np.asarray(self.hi)) / 2.0

    @property
    def extent(self) -> np.ndarray:
        return np.asarray(self.hi) - np.asarray(self.lo)


def structure_boxes(mask: np.ndarray, min_pixels: int = 1) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Tight bounding boxes (lo, hi) of the connected components of a boolean mask."""
    labels, count = ndimage.label(mask)
    boxes = []
    for k, slices in enumerate(ndimage.find_objects(labels), start=1):
        if slices is None or int((labels[slices] == k).sum()) < min_pixels:
            continue
        boxes.append(
            (np.array([s.start for s in slices], float), np.array([s.stop for s in slices], float))
        )
    return boxes


def _check_rate(name: str, value: float, upper: float | None = 1.0) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if value < 0 or (upper is not None and value > upper):
        bound = f"[0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(f"{name}={value!r} must lie in {bound}")
    return float(value)


class SimulatedGrounder:
    """Boxes and heatmaps for a text prompt, with configurable jitter, misses and false positives.

    >>> g = SimulatedGrounder(jitter=0.1, miss_rate=0.1, fp_rate=0.1, seed=0)
    >>> heat = g.heatmap(sample, "tumor")   # (H, W) float32, box scores inside boxes, 0 elsewhere
    """

    def __init__(
        self,
        jitter: float = 0.1,
        miss_rate: float = 0.1,
        fp_rate: float = 0.1,
        expand_ratio: float = 1.2,
        fp_extent: Tuple[float, float] = (0.08, 0.2),
        seed: int = 0,
    ):
        self.jitter = _check_rate("jitter", jitter, upper=None)
        self.miss_rate = _check_rate("miss_rate", miss_rate)
        self.fp_rate = _check_rate("fp_rate", fp_rate, upper=None)
        self.expand_ratio = _check_rate("expand_ratio", expand_ratio, upper=None)
        if self.expand_ratio == 0:
            raise ValueError("expand_ratio=0 must be positive")
        lo, hi = fp_extent
        if not (0 < lo <= hi <= 1):
            raise ValueError(f"fp_extent={fp_extent!r} must satisfy 0 < low <= high <= 1")
        self.fp_extent = (float(lo), float(hi))
        self.seed = int(seed)

    def _rng(self, index: int, prompt: str) -> np.random.Generator:
        return np.random.default_rng(
            [self.seed & 0xFFFFFFFF, 0x6E0D, int(index), zlib.crc32(prompt.encode())]
        )

    def boxes(self, sample: PhantomSample, prompt: str) -> List[Box]:
        """What the simulated model answers for `prompt` on `sample`."""
        targets = PROMPT_TARGETS.get(sample.kind, {})
        if prompt not in targets:
            raise ValueError(
                f"prompt={prompt!r} is not understood for {sample.kind!r} phantoms "
                f"(known prompts: {', '.join(sorted(targets))})"
            )
        mask = sample.structure(targets[prompt])
        shape = np.asarray(mask.shape, float)
        rng = self._rng(sample.index, prompt)
        out: List[Box] = []
        for lo, hi in structure_boxes(mask):
            # Draw every number whether or not the box is missed, so that changing miss_rate
            # does not reshuffle the jitter of the other boxes.
            missed = rng.random() < self.miss_rate
            shift = rng.standard_normal(len(shape))
            scale = np.exp(self.jitter * rng.standard_normal(len(shape)))
            score = rng.uniform(0.6, 1.0)
            if missed:
                continue
            extent = hi - lo
            centre = (lo + hi) / 2.0 + self.jitter * extent * shift
            half = extent * scale * self.expand_ratio / 2.0
            out.append(self._clipped(centre - half, centre + half, shape, score, True))
        for _ in range(rng.poisson(self.fp_rate)):
            extent = rng.uniform(*self.fp_extent, size=len(shape)) * shape
            lo = rng.uniform(0.0, 1.0, size=len(shape)) * (shape - extent)
            out.append(self._clipped(lo, lo + extent, shape, rng.uniform(0.55, 0.9), False))
        return out

    @staticmethod
    def _clipped(lo, hi, shape, score, is_true) -> Box:
        lo = np.clip(lo, 0.0, shape)
        hi = np.clip(hi, lo, shape)
        return Box(tuple(float(v) for v in lo), tuple(float(v) for v in hi), float(score), is_true)

    def heatmap(self, sample: PhantomSample, prompt: str) -> np.ndarray:
        """The boxes drawn as a heatmap with the image's spatial shape: each pixel holds the
        highest score of the boxes covering its centre, 0 outside every box."""
        return boxes_to_heatmap(self.boxes(sample, prompt), sample.lesion.shape)

    def heatmaps(self, samples: Sequence[PhantomSample], prompt: str) -> torch.Tensor:
        """Heatmaps of several samples stacked as a (B, [D,] H, W) float32 tensor."""
        return torch.from_numpy(np.stack([self.heatmap(s, prompt) for s in samples]))


def boxes_to_heatmap(boxes: Sequence[Box], shape: Sequence[int]) -> np.ndarray:
    """The boxes drawn by `mwm.grounding.boxes_to_heatmap`: a pixel is in a box when its centre
    is, overlapping boxes keep the highest score."""
    if not boxes:
        return np.zeros(tuple(shape), dtype=np.float32)
    # mwm.grounding takes corners (x, y[, z]), the reverse of the image's axis order.
    corners = torch.tensor(
        [[*reversed(box.lo), *reversed(box.hi)] for box in boxes], dtype=torch.float64
    )
    scores = torch.tensor([box.score for box in boxes], dtype=torch.float64)
    return grounding_boxes_to_heatmap([corners], tuple(int(s) for s in shape), [scores])[0].numpy()
