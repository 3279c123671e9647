"""Text grounding: model outputs to heatmaps (M2IB, CLIP similarity, adapters), heatmaps to MWM
region maps (optionally refined by SAM), prompt banks, and the pipeline that joins them."""

from . import adapters
from .adapters import *  # noqa: F403  (every heatmap adapter, as adapters.__all__ lists them)
from .clip_heatmaps import ClipHeatmapGenerator
from .m2ib import encode_prompts, m2ib_heatmaps
from .pipeline import TextRegionPipeline, TextRegions
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
from .sam import SamBoxRefiner

__all__ = [
    *adapters.__all__,
    "mwm_region_map",
    "largest_component_boxes",
    "region_level_map",
    "ClipHeatmapGenerator",
    "m2ib_heatmaps",
    "encode_prompts",
    "TextRegionPipeline",
    "TextRegions",
    "SamBoxRefiner",
    "PromptBank",
    "PromptBankError",
    "ModalityPrompts",
    "Prompt",
    "load_prompt_bank",
    "prompt_bank_from_dict",
    "masker_kwargs_from_prompt_bank",
    "bank_region_map",
]
