"""The visible-count formulas of the core, in Python (they fix the static output shapes)."""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["keep_count"]

ROUNDINGS = ("floor", "round", "ceil_mask", "floor_mask")


def keep_count(n: int, ratio: float, rounding: str = "floor") -> int:
    """Visible patches out of ``n`` at masking ratio ``ratio``.

    ``floor`` is MAE's ``int(n * (1 - r))``, ``round`` SparK's ``round(n * (1 - r))`` (half to
    even), ``ceil_mask`` SimMIM's ``n - ceil(n * r)``, ``floor_mask`` AttMask's ``n - int(n * r)``.
    """
    if rounding == "floor":
        return int(n * (1.0 - ratio))
    if rounding == "round":
        return int(round(n * (1.0 - ratio)))
    if rounding == "ceil_mask":
        return n - int(math.ceil(n * ratio))
    if rounding == "floor_mask":
        return n - int(n * ratio)
    raise ValueError(f"mwm: rounding = {rounding!r}: must be one of {', '.join(ROUNDINGS)}")


def output_widths(policy: str, grid: Sequence[int], ratio: float, rounding: str,
                  coarse_factor: int, attention_mode: str = "high", hint_pool_share: float = 0.0,
                  hint_share: float = 0.0) -> tuple[int, int]:
    """Widths of ``ids_keep`` and ``ids_masked``: exact for fixed totals, ``N`` (padded with -1)
    for ``per_region``."""
    n = math.prod(grid)
    if policy == "per_region":
        return n, n
    if policy == "coarse":
        cells = math.prod(g // coarse_factor for g in grid) if coarse_factor > 0 else n
        keep = keep_count(cells, ratio, rounding) * (n // max(cells, 1))
    else:
        keep = keep_count(n, ratio, rounding)
    if policy == "attention_guided" and attention_mode == "hint":
        # AttMask-Hint reveals int(n * hint_share) of the top int(n * hint_pool_share) again.
        pool = min(int(n * hint_pool_share), n - keep)
        keep += min(int(n * hint_share), pool)
    return keep, n - keep
