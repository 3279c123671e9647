"""`mwm regions`: text prompts to heatmaps and ROI maps per image, with the user's local CLIP model
(M2IB or CLIP similarity) and optionally SAM; the subcommand of `mwm` (see mwm.cli)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

__all__ = ["add_regions_parser", "run_regions"]


_REGIONS_DOC = """Text prompts to heatmaps and ROI maps with a local CLIP-style model (M2IB).

Writes <id>.npz per image into --out with 'heatmap' (K, H, W) float32 in [0, 1], 'roi'
(K, H, W) uint8, 'region_map' (H, W) float32 (what TextGuidedMasker reads) and 'prompts'.
Existing outputs are skipped (rerun to resume); every file is written atomically. Then:

    mwm mask --images DIR --heatmaps OUT --regions roi --out MASKS

uses those ROI maps as they are (--regions mwm recomputes them from the heatmaps, without SAM).
"""


def add_regions_parser(commands) -> None:
    from .grounding import m2ib

    regions = commands.add_parser(
        "regions",
        help="text prompts to heatmaps and ROI maps (M2IB, optional SAM)",
        description=_REGIONS_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    regions.add_argument(
        "--images",
        required=True,
        type=Path,
        help="folder of .png/.jpg/.jpeg/.dcm/.nii/.nii.gz images (3D NIfTI: one item per slice)",
    )
    regions.add_argument(
        "--clip",
        required=True,
        type=Path,
        help="local folder of a transformers CLIPModel (with its tokenizer) or an open_clip "
        "model (open_clip_config.json + weights, as BiomedCLIP)",
    )
    regions.add_argument(
        "--sam", type=Path, help="local folder of a transformers SamModel + SamProcessor"
    )
    prompts = regions.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", action="append", help="a text prompt (repeat for several)")
    prompts.add_argument(
        "--prompt-bank", type=Path, help="prompt bank (.json/.yaml); needs --modality"
    )
    regions.add_argument("--modality", help="modality of the prompt bank")
    regions.add_argument("--preset", help="ratio preset of the prompt bank (default: the bank's)")
    regions.add_argument("--out", required=True, type=Path, help="output folder (created)")
    regions.add_argument(
        "--attribution",
        default="m2ib",
        choices=["m2ib", "similarity"],
        help="m2ib (the paper's) or similarity (CLIP patch-text cosine)",
    )
    regions.add_argument(
        "--threshold", type=float, help="heatmap threshold (default 0.3 or the bank's)"
    )
    regions.add_argument(
        "--components", type=int, help="largest components kept (default 2 or the bank's)"
    )
    regions.add_argument("--expand-ratio", type=float, help="box scale (default 1.0 or the bank's)")
    regions.add_argument(
        "--layer", type=int, default=m2ib.DEFAULT_LAYER, help="M2IB vision block (default 7)"
    )
    regions.add_argument(
        "--beta", type=float, default=m2ib.DEFAULT_BETA, help="M2IB beta (default 0.1)"
    )
    regions.add_argument(
        "--var", type=float, default=m2ib.DEFAULT_VAR, help="M2IB prior variance (default 1.0)"
    )
    regions.add_argument(
        "--steps", type=int, default=m2ib.DEFAULT_STEPS, help="M2IB Adam steps (default 10)"
    )
    regions.add_argument(
        "--lr", type=float, default=m2ib.DEFAULT_LR, help="M2IB learning rate (default 1)"
    )
    regions.add_argument(
        "--samples",
        type=int,
        default=m2ib.DEFAULT_SAMPLES,
        help="M2IB noise samples per step (default 10)",
    )
    regions.add_argument("--seed", type=int, default=0, help="M2IB noise seed (default 0)")
    regions.add_argument(
        "--batch-size", type=int, default=8, help="images per attribution batch (default 8)"
    )
    regions.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    regions.add_argument(
        "--on-error",
        default="continue",
        choices=["continue", "stop"],
        help="after a bad file: go on (exit status 1 at the end) or stop (default continue)",
    )
    regions.add_argument("--quiet", action="store_true", help="no progress bar")
    regions.set_defaults(run=run_regions)


def _regions_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a torch device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {name!r}: CUDA is not available here (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}); use --device cpu"
        )
    return device


def run_regions(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .grounding.image_io import ImageReadError, list_images, read_image
    from .grounding.loading import load_clip
    from .grounding.pipeline import TextRegionPipeline
    from .grounding.sam import SamBoxRefiner

    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.prompt_bank is None and (args.modality is not None or args.preset is not None):
        raise ValueError("--modality and --preset go with --prompt-bank")
    if args.prompt_bank is not None and args.modality is None:
        raise ValueError("--prompt-bank needs --modality")
    device = _regions_device(args.device)
    items = list_images(args.images)
    if not items:
        raise FileNotFoundError(
            f"no images (.png, .jpg, .jpeg, .dcm, .nii, .nii.gz) in {str(args.images)!r}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    pending = [item for item in items if not (args.out / f"{item.id}.npz").exists()]
    if not args.quiet and len(pending) < len(items):
        print(
            f"mwm regions: {len(items) - len(pending)} of {len(items)} already in {args.out}, "
            "skipped",
            file=sys.stderr,
        )
    if not pending:
        return 0

    clip = load_clip(args.clip, device)
    sam = SamBoxRefiner.from_pretrained(args.sam, device) if args.sam is not None else None
    pipeline = TextRegionPipeline(
        clip.model,
        clip.tokenizer,
        prompts=args.prompt,
        prompt_bank=args.prompt_bank,
        modality=args.modality,
        preset=args.preset,
        attribution=args.attribution,
        sam=sam,
        threshold=args.threshold,
        num_components=args.components,
        expand_ratio=args.expand_ratio,
        mean=clip.mean,
        std=clip.std,
        m2ib=dict(
            layer=args.layer,
            beta=args.beta,
            var=args.var,
            steps=args.steps,
            lr=args.lr,
            samples=args.samples,
            seed=args.seed,
        ),
    )
    texts = (
        list(pipeline.bank_prompts.texts)
        if pipeline.bank_prompts is not None
        else list(args.prompt)
    )

    failures: List[str] = []
    written = 0
    progress = tqdm(
        total=len(pending), desc="mwm regions", unit="image", disable=args.quiet, file=sys.stderr
    )

    def fail(item, exc) -> bool:
        message = str(exc) if str(item.path) in str(exc) else f"{item.path}: {exc}"
        failures.append(message)
        progress.write(f"mwm regions: error: {message}", file=sys.stderr)
        return args.on_error == "stop"

    stop = False
    for start in range(0, len(pending), args.batch_size):
        batch, images = [], []
        for item in pending[start : start + args.batch_size]:
            try:
                images.append(read_image(item))
                batch.append(item)
            except (ImageReadError, ValueError, OSError) as exc:
                progress.update(1)
                if fail(item, exc):
                    stop = True
                    break
        if stop:
            break
        for item, result, index in _attribute(pipeline, batch, images, fail):
            if result is None:
                progress.update(1)
                if args.on_error == "stop":
                    stop = True
                    break
                continue
            try:
                _write_regions(args.out / f"{item.id}.npz", result, index, texts)
                written += 1
            except OSError as exc:
                if fail(item, exc):
                    stop = True
                    break
            finally:
                progress.update(1)
        if stop:
            break
    progress.close()
    if stop:
        print(
            f"mwm regions: stopped after {written} written; outputs so far are in {args.out}",
            file=sys.stderr,
        )
        return 1
    if not args.quiet:
        print(
            f"mwm regions: wrote {written} of {len(pending)} region maps to {args.out}",
            file=sys.stderr,
        )
    if failures:
        print(f"mwm regions: {len(failures)} image(s) failed", file=sys.stderr)
        return 1
    return 0


def _attribute(pipeline, batch, images, fail):
    """(item, result, index) per item; a batch that fails is retried image by image so that
    only the image at fault is reported (its result is None)."""
    if not batch:
        return []
    try:
        result = pipeline(images)
        return [(item, result, i) for i, item in enumerate(batch)]
    except (ValueError, RuntimeError) as exc:
        if len(batch) == 1:
            fail(batch[0], exc)
            return [(batch[0], None, 0)]
    out = []
    for item, image in zip(batch, images):
        try:
            out.append((item, pipeline([image]), 0))
        except (ValueError, RuntimeError) as exc:
            fail(item, exc)
            out.append((item, None, 0))
    return out


def _write_regions(target: Path, result, index: int, texts: Sequence[str]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        heatmap=result.heatmaps[index].numpy().astype(np.float32),
        roi=result.roi_maps[index].numpy().astype(np.uint8),
        region_map=result.region_maps[index].numpy().astype(np.float32),
        prompts=np.asarray(texts, dtype=str),
    )
    from .cli import _atomic_write

    _atomic_write(target, buffer.getvalue())
