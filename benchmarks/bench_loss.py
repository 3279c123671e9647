#!/usr/bin/env python
"""Fused masked reconstruction loss vs MAE's loss in eager PyTorch and under torch.compile:
forward + backward time (medians), peak memory, share of the copy bandwidth.

    python benchmarks/bench_loss.py [--repeats 7] [--threads 2] [--quick] [--json out.json]

The same rows come from ``mwm-bench speed`` (python/mwm/bench/speed_loss.py).
"""

from __future__ import annotations

import argparse
import json

from mwm.bench.speed_loss import add_loss_arguments, format_rows, run_loss_benchmarks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_loss_arguments(parser)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    rows = run_loss_benchmarks(args)
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
