"""SparK: active maps ``(B, 1, h, w)`` for ``SparK.forward(inp, active_b1ff=...)``."""

from __future__ import annotations

from typing import Optional, Sequence

from ..masking import MaskResult


def spark_active_masks(result: MaskResult, scales: Optional[Sequence[int]] = None):
    """SparK's ``active_b1ff`` (True = visible) on the mask grid, or, with ``scales``, the list
    of active maps repeated to each feature-map scale (SparK's sparse encoder masks every scale
    with the same coarse map)."""
    if scales is None:
        return result.active()
    return result.active_pyramid(scales)
