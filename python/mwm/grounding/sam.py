"""SAM refinement of region boxes with the user's transformers `SamModel` + `SamProcessor`.

The Mask What Matters reference refines its heatmap regions with SAM: each component's box is a
box prompt, SAM segments it, and the segment's bounding box, scaled by `expand_ratio` about its
center and clipped, is filled into the ROI map. A box whose segment comes back empty keeps its
own (scaled) box, so refinement never drops a region the heatmap found.

Boxes are `mwm.grounding.regions` boxes: ((row_begin, row_end), (col_begin, col_end)), half-open
pixel ranges; SAM receives them as (x0, y0, x1, y1) pixel corners.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import torch

from ._checks import pixel_range, positive_float
from .torchvision_compat import ensure_torchvision_importable

__all__ = ["SamBoxRefiner", "scaled_bounding_box", "fill_boxes"]

Box = Tuple[Tuple[int, int], ...]


def scaled_bounding_box(mask: np.ndarray, expand_ratio: float) -> Box:
    """The bounding box of a non-empty 2D mask, scaled by expand_ratio about its center, clipped."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = []
    for hits, size in ((rows, mask.shape[0]), (cols, mask.shape[1])):
        begin, end = int(hits[0]), int(hits[-1]) + 1
        center, half = (begin + end) / 2.0, (end - begin) / 2.0 * expand_ratio
        box.append(pixel_range(center - half, center + half, size))
    return tuple(box)


def _scaled_box(box: Box, expand_ratio: float, shape: Sequence[int]) -> Box:
    out = []
    for (begin, end), size in zip(box, shape):
        center, half = (begin + end) / 2.0, (end - begin) / 2.0 * expand_ratio
        out.append(pixel_range(center - half, center + half, size))
    return tuple(out)


def fill_boxes(shape: Sequence[int], boxes: Sequence[Box]) -> np.ndarray:
    roi = np.zeros(tuple(shape), dtype=bool)
    for box in boxes:
        roi[tuple(slice(begin, end) for begin, end in box)] = True
    return roi


class SamBoxRefiner:
    """Box prompts -> SAM masks -> filled, scaled bounding boxes of the masks.

    model: a transformers `SamModel`; processor: its `SamProcessor` (an image processor only; no
    tokenizer is needed, so it loads offline from a local folder). The model runs in eval mode
    under torch.no_grad() on its own device.
    """

    def __init__(self, model, processor):
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "prompt_encoder"):
            raise TypeError(f"model must be a transformers SamModel, got {type(model).__name__}")
        if not hasattr(processor, "post_process_masks"):
            raise TypeError(
                f"processor must be a transformers SamProcessor, got {type(processor).__name__}"
            )
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def from_pretrained(cls, path, device="cpu") -> SamBoxRefiner:
        """Model and processor from one local folder (`save_pretrained` of both); no download."""
        ensure_torchvision_importable()
        from transformers import SamModel, SamProcessor

        model = SamModel.from_pretrained(path, local_files_only=True).to(device)
        processor = SamProcessor.from_pretrained(path, local_files_only=True)
        return cls(model, processor)

    def _device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @torch.no_grad()
    def masks(self, image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """SAM's mask (n, H, W) bool for each of n boxes on one RGB uint8 image (H, W, 3)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"image must be an (H, W, 3) uint8 RGB array, got shape {image.shape} "
                f"dtype {image.dtype}"
            )
        if not boxes:
            return np.zeros((0, *image.shape[:2]), dtype=bool)
        corners = [[float(c0), float(r0), float(c1), float(r1)] for (r0, r1), (c0, c1) in boxes]
        inputs = self.processor(images=[image], input_boxes=[corners], return_tensors="pt")
        device = self._device()
        dtype = next(self.model.parameters()).dtype
        outputs = self.model(
            pixel_values=inputs["pixel_values"].to(device=device, dtype=dtype),
            input_boxes=inputs["input_boxes"].to(device=device, dtype=dtype),
            multimask_output=False,
        )
        masks = self.processor.post_process_masks(
            outputs.pred_masks.float().cpu(),
            inputs["original_sizes"],
            inputs["reshaped_input_sizes"],
        )[0]  # (n, 1, H, W)
        return masks[:, 0].numpy().astype(bool)

    def refine(
        self, image: np.ndarray, boxes: Sequence[Box], expand_ratio: float = 1.0
    ) -> Tuple[np.ndarray, List[Box]]:
        """The ROI map (H, W) bool and the filled boxes, one per prompt box."""
        expand = positive_float(expand_ratio, "expand_ratio")
        shape = np.asarray(image).shape[:2]
        filled = []
        for box, mask in zip(boxes, self.masks(image, boxes)):
            filled.append(
                scaled_bounding_box(mask, expand) if mask.any() else _scaled_box(box, expand, shape)
            )
        return fill_boxes(shape, filled), filled
