"""Draws docs/images/overlay.png: a procedural brain-MRI phantom, a text-grounding heatmap for
"a brain tumor", the MWM region map on the patch grid and the resulting mask.

Row 1: the paper's setting, one prompt, 7x7 grid (224 px, SparK), ROI 80% / background 40%.
Row 2: a three-region prompt bank (tumor 0.8, brain tissue 0.5, background 0.2) on a 14x14 grid.

Run: PYTHONPATH=python python examples/make_overlay_picture.py [--out docs/images/overlay.png]
"""

import argparse
from pathlib import Path

import numpy as np
import torch

import mwm
from mwm.grounding import (
    bank_region_map,
    load_prompt_bank,
    masker_kwargs_from_prompt_bank,
    mwm_region_map,
)
from mwm.viz import overlay_figure

SIZE = 224
ROOT = Path(__file__).resolve().parents[1]


def phantom(rng: np.random.Generator) -> np.ndarray:
    """An axial 'brain MRI' slice: skull ring, brain ellipse with soft texture, a bright tumor."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    cy, cx = SIZE / 2, SIZE / 2
    head = ((y - cy) / 96) ** 2 + ((x - cx) / 80) ** 2
    brain = ((y - cy) / 86) ** 2 + ((x - cx) / 70) ** 2
    image = np.zeros((SIZE, SIZE))
    image[head <= 1] = 0.85  # skull
    image[brain <= 1] = 0.45
    ventricles = ((y - cy) / 22) ** 2 + ((x - cx - 10 * np.sign(x - cx)) / 6) ** 2 <= 1
    image[ventricles & (brain <= 1)] = 0.2
    texture = rng.normal(0, 1, (SIZE, SIZE))
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.5) ** 2)
    kernel /= kernel.sum()
    texture = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 0, texture)
    texture = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 1, texture)
    image[brain <= 1] += 0.04 * texture[brain <= 1] / texture.std()
    tumor = np.sqrt(((y - 80) / 20) ** 2 + ((x - 142) / 17) ** 2)
    image += 0.5 / (1.0 + np.exp((tumor - 1.0) * 10.0)) * (brain <= 1)
    return np.clip(image + rng.normal(0, 0.015, image.shape), 0, 1)


def grounding_heatmaps() -> np.ndarray:
    """What a vision-language model might return: a peak on the tumor, a weaker false positive,
    and a broad 'brain tissue' map for the second prompt."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    tumor = np.exp(-(((y - 80) / 26) ** 2 + ((x - 142) / 24) ** 2))
    spurious = 0.45 * np.exp(-(((y - 165) / 12) ** 2 + ((x - 75) / 12) ** 2))
    tissue = np.exp(-((((y - SIZE / 2) / 88) ** 2 + ((x - SIZE / 2) / 72) ** 2) ** 4))
    return np.stack([np.clip(tumor + spurious, 0, 1), 0.9 * tissue]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "overlay.png"))
    args = parser.parse_args()

    image = phantom(np.random.default_rng(0))
    heat = torch.from_numpy(grounding_heatmaps())

    # Row 1: one prompt, the reference pipeline, 7x7 grid, the paper's default preset.
    roi = mwm_region_map(heat[None, 0], threshold=0.3, num_components=2, grid=(7, 7))
    masker = mwm.TextGuidedMasker.from_preset((7, 7), "default", seed=0)
    mask7 = masker(roi.float()).mask[0]

    # Row 2: tumor + brain tissue + background from the example YAML bank, 14x14 grid.
    bank = load_prompt_bank(ROOT / "examples" / "prompt_banks" / "brain_mri_levels.yaml")
    levels = bank_region_map(heat[None], bank.modality("brain_mri"), grid=(14, 14))
    masker14 = mwm.TextGuidedMasker(grid=(14, 14), seed=0,
                                    **masker_kwargs_from_prompt_bank(bank, "brain_mri"))
    mask14 = masker14(levels).mask[0]

    overlay_figure(
        [image, image],
        heatmaps=[heat[0], heat[0]],
        region_maps=[roi[0], levels[0]],
        masks=[mask7, mask14],
        grid=[(7, 7), (14, 14)],
        row_titles=[
            f"7x7, ROI 0.8 / bg 0.4: {int(mask7.sum())}/49 masked",
            f"14x14, 0.8 / 0.5 / 0.2: {int(mask14.sum())}/196",
        ],
        column_titles=["phantom", "heatmap: 'a brain tumor'", "MWM region map",
                       "mask (gray = masked)"],
        path=args.out,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
