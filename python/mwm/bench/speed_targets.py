"""The speed targets of `mwm-bench speed` (issue 13's and the earlier ones), judged on the rows
of one run: speed-ups over the references and shares of the copy bandwidth, at every thread
count the rows were measured at."""

from __future__ import annotations

from typing import List, Optional, Sequence

GUIDED_VS_LOOP_TARGET = 20.0
VIT_SIZE = "B=256 14x14"  # ViT-B/16 at 224 px: the size of the MAE comparisons


def _find(rows: Sequence[dict], case: str, size: str,
          reference: Optional[str] = None) -> Optional[dict]:
    return next((r for r in rows if r.get("case") == case and r.get("size") == size
                 and (reference is None or reference in str(r.get("reference", "")))), None)


def _speedup_target(rows, target, case, size, minimum, reference=None) -> Optional[dict]:
    row = _find(rows, case, size, reference)
    if row is None or not row.get("ours_ms") or not row.get("reference_ms"):
        return None
    speedup = row["reference_ms"] / row["ours_ms"]
    best = None
    if row.get("ours_min_ms") and row.get("reference_min_ms"):
        best = row["reference_min_ms"] / row["ours_min_ms"]
    return {"target": target, "size": size, "value": speedup, "best": best,
            "unit": "x faster", "met": speedup >= minimum}


def _bandwidth_target(rows, target, case, size, minimum) -> Optional[dict]:
    row = _find(rows, case, size)
    if row is None or row.get("bandwidth_share") is None:
        return None
    share = row["bandwidth_share"]
    return {"target": target, "size": size, "value": 100 * share, "best": None,
            "unit": "% of copy bandwidth", "met": share >= minimum}


# Issue 13's targets: (label, case, size, reference substring or None, minimum speed-up).
SPEEDUP_TARGETS = (
    ("13: text-guided nearest >= 10x the MWM reference", "text-guided, nearest", "B=128 7x7",
     None, 10.0),
    ("13: per_region >= 50x the MWM per-sample loop", "per_region (MWM)", "B=256 14x14", None,
     50.0),
    ("13: per_region >= 6x the MWM per-sample loop", "per_region (MWM)", "B=8 8x8x8", None, 6.0),
    ("13: random >= 8x MAE random_masking", "random (MAE)", "B=256 14x14", None, 8.0),
    ("13: text-guided area mean >= 3x threshold + resize + loop", "text-guided, area mean",
     "B=128 7x7", None, 3.0),
    ("13: coral_loss >= 1.2x eager PyTorch", "coral_loss forward+backward",
     "n=6400 m=6400 d=32 float32", "eager", 1.2),
    ("13: coral_loss >= 1.0x torch.compile", "coral_loss forward+backward",
     "n=6400 m=6400 d=32 float32", "torch.compile", 1.0),
    ("13: coral_loss >= 1.2x eager PyTorch", "coral_loss forward+backward",
     "n=6400 m=6400 d=256 float32", "eager", 1.2),
    ("13: coral_loss >= 1.0x torch.compile", "coral_loss forward+backward",
     "n=6400 m=6400 d=256 float32", "torch.compile", 1.0),
    ("13: fused loss 3D >= 1.5x torch.compile", "MAE loss, norm_pix_loss, forward + backward",
     "3d B=8 1x128^3 p16", "torch.compile", 1.5),
)
# (label, case, size, minimum share of the copy bandwidth)
BANDWIDTH_TARGETS = (
    ("13: area-mean pooling >= 50% of copy bandwidth", "area-mean pooling alone", "B=128 7x7",
     0.5),
    ("13: fused loss 2D >= 60% of copy bandwidth", "MAE loss, norm_pix_loss, forward + backward",
     "2d B=64 3x224x224 p16", 0.6),
    ("13: fused loss 3D >= 60% of copy bandwidth", "MAE loss, norm_pix_loss, forward + backward",
     "3d B=8 1x128^3 p16", 0.6),
)


def _targets_at_one_thread_count(rows: Sequence[dict]) -> List[dict]:
    targets = []
    # The earlier targets: guided masking >= 20x the MWM loop (every size), and no slower than
    # MAE's random_masking at B=256 14x14.
    for size in dict.fromkeys(r.get("size") for r in rows if r.get("case") == "per_region (MWM)"):
        guided = _find(rows, "per_region (MWM)", size)
        if guided is not None:
            speedup = guided["reference_ms"] / guided["ours_ms"]
            targets.append({
                "target": f"per_region >= {GUIDED_VS_LOOP_TARGET:.0f}x faster than the MWM loop",
                "size": size, "value": speedup,
                "best": guided["reference_min_ms"] / guided["ours_min_ms"], "unit": "x faster",
                "met": speedup >= GUIDED_VS_LOOP_TARGET})
    vit = VIT_SIZE
    guided = _find(rows, "per_region (MWM)", vit)
    mae = _find(rows, "random (MAE)", vit)
    for case, row in (("per_region", guided), ("random", mae)):
        if row is not None and mae is not None:
            ratio = row["ours_ms"] / mae["reference_ms"]
            targets.append({
                "target": f"{case} no slower than MAE random_masking (time ratio <= 1)",
                "size": vit, "value": ratio,
                "best": row["ours_min_ms"] / mae["reference_min_ms"], "unit": "mwm / MAE",
                "met": ratio <= 1.0})
    for label, case, size, reference, minimum in SPEEDUP_TARGETS:
        target = _speedup_target(rows, label, case, size, minimum, reference)
        if target is not None:
            targets.append(target)
    for label, case, size, minimum in BANDWIDTH_TARGETS:
        target = _bandwidth_target(rows, label, case, size, minimum)
        if target is not None:
            targets.append(target)
    return targets


def evaluate_targets(rows: Sequence[dict]) -> List[dict]:
    """The targets, judged on medians (``best``: the same from the fastest runs), separately at
    every thread count the rows were measured at (``threads`` of each target)."""
    by_threads: dict = {}
    for row in rows:
        by_threads.setdefault(row.get("threads"), []).append(row)
    targets = []
    for threads, group in by_threads.items():
        for target in _targets_at_one_thread_count(group):
            target["threads"] = threads
            targets.append(target)
    return targets
