"""Small masked-image-modeling models for the ratios benchmark, 2D or 3D.

- `SparseCNN`: a SparK-style convolutional encoder. The masked input is zeroed, and after every
  convolution the masked positions are zeroed again at that feature map's resolution; batch
  norm statistics come from the active (visible) positions only. A light U-Net decoder fills
  masked positions of each scale with a learned mask token and reconstructs the image; the loss
  covers masked patches only, against per-patch normalized pixels.
- `TinyMAE`: a small MAE ViT. The encoder sees only the visible tokens. When every sample keeps
  as many (random, fixed_total, weighted) they are gathered with ``ids_keep`` into a (B, K, C)
  batch; when the counts differ (per_region) they are packed without padding
  (``mwm.pack_visible_tokens``) and each sample attends to its own tokens only (jagged nested
  tensors, ``torch.nested.nested_tensor_from_jagged``, the layout of flash-attention's varlen
  kernels); ``token_layout="padded"`` pads instead and masks the padding out of attention. The
  decoder receives mask tokens put in place with ``ids_restore`` (``mwm.unpack_visible_tokens``
  from the packed rows), and the loss covers masked patches only.

Both expose ``features(images)`` for frozen-encoder probes: a list of (B, C, *grid_s) feature
maps (coarsest last) computed with nothing masked.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import mwm


def _conv(ndim: int):
    return {2: nn.Conv2d, 3: nn.Conv3d}[ndim]


def _conv_transpose(ndim: int):
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[ndim]


def _spatial_ndim(images: torch.Tensor, argument: str = "images") -> int:
    if images.dim() not in (4, 5):
        raise ValueError(
            f"{argument} must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(images.shape)}"
        )
    return images.dim() - 2


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    norm_pix: bool = True,
    *,
    patch_size: Optional[int] = None,
) -> torch.Tensor:
    """Mean squared error over the masked patches only (MAE / SparK).

    pred: (B, N, P) patches or an image shaped like `target`; target: (B, C, *S) images;
    mask: (B, N) bool, True = masked. With `norm_pix`, each target patch is standardized with
    its own mean and unbiased variance (eps 1e-6): ``mwm.masked_recon_loss`` after the checks
    that name this function's arguments.
    """
    ndim = _spatial_ndim(target, "target")
    if mask.dim() != 2 or mask.shape[0] != target.shape[0]:
        raise ValueError(
            f"mask must be (B, N) with B = {target.shape[0]}, got shape {tuple(mask.shape)}"
        )
    num_patches = mask.shape[1]
    if patch_size is None:
        patch_size = round((math.prod(target.shape[2:]) / num_patches) ** (1.0 / ndim))
    if patch_size <= 0 or math.prod(s // patch_size for s in target.shape[2:]) != num_patches:
        raise ValueError(
            f"patch_size={patch_size} does not tile target {tuple(target.shape)} into "
            f"mask's N={num_patches} patches"
        )
    expected = (target.shape[0], num_patches, patch_size**ndim * target.shape[1])
    if pred.shape != target.shape and tuple(pred.shape) != expected:
        raise ValueError(
            f"pred must be an image shaped like target {tuple(target.shape)} or patches "
            f"{expected}, got shape {tuple(pred.shape)}"
        )
    return mwm.masked_recon_loss(pred, target, mask, patch_size, norm_target=norm_pix)


def expand_active(active: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Repeat a coarse (B, 1, *grid) active map to a feature map of spatial `size` (SparK)."""
    out = active
    for axis, (g, s) in enumerate(zip(active.shape[2:], size)):
        if s % g:
            raise ValueError(f"feature size {tuple(size)} is not a multiple of the mask grid "
                             f"{tuple(active.shape[2:])}")
        out = out.repeat_interleave(s // g, dim=2 + axis)
    return out


class SparseBatchNorm(nn.Module):
    """Batch norm whose statistics come from active positions only; masked positions stay 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor, active: Optional[torch.Tensor]) -> torch.Tensor:
        if active is None:
            flat = x.movedim(1, -1).reshape(-1, x.shape[1])
            return self.bn(flat).reshape(x.movedim(1, -1).shape).movedim(-1, 1)
        channels_last = x.movedim(1, -1)
        where = active[:, 0]
        out = torch.zeros_like(channels_last)
        out[where] = self.bn(channels_last[where])
        return out.movedim(-1, 1)


class _SparseConvUnit(nn.Module):
    """conv -> zero masked -> sparse BN -> GELU."""

    def __init__(self, ndim, cin, cout, stride):
        super().__init__()
        self.conv = _conv(ndim)(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm = SparseBatchNorm(cout)

    def forward(self, x, active_map):
        x = self.conv(x)
        active = None if active_map is None else expand_active(active_map, x.shape[2:])
        if active is not None:
            x = x * active
        return F.gelu(self.norm(x, active))  # GELU(0) = 0: masked positions stay zero


class _SparseStage(nn.Module):
    """Optional stride-2 downsampling, then one residual block; every conv respects the mask."""

    def __init__(self, ndim, cin, cout, downsample: bool):
        super().__init__()
        self.down = _SparseConvUnit(ndim, cin, cout, stride=2) if downsample else None
        self.body1 = _SparseConvUnit(ndim, cout, cout, stride=1)
        self.body2 = _SparseConvUnit(ndim, cout, cout, stride=1)

    def forward(self, x, active_map):
        if self.down is not None:
            x = self.down(x, active_map)
        return x + self.body2(self.body1(x, active_map), active_map)


class SparseCNN(nn.Module):
    """SparK-style CNN. A non-overlapping ``stem`` x ``stem`` patchify stem (as ConvNeXt, so no
    stem pixel straddles a mask patch), then one stage per width, each after the first halving
    the resolution: total stride = stem * 2 ** (len(widths) - 1) = the mask patch size."""

    def __init__(
        self, in_channels: int = 1, widths: Sequence[int] = (32, 64), stem: int = 4, ndim: int = 2
    ):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim={ndim} must be 2 or 3")
        if not widths:
            raise ValueError("widths must hold at least one stage width")
        if stem < 1:
            raise ValueError(f"stem={stem} must be a positive stride")
        self.ndim, self.in_channels, self.widths = ndim, in_channels, tuple(widths)
        self.patch_size = stem * 2 ** (len(widths) - 1)
        conv, up = _conv(ndim), _conv_transpose(ndim)
        self.stem = conv(in_channels, widths[0], stem, stride=stem, bias=False)
        self.stem_norm = SparseBatchNorm(widths[0])
        self.stages = nn.ModuleList(
            _SparseStage(ndim, widths[max(i - 1, 0)], widths[i], downsample=i > 0)
            for i in range(len(widths))
        )
        # Light decoder (after SparK's): each scale is densified - a projection, and a learned
        # mask token wherever the encoder saw nothing - then merged from coarse to fine.
        self.densify = nn.ModuleList(conv(w, w, 1) for w in widths)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, w, *([1] * ndim))) for w in widths
        )
        bn = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim]
        self.ups = nn.ModuleList(
            up(widths[i], widths[i - 1], 2, stride=2) for i in range(len(widths) - 1, 0, -1)
        )
        self.fuse = nn.ModuleList(
            nn.Sequential(conv(widths[i - 1], widths[i - 1], 3, padding=1, bias=False),
                          bn(widths[i - 1]), nn.GELU())
            for i in range(len(widths) - 1, 0, -1)
        )
        # Each finest-scale position predicts its stem x stem block of pixels.
        self.head = up(widths[0], in_channels, stem, stride=stem)
        for t in self.mask_tokens:
            nn.init.trunc_normal_(t, std=0.02)

    def encode(self, images: torch.Tensor, active_map: Optional[torch.Tensor]):
        """Features of every stage (finest first). `active_map` (B, 1, *grid) or None."""
        x = images
        if active_map is not None:
            x = x * expand_active(active_map, x.shape[2:]).to(x.dtype)
        x = self.stem(x)
        active = None if active_map is None else expand_active(active_map, x.shape[2:])
        x = F.gelu(self.stem_norm(x, active))
        feats = []
        for stage in self.stages:
            x = stage(x, active_map)
            feats.append(x)
        return feats

    def features(self, images: torch.Tensor) -> List[torch.Tensor]:
        return self.encode(images, None)

    def forward(self, images: torch.Tensor, masks, norm_pix: bool = True) -> torch.Tensor:
        """Reconstruction loss for one batch masked by `masks` (an mwm mask result)."""
        active_map = masks.active().to(images.device)
        feats = self.encode(images, active_map)
        dense = []
        for f, proj, token in zip(feats, self.densify, self.mask_tokens):
            active = expand_active(active_map, f.shape[2:])
            dense.append(torch.where(active, proj(f), token.to(f.dtype)))
        x = dense[-1]
        for up, fuse, skip in zip(self.ups, self.fuse, dense[:-1][::-1]):
            x = fuse(up(x) + skip)
        pred = self.head(x)
        return reconstruction_loss(
            pred, images, masks.mask.to(images.device), norm_pix, patch_size=self.patch_size
        )


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_position_embedding(dim: int, grid: Sequence[int]) -> torch.Tensor:
    """Fixed sin-cos position embedding (N, dim) for a row-major grid: an equal even share of
    the channels per axis, and zeros in the few channels left over (e.g. dim 64 on a 3D grid)."""
    ndim = len(grid)
    per_axis = 2 * (dim // (2 * ndim))
    if per_axis == 0:
        raise ValueError(f"embed dim={dim} is too small for a {ndim}D grid (need >= {2 * ndim})")
    coords = torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij")
    parts = [_sincos_1d(per_axis, c.reshape(-1)) for c in coords]
    out = torch.zeros(math.prod(grid), dim, dtype=torch.float64)
    out[:, : per_axis * ndim] = torch.cat(parts, dim=1)
    return out.float()


class _TorchTracingNotice(logging.Filter):
    """Drops the notice torch logs (once per process) when `nested_tensor_from_jagged` asks
    torch.fx whether it is tracing: a deprecation inside torch, which the harness's output
    should not carry as if it were about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("is_fx_tracing will return true")


logging.getLogger("torch.fx._symbolic_trace").addFilter(_TorchTracingNotice())


class _Block(nn.Module):
    """Pre-norm transformer block; `valid` (B, T) marks real tokens (None: all real), and
    `pairs` (B, T, T), if given, the pairs of tokens that may attend to each other."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor] = None,
                pairs: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).unbind(2)
        attn_mask = None if valid is None else valid[:, None, None, :]
        if pairs is not None:
            attn_mask = pairs[:, None] if attn_mask is None else attn_mask & pairs[:, None]
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask
        )
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))

    def forward_packed(self, x: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """The same block on packed tokens (T, d): sample b's rows cu[b]:cu[b + 1] attend to
        each other only."""
        t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(t, 3, self.heads, d // self.heads).unbind(1)
        offsets = cu_seqlens.long()
        with warnings.catch_warnings():
            # The CPU math path of jagged attention builds strided nested tensors internally,
            # which warns that their (not our) API is a prototype.
            warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")
            # Jagged attention needs contiguous (T, heads, d) values.
            jagged = [torch.nested.nested_tensor_from_jagged(z.contiguous(), offsets=offsets)
                      .transpose(1, 2) for z in (q, k, v)]
            y = F.scaled_dot_product_attention(*jagged).transpose(1, 2).values()
        x = x + self.proj(y.reshape(t, d))
        return x + self.mlp(self.norm2(x))


class TinyMAE(nn.Module):
    """A small MAE: ViT encoder on visible tokens, light decoder with mask tokens.

    As in MAE, the input is standardized (``pixel_mean``, ``pixel_std``: the pretraining set's
    statistics, as MAE's data pipeline uses ImageNet's) and the patch embedding is initialized
    like a linear layer (Xavier-uniform on the flattened kernel) rather than with a
    convolution's default, so that each token's content is not drowned by the position
    embedding at the start of training. With ``freeze_patch_embed`` the patch embedding keeps
    that random start and only the blocks learn (MoCo v3's random patch projection)."""

    def __init__(
        self,
        image_size: int,
        in_channels: int = 1,
        patch_size: int = 8,
        ndim: int = 2,
        dim: int = 96,
        depth: int = 4,
        heads: int = 4,
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        decoder_heads: int = 4,
        token_layout: str = "packed",
        pixel_mean: float = 0.0,
        pixel_std: float = 1.0,
        freeze_patch_embed: bool = False,
    ):
        super().__init__()
        if not (math.isfinite(pixel_std) and pixel_std > 0) or not math.isfinite(pixel_mean):
            raise ValueError(f"pixel_mean={pixel_mean} must be finite and pixel_std={pixel_std} "
                             "finite and positive")
        if ndim not in (2, 3):
            raise ValueError(f"ndim={ndim} must be 2 or 3")
        if token_layout not in ("packed", "padded"):
            raise ValueError(f"token_layout={token_layout!r} must be 'packed' or 'padded'")
        self.token_layout = token_layout
        if image_size % patch_size:
            raise ValueError(f"patch_size={patch_size} must divide image_size={image_size}")
        self.ndim, self.patch_size, self.in_channels = ndim, patch_size, in_channels
        self.grid = (image_size // patch_size,) * ndim
        self.num_patches = math.prod(self.grid)
        self.register_buffer("pixel_mean", torch.tensor(float(pixel_mean)), False)
        self.register_buffer("pixel_std", torch.tensor(float(pixel_std)), False)
        self.patch_embed = _conv(ndim)(in_channels, dim, patch_size, stride=patch_size)
        self.register_buffer("pos", sincos_position_embedding(dim, self.grid)[None], False)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer(
            "decoder_pos", sincos_position_embedding(decoder_dim, self.grid)[None], False
        )
        self.decoder_blocks = nn.ModuleList(
            _Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size**ndim * in_channels)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)
        kernel = self.patch_embed.weight.data
        nn.init.xavier_uniform_(kernel.view(kernel.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        if freeze_patch_embed:
            self.patch_embed.requires_grad_(False)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.pixel_mean) / self.pixel_std
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos

    def features(self, images: torch.Tensor) -> List[torch.Tensor]:
        x = self._tokens(images)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return [x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *self.grid)]

    def forward(self, images: torch.Tensor, masks, norm_pix: bool = True) -> torch.Tensor:
        device = images.device
        tokens = self._tokens(images)
        num_masked = masks.num_masked.to(device)
        uniform = bool((num_masked == num_masked[0]).all())
        if uniform or self.token_layout == "padded":
            x = self._decoder_input_padded(tokens, masks, uniform)
        else:
            x = self._decoder_input_packed(tokens, masks)
        x = x + self.decoder_pos
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))
        return reconstruction_loss(
            pred, images, masks.mask.to(device), norm_pix, patch_size=self.patch_size
        )

    def _decoder_input_packed(self, tokens: torch.Tensor, masks) -> torch.Tensor:
        packed, cu_seqlens, _ = mwm.pack_visible_tokens(tokens, masks.ids_keep.to(tokens.device))
        for blk in self.blocks:
            packed = blk.forward_packed(packed, cu_seqlens)
        x = self.decoder_embed(self.norm(packed))
        return mwm.unpack_visible_tokens(x, cu_seqlens, masks.ids_restore.to(tokens.device),
                                         self.mask_token.to(x.dtype))

    def _decoder_input_padded(self, tokens: torch.Tensor, masks, uniform: bool) -> torch.Tensor:
        device = tokens.device
        n = self.num_patches
        num_keep = n - masks.num_masked.to(device=device, dtype=torch.long)
        width = int(num_keep.max())
        slot = torch.arange(width, device=device)[None]
        valid = slot < num_keep[:, None]  # variable-total policies pad ids_keep with -1
        ids_keep = torch.where(valid, masks.ids_keep.to(device)[:, :width].long(), 0)
        x = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
        for blk in self.blocks:
            x = blk(x, None if uniform else valid)
        x = self.decoder_embed(self.norm(x))
        # Canonical order is [visible..., masked...]; ids_restore puts each token back in place.
        shuffled = self.mask_token.to(x.dtype).expand(x.shape[0], n, -1).clone()
        shuffled[:, :width] = torch.where(valid[..., None], x, shuffled[:, :width])
        ids_restore = masks.ids_restore.to(device).long()
        return torch.gather(shuffled, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))
