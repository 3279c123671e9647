"""Load a folder of your own 2D images, grounding heatmaps and labels for `mwm-bench ratios`.

Layout::

    DIR/labels.csv          one row per image; columns:
                              image    (required) path relative to DIR: .png / .jpg / .npy
                              label    (required) integer class or class name
                              heatmap  (optional) .npy path; default heatmaps/<image stem>.npy
                              mask     (optional) lesion mask (.png / .npy, nonzero = lesion);
                                       without masks the segmentation probe is skipped
                              split    (optional) pretrain | train | test
    DIR/heatmaps/*.npy      the heatmap of each image (any resolution, values in [0, 1]), e.g.
                            the saliency or box map your grounding model produced for the prompt

Without a ``split`` column, images are split by a hash of their path (20 % test, 30 % train,
50 % pretrain). Pretraining uses every image that is not in ``test``; probes train on
``train`` and report on ``test``. Images are converted to ``channels`` channels and resized
to ``size`` x ``size``.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = ("pretrain", "train", "test")


@dataclass
class FolderData:
    images: torch.Tensor  # (L, C, H, W) float32 in [0, 1]
    heatmaps: torch.Tensor  # (L, H, W) float32
    labels: torch.Tensor  # (L,) int64
    lesions: Optional[torch.Tensor]  # (L, H, W) bool, or None without mask files
    splits: List[str]
    class_names: Tuple[str, ...]
    names: List[str]


def _read_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{what} file {str(path)!r} does not exist")
    if path.suffix.lower() == ".npy":
        return np.load(path)
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow ships with matplotlib
        raise RuntimeError(f"reading {str(path)!r} needs Pillow (pip install pillow)") from exc
    with Image.open(path) as img:
        return np.asarray(img)


def _to_chw(array: np.ndarray, channels: int, path: Path) -> torch.Tensor:
    a = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if a.dim() == 2:
        a = a[None]
    elif a.dim() == 3 and a.shape[-1] in (1, 3, 4) and a.shape[0] not in (1, 3):
        a = a.permute(2, 0, 1)[:3]  # HWC image file -> CHW, dropping alpha
    elif a.dim() != 3:
        raise ValueError(f"image {str(path)!r} has shape {tuple(array.shape)}; expected 2D or 3D")
    if np.issubdtype(array.dtype, np.integer):
        a = a / float(np.iinfo(array.dtype).max)
    if a.shape[0] == channels:
        return a
    if channels == 1:
        return a.mean(dim=0, keepdim=True)
    if a.shape[0] == 1:
        return a.expand(channels, -1, -1).clone()
    raise ValueError(f"image {str(path)!r} has {a.shape[0]} channels; cannot make {channels}")


def _resize(t: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if tuple(t.shape[-2:]) == (size, size):
        return t
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(t[None].float(), size=(size, size), mode=mode, **kwargs)[0]


def _default_split(name: str) -> str:
    bucket = zlib.crc32(name.encode()) % 10
    return "test" if bucket < 2 else "train" if bucket < 5 else "pretrain"


def load_folder(root, size: int = 64, channels: int = 1) -> FolderData:
    root = Path(root)
    table = root / "labels.csv"
    if not table.is_file():
        raise ValueError(f"folder={str(root)!r} has no labels.csv (see mwm.bench.folder)")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{str(table)!r} has no rows")
    missing = {"image", "label"} - set(rows[0])
    if missing:
        raise ValueError(
            f"{str(table)!r} lacks column(s) {sorted(missing)}; it has {list(rows[0])}")

    raw_labels = [r["label"].strip() for r in rows]
    if all(v.lstrip("-").isdigit() for v in raw_labels):
        labels = [int(v) for v in raw_labels]
        if min(labels) < 0:
            raise ValueError(f"label={min(labels)} in {str(table)!r} must be non-negative")
        class_names = tuple(str(k) for k in range(max(labels) + 1))
    else:
        class_names = tuple(sorted(set(raw_labels)))
        labels = [class_names.index(v) for v in raw_labels]

    has_masks = all(r.get("mask") for r in rows)
    images, heats, masks, splits, names = [], [], [], [], []
    for r in rows:
        image_path = root / r["image"]
        names.append(r["image"])
        pixels = _to_chw(_read_array(image_path, "image"), channels, image_path)
        images.append(_resize(pixels, size, "bilinear"))
        heat_path = root / (r.get("heatmap") or f"heatmaps/{Path(r['image']).stem}.npy")
        heat = np.asarray(_read_array(heat_path, "heatmap"), dtype=np.float32)
        if heat.ndim != 2 or not np.isfinite(heat).all():
            raise ValueError(
                f"heatmap {str(heat_path)!r} must be a finite 2D array, got shape {heat.shape}")
        heats.append(_resize(torch.from_numpy(heat)[None], size, "bilinear")[0])
        if has_masks:
            m = _read_array(root / r["mask"], "mask")
            m = m if m.ndim == 2 else m[..., 0]
            masks.append(_resize(torch.from_numpy(m != 0)[None], size, "nearest")[0] > 0.5)
        split = (r.get("split") or "").strip() or _default_split(r["image"])
        if split not in SPLITS:
            raise ValueError(f"split={split!r} for {r['image']!r} must be one of {SPLITS}")
        splits.append(split)
    for needed in ("train", "test"):
        if needed not in splits:
            raise ValueError(f"{str(table)!r} yields no {needed!r} images; add a split column")
    return FolderData(
        images=torch.stack(images),
        heatmaps=torch.stack(heats),
        labels=torch.tensor(labels, dtype=torch.long),
        lesions=torch.stack(masks) if has_masks else None,
        splits=splits,
        class_names=class_names,
        names=names,
    )
