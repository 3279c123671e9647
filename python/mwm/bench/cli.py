"""`mwm-bench`: the benchmark command line.

Subcommands:
  ratios  text-guided vs random masking ratios -> downstream accuracy (see mwm.bench.ratios)
  speed   kernel and loss timings; lives in mwm.bench.speed, imported only when asked for, and
          receives its arguments untouched through ``mwm.bench.speed.main(argv) -> int``

Run it as ``mwm-bench ...`` (installed entry point) or ``python -m mwm.bench ...``, and under
``torchrun --nproc_per_node=2 -m mwm.bench ratios ...`` for DDP.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the workers), all threads."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return None


def _int_list(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _name_list(text: str) -> tuple:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def _add_ratios_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="the short setting (~5 min on 2 CPU cores); same as --preset quick")
    p.add_argument("--preset", choices=("micro", "quick", "full"), default=None,
                   help="micro: seconds, for tests; quick; full (default)")
    p.add_argument("--out", type=Path, default=Path("mwm-out/ratios"),
                   help="output folder (default: ./mwm-out/ratios)")
    p.add_argument("--seeds", type=_int_list, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--configs", type=_name_list,
                   help="comma-separated masking configs: none, random-R, mwm-H/L, fixed-R, "
                        "weighted-R (default: all of them)")
    p.add_argument("--data", choices=("builtin", "folder", "medmnist"), default="builtin",
                   help="built-in phantoms, --folder with your images, or MedMNIST .npz files "
                        "you have (--root, --flag)")
    p.add_argument("--folder", help="folder with labels.csv, images and heatmaps/*.npy")
    p.add_argument("--root", help="MedMNIST: the folder holding <flag>.npz / <flag>_<size>.npz")
    p.add_argument("--flag", help="MedMNIST: the 2D data set, e.g. pneumoniamnist, chestmnist")
    p.add_argument("--medmnist-size", type=int, choices=(28, 64, 128, 224),
                   help="MedMNIST: which file to read (default 28); images are resized to "
                        "--image-size")
    p.add_argument("--heatmap-folder",
                   help="MedMNIST: heatmaps <split>_<index>.npy (default: the CLIP pipeline on "
                        "a random model)")
    p.add_argument("--heatmaps", choices=("sim", "gt", "noisy", "clip"),
                   help="phantoms: simulated grounding (default), error-free boxes, boxes "
                        "blended with noise (--heatmap-quality), or CLIP on a random model")
    p.add_argument("--heatmap-quality", type=float,
                   help="--heatmaps noisy: share of the boxes in [0, 1] (default 0.5)")
    p.add_argument("--datasets", type=_name_list, help="phantom kinds: brain, chest, brain3d")
    p.add_argument("--models", type=_name_list, help="cnn (SparK-style), mae (ViT)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--epochs", type=int, help="override the preset's pretraining epochs")
    p.add_argument("--pretrain-samples", type=int, help="override the pretraining set size")
    p.add_argument("--batch-size", type=int, help="global pretraining batch size")
    p.add_argument("--image-size", type=int, help="2D image side (pixels)")
    p.add_argument("--jitter", type=float, help="simulated grounding: box jitter")
    p.add_argument("--miss-rate", type=float, help="simulated grounding: share of missed boxes")
    p.add_argument("--fp-rate", type=float, help="simulated grounding: false positives per image")
    p.add_argument("--threads", type=int,
                   help="torch threads per process (default: 1 with several workers)")
    p.add_argument("--workers", type=int,
                   help="runs side by side in this many processes (default: 2 on a CPU with at "
                        "least 2 cores, 1 on a GPU or under torchrun)")
    p.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--record-masks", type=Path,
                   help="also save every pretraining mask keyed by global sample index (.pt)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mwm-bench", description="mwm benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    ratios = sub.add_parser(
        "ratios",
        help="text-guided masking at low ratios vs random masking at high ratios",
        description="Pretrain small SparK-style CNNs / MAE ViTs with random and text-guided "
                    "masks, probe the frozen encoders, and report accuracy and Dice against the "
                    "measured masking ratio.",
    )
    _add_ratios_arguments(ratios)
    sub.add_parser("speed", help="timings of mwm ops against references", add_help=False)
    return parser


def _settings_from_args(args):
    from .ratios import preset

    name = args.preset or ("quick" if args.quick else "full")
    if args.quick and args.preset not in (None, "quick"):
        raise SystemExit(f"mwm-bench ratios: --quick contradicts --preset {args.preset}")
    overrides = {
        "seeds": args.seeds, "configs": args.configs, "datasets": args.datasets,
        "models": args.models, "epochs": args.epochs, "pretrain_samples": args.pretrain_samples,
        "batch_size": args.batch_size, "image_size": args.image_size, "jitter": args.jitter,
        "miss_rate": args.miss_rate, "fp_rate": args.fp_rate, "folder": args.folder,
        "root": args.root, "flag": args.flag, "medmnist_size": args.medmnist_size,
        "heatmap_folder": args.heatmap_folder, "heatmaps": args.heatmaps,
        "heatmap_quality": args.heatmap_quality,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    overrides["data"] = args.data
    return name, preset(name, **overrides)


def run_ratios_command(args, argv: Sequence[str]) -> int:
    import torch

    from . import distributed as bdist
    from .ratios import run_ratios, validate_settings
    from .report import print_comparisons, print_table, write_results

    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"mwm-bench ratios: --threads={args.threads} must be at least 1")
    try:
        name, settings = _settings_from_args(args)
        ctx = bdist.init_from_env(args.device)
        validate_settings(settings, ctx.world_size)
        workers = args.workers
        if workers is None:
            on_cpu = not ctx.distributed and ctx.device.type == "cpu"
            workers = min(2, os.cpu_count() or 1) if on_cpu else 1
        if workers < 1:
            raise ValueError(f"--workers={workers} must be at least 1")
        if workers > 1 and ctx.distributed:
            raise ValueError(f"--workers={workers} cannot be combined with torchrun")
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"mwm-bench ratios: {exc}") from None
    threads = args.threads if args.threads is not None else 1
    if workers == 1 and args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        started = time.perf_counter()
        cpu_started = _cpu_seconds()
        doc = run_ratios(settings, ctx, progress=not args.no_progress,
                         record_masks=args.record_masks is not None, workers=workers,
                         worker_threads=threads)
        if ctx.is_main:
            command = "mwm-bench " + " ".join(shlex.quote(a) for a in argv)
            doc["elapsed_seconds"] = time.perf_counter() - started
            doc["cpu_seconds"] = _cpu_seconds() - cpu_started
            doc["load_average"] = _load_average()
            print_table(doc["summary"], plain=args.plain,
                        title=f"mwm-bench ratios ({name}): {doc['elapsed_seconds']:.0f} s wall, "
                              f"{doc['cpu_seconds']:.0f} s CPU, {ctx.world_size} process(es), "
                              f"{workers} worker(s), load average "
                              f"{' '.join(f'{v:.1f}' for v in doc['load_average'] or [])}")
            print_comparisons(doc["comparisons"], doc["learning"], plain=args.plain)
            paths = write_results(doc, args.out, command)
            if args.record_masks is not None:
                args.record_masks.parent.mkdir(parents=True, exist_ok=True)
                torch.save(doc["masks"], args.record_masks)
                paths["masks"] = args.record_masks
            for what, path in paths.items():
                print(f"{what:>16}: {path}")
    finally:
        bdist.shutdown(ctx)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "speed":
        from . import speed  # another module's subcommand; imported only when used

        return int(speed.main(rest) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return run_ratios_command(args, argv)


if __name__ == "__main__":
    sys.exit(main())
