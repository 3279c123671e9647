"""benchmarks/probe_convergence.py, whose counts docs/harness-mae.md quotes."""
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "probe_convergence.py"


def test_iterations_are_counted_per_stage_and_stop_at_the_cap_or_before(repo_script):
    from mwm.bench import probes as P
    script = repo_script("benchmarks/probe_convergence.py")
    gen = torch.Generator().manual_seed(0)
    x = P._channels_last(torch.randn(64, 8, 4, generator=gen))
    y = torch.arange(64) % 3
    stages = sum(len(sched) for sched in P.PROBE_SCHEDULES) + P.PROBE_RANDOM_STARTS
    capped = script.iterations_per_stage(x, y, 3, cap=3)
    free = script.iterations_per_stage(x, y, 3, cap=5000)
    assert len(capped) == len(free) == stages
    assert all(1 <= n <= 3 for n in capped)  # the cap (and its 5/4 evaluations) stop it
    assert all(3 < n < 5000 for n in free)  # converged before the cap
    assert torch.optim.LBFGS.step.__name__ == "step"  # the counting hook is gone again


def test_the_script_prints_each_cap_and_the_stages_on_a_micro_setting():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), '{"preset": "micro", "models": ["mae"], "seeds": [0], '
         '"caps": [2, 50]}'], capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[:3] for line in lines] == [["mae", "0", "none"],
                                                     ["mae", "0", "random-0.6"]]
    for line in lines:
        objectives = [float(v) for v in re.findall(r"objective (\d+\.\d+)", line)]
        assert len(objectives) == 2 and objectives[1] <= objectives[0] + 1e-6
        assert re.search(r"iterations per stage \(cap 5000\): \[(\d+, ){10}\d+\]$", line)
