"""M2IB attribution: where in the image a CLIP-style model finds a text prompt.

The Multi-Modal Information Bottleneck of Wang, Rudner and Wilson (NeurIPS 2023), re-implemented
from the paper's description. For each (image, prompt) pair, the hidden states H (T tokens x C
channels) that one vision block outputs are replaced by a noisy version

    Z = lambda * H + (1 - lambda) * eps,   eps ~ N(mu_H, var * sigma_H^2),   lambda = sigmoid(alpha)

with mu_H, sigma_H the channel-wise mean and standard deviation of that image's own tokens and
one alpha per token and channel (initialized to `init_alpha`, so lambda starts near 1: almost
no noise). alpha is optimized with Adam, the model frozen, to minimize

    beta * mean_{tokens, channels} KL(q(Z | H) || N(mu_H, var * sigma_H^2))  -  cos(f(Z), t)

where f(Z) is the image embedding the model computes from Z, t the prompt's text embedding, and
the cosine is averaged over `samples` noise draws per step. In units of the feature spread,
H_n = (H - mu_H) / sigma_H, the KL of one token and channel has the closed form

    0.5 * ((1 - lambda)^2 + lambda^2 * H_n^2 / var - 1 - log((1 - lambda)^2)),

the information the bottleneck lets through. The heatmap is that information summed over
channels, for the patch tokens, on the patch grid, resized bilinearly to the image and min-max
normalized to [0, 1]. Defaults follow the Mask What Matters reference: block 7, beta 0.1,
var 1.0, 10 Adam steps at learning rate 1, 10 noise samples per step, alpha = 5.

Batching: all B images x K prompts are optimized together; every pair has its own alpha and its
loss term depends on its own alpha only (Adam is elementwise), so the pairs do not interact.
Every pair sees the same standardized noise draws, generated from `seed`, so a pair's heatmap
does not depend on which other pairs share its batch. The model is left as it was: parameters
and their requires_grad flags, .grad, train/eval mode of every module, no hooks.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ._checks import as_float_tensor, positive_float, require_finite, spatial_size
from .adapters import normalize_maps, resize_maps
from .clip_heatmaps import _grid_of, _is_hf_clip, _is_open_clip, _prompt_tuple

__all__ = [
    "m2ib_heatmaps",
    "encode_prompts",
    "check_m2ib_options",
    "DEFAULT_LAYER",
    "DEFAULT_BETA",
    "DEFAULT_VAR",
    "DEFAULT_STEPS",
    "DEFAULT_LR",
    "DEFAULT_SAMPLES",
    "DEFAULT_INIT_ALPHA",
]

DEFAULT_LAYER = 7
DEFAULT_BETA = 0.1
DEFAULT_VAR = 1.0
DEFAULT_STEPS = 10
DEFAULT_LR = 1.0
DEFAULT_SAMPLES = 10
DEFAULT_INIT_ALPHA = 5.0

Prompts = Union[str, Sequence[str], torch.Tensor, Mapping[str, torch.Tensor]]


# --------------------------------------------------------------------------------------------
# the model's parts M2IB needs


@dataclass
class _Tower:
    """A CLIP-style model seen as: its vision blocks, pixels -> image embedding, ids -> text
    embedding, and how many non-patch (class / register) tokens lead the token sequence."""

    blocks: Sequence[torch.nn.Module]
    encode_image: Callable[[torch.Tensor], torch.Tensor]
    encode_text: Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
    num_prefix_tokens: int
    backend: str


def _tower(model: torch.nn.Module) -> _Tower:
    if _is_hf_clip(model):
        vision = model.vision_model
        expected = model.config.vision_config.image_size

        def encode_image(pixels):
            resize = tuple(pixels.shape[-2:]) != (expected, expected)
            pooled = vision(pixel_values=pixels, interpolate_pos_encoding=resize).pooler_output
            return model.visual_projection(pooled)

        def encode_text(tokens):
            inputs = {k: v for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            return model.text_projection(model.text_model(**inputs).pooler_output)

        return _Tower(list(vision.encoder.layers), encode_image, encode_text, 1, "transformers")
    if _is_open_clip(model):
        visual = model.visual

        def encode_text(tokens):
            return model.encode_text(tokens["input_ids"])

        if hasattr(visual, "trunk"):  # timm tower, as in BiomedCLIP
            trunk = visual.trunk
            return _Tower(
                list(trunk.blocks),
                model.encode_image,
                encode_text,
                int(getattr(trunk, "num_prefix_tokens", 1)),
                "open_clip/timm",
            )
        if getattr(visual, "attn_pool", None) is not None:
            raise TypeError("open_clip towers with attentional pooling are not supported by M2IB")
        if not getattr(visual.transformer, "batch_first", True):
            raise TypeError(
                "open_clip transformers with batch_first=False are not supported by M2IB"
            )
        prefix = 0 if getattr(visual, "class_embedding", None) is None else 1
        return _Tower(
            list(visual.transformer.resblocks), model.encode_image, encode_text, prefix, "open_clip"
        )
    raise TypeError(
        f"model {type(model).__name__} is neither a transformers CLIPModel nor an open_clip CLIP "
        "with a ViT or timm vision tower"
    )


def _device_and_dtype(model: torch.nn.Module) -> Tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


def _tokenize(tokenizer, prompts: Sequence[str]):
    if tokenizer is None:
        raise ValueError(
            "prompts are strings but tokenizer is None: pass the model's tokenizer or "
            "processor, or give token ids"
        )
    if hasattr(tokenizer, "model_input_names"):  # a transformers tokenizer or processor
        return tokenizer(text=list(prompts), padding=True, truncation=True, return_tensors="pt")
    return tokenizer(list(prompts))


def _token_mapping(tokens) -> dict:
    if isinstance(tokens, torch.Tensor):
        tokens = {"input_ids": tokens}
    elif isinstance(tokens, Mapping):
        if "input_ids" not in tokens:
            raise ValueError(f"token mapping has keys {sorted(tokens)}; it needs 'input_ids'")
        tokens = {k: v for k, v in tokens.items() if isinstance(v, torch.Tensor)}
    else:
        raise TypeError(
            f"the tokenizer returned a {type(tokens).__name__}; expected a tensor of token ids "
            "or a "
            "mapping with 'input_ids'"
        )
    ids = tokens["input_ids"]
    if ids.dim() == 1:
        tokens = {k: v.unsqueeze(0) for k, v in tokens.items()}
        ids = tokens["input_ids"]
    if ids.dim() != 2 or ids.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"input_ids must be a (K, L) integer tensor, got shape {tuple(ids.shape)} "
            f"dtype {ids.dtype}"
        )
    return tokens


@torch.no_grad()
def encode_prompts(model: torch.nn.Module, prompts: Prompts, tokenizer=None) -> torch.Tensor:
    """Unit-norm text embeddings (K, E) of prompts: strings (with `tokenizer`, a transformers
    tokenizer / processor or open_clip's), a (K, L) tensor of token ids, or a mapping with
    "input_ids" (and "attention_mask")."""
    tower = _tower(model)
    device, _ = _device_and_dtype(model)
    if isinstance(prompts, (str, list, tuple)):
        tokens = _tokenize(tokenizer, _prompt_tuple(prompts))
    else:
        tokens = prompts
    tokens = {k: v.to(device) for k, v in _token_mapping(tokens).items()}
    embeddings = tower.encode_text(tokens)
    return F.normalize(embeddings.float(), dim=-1)


# --------------------------------------------------------------------------------------------
# the bottleneck


def _information(alpha: torch.Tensor, standardized: torch.Tensor, var: float) -> torch.Tensor:
    """KL(q(Z|H) || prior) per token and channel.

    alpha: (B, K, T, C); standardized: H in units of the channel spread, (B, 1, T, C)."""
    lam = torch.sigmoid(alpha)
    log_keep_noise = 2.0 * F.logsigmoid(-alpha)  # log (1 - lambda)^2, finite for large alpha
    return 0.5 * (
        torch.exp(log_keep_noise)
        + lam.square() * standardized.square() / var
        - 1.0
        - log_keep_noise
    )


class _Bottleneck:
    """State shared between the optimization loop and the forward hook on the chosen block."""

    def __init__(
        self,
        num_prompts: int,
        samples: int,
        init_alpha: float,
        var: float,
        generator: torch.Generator,
    ):
        self.num_prompts = num_prompts
        self.samples = samples
        self.init_alpha = init_alpha
        self.var = var
        self.generator = generator
        self.alpha: Optional[torch.Tensor] = None
        self.mean = self.std = self.standardized = self.hidden = None
        self.seen_shape = None

    def start(self, hidden: torch.Tensor) -> None:
        """First forward: channel statistics of each image's tokens and the alpha to optimize."""
        tokens = hidden.detach()
        self.seen_shape = tuple(tokens.shape)
        self.hidden = tokens
        self.mean = tokens.mean(dim=1, keepdim=True)
        spread = tokens.std(dim=1, keepdim=True, unbiased=False)
        self.std = spread.clamp_min(torch.finfo(tokens.dtype).eps)
        self.standardized = ((tokens - self.mean) / self.std).unsqueeze(1)  # (B, 1, T, C)
        shape = (tokens.shape[0], self.num_prompts, *tokens.shape[1:])
        self.alpha = torch.full(
            shape,
            float(self.init_alpha),
            dtype=tokens.dtype,
            device=tokens.device,
            requires_grad=True,
        )

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
            raise RuntimeError(
                f"the bottleneck block returned {type(hidden).__name__} of shape "
                f"{getattr(hidden, 'shape', None)}; expected (batch, tokens, channels) "
                "hidden states"
            )
        if self.alpha is None:
            self.start(hidden)
        elif tuple(hidden.shape) != self.seen_shape:
            raise RuntimeError(
                f"the bottleneck block saw hidden states of shape {tuple(hidden.shape)} "
                f"after {self.seen_shape}"
            )
        batch, tokens, channels = hidden.shape
        standard = torch.randn(
            (self.samples, tokens, channels),
            generator=self.generator,
            device=hidden.device,
            dtype=hidden.dtype,
        )
        # eps ~ N(mu_H, var * sigma_H^2) per image: (B, 1, S, T, C); Z = eps + lambda * (H - eps).
        eps = torch.addcmul(self.mean[:, None], self.std[:, None] * math.sqrt(self.var), standard)
        eps = eps.unsqueeze(1)
        lam = torch.sigmoid(self.alpha).unsqueeze(2)  # (B, K, 1, T, C)
        z = torch.addcmul(eps, lam, self.hidden[:, None, None] - eps)  # (B, K, S, T, C)
        return z.reshape(batch * self.num_prompts * self.samples, tokens, channels)

    def information(self) -> torch.Tensor:
        return _information(self.alpha, self.standardized, self.var)


@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and requires_grad=False for the duration; every flag restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        model.eval()
        for param, _ in flags:
            param.requires_grad_(False)
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode


@contextmanager
def _hooked(block: torch.nn.Module, bottleneck: _Bottleneck) -> Iterator[None]:
    def replace_output(module, inputs, output):
        if isinstance(output, tuple):  # older transformers layers return (hidden, ...)
            return (bottleneck(output[0]), *output[1:])
        return bottleneck(output)

    handle = block.register_forward_hook(replace_output)
    try:
        yield
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------------
# public entry point


def _int_at_least(value, argument: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{argument} = {value!r}: must be an int >= {low}")
    return int(value)


def _number(value, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{argument} = {value!r}: must be a finite number")
    return float(value)


def check_m2ib_options(
    model: torch.nn.Module,
    *,
    layer=DEFAULT_LAYER,
    beta=DEFAULT_BETA,
    var=DEFAULT_VAR,
    steps=DEFAULT_STEPS,
    lr=DEFAULT_LR,
    samples=DEFAULT_SAMPLES,
    init_alpha=DEFAULT_INIT_ALPHA,
    seed=0,
) -> tuple:
    """The M2IB options, checked against the model (a ValueError names the bad one)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tower = _tower(model)
    layer = _int_at_least(layer, "layer", 0)
    if layer >= len(tower.blocks):
        raise ValueError(
            f"layer = {layer}: the vision tower has {len(tower.blocks)} blocks "
            f"(0..{len(tower.blocks) - 1})"
        )
    beta = _number(beta, "beta")
    if beta < 0:
        raise ValueError(f"beta = {beta}: must be >= 0")
    return (
        layer,
        beta,
        positive_float(var, "var"),
        _int_at_least(steps, "steps", 0),
        positive_float(lr, "lr"),
        _int_at_least(samples, "samples", 1),
        _number(init_alpha, "init_alpha"),
        _int_at_least(seed, "seed", 0),
    )


def m2ib_heatmaps(
    model: torch.nn.Module,
    images,
    prompts: Optional[Prompts] = None,
    *,
    tokenizer=None,
    text_embeddings=None,
    layer: int = DEFAULT_LAYER,
    beta: float = DEFAULT_BETA,
    var: float = DEFAULT_VAR,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    samples: int = DEFAULT_SAMPLES,
    init_alpha: float = DEFAULT_INIT_ALPHA,
    seed: int = 0,
    image_size: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """M2IB heatmaps (B, K, H, W) in [0, 1] of K prompts over B images; (B, H, W) for one string.

    model: a transformers CLIPModel, or an open_clip CLIP with a ViT tower or a timm tower (as
        BiomedCLIP); its parameters, flags, .grad and train/eval modes are left unchanged.
    images: (B, 3, h, w) pixel tensor, preprocessed for the model (resolution, mean/std).
    prompts: a string, a list of K strings (with `tokenizer`), a (K, L) tensor of token ids or a
        mapping with "input_ids" (and "attention_mask"). Or pass `text_embeddings` (K, E).
    layer: index of the vision block whose output gets the bottleneck (0-based).
    beta, var: weight of the information term and prior variance (in units of each channel's
        spread over the image's tokens). steps, lr: Adam iterations and learning rate on alpha.
    samples: noise draws per step; init_alpha: starting alpha (lambda = sigmoid(alpha)).
    seed: seeds the noise (a torch.Generator on the model's device); same seed, same maps.
    image_size: (H, W) of the output; defaults to the images' (h, w).

    Returns float32 maps on the model's device.
    """
    layer, beta, var, steps, lr, samples, init_alpha, seed = check_m2ib_options(
        model,
        layer=layer,
        beta=beta,
        var=var,
        steps=steps,
        lr=lr,
        samples=samples,
        init_alpha=init_alpha,
        seed=seed,
    )
    tower = _tower(model)

    device, dtype = _device_and_dtype(model)
    pixels = as_float_tensor(images, "images")
    if pixels.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(pixels.shape)}")
    if pixels.shape[0] == 0:
        raise ValueError("images holds no image (batch size 0)")
    require_finite(pixels, "images")
    pixels = pixels.detach().to(device=device, dtype=dtype)
    size = (
        tuple(pixels.shape[-2:])
        if image_size is None
        else spatial_size(image_size, "image_size", (2,))
    )

    if (prompts is None) == (text_embeddings is None):
        raise ValueError("pass exactly one of prompts and text_embeddings")
    single = isinstance(prompts, str)
    if prompts is not None:
        texts = encode_prompts(model, prompts, tokenizer)
    else:
        texts = as_float_tensor(text_embeddings, "text_embeddings").detach()
        if texts.dim() == 1:
            texts = texts.unsqueeze(0)
        if texts.dim() != 2:
            raise ValueError(f"text_embeddings must be (K, E), got shape {tuple(texts.shape)}")
        require_finite(texts, "text_embeddings")
    # Both paths normalize here, the prompts' unit embeddings a second time: normalizing is not
    # idempotent in floating point, and this way encode_prompts' output given as text_embeddings
    # yields the same heatmaps bit for bit as the prompts themselves.
    texts = F.normalize(texts.float(), dim=-1).to(device=device, dtype=dtype)
    num_prompts = texts.shape[0]

    generator = torch.Generator(device=device).manual_seed(seed)
    bottleneck = _Bottleneck(num_prompts, samples, init_alpha, var, generator)
    batch = pixels.shape[0]
    with _frozen(model), _hooked(tower.blocks[layer], bottleneck), torch.enable_grad():

        def loss_of_step() -> torch.Tensor:
            embeddings = tower.encode_image(pixels)
            if embeddings.dim() != 2 or embeddings.shape[0] != batch * num_prompts * samples:
                raise RuntimeError(
                    f"the image encoder returned shape {tuple(embeddings.shape)}; expected "
                    f"({batch * num_prompts * samples}, E) embeddings"
                )
            if embeddings.shape[-1] != texts.shape[-1]:
                raise ValueError(
                    f"text embeddings have dimension {texts.shape[-1]} but image "
                    f"embeddings {embeddings.shape[-1]}"
                )
            unit = F.normalize(embeddings, dim=-1).reshape(batch, num_prompts, samples, -1)
            cosine = (unit * texts[None, :, None]).sum(-1).mean(-1)  # (B, K)
            information = bottleneck.information().mean(dim=(-2, -1))  # (B, K)
            # Summed, not averaged, over pairs: each pair's alpha gets its own loss's gradient.
            return (beta * information - cosine).sum()

        if steps == 0:
            with torch.no_grad():
                tower.encode_image(pixels)  # sets the statistics and alpha
        else:
            optimizer = None
            for _ in range(steps):
                loss = loss_of_step()
                if optimizer is None:
                    optimizer = torch.optim.Adam([bottleneck.alpha], lr=lr)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            per_token = bottleneck.information().sum(-1)  # (B, K, T)
    patches = per_token[..., tower.num_prefix_tokens :]
    grid = _grid_of(patches.shape[-1], pixels.shape[-2:])
    maps = patches.reshape(batch, num_prompts, *grid).float()
    heat = normalize_maps(resize_maps(maps, size), 2).clamp_(0.0, 1.0).contiguous()
    return heat[:, 0] if single else heat
