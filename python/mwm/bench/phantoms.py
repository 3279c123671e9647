"""Procedural medical-looking phantoms: the built-in data of `mwm-bench ratios`.

Three kinds, each generated from `(seed, index)` alone, so every process and every run sees the
same pixels without any file:

- ``brain``   2D axial brain-MRI-like slice: skull ring, CSF rim, gray/white matter texture,
  ventricles, and one lesion class out of ``no lesion / round tumor / irregular tumor / edema``.
- ``chest``   2D chest-X-ray-like image: thorax, two lung fields, heart, spine, ribs, and one
  class out of ``normal / nodule / opacity / cavity``.
- ``brain3d`` the brain phantom as a (D, H, W) volume with the same four classes.

The class is decided only by the lesion, which covers a few percent of the image, so a
downstream model has to represent that small region well; global intensity is randomized per
sample so the mean brightness does not give the class away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage

KINDS = ("brain", "chest", "brain3d")

CLASS_NAMES: Dict[str, Tuple[str, ...]] = {
    "brain": ("no lesion", "round tumor", "irregular tumor", "edema"),
    "chest": ("normal", "nodule", "opacity", "cavity"),
    "brain3d": ("no lesion", "round tumor", "irregular tumor", "edema"),
}

# Which structure a grounding prompt points at, per phantom kind.
PROMPT_TARGETS: Dict[str, Dict[str, str]] = {
    "brain": {"tumor": "lesion", "lesion": "lesion", "brain": "brain"},
    "brain3d": {"tumor": "lesion", "lesion": "lesion", "brain": "brain"},
    "chest": {
        "lesion": "lesion",
        "nodule": "lesion",
        "opacity": "lesion",
        "tumor": "lesion",
        "lungs": "lungs",
        "lung": "lungs",
    },
}

# Distinct stream per kind so that brain sample 5 and chest sample 5 share no random numbers.
_KIND_STREAM = {"brain": 101, "chest": 202, "brain3d": 303}


@dataclass
class PhantomSample:
    """One phantom: image (C, [D,] H, W) float32, class label, lesion mask, anatomy masks."""

    image: np.ndarray
    label: int
    lesion: np.ndarray
    anatomy: Dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "brain"
    index: int = 0

    def structure(self, name: str) -> np.ndarray:
        """Boolean mask of a named structure: ``lesion`` or an anatomy key."""
        if name == "lesion":
            return self.lesion
        if name not in self.anatomy:
            raise ValueError(
                f"structure={name!r} is not part of a {self.kind!r} phantom "
                f"(available: lesion, {', '.join(sorted(self.anatomy))})"
            )
        return self.anatomy[name]


def num_classes(kind: str) -> int:
    return len(CLASS_NAMES[_check_kind(kind)])


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not a phantom kind (choose from {', '.join(KINDS)})")
    return kind


def _check_size(size: int, kind: str) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 16:
        raise ValueError(f"size={size!r} must be an integer of at least 16 for kind={kind!r}")
    return int(size)


def _rng(seed: int, kind: str, index: int) -> np.random.Generator:
    if index < 0:
        raise ValueError(f"index={index} must be non-negative")
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, _KIND_STREAM[kind], int(index)])


def _coordinates(shape: Sequence[int]) -> List[np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] along each axis (axis order as `shape`)."""
    axes = [(np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0 for n in shape]
    return list(np.meshgrid(*axes, indexing="ij"))


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with correlation length `sigma` pixels."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="wrap")
    return (field_ - field_.mean()) / (field_.std() + 1e-12)


def _soft_inside(signed_distance: np.ndarray, edge: float) -> np.ndarray:
    """1 inside (negative distance), 0 outside, a logistic ramp of width `edge` between."""
    return 1.0 / (1.0 + np.exp(np.clip(signed_distance / max(edge, 1e-6), -40.0, 40.0)))


def _ellipsoid_radius(coords, centre, semi_axes) -> np.ndarray:
    return np.sqrt(sum(((c - m) / a) ** 2 for c, m, a in zip(coords, centre, semi_axes)))


def _random_direction(rng: np.random.Generator, ndim: int) -> np.ndarray:
    v = rng.standard_normal(ndim)
    return v / np.linalg.norm(v)


def _lobulated_radius(rng, coords, centre, radius, strength) -> Tuple[np.ndarray, np.ndarray]:
    """Distance to `centre` and a direction-dependent boundary radius (bumpy blob in any dim)."""
    offsets = [c - m for c, m in zip(coords, centre)]
    dist = np.sqrt(sum(o**2 for o in offsets)) + 1e-9
    unit = [o / dist for o in offsets]
    boundary = np.ones_like(dist)
    for _ in range(4):
        w = _random_direction(rng, len(coords))
        along = sum(u * wi for u, wi in zip(unit, w))
        boundary += strength * rng.uniform(0.4, 1.0) * np.cos(
            rng.integers(2, 5) * np.pi * along + rng.uniform(0, 2 * np.pi)
        )
    return dist, radius * np.clip(boundary, 0.45, None)


# --------------------------------------------------------------------------------------------
# Lesions (shared by the brain kinds; chest lesions below). Each returns (intensity, mask).


def _round_tumor(rng, coords, centre, radius, pixel):
    dist = np.sqrt(sum((c - m) ** 2 for c, m in zip(coords, centre)))
    inside = _soft_inside(dist - radius, 0.6 * pixel)
    return 0.38 * inside, inside > 0.5


def _irregular_tumor(rng, coords, centre, radius, pixel):
    # Ring-enhancing, lobulated, with a dark necrotic core: shape and texture differ from the
    # round tumor, the mean brightness does not.
    dist, boundary = _lobulated_radius(rng, coords, centre, radius * 1.1, 0.22)
    inside = _soft_inside(dist - boundary, 0.6 * pixel)
    core = _soft_inside(dist - 0.55 * boundary, 0.6 * pixel)
    return 0.55 * inside - 0.50 * core, inside > 0.5


def _edema(rng, coords, centre, radius, pixel):
    sigma = radius * 1.15
    dist2 = sum((c - m) ** 2 for c, m in zip(coords, centre))
    blob = np.exp(-0.5 * dist2 / sigma**2)
    texture = 1.0 + 0.35 * _smooth_noise(rng, blob.shape, sigma=max(1.0, 0.15 / pixel))
    return 0.22 * blob * texture, blob > 0.5


_BRAIN_LESIONS = {1: _round_tumor, 2: _irregular_tumor, 3: _edema}


def _brain(rng: np.random.Generator, shape: Tuple[int, ...], label: int):
    coords = _coordinates(shape)  # axis order: ([depth,] row, col)
    ndim = len(shape)
    pixel = 2.0 / shape[-1]
    centre = rng.uniform(-0.05, 0.05, ndim)
    width = rng.uniform(0.74, 0.84)
    semi = [width * rng.uniform(0.85, 0.95)] * (ndim - 2) + [
        width * rng.uniform(1.08, 1.16),  # rows: axial slices are taller than wide
        width,
    ]
    rho = _ellipsoid_radius(coords, centre, semi)
    head = _soft_inside(rho - 1.0, 0.01)
    skull = head * (1.0 - _soft_inside(rho - 0.90, 0.01))
    brain_soft = _soft_inside(rho - 0.85, 0.01)
    brain = rho < 0.85

    white = _soft_inside(rho + 0.25 * _smooth_noise(rng, shape, shape[-1] / 10) - 0.62, 0.03)
    tissue = 0.40 + 0.13 * white + 0.035 * _smooth_noise(rng, shape, shape[-1] / 24)
    image = 0.08 * head + 0.75 * skull + brain_soft * (tissue - 0.08)

    ventricle_semi = [0.06] * (ndim - 2) + [0.17, 0.055]
    for side in (-1.0, 1.0):
        v_centre = list(centre)
        v_centre[-1] += side * 0.09 * width
        v_centre[-2] -= 0.05
        v = _soft_inside(_ellipsoid_radius(coords, v_centre, ventricle_semi) - 1.0, 0.08)
        image = image * (1.0 - v) + 0.12 * v

    lesion = np.zeros(shape, dtype=bool)
    if label:
        radius = rng.uniform(0.15, 0.22) if label != 3 else rng.uniform(0.18, 0.25)
        if ndim == 3:
            radius *= 1.5  # keep the lesion's volume share near the 2D area share
        # Lesion centre inside the brain, off the midline ventricles.
        while True:
            offset = rng.uniform(-0.55, 0.55, ndim) * np.asarray(semi)
            if abs(offset[-1]) > 0.16 * width:
                break
        add, lesion = _BRAIN_LESIONS[label](rng, coords, centre + offset, radius, pixel)
        image = image + add * brain_soft
        lesion = lesion & brain
    return image, lesion, {"brain": brain}


# --------------------------------------------------------------------------------------------
# Chest X-ray-like.


def _chest(rng: np.random.Generator, shape: Tuple[int, int], label: int):
    rows, cols = _coordinates(shape)
    pixel = 2.0 / shape[-1]
    shift = rng.uniform(-0.04, 0.04, 2)
    rows, cols = rows - shift[0], cols - shift[1]

    body = _soft_inside(_ellipsoid_radius((rows, cols), (0.15, 0.0), (1.1, 0.93)) - 1.0, 0.02)
    lungs = np.zeros(shape, dtype=bool)
    lung_soft = np.zeros(shape)
    lung_geometry = []
    for side in (-1.0, 1.0):
        centre = (rng.uniform(-0.12, -0.04), side * rng.uniform(0.38, 0.44))
        semi = (rng.uniform(0.55, 0.62), rng.uniform(0.25, 0.3))
        rho = _ellipsoid_radius((rows, cols), centre, semi)
        soft = _soft_inside(rho - 1.0, 0.04)
        lung_soft = np.maximum(lung_soft, soft)
        lungs |= rho < 1.0
        lung_geometry.append((centre, semi))

    heart_rho = _ellipsoid_radius((rows, cols), (0.32, 0.1), (0.28, 0.3))
    heart = _soft_inside(heart_rho - 1.0, 0.05)
    lung_soft = lung_soft * (1.0 - heart)
    lungs &= heart_rho >= 1.0
    spine = _soft_inside(np.abs(cols) - 0.09, 0.02) * body

    image = 0.05 + 0.55 * body
    image = image - 0.33 * lung_soft + 0.05 * lung_soft * _smooth_noise(rng, shape, shape[-1] / 32)
    image = image + 0.12 * heart + 0.12 * spine
    # Ribs: arcs bending down towards the sides, visible over the lungs.
    ribs = np.zeros(shape)
    for k in range(7):
        start = -0.72 + 0.2 * k + rng.uniform(-0.02, 0.02)
        curve = start + 0.35 * cols**2
        ribs = np.maximum(ribs, _soft_inside(np.abs(rows - curve) - 0.035, 0.012))
    image = image + 0.10 * ribs * body

    lesion = np.zeros(shape, dtype=bool)
    if label:
        centre, semi = lung_geometry[rng.integers(0, 2)]
        while True:
            r_pos, c_pos = rng.uniform(-0.6, 0.6, 2)
            spot = (centre[0] + r_pos * semi[0], centre[1] + c_pos * semi[1])
            if np.hypot(r_pos, c_pos) < 0.62 and _ellipsoid_radius(
                (np.array(spot[0]), np.array(spot[1])), (0.32, 0.1), (0.28, 0.3)
            ) > 1.15:
                break
        dist = np.hypot(rows - spot[0], cols - spot[1])
        if label == 1:  # nodule: small, sharp, solid
            radius = rng.uniform(0.11, 0.15)
            inside = _soft_inside(dist - radius, 0.5 * pixel)
            add, lesion = 0.30 * inside, inside > 0.5
        elif label == 2:  # opacity: hazy, ill-defined consolidation
            radius = rng.uniform(0.18, 0.24)
            d, boundary = _lobulated_radius(rng, (rows, cols), spot, radius, 0.25)
            inside = _soft_inside(d - boundary, 3.0 * pixel)
            haze = 1.0 + 0.4 * _smooth_noise(rng, shape, shape[-1] / 20)
            add, lesion = 0.17 * inside * haze, inside > 0.5
        else:  # cavity: thick bright wall around an air-filled centre
            radius = rng.uniform(0.13, 0.18)
            inside = _soft_inside(dist - radius, 0.5 * pixel)
            air = _soft_inside(dist - 0.55 * radius, 0.5 * pixel)
            add, lesion = 0.36 * inside - 0.42 * air, inside > 0.5
        image = image + add
        lesion = lesion & lungs
    return image, lesion, {"lungs": lungs}


def generate(kind: str, index: int, seed: int = 0, size: int = 64) -> PhantomSample:
    """The phantom number `index` of a `kind` stream; the same (kind, index, seed, size) always
    gives the same sample. The label cycles through the classes so every split is balanced."""
    _check_kind(kind)
    size = _check_size(size, kind)
    rng = _rng(seed, kind, index)
    label = int(index % num_classes(kind))
    if kind == "chest":
        image, lesion, anatomy = _chest(rng, (size, size), label)
    else:
        shape = (size, size, size) if kind == "brain3d" else (size, size)
        image, lesion, anatomy = _brain(rng, shape, label)
    # Scanner-like nuisance: global gain/offset and noise, so intensity alone is not the class.
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05)
    image = image * gain + bias + 0.025 * rng.standard_normal(image.shape)
    return PhantomSample(
        image=image[None].astype(np.float32),
        label=label,
        lesion=lesion,
        anatomy=anatomy,
        kind=kind,
        index=int(index),
    )


class PhantomDataset(torch.utils.data.Dataset):
    """Samples ``start .. start + length - 1`` of a phantom stream, as tensors.

    Items are dicts: ``image`` (C, [D,] H, W) float32, ``label`` int64, ``lesion`` bool mask,
    ``index`` (the stream index). Samples are generated once and kept.
    """

    def __init__(self, kind: str, length: int, size: int = 64, seed: int = 0, start: int = 0):
        _check_kind(kind)
        if length <= 0:
            raise ValueError(f"length={length} must be positive")
        if start < 0:
            raise ValueError(f"start={start} must be non-negative")
        self.kind, self.size, self.seed, self.start = kind, _check_size(size, kind), seed, start
        self.samples = [generate(kind, start + i, seed, size) for i in range(length)]
        self.class_names = CLASS_NAMES[kind]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        return {
            "image": torch.from_numpy(s.image),
            "label": torch.tensor(s.label, dtype=torch.long),
            "lesion": torch.from_numpy(s.lesion),
            "index": s.index,
        }

    def stacked(self) -> Dict[str, torch.Tensor]:
        """All samples as batched tensors: image (L, C, ...), label (L,), lesion (L, ...)."""
        return {
            "image": torch.from_numpy(np.stack([s.image for s in self.samples])),
            "label": torch.tensor([s.label for s in self.samples], dtype=torch.long),
            "lesion": torch.from_numpy(np.stack([s.lesion for s in self.samples])),
        }
