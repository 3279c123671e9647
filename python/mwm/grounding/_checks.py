"""Argument checks shared by the grounding modules: every error names the argument and value."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch


def as_float_tensor(value, argument: str) -> torch.Tensor:
    """A floating tensor view of `value` (tensor, numpy array or nested sequence)."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{argument} must be a tensor or an array of numbers, got {type(value).__name__}"
            ) from exc
    if tensor.dtype == torch.bool:
        return tensor.to(torch.float32)
    if not (tensor.is_floating_point() or tensor.dtype in _INTEGER_DTYPES):
        raise TypeError(f"{argument} must hold real numbers, got dtype {tensor.dtype}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def require_finite(tensor: torch.Tensor, argument: str) -> None:
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        where = tuple(int(i) for i in (~finite).nonzero()[0].tolist())
        raise ValueError(
            f"{argument}{list(where)} = {tensor[where].item()}: heatmaps must be finite "
            "(NaN or infinity found)"
        )


def require_ndim(tensor: torch.Tensor, argument: str, allowed: Sequence[int], layout: str) -> None:
    if tensor.dim() not in allowed:
        raise ValueError(
            f"{argument} must be {layout}, got a tensor of shape {tuple(tensor.shape)}"
        )


def require_unit_interval(tensor: torch.Tensor, argument: str) -> None:
    if tensor.numel() == 0:
        return
    low, high = float(tensor.min()), float(tensor.max())
    if low < 0.0 or high > 1.0:
        bad = low if low < 0.0 else high
        raise ValueError(f"{argument} holds {bad}: values must lie in [0, 1]")


def spatial_size(size, argument: str, allowed_dims: Sequence[int] = (2, 3)) -> Tuple[int, ...]:
    """A tuple of positive ints from an int-sequence such as (H, W) or (D, H, W)."""
    if isinstance(size, torch.Size):
        size = tuple(size)
    if isinstance(size, int) or not isinstance(size, (tuple, list)):
        raise TypeError(f"{argument} must be a tuple like (H, W) or (D, H, W), got {size!r}")
    if len(size) not in allowed_dims:
        raise ValueError(
            f"{argument} must have {' or '.join(map(str, allowed_dims))} entries, got {size!r}"
        )
    out = []
    for entry in size:
        if isinstance(entry, bool) or not isinstance(entry, int) or entry <= 0:
            raise ValueError(f"{argument} must hold positive integers, got {size!r}")
        out.append(int(entry))
    return tuple(out)


def positive_float(value, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{argument} = {value}: must be a positive finite number")
    return float(value)


def unit_float(value, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number, got {value!r}")
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{argument} = {value}: must lie in [0, 1]")
    return float(value)


def pixel_range(low: float, high: float, size: int) -> Tuple[int, int]:
    """Pixels whose centers lie in [low, high), clipped to [0, size).

    Pixel i covers [i, i + 1) so its center is i + 0.5; a box [x0, x1) with integer corners
    covers pixels x0 .. x1 - 1 exactly, and a scaled box covers the pixels its area centers on.
    """
    begin = math.ceil(low - 0.5)
    end = math.ceil(high - 0.5)
    return max(0, min(size, begin)), max(0, min(size, end))
