"""Data errors found on a CUDA device (docs/design.md, "CUDA error contract").

A CUDA kernel that meets bad data (an id out of range, a NaN under ``nan_policy="error"``)
records the first such error on its device and the op returns without waiting for the GPU. The
error is raised as ValueError with the CPU path's message: by ``check_device_errors()``; by a
later mwm op on that device once the failing op has finished (found without waiting); or by the
failing op itself under ``set_sync_errors(True)`` / ``MWM_SYNC_ERRORS=1`` (a debug switch that
waits after every op). On the CPU, errors are raised by the op that finds them."""

from __future__ import annotations

from typing import Union

import torch

__all__ = ["check_device_errors", "set_sync_errors"]


def _device_op(name: str):
    """The op of the CUDA build (None on a machine without CUDA or a CPU-only build)."""
    if not torch.cuda.is_available():
        return None
    return getattr(torch.ops.mwm, name, None)


def _cuda_index(device: Union[str, torch.device, int, None]) -> int:
    if device is None:
        return torch.cuda.current_device()
    if isinstance(device, int):
        return device
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"mwm: device = {str(device)!r}: must be a CUDA device")
    return torch.cuda.current_device() if device.index is None else device.index


def check_device_errors(device: Union[str, torch.device, int, None] = None) -> None:
    """Waits for the current stream of the CUDA ``device`` (default: the current one) and raises
    ValueError if an mwm kernel recorded a data error there (the error is then cleared). Does
    nothing without CUDA. Call it where a step waits anyway (e.g. next to ``loss.item()``)."""
    op = _device_op("_check_device_errors")
    if op is not None:
        op(_cuda_index(device))


def set_sync_errors(on: bool) -> None:
    """Debug switch: every mwm CUDA op waits for its stream and raises its own data error
    (``MWM_SYNC_ERRORS=1`` sets it at start-up). Slow; for finding the failing call."""
    op = _device_op("_set_sync_errors")
    if op is not None:
        op(bool(on))
