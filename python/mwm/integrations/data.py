"""Masks computed in data-loader workers, keyed by each sample's global index so that they do
not depend on worker count, batch composition or DDP rank."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

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


class MaskingTransform:
    """Per-sample transform: adds mwm masks to one dict sample, keyed by its global index.

    For ``Dataset.__getitem__`` (masks computed in the worker that loads the sample) or as a
    ``transform=`` of a dataset wrapper. The sample keeps its keys and gains ``mask (N,)``,
    ``ids_keep``, ``ids_restore``, ``noise`` and ``num_masked`` (0-d), exactly the rows that
    ``MaskingCollate`` would give this sample in any batch; the default collate stacks them.
    ``ids_keep`` is ``N`` wide and ``-1`` padded for variable-total policies, so rows of
    different samples stack. The masker's state is not advanced.
    """

    def __init__(self, masker: TextGuidedMasker, heatmap_key: str = "heatmap",
                 index_key: str = "index") -> None:
        self.masker = masker
        self.heatmap_key = heatmap_key
        self.index_key = index_key

    def __call__(self, sample: Mapping) -> dict:
        if not isinstance(sample, Mapping) or self.heatmap_key not in sample \
                or self.index_key not in sample:
            raise ValueError(f"mwm: MaskingTransform needs a dict sample with keys "
                             f"{self.heatmap_key!r} and {self.index_key!r}, got "
                             f"{type(sample).__name__}"
                             + (f" with keys {sorted(map(str, sample))}"
                                if isinstance(sample, Mapping) else ""))
        heatmap = torch.as_tensor(sample[self.heatmap_key])
        index = sample[self.index_key]
        if isinstance(index, torch.Tensor):
            if index.numel() != 1:
                raise ValueError(f"mwm: {self.index_key} must be one integer, got a tensor of "
                                 f"shape {tuple(index.shape)}")
            index = index.item()
        if isinstance(index, bool) or int(index) != index or int(index) < 0:
            raise ValueError(f"mwm: {self.index_key} = {index!r}: must be a non-negative integer "
                             f"(the sample's global index)")
        result = masks_for_indices(self.masker, heatmap.unsqueeze(0), [int(index)])
        out = dict(sample)
        out.update(mask=result.mask[0], ids_keep=result.ids_keep[0],
                   ids_restore=result.ids_restore[0], noise=result.noise[0],
                   num_masked=result.num_masked[0])
        return out
