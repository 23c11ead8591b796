"""The benchmark's outputs: bench.json, bench.md (one table per group) and one PNG per group."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

from xdpshield.lab.bench.results import Result, fmt_num

# The backend must be chosen before pyplot is imported: files only, no display.
matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["format_markdown", "write_outputs"]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(results: Sequence[Result], meta: Mapping[str, Any] | None = None) -> str:
    """The results as Markdown tables, one per group."""
    lines: list[str] = ["# xdpshield benchmarks", ""]
    if meta:
        lines += [", ".join(f"{k}: {v}" for k, v in meta.items()), ""]
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    for group, rows in groups.items():
        lines += [f"## {group}", ""]
        lines.append(
            "| measurement | unit | value | ± | baseline | baseline value | ratio | goal | met "
            "| note |"
        )
        lines.append("|---|---|---:|---:|---|---:|---:|---|---|---|")
        for r in rows:
            if r.skipped is not None:
                lines.append(
                    f"| {_md_escape(r.name)} | {r.unit} | — | — | {r.baseline or '—'} | — | — "
                    f"| {r.goal or '—'} | — | not run: {_md_escape(r.skipped)} |"
                )
                continue
            pct = r.spread_pct
            ratio, rr = r.ratio, r.ratio_range
            rtext = f"{ratio:.2f}x" if ratio is not None else "—"
            if ratio is not None and rr is not None and len(r.samples) > 1:
                rtext += f" ({rr[0]:.2f}..{rr[1]:.2f})"
            met = {True: "yes", False: "no", None: "—"}[r.goal_met]
            lines.append(
                f"| {_md_escape(r.name)} | {r.unit} | {fmt_num(r.value, r.unit)} "
                f"| {f'{pct:.1f}%' if pct is not None else '—'} | {r.baseline or '—'} "
                f"| {fmt_num(r.baseline_value, r.unit)} "
                f"| {rtext} | {r.goal or '—'} | {met} "
                f"| {_md_escape(r.note)} |"
            )
        lines.append("")
    lines += [
        "value: median of the repetitions; ±: half their range; ratio: value / baseline "
        "value, both measured in the same run (in brackets: the lowest and highest ratio of "
        "one repetition to the same repetition of the baseline). Goals are reported, not "
        "asserted.",
        "",
    ]
    return "\n".join(lines)


def _plot(results: Sequence[Result], out_dir: Path) -> list[Path]:
    """One horizontal bar chart per group (value with min..max), baselines in grey."""
    groups: dict[str, list[Result]] = {}
    for r in results:
        # "A vs B" rows repeat A's samples against another baseline: one bar is
        # enough. A sample that never came (inf: a fleet trial that timed out)
        # has no bar; the table reports it.
        drawable = all(math.isfinite(x) for x in r.samples)
        if r.skipped is None and r.value is not None and drawable and " vs " not in r.name:
            groups.setdefault(r.group, []).append(r)
    written: list[Path] = []
    baselines = {r.baseline for r in results if r.baseline}
    for group, rows in groups.items():
        units = sorted({r.unit for r in rows})
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
        names = [r.name for r in rows]
        vals = [r.value or 0.0 for r in rows]
        lo = [v - min(r.samples) for v, r in zip(vals, rows, strict=True)]
        hi = [max(r.samples) - v for v, r in zip(vals, rows, strict=True)]
        grey = [r.name in baselines or r.name.startswith(("xdp-", "harness")) for r in rows]
        colors = ["#9e9e9e" if g else "#1f77b4" for g in grey]
        ax.barh(names, vals, xerr=[lo, hi], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(" / ".join(units) + "  (grey: baselines; whiskers: min..max)")
        ax.set_title(f"xdpshield — {group}")
        right = max(max(r.samples) for r in rows)
        for i, r in enumerate(rows):
            if r.ratio is not None:
                ax.annotate(f"  {r.ratio:.2f}x {r.baseline}", (max(r.samples), i),
                            va="center", fontsize=8)  # fmt: skip
        ax.set_xlim(0, right * 1.45 if right > 0 else 1)
        fig.tight_layout()
        path = out_dir / f"{_slug(group)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def write_outputs(
    results: Sequence[Result], out_dir: Path, meta: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write bench.json, bench.md and one PNG per group; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"meta": dict(meta or {}), "results": [r.to_json() for r in results]}
    jpath, mpath = out_dir / "bench.json", out_dir / "bench.md"
    jpath.write_text(json.dumps(doc, indent=2) + "\n")
    mpath.write_text(format_markdown(results, meta))
    return [jpath, mpath, *_plot(results, out_dir)]
