"""The grounding rows of `mwm-bench speed` on a 2-image batch: what they report, not how fast."""

import argparse

import torch
from test_grounding_clip import _make_torchvision_importable

_make_torchvision_importable()

from mwm.bench import speed  # noqa: E402
from mwm.bench.speed_grounding import run_grounding_benchmarks  # noqa: E402


def test_rows_compare_batched_and_per_image_m2ib():
    threads = torch.get_num_threads()
    args = argparse.Namespace(
        quick=True,
        device=torch.device("cpu"),
        seed=0,
        grounding_batch=2,
        grounding_repeats=1,
        grounding_warmup=0,
    )
    rows = run_grounding_benchmarks(args)
    assert torch.get_num_threads() == threads  # restored after the section's 2 threads
    assert len(rows) == 1
    row = rows[0]
    assert row["section"] == "grounding" and row["threads"] == 2 and row["size"].startswith("B=2 ")
    assert row["max_map_difference"] < 1e-4  # the loop computes the same maps
    assert row["ours_ms"] > 0 and row["reference_ms"] > 0
    assert abs(row["speedup"] - row["reference_ms"] / row["ours_ms"]) < 1e-9
    assert abs(row["ours_images_per_s"] - 2e3 / row["ours_ms"]) < 1e-6
    assert "met" not in row  # the target is judged at B=16 only


def test_grounding_is_a_section_of_mwm_bench_speed():
    assert "grounding" in speed.SECTIONS
