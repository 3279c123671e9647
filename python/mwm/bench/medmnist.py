"""MedMNIST 2D data sets from the `.npz` files you already have, for `mwm-bench ratios`.

Nothing is downloaded. MedMNIST (v2 and MedMNIST+) ships one ``.npz`` per data set and size:
``<flag>.npz`` (28 x 28) or ``<flag>_<size>.npz`` (64, 128, 224), each with the arrays

    train_images, val_images, test_images   uint8, (L, H, W) grey or (L, H, W, 3) RGB
    train_labels, val_labels, test_labels   integers, (L, 1) (one class), or (L, k) multi-label
                                            0/1 (chestmnist: 14 findings)

The benchmark pretrains on ``train``, fits the probes on ``val`` (MedMNIST's validation split,
unseen during pretraining) and reports on ``test``. Multi-label sets become one class per image:
``0`` = no finding, ``1`` = any finding (``chestmnist``). MedMNIST has no lesion masks, so the
Dice column stays empty; the heatmaps that guide the masks come from a folder of ``.npy`` files
(``heatmaps/<split>_<index>.npy``, any resolution) or from mwm's grounding pipeline
(`grounding_heatmaps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

# The 2D data sets of MedMNIST v2 and their tasks; chestmnist is multi-label.
FLAGS_2D: Dict[str, str] = {
    "pathmnist": "multi-class",
    "chestmnist": "multi-label",
    "dermamnist": "multi-class",
    "octmnist": "multi-class",
    "pneumoniamnist": "binary",
    "retinamnist": "ordinal",
    "breastmnist": "binary",
    "bloodmnist": "multi-class",
    "tissuemnist": "multi-class",
    "organamnist": "multi-class",
    "organcmnist": "multi-class",
    "organsmnist": "multi-class",
}
SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")


def npz_path(root, flag: str, size: int = 28) -> Path:
    """Where MedMNIST keeps `flag` at `size`: ``<root>/<flag>.npz`` or ``<flag>_<size>.npz``."""
    if flag not in FLAGS_2D:
        raise ValueError(f"flag={flag!r} is not a 2D MedMNIST data set; use one of "
                         f"{', '.join(FLAGS_2D)}")
    if size not in SIZES:
        raise ValueError(f"size={size!r} must be one of {SIZES} (MedMNIST's file sizes)")
    return Path(root) / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")


@dataclass
class MedMNISTSplit:
    images: torch.Tensor  # (L, C, S, S) float32 in [0, 1]
    labels: torch.Tensor  # (L,) int64


@dataclass
class MedMNISTData:
    flag: str
    splits: Dict[str, MedMNISTSplit]
    class_names: Tuple[str, ...]
    source: Path


def _labels(raw: np.ndarray, flag: str, split: str) -> torch.Tensor:
    labels = np.asarray(raw)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[1] < 1:
        raise ValueError(f"{flag}: {split}_labels has shape {labels.shape}; expected (L, 1) or "
                         "(L, k)")
    if FLAGS_2D[flag] == "multi-label" or labels.shape[1] > 1:
        return torch.from_numpy((labels != 0).any(axis=1).astype(np.int64))
    values = labels[:, 0].astype(np.int64)
    if values.min() < 0:
        raise ValueError(f"{flag}: {split}_labels holds {int(values.min())}; labels must be >= 0")
    return torch.from_numpy(values)


def _images(raw: np.ndarray, flag: str, split: str, channels: int, size: int) -> torch.Tensor:
    a = np.asarray(raw)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3) or a.shape[1] != a.shape[2]:
        raise ValueError(f"{flag}: {split}_images has shape {a.shape}; expected (L, S, S) or "
                         "(L, S, S, 3)")
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    t = torch.from_numpy(a.astype(np.float32) / scale).permute(0, 3, 1, 2)
    if t.shape[1] != channels:
        t = t.mean(1, keepdim=True) if channels == 1 else t.expand(-1, channels, -1, -1)
    if t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
    return t.contiguous()


def require_npz(root, flag: str, size: int = 28) -> Path:
    """The path of `flag`'s file; FileNotFoundError naming it when it is not there."""
    path = npz_path(root, flag, size)
    if not path.is_file():
        raise FileNotFoundError(
            f"MedMNIST file {str(path)!r} not found: mwm never downloads data. Put the "
            f"{flag} file of size {size} there (MedMNIST names it {path.name}), or pass "
            "--root to the folder that holds it"
        )
    return path


def load_medmnist(root, flag: str, file_size: int = 28, size: Optional[int] = None,
                  channels: int = 1, limits: Optional[Dict[str, int]] = None) -> MedMNISTData:
    """Read ``flag`` from the user's MedMNIST folder `root`; resize to `size` (default: the
    file's). `limits` caps the images read per split (the first ones), e.g. for quick runs."""
    path = require_npz(root, flag, file_size)
    with np.load(path) as archive:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")
                   if f"{s}_{k}" not in archive.files]
        if missing:
            raise ValueError(f"{str(path)!r} lacks {', '.join(missing)}; it holds "
                             f"{', '.join(archive.files)}")
        splits = {}
        for split in SPLITS:
            count = None if limits is None else limits.get(split)
            images = archive[f"{split}_images"][:count]
            labels = archive[f"{split}_labels"][:count]
            if images.shape[0] != labels.shape[0]:
                raise ValueError(f"{flag}: {split} has {images.shape[0]} images but "
                                 f"{labels.shape[0]} labels")
            splits[split] = MedMNISTSplit(
                _images(images, flag, split, channels, size or file_size),
                _labels(labels, flag, split),
            )
    num_classes = max(int(s.labels.max()) + 1 for s in splits.values() if s.labels.numel())
    if FLAGS_2D[flag] == "multi-label":
        names: Tuple[str, ...] = ("no finding", "finding")
    else:
        names = tuple(str(k) for k in range(max(num_classes, 2)))
    return MedMNISTData(flag, splits, names, path)


def folder_heatmaps(folder, split: str, count: int, size: int) -> torch.Tensor:
    """Heatmaps ``<folder>/<split>_<index>.npy`` (2D, any resolution) resized to `size`."""
    out = torch.empty(count, size, size)
    for i in range(count):
        path = Path(folder) / f"{split}_{i}.npy"
        if not path.is_file():
            raise FileNotFoundError(
                f"heatmap {str(path)!r} not found (expected {split}_<index>.npy for each of the "
                f"{count} {split} images)")
        heat = np.asarray(np.load(path), dtype=np.float32)
        if heat.ndim != 2 or not np.isfinite(heat).all():
            raise ValueError(f"heatmap {str(path)!r} must be a finite 2D array, got shape "
                             f"{heat.shape}")
        t = torch.from_numpy(heat)[None, None]
        out[i] = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return out
