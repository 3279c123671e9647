"""coral_loss forward + backward: mwm against Deep CORAL in plain PyTorch (eager, torch.compile).

    python benchmarks/bench_coral.py                 # n = m = 6400, d = 32 and 256
    python benchmarks/bench_coral.py --threads 1 --repeats 30 --json coral.json

Prints the machine (with the torch thread count and load average), median times over the
repetitions, mwm's speed-up over each reference (reference time / mwm time, > 1 means mwm is
faster) and the peak memory growth of each side. `mwm-bench speed --sections coral` gives the
same rows inside the common speed report.
"""

from __future__ import annotations

import argparse
import json

import torch

from mwm.bench.speed_coral import run_coral_benchmarks
from mwm.bench.timing import describe_machine, machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="timed runs per side (default 15, quick 5)")
    parser.add_argument("--warmup", type=int, help="untimed runs first (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's)")
    parser.add_argument("--sizes", default="6400x6400x32,6400x6400x256",
                        help="comma-separated n x m x d")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile reference")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.coral_sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    print(f"machine: {describe_machine(machine_info())}")
    rows = run_coral_benchmarks(args)
    print(f"{'size':>26} {'reference':>26} {'mwm ms':>9} {'ref ms':>9} {'speed-up':>9} "
          f"{'mwm MiB':>8} {'ref MiB':>8}")
    for row in rows:
        print(f"{row['size']:>26} {row['reference']:>26} {row['ours_ms']:>9.2f} "
              f"{row['reference_ms']:>9.2f} {1 / row['ratio']:>8.2f}x "
              f"{row['ours_peak_mb'] or 0:>8.1f} {row['reference_peak_mb'] or 0:>8.1f}")
    worst = max(row["loss_relative_difference"] for row in rows)
    print(f"speed-up = reference time / mwm time (> 1: mwm is faster); "
          f"medians of {rows[0]['repeats']} "
          f"runs; largest relative difference of the loss against a reference: {worst:.1e}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
