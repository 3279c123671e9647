"""Reading images for grounding: PNG/JPEG (Pillow), DICOM (pydicom), NIfTI slices (nibabel).

A folder is listed into items, one per 2D image; a 3D NIfTI volume gives one item per slice
along its last voxel axis (`volume[..., z]`, as stored, no reorientation), named
`<stem>_z<zzz>`. Pixel values come back as float32 in the file's own units (DICOM with its
rescale slope/intercept applied); display scaling is left to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

__all__ = ["ImageItem", "ImageReadError", "IMAGE_SUFFIXES", "list_images", "read_image",
           "item_stem"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".nii", ".nii.gz")


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file."""


@dataclass(frozen=True)
class ImageItem:
    id: str  # output name: the file stem, plus _z<zzz> for a volume slice
    path: Path
    slice_index: Optional[int] = None  # slice of a 3D NIfTI volume
    volume_stem: Optional[str] = None  # stem of that volume


def item_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def list_images(folder) -> List[ImageItem]:
    """The images of `folder` (not recursive), sorted by file name; volumes expand to slices.

    A NIfTI file whose header cannot be read stays one item, so that reading it reports the
    error for that file instead of failing the listing.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"images folder {str(root)!r} does not exist or is not a folder")
    items: List[ImageItem] = []
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        stem = item_stem(path)
        if _is_nifti(path):
            try:
                import nibabel

                shape = nibabel.load(str(path)).shape
            except Exception:
                items.append(ImageItem(stem, path))
                continue
            if len(shape) == 3 and shape[2] > 1:
                items.extend(
                    ImageItem(f"{stem}_z{z:03d}", path, z, stem) for z in range(shape[2])
                )
                continue
        items.append(ImageItem(stem, path))
    return items


def read_image(item: ImageItem) -> np.ndarray:
    """Pixels (H, W) or (H, W, 3) as float32; ImageReadError names the file on failure."""
    path = item.path
    try:
        name = path.name.lower()
        if name.endswith((".png", ".jpg", ".jpeg")):
            pixels = _read_pillow(path)
        elif name.endswith(".dcm"):
            pixels = _read_dicom(path)
        elif _is_nifti(path):
            pixels = _read_nifti(path, item.slice_index)
        else:
            raise ImageReadError(
                f"unsupported file type (expected one of {', '.join(IMAGE_SUFFIXES)})")
    except ImageReadError as exc:
        raise ImageReadError(f"{path}: {exc}") from None
    except Exception as exc:  # any reader's own error: say which file and why
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim not in (2, 3) or min(pixels.shape[:2]) < 1:
        raise ImageReadError(
            f"{path}: expected a 2D image, got pixel array of shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise ImageReadError(f"{path}: the image holds NaN or infinity")
    return pixels


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F", "1"):
            return np.asarray(image, dtype=np.float32)
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    dataset = pydicom.dcmread(str(path))
    pixels = dataset.pixel_array.astype(np.float32)
    if pixels.ndim == 3 and pixels.shape[-1] != 3:
        raise ImageReadError(
            f"multi-frame DICOM ({pixels.shape[0]} frames) is not supported; export frames as files"
        )
    slope = float(getattr(dataset, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0) or 0.0)
    return pixels * slope + intercept


def _read_nifti(path: Path, slice_index: Optional[int]) -> np.ndarray:
    import nibabel

    volume = nibabel.load(str(path))
    shape = volume.shape
    if len(shape) == 2:
        return np.asarray(volume.dataobj, dtype=np.float32)
    if len(shape) == 3 and shape[2] == 1:
        return np.asarray(volume.dataobj[..., 0], dtype=np.float32)
    if len(shape) == 3:
        if slice_index is None or not 0 <= slice_index < shape[2]:
            raise ImageReadError(f"slice {slice_index} is outside the volume's {shape[2]} slices")
        return np.asarray(volume.dataobj[..., slice_index], dtype=np.float32)
    raise ImageReadError(f"NIfTI array of shape {shape} is not supported (expected 2D or 3D)")
