"""What `mwm-bench ratios` writes: the console table, results.json, results.md, the accuracy vs
effective-ratio plot and example mask overlays."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

COLUMNS = (
    ("dataset", "dataset"),
    ("model", "model"),
    ("config", "config"),
    ("eff. ratio", "effective_ratio"),
    ("lesion ratio", "lesion_ratio"),
    ("bg ratio", "background_ratio"),
    ("accuracy %", "accuracy"),
    ("lesion Dice %", "dice"),
)


def _fmt(mean: Optional[float], std: Optional[float], scale: float = 1.0, digits: int = 1) -> str:
    if mean is None:
        return "-"
    text = f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def table_rows(summary: Sequence[dict]) -> List[List[str]]:
    rows = []
    for r in summary:
        row = [r["dataset"], r["model"], r["config"]]
        for _, key in COLUMNS[3:6]:
            row.append(_fmt(r[f"{key}_mean"], None, digits=3))
        row.append(_fmt(r["accuracy_mean"], r["accuracy_std"], 100.0))
        row.append(_fmt(r["dice_mean"], r["dice_std"], 100.0))
        rows.append(row)
    return rows


COMPARISON_COLUMNS = ("dataset", "model", "config", "vs", "Δ accuracy [95 % CI]", "accuracy",
                      "Δ Dice [95 % CI]", "Dice", "seeds")


def _fmt_diff(row: Optional[dict]) -> str:
    if row is None:
        return "-"
    text = f"{100 * row['mean_diff']:+.1f}"
    if row["ci95_low"] is None:
        return text
    return f"{text} [{100 * row['ci95_low']:+.1f}, {100 * row['ci95_high']:+.1f}]"


def comparison_rows(comparisons: Sequence[dict]) -> List[List[str]]:
    """One row per (dataset, model, config, baseline): accuracy and Dice differences in points."""
    keyed: Dict[tuple, Dict[str, dict]] = {}
    for c in comparisons:
        key = (c["dataset"], c["model"], c["config"], c["baseline"])
        keyed.setdefault(key, {})[c["metric"]] = c
    rows = []
    for key, metrics in keyed.items():
        acc, dice = metrics.get("accuracy"), metrics.get("dice")
        seeds = max(m["n_seeds"] for m in metrics.values())
        rows.append([*key, _fmt_diff(acc), acc["verdict"] if acc else "-", _fmt_diff(dice),
                     dice["verdict"] if dice else "-", str(seeds)])
    return rows


def learning_lines(learning: Sequence[dict]) -> List[str]:
    out = []
    for e in learning:
        where = f"{e['dataset']}/{e['model']}"
        if e["learned"] is None:
            out.append(f"{where}: no unpretrained ('none') runs, so whether pretraining helped "
                       "was not checked")
            continue
        gain = f"{100 * e['gain']:+.1f} accuracy points over the unpretrained encoder (mean of " \
               f"the pretrained configurations' paired differences)"
        if e["learned"]:
            out.append(f"{where}: pretraining gained {gain}: it learned")
        else:
            out.append(f"{where}: pretraining gained {gain}, less than "
                       f"{100 * e['min_gain']:.0f}: the model did not learn, so no verdicts "
                       "are given for it")
    return out


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return _aligned(header, rows)


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plain_table(summary: Sequence[dict]) -> str:
    header = [c[0] for c in COLUMNS]
    return _aligned(header, table_rows(summary))


def markdown_table(summary: Sequence[dict]) -> str:
    header = [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(summary)]
    return "\n".join(lines)


def print_comparisons(comparisons: Sequence[dict], learning: Sequence[dict],
                      plain: bool = False) -> None:
    """The paired differences (points, text-guided minus random) and the learning checks."""
    title = ("Paired differences over seeds, text-guided minus random (points; 95 % t-interval; "
             "the verdict follows from the interval)")
    rows = comparison_rows(comparisons)
    printed = False
    if rows and not plain:
        try:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=title)
            for name in COMPARISON_COLUMNS:
                left = name in COMPARISON_COLUMNS[:4]
                table.add_column(name, justify="left" if left else "right")
            for row in rows:
                table.add_row(*row)
            Console(width=max(120, Console().width)).print(table)
            printed = True
        except ImportError:
            pass
    if rows and not printed:
        print(title)
        print(_text_table(COMPARISON_COLUMNS, rows))
    for line in learning_lines(learning):
        print(line)


def print_table(summary: Sequence[dict], plain: bool = False, title: str = "") -> None:
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if plain:
        if title:
            print(title)
        print(plain_table(summary))
        return
    table = Table(title=title or None)
    for name, _ in COLUMNS:
        left = name in ("dataset", "model", "config")
        table.add_column(name, justify="left" if left else "right")
    for row in table_rows(summary):
        table.add_row(*row)
    Console(width=max(120, Console().width)).print(table)


def _json_ready(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def machine_info() -> Dict[str, object]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def write_results(doc: dict, out: Path, command: str) -> Dict[str, Path]:
    """results.json, results.md, ratios.png and overlays_<dataset>.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in doc.items() if not k.startswith("_") and k != "masks"}
    public["command"] = command
    public["machine"] = machine_info()
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(_json_ready(public), indent=2) + "\n")
    paths["markdown"].write_text(markdown_report(public))
    plot = plot_accuracy_vs_ratio(doc["summary"], out / "ratios.png", doc.get("comparisons"))
    if plot is not None:
        paths["plot"] = plot
    for data in doc.get("_prepared", []):
        from .ratios import example_masks

        masks = example_masks(data, doc["_configs"], doc["_settings"])
        overlay = out / f"overlays_{data.name}.png"
        paths[f"overlay_{data.name}"] = plot_overlays(data, masks, overlay)
    return paths


def markdown_report(public: dict) -> str:
    s = public["settings"]
    lines = [
        "# mwm-bench ratios",
        "",
        f"Command: `{public['command']}`  ",
        f"Elapsed: {public['elapsed_seconds']:.0f} s on {public['machine']['cpu_count']} CPUs"
        + (f" ({public['cpu_seconds']:.0f} s CPU time)" if public.get("cpu_seconds") else "")
        + f", {public['world_size']} process(es), {public.get('workers', 1)} worker(s), "
        f"{public['torch_threads']} torch thread(s) each, device {public['device']}"
        + (f"; load average {' / '.join(f'{v:.1f}' for v in public['load_average'])} "
           "(1 / 5 / 15 min) at the end" if public.get("load_average") else "") + ".",
        "",
        f"Pretraining: {s['epochs']} epoch{'s' if s['epochs'] != 1 else ''} over "
        f"{s['pretrain_samples']} images, batch "
        f"{s['batch_size']}, seeds {', '.join(map(str, s['seeds']))}. Probes: frozen encoder, "
        "position-wise linear classifier (a 1x1 conv on the feature maps, logits pooled over "
        "positions by log-sum-exp; accuracy) and a per-pixel linear head on the feature maps "
        "(lesion Dice, images with a lesion only). `eff. ratio` is measured from "
        "the masks drawn during pretraining (mean of num_masked / N); `lesion ratio` and "
        "`bg ratio` are the shares of lesion / non-lesion patches that were masked.",
        "",
        markdown_table(public["summary"]),
        "",
    ]
    if public.get("comparisons"):
        lines += [
            "Paired differences over seeds, text-guided minus random, in points: the mean of the "
            "per-seed differences (same initialization, data order and probe randomness per "
            "seed) and its 95 % t-interval; *better* / *worse* when the interval excludes 0, "
            "else *no detectable difference*.",
            "",
            _markdown(COMPARISON_COLUMNS, comparison_rows(public["comparisons"])),
            "",
        ]
    lines += [f"- {line}." for line in learning_lines(public.get("learning", []))]
    for name, info in public.get("datasets", {}).items():
        share = ""
        if info.get("lesion_pixel_share") is not None:
            share = f"; lesions cover {100 * info['lesion_pixel_share']:.1f} % of a lesion image"
        lines.append(
            f"- `{name}`: classes {', '.join(info['classes'])}; prompt `{info['prompt']}`; "
            f"grid {'x'.join(map(str, info['grid']))}; {info['pretrain']} pretrain / "
            f"{info['train']} probe-train / {info['test']} test images{share}; the grounded "
            f"ROI holds {100 * info['roi_patch_share']:.1f} % of the patches."
        )
    models = {}
    for r in public.get("runs", []):
        models.setdefault(r["model"], r.get("parameters"))
    if models:
        lines.append("- parameters (encoder + decoder): " + ", ".join(
            f"{m} {p:,}" for m, p in models.items() if p is not None) + ".")
    lines.append("")
    return "\n".join(lines)


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _forest(ax, rows: Sequence[dict], metric: str, key) -> None:
    """Paired differences with their 95 % intervals, one line per (config, baseline)."""
    colors = {"better": "tab:blue", "worse": "tab:red"}
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        mean = 100 * r["mean_diff"]
        if r["ci95_low"] is not None:
            ax.plot([100 * r["ci95_low"], 100 * r["ci95_high"]], [y, y],
                    color=colors.get(r["verdict"], "gray"), lw=2)
        ax.plot([mean], [y], "o", color=colors.get(r["verdict"], "gray"))
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['config']} - {r['baseline']}" for r in rows][::-1], fontsize=7)
    ax.set_xlabel(f"paired Δ {'accuracy' if metric == 'accuracy' else 'lesion Dice'} "
                  "(points, 95 % CI)")
    did_not_learn = any(r["verdict"].startswith("not judged") for r in rows)
    ax.set_title(f"{key[0]} / {key[1]}" + (": did not learn, no verdict" if did_not_learn else ""),
                 fontsize=9)
    ax.grid(alpha=0.3, axis="x")


def plot_accuracy_vs_ratio(summary: Sequence[dict], path: Path,
                           comparisons: Optional[Sequence[dict]] = None) -> Optional[Path]:
    """One panel column per (dataset, model): accuracy and Dice against the effective ratio
    (the unpretrained reference as a dashed line), then the paired differences of every
    text-guided configuration to every random one with their 95 % intervals (blue: better,
    red: worse, gray: no detectable difference)."""
    panels = []
    for r in summary:
        key = (r["dataset"], r["model"])
        if key not in panels:
            panels.append(key)
    if not panels:
        return None
    plt = _matplotlib()
    comparisons = list(comparisons or [])
    rows_n = 4 if comparisons else 2
    size = (max(8.0, 4.6 * len(panels)), 3.5 * rows_n)
    fig, axes = plt.subplots(rows_n, len(panels), figsize=size, squeeze=False)
    for col, key in enumerate(panels):
        for row_i, metric in enumerate(("accuracy", "dice"), start=2):
            if not comparisons:
                break
            rows = [c for c in comparisons
                    if (c["dataset"], c["model"]) == key and c["metric"] == metric]
            _forest(axes[row_i, col], rows, metric, key)
        rows = [r for r in summary if (r["dataset"], r["model"]) == key]
        for row_i, metric in enumerate(("accuracy", "dice")):
            ax = axes[row_i, col]
            for r in rows:
                mean, std = r[f"{metric}_mean"], r[f"{metric}_std"]
                if mean is None:
                    continue
                if r["effective_ratio_mean"] is None:
                    ax.axhline(100 * mean, color="gray", ls="--", lw=1,
                               label=f"{r['config']} (no pretraining)")
                    continue
                color = "tab:red" if r["policy"] == "random" else "tab:blue"
                ax.errorbar(r["effective_ratio_mean"], 100 * mean, yerr=100 * (std or 0.0),
                            fmt="o", color=color, capsize=3)
                ax.annotate(r["config"], (r["effective_ratio_mean"], 100 * mean), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
            ax.set_xlabel("effective masking ratio (measured)")
            ax.set_ylabel("linear-probe accuracy %" if metric == "accuracy" else "lesion Dice %")
            ax.set_title(f"{key[0]} / {key[1]}")
            ax.grid(alpha=0.3)
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("random (red) vs text-guided (blue) masking, mean ± std over seeds;\n"
                 "paired differences with 95 % intervals (blue better, red worse, gray no "
                 "detectable difference)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _view_depth(lesion: Optional[torch.Tensor], depth: int) -> int:
    """Depth of the slice shown for a volume: through the most lesion voxels, else the middle."""
    if lesion is not None and bool(lesion.any()):
        return int(lesion.flatten(1).sum(1).argmax())
    return depth // 2


def _slice(t: torch.Tensor, z: int) -> torch.Tensor:
    return t[z] if t.dim() == 3 else t


def plot_overlays(data, masks: Dict[str, torch.Tensor], path: Path) -> Path:
    """Rows: one example per class. Columns: image with lesion outline and heatmap, then the
    patches each configuration masks (shaded)."""
    plt = _matplotlib()
    ex = data.examples
    names = list(masks)
    rows, cols = ex.images.shape[0], 1 + len(names)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, 1.9 * cols), 2.0 * rows), squeeze=False)
    grid = data.grid
    for i in range(rows):
        lesion = None if ex.lesions is None else ex.lesions[i]
        z = _view_depth(lesion, ex.images.shape[2]) if data.ndim == 3 else 0
        image = _slice(ex.images[i, 0], z).numpy()
        outline = None
        if lesion is not None and bool(_slice(lesion, z).any()):
            outline = _slice(lesion, z).numpy().astype(float)
        lo, hi = np.percentile(image, [1, 99])
        ax = axes[i, 0]
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        if ex.heatmaps is not None:
            heat = _slice(ex.heatmaps[i], z).numpy()
            ax.imshow(np.ma.masked_where(heat <= 0, heat), cmap="autumn", alpha=0.4, vmin=0, vmax=1)
        if outline is not None:
            ax.contour(outline, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"{data.class_names[int(ex.labels[i])]}", fontsize=8)
        for j, name in enumerate(names, start=1):
            m = _slice(masks[name][i].reshape(grid).float(), z // data.patch_size)
            up = m.repeat_interleave(data.patch_size, 0).repeat_interleave(data.patch_size, 1)
            ax = axes[i, j]
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
            shaded = np.ma.masked_where(up.numpy() < 0.5, up.numpy())
            ax.imshow(shaded, cmap="bwr", alpha=0.55, vmin=0, vmax=1)
            if outline is not None:
                ax.contour(outline, levels=[0.5], colors="cyan", linewidths=0.8)
            if i == 0:
                ax.set_title(f"{name}", fontsize=8)
            ax.set_xlabel(f"{int(m.sum())}/{m.numel()} masked", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    where = ", slice through the lesion" if data.ndim == 3 else ""
    fig.suptitle(f"{data.name}: heatmap (orange), lesion (cyan), masked patches (red){where}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
