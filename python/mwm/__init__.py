"""mwm — Mask What Matters: text-guided patch masks for masked image modeling.

The ops are registered as ``torch.ops.mwm.*`` by the compiled extension; this package holds the
functional API over them, the masker object, integrations, grounding, viz and the benchmark
harness.
"""

from ._version import __version__ as __version__
from .budget import keep_count
from .coral import ClassWiseCoral, class_alignment, class_wise_coral, coral_consistency, coral_loss
from .device_errors import check_device_errors, set_sync_errors
from .feature_pool import DynamicFeaturePool, confidence_filter
from .loss import mae_loss, masked_recon_loss, simmim_loss, spark_loss
from .masker import MWM_PRESETS, TextGuidedMasker
from .masking import (
                    MaskResult,
                    generate_masks,
                    heatmap_to_patch_scores,
                    regions_from_quantiles,
                    regions_from_thresholds,
                    sample_indices,
                    upsample_patch_map,
)
from .tokens import gather_tokens, pack_visible_tokens, restore_tokens, unpack_visible_tokens

__all__ = [
    "ClassWiseCoral",
    "DynamicFeaturePool",
    "class_alignment",
    "class_wise_coral",
    "confidence_filter",
    "coral_consistency",
    "coral_loss",
    "check_device_errors",
    "set_sync_errors",
    "MWM_PRESETS",
    "MaskResult",
    "TextGuidedMasker",
    "gather_tokens",
    "generate_masks",
    "heatmap_to_patch_scores",
    "keep_count",
    "mae_loss",
    "pack_visible_tokens",
    "masked_recon_loss",
    "regions_from_quantiles",
    "regions_from_thresholds",
    "restore_tokens",
    "sample_indices",
    "simmim_loss",
    "spark_loss",
    "unpack_visible_tokens",
    "upsample_patch_map",
]
