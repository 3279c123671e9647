"""Text grounding: model outputs to heatmaps, heatmaps to MWM region maps, prompt banks."""

from .adapters import (
    boxes_to_heatmap,
    masks_to_heatmap,
    normalize_maps,
    resize_maps,
    saliency_to_heatmap,
    similarity_to_heatmap,
)
from .clip_heatmaps import ClipHeatmapGenerator
from .m2ib import m2ib_heatmaps
from .prompt_bank import (
    ModalityPrompts,
    Prompt,
    PromptBank,
    PromptBankError,
    bank_region_map,
    load_prompt_bank,
    masker_kwargs_from_prompt_bank,
    prompt_bank_from_dict,
)
from .regions import largest_component_boxes, mwm_region_map, region_level_map

__all__ = [
    "boxes_to_heatmap",
    "masks_to_heatmap",
    "similarity_to_heatmap",
    "saliency_to_heatmap",
    "normalize_maps",
    "resize_maps",
    "mwm_region_map",
    "largest_component_boxes",
    "region_level_map",
    "ClipHeatmapGenerator",
    "m2ib_heatmaps",
    "PromptBank",
    "PromptBankError",
    "ModalityPrompts",
    "Prompt",
    "load_prompt_bank",
    "prompt_bank_from_dict",
    "masker_kwargs_from_prompt_bank",
    "bank_region_map",
]
