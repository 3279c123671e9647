"""`mwm-bench speed`: mwm's ops against the code they replace, measured in the same run.

Masking rows compare ``mwm.generate_masks`` with the reference re-implementations in
mwm.bench.references (MAE, SparK, the Mask What Matters per-sample loop, HPM / AnatoMask, BEiT v2,
SimMIM) at docs/design.md's sizes: B=256 on 14x14 (ViT-B/16 at 224 px), B=128 on 7x7 (SparK at
224 px), B=8 on 8x8x8 (3D, 128^3 at patch 16). Text-guided rows run the whole path, heatmaps to
patch scores to regions to masks, against the reference's threshold + resize + loop. Loss and
CORAL rows come from mwm.bench.speed_loss / mwm.bench.speed_coral.

Every row reports medians after a warm-up, ``ratio = mwm / reference`` (below 1: mwm is faster),
the peak memory growth of each side, and whether both sides mask the same number of patches.

The loss / CORAL hooks are called as ``run_loss_benchmarks(args)`` / ``run_coral_benchmarks(args)``
and return lists of row dicts (keys: see mwm.bench.timing). ``args`` carries ``quick``,
``repeats``, ``warmup``, ``seed``, ``device`` (a torch.device), ``threads``, ``no_compile``
(True under --quick unless --compile) and ``copy_bandwidth`` (measured bytes/s, for their
bandwidth share). Rows in another format are printed in a table of their own.

On a shared or oversubscribed machine libgomp's default spinning makes every parallel region
cost milliseconds; measure with ``OMP_WAIT_POLICY=PASSIVE`` or ``--threads 1`` there (the
environment is printed with the machine).

The targets the rows are judged by live in mwm.bench.speed_targets, the tables and the generated
section of docs/speed.md in mwm.bench.speed_report.

Run: ``mwm-bench speed [--quick] [--out mwm-out/speed.json]`` or ``python -m mwm.bench.speed``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from . import references as ref
from .speed_report import markdown_table, print_report, targets_text, write_doc_section
from .speed_targets import evaluate_targets
from .timing import (
    bandwidth_share,
    copy_bandwidth,
    load_averages,
    machine_info,
    median_time,
    run_with_peak_memory,
    to_mib,
)

DEFAULT_OUT = Path("mwm-out/speed.json")
SECTIONS = ("masking", "text", "pooling", "cost", "loss", "coral", "grounding")
DEFAULT_THREADS = (1, 2)
MWM_RATIOS = (0.4, 0.8)  # (background, ROI): the MWM paper's default preset
SALIENCY_THRESHOLD = 0.3  # the MWM reference's saliency threshold
MAE_RATIO = 0.75
SPARK_RATIO = 0.6
BEIT_RATIO = 0.4  # BEiT v2: 75-78 of 196 patches
SIMMIM_RATIO = 0.6
HARD_SHARE = 0.5  # HPM: half of the masked budget by predicted loss


@dataclass(frozen=True)
class Size:
    name: str
    batch: int
    grid: tuple
    image: tuple  # heatmap resolution (pixels)
    what: str

    @property
    def label(self) -> str:
        return f"B={self.batch} {'x'.join(map(str, self.grid))}"

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid)


FULL_SIZES = (
    Size("vit", 256, (14, 14), (224, 224), "ViT-B/16 at 224 px"),
    Size("spark", 128, (7, 7), (224, 224), "SparK at 224 px"),
    Size("3d", 8, (8, 8, 8), (128, 128, 128), "3D 128^3, patch 16"),
)
# --quick keeps every batch and grid but halves the heatmap side of the text-guided rows.
QUICK_SIZES = tuple(Size(s.name, s.batch, s.grid, tuple(p // 2 for p in s.image), s.what)
                    for s in FULL_SIZES)
QUICK_REPEATS, QUICK_WARMUP = 3, 1
FULL_REPEATS, FULL_WARMUP = 30, 3


@dataclass
class Case:
    """One row: two callables doing the same job, and how to read masked counts from each."""

    section: str
    name: str
    size: Size
    ours_label: str
    reference_label: str
    ours: Callable[[], object]
    reference: Callable[[], object]
    ours_counts: Callable[[object], torch.Tensor]
    reference_counts: Callable[[object], torch.Tensor]
    counts_comparable: bool = True
    note: str = ""
    bytes_moved: Optional[int] = None  # bytes an ideal implementation reads and writes


class _OffsetCounter:
    """Advances mwm's sample offset per call, as a trainer does."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.offset = 0

    def next(self) -> int:
        start = self.offset
        self.offset += self.batch
        return start


def synthetic_heatmaps(size: Size, seed: int, device: torch.device) -> torch.Tensor:
    """One Gaussian blob per sample in [0, 1], ``(B, *image)``: a stand-in for saliency maps (the
    speed of the path does not depend on what they show)."""
    gen = torch.Generator().manual_seed(seed)
    ndim = len(size.image)
    centers = 0.25 + 0.5 * torch.rand(size.batch, ndim, generator=gen)
    radii = 0.12 + 0.12 * torch.rand(size.batch, generator=gen)
    axes = [(torch.arange(s, dtype=torch.float32) + 0.5) / s for s in size.image]
    dist2 = torch.zeros(size.batch, *size.image)
    per_sample = [size.batch] + [1] * ndim
    for axis, coords in enumerate(axes):
        along_axis = [1] * (ndim + 1)
        along_axis[axis + 1] = size.image[axis]
        dist2 += (coords.view(along_axis) - centers[:, axis].view(per_sample)) ** 2
    return torch.exp(-dist2 / radii.view(per_sample) ** 2).to(device)


def _mwm_counts(result) -> torch.Tensor:
    return result.num_masked.cpu().to(torch.int64)


def masking_cases(size: Size, seed: int, device: torch.device) -> List[Case]:
    import mwm

    b, grid, n = size.batch, size.grid, size.num_patches
    gen = torch.Generator().manual_seed(seed)
    heat = synthetic_heatmaps(size, seed, device)
    scores = mwm.heatmap_to_patch_scores(heat, grid, reduction="nearest")
    regions = mwm.regions_from_thresholds(scores, [SALIENCY_THRESHOLD])
    region_map = regions.view(b, *grid)
    loss_pred = torch.rand(b, n, generator=gen).to(device)
    offsets = _OffsetCounter(b)
    low, high = MWM_RATIOS
    cases = [
        Case("masking", "random (MAE)", size, f"generate_masks(random, r={MAE_RATIO})",
             "MAE random_masking",
             lambda: mwm.generate_masks(grid, b, policy="random", ratio=MAE_RATIO, seed=seed,
                                        offset=offsets.next(), device=device),
             lambda: ref.mae_random_masking(b, n, MAE_RATIO, generator=gen, device=device),
             _mwm_counts, lambda out: ref.masked_counts(out[0].cpu())),
        Case("masking", "per_region (MWM)", size,
             f"generate_masks(per_region, {low}/{high})", "MWM per-sample loop",
             lambda: mwm.generate_masks(grid, policy="per_region", region_ratios=MWM_RATIOS,
                                        regions=regions, seed=seed, offset=offsets.next()),
             lambda: ref.mwm_reference_masking(region_map, grid, high, low, generator=gen),
             _mwm_counts, lambda out: ref.masked_counts(out.cpu(), active=True)),
        Case("masking", "loss_guided (HPM)", size,
             f"generate_masks(loss_guided, r={MAE_RATIO})", "HPM/AnatoMask numpy loop",
             lambda: mwm.generate_masks(grid, policy="loss_guided", ratio=MAE_RATIO,
                                        hard_share=HARD_SHARE, scores=loss_pred, seed=seed,
                                        offset=offsets.next()),
             lambda: ref.hpm_loss_guided_masking(loss_pred, MAE_RATIO, HARD_SHARE,
                                                 rng=np.random.default_rng(seed)),
             _mwm_counts, lambda out: ref.masked_counts(out[0].cpu())),
    ]
    if size.name == "spark":
        cases.insert(1, Case(
            "masking", "random (SparK)", size, f"generate_masks(random, r={SPARK_RATIO}, round)",
            "SparK mask",
            lambda: mwm.generate_masks(grid, b, policy="random", ratio=SPARK_RATIO,
                                       rounding="round", seed=seed, offset=offsets.next(),
                                       device=device),
            lambda: ref.spark_random_masking(b, grid, SPARK_RATIO, generator=gen, device=device),
            _mwm_counts, lambda out: ref.masked_counts(out.cpu(), active=True)))
    if size.name == "vit":
        beit = ref.BeitBlockMaskGenerator(grid, int(n * BEIT_RATIO), min_num_patches=16,
                                          seed=seed)
        simmim = ref.SimMIMMaskGenerator(224, 32, 16, SIMMIM_RATIO, seed=seed)
        cases += [
            Case("masking", "block (BEiT v2)", size,
                 f"generate_masks(block, r={BEIT_RATIO})", "BEiT v2 MaskingGenerator",
                 lambda: mwm.generate_masks(grid, b, policy="block", ratio=BEIT_RATIO,
                                            rounding="floor_mask", block_min_patches=16,
                                            seed=seed, offset=offsets.next(), device=device),
                 lambda: ref.beit_block_masking(beit, b),
                 _mwm_counts, ref.masked_counts),
            Case("masking", "coarse (SimMIM)", size,
                 f"generate_masks(coarse x2, r={SIMMIM_RATIO})", "SimMIM MaskGenerator",
                 lambda: mwm.generate_masks(grid, b, policy="coarse", ratio=SIMMIM_RATIO,
                                            coarse_factor=2, rounding="ceil_mask", seed=seed,
                                            offset=offsets.next(), device=device),
                 lambda: ref.simmim_masking(simmim, b),
                 _mwm_counts, ref.masked_counts),
        ]
    return cases


def text_guided_cases(size: Size, seed: int, device: torch.device) -> List[Case]:
    import mwm

    heat = synthetic_heatmaps(size, seed + 1, device)
    gen = torch.Generator().manual_seed(seed)
    low, high = MWM_RATIOS
    grid = size.grid
    image = "x".join(map(str, size.image))
    # `nearest` is the reference's own resize, so both sides must agree on every count.
    nearest = mwm.TextGuidedMasker(grid, region_ratios=MWM_RATIOS,
                                   thresholds=(SALIENCY_THRESHOLD,), reduction="nearest",
                                   seed=seed)
    area_mean = mwm.TextGuidedMasker(grid, region_ratios=MWM_RATIOS,
                                     thresholds=(SALIENCY_THRESHOLD,), reduction="mean",
                                     seed=seed)

    def reference():
        return ref.mwm_reference_masking(heat > SALIENCY_THRESHOLD, grid, high, low,
                                         generator=gen)

    reference_counts = lambda out: ref.masked_counts(out.cpu(), active=True)  # noqa: E731
    return [
        Case("text", "text-guided, nearest", size,
             f"TextGuidedMasker(nearest) on {image} heatmaps",
             "threshold + resize + MWM loop", lambda: nearest(heat), reference, _mwm_counts,
             reference_counts),
        Case("text", "text-guided, area mean", size,
             f"TextGuidedMasker(mean) on {image} heatmaps",
             "threshold + resize + MWM loop", lambda: area_mean(heat), reference, _mwm_counts,
             reference_counts, counts_comparable=False,
             note="mean pooling sees the whole patch; counts differ from nearest by design"),
    ]


def pooling_cases(size: Size, seed: int, device: torch.device) -> List[Case]:
    """Area-mean pooling of the text-guided rows' heatmaps alone, against PyTorch's adaptive
    average pooling (the same cells): a pass over the heatmaps, so its speed is judged against
    the copy bandwidth (bytes_moved: the heatmaps read once, the scores written once)."""
    import torch.nn.functional as F

    import mwm

    heat = synthetic_heatmaps(size, seed + 1, device)
    grid = size.grid
    pool = F.adaptive_avg_pool3d if len(grid) == 3 else F.adaptive_avg_pool2d
    image = "x".join(map(str, size.image))
    moved = heat.numel() * heat.element_size() + size.batch * size.num_patches * 4
    return [Case("pooling", "area-mean pooling alone", size,
                 f"heatmap_to_patch_scores(mean) on {image}", "F.adaptive_avg_pool",
                 lambda: mwm.heatmap_to_patch_scores(heat, grid, reduction="mean"),
                 lambda: pool(heat.unsqueeze(1), grid).flatten(1),
                 lambda out: out, lambda out: out, counts_comparable=False,
                 note="scores, not masks: compared within 1e-6", bytes_moved=moved)]


def measure(case: Case, repeats: int, warmup: int, device: torch.device,
            copy_bw: Optional[float] = None) -> dict:
    ours = median_time(case.ours, repeats=repeats, warmup=warmup, device=device)
    theirs = median_time(case.reference, repeats=repeats, warmup=warmup, device=device)
    ours_peak, ours_result = run_with_peak_memory(case.ours, device)
    reference_peak, reference_result = run_with_peak_memory(case.reference, device)
    counts_match = None
    if case.counts_comparable:
        counts_match = bool(torch.equal(case.ours_counts(ours_result),
                                        case.reference_counts(reference_result)))
    row = {
        "section": case.section,
        "case": case.name,
        "size": case.size.label,
        "batch": case.size.batch,
        "grid": list(case.size.grid),
        "ours": case.ours_label,
        "reference": case.reference_label,
        "ours_ms": ours.median_ms,
        "reference_ms": theirs.median_ms,
        "ratio": ours.median_s / theirs.median_s,
        "ours_min_ms": ours.min_s * 1e3,
        "reference_min_ms": theirs.min_s * 1e3,
        "ours_peak_mb": to_mib(ours_peak),
        "reference_peak_mb": to_mib(reference_peak),
        "counts_match": counts_match,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "note": case.note,
    }
    if case.section == "pooling":
        row["max_abs_difference"] = float((ours_result - reference_result).abs().max())
    if case.bytes_moved is not None:
        row["bytes_moved"] = case.bytes_moved
        if copy_bw:
            row["bandwidth_share"] = bandwidth_share(case.bytes_moved, ours.median_s, copy_bw)
    if case.section in ("text", "pooling"):
        row["heatmap"] = list(case.size.image)
    return row


# (batch, grid) points the per-call cost model is fitted on: small calls weigh the fixed cost,
# large ones the cost per patch.
COST_POINTS = ((1, (2, 2)), (1, (14, 14)), (8, (14, 14)), (64, (14, 14)), (256, (14, 14)),
               (8, (8, 8, 8)), (64, (28, 28)))
QUICK_COST_POINTS = ((1, (2, 2)), (8, (14, 14)), (64, (14, 14)))


def cost_model_rows(args) -> List[dict]:
    """Fixed cost per call and cost per patch of ``mwm.generate_masks`` (the Python call, the
    op boundary and the core), from a robust fit ``time = fixed + per_patch * B * N`` over
    COST_POINTS (medians), per policy, at the current torch thread count."""
    import mwm

    points = QUICK_COST_POINTS if args.quick else COST_POINTS
    rows = []
    for policy in ("random", "per_region"):
        sizes, times = [], []
        for batch, grid in points:
            n = math.prod(grid)
            regions = (torch.rand(batch, n, generator=torch.Generator().manual_seed(batch))
                       > 0.7).to(torch.int32)
            offsets = _OffsetCounter(batch)
            if policy == "random":
                call = lambda: mwm.generate_masks(grid, batch, ratio=MAE_RATIO,  # noqa: E731
                                                  offset=offsets.next())
            else:
                call = lambda: mwm.generate_masks(grid, policy="per_region",  # noqa: E731
                                                  region_ratios=MWM_RATIOS, regions=regions,
                                                  offset=offsets.next())
            sizes.append(batch * n)
            times.append(median_time(call, repeats=max(args.repeats, 5),
                                     warmup=max(args.warmup, 1)).median_s)
        x = np.asarray(sizes, dtype=np.float64)
        y = np.asarray(times, dtype=np.float64)
        # The median of the slopes from the smallest call to every other one, then the fixed
        # cost that slope leaves: one point slowed by a busy machine moves neither much (a
        # least-squares line follows it).
        per_patch = float(np.median((y[1:] - y[0]) / (x[1:] - x[0])))
        fixed = float(np.median(y - per_patch * x))
        fitted = fixed + per_patch * x
        rows.append({
            "section": "cost", "case": f"generate_masks(policy={policy!r})",
            "threads": torch.get_num_threads(),
            "fixed_us": fixed * 1e6, "ns_per_patch": per_patch * 1e9,
            "smallest_call_us": times[0] * 1e6,
            "points": " ".join(f"{b}x{'x'.join(map(str, g))}" for b, g in points),
            "worst_fit_error_pct": float(np.max(np.abs(fitted - y) / y) * 100),
        })
    return rows


def _section_rows(module_name: str, function_name: str, args) -> List[dict]:
    """The rows of the benchmark module ``mwm.bench.<module_name>``, with the shared keys."""
    module = importlib.import_module(f"mwm.bench.{module_name}")
    rows = list(getattr(module, function_name)(args))
    for row in rows:
        row.setdefault("section", module_name.split("_")[-1])
        if row.get("bandwidth_share") is None and row.get("bytes_moved") and row.get("ours_ms"):
            row["bandwidth_share"] = bandwidth_share(row["bytes_moved"], row["ours_ms"] / 1e3,
                                                     args.copy_bandwidth)
        if row.get("ratio") is None and row.get("ours_ms") and row.get("reference_ms"):
            row["ratio"] = row["ours_ms"] / row["reference_ms"]
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help=f"CI smoke run: {QUICK_REPEATS} repetitions after {QUICK_WARMUP} "
                             f"warm-up instead of {FULL_REPEATS} after {FULL_WARMUP}, heatmaps "
                             f"at half the side in the text-guided rows (same batches and grids), "
                             f"no torch.compile references unless --compile")
    parser.add_argument("--compile", dest="no_compile", action="store_false", default=None,
                        help="keep the torch.compile references of the loss / CORAL rows")
    parser.add_argument("--no-compile", dest="no_compile", action="store_true",
                        help="skip the torch.compile references of the loss / CORAL rows")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"JSON results (default: ./{DEFAULT_OUT}); a Markdown table is "
                             f"written next to it")
    parser.add_argument("--repeats", type=int, help="timed repetitions per side")
    parser.add_argument("--warmup", type=int, help="untimed calls before timing")
    parser.add_argument("--threads", default=",".join(map(str, DEFAULT_THREADS)),
                        help="comma-separated torch thread counts; every row is measured at "
                             "each (default: 1,2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of inputs and masks")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--plain", action="store_true", help="plain-text table instead of rich")
    parser.add_argument("--doc", type=Path,
                        help="also rewrite the generated part of this Markdown page (between "
                             "the markers <!-- mwm-bench speed: begin --> and <!-- mwm-bench "
                             "speed: end -->, appended when absent), e.g. docs/speed.md")


def _validate(args) -> None:
    if args.repeats is not None and args.repeats < 1:
        raise SystemExit(f"mwm-bench speed: --repeats={args.repeats} must be at least 1")
    if args.warmup is not None and args.warmup < 0:
        raise SystemExit(f"mwm-bench speed: --warmup={args.warmup} must be non-negative")
    try:
        counts = tuple(int(t) for t in str(args.threads).split(",") if t.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise SystemExit(f"mwm-bench speed: --threads={args.threads}: give thread counts of at "
                         f"least 1, comma-separated")
    args.thread_counts = counts
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise SystemExit(f"mwm-bench speed: --sections={args.sections!r}: choose from "
                         f"{','.join(SECTIONS)}")
    args.sections = sections
    try:
        args.device = torch.device(args.device)
    except RuntimeError:
        raise SystemExit(
            f"mwm-bench speed: --device={args.device!r} is not a torch device") from None


def _measure_sections(args, sizes, rows: List[dict], section_seconds: dict) -> None:
    """Every requested section once, at the current torch thread count."""
    for section, make_cases in (("masking", masking_cases), ("text", text_guided_cases),
                                ("pooling", pooling_cases)):
        if section in args.sections:
            section_start = time.perf_counter()
            for size in sizes:
                rows += [measure(case, args.repeats, args.warmup, args.device,
                                 args.copy_bandwidth)
                         for case in make_cases(size, args.seed, args.device)]
            section_seconds[section] = section_seconds.get(section, 0.0) + (
                time.perf_counter() - section_start)
    if "cost" in args.sections and args.device.type == "cpu":
        section_start = time.perf_counter()
        rows += cost_model_rows(args)
        section_seconds["cost"] = section_seconds.get("cost", 0.0) + (
            time.perf_counter() - section_start)
    for section, module, function in (("loss", "speed_loss", "run_loss_benchmarks"),
                                      ("coral", "speed_coral", "run_coral_benchmarks"),
                                      ("grounding", "speed_grounding", "run_grounding_benchmarks")):
        if section in args.sections:
            section_start = time.perf_counter()
            extra = _section_rows(module, function, args)
            torch.set_num_threads(args.threads)  # a module may have changed it
            for row in extra:
                row.setdefault("threads", args.threads)
            section_seconds[section] = section_seconds.get(section, 0.0) + (
                time.perf_counter() - section_start)
            rows += extra


def run(args, argv: Optional[Sequence[str]] = None) -> int:
    _validate(args)
    args.repeats = args.repeats or (QUICK_REPEATS if args.quick else FULL_REPEATS)
    args.warmup = args.warmup if args.warmup is not None else (
        QUICK_WARMUP if args.quick else FULL_WARMUP)
    if args.no_compile is None:
        args.no_compile = bool(args.quick)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    started = time.perf_counter()
    machine = machine_info(args.device)
    rows: List[dict] = []
    section_seconds: dict = {}
    bandwidths = {}
    for threads in args.thread_counts:
        torch.set_num_threads(threads)
        args.threads = threads
        # Measured at every thread count, next to the rows it is compared with.
        args.copy_bandwidth = copy_bandwidth((128 if args.quick else 256) << 20,
                                             repeats=args.repeats, device=args.device)
        bandwidths[threads] = args.copy_bandwidth / 1e9
        _measure_sections(args, sizes, rows, section_seconds)
    machine["load_average_after"] = load_averages()
    doc = {
        "command": "mwm-bench speed " + " ".join(shlex.quote(a) for a in (argv or [])),
        "machine": machine,
        "settings": {"quick": bool(args.quick), "repeats": args.repeats, "warmup": args.warmup,
                     "no_compile": bool(args.no_compile), "threads": list(args.thread_counts),
                     "seed": args.seed, "device": str(args.device), "sections": list(args.sections),
                     "sizes": [{"name": s.name, "batch": s.batch, "grid": list(s.grid),
                                "heatmap": list(s.image), "what": s.what} for s in sizes]},
        "copy_bandwidth_gbps": max(bandwidths.values()),
        "copy_bandwidth_gbps_by_threads": bandwidths,
        "rows": rows,
        "targets": evaluate_targets(rows),
        "section_seconds": section_seconds,
    }
    doc["elapsed_seconds"] = time.perf_counter() - started
    print_report(doc, args.plain)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    markdown = args.out.with_suffix(".md")
    markdown.write_text(markdown_table(rows) + "\n\n" + "\n".join(
        f"- {line}" for line in targets_text(doc["targets"])) + "\n")
    if args.doc is not None:
        write_doc_section(args.doc, doc)
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in section_seconds.items())
    print(f"wrote {args.out} and {markdown}" + (f" and {args.doc}" if args.doc else "") +
          f" ({doc['elapsed_seconds']:.0f} s: {spent})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mwm-bench speed",
                                     description="mwm's ops against the code they replace")
    add_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry of ``mwm-bench speed`` (mwm.bench.cli passes the arguments after ``speed``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run(build_parser().parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
