"""TextGuidedMasker: heatmaps in, masks out, with the grid, regions, ratios, policy and seed
held in one object that advances its sample offset per call."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch

from .masking import (
    Grid,
    MaskResult,
    _as_grid,
    generate_masks,
    heatmap_to_patch_scores,
    regions_from_quantiles,
    regions_from_thresholds,
)

__all__ = ["MWM_PRESETS", "TextGuidedMasker"]

# (r_high, r_low) of the Mask What Matters paper; "default" is the paper's main setting.
MWM_PRESETS = {"default": (0.8, 0.4), "medium": (0.7, 0.3), "light": (0.6, 0.2)}


class TextGuidedMasker:
    """Turns text-grounded heatmaps into patch masks.

    Regions come from ``thresholds`` (strict, ascending; one threshold = background/ROI) or from
    per-sample ``quantiles``; ``region_ratios[r]`` is the masking ratio of region ``r``
    (background first). The default is the MWM paper's per-region masking with
    ``(r_low, r_high) = (0.4, 0.8)`` at threshold 0.5 on the mean heatmap value of each patch.

    Each call keys sample ``b`` by the global index ``offset + b`` and then advances ``offset``
    by the batch size, so a fixed (seed, data order) reproduces every mask; pass ``offset`` or
    ``sample_index`` explicitly in distributed or shuffled loaders.
    """

    def __init__(self, grid: Union[int, Grid], *, region_ratios: Sequence[float] = (0.4, 0.8),
                 thresholds: Optional[Sequence[float]] = (0.5,),
                 quantiles: Optional[Sequence[float]] = None, policy: str = "per_region",
                 ratio: float = 0.4, seed: int = 0, offset: int = 0, reduction: str = "mean",
                 fraction_threshold: float = 0.5, combine: str = "max",
                 prompt_weights: Optional[Sequence[float]] = None, nan_policy: str = "error",
                 **policy_options: Any) -> None:
        self.grid = tuple(_as_grid(grid))
        if quantiles is not None:
            thresholds = None
        if thresholds is None and quantiles is None:
            raise ValueError("mwm: thresholds = None and quantiles = None: give one of them")
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.quantiles = None if quantiles is None else [float(q) for q in quantiles]
        regions = 1 + len(self.thresholds if self.thresholds is not None else self.quantiles)
        self.region_ratios = [float(r) for r in region_ratios]
        if policy in ("per_region", "fixed_total") and len(self.region_ratios) != regions:
            raise ValueError(f"mwm: region_ratios = {self.region_ratios}: need {regions} ratios "
                             f"(background first) for {regions - 1} threshold(s)/quantile(s)")
        self.policy = policy
        self.ratio = float(ratio)
        self.seed = int(seed)
        self.offset = int(offset)
        self.reduction = reduction
        self.fraction_threshold = float(fraction_threshold)
        self.combine = combine
        self.prompt_weights = prompt_weights
        self.nan_policy = nan_policy
        self.policy_options = policy_options

    @classmethod
    def from_preset(cls, grid: Union[int, Grid], preset: str = "default",
                    **kwargs: Any) -> TextGuidedMasker:
        """The MWM paper's presets: ``default`` (0.8, 0.4), ``medium`` (0.7, 0.3), ``light``
        (0.6, 0.2) as (ROI ratio, background ratio)."""
        if preset not in MWM_PRESETS:
            raise ValueError(f"mwm: preset = {preset!r}: must be one of {', '.join(MWM_PRESETS)}")
        high, low = MWM_PRESETS[preset]
        return cls(grid, region_ratios=(low, high), **kwargs)

    @classmethod
    def from_config(cls, path: str, modality: str, grid: Union[int, Grid],
                    **kwargs: Any) -> TextGuidedMasker:
        """A masker from a prompt bank file (JSON or YAML) for one modality."""
        from .grounding.prompt_bank import load_prompt_bank, masker_kwargs_from_prompt_bank

        options = masker_kwargs_from_prompt_bank(load_prompt_bank(path), modality)
        options.update(kwargs)
        return cls(grid, **options)

    def patch_scores(self, heatmaps: torch.Tensor) -> torch.Tensor:
        return heatmap_to_patch_scores(heatmaps, self.grid, reduction=self.reduction,
                                       threshold=self.fraction_threshold, combine=self.combine,
                                       prompt_weights=self.prompt_weights,
                                       nan_policy=self.nan_policy)

    def regions(self, scores: torch.Tensor) -> torch.Tensor:
        if self.thresholds is not None:
            return regions_from_thresholds(scores, self.thresholds, nan_policy=self.nan_policy)
        return regions_from_quantiles(scores, self.quantiles, nan_policy=self.nan_policy)

    def __call__(self, heatmaps: torch.Tensor, *, offset: Optional[int] = None,
                 sample_index: Optional[torch.Tensor] = None) -> MaskResult:
        scores = self.patch_scores(heatmaps)
        regions = self.regions(scores) if self.policy in ("per_region", "fixed_total") else None
        start = self.offset if offset is None else int(offset)
        result = generate_masks(self.grid, scores.shape[0], policy=self.policy, ratio=self.ratio,
                                region_ratios=self.region_ratios, regions=regions,
                                scores=scores, seed=self.seed, offset=start,
                                sample_index=sample_index, nan_policy=self.nan_policy,
                                device=scores.device, **self.policy_options)
        if offset is None and sample_index is None:
            self.offset += scores.shape[0]
        return result

    def __repr__(self) -> str:
        split = (f"thresholds={self.thresholds}" if self.thresholds is not None
                 else f"quantiles={self.quantiles}")
        return (f"TextGuidedMasker(grid={self.grid}, policy={self.policy!r}, "
                f"region_ratios={self.region_ratios}, {split}, ratio={self.ratio}, "
                f"seed={self.seed}, offset={self.offset})")
