"""Paired statistics of `mwm-bench ratios` (mwm.bench.stats) on data with known answers."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mwm.bench import stats as S


def test_t_quantile_matches_tables():
    # Two-sided 95 % critical values from the t table.
    assert S.t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert S.t_quantile(0.975, 4) == pytest.approx(2.776, abs=1e-3)
    assert S.t_quantile(0.975, 30) == pytest.approx(2.042, abs=1e-3)
    assert S.t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="dof=0"):
        S.t_quantile(0.975, 0)
    with pytest.raises(ValueError, match="probability=1.5"):
        S.t_quantile(1.5, 3)


def test_paired_difference_equals_scipy_ttest_rel_interval():
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.02, size=7)
    other = base + rng.normal(0.01, 0.005, size=7)
    diff = S.paired_difference(other, base)
    ci = scipy_stats.ttest_rel(other, base).confidence_interval(0.95)
    assert diff.n_seeds == 7
    assert diff.mean_diff == pytest.approx(float(np.mean(other - base)), abs=1e-15)
    assert diff.ci95_low == pytest.approx(ci.low, rel=1e-12)
    assert diff.ci95_high == pytest.approx(ci.high, rel=1e-12)


def test_pairing_removes_the_shared_seed_effect():
    # A seed effect of +-5 points shared by both configurations and a constant 1-point gain with
    # a little noise: unpaired spreads overlap, the paired interval excludes 0.
    seed_effect = np.array([-0.05, 0.03, 0.0, 0.05, -0.02])
    base = 0.8 + seed_effect
    other = base + 0.01 + np.array([0.001, -0.001, 0.0005, -0.0005, 0.0])
    diff = S.paired_difference(other, base)
    assert diff.ci95_low > 0
    assert S.verdict(diff.ci95_low, diff.ci95_high) == S.BETTER
    welch = scipy_stats.ttest_ind(other, base, equal_var=False).confidence_interval(0.95)
    assert welch.low < 0 < welch.high  # what unpaired seeds would have said


def test_verdict_follows_the_interval_only():
    assert S.verdict(0.001, 0.02) == S.BETTER
    assert S.verdict(-0.02, -0.001) == S.WORSE
    assert S.verdict(-0.01, 0.02) == S.NO_DIFFERENCE
    assert S.verdict(0.0, 0.02) == S.NO_DIFFERENCE  # touching 0 is not excluding it
    assert S.verdict(None, None) == S.TOO_FEW_SEEDS
    with pytest.raises(ValueError, match="low end"):
        S.verdict(0.2, 0.1)


def test_one_seed_gives_no_interval_and_bad_input_is_named():
    one = S.paired_difference([0.8], [0.7])
    assert one.mean_diff == pytest.approx(0.1) and one.ci95_low is None and one.n_seeds == 1
    with pytest.raises(ValueError, match="paired"):
        S.paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="finite"):
        S.paired_difference([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(ValueError, match="no pairs"):
        S.paired_difference([], [])


def _runs(model, config, policy, values, dice=None):
    return [{"dataset": "brain", "model": model, "config": config, "policy": policy, "seed": s,
             "accuracy": v, "dice": None if dice is None else dice[i]}
            for i, (s, v) in enumerate(zip(range(len(values)), values))]


def test_comparisons_pair_by_seed_and_withhold_verdicts_of_models_that_did_not_learn():
    none = [0.70, 0.72, 0.71, 0.69, 0.70]
    rnd = [0.80, 0.83, 0.81, 0.79, 0.80]
    guided = [0.82, 0.85, 0.83, 0.81, 0.82]  # +2 points on every seed
    runs = (_runs("cnn", "none", "none", none) + _runs("cnn", "random-0.6", "random", rnd, rnd)
            + _runs("cnn", "mwm-0.8/0.4", "per_region", guided, rnd[::-1])
            + _runs("mae", "none", "none", none) + _runs("mae", "random-0.6", "random", none)
            + _runs("mae", "mwm-0.8/0.4", "per_region", [v + 0.01 for v in none]))
    # Shuffle the order: pairing must go by seed, not by position.
    runs = runs[::-1]
    learning = {(e["model"]): e for e in S.learning_checks(runs)}
    assert learning["cnn"]["learned"] is True
    assert learning["cnn"]["gain"] == pytest.approx(np.mean([0.102, 0.122]))
    assert learning["mae"]["learned"] is False  # gains of 0 and 1 point < 3 points
    rows = S.comparisons(runs, learning=list(learning.values()))
    cnn_acc = [r for r in rows if r["model"] == "cnn" and r["metric"] == "accuracy"]
    assert len(cnn_acc) == 1
    row = cnn_acc[0]
    assert (row["config"], row["baseline"], row["n_seeds"]) == ("mwm-0.8/0.4", "random-0.6", 5)
    assert row["mean_diff"] == pytest.approx(0.02)
    assert row["ci95_low"] == pytest.approx(0.02) and row["ci95_high"] == pytest.approx(0.02)
    assert row["verdict"] == S.BETTER
    cnn_dice = [r for r in rows if r["model"] == "cnn" and r["metric"] == "dice"][0]
    expected = scipy_stats.ttest_rel(rnd[::-1], rnd).confidence_interval(0.95)
    assert cnn_dice["ci95_low"] == pytest.approx(expected.low)
    assert cnn_dice["verdict"] == S.NO_DIFFERENCE
    mae = [r for r in rows if r["model"] == "mae"]
    assert mae and all(r["verdict"] == S.DID_NOT_LEARN for r in mae)
    assert all(r["metric"] != "dice" for r in mae)  # no Dice values, no Dice comparison
    assert not math.isnan(mae[0]["mean_diff"])  # the numbers stay


def test_seeds_missing_from_one_side_are_left_out():
    a = _runs("cnn", "mwm-0.8/0.4", "per_region", [0.8, 0.9, 0.7])
    b = _runs("cnn", "random-0.6", "random", [0.7, 0.8])
    values, base = S.pair(a, b, "accuracy")
    assert values == [0.8, 0.9] and base == [0.7, 0.8]
