"""From images and text prompts to the ROI maps `mwm.TextGuidedMasker` reads: the MWM pipeline.

    attribution (M2IB or CLIP patch similarity) -> heatmap per prompt, at image resolution
    -> threshold (strict >, 0.3) -> the 2 largest connected components -> their boxes
    -> optionally SAM on each box, the segment's bounding box instead
    -> boxes scaled by expand_ratio (1.0) and filled -> ROI map per prompt
    -> one region map per image: ROI = 1 (one prompt list) or the prompt bank's levels.

`TextRegionPipeline(model, tokenizer, prompts=[...])` or `(..., prompt_bank=..., modality=...)`;
calling it on a list of images returns a `TextRegions`; `pipeline.masker(grid)` builds the
`TextGuidedMasker` whose thresholds and ratios read those region maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import positive_float
from .adapters import resize_maps
from .m2ib import (
    _device_and_dtype,
    check_m2ib_options,
    encode_prompts,
    m2ib_heatmaps,
)
from .prompt_bank import ModalityPrompts, PromptBank, _as_bank, masker_kwargs_from_prompt_bank
from .regions import (
    DEFAULT_NUM_COMPONENTS,
    DEFAULT_THRESHOLD,
    largest_component_boxes,
    region_level_map,
)
from .sam import SamBoxRefiner, fill_boxes

__all__ = ["TextRegionPipeline", "TextRegions", "model_input_size", "model_normalization"]

ATTRIBUTIONS = ("m2ib", "similarity")
Box = Tuple[Tuple[int, int], ...]


@dataclass
class TextRegions:
    """Per image i: `heatmaps[i]` (K, H, W) float32 in [0, 1]; `roi_maps[i]` (K, H, W) bool;
    `region_maps[i]` (H, W) float32, the map `TextGuidedMasker` reads (see
    `TextRegionPipeline.masker_kwargs`); `boxes[i][k]` the filled boxes of prompt k.
    All on the CPU."""

    heatmaps: List[torch.Tensor]
    roi_maps: List[torch.Tensor]
    region_maps: List[torch.Tensor]
    boxes: List[List[List[Box]]]

    def stacked_region_maps(self) -> torch.Tensor:
        """The region maps as one (B, H, W) batch; every image must have the same size."""
        sizes = {tuple(m.shape) for m in self.region_maps}
        if len(sizes) != 1:
            raise ValueError(
                f"region maps have different sizes {sorted(sizes)}: resize the images "
                "to one size first, or use the maps one by one"
            )
        return torch.stack(self.region_maps)


def model_input_size(model: torch.nn.Module) -> Tuple[int, int]:
    """The (H, W) pixel size a CLIP-style model was built for."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "vision_config"):
        side = int(config.vision_config.image_size)
        return side, side
    visual = getattr(model, "visual", None)
    size = None
    if visual is not None and hasattr(visual, "trunk"):
        size = getattr(getattr(visual.trunk, "patch_embed", None), "img_size", None)
    elif visual is not None:
        size = getattr(visual, "image_size", None)
    if size is None:
        raise TypeError(
            f"cannot tell the input size of {type(model).__name__}: pass input_size=(H, W)"
        )
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def model_normalization(model: torch.nn.Module) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """The (mean, std) pixel normalization: open_clip's `visual.image_mean/std` when set,
    else CLIP's."""
    visual = getattr(model, "visual", None)
    mean = getattr(visual, "image_mean", None) if visual is not None else None
    std = getattr(visual, "image_std", None) if visual is not None else None
    return tuple(mean or _OPENAI_MEAN), tuple(std or _OPENAI_STD)


def _as_image_array(image, index: int) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]  # drop alpha
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if (
        array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[-1] != 3)
        or min(array.shape[:2]) < 1
    ):
        raise ValueError(f"images[{index}] has shape {array.shape}: expected (H, W) or (H, W, 3)")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise ValueError(f"images[{index}] has dtype {array.dtype}, not numbers")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"images[{index}] holds NaN or infinity")
    return array


def display_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W) or (H, W, 3) image in any units to RGB uint8, min-max scaled (what SAM reads)."""
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    rgb = np.repeat(scaled[..., None], 3, axis=-1) if scaled.ndim == 2 else scaled
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


class TextRegionPipeline:
    """Images + text prompts -> heatmaps, ROI maps and region maps for `mwm.TextGuidedMasker`.

    model, tokenizer: a transformers CLIPModel / open_clip CLIP (ViT or timm tower, BiomedCLIP's
        structure) and its tokenizer or processor. Prompts are strings (tokenized with it) or
        a (K, L) tensor / mapping of token ids.
    prompts: the prompts (ROI = any of them), or prompt_bank + modality (+ preset): the bank's
        prompts, levels, ratios and per-modality threshold / components / expand_ratio.
    attribution: "m2ib" (the paper's) or "similarity" (CLIP patch-text cosine).
    sam: a `SamBoxRefiner` (or a (SamModel, SamProcessor) pair) to refine each box; None skips.
    threshold, num_components, expand_ratio: the region step; default 0.3, 2, 1.0 (or the bank's).
    preset: the MWM ratio preset for plain prompts ("default" 0.8 / 0.4, "medium", "light"),
        or the bank's preset name.
    input_size, mean, std: how raw images become model pixels (default: the model's size, its
        open_clip normalization or CLIP's); `preprocess(image) -> (3, h, w)` replaces that step.
    m2ib: keyword arguments of `m2ib_heatmaps` (layer, beta, var, steps, lr, samples, seed, ...).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer=None,
        *,
        prompts=None,
        prompt_bank: Union[PromptBank, str, None] = None,
        modality: Optional[str] = None,
        preset: Optional[str] = None,
        attribution: str = "m2ib",
        sam=None,
        threshold: Optional[float] = None,
        num_components: Optional[int] = None,
        expand_ratio: Optional[float] = None,
        input_size: Optional[Sequence[int]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        preprocess: Optional[Callable[[np.ndarray], torch.Tensor]] = None,
        m2ib: Optional[Dict[str, Any]] = None,
    ):
        if attribution not in ATTRIBUTIONS:
            raise ValueError(f"attribution = {attribution!r}: must be one of {ATTRIBUTIONS}")
        self.model = model
        self.attribution = attribution
        self.bank_prompts: Optional[ModalityPrompts] = None
        if prompt_bank is not None or modality is not None:
            if prompt_bank is None or modality is None:
                raise ValueError("prompt_bank and modality go together")
            if prompts is not None:
                raise ValueError("pass prompts or prompt_bank + modality, not both")
            bank = _as_bank(prompt_bank)
            self.bank_prompts = bank.modality(modality, preset)
            self._masker_kwargs = masker_kwargs_from_prompt_bank(
                bank, modality, preset=self.bank_prompts.preset
            )
            self._masker_kwargs.pop("policy")
            prompts = list(self.bank_prompts.texts)
            defaults = (
                self.bank_prompts.threshold,
                self.bank_prompts.num_components,
                self.bank_prompts.expand_ratio,
            )
        else:
            if prompts is None:
                raise ValueError("pass prompts (strings or token ids) or prompt_bank + modality")
            from ..masker import MWM_PRESETS

            chosen = "default" if preset is None else preset
            if chosen not in MWM_PRESETS:
                raise ValueError(f"preset = {preset!r}: must be one of {', '.join(MWM_PRESETS)}")
            high, low = MWM_PRESETS[chosen]
            self._masker_kwargs = {"thresholds": [0.5], "region_ratios": [low, high]}
            defaults = (DEFAULT_THRESHOLD, DEFAULT_NUM_COMPONENTS, 1.0)
        self.threshold = float(defaults[0] if threshold is None else threshold)
        self.num_components = defaults[1] if num_components is None else num_components
        if self.num_components is not None and (
            isinstance(self.num_components, bool)
            or not isinstance(self.num_components, int)
            or self.num_components < 1
        ):
            raise ValueError(
                f"num_components = {self.num_components!r}: must be a positive int or None"
            )
        self.expand_ratio = positive_float(
            defaults[2] if expand_ratio is None else expand_ratio, "expand_ratio"
        )
        if isinstance(sam, tuple):
            sam = SamBoxRefiner(*sam)
        if sam is not None and not isinstance(sam, SamBoxRefiner):
            raise TypeError(
                f"sam must be a SamBoxRefiner or a (SamModel, SamProcessor) pair, got "
                f"{type(sam).__name__}"
            )
        self.sam = sam
        self.preprocess = preprocess
        if preprocess is None:
            self.input_size = (
                tuple(input_size) if input_size is not None else model_input_size(model)
            )
            default_mean, default_std = model_normalization(model)
            self.mean = tuple(mean) if mean is not None else default_mean
            self.std = tuple(std) if std is not None else default_std
        self.m2ib_options = dict(m2ib or {})
        for key in ("prompts", "text_embeddings", "tokenizer", "image_size"):
            if key in self.m2ib_options:
                raise ValueError(f"m2ib[{key!r}] is set by the pipeline")
        if attribution == "m2ib":
            check_m2ib_options(model, **self.m2ib_options)  # bad options fail here, not per image
        self.text_embeddings = encode_prompts(model, prompts, tokenizer)
        self.num_prompts = self.text_embeddings.shape[0]
        if self.bank_prompts is not None and self.num_prompts != len(self.bank_prompts.prompts):
            raise RuntimeError(
                "the text encoder returned a different number of prompts than the bank has"
            )

    # ----------------------------------------------------------------------------------------

    @property
    def masker_kwargs(self) -> Dict[str, list]:
        """`thresholds` and `region_ratios` of the TextGuidedMasker that reads the region maps."""
        return {k: list(v) for k, v in self._masker_kwargs.items()}

    def masker(self, grid, **options):
        """The `mwm.TextGuidedMasker` for these region maps (options: policy, seed, ...)."""
        from ..masker import TextGuidedMasker

        return TextGuidedMasker(grid, **{**self.masker_kwargs, **options})

    def pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Raw images -> the (B, 3, h, w) model input batch."""
        device, dtype = _device_and_dtype(self.model)
        batch = []
        for i, image in enumerate(images):
            if self.preprocess is not None:
                tensor = torch.as_tensor(self.preprocess(image))
                if tensor.dim() != 3:
                    raise ValueError(
                        f"preprocess(images[{i}]) returned shape {tuple(tensor.shape)}; "
                        "expected (3, h, w)"
                    )
                batch.append(tensor.float())
                continue
            array = torch.from_numpy(display_rgb(image).astype(np.float32) / 255.0).permute(2, 0, 1)
            resized = F.interpolate(
                array[None],
                size=self.input_size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )[0]
            mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
            std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
            batch.append((resized - mean) / std)
        sizes = {tuple(t.shape) for t in batch}
        if len(sizes) != 1:
            raise ValueError(f"preprocessed images have different shapes {sorted(sizes)}")
        return torch.stack(batch).to(device=device, dtype=dtype)

    def heatmaps(self, pixels: torch.Tensor) -> torch.Tensor:
        """Attribution maps (B, K, h, w) in [0, 1] at the model's input resolution."""
        if self.attribution == "m2ib":
            return m2ib_heatmaps(
                self.model, pixels, text_embeddings=self.text_embeddings, **self.m2ib_options
            )
        from .clip_heatmaps import ClipHeatmapGenerator

        return ClipHeatmapGenerator(self.model)(pixels, text_embeddings=self.text_embeddings)

    def regions(
        self, heatmap: torch.Tensor, image: np.ndarray
    ) -> Tuple[torch.Tensor, List[List[Box]]]:
        """One image's heatmaps (K, H, W) -> ROI maps (K, H, W) bool and the filled boxes."""
        above = (heatmap > self.threshold).cpu().numpy()
        rois, boxes = [], []
        rgb = display_rgb(image) if self.sam is not None else None
        for k in range(above.shape[0]):
            if self.sam is None:
                found = largest_component_boxes(above[k], self.num_components, self.expand_ratio)
                roi = fill_boxes(above.shape[1:], found)
            else:
                tight = largest_component_boxes(above[k], self.num_components, 1.0)
                roi, found = self.sam.refine(rgb, tight, self.expand_ratio)
            rois.append(torch.from_numpy(roi))
            boxes.append(list(found))
        return torch.stack(rois), boxes

    def region_map(self, roi: torch.Tensor) -> torch.Tensor:
        """ROI maps (K, H, W) -> the (H, W) float map the masker reads."""
        if self.bank_prompts is None:
            return roi.any(dim=0).to(torch.float32)
        levels = self.bank_prompts.prompt_levels
        return region_level_map(roi[None], levels, len(self.bank_prompts.level_ratios))[0]

    def __call__(self, images) -> TextRegions:
        """images: a list of (H, W) or (H, W, 3) arrays in any units (sizes may differ), or a
        (B, H, W[, 3]) array. All images are attributed in one batch."""
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 2:
            raise ValueError("images must be a list of images (a single image: pass [image])")
        if len(images) == 0:
            raise ValueError("images is empty")
        arrays = [_as_image_array(image, i) for i, image in enumerate(images)]
        maps = self.heatmaps(self.pixels(arrays)).float().cpu()
        result = TextRegions([], [], [], [])
        for array, heat in zip(arrays, maps):
            heat = resize_maps(heat, array.shape[:2]).clamp_(0.0, 1.0).contiguous()
            roi, boxes = self.regions(heat, array)
            result.heatmaps.append(heat)
            result.roi_maps.append(roi)
            result.region_maps.append(self.region_map(roi))
            result.boxes.append(boxes)
        return result
