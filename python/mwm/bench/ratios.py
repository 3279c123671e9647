"""`mwm-bench ratios`: does text-guided masking at a lower ratio beat random masking at a high one?

Mask What Matters (arXiv 2509.23054) masks the region a text prompt points at harder than the
background (per_region: r_high inside, r_low outside, ~40 % overall) and reports better
downstream accuracy than SparK's random 60-70 %. This module reproduces that comparison at a
scale two CPU cores can run: pretrain small SparK-style CNNs and MAE ViTs on procedural phantoms
(or your own folder) with each masking configuration, then probe the frozen encoders for
classification accuracy and lesion Dice, over several seeds.

Masks come from mwm and are keyed by the global sample index: in epoch ``e`` the sample at
position ``p`` of the epoch's shuffled order is sample ``e * L + p``, so every process of a DDP
run (each takes a contiguous slice of every global batch) draws exactly the masks one process
would have drawn.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

import mwm

from . import distributed as bdist
from .grounding_sim import SimulatedGrounder
from .guidance import check_source, noisy_heatmaps, random_clip_heatmaps
from .phantoms import CLASS_NAMES, PhantomDataset
from .pretraining import PretrainStats, initial_model, pretrain
from .probes import (
    PROBE_MAX_ITER,
    PROBE_RANDOM_STARTS,
    extract_features,
    linear_probe,
    segmentation_probe,
)
from .stats import comparisons, learning_checks

# --------------------------------------------------------------------------------------------
# Masking configurations


@dataclass(frozen=True)
class MaskConfig:
    """One way of masking during pretraining. ``policy == "none"`` means no pretraining at all
    (the randomly initialized encoder), the floor every other configuration should beat."""

    name: str
    policy: str  # none | random | per_region | fixed_total | weighted
    ratio: Optional[float] = None
    region_ratios: Optional[Tuple[float, float]] = None  # (r_low background, r_high ROI)

    @property
    def guided(self) -> bool:
        return self.policy in ("per_region", "fixed_total", "weighted")

    def masker(self, grid, seed: int, thresholds, reduction: str) -> Callable:
        """`masker(heatmaps, offset)` -> mwm mask result."""
        if self.policy == "none":
            raise ValueError(f"config {self.name!r} pretrains nothing and draws no masks")
        if self.policy == "random":
            ratio = self.ratio

            def random_masks(heatmaps: torch.Tensor, offset: int):
                return mwm.generate_masks(
                    grid=tuple(grid), batch_size=heatmaps.shape[0], policy="random",
                    ratio=ratio, seed=seed, offset=offset, rounding="round",
                )

            return random_masks
        kwargs = dict(grid=tuple(grid), thresholds=list(thresholds), policy=self.policy,
                      seed=seed, reduction=reduction)
        kwargs["region_ratios"] = list(self.region_ratios or DEFAULT_REGION_RATIOS)
        if self.ratio is not None:
            kwargs["ratio"] = self.ratio
        guided = mwm.TextGuidedMasker(**kwargs)
        return lambda heatmaps, offset: guided(heatmaps, offset=offset)


# MWM's default preset (r_low, r_high); it also sets the ROI/background proportions of
# fixed_total, whose overall ratio is given separately.
DEFAULT_REGION_RATIOS = (0.4, 0.8)

DEFAULT_CONFIGS = (
    "none",
    "random-0.6",
    "random-0.7",
    "mwm-0.8/0.4",
    "mwm-0.7/0.3",
    "mwm-0.6/0.2",
    "fixed-0.4",
    "weighted-0.4",
)

_RATIO = r"(0(?:\.\d+)?|1(?:\.0+)?)"


def parse_config(text: str) -> MaskConfig:
    """``none``, ``random-R``, ``mwm-H/L`` (per_region, ROI ratio H, background L),
    ``fixed-R`` (fixed_total at overall R), ``weighted-R``."""
    name = text.strip()
    if name == "none":
        return MaskConfig(name, "none")
    m = re.fullmatch(rf"random-{_RATIO}", name)
    if m:
        return MaskConfig(name, "random", ratio=float(m.group(1)))
    m = re.fullmatch(rf"mwm-{_RATIO}/{_RATIO}", name)
    if m:
        high, low = float(m.group(1)), float(m.group(2))
        return MaskConfig(name, "per_region", region_ratios=(low, high))
    m = re.fullmatch(rf"fixed-{_RATIO}", name)
    if m:
        return MaskConfig(name, "fixed_total", ratio=float(m.group(1)))
    m = re.fullmatch(rf"weighted-{_RATIO}", name)
    if m:
        return MaskConfig(name, "weighted", ratio=float(m.group(1)))
    raise ValueError(
        f"config={text!r} is not understood; use none, random-R, mwm-H/L, fixed-R or weighted-R "
        f"with ratios in [0, 1] (e.g. {', '.join(DEFAULT_CONFIGS)})"
    )


# --------------------------------------------------------------------------------------------
# Settings


@dataclass
class Settings:
    datasets: Tuple[str, ...] = ("brain",)
    models: Tuple[str, ...] = ("cnn",)
    configs: Tuple[str, ...] = DEFAULT_CONFIGS
    seeds: Tuple[int, ...] = (0, 1)
    image_size: int = 64
    volume_size: int = 32  # brain3d side length
    patch_size: int = 8
    pretrain_samples: int = 1024
    train_samples: int = 512
    test_samples: int = 512
    epochs: int = 4
    batch_size: int = 64
    lr: Dict[str, float] = field(default_factory=lambda: {"cnn": 2e-3, "mae": 1e-3})
    warmup_share: float = 0.1
    weight_decay: float = 0.05  # pretraining AdamW, off norms, biases and mask tokens
    cnn_widths: Tuple[int, ...] = (32, 64)
    mae_dim: int = 64
    # One block on a patch embedding frozen at its random start (MoCo v3): the MAE whose
    # pretraining gains over its own random start (docs/harness-mae.md, "Ninth round").
    mae_depth: int = 1
    mae_freeze_patch_embed: bool = True
    prompts: Dict[str, str] = field(
        default_factory=lambda: {"brain": "tumor", "brain3d": "tumor", "chest": "lesion"}
    )
    jitter: float = 0.1
    miss_rate: float = 0.1
    fp_rate: float = 0.1
    expand_ratio: float = 1.2
    thresholds: Tuple[float, ...] = (0.5,)
    reduction: str = "max"
    data_seed: int = 0
    probe_steps: int = PROBE_MAX_ITER  # the classifier probe's L-BFGS cap per stage
    probe_random_starts: int = PROBE_RANDOM_STARTS  # after its three deterministic starts
    seg_probe_steps: int = 200
    data: str = "builtin"  # builtin | folder | medmnist
    folder: Optional[str] = None
    # Built-in phantoms: where the heatmaps come from (mwm.bench.guidance) and, for "noisy", how
    # much of them is the simulated boxes (1) rather than a random field (0).
    heatmaps: str = "sim"
    heatmap_quality: float = 0.5
    # MedMNIST (mwm.bench.medmnist): the folder with the .npz files, the data set, the file's
    # size, and a folder of heatmaps (<split>_<index>.npy); without it heatmaps="clip" is used.
    root: Optional[str] = None
    flag: Optional[str] = None
    medmnist_size: int = 28
    heatmap_folder: Optional[str] = None


PRESETS: Dict[str, Settings] = {
    # Seconds: for tests only; the numbers mean nothing.
    "micro": Settings(
        configs=("random-0.7", "mwm-0.8/0.4"), seeds=(0,), image_size=32, patch_size=8,
        pretrain_samples=32, train_samples=32, test_samples=32, epochs=1, batch_size=8,
        cnn_widths=(8, 16), mae_dim=32, mae_depth=1, probe_steps=20, seg_probe_steps=10,
    ),
    # The main command (scripts/main.sh): under 10 minutes on 2 CPU cores.
    # five seeds, so that paired differences get intervals; two worker processes on 2 cores.
    "quick": Settings(seeds=(0, 1, 2, 3, 4)),
    # Both models, three phantom kinds, three seeds, longer pretraining.
    "full": Settings(
        datasets=("brain", "chest", "brain3d"), models=("cnn", "mae"), seeds=(0, 1, 2),
        pretrain_samples=2048, train_samples=1024, test_samples=1024, epochs=10,
    ),
}


def preset(name: str, **overrides) -> Settings:
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def validate_settings(s: Settings, world_size: int = 1) -> None:
    """Raise ValueError naming the first setting that cannot run."""
    for kind in s.datasets:
        if s.data == "builtin" and kind not in CLASS_NAMES:
            raise ValueError(f"dataset={kind!r} must be one of {', '.join(CLASS_NAMES)}")
    for m in s.models:
        if m not in ("cnn", "mae"):
            raise ValueError(f"model={m!r} must be 'cnn' or 'mae'")
    for c in s.configs:
        parse_config(c)
    if not s.seeds:
        raise ValueError("seeds must name at least one seed")
    if s.batch_size % world_size:
        raise ValueError(
            f"batch_size={s.batch_size} must be divisible by the number of processes {world_size}"
        )
    if not 0 <= s.warmup_share < 1:
        raise ValueError(f"warmup_share={s.warmup_share} must lie in [0, 1)")
    if not (math.isfinite(s.weight_decay) and s.weight_decay >= 0):
        raise ValueError(f"weight_decay={s.weight_decay} must be finite and >= 0")
    if s.probe_steps < 1 or s.probe_random_starts < 0:
        raise ValueError(f"probe_steps={s.probe_steps} must be >= 1 and probe_random_starts="
                         f"{s.probe_random_starts} >= 0")
    if s.patch_size & (s.patch_size - 1) or s.patch_size < 2:
        raise ValueError(f"patch_size={s.patch_size} must be a power of two (CNN strides)")
    if s.data not in ("builtin", "folder", "medmnist"):
        raise ValueError(f"data={s.data!r} must be 'builtin', 'folder' or 'medmnist'")
    if s.data == "folder" and not s.folder:
        raise ValueError("data='folder' needs folder=<directory>")
    if s.data == "medmnist":
        from .medmnist import require_npz

        if not s.root or not s.flag:
            raise ValueError("data='medmnist' needs root=<folder with the .npz files> and "
                             "flag=<data set, e.g. pneumoniamnist>")
        require_npz(s.root, s.flag, s.medmnist_size)  # names a bad flag, size or missing file
    check_source(s.heatmaps, s.heatmap_quality)


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class Split:
    images: torch.Tensor  # (L, C, *S)
    labels: torch.Tensor  # (L,)
    lesions: Optional[torch.Tensor]  # (L, *S) bool
    heatmaps: Optional[torch.Tensor] = None  # (L, *S) float32


@dataclass
class Prepared:
    name: str
    class_names: Tuple[str, ...]
    image_size: int
    ndim: int
    pretrain: Split
    train: Split
    test: Split
    examples: Split  # a few test samples, one per class where possible, for overlays
    prompt: str = ""

    @property
    def grid(self) -> Tuple[int, ...]:
        return (self.image_size // self.patch_size,) * self.ndim

    patch_size: int = 8


def _phantom_split(kind, length, size, start, grounder, prompt, s: Settings) -> Split:
    data = PhantomDataset(kind, length, size=size, seed=s.data_seed, start=start)
    stacked = data.stacked()
    if s.heatmaps == "clip":
        heat = random_clip_heatmaps(stacked["image"], prompt, seed=s.data_seed)
    else:
        heat = grounder.heatmaps(data.samples, prompt)
        if s.heatmaps == "noisy":
            heat = noisy_heatmaps(heat, s.heatmap_quality, s.data_seed, start)
    return Split(stacked["image"], stacked["label"], stacked["lesion"], heat)


def _examples(split: Split, num_classes: int) -> Split:
    picks = []
    for c in range(num_classes):
        hits = (split.labels == c).nonzero().flatten()
        if len(hits):
            picks.append(int(hits[0]))
    idx = torch.tensor(picks)
    return Split(
        split.images[idx], split.labels[idx],
        None if split.lesions is None else split.lesions[idx],
        None if split.heatmaps is None else split.heatmaps[idx],
    )


def prepare_builtin(kind: str, s: Settings) -> Prepared:
    size = s.volume_size if kind == "brain3d" else s.image_size
    prompt = s.prompts[kind]
    if kind == "brain3d" and s.heatmaps == "clip":
        raise ValueError("heatmaps='clip' grounds 2D images; use sim, gt or noisy for brain3d")
    perfect = s.heatmaps == "gt"
    grounder = SimulatedGrounder(
        jitter=0.0 if perfect else s.jitter, miss_rate=0.0 if perfect else s.miss_rate,
        fp_rate=0.0 if perfect else s.fp_rate, expand_ratio=s.expand_ratio, seed=s.data_seed,
    )
    pre = _phantom_split(kind, s.pretrain_samples, size, 0, grounder, prompt, s)
    start = s.pretrain_samples
    train = _phantom_split(kind, s.train_samples, size, start, grounder, prompt, s)
    start += s.train_samples
    test = _phantom_split(kind, s.test_samples, size, start, grounder, prompt, s)
    return Prepared(
        name=kind, class_names=CLASS_NAMES[kind], image_size=size,
        ndim=3 if kind == "brain3d" else 2, pretrain=pre, train=train, test=test,
        examples=_examples(test, len(CLASS_NAMES[kind])), prompt=prompt,
        patch_size=s.patch_size,
    )


def prepare_folder(s: Settings) -> Prepared:
    from .folder import load_folder

    data = load_folder(s.folder, size=s.image_size)

    def subset(names) -> Split:
        idx = torch.tensor([i for i, sp in enumerate(data.splits) if sp in names])
        return Split(
            data.images[idx], data.labels[idx],
            None if data.lesions is None else data.lesions[idx], data.heatmaps[idx],
        )

    test = subset({"test"})
    return Prepared(
        name="folder", class_names=data.class_names, image_size=s.image_size, ndim=2,
        pretrain=subset({"pretrain", "train"}), train=subset({"train"}), test=test,
        examples=_examples(test, len(data.class_names)), prompt="(your heatmaps)",
        patch_size=s.patch_size,
    )


def prepare_medmnist(s: Settings, grounder: Optional[Callable] = None) -> Prepared:
    """MedMNIST from the user's .npz (mwm.bench.medmnist): pretrain on ``train``, probes fit on
    ``val`` and report on ``test`` (at most pretrain/train/test_samples images each). Heatmaps
    from `grounder(images (L, C, H, W), prompt) -> (L, H, W)` when given (e.g. a
    ``mwm.grounding.ClipHeatmapGenerator`` on your CLIP model), else from
    ``heatmap_folder``, else from the CLIP pipeline on a random model (``heatmaps="clip"``)."""
    from .medmnist import folder_heatmaps, load_medmnist

    limits = {"train": s.pretrain_samples, "val": s.train_samples, "test": s.test_samples}
    data = load_medmnist(s.root, s.flag, file_size=s.medmnist_size, size=s.image_size,
                         limits=limits)
    prompt = s.prompts.get(s.flag, "lesion")

    def split(name: str) -> Split:
        part = data.splits[name]
        if grounder is not None:
            heat = grounder(part.images, prompt)
        elif s.heatmap_folder:
            heat = folder_heatmaps(s.heatmap_folder, name, part.images.shape[0], s.image_size)
        else:
            heat = random_clip_heatmaps(part.images, prompt, seed=s.data_seed)
        return Split(part.images, part.labels, None, torch.as_tensor(heat, dtype=torch.float32))

    test = split("test")
    return Prepared(
        name=s.flag, class_names=data.class_names, image_size=s.image_size, ndim=2,
        pretrain=split("train"), train=split("val"), test=test,
        examples=_examples(test, len(data.class_names)), prompt=prompt,
        patch_size=s.patch_size,
    )


# --------------------------------------------------------------------------------------------
# One run = one (dataset, model, config, seed)


def evaluate(model: nn.Module, data: Prepared, s: Settings, seed: int, device, progress: bool):
    train = extract_features(model, data.train.images, device, progress=progress,
                             desc="features/train")
    test = extract_features(model, data.test.images, device, progress=progress,
                            desc="features/test")
    accuracy = linear_probe(
        train.positions(), data.train.labels, test.positions(), data.test.labels,
        num_classes=len(data.class_names), max_iter=s.probe_steps,
        random_starts=s.probe_random_starts,
    )
    dice = float("nan")
    if data.train.lesions is not None and data.test.lesions is not None:
        dice = segmentation_probe(
            train.maps, data.train.lesions, test.maps, data.test.lesions,
            seed=seed, steps=s.seg_probe_steps,
        )
    return accuracy, dice


def run_one(
    data: Prepared, model_kind: str, config: MaskConfig, seed: int, s: Settings,
    ctx: bdist.DistContext, progress: bool, record: Optional[Dict[int, np.ndarray]] = None,
) -> Optional[dict]:
    model = initial_model(model_kind, data, s, seed).to(ctx.device)
    result = {"dataset": data.name, "model": model_kind, "config": config.name,
              "policy": config.policy, "seed": seed,
              "parameters": sum(p.numel() for p in model.parameters())}
    if config.policy == "none":
        stats = None
    else:
        masker = config.masker(data.grid, seed, s.thresholds, s.reduction)
        stats = pretrain(
            model, data, masker, s, s.lr[model_kind], seed, ctx, progress, record,
            desc=f"{data.name}/{model_kind}/{config.name}/seed{seed}",
        )
    result.update(_stats_fields(stats))
    if ctx.is_main:
        started = time.perf_counter()
        accuracy, dice = evaluate(model, data, s, seed, ctx.device, progress)
        result.update(accuracy=accuracy, dice=dice, probe_seconds=time.perf_counter() - started)
    bdist.barrier(ctx)
    return result if ctx.is_main else None


def _ratio(num: int, den: int) -> Optional[float]:
    return num / den if den else None


def _stats_fields(stats: Optional[PretrainStats]) -> dict:
    if stats is None:
        return {"effective_ratio": None, "lesion_ratio": None, "background_ratio": None,
                "final_loss": None, "pretrain_seconds": 0.0, "masks_drawn": 0}
    return {
        "effective_ratio": stats.effective_ratio,
        "lesion_ratio": _ratio(stats.lesion_masked, stats.lesion_total),
        "background_ratio": _ratio(stats.background_masked, stats.background_total),
        "final_loss": stats.final_loss,
        "pretrain_seconds": stats.seconds,
        "masks_drawn": stats.samples,
    }


def example_masks(data: Prepared, configs: Sequence[MaskConfig], s: Settings, seed: int = 0):
    """Masks each configuration draws for the example images (offset 0), for the overlays."""
    out = {}
    for config in configs:
        if config.policy == "none":
            continue
        masker = config.masker(data.grid, seed, s.thresholds, s.reduction)
        out[config.name] = masker(data.examples.heatmaps, 0).mask.cpu().bool()
    return out


def _run_here(plan, s: Settings, ctx: bdist.DistContext, progress: bool, record_masks: bool):
    """The runs of `plan` one after the other in this process (or this torchrun rank)."""
    done = []
    outer = tqdm(plan, desc="ratios", disable=not (progress and ctx.is_main))
    for data, model_kind, config, seed in outer:
        outer.set_postfix_str(f"{data.name}/{model_kind}/{config.name}/seed{seed}")
        record: Optional[Dict[int, np.ndarray]] = {} if record_masks else None
        result = run_one(data, model_kind, config, seed, s, ctx, progress, record)
        merged: Optional[Dict[int, np.ndarray]] = None
        if record_masks and config.policy != "none":
            merged = {}
            for part in bdist.gather_objects(ctx, record):
                merged.update(part)
        done.append((result, merged))
    outer.close()
    return done


# State of a run-level worker process, set once by its initializer.
_WORKER: dict = {}


def _worker_init(prepared, s: Settings, device: str, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(prepared={d.name: d for d in prepared}, settings=s,
                   ctx=bdist.DistContext(device=torch.device(device)))


def _worker_run(dataset: str, model_kind: str, config: MaskConfig, seed: int, record_masks: bool):
    record: Optional[Dict[int, np.ndarray]] = {} if record_masks else None
    result = run_one(_WORKER["prepared"][dataset], model_kind, config, seed, _WORKER["settings"],
                     _WORKER["ctx"], False, record)
    return result, (record if record_masks and config.policy != "none" else None)


def _run_in_workers(prepared, plan, s: Settings, ctx: bdist.DistContext, workers: int,
                    threads: int, progress: bool, record_masks: bool):
    """The runs of `plan` spread over `workers` processes of `threads` torch threads each.

    Every run is independent (its own model, seed-keyed masks and data order), so a run gives
    the same numbers in any worker; with one thread per worker they equal a one-process run
    with ``--threads 1``. Small models on a few cores gain more from runs side by side than
    from threads inside each op, whose synchronization costs most when the cores are shared."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")  # torch's thread pools do not survive fork
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_worker_init,
                             initargs=(prepared, s, str(ctx.device), threads)) as pool:
        futures = [pool.submit(_worker_run, d.name, m, c, seed, record_masks)
                   for d, m, c, seed in plan]
        bar = tqdm(total=len(futures), desc=f"ratios ({workers} workers)", disable=not progress)
        done = []
        for future in futures:  # in plan order; the bar counts finished runs
            done.append(future.result())
            bar.n = sum(f.done() for f in futures)
            bar.refresh()
        bar.close()
    return done


def run_ratios(
    s: Settings,
    ctx: Optional[bdist.DistContext] = None,
    progress: bool = True,
    record_masks: bool = False,
    workers: int = 1,
    worker_threads: int = 1,
) -> dict:
    """Run every (dataset, model, config, seed); returns the results document (rank 0) with
    ``runs`` (one entry per run), ``summary`` (mean and std over seeds), ``learning`` and
    ``comparisons`` (paired differences, mwm.bench.stats) and metadata. With `record_masks`,
    ``masks`` maps "dataset/model/config/seed" to {global index: packed mask} gathered from
    every process. `workers` > 1 runs whole runs side by side in that many processes of
    `worker_threads` torch threads each (not under torchrun)."""
    ctx = ctx or bdist.DistContext()
    validate_settings(s, ctx.world_size)
    configs = [parse_config(c) for c in s.configs]
    started = time.perf_counter()
    if s.data == "folder":
        prepared = [prepare_folder(s)]
    elif s.data == "medmnist":
        prepared = [prepare_medmnist(s)]
    else:
        prepared = [prepare_builtin(k, s) for k in s.datasets]
    data_seconds = time.perf_counter() - started
    plan = [(d, m, c, seed)
            for d in prepared for m in s.models for c in configs for seed in s.seeds]
    runs, masks = [], {}
    if workers > 1 and ctx.distributed:
        raise ValueError(f"workers={workers}: run-level workers and torchrun exclude each other")
    if workers > 1:
        done = _run_in_workers(prepared, plan, s, ctx, workers, worker_threads, progress,
                               record_masks)
    else:
        done = _run_here(plan, s, ctx, progress, record_masks)
    for (data, model_kind, config, seed), (result, record) in zip(plan, done):
        if record_masks and config.policy != "none":
            masks[f"{data.name}/{model_kind}/{config.name}/{seed}"] = record
        if result is not None:
            runs.append(result)
    learning = learning_checks(runs)
    doc = {
        "settings": dataclasses.asdict(s),
        "world_size": ctx.world_size,
        "workers": workers,
        "device": str(ctx.device),
        "torch_threads": worker_threads if workers > 1 else torch.get_num_threads(),
        "data_seconds": data_seconds,
        "elapsed_seconds": time.perf_counter() - started,
        "runs": runs,
        "summary": summarize(runs),
        "learning": learning,
        "comparisons": comparisons(runs, learning=learning),
        "datasets": {d.name: dataset_facts(d, s) for d in prepared},
    }
    doc["_prepared"] = prepared  # for the report's overlays; dropped before writing JSON
    doc["_configs"] = configs
    doc["_settings"] = s
    if record_masks:
        doc["masks"] = masks
    return doc


def dataset_facts(d: Prepared, s: Settings) -> dict:
    """Sizes, and how much of the pretraining images the lesion and the grounded ROI cover."""
    facts = {"classes": list(d.class_names), "prompt": d.prompt, "grid": list(d.grid),
             "image_size": d.image_size, "pretrain": int(d.pretrain.images.shape[0]),
             "train": int(d.train.images.shape[0]), "test": int(d.test.images.shape[0])}
    lesions = d.pretrain.lesions
    if lesions is not None:
        area = lesions.flatten(1).float().mean(1)
        with_lesion = area[area > 0]
        facts["lesion_pixel_share"] = float(with_lesion.mean()) if with_lesion.numel() else 0.0
    scores = mwm.heatmap_to_patch_scores(d.pretrain.heatmaps, list(d.grid), reduction=s.reduction)
    facts["roi_patch_share"] = float((scores > s.thresholds[0]).float().mean())
    return facts


def _mean_std(values: List[float]) -> Tuple[Optional[float], Optional[float]]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    arr = np.asarray(vals, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarize(runs: List[dict]) -> List[dict]:
    """Mean and sample std over seeds of every (dataset, model, config)."""
    keys: List[Tuple[str, str, str]] = []
    for r in runs:
        key = (r["dataset"], r["model"], r["config"])
        if key not in keys:
            keys.append(key)
    out = []
    for key in keys:
        group = [r for r in runs if (r["dataset"], r["model"], r["config"]) == key]
        row = {"dataset": key[0], "model": key[1], "config": key[2],
               "policy": group[0]["policy"], "seeds": [r["seed"] for r in group]}
        for metric in ("effective_ratio", "lesion_ratio", "background_ratio", "accuracy", "dice",
                       "pretrain_seconds"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std([r.get(metric) for r in group])
        out.append(row)
    return out
