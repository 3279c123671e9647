"""The report of `mwm-bench speed`: the terminal tables (rich or plain), the Markdown written
next to the JSON, and the generated section of docs/speed.md."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from .timing import describe_machine


def _fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.{digits}f}{suffix}"


COLUMNS = ("case", "size", "reference", "mwm ms", "ref ms", "mwm/ref", "speed-up",
           "best mwm/ref", "peak MiB mwm/ref", "copy-bw share", "same counts", "threads")


def table_rows(rows: Sequence[dict]) -> List[List[str]]:
    out = []
    for r in rows:
        ratio = r.get("ratio")
        peak = "-"
        if r.get("ours_peak_mb") is not None or r.get("reference_peak_mb") is not None:
            peak = f"{_fmt(r.get('ours_peak_mb'), 1)} / {_fmt(r.get('reference_peak_mb'), 1)}"
        share = r.get("bandwidth_share")
        best = None
        if r.get("ours_min_ms") and r.get("reference_min_ms"):
            best = r["ours_min_ms"] / r["reference_min_ms"]
        out.append([
            str(r.get("case", "?")), str(r.get("size", "")), str(r.get("reference", "-")),
            _fmt(r.get("ours_ms"), 3), _fmt(r.get("reference_ms"), 3), _fmt(ratio, 3),
            _fmt(1.0 / ratio if ratio else None, 1, "x"), _fmt(best, 3), peak,
            "-" if share is None else f"{100 * share:.0f}%", _fmt(r.get("counts_match")),
            str(r.get("threads", "-")),
        ])
    return out


def is_comparison_row(row: dict) -> bool:
    """Rows in the shared format (mwm.bench.timing) go into the main table; others are shown
    as they come, in a table of their own."""
    return "ours_ms" in row


# Keys repeated on every row of another module's table; the header already says them.
_CONTEXT_KEYS = ("section", "benchmark", "machine", "torch", "threads", "copy_GBps")


def generic_table(rows: Sequence[dict]) -> tuple:
    """(columns, cells) of rows in any format: the union of their keys, in order of appearance."""
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and k not in _CONTEXT_KEYS]
    cells = [[_fmt_any(row.get(k)) for k in columns] for row in rows]
    return columns, cells


def _fmt_any(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(columns, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in body])


def plain_table(rows: Sequence[dict]) -> str:
    return _plain(COLUMNS, table_rows(rows))


def _markdown(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def markdown_table(rows: Sequence[dict]) -> str:
    """The main table, then one table per section whose rows use another format."""
    parts = [_markdown(COLUMNS, table_rows([r for r in rows if is_comparison_row(r)]))]
    for section, group in _other_sections(rows):
        parts.append(f"**{section}**\n\n" + _markdown(*generic_table(group)))
    return "\n\n".join(parts)


def _other_sections(rows: Sequence[dict]) -> List[tuple]:
    groups: dict = {}
    for row in rows:
        if not is_comparison_row(row):
            groups.setdefault(str(row.get("section", "other")), []).append(row)
    return list(groups.items())


def targets_text(targets: Sequence[dict]) -> List[str]:
    lines = []
    for t in targets:
        threads = f", {t['threads']} thread{'s' if t['threads'] != 1 else ''}" if t.get(
            "threads") else ""
        best = f" (best runs: {t['best']:.2f})" if t.get("best") is not None else ""
        lines.append(f"{t['target']} [{t['size']}{threads}]: {t['value']:.2f} {t['unit']}"
                     f"{best} -> {'met' if t['met'] else 'NOT met'}")
    return lines


def print_report(doc: dict, plain: bool) -> None:
    header = [f"machine: {describe_machine(doc['machine'])}",
              f"copy bandwidth: {doc['copy_bandwidth_gbps']:.1f} GB/s; threads "
              f"{', '.join(map(str, doc['settings']['threads']))}; medians of "
              f"{doc['settings']['repeats']} runs after {doc['settings']['warmup']} warm-up; "
              f"mwm/ref < 1 means mwm is faster (best: ratio of the fastest runs)"]
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    main_rows = [r for r in doc["rows"] if is_comparison_row(r)]
    others = [(f"{section} rows", *generic_table(group))
              for section, group in _other_sections(doc["rows"])]
    title = "mwm-bench speed" + (" (--quick)" if doc["settings"]["quick"] else "")
    if plain:
        print("\n".join(header))
        print(plain_table(main_rows))
        for name, columns, cells in others:
            print(f"\n{name}\n{_plain(columns, cells)}")
    else:
        console = Console(width=max(160, Console().width))
        for line in header:
            console.print(line, highlight=False)
        for name, columns, cells in [(title, COLUMNS, table_rows(main_rows))] + others:
            table = Table(title=name)
            for column in columns:
                table.add_column(column, justify="left" if column in COLUMNS[:3] else "right")
            for cells_row in cells:
                table.add_row(*cells_row)
            console.print(table)
    for line in targets_text(doc["targets"]):
        print(line)


DOC_BEGIN = "<!-- mwm-bench speed: begin -->"
DOC_END = "<!-- mwm-bench speed: end -->"


def doc_section(doc: dict) -> str:
    """The generated part of docs/speed.md: the command, the machine, one table per thread
    count, the cost model and the targets."""
    machine = doc["machine"]
    bw = ", ".join(f"{t} thread{'s' if t != 1 else ''}: {v:.1f} GB/s"
                   for t, v in doc["copy_bandwidth_gbps_by_threads"].items())
    lines = [DOC_BEGIN, "",
             f"Generated by `{doc['command'].strip()}` ({doc['elapsed_seconds']:.0f} s).", "",
             f"- machine: {describe_machine(machine)}",
             f"- load average (1, 5, 15 min) after the run: "
             f"{', '.join(f'{v:.2f}' for v in machine.get('load_average_after', ()))}",
             f"- copy bandwidth (dst.copy_(src), 2 x bytes / time), measured before each "
             f"thread count's rows: {bw}",
             f"- medians of {doc['settings']['repeats']} runs after {doc['settings']['warmup']} "
             f"warm-up; mwm/ref < 1 means mwm is faster", ""]
    for threads in doc["settings"]["threads"]:
        rows = [r for r in doc["rows"] if r.get("threads") == threads]
        lines += [f"#### {threads} thread{'s' if threads != 1 else ''}", "",
                  markdown_table(rows), ""]
    lines += ["#### Targets", ""] + [f"- {line}" for line in targets_text(doc["targets"])]
    lines += ["", DOC_END]
    return "\n".join(lines)


def write_doc_section(path: Path, doc: dict) -> None:
    text = path.read_text() if path.exists() else ""
    section = doc_section(doc)
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        tail = rest.split(DOC_END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip() + ("\n\n" if text else "") + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
