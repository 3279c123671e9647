"""Loads the compiled extension, which registers the ops as ``torch.ops.mwm.*``."""

from __future__ import annotations

import os

import torch

_LOADED_FROM: str | None = None


def load() -> str:
    """Imports ``mwm._C`` (or the library named by ``MWM_EXTENSION``) once; returns its path."""
    global _LOADED_FROM
    if _LOADED_FROM is not None:
        return _LOADED_FROM
    override = os.environ.get("MWM_EXTENSION")
    if override:
        torch.ops.load_library(override)
        _LOADED_FROM = override
        return override
    try:
        from . import _C  # noqa: F401  (importing registers the ops)
    except ImportError as exc:
        raise ImportError(
            "mwm: the compiled extension mwm._C is missing; install the package with "
            "`pip install --no-build-isolation .` (or set MWM_EXTENSION to a built _C library)"
        ) from exc
    _LOADED_FROM = _C.__file__
    return _LOADED_FROM
