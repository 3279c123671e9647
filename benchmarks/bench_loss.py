#!/usr/bin/env python
"""Fused masked reconstruction loss vs MAE's loss in eager PyTorch and under torch.compile:
forward + backward time (medians), peak memory, share of the copy bandwidth.

    python benchmarks/bench_loss.py [--repeats 7] [--thread-counts 1,2] [--quick] [--json out.json]

Prints the machine's load (uptime) before and after, since a shared machine's timings move,
and issue 13's targets as met / NOT met.

The same rows come from ``mwm-bench speed`` (python/mwm/bench/speed_loss.py).
"""

from __future__ import annotations

import argparse
import json
import os

from mwm.bench.speed_loss import (
    add_loss_arguments,
    format_rows,
    format_targets,
    loss_targets,
    run_loss_benchmarks,
)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_loss_arguments(parser)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--thread-counts", default=None,
                        help="comma-separated thread counts, one table each (e.g. 1,2)")
    args = parser.parse_args()
    counts = [int(t) for t in args.thread_counts.split(",")] if args.thread_counts else [
        args.threads]
    print(load_average())
    rows = []
    for threads in counts:
        args.threads = threads
        table = run_loss_benchmarks(args)
        print(format_rows(table))
        rows += table
    print(format_targets(loss_targets(rows)))
    print(load_average())
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
