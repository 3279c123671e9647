"""Drop-in adapters for the MIM trainers people already run: MAE, HF ViTMAE, SparK, lightly,
and PyTorch data loaders."""

from .data import MaskingCollate, MaskingTransform, masks_for_indices
from .hf import vitmae_noise
from .lightly import lightly_token_indices
from .mae import random_masking
from .spark import spark_active_masks

__all__ = ["MaskingCollate", "MaskingTransform", "lightly_token_indices", "masks_for_indices",
           "random_masking", "spark_active_masks", "vitmae_noise"]
