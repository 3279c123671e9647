"""Loading the user's CLIP-style model and tokenizer from a local folder; nothing downloads.

Two folder layouts are recognized:
- open_clip's (`open_clip_config.json` with "model_cfg" and "preprocess_cfg", plus the weights
  `open_clip_pytorch_model.bin` / `open_clip_model.safetensors`), the layout BiomedCLIP ships in:
  `open_clip.create_model("local-dir:<folder>")` and
  `open_clip.get_tokenizer("local-dir:<folder>")`;
- transformers' (`config.json` of a CLIPModel and its weights, `save_pretrained`), with the
  tokenizer files and optionally `preprocessor_config.json` (pixel mean / std) in the same folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch

from .torchvision_compat import ensure_torchvision_importable

__all__ = ["LoadedClip", "load_clip"]


@dataclass
class LoadedClip:
    model: torch.nn.Module
    tokenizer: object
    mean: Optional[Tuple[float, ...]]  # None: the pipeline's default for this model
    std: Optional[Tuple[float, ...]]
    kind: str


def load_clip(path, device="cpu") -> LoadedClip:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"--clip {str(folder)!r} is not a folder")
    ensure_torchvision_importable()
    if (folder / "open_clip_config.json").is_file():
        import open_clip

        model = open_clip.create_model(f"local-dir:{folder}", device=device)
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        return LoadedClip(model.eval(), tokenizer, None, None, "open_clip")
    if (folder / "config.json").is_file():
        from transformers import AutoTokenizer, CLIPModel

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "clip":
            raise ValueError(
                f"{folder / 'config.json'}: model_type {config.get('model_type')!r} is not "
                "a transformers CLIPModel ('clip')"
            )
        model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"--clip {str(folder)!r}: no tokenizer could be loaded from the folder "
                f"({exc}); save the tokenizer next to the model"
            ) from exc
        mean = std = None
        processor_config = folder / "preprocessor_config.json"
        if processor_config.is_file():
            values = json.loads(processor_config.read_text(encoding="utf-8"))
            if values.get("image_mean") and values.get("image_std"):
                mean, std = tuple(values["image_mean"]), tuple(values["image_std"])
        return LoadedClip(model, tokenizer, mean, std, "transformers")
    raise FileNotFoundError(
        f"--clip {str(folder)!r} holds neither open_clip_config.json (open_clip / BiomedCLIP) nor "
        "config.json (transformers CLIPModel)"
    )
