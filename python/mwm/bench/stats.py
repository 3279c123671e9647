"""Paired statistics for `mwm-bench ratios`: differences between configurations over seeds.

Every configuration of a run trains from the same initialization, on the same data in the same
order and with the same probe randomness for a given seed (see `ratios.run_one`), so the
accuracy of configuration A and baseline B on seed s form a pair. The per-seed differences
``d_s = A_s - B_s`` remove what the seed does to both (the initialization, the order of the
batches), which is most of the spread between seeds; their mean and a Student-t interval over the
seeds say whether A differs from B:

    mean_diff = mean(d),   CI95 = mean_diff -/+ t_{0.975, n-1} * sd(d) / sqrt(n)

and the verdict follows from the interval alone: ``better`` when it lies above 0, ``worse`` when
it lies below 0, ``no detectable difference`` when it holds 0. One seed gives no interval and
no verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no detectable difference"
TOO_FEW_SEEDS = "too few seeds"
DID_NOT_LEARN = "not judged: the model did not learn"

# The MAE-style requirement of the harness: pretraining must lift the probe's accuracy by this
# much (a share, 0.03 = 3 points) over the unpretrained encoder, mean over seeds and
# configurations, before differences between masking configurations mean anything.
MIN_LEARNING_GAIN = 0.03


def t_quantile(probability: float, dof: int) -> float:
    """The `probability` quantile of Student's t with `dof` degrees of freedom."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability={probability!r} must lie in (0, 1)")
    if dof < 1:
        raise ValueError(f"dof={dof!r} must be at least 1")
    from scipy.stats import t

    return float(t.ppf(probability, dof))


@dataclass(frozen=True)
class PairedDifference:
    mean_diff: float
    ci95_low: Optional[float]  # None with fewer than two pairs
    ci95_high: Optional[float]
    n_seeds: int


def paired_difference(values: Sequence[float], baseline: Sequence[float],
                      confidence: float = 0.95) -> PairedDifference:
    """Mean of ``values - baseline`` (paired element by element) and its t-interval."""
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"values and baseline must be 1D and paired, got shapes {a.shape} and {b.shape}"
        )
    if a.size == 0:
        raise ValueError("values and baseline hold no pairs")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("values and baseline must be finite (drop the seeds that have no value)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must lie in (0, 1)")
    d = a - b
    mean = float(d.mean())
    n = int(d.size)
    if n < 2:
        return PairedDifference(mean, None, None, n)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return PairedDifference(mean, mean - half, mean + half, n)


def verdict(low: Optional[float], high: Optional[float]) -> str:
    """From the interval alone: above 0 -> better, below 0 -> worse, else no difference."""
    if low is None or high is None:
        return TOO_FEW_SEEDS
    if low > high:
        raise ValueError(f"interval [{low}, {high}] has its low end above its high end")
    if low > 0.0:
        return BETTER
    if high < 0.0:
        return WORSE
    return NO_DIFFERENCE


def _by_seed(runs: Iterable[dict], metric: str) -> Dict[int, float]:
    out = {}
    for r in runs:
        value = r.get(metric)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[int(r["seed"])] = float(value)
    return out


def pair(runs_a: Iterable[dict], runs_b: Iterable[dict],
         metric: str) -> Tuple[List[float], List[float]]:
    """The metric of the seeds both groups of runs have a value for, in seed order."""
    a, b = _by_seed(runs_a, metric), _by_seed(runs_b, metric)
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def _groups(runs: Sequence[dict]) -> Dict[Tuple[str, str], Dict[str, List[dict]]]:
    groups: Dict[Tuple[str, str], Dict[str, List[dict]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["model"]), {}).setdefault(r["config"], []).append(r)
    return groups


def learning_checks(runs: Sequence[dict], min_gain: float = MIN_LEARNING_GAIN) -> List[dict]:
    """Per (dataset, model): did pretraining lift the accuracy over the unpretrained encoder?

    ``gain`` is the mean over the pretrained configurations of their paired mean accuracy
    difference to ``none``; ``learned`` is ``gain >= min_gain``, or None when the runs hold no
    ``none`` baseline (then nothing was checked)."""
    out = []
    for (dataset, model), configs in _groups(runs).items():
        pretrained = [c for c, rs in configs.items() if rs[0]["policy"] != "none"]
        baseline = configs.get("none")
        entry = {"dataset": dataset, "model": model, "metric": "accuracy", "min_gain": min_gain,
                 "gain": None, "per_config": [], "learned": None}
        if baseline is not None and pretrained:
            gains = []
            for c in pretrained:
                a, b = pair(configs[c], baseline, "accuracy")
                if not a:
                    continue
                diff = paired_difference(a, b)
                entry["per_config"].append({"config": c, **asdict(diff)})
                gains.append(diff.mean_diff)
            if gains:
                entry["gain"] = float(np.mean(gains))
                entry["learned"] = bool(entry["gain"] >= min_gain)
        out.append(entry)
    return out


def comparisons(runs: Sequence[dict], metrics: Sequence[str] = ("accuracy", "dice"),
                learning: Optional[Sequence[dict]] = None) -> List[dict]:
    """Every text-guided configuration against every random one, per (dataset, model) and
    metric: the paired mean difference over seeds, its 95 % t-interval and the verdict. Where
    `learning` says the model did not learn, the numbers stay and the verdict is withheld."""
    learned = {(e["dataset"], e["model"]): e["learned"] for e in (learning or [])}
    out = []
    for (dataset, model), configs in _groups(runs).items():
        guided = [c for c, rs in configs.items() if rs[0]["policy"] not in ("none", "random")]
        random = [c for c, rs in configs.items() if rs[0]["policy"] == "random"]
        for config in guided:
            for baseline in random:
                for metric in metrics:
                    a, b = pair(configs[config], configs[baseline], metric)
                    if not a:
                        continue
                    diff = paired_difference(a, b)
                    judged = verdict(diff.ci95_low, diff.ci95_high)
                    if learned.get((dataset, model)) is False:
                        judged = DID_NOT_LEARN
                    out.append({"dataset": dataset, "model": model, "config": config,
                                "baseline": baseline, "metric": metric, **asdict(diff),
                                "verdict": judged})
    return out
