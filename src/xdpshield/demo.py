"""The demo: the same SYN flood twice, without and with the shield, while real clients connect.

Library only: ``run_demo`` drives the stand and reports each second through a
callback; ``cli.py`` renders the live view and the summary. Everything it
creates is removed in a ``finally``, so Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import netns
from .datapath import Reason
from .errors import XdpShieldError
from .shield import Shield
from .stand import Stand
from .traffic import FloodResult, LegitResult, LegitSample, flood, legit_load, serve_http

__all__ = ["DemoResult", "DemoTick", "PhaseResult", "plot_demo", "run_demo"]

PORT = 80


@dataclass(frozen=True)
class DemoTick:
    """One second of one phase, for a live view."""

    phase: str
    t: int
    flood_pps: float
    legit_completed: int
    legit_failed: int
    legit_p50_ms: float | None
    shield: dict[str, int]  # reason label -> packets in this second (empty without)


@dataclass
class PhaseResult:
    name: str
    shield: bool
    legit: dict[str, Any]
    flood: dict[str, Any]
    softirq_cpu_pct: float
    verdicts: dict[str, int] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)

    @property
    def legit_success_pct(self) -> float:
        return 100.0 * float(self.legit["success"])

    def summary(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "legit_success_pct": round(self.legit_success_pct, 2),
            "legit_attempted": self.legit["attempted"],
            "legit_completed": self.legit["completed"],
            "connect_p50_ms": self.legit["p50_ms"],
            "connect_p99_ms": self.legit["p99_ms"],
            "flood_pps": round(float(self.flood["pps"])),
            "syn_cookies_per_s": round(
                self.verdicts.get(Reason.SYN_COOKIE_SENT.label, 0)
                / max(float(self.flood["seconds"]), 1e-9)
            ),
            "softirq_cpu_pct": round(self.softirq_cpu_pct, 1),
        }


@dataclass
class DemoResult:
    quick: bool
    seconds_per_phase: float
    handshake: str
    phases: list[PhaseResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "seconds_per_phase": self.seconds_per_phase,
            "handshake": self.handshake,
            "summary": [p.summary() for p in self.phases],
            "phases": [asdict(p) for p in self.phases],
        }


def _cpu_times() -> tuple[int, int]:
    """(softirq, total) jiffies over all CPUs: the stand shares the host's CPUs."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[6], sum(fields[:8])


def _run_phase(
    stand: Stand,
    name: str,
    with_shield: bool,
    seconds: float,
    clients: int,
    on_tick: Callable[[DemoTick], None] | None,
) -> PhaseResult:
    shield: Shield | None = None
    if with_shield:
        with netns.enter(stand.ns("server")):
            shield = Shield.load(stand.server_if, ports=[PORT], xdp_mode="native")
    try:
        return _measure(stand, name, shield, seconds, clients, on_tick)
    finally:
        if shield is not None:
            with netns.enter(stand.ns("server")):
                shield.unload()


def _measure(
    stand: Stand,
    name: str,
    shield: Shield | None,
    seconds: float,
    clients: int,
    on_tick: Callable[[DemoTick], None] | None,
) -> PhaseResult:
    samples: dict[int, LegitSample] = {}
    flood_sent: list[tuple[float, int]] = [(0.0, 0)]
    out: dict[str, Any] = {}
    errors: list[BaseException] = []
    # The flood starts a second after the clients and stops a second before
    # them, so the plot shows the service before, during and after it.
    flood_s = max(1.0, seconds - 2.0)

    def legit() -> None:
        try:
            out["legit"] = legit_load(
                stand,
                n_clients=clients,
                duration_s=seconds,
                port=PORT,
                server=False,
                on_sample=lambda s: samples.__setitem__(s.t, s),
            )
        except BaseException as exc:
            errors.append(exc)

    def attack() -> None:
        try:
            time.sleep(1.0)
            out["flood"] = flood(
                "syn",
                stand=stand,
                duration_s=flood_s,
                dport=PORT,
                workers=1,
                on_progress=lambda sent, el: flood_sent.append((el, sent)),
                progress_interval_s=0.5,
            )
        except BaseException as exc:
            errors.append(exc)

    before = shield.stats() if shield else {}
    cpu0 = _cpu_times()
    with serve_http(stand, port=PORT):
        threads = [threading.Thread(target=f, daemon=True) for f in (legit, attack)]
        for t in threads:
            t.start()
        series: list[dict[str, Any]] = []
        last_stats = before
        last_sent, last_t = 0, 0.0
        t0 = time.monotonic()
        sec = 0
        while any(t.is_alive() for t in threads):
            time.sleep(max(0.0, t0 + sec + 1 - time.monotonic()))
            el, sent = flood_sent[-1]
            pps = (sent - last_sent) / (el - last_t) if el > last_t else 0.0
            last_sent, last_t = (sent, el) if el > last_t else (last_sent, last_t)
            now = shield.stats() if shield else {}
            delta = {r.label: now[r][0] - last_stats.get(r, (0, 0))[0] for r in now}
            last_stats = now
            s = samples.get(sec)
            tick = DemoTick(
                name,
                sec,
                pps,
                s.completed if s else 0,
                s.failed if s else 0,
                s.p50_ms if s else None,
                {k: v for k, v in delta.items() if v},
            )
            series.append(asdict(tick))
            if on_tick is not None:
                on_tick(tick)
            sec += 1
            if time.monotonic() - t0 > seconds + 60:  # both are bounded; belt and braces
                raise XdpShieldError(f"demo phase {name} overran its time")
    cpu1 = _cpu_times()
    if errors:
        raise errors[0]
    after = shield.stats() if shield else {}
    verdicts = {r.label: after[r][0] - before.get(r, (0, 0))[0] for r in after}
    legit_res: LegitResult = out["legit"]
    flood_res: FloodResult = out["flood"]
    d_soft, d_total = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    return PhaseResult(
        name=name,
        shield=shield is not None,
        legit=legit_res.to_dict(),
        flood=flood_res.to_dict(),
        softirq_cpu_pct=100.0 * d_soft / d_total if d_total else 0.0,
        verdicts=verdicts,
        series=series,
    )


def run_demo(
    out_dir: Path,
    *,
    quick: bool = False,
    prefix: str | None = None,
    on_tick: Callable[[DemoTick], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> DemoResult:
    """Bring a stand up, run both phases, write demo.json and demo.png, tear down."""
    seconds = 8.0 if quick else 25.0
    clients = 8 if quick else 16
    stand = Stand(prefix=prefix or netns.unique_prefix("xsdemo"))
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if on_phase:
            on_phase(f"stand {stand.prefix} up")
        stand.up()
        phases = []
        for name, with_shield in (("without shield", False), ("with shield", True)):
            if on_phase:
                on_phase(name)
            phases.append(_run_phase(stand, name, with_shield, seconds, clients, on_tick))
    finally:
        stand.down()
    result = DemoResult(quick, seconds, "reset", phases)
    (out_dir / "demo.json").write_text(json.dumps(result.to_dict(), indent=2))
    plot_demo(result, out_dir / "demo.png")
    return result


def plot_demo(result: DemoResult, path: Path) -> None:
    """Legit connections per second and flood rate over time, both runs side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result.phases), figsize=(12, 4.5), sharey=True, squeeze=False)
    twins = []
    for ax, phase in zip(axes[0], result.phases, strict=True):
        t = [s["t"] for s in phase.series]
        ok = [s["legit_completed"] for s in phase.series]
        bad = [s["legit_failed"] for s in phase.series]
        ax.plot(t, ok, color="tab:green", label="legit connections completed /s")
        ax.plot(t, bad, color="tab:red", label="legit connections failed /s")
        ax.set_xlabel("seconds")
        ax.set_title(f"{phase.name}: {phase.legit_success_pct:.1f}% legit success")
        ax2 = ax.twinx()
        ax2.fill_between(
            t,
            [s["flood_pps"] / 1e6 for s in phase.series],
            color="tab:gray",
            alpha=0.25,
            step="mid",
            label="SYN flood (Mpps)",
        )
        ax2.set_ylabel("flood Mpps")
        twins.append(ax2)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("connections per second")
    handles, labels = [], []
    for a in (axes[0][0], twins[0]):
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="lower center", ncol=3)
    fig.suptitle("xdpshield demo: spoofed SYN flood against a real HTTP server")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
