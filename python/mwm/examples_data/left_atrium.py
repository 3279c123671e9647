"""Left-atrium-like 3D phantoms for the CORN example (examples/corn_left_atrium.py).

Each volume is generated from ``(seed, index)`` alone: a randomly oriented ellipsoidal atrium
with 3-5 pulmonary-vein-like tubes leaving its surface (the label), a bright aorta-like tube
nearby that is *not* labeled (so intensity alone does not segment the atrium), a smooth
background, a multiplicative bias field, partial-volume blur and Gaussian noise, standardized
to zero mean and unit variance.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

_STREAM = 0x1A7  # keeps these draws apart from any other generator keyed by (seed, index)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _near_segment(points: np.ndarray, start: np.ndarray, end: np.ndarray,
                  radius: float) -> np.ndarray:
    """Which points (..., 3) lie within `radius` of the segment [start, end]."""
    axis = (end - start).astype(points.dtype)
    relative = points - start.astype(points.dtype)
    t = np.clip((relative @ axis) / max(float(axis @ axis), 1e-9), 0.0, 1.0)
    offset = relative - t[..., None] * axis
    return np.einsum("...i,...i->...", offset, offset) <= radius * radius


def _smooth_field(rng: np.random.Generator, size: int, coarse: int = 4) -> torch.Tensor:
    ("A low-frequency random field (size^3) in about [-1, 1]: coarse noise, trilinearly "
     "upsampled.")
    noise = torch.from_numpy(rng.normal(size=(1, 1, coarse, coarse, coarse))).float()
    return F.interpolate(noise, size=(size,) * 3, mode="trilinear", align_corners=True)[0, 0]


def _blur(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2.5 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = volume[None, None]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        padding = [0, 0, 0]
        padding[axis] = radius
        out = F.conv3d(F.pad(out, [p for p in reversed(padding) for _ in range(2)],
                             mode="replicate"),
                       kernel.view(shape))
    return out[0, 0]


def left_atrium_phantom(index: int, *, seed: int = 0,
                        size: int = 32) -> Tuple[torch.Tensor, torch.Tensor]:
    """One phantom: image ``(1, size, size, size)`` float32 and label ``(size, size, size)``
    int64 (1 = atrium or vein)."""
    if size < 16:
        raise ValueError(f"mwm: size = {size}: phantoms need at least 16 voxels per side")
    if index < 0 or seed < 0:
        raise ValueError(f"mwm: index = {index}, seed = {seed}: must be non-negative")
    rng = np.random.default_rng([seed, index, _STREAM])
    axis = np.arange(size, dtype=np.float32) + 0.5
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)  # (S, S, S, 3)

    centre = size * (0.5 + rng.uniform(-0.07, 0.07, 3))
    radii = size * rng.uniform(0.16, 0.25, 3)
    rotation = _rotation(rng)
    local = (points - centre) @ rotation
    atrium = ((local / radii) ** 2).sum(-1) <= 1.0

    veins = np.zeros_like(atrium)
    for _ in range(int(rng.integers(3, 6))):
        direction_local = rng.normal(size=3)
        direction_local /= np.linalg.norm(direction_local)
        start = centre + rotation @ (0.6 * radii * direction_local)
        outward = rotation @ (direction_local / radii)
        outward /= np.linalg.norm(outward)
        bend = rng.normal(size=3) * 0.35
        length = size * rng.uniform(0.2, 0.34)
        middle = start + outward * length * 0.5
        end = middle + (outward + bend) / np.linalg.norm(outward + bend) * length * 0.5
        radius = size * rng.uniform(0.045, 0.07)
        veins |= _near_segment(points, start, middle, radius)
        veins |= _near_segment(points, middle, end, radius)
    label = atrium | veins

    # The aorta-like distractor: a straight tube beside the atrium, as bright as the veins.
    side = rotation[:, int(rng.integers(0, 3))] * (1 if rng.random() < 0.5 else -1)
    offset = centre + side * (radii.max() + size * rng.uniform(0.1, 0.16))
    along = np.cross(side, rng.normal(size=3))
    along /= np.linalg.norm(along)
    aorta = _near_segment(points, offset - along * size, offset + along * size,
                          size * rng.uniform(0.06, 0.09))
    aorta &= ~label

    background = 0.25 + 0.08 * _smooth_field(rng, size).numpy()
    image = background.copy()
    image[aorta] = 0.62 + rng.uniform(-0.05, 0.05)
    image[veins] = 0.6 + rng.uniform(-0.05, 0.05)
    image[atrium] = 0.68 + rng.uniform(-0.05, 0.05)
    volume = _blur(torch.from_numpy(image).float(), sigma=0.8)
    volume = volume * (1.0 + 0.15 * _smooth_field(rng, size, coarse=3))
    volume = volume + torch.from_numpy(rng.normal(0.0, 0.08, size=(size,) * 3)).float()
    volume = (volume - volume.mean()) / volume.std()
    return volume[None].contiguous(), torch.from_numpy(label.astype(np.int64))


def left_atrium_dataset(count: int, *, seed: int = 0, size: int = 32,
                        first_index: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """``count`` phantoms ``first_index, first_index + 1, ...``: images ``(count, 1, S, S, S)``
    and labels ``(count, S, S, S)``."""
    if count < 1:
        raise ValueError(f"mwm: count = {count}: must be at least 1")
    pairs = [left_atrium_phantom(first_index + k, seed=seed, size=size) for k in range(count)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
