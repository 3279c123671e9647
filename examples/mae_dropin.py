"""MAE drop-in: replace MaskedAutoencoderViT.random_masking with text-guided masks.

MAE's encoder calls ``self.random_masking(x, mask_ratio)`` and expects ``(x_masked, mask,
ids_restore)``. mwm's ``random_masking`` has that contract and takes the heatmaps of the batch;
here a tiny stand-in encoder shows the call (a real MAE model works the same way).

    python examples/mae_dropin.py
"""

import torch

import mwm
from mwm.integrations import random_masking


def main() -> None:
    torch.manual_seed(0)
    batch, grid, dim = 4, (14, 14), 32
    tokens = torch.randn(batch, 196, dim)       # patch embeddings + positions, as in MAE
    heatmaps = torch.zeros(batch, 224, 224)
    heatmaps[:, 64:128, 80:160] = 1.0            # what the grounding model found ("tumor")

    masker = mwm.TextGuidedMasker(grid, policy="fixed_total", ratio=0.6,
                                  region_ratios=(0.4, 0.8), seed=0)
    x_masked, mask, ids_restore = random_masking(tokens, 0.6, heatmaps=heatmaps, masker=masker)
    roi = mwm.heatmap_to_patch_scores(heatmaps, grid) > 0.5
    print(f"visible tokens per sample: {x_masked.shape[1]} of {tokens.shape[1]}")
    print(f"masked share inside the ROI: {mask[roi].mean():.2f}, outside: {mask[~roi].mean():.2f}")
    restored = torch.gather(torch.cat([x_masked,
                                       torch.zeros(batch, 196 - x_masked.shape[1], dim)], 1),
                            1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))
    assert torch.equal(restored[mask == 0], tokens[mask == 0])
    print("ids_restore puts every visible token back in place")


if __name__ == "__main__":
    main()
