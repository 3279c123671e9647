"""benchmarks/profile/call_overhead.py runs and prints one timed row per part of a mask call."""
import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "profile" / "call_overhead.py"


def run(*arguments):
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)


def test_prints_a_positive_time_for_every_part():
    done = run("--rounds", "2", "--calls", "5")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines()
            if re.search(r"\s\d+\.\d\d\s+\d+\.\d\d$", line)]
    assert len(rows) == 7, done.stdout
    assert rows[0].startswith("mwm.generate_masks")
    for row in rows:
        median, fastest = map(float, row.split()[-2:])
        assert 0 < fastest <= median, row


def test_rejects_a_non_positive_count():
    done = run("--rounds", "0")
    assert done.returncode != 0
    assert "--rounds = 0" in done.stderr
