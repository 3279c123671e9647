"""Token gathering in plain PyTorch, used by the integrations until the fused op is present."""

from __future__ import annotations

import torch


def gather_rows(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``x (B, N, C)`` at ``ids (B, K)`` along dim 1: ``(B, K, C)``."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
