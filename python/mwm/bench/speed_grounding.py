"""`mwm-bench speed` grounding rows: batched M2IB against a per-image loop of the same maths.

Both sides call `mwm.grounding.m2ib_heatmaps` with the reference's defaults (10 Adam steps,
10 noise samples per step, beta 0.1, var 1.0) on a small randomly initialized transformers
CLIPModel: the batched side attributes B=16 images in one optimization, the loop side one
image per call, as the reference code does. The maps of the two sides are compared (each pair's
bottleneck is independent, so they agree to float tolerance) and the row reports images per
second of each side. Target (issue 14): batched >= 4x faster at B=16 on 2 CPU threads, so on
the CPU this section runs at 2 threads whatever --threads says, and restores the setting.

`args.grounding_batch` replaces B=16 (the target is judged at B=16 only). Two models: "tiny"
(32 px, patch 8, width 32, 3 blocks: per-call overhead dominates, the setting of the target)
and, without --quick, "small" (64 px, patch 8, width 64, 4 blocks), where more of the time is
arithmetic that batching does not remove on a CPU. Medians of 3 (--quick) or 5 calls per side
after one warm-up call, whatever --repeats says (`args.grounding_repeats` / `grounding_warmup`
override them).
"""

from __future__ import annotations

from typing import Dict, List

import torch

from ..grounding.torchvision_compat import ensure_torchvision_importable
from .timing import median_time

BATCH = 16
TARGET_SPEEDUP = 4.0
CPU_THREADS = 2
QUICK_REPEATS, FULL_REPEATS = 3, 5

MODELS = {
    # name: (image side, patch, width, blocks, bottleneck block)
    "tiny": (32, 8, 32, 3, 1),
    "small": (64, 8, 64, 4, 2),
}


def _clip_classes():
    """transformers' CLIPModel, importable next to a torchvision built for another torch."""
    ensure_torchvision_importable()
    from transformers import CLIPConfig, CLIPModel

    return CLIPConfig, CLIPModel


def random_clip(name: str, seed: int, device: torch.device):
    CLIPConfig, CLIPModel = _clip_classes()
    side, patch, width, blocks, _ = MODELS[name]
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=100,
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            eos_token_id=99,
            bos_token_id=98,
            pad_token_id=0,
        ),
        vision_config=dict(
            image_size=side,
            patch_size=patch,
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=blocks,
            num_attention_heads=4,
        ),
        projection_dim=width // 2,
    )
    return CLIPModel(config).to(device).eval()


def run_grounding_benchmarks(args) -> List[Dict[str, object]]:
    from ..grounding.m2ib import encode_prompts, m2ib_heatmaps

    quick = bool(getattr(args, "quick", False))
    device = getattr(args, "device", None) or torch.device("cpu")
    device = torch.device(device)
    # Own repetition counts: one M2IB call takes seconds, the masking rows' 30 would take minutes.
    repeats = int(
        getattr(args, "grounding_repeats", None) or (QUICK_REPEATS if quick else FULL_REPEATS)
    )
    batch = int(getattr(args, "grounding_batch", None) or BATCH)
    warmup = 1 if getattr(args, "grounding_warmup", None) is None else int(args.grounding_warmup)
    seed = int(getattr(args, "seed", 0) or 0)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(CPU_THREADS)
    rows: List[Dict[str, object]] = []
    try:
        threads = torch.get_num_threads()
        for name in ("tiny",) if quick else ("tiny", "small"):
            side, patch, width, blocks, layer = MODELS[name]
            model = random_clip(name, seed, device)
            generator = torch.Generator().manual_seed(seed)
            images = torch.randn(batch, 3, side, side, generator=generator).to(device)
            ids = torch.tensor([[98, 10, 20, 30, 99]], device=device)
            text = encode_prompts(model, ids)

            def batched():
                return m2ib_heatmaps(model, images, text_embeddings=text, layer=layer, seed=seed)

            def per_image():
                return torch.cat(
                    [
                        m2ib_heatmaps(
                            model, images[b : b + 1], text_embeddings=text, layer=layer, seed=seed
                        )
                        for b in range(batch)
                    ]
                )

            difference = float((batched() - per_image()).abs().max())
            ours = median_time(batched, repeats=repeats, warmup=warmup, device=device)
            loop = median_time(per_image, repeats=repeats, warmup=warmup, device=device)
            speedup = loop.median_s / ours.median_s
            row = {
                "section": "grounding",
                "case": f"M2IB, {name} random CLIP",
                "size": f"B={batch} {side}px patch {patch} width {width} blocks {blocks}",
                "ours": "mwm.grounding.m2ib_heatmaps (batched)",
                "reference": "per-image loop",
                "ours_ms": ours.median_ms,
                "reference_ms": loop.median_ms,
                "ratio": ours.median_s / loop.median_s,
                "speedup": speedup,
                "ours_images_per_s": batch / ours.median_s,
                "reference_images_per_s": batch / loop.median_s,
                "max_map_difference": difference,
                "repeats": repeats,
                "threads": threads,
                "device": str(device),
            }
            if name == "tiny" and batch == BATCH:
                row["target"] = f">= {TARGET_SPEEDUP:.0f}x at B={BATCH}, {CPU_THREADS} CPU threads"
                row["met"] = speedup >= TARGET_SPEEDUP and (
                    device.type != "cpu" or threads == CPU_THREADS
                )
            rows.append(row)
            print(
                f"grounding ({name}): batched {row['ours_images_per_s']:.1f} images/s, "
                f"per-image loop {row['reference_images_per_s']:.1f} images/s: "
                f"{speedup:.1f}x at {threads} threads "
                f"on {device}; max map difference {difference:.2g}"
                + (
                    f"; target {row['target']}: {'met' if row['met'] else 'NOT met'}"
                    if "met" in row
                    else ""
                )
            )
    finally:
        torch.set_num_threads(previous_threads)
    return rows
