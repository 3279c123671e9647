"""Where the fixed cost of one ``mwm.generate_masks`` call goes, from Python.

Times, on the smallest call (B=1 on 2x2, ``random``) and at one thread: the whole wrapper, the
op alone with and without a keyword option, and the wrapper's own pieces (the sample indices,
the option forwarding, the grid, the ``MaskResult``). Each row is the median over rounds of the
mean time of a batch of calls; the fastest round is printed next to it, being the one a busy
machine disturbs least.

    python benchmarks/profile/call_overhead.py [--rounds 15] [--calls 2000]
"""
import argparse
import os
import statistics
import sys
import time

import torch


def per_call_us(call, rounds: int, calls: int) -> tuple:
    for _ in range(min(calls, 200)):
        call()
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        means.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(means), min(means)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    args = parser.parse_args(argv)
    if args.rounds <= 0 or args.calls <= 0:
        parser.error(f"--rounds = {args.rounds}, --calls = {args.calls}: must be positive")

    import mwm
    from mwm import masking

    torch.set_num_threads(1)
    sample_index = torch.arange(1)
    op = torch.ops.mwm.generate_masks.default
    outputs = op(sample_index, [2, 2], None, None, 0, ratio=0.75)
    # What the wrapper hands _given_options: every argument at its default but ratio.
    arguments = dict(mwm.generate_masks.__kwdefaults__, ratio=float("0.75"))
    rows = [
        ("mwm.generate_masks((2, 2), 1, ratio=0.75)",
         lambda: mwm.generate_masks((2, 2), 1, ratio=0.75)),
        ("the op, ratio=0.75 given", lambda: op(sample_index, [2, 2], None, None, 0, ratio=0.75)),
        ("the op, no option given", lambda: op(sample_index, [2, 2], None, None, 0)),
        ("sample_indices(1) (torch.arange)", lambda: masking.sample_indices(1, 0, None)),
        ("option forwarding (_given_options)", lambda: masking._given_options(arguments)),
        ("grid (_as_grid)", lambda: masking._as_grid((2, 2))),
        ("MaskResult(...)", lambda: masking.MaskResult(*outputs, grid=(2, 2))),
    ]
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load average "
          f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}; {args.rounds} rounds of "
          f"{args.calls} calls")
    print(f"{'part':<46} {'median us':>10} {'fastest us':>11}")
    for label, call in rows:
        median, fastest = per_call_us(call, args.rounds, args.calls)
        print(f"{label:<46} {median:>10.2f} {fastest:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
