"""Speed of ``mwm.coral_loss`` (forward + backward for both inputs) against Deep CORAL written in
plain PyTorch, eager and under ``torch.compile``, measured in the same run.

:func:`run_coral_benchmarks` returns the ``mwm-bench speed`` rows (keys: see mwm.bench.timing),
one per size and reference; ``benchmarks/bench_coral.py`` prints them on their own.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import torch

import mwm

from .references import deep_coral
from .timing import median_time, peak_memory_bytes, to_mib

DEFAULT_SIZES: Tuple[Tuple[int, int, int], ...] = ((6400, 6400, 32), (6400, 6400, 256))
FULL_REPEATS, FULL_WARMUP = 15, 3
QUICK_REPEATS, QUICK_WARMUP = 5, 1


def _step(loss_fn: Callable, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        y.grad = None
        loss_fn(x, y).backward()
    return step


def run_coral_benchmarks(args) -> List[Dict[str, object]]:
    """Rows comparing ``mwm.coral_loss`` with each reference, forward + backward, float32, CPU.

    ``ratio = ours_ms / reference_ms`` (below 1: mwm is faster). Reads from ``args`` (missing
    attributes take defaults): ``quick``, ``repeats``, ``warmup``, ``seed``, ``coral_sizes``
    (``(n, m, d)`` triples; default n = m = 6400 with d = 32 and 256), ``no_compile``. The rows are
    CPU rows whatever ``args.device`` says (the CUDA kernel is torch's own matmuls, so timing it
    against the same matmuls in eager PyTorch would say little).
    """
    quick = bool(getattr(args, "quick", False))
    repeats = int(getattr(args, "repeats", None) or (QUICK_REPEATS if quick else FULL_REPEATS))
    warmup = getattr(args, "warmup", None)
    warmup = int(warmup) if warmup is not None else (QUICK_WARMUP if quick else FULL_WARMUP)
    sizes: Sequence[Tuple[int, int, int]] = getattr(args, "coral_sizes", None) or DEFAULT_SIZES
    seed = int(getattr(args, "seed", 0) or 0)
    references: List[Tuple[str, Callable]] = [("Deep CORAL, eager PyTorch", deep_coral)]
    if not bool(getattr(args, "no_compile", False)):
        torch._dynamo.reset()
        references.append(("Deep CORAL, torch.compile",
                           torch.compile(deep_coral, dynamic=False)))
    threads = torch.get_num_threads()
    rows: List[Dict[str, object]] = []
    for n, m, d in sizes:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(n, d, generator=generator).requires_grad_()
        y = (1.5 * torch.randn(m, d, generator=generator)).requires_grad_()
        ours = _step(mwm.coral_loss, x, y)
        ours_time = median_time(ours, repeats=repeats, warmup=warmup)
        ours_peak = peak_memory_bytes(ours)
        value = mwm.coral_loss(x, y).item()
        for name, fn in references:
            reference = _step(fn, x, y)
            reference_time = median_time(reference, repeats=repeats, warmup=warmup)
            reference_peak = peak_memory_bytes(reference)
            expected = fn(x, y).item()
            rows.append({
                "section": "coral", "case": "coral_loss forward+backward",
                "size": f"n={n} m={m} d={d} float32", "ours": "mwm.coral_loss",
                "reference": name, "ours_ms": ours_time.median_ms,
                "reference_ms": reference_time.median_ms,
                "ratio": ours_time.median_s / reference_time.median_s,
                "ours_peak_mb": to_mib(ours_peak), "reference_peak_mb": to_mib(reference_peak),
                "repeats": repeats, "threads": threads, "device": "cpu", "n": n, "m": m, "d": d,
                "loss_relative_difference": abs(value - expected) / abs(expected),
            })
    return rows
