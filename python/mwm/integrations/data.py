"""Masks computed in data-loader workers, keyed by each sample's global index so that they do
not depend on worker count, batch composition or DDP rank."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch.utils.data import default_collate

from ..masker import TextGuidedMasker
from ..masking import MaskResult


def masks_for_indices(masker: TextGuidedMasker, heatmaps: torch.Tensor,
                      indices: Sequence[int]) -> MaskResult:
    """Masks for samples whose global (dataset) indices are ``indices``."""
    sample_index = torch.as_tensor(list(indices), dtype=torch.int64, device=heatmaps.device)
    return masker(heatmaps, sample_index=sample_index)


class MaskingCollate:
    """Collate function: stacks a batch of dict samples and adds mwm masks.

    Each sample is a mapping with the heatmap under ``heatmap_key`` and its global index under
    ``index_key`` (epoch-aware loaders can fold the epoch in: ``index = epoch * len(ds) + i``).
    The collated batch gains ``mask``, ``ids_keep``, ``ids_restore``, ``noise`` and
    ``num_masked``. Safe in worker processes: the masker's state is not advanced.
    """

    def __init__(self, masker: TextGuidedMasker, heatmap_key: str = "heatmap",
                 index_key: str = "index",
                 collate: Callable[[list], Any] = default_collate) -> None:
        self.masker = masker
        self.heatmap_key = heatmap_key
        self.index_key = index_key
        self.collate = collate

    def __call__(self, samples: list) -> dict:
        for sample in samples:
            if not isinstance(sample, Mapping) or self.heatmap_key not in sample \
                    or self.index_key not in sample:
                raise ValueError(f"mwm: MaskingCollate needs dict samples with keys "
                                 f"{self.heatmap_key!r} and {self.index_key!r}")
        batch = self.collate(samples)
        result = masks_for_indices(self.masker, batch[self.heatmap_key],
                                   [int(i) for i in batch[self.index_key]])
        batch.update(mask=result.mask, ids_keep=result.ids_keep, ids_restore=result.ids_restore,
                     noise=result.noise, num_masked=result.num_masked)
        return batch
