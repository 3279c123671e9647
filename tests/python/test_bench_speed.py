"""The speed benchmark's references keep their methods' semantics (counts, conventions), mwm's
matching policy agrees with each on counts, and `mwm-bench speed --quick` writes the expected
JSON. No timing is asserted."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mwm
from mwm.bench import references as ref
from mwm.bench import speed, speed_coral, speed_loss, speed_report, speed_targets, timing
from mwm.bench.cli import main as bench_main

ROOT = Path(__file__).resolve().parents[2]


def mwm_counts(result):
    return result.num_masked.to(torch.int64)


@pytest.mark.parametrize("n,ratio", [(196, 0.75), (49, 0.6), (10, 0.7), (512, 0.75)])
def test_mae_random_masking_counts_and_inverse(n, ratio):
    gen = torch.Generator().manual_seed(0)
    mask, ids_restore, ids_keep = ref.mae_random_masking(5, n, ratio, generator=gen)
    keep = int(n * (1 - ratio))
    assert ids_keep.shape == (5, keep)
    assert torch.equal(ref.masked_counts(mask), torch.full((5,), n - keep))
    # the kept ids are exactly the unmasked patches, and ids_restore inverts the shuffle
    assert torch.all(torch.gather(mask, 1, ids_keep) == 0)
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore),
                       torch.arange(n).expand(5, n))
    ours = mwm.generate_masks((1, n), 5, policy="random", ratio=ratio)
    assert torch.equal(mwm_counts(ours), ref.masked_counts(mask))


def test_spark_random_masking_rounds_visible_count():
    gen = torch.Generator().manual_seed(1)
    active = ref.spark_random_masking(4, (7, 7), 0.6, generator=gen)
    assert active.shape == (4, 1, 7, 7) and active.dtype == torch.bool
    visible = round(49 * 0.4)  # 19.6 -> 20, where MAE's floor would keep 19
    assert torch.equal(active.view(4, -1).sum(1), torch.full((4,), visible))
    ours = mwm.generate_masks((7, 7), 4, policy="random", ratio=0.6, rounding="round")
    assert torch.equal(mwm_counts(ours), ref.masked_counts(active, active=True))


def test_mwm_reference_keeps_int_of_each_region():
    # 10 ROI cells at r_high = 0.8 keep int(10 * 0.2) = 1 (0.2 is 0.19999999999999996 there)
    region_map = torch.zeros(2, 4, 4, dtype=torch.int32)
    region_map[0].view(-1)[:10] = 1
    region_map[1, 1:3, 1:3] = 1
    gen = torch.Generator().manual_seed(2)
    active = ref.mwm_reference_masking(region_map, (4, 4), 0.8, 0.4, generator=gen)
    assert active.shape == (2, 1, 4, 4)
    for b, (n_roi, n_bg) in enumerate([(10, 6), (4, 12)]):
        roi = region_map[b].bool()
        assert int(active[b, 0][roi].sum()) == int(n_roi * (1 - 0.8))
        assert int(active[b, 0][~roi].sum()) == int(n_bg * (1 - 0.4))
    assert int(active[0, 0][region_map[0].bool()].sum()) == 1


def test_mwm_reference_resizes_nearest_and_matches_per_region_counts():
    # heatmaps at 28x28 onto a 7x7 grid: the reference thresholds then resizes (nearest); mwm
    # pools with `nearest` then thresholds; each sample must mask the same number of patches.
    gen = torch.Generator().manual_seed(3)
    heat = torch.rand(6, 28, 28, generator=gen)
    active = ref.mwm_reference_masking(heat > 0.5, (7, 7), 0.8, 0.4, generator=gen)
    masker = mwm.TextGuidedMasker((7, 7), region_ratios=(0.4, 0.8), thresholds=(0.5,),
                                  reduction="nearest")
    ours = masker(heat)
    assert torch.equal(mwm_counts(ours), ref.masked_counts(active, active=True))
    # the ROI the reference resized is the one mwm's regions hold
    regions = mwm.regions_from_thresholds(
        mwm.heatmap_to_patch_scores(heat, (7, 7), reduction="nearest"), [0.5])
    resized = torch.nn.functional.interpolate((heat > 0.5).unsqueeze(1).float(), size=(7, 7),
                                              mode="nearest")
    assert torch.equal(regions.view(6, 7, 7), resized.squeeze(1).int())


def test_mwm_reference_3d_counts_match_per_region():
    gen = torch.Generator().manual_seed(4)
    regions = (torch.rand(3, 4 * 4 * 4, generator=gen) > 0.7).int()
    active = ref.mwm_reference_masking(regions.view(3, 4, 4, 4), (4, 4, 4), 0.8, 0.4,
                                       generator=gen)
    ours = mwm.generate_masks((4, 4, 4), policy="per_region", region_ratios=(0.4, 0.8),
                              regions=regions)
    assert torch.equal(mwm_counts(ours), ref.masked_counts(active, active=True))


def test_hpm_masks_the_hardest_and_a_random_rest():
    gen = torch.Generator().manual_seed(5)
    loss_pred = torch.rand(4, 49, generator=gen)  # distinct values
    mask, ids_restore = ref.hpm_loss_guided_masking(loss_pred, 0.75, 0.5,
                                                    rng=np.random.default_rng(0))
    keep = int(49 * 0.25)
    hard = int((49 - keep) * 0.5)
    assert torch.equal(ref.masked_counts(mask), torch.full((4,), 49 - keep))
    hardest = torch.topk(loss_pred, hard, dim=1).indices
    assert torch.all(torch.gather(mask, 1, hardest) == 1)
    ours = mwm.generate_masks((7, 7), policy="loss_guided", ratio=0.75, hard_share=0.5,
                              scores=loss_pred)
    assert torch.equal(mwm_counts(ours), ref.masked_counts(mask))
    assert torch.all(torch.gather(ours.mask, 1, hardest))
    # the rest is random: two generators disagree somewhere outside the hardest set
    other, _ = ref.hpm_loss_guided_masking(loss_pred, 0.75, 0.5, rng=np.random.default_rng(1))
    assert not torch.equal(other, mask)


@pytest.mark.parametrize("grid,count,min_patches", [((14, 14), 78, 16), ((14, 14), 75, 16),
                                                    ((4, 4), 5, 16), ((7, 7), 30, 4)])
def test_beit_block_generator_keeps_the_exact_count(grid, count, min_patches):
    gen = ref.BeitBlockMaskGenerator(grid, count, min_num_patches=min_patches, seed=0)
    masks = ref.beit_block_masking(gen, 20)
    assert masks.shape == (20, *grid)
    assert set(np.unique(masks)) <= {0, 1}
    assert torch.equal(ref.masked_counts(masks), torch.full((20,), count))


def test_beit_block_generator_places_blocks_and_agrees_with_mwm_block():
    gen = ref.BeitBlockMaskGenerator((14, 14), int(196 * 0.4), min_num_patches=16, seed=1)
    masks = ref.beit_block_masking(gen, 8)
    # blocks, not scattered patches: most masked patches have a masked 4-neighbour
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    neighbours = (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2]
                  + padded[:, 1:-1, 2:])
    assert ((neighbours > 0) & (masks == 1)).sum() > 0.9 * masks.sum()
    ours = mwm.generate_masks((14, 14), 8, policy="block", ratio=0.4, rounding="floor_mask",
                              block_min_patches=16)
    assert torch.equal(mwm_counts(ours), ref.masked_counts(masks))
    again = ref.beit_block_masking(ref.BeitBlockMaskGenerator((14, 14), 78, seed=1), 8)
    assert np.array_equal(again, masks)


def test_simmim_masks_coarse_cells_with_ceil_count():
    gen = ref.SimMIMMaskGenerator(224, 32, 16, 0.6, seed=0)
    masks = ref.simmim_masking(gen, 6)
    assert masks.shape == (6, 14, 14)
    assert torch.equal(ref.masked_counts(masks), torch.full((6,), math.ceil(49 * 0.6) * 4))
    # constant over each 2x2 block of model patches
    cells = masks.reshape(6, 7, 2, 7, 2)
    assert np.all(cells == cells[:, :, :1, :, :1])
    ours = mwm.generate_masks((14, 14), 6, policy="coarse", ratio=0.6, coarse_factor=2,
                              rounding="ceil_mask")
    assert torch.equal(mwm_counts(ours), ref.masked_counts(masks))


@pytest.mark.parametrize("call,argument", [
    (lambda: ref.mae_random_masking(2, 16, 1.5), "mask_ratio"),
    (lambda: ref.mae_random_masking(0, 16, 0.5), "batch"),
    (lambda: ref.mwm_reference_masking(torch.zeros(2, 4, 4), (4, 4), 0.8, -0.1), "low_ratio"),
    (lambda: ref.mwm_reference_masking(torch.zeros(4, 4), (4, 4), 0.8, 0.4), "region_map"),
    (lambda: ref.hpm_loss_guided_masking(torch.zeros(2, 3, 4), 0.75, 0.5), "loss_pred"),
    (lambda: ref.BeitBlockMaskGenerator((4, 4), 17), "num_masking_patches"),
    (lambda: ref.SimMIMMaskGenerator(224, 30, 16), "mask_patch_size"),
])
def test_references_reject_bad_arguments_by_name(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_timing_helpers():
    calls = []
    result = timing.median_time(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and result.repeats == 4 and result.median_s >= 0
    with pytest.raises(ValueError, match="repeats"):
        timing.median_time(lambda: None, repeats=0)
    peak = timing.peak_memory_bytes(lambda: torch.ones(64 << 20, dtype=torch.uint8) + 1)
    if peak is not None:  # Linux: touching 2 x 64 MiB must show up in the peak
        assert peak >= 64 << 20
    assert timing.copy_bandwidth(8 << 20, repeats=2) > 0
    assert timing.bandwidth_share(2e9, 1.0, 4e9) == pytest.approx(0.5)
    info = timing.machine_info()
    assert info["torch_threads"] == torch.get_num_threads() and info["torch"] == torch.__version__


@pytest.mark.slow
def test_speed_quick_writes_json_with_every_row(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert bench_main(["speed", "--quick", "--plain", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["quick"] is True
    assert doc["machine"]["torch_threads"] >= 1 and doc["machine"]["cpu"]
    expected = {
        "B=256 14x14": {"random (MAE)", "per_region (MWM)", "loss_guided (HPM)",
                        "block (BEiT v2)", "coarse (SimMIM)", "text-guided, nearest",
                        "text-guided, area mean"},
        "B=128 7x7": {"random (MAE)", "random (SparK)", "per_region (MWM)",
                      "loss_guided (HPM)", "text-guided, nearest", "text-guided, area mean"},
        "B=8 8x8x8": {"random (MAE)", "per_region (MWM)", "loss_guided (HPM)",
                      "text-guided, nearest", "text-guided, area mean"},
    }
    masking_rows = [r for r in doc["rows"] if r["section"] in ("masking", "text")]
    for size, cases in expected.items():
        assert {r["case"] for r in masking_rows if r["size"] == size} == cases
    for row in masking_rows:
        assert row["ours_ms"] > 0 and row["reference_ms"] > 0
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["reference_ms"])
        if row["case"] != "text-guided, area mean":
            assert row["counts_match"] is True, row
    assert any("per_region" in t["target"] for t in doc["targets"])
    # The loss and CORAL sections are part of the quick run: one row per size, each measured.
    loss_rows = [r for r in doc["rows"] if r["section"] == "loss"]
    coral_rows = [r for r in doc["rows"] if r["section"] == "coral"]
    assert {r["size"] for r in loss_rows} == {case.name for case in speed_loss.QUICK_CASES}
    assert {r["size"] for r in coral_rows} == {f"n={n} m={m} d={d} float32"
                                               for n, m, d in speed_coral.DEFAULT_SIZES}
    for row in loss_rows + coral_rows:
        assert row["ours_ms"] > 0 and row["reference_ms"] > 0, row
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["reference_ms"]), row
    printed = capsys.readouterr().out
    assert "mwm/ref" in printed and "torch threads" in printed
    assert out.with_suffix(".md").read_text().startswith("| case |")


def test_speed_runs_standalone_and_rejects_bad_options(tmp_path):
    env_run = [sys.executable, "-m", "mwm.bench.speed", "--sections", "bogus"]
    done = subprocess.run(env_run, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "--sections='bogus'" in done.stderr
    with pytest.raises(SystemExit, match="--repeats=0"):
        speed.main(["--repeats", "0", "--out", str(tmp_path / "x.json")])


def _row(case, size, ours, reference):
    return {"section": "masking", "case": case, "size": size, "reference": "ref",
            "ours_ms": ours, "reference_ms": reference, "ratio": ours / reference,
            "ours_min_ms": ours, "reference_min_ms": reference}


def test_targets_follow_the_medians():
    rows = [_row("per_region (MWM)", "B=256 14x14", 2.0, 50.0),
            _row("random (MAE)", "B=256 14x14", 1.0, 3.0),
            _row("per_region (MWM)", "B=8 8x8x8", 1.0, 10.0)]
    targets = {(t["target"].split()[0], t["size"], t["unit"]): t
               for t in speed_targets.evaluate_targets(rows)}
    assert targets[("per_region", "B=256 14x14", "x faster")]["met"]  # 25x
    assert not targets[("per_region", "B=8 8x8x8", "x faster")]["met"]  # 10x
    versus_mae = targets[("per_region", "B=256 14x14", "mwm / MAE")]
    assert versus_mae["value"] == pytest.approx(2.0 / 3.0) and versus_mae["met"]
    assert targets[("random", "B=256 14x14", "mwm / MAE")]["value"] == pytest.approx(1 / 3)


def test_the_targets_name_the_sizes_the_benchmark_measures():
    labels = [size.label for size in speed.FULL_SIZES]
    assert speed_targets.VIT_SIZE == labels[0]
    targets = speed_targets.SPEEDUP_TARGETS + speed_targets.BANDWIDTH_TARGETS
    named = {size for _, _, size, *_ in targets if size.startswith("B=")}
    assert named <= set(labels)


def test_rows_in_another_format_get_a_table_of_their_own():
    foreign = {"section": "loss", "case": "2d", "method": "eager", "median_ms": 1.5,
               "machine": "x86_64", "threads": 2}
    text = speed_report.markdown_table([_row("random (MAE)", "B=8 8x8x8", 1.0, 2.0), foreign])
    main, other = text.split("\n\n**loss**\n\n")
    assert "| random (MAE) | B=8 8x8x8 | ref | 1.000 | 2.000 | 0.500 | 2.0x |" in main
    assert other.splitlines()[0] == "| case | method | median_ms |"
    assert other.splitlines()[2] == "| 2d | eager | 1.5 |"
