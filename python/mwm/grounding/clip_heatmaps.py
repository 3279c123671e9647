"""Text-to-heatmap grounding with a CLIP-style vision-language model the user supplies.

Image -> patch tokens of the vision transformer, projected into the joint image-text space;
prompt -> text embedding; cosine similarity per patch -> a patch-grid map, normalized and
upsampled to the image by `mwm.grounding.adapters.similarity_to_heatmap`.

Supported models (the user builds and loads them; nothing here downloads):
- open_clip `CLIP` with a ViT tower (`open_clip.create_model(name, pretrained=<local file>)`),
  including timm towers such as BiomedCLIP's (`model.visual.trunk` + `model.visual.head`);
- Hugging Face `transformers.CLIPModel` (`CLIPModel.from_pretrained(<local dir>)`);
- any pair of callables through `ClipHeatmapGenerator.from_encoders`.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ._checks import as_float_tensor, require_finite, spatial_size
from .adapters import similarity_to_heatmap

__all__ = ["ClipHeatmapGenerator"]

PatchEncoder = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) -> (B, N, E)
TextEncoder = Callable[[Sequence[str]], torch.Tensor]  # K prompts -> (K, E)


class ClipHeatmapGenerator:
    """Heatmaps (B, K, H, W) in [0, 1] of K text prompts over a batch of images.

    model: an open_clip CLIP (ViT or timm tower) or a transformers CLIPModel. The generator puts
        it in eval mode and runs it under torch.no_grad().
    tokenizer: open_clip's tokenizer (`open_clip.get_tokenizer(name)`), a transformers tokenizer,
        or any callable from a list of strings to token ids (a (K, L) tensor or a mapping with
        "input_ids" and optionally "attention_mask").
    normalize / temperature: how patch similarities become heatmaps ("minmax" or "softmax"), as in
        `similarity_to_heatmap`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer=None,
        *,
        normalize: str = "minmax",
        temperature: float = 0.07,
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        model.eval()
        self.model = model
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.temperature = temperature
        self._text_cache: Dict[Tuple[str, ...], torch.Tensor] = {}
        if _is_hf_clip(model):
            self.backend = "transformers"
            self._encode_patches: PatchEncoder = self._hf_patches
            self._encode_text: TextEncoder = self._hf_text
        elif _is_open_clip(model):
            self.backend = "open_clip"
            self._encode_patches = self._open_clip_patches
            self._encode_text = self._open_clip_text
        else:
            raise TypeError(
                f"model {type(model).__name__} is neither an open_clip CLIP with a ViT tower nor a "
                "transformers CLIPModel; wrap other models with ClipHeatmapGenerator.from_encoders"
            )

    @classmethod
    def from_encoders(
        cls,
        patch_encoder: PatchEncoder,
        text_encoder: TextEncoder,
        *,
        normalize: str = "minmax",
        temperature: float = 0.07,
    ) -> ClipHeatmapGenerator:
        """A generator over any model: `patch_encoder(images) -> (B, N, E)` projected patch
        tokens in row-major grid order, `text_encoder(prompts) -> (K, E)` text embeddings."""
        if not callable(patch_encoder) or not callable(text_encoder):
            raise TypeError("patch_encoder and text_encoder must be callables")
        self = cls.__new__(cls)
        self.model = None
        self.tokenizer = None
        self.normalize = normalize
        self.temperature = temperature
        self._text_cache = {}
        self.backend = "encoders"
        self._encode_patches = patch_encoder
        self._encode_text = text_encoder
        return self

    # ----------------------------------------------------------------------------------------
    # public API

    @torch.no_grad()
    def text_embeddings(self, prompts: Union[str, Sequence[str]]) -> torch.Tensor:
        """Unit-norm text embeddings (K, E); cached per prompt list."""
        key = _prompt_tuple(prompts)
        if key not in self._text_cache:
            embeddings = self._encode_text(list(key))
            if (not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2
                    or embeddings.shape[0] != len(key)):
                raise RuntimeError(
                    f"the text encoder returned {_describe(embeddings)} for {len(key)} prompts; "
                    "expected a (K, E) tensor"
                )
            self._text_cache[key] = F.normalize(embeddings.float(), dim=-1)
        return self._text_cache[key]

    @torch.no_grad()
    def patch_embeddings(self, images) -> torch.Tensor:
        """Unit-norm projected patch embeddings (B, gh, gw, E) of images (B, C, H, W)."""
        pixels = self._check_images(images)
        tokens = self._encode_patches(pixels)
        if (not isinstance(tokens, torch.Tensor) or tokens.dim() != 3
                or tokens.shape[0] != pixels.shape[0]):
            raise RuntimeError(
                f"the image encoder returned {_describe(tokens)}; expected (B, N, E) patch tokens"
            )
        grid = _grid_of(tokens.shape[1], pixels.shape[-2:])
        return F.normalize(tokens.float(), dim=-1).reshape(tokens.shape[0], *grid, tokens.shape[-1])

    @torch.no_grad()
    def similarity(self, images, prompts=None, *, text_embeddings=None) -> torch.Tensor:
        """Cosine similarity (B, K, gh, gw) between every patch and every prompt."""
        patches = self.patch_embeddings(images)
        texts = self._texts(prompts, text_embeddings, patches.shape[-1])
        return torch.einsum("bhwe,ke->bkhw", patches, texts.to(patches.device))

    @torch.no_grad()
    def __call__(
        self,
        images,
        prompts: Union[str, Sequence[str], None] = None,
        *,
        text_embeddings=None,
        image_size: Optional[Sequence[int]] = None,
    ) -> torch.Tensor:
        """Heatmaps (B, K, H, W) in [0, 1]; a single string prompt gives (B, H, W).

        image_size defaults to the images' (H, W). Pass `text_embeddings` (K, E) instead of
        prompts to ground precomputed or averaged (prompt-ensemble) text embeddings.
        """
        pixels = self._check_images(images)
        size = (tuple(pixels.shape[-2:]) if image_size is None
                else spatial_size(image_size, "image_size", (2,)))
        sims = self.similarity(pixels, prompts, text_embeddings=text_embeddings)
        heat = similarity_to_heatmap(
            sims.cpu(), size, normalize=self.normalize, temperature=self.temperature
        )
        return heat[:, 0] if isinstance(prompts, str) else heat

    # ----------------------------------------------------------------------------------------
    # helpers

    def _check_images(self, images) -> torch.Tensor:
        pixels = as_float_tensor(images, "images")
        if pixels.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(pixels.shape)}")
        require_finite(pixels, "images")
        if self.model is not None:
            param = next(self.model.parameters(), None)
            if param is not None:
                pixels = pixels.to(device=param.device, dtype=param.dtype)
        return pixels

    def _texts(self, prompts, text_embeddings, dim: int) -> torch.Tensor:
        if (prompts is None) == (text_embeddings is None):
            raise ValueError("pass exactly one of prompts and text_embeddings")
        if prompts is not None:
            texts = self.text_embeddings(prompts)
        else:
            texts = as_float_tensor(text_embeddings, "text_embeddings").float()
            if texts.dim() == 1:
                texts = texts.unsqueeze(0)
            require_finite(texts, "text_embeddings")
            texts = F.normalize(texts, dim=-1)
        if texts.dim() != 2 or texts.shape[-1] != dim:
            raise ValueError(
                f"text embeddings have shape {tuple(texts.shape)} but patch embeddings have "
                f"dimension {dim}"
            )
        return texts

    def _tokenize(self, prompts: Sequence[str]):
        if self.tokenizer is None:
            raise ValueError(
                "this generator has no tokenizer: pass tokenizer=... to ground text prompts")
        if hasattr(self.tokenizer, "model_input_names"):  # a transformers tokenizer
            return self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        return self.tokenizer(list(prompts))

    def _device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    # transformers CLIPModel: patch tokens -> post_layernorm -> visual_projection.
    def _hf_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        vision = self.model.vision_model
        expected = self.model.config.vision_config.image_size
        hidden = vision(
            pixel_values=pixels,
            interpolate_pos_encoding=tuple(pixels.shape[-2:]) != (expected, expected),
        ).last_hidden_state
        return self.model.visual_projection(vision.post_layernorm(hidden[:, 1:]))

    def _hf_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self._tokenize(prompts)
        if isinstance(tokens, torch.Tensor):
            tokens = {"input_ids": tokens}
        inputs = {k: v.to(self._device()) for k, v in tokens.items()
                  if k in ("input_ids", "attention_mask")}
        pooled = self.model.text_model(**inputs).pooler_output
        return self.model.text_projection(pooled)

    # open_clip CLIP: ViT tower (tokens after ln_post, times proj) or timm tower (trunk + head).
    def _open_clip_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        visual = self.model.visual
        if hasattr(visual, "trunk"):
            trunk = visual.trunk
            tokens = trunk.forward_features(pixels)
            tokens = tokens[:, getattr(trunk, "num_prefix_tokens", 1):]
            return visual.head(tokens)
        if getattr(visual, "attn_pool", None) is not None:
            raise TypeError("open_clip towers with attentional pooling have no per-patch tokens")
        previous = visual.output_tokens
        visual.output_tokens = True
        try:
            _, tokens = visual(pixels)
        finally:
            visual.output_tokens = previous
        grid = getattr(visual, "grid_size", None)
        if grid is not None and tokens.shape[1] == grid[0] * grid[1] + 1:
            tokens = tokens[:, 1:]  # pool_type "none" keeps the class token
        return tokens @ visual.proj if visual.proj is not None else tokens

    def _open_clip_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self._tokenize(prompts)
        if not isinstance(tokens, torch.Tensor):
            tokens = tokens["input_ids"]
        return self.model.encode_text(tokens.to(self._device()))


def _is_hf_clip(model) -> bool:
    return all(hasattr(model, a)
               for a in ("vision_model", "text_model", "visual_projection", "text_projection"))


def _is_open_clip(model) -> bool:
    visual = getattr(model, "visual", None)
    return (
        visual is not None
        and hasattr(model, "encode_text")
        and (hasattr(visual, "trunk") or hasattr(visual, "output_tokens"))
    )


def _prompt_tuple(prompts) -> Tuple[str, ...]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(
            f"prompts must be a string or a non-empty list of strings, got {prompts!r}")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"prompts holds {p!r}: every prompt must be a non-empty string")
    return tuple(prompts)


def _grid_of(num_patches: int, image_hw) -> Tuple[int, int]:
    """The (gh, gw) patch grid of num_patches tokens over an image of this aspect ratio."""
    height, width = int(image_hw[0]), int(image_hw[1])
    rows = int(round(math.sqrt(num_patches * height / width)))
    for gh in (rows, rows - 1, rows + 1):
        if (gh > 0 and num_patches % gh == 0
                and abs(num_patches // gh * height - gh * width) * 4 <= gh * width):
            return gh, num_patches // gh
    raise RuntimeError(
        f"{num_patches} patch tokens do not form a grid over a {height}x{width} image "
        "(does the encoder keep a class token?)"
    )


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
