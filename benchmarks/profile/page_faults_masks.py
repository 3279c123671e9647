"""Page faults and time per call of the B=256 14x14 mask rows of ``mwm-bench speed``, run as the
benchmark runs them (its masking cases, every row in order, 1 thread), and the store floor: the
same seven output tensors from ``torch.empty``, then filled. Minor page faults come from
``getrusage``, so whether glibc's allocator re-faults the outputs on every call shows per process:

    python benchmarks/profile/page_faults_masks.py
    MALLOC_TRIM_THRESHOLD_=33554432 MALLOC_MMAP_THRESHOLD_=4194304 \
        python benchmarks/profile/page_faults_masks.py

Run it a few times: the allocator's thresholds, and so the faults, differ between processes.
"""

from __future__ import annotations

import resource
import time

import torch

from mwm.bench import speed


def per_call(call, repeats: int = 30, warmup: int = 3) -> tuple:
    """Median milliseconds and minor page faults per call."""
    for _ in range(warmup):
        call()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    times.sort()
    return times[len(times) // 2] * 1e3, faults / repeats


def main() -> None:
    torch.set_num_threads(1)
    size = next(s for s in speed.FULL_SIZES if s.batch == 256)
    for case in speed.masking_cases(size, 0, torch.device("cpu")):
        for side in ("ours", "reference"):
            ms, faults = per_call(getattr(case, side))
            if case.name.startswith(("random (MAE)", "per_region")):
                print(f"{case.name:18s} {side:9s} {ms:8.3f} ms {faults:7.1f} page faults per call")
    b, n = size.batch, size.num_patches
    shapes = [((b, n), torch.bool), ((b,), torch.int64)] + [((b, n), torch.int64)] * 4 + [
        ((b, n), torch.float32)]
    ms, faults = per_call(lambda: [torch.empty(s, dtype=d) for s, d in shapes])
    print(f"{'7 x torch.empty':28s} {ms:8.3f} ms {faults:7.1f} page faults per call")
    ms, faults = per_call(lambda: [torch.empty(s, dtype=d).fill_(1) for s, d in shapes])
    print(f"{'7 x torch.empty + fill_':28s} {ms:8.3f} ms {faults:7.1f} page faults per call"
          f" (the per_region outputs' bytes)")


if __name__ == "__main__":
    main()
