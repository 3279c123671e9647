"""Measurement helpers of `mwm-bench speed`: median wall time, peak memory, memory-copy bandwidth
and the machine description every speed table is printed with.

They are shared by the masking rows (mwm.bench.speed) and the loss and CORAL rows
(mwm.bench.speed_loss, mwm.bench.speed_coral). A benchmark row is a plain dict; the table and the
JSON read these keys (any other key is kept in the JSON untouched):

    section          "masking", "text-guided", "loss", "coral", ...
    case             what is measured, e.g. "per_region (MWM)"
    size             e.g. "B=256 14x14"
    ours             the mwm call, e.g. "mwm.generate_masks(policy='per_region')"
    reference        the reference it is compared with, e.g. "MWM per-sample loop"
    ours_ms          median milliseconds of mwm
    reference_ms     median milliseconds of the reference (None when there is none)
    ratio            ours_ms / reference_ms: below 1 means mwm is faster
    ours_peak_mb     peak memory growth while mwm runs, MiB (None when not measured)
    reference_peak_mb
    bytes_moved      bytes an ideal implementation must read and write (loss rows)
    bandwidth_share  (bytes_moved / ours time) / measured copy bandwidth, in [0, 1] ideally
    repeats          timed repetitions per side (after the warm-up)
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch

MIB = float(1 << 20)
VECTOR_UNITS = {512: "AVX-512", 256: "AVX2", 128: "portable (SSE2)"}
THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS",
                      "OMP_PROC_BIND")


@dataclass
class Timing:
    """Wall times of one callable: ``median_s`` is what tables report."""

    times_s: List[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3

    @property
    def repeats(self) -> int:
        return len(self.times_s)


def _synchronize(device: Optional[torch.device]) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], *, repeats: int, warmup: int = 1,
                device: Optional[torch.device] = None) -> Timing:
    """Times ``fn()`` ``repeats`` times after ``warmup`` untimed calls (first-call costs such as
    lazy initialization and allocator growth stay out of the median). CUDA work is synchronized
    before each clock read."""
    if repeats < 1:
        raise ValueError(f"mwm-bench: repeats = {repeats}: must be at least 1")
    if warmup < 0:
        raise ValueError(f"mwm-bench: warmup = {warmup}: must be non-negative")
    for _ in range(warmup):
        fn()
    _synchronize(device)
    timing = Timing()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        timing.times_s.append(time.perf_counter() - start)
    return timing


def _status_kib(field_name: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    # Writing 5 to clear_refs resets VmHWM (the peak resident set) to the current RSS
    # (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def run_with_peak_memory(fn: Callable[[], object],
                         device: Optional[torch.device] = None) -> Tuple[Optional[int], object]:
    """Runs ``fn()`` once; returns (peak memory growth in bytes, what ``fn`` returned).

    CUDA: the caching allocator's peak over what was allocated before. CPU: the growth of the
    process's peak resident set (VmHWM) over the resident set at the start, which counts what
    ``fn`` touches (its result and temporaries). Memory the allocator reuses without touching
    new pages does not show, so on CPU it is a lower bound. None where neither can be read.
    """
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before), result
    gc.collect()
    if not _reset_peak_rss():
        return None, fn()
    start = _status_kib("VmRSS")
    result = fn()
    peak = _status_kib("VmHWM")
    if start is None or peak is None:
        return None, result
    return max(0, peak - start) * 1024, result


def peak_memory_bytes(fn: Callable[[], object],
                      device: Optional[torch.device] = None) -> Optional[int]:
    """Peak memory growth while ``fn()`` runs once, in bytes (see run_with_peak_memory)."""
    return run_with_peak_memory(fn, device)[0]


def copy_bandwidth(nbytes: int = 256 << 20, *, repeats: int = 5,
                   device: Optional[torch.device] = None) -> float:
    """Measured memory-copy bandwidth in bytes/s: ``dst.copy_(src)`` of ``nbytes``, counted as
    ``2 * nbytes`` moved (one read, one write), median over ``repeats``. The loss rows divide
    their ideal bytes moved per second by it."""
    if nbytes <= 0:
        raise ValueError(f"mwm-bench: nbytes = {nbytes}: must be positive")
    count = max(1, nbytes // 4)
    src = torch.ones(count, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = median_time(lambda: dst.copy_(src), repeats=repeats, warmup=1, device=device)
    return 2.0 * count * 4 / timing.median_s


def bandwidth_share(bytes_moved: float, seconds: float, bandwidth: float) -> float:
    """Share of the copy bandwidth an op reaches: (bytes it must move / its time) / bandwidth."""
    if seconds <= 0 or bandwidth <= 0:
        raise ValueError(f"mwm-bench: seconds = {seconds}, bandwidth = {bandwidth}: must be "
                         f"positive")
    return bytes_moved / seconds / bandwidth


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: Optional[torch.device] = None) -> dict:
    """What a speed number depends on; printed above every table and stored in the JSON."""
    import numpy

    info = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
    }
    # The OpenMP wait policy decides what a parallel region costs on a busy machine: spinning
    # workers of one region can hold the cores the next region waits for.
    info["environment"] = {name: os.environ[name] for name in THREAD_ENVIRONMENT
                           if name in os.environ}
    # The x86 kernels' vector unit (AVX-512, AVX2 or portable; MWM_CPU_VECTOR_BITS caps it):
    # the loss and the pooling run at different shares of the bandwidth on each.
    from mwm import _extension

    info["cpu_vector_bits"] = _extension.extension.cpu_vector_bits()
    averages = load_averages()
    if averages:
        info["load_average_1min"] = averages[0]
        info["load_average"] = averages
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_averages() -> List[float]:
    """uptime's load averages over 1, 5 and 15 minutes (empty where unavailable): on a shared
    machine they say how far a timing can be trusted."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def describe_machine(info: dict) -> str:
    load = info.get("load_average_1min")
    text = (f"{info['cpu']} ({info['logical_cpus']} logical CPUs), {info['platform']}, "
            f"torch {info['torch']}, torch threads {info['torch_threads']}")
    if info.get("cpu_vector_bits"):
        text += f", mwm CPU kernels {VECTOR_UNITS.get(info['cpu_vector_bits'], '?')}"
    if "gpu" in info:
        text += f", GPU {info['gpu']}"
    for name, value in info.get("environment", {}).items():
        text += f", {name}={value}"
    if info.get("load_average"):
        text += f", load average {' / '.join(map(str, info['load_average']))} (1 / 5 / 15 min)"
    elif load is not None:
        text += f", load average {load}"
    return text


def to_mib(nbytes: Optional[int]) -> Optional[float]:
    return None if nbytes is None else nbytes / MIB
