"""lightly: text-guided ``idx_keep`` / ``idx_mask`` in place of ``utils.random_token_mask``.

lightly's MAE (``lightly.models.modules.MAEEncoder`` / ``MaskedVisionTransformer*``) works on
token sequences whose token 0 is the class token: ``idx_keep`` always holds 0 and patch ``n`` is
token ``n + 1``. ``lightly_token_indices`` returns mwm's masks in that form. A tiny plain-torch
encoder/decoder stands in for lightly's here (lightly itself is not needed to run this); the
gather/scatter helpers mirror what lightly's ``utils.get_at_index`` / ``set_at_index`` do.

    python examples/lightly_mae_tokens.py
"""

import torch
import torch.nn as nn

import mwm
from mwm.integrations import lightly_token_indices


def get_at_index(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tokens (B, T, C), index (B, K) -> (B, K, C)."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def set_at_index(tokens: torch.Tensor, index: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """A copy of tokens (B, T, C) with rows ``index`` (B, K) replaced by value (B, K, C)."""
    return tokens.scatter(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]), value)


def main() -> None:
    torch.manual_seed(0)
    batch, grid, patch, dim = 4, (7, 7), 32, 48
    images = torch.randn(batch, 3, 224, 224)
    heatmaps = torch.zeros(batch, 224, 224)
    heatmaps[:, 32:128, 64:160] = 1.0  # what the grounding model found

    masker = mwm.TextGuidedMasker(grid, policy="fixed_total", ratio=0.75,
                                  region_ratios=(0.4, 0.9), seed=0)
    result = masker(heatmaps)
    idx_keep, idx_mask = lightly_token_indices(result)  # (B, 1 + K), (B, N - K), cls token = 0

    embed = nn.Linear(3 * patch * patch, dim)
    cls_token = nn.Parameter(torch.zeros(1, 1, dim))
    mask_token = nn.Parameter(torch.zeros(1, 1, dim))
    encoder = nn.TransformerEncoderLayer(dim, 4, 96, batch_first=True)
    decoder = nn.Linear(dim, 3 * patch * patch)

    # Patches in MAE/lightly order: (B, N, p*p*C), channel fastest.
    patches = images.unfold(2, patch, patch).unfold(3, patch, patch)  # (B, C, 7, 7, p, p)
    patches = patches.permute(0, 2, 3, 4, 5, 1).reshape(batch, 49, -1)
    tokens = torch.cat([cls_token.expand(batch, -1, -1), embed(patches)], 1)  # (B, 1 + N, dim)
    encoded = encoder(get_at_index(tokens, idx_keep))  # the visible tokens only
    # Decoder input: every position, mask tokens at idx_mask, encoded tokens at idx_keep.
    full = mask_token.expand(batch, 1 + 49, -1)
    full = set_at_index(full, idx_keep, encoded)
    prediction = get_at_index(decoder(full), idx_mask)       # predictions of the masked patches
    target = get_at_index(patches, idx_mask - 1)            # patch n is token n + 1
    loss = nn.functional.mse_loss(prediction, target)
    loss.backward()

    assert bool((idx_keep[:, 0] == 0).all())
    assert torch.equal(torch.cat([idx_keep, idx_mask], 1).sort(1).values,
                       torch.arange(50).expand(batch, -1))
    roi = mwm.heatmap_to_patch_scores(heatmaps, grid) > 0.5
    print(f"idx_keep {tuple(idx_keep.shape)} (class token + {idx_keep.shape[1] - 1} patches), "
          f"idx_mask {tuple(idx_mask.shape)}; masked share in the ROI "
          f"{result.mask[roi].float().mean():.2f}, outside {result.mask[~roi].float().mean():.2f}; "
          f"loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
