"""SparK: text-guided active maps for ``SparK.forward(inp, active_b1ff=...)``.

SparK masks on the coarsest feature grid (7x7 for 224 px and a /32 CNN) and repeats the map to
every scale of its sparse encoder. Here a plain conv net stands in for SparK's sparse encoder:
each stage zeroes the masked positions with the active map of its scale.

    python examples/spark_active_masks.py
"""

import torch
import torch.nn as nn

import mwm
from mwm.integrations import spark_active_masks


def main() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 1, 224, 224)
    heatmaps = torch.zeros(2, 224, 224)
    heatmaps[:, 96:160, 64:128] = 1.0
    masker = mwm.TextGuidedMasker.from_preset((7, 7), "default", seed=0)  # (0.8, 0.4)
    result = masker(heatmaps)
    active_b1ff = spark_active_masks(result)                       # (B, 1, 7, 7)
    pyramid = spark_active_masks(result, scales=[16, 8, 4, 2, 1])  # 112, 56, 28, 14, 7
    stages = nn.ModuleList(nn.Conv2d(1 if i == 0 else 8, 8, 3, stride=2, padding=1)
                           for i in range(5))
    x = images * result.pixel_mask(32).logical_not()
    for stage, active in zip(stages, pyramid):
        x = stage(x) * active
    print(f"active_b1ff {tuple(active_b1ff.shape)}, visible per image "
          f"{active_b1ff.flatten(1).sum(1).tolist()} of 49; pyramid "
          f"{[tuple(a.shape[-2:]) for a in pyramid]}; encoder output {tuple(x.shape)}")


if __name__ == "__main__":
    main()
