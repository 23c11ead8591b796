"""What a benchmark produces: a measurement with its baseline's, and the goal it is held to."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Goal", "Progress", "Result", "fmt_num", "median"]

#: ``progress(what, fraction_done)``; fraction is in [0, 1].
Progress = Callable[[str, float], None]


def no_progress(_what: str, _frac: float) -> None:
    """The ``Progress`` of a caller that wants none."""


@dataclass(frozen=True)
class Goal:
    """A target for the ratio to the baseline, reported next to it (never asserted).

    With ``unit`` set, ``ratio`` bounds the value itself, in that unit: a
    budget of time (seconds to load a million prefixes) is absolute, whatever
    the baseline.
    """

    op: Literal["<=", ">="]
    ratio: float
    source: str = ""  # where the goal comes from, e.g. "issue 3"
    unit: str | None = None

    def met(self, ratio: float | None) -> bool | None:
        if ratio is None or math.isnan(ratio):
            return None
        return ratio <= self.ratio if self.op == "<=" else ratio >= self.ratio

    def __str__(self) -> str:
        if self.unit is not None:
            return f"{self.op} {self.ratio:g} {self.unit}"
        return f"{self.op} {self.ratio:g}x"


def median(xs: Sequence[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


@dataclass(frozen=True)
class Result:
    """One measurement: its samples (one per repetition) and its baseline's, same run.

    ``skipped`` is set (and the samples empty) when the measurement could not run
    here; it says why, so that a missing baseline never silently vanishes.
    """

    name: str
    group: str
    unit: str
    samples: tuple[float, ...] = ()
    baseline: str | None = None
    baseline_samples: tuple[float, ...] = ()
    goal: Goal | None = None
    note: str = ""
    skipped: str | None = None
    higher_is_better: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        """The median of the samples."""
        return median(self.samples)

    @property
    def spread(self) -> float | None:
        """Half the range of the samples (value ± spread covers every repetition)."""
        if not self.samples:
            return None
        return (max(self.samples) - min(self.samples)) / 2

    @property
    def spread_pct(self) -> float | None:
        v, s = self.value, self.spread
        if v is None or s is None or v == 0:
            return None
        return 100.0 * s / v

    @property
    def baseline_value(self) -> float | None:
        return median(self.baseline_samples)

    @property
    def ratio(self) -> float | None:
        """value / baseline value (medians)."""
        v, b = self.value, self.baseline_value
        if v is None or b is None or b == 0:
            return None
        return v / b

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """Min and max of the per-repetition ratios, when samples pair up."""
        pairs = [s / b for s, b in zip(self.samples, self.baseline_samples, strict=False) if b]
        if not pairs or len(self.samples) != len(self.baseline_samples):
            return None
        return min(pairs), max(pairs)

    @property
    def goal_met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.goal.met(self.value if self.goal.unit is not None else self.ratio)

    @property
    def status(self) -> str:
        return "skipped" if self.skipped is not None else "ok"

    def to_json(self) -> dict[str, Any]:
        rr = self.ratio_range
        return {
            "name": self.name,
            "group": self.group,
            "unit": self.unit,
            "status": self.status,
            "value": self.value,
            "spread": self.spread,
            "spread_pct": self.spread_pct,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
            "n": len(self.samples),
            "samples": list(self.samples),
            "baseline": self.baseline,
            "baseline_value": self.baseline_value,
            "baseline_samples": list(self.baseline_samples),
            "ratio": self.ratio,
            "ratio_min": rr[0] if rr else None,
            "ratio_max": rr[1] if rr else None,
            "higher_is_better": self.higher_is_better,
            "goal": str(self.goal) if self.goal else None,
            "goal_source": self.goal.source if self.goal else None,
            "goal_met": self.goal_met,
            "note": self.note,
            "skipped": self.skipped,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }


def fmt_num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if unit == "ns/pkt":
        return f"{x:.1f}"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.2f} M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.3g}" if not float(x).is_integer() else f"{int(x)}"
