"""HF transformers ViTMAE: pass mwm's noise so the model keeps exactly mwm's visible patches.

A tiny randomly initialized ViTMAE stands in for ``ViTMAEForPreTraining.from_pretrained(...)``.

    python examples/hf_vitmae_noise.py
"""

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

import mwm
from mwm.integrations import vitmae_noise


def main() -> None:
    torch.manual_seed(0)
    config = ViTMAEConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=128, decoder_hidden_size=32,
                          decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                          decoder_intermediate_size=64, image_size=64, patch_size=8,
                          mask_ratio=0.5)
    model = ViTMAEForPreTraining(config)
    pixels = torch.randn(2, 3, 64, 64)
    heatmaps = torch.zeros(2, 64, 64)
    heatmaps[:, 8:40, 16:48] = 1.0

    masker = mwm.TextGuidedMasker((8, 8), policy="fixed_total", ratio=config.mask_ratio,
                                  region_ratios=(0.4, 0.8), seed=1)
    result = masker(heatmaps)
    out = model(pixel_values=pixels, noise=vitmae_noise(result, config.mask_ratio))
    same = torch.equal(out.mask.bool(), result.mask)
    print(f"loss {out.loss.item():.4f}; ViTMAE's mask equals mwm's: {same}")
    assert same


if __name__ == "__main__":
    main()
