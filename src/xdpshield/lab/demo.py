"""The demo: the same SYN flood twice, without and with the shield, while real clients connect.

Library only: ``run_demo`` drives the stand and reports each second through a
callback; ``cli/lab.py`` renders the live view and the summary. Everything it
creates is removed in a ``finally``, so Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

from xdpshield import netns
from xdpshield.errors import TrafficError
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import (
    FloodResult,
    LegitResult,
    LegitSample,
    flood,
    legit_load,
    serve_http,
)
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

# The backend must be chosen before pyplot is imported: files only, no display.
matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["DemoResult", "DemoTick", "PhaseResult", "plot_demo", "run_demo"]

PORT = 80
RETRIES = 1  # as a browser does; needed only if the shield runs reset mode (--handshake)
CONNECT_TIMEOUT_S = 3.0
# Frames per kernel flush of the generator: one is its slowest, steadiest pace.
FLOOD_LIVE_BATCH = 1

# Packets per verdict reason, as Shield.stats() gives them.
ShieldStats = dict[Reason, tuple[int, int]]


@dataclass(frozen=True)
class DemoTick:
    """One second of one phase, for a live view.

    ``legit_*`` are the latest second the clients reported (``legit_t``, in
    seconds since the clients started; None before the first report).
    """

    phase: str
    t: int
    flood_pps: float
    legit_t: int | None
    legit_completed: int
    legit_first_try: int
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
    # Seconds between the clients' start and the flood's start.
    flood_offset_s: float = 0.0
    # (seconds since the clients started, flood pps) from the flood's progress.
    flood_series: list[tuple[float, float]] = field(default_factory=list)
    server_cpu: int | None = None
    server_cpu_busy_pct: float | None = None
    # SYN cookies the server's kernel sent (TcpExt SyncookiesSent) in the phase.
    kernel_syncookies: int = 0
    # The shield's handshake mode in this phase ("" without the shield).
    handshake: str = ""
    # What the stand's shared link did with the clients' frames in the phase
    # (Stand.mux_stats: queued into the flood's stream, sent in it, ...).
    shared_link: dict[str, int] = field(default_factory=dict)

    def legit_under_flood(self) -> tuple[int, int]:
        """(started, completed on the first attempt): connections that
        started in a second the flood ran through, whenever they ended.
        """
        start = self.flood_offset_s
        end = start + float(self.flood["seconds"])
        started = first = 0
        for s in self.legit["series"]:
            if start <= s["t"] and s["t"] + 1 <= end:
                started += s.get("started", 0)
                first += s.get("started_first_try", 0)
        return started, first

    @property
    def legit_success_pct(self) -> float:
        return 100.0 * float(self.legit["success"])

    @property
    def legit_first_try_pct(self) -> float:
        return 100.0 * float(self.legit["first_try_success"])

    def summary(self) -> dict[str, Any]:
        secs = max(float(self.flood["seconds"]), 1e-9)
        delivered = self.flood.get("delivered")
        sent = int(self.flood["sent"])
        started, first = self.legit_under_flood()
        return {
            "phase": self.name,
            "handshake": self.handshake,
            "legit_success_under_flood_pct": (
                round(100.0 * first / started, 2) if started else None
            ),
            "legit_started_under_flood": started,
            "legit_first_try_under_flood": first,
            "legit_first_try_pct": round(self.legit_first_try_pct, 2),
            "legit_success_pct": round(self.legit_success_pct, 2),
            "legit_attempted": self.legit["attempted"],
            "legit_completed": self.legit["completed"],
            "connect_p50_ms": self.legit["p50_ms"],
            "connect_p99_ms": self.legit["p99_ms"],
            "flood_pps": round(sent / secs),
            "flood_delivered_pps": round(delivered / secs) if delivered is not None else None,
            "flood_refused_pct": (
                round(100.0 * (sent - delivered) / sent, 1)
                if delivered is not None and sent
                else None
            ),
            "xdp_syn_cookies_per_s": round(
                self.verdicts.get(Reason.SYN_COOKIE_SENT.label, 0) / secs
            ),
            "kernel_syn_cookies_per_s": round(self.kernel_syncookies / secs),
            "server_cpu_busy_pct": (
                round(self.server_cpu_busy_pct, 1) if self.server_cpu_busy_pct is not None else None
            ),
            "softirq_cpu_pct": round(self.softirq_cpu_pct, 1),
        }


@dataclass
class DemoResult:
    quick: bool
    seconds_per_phase: float
    handshake: str
    phases: list[PhaseResult]
    stand: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "seconds_per_phase": self.seconds_per_phase,
            "handshake": self.handshake,
            "stand": self.stand,
            "summary": [p.summary() for p in self.phases],
            "phases": [asdict(p) for p in self.phases],
        }


def _cpu_times() -> dict[str, list[int]]:
    """/proc/stat CPU lines: name ('cpu', 'cpu0', ...) -> jiffies by field."""
    out: dict[str, list[int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu"):
            name, *rest = line.split()
            out[name] = [int(x) for x in rest]
    return out


def _softirq_pct(a: dict[str, list[int]], b: dict[str, list[int]]) -> float:
    """softirq share of all CPUs' time (the stand shares the host's CPUs)."""
    d = [y - x for x, y in zip(a["cpu"], b["cpu"], strict=False)]
    total = sum(d[:8])
    return 100.0 * d[6] / total if total else 0.0


def _busy_pct(a: dict[str, list[int]], b: dict[str, list[int]], cpu: int) -> float | None:
    """Non-idle share of one CPU (threaded NAPI counts as system time, not softirq)."""
    key = f"cpu{cpu}"
    if key not in a or key not in b:
        return None
    d = [y - x for x, y in zip(a[key], b[key], strict=False)]
    total = sum(d[:8])
    return 100.0 * (total - d[3] - d[4]) / total if total else None


def _kernel_syncookies(stand: Stand) -> int:
    """TcpExt SyncookiesSent of the server namespace."""
    proc = stand.exec("server", ["cat", "/proc/net/netstat"], check=False)
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("TcpExt:")]
    if len(lines) >= 2 and "SyncookiesSent" in lines[0]:
        return int(lines[1][lines[0].index("SyncookiesSent")])
    return 0


@dataclass(frozen=True)
class _Layout:
    """Which CPU does what (see stand.py, "Overload model")."""

    internet_cpu: int | None  # generator, upstream NAPI, legit clients
    server_cpu: int | None  # server NAPI thread, HTTP server

    def stand(self, prefix: str) -> Stand:
        if self.server_cpu is None:
            return Stand(prefix=prefix, queues=1)
        return Stand(
            prefix=prefix,
            queues=1,
            server_napi_cpu=self.server_cpu,
            upstream_napi_cpu=self.internet_cpu,
            shared_rx_ring=True,
            shared_link=True,
        )


def _layout() -> _Layout:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return _Layout(None, None)
    return _Layout(cpus[0], cpus[1])


def _run_phase(
    stand: Stand,
    layout: _Layout,
    name: str,
    with_shield: bool,
    seconds: float,
    clients: int,
    on_tick: Callable[[DemoTick], None] | None,
) -> PhaseResult:
    shield: Shield | None = None
    if with_shield:
        with netns.enter(stand.ns("server")):
            # The default handshake (auto: transparent where the kernel can).
            shield = Shield.load(stand.server_if, ports=[PORT], xdp_mode="native")
    try:
        result = _measure(stand, layout, name, shield, seconds, clients, on_tick)
        result.handshake = str(shield.meta["handshake"]) if shield else ""
        return result
    finally:
        if shield is not None:
            with netns.enter(stand.ns("server")):
                shield.unload()


def _one(cpu: int | None) -> list[int] | None:
    return None if cpu is None else [cpu]


@dataclass(frozen=True)
class _Snapshot:
    """The host's and the stand's counters a phase is measured between."""

    cpu: dict[str, list[int]]
    syncookies: int
    link: dict[str, int]

    @classmethod
    def before(cls, stand: Stand) -> _Snapshot:
        link = stand.mux_stats()
        cookies = _kernel_syncookies(stand)
        return cls(_cpu_times(), cookies, link)

    @classmethod
    def after(cls, stand: Stand) -> _Snapshot:
        # The reverse order of before(): the CPU window is the tightest.
        cpu = _cpu_times()
        cookies = _kernel_syncookies(stand)
        return cls(cpu, cookies, stand.mux_stats())


class _PhaseRun:
    """One phase: the legit clients and the flood in threads, a tick each second.

    The flood starts a second after the clients and stops a second before
    them, so the plot shows the service before, during and after it.
    """

    def __init__(
        self,
        stand: Stand,
        layout: _Layout,
        name: str,
        shield: Shield | None,
        seconds: float,
        clients: int,
        on_tick: Callable[[DemoTick], None] | None,
    ) -> None:
        self.stand, self.layout, self.name, self.shield = stand, layout, name, shield
        self.seconds, self.clients, self.on_tick = seconds, clients, on_tick
        self.flood_s = max(1.0, seconds - 2.0)
        self.latest: list[LegitSample] = []
        self.flood_sent: list[tuple[float, int]] = [(0.0, 0)]
        self.legit_result: LegitResult | None = None
        self.flood_result: FloodResult | None = None
        self.errors: list[BaseException] = []
        self.started: dict[str, float] = {}
        self.first_report = threading.Event()

    def on_progress(self, sent: int, elapsed: float) -> None:
        # The flood's own clock starts after it has built and loaded its
        # program: its first frame, not our call, is when it began.
        self.started.setdefault("flood", time.monotonic() - elapsed)
        self.flood_sent.append((elapsed, sent))

    def on_sample(self, s: LegitSample) -> None:
        self.latest.append(s)
        if not self.first_report.is_set():
            self.started["first_report"] = time.monotonic()
            self.first_report.set()

    def legit(self) -> None:
        try:
            self.legit_result = legit_load(
                self.stand,
                n_clients=self.clients,
                duration_s=self.seconds,
                port=PORT,
                server=False,
                retries=RETRIES,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                cpus=_one(self.layout.internet_cpu),
                on_sample=self.on_sample,
            )
        except BaseException as exc:
            self.errors.append(exc)

    def attack(self) -> None:
        try:
            # The clients report their second 0 when their clock reads 1 s:
            # the flood starts then, on the clients' clock, not ours (they
            # start a process first).
            if not self.first_report.wait(timeout=10.0):
                raise TrafficError("the legit clients did not report their first second")
            self.flood_result = flood(
                "syn",
                stand=self.stand,
                duration_s=self.flood_s,
                dport=PORT,
                workers=1,
                cpus=_one(self.layout.internet_cpu),
                live_batch=FLOOD_LIVE_BATCH,
                on_progress=self.on_progress,
                progress_interval_s=0.5,
            )
        except BaseException as exc:
            self.errors.append(exc)

    def watch(self, threads: list[threading.Thread], before: ShieldStats) -> list[dict[str, Any]]:
        """A tick each second until both threads end (they are bounded; so is this)."""
        series: list[dict[str, Any]] = []
        last_stats = before
        last_sent, last_t = 0, 0.0
        t0 = time.monotonic()
        sec = 0
        while any(t.is_alive() for t in threads):
            time.sleep(max(0.0, t0 + sec + 1 - time.monotonic()))
            el, sent = self.flood_sent[-1]
            pps = (sent - last_sent) / (el - last_t) if el > last_t else 0.0
            last_sent, last_t = (sent, el) if el > last_t else (last_sent, last_t)
            now = self.shield.stats() if self.shield else {}
            delta = {r.label: now[r][0] - last_stats.get(r, (0, 0))[0] for r in now}
            last_stats = now
            tick = self._tick(sec, pps, {k: v for k, v in delta.items() if v})
            series.append(asdict(tick))
            if self.on_tick is not None:
                self.on_tick(tick)
            sec += 1
            if time.monotonic() - t0 > self.seconds + 60:  # both are bounded; belt and braces
                raise TrafficError(f"demo phase {self.name} overran its time")
        return series

    def _tick(self, sec: int, pps: float, verdicts: dict[str, int]) -> DemoTick:
        s = self.latest[-1] if self.latest else None
        return DemoTick(
            self.name,
            sec,
            pps,
            s.t if s else None,
            s.completed if s else 0,
            s.first_try if s else 0,
            s.failed if s else 0,
            s.p50_ms if s else None,
            verdicts,
        )

    def result(
        self,
        series: list[dict[str, Any]],
        before: ShieldStats,
        at0: _Snapshot,
        at1: _Snapshot,
    ) -> PhaseResult:
        after = self.shield.stats() if self.shield else {}
        verdicts = {r.label: after[r][0] - before.get(r, (0, 0))[0] for r in after}
        assert self.legit_result is not None and self.flood_result is not None
        offset = 1.0 + self.started["flood"] - self.started["first_report"]
        flood_series = [
            (round(offset + (t_a + t_b) / 2, 3), float(round((n_b - n_a) / (t_b - t_a))))
            for (t_a, n_a), (t_b, n_b) in itertools.pairwise(self.flood_sent)
            if t_b > t_a
        ]
        server_cpu = self.layout.server_cpu
        return PhaseResult(
            name=self.name,
            shield=self.shield is not None,
            legit=self.legit_result.to_dict(),
            flood=self.flood_result.to_dict(),
            softirq_cpu_pct=_softirq_pct(at0.cpu, at1.cpu),
            verdicts=verdicts,
            series=series,
            flood_offset_s=round(offset, 3),
            flood_series=flood_series,
            server_cpu=server_cpu,
            server_cpu_busy_pct=(
                _busy_pct(at0.cpu, at1.cpu, server_cpu) if server_cpu is not None else None
            ),
            kernel_syncookies=at1.syncookies - at0.syncookies,
            shared_link={k: at1.link[k] - at0.link[k] for k in at1.link},
        )


def _measure(
    stand: Stand,
    layout: _Layout,
    name: str,
    shield: Shield | None,
    seconds: float,
    clients: int,
    on_tick: Callable[[DemoTick], None] | None,
) -> PhaseResult:
    run = _PhaseRun(stand, layout, name, shield, seconds, clients, on_tick)
    before = shield.stats() if shield else {}
    at0 = _Snapshot.before(stand)
    with serve_http(stand, port=PORT, cpus=_one(layout.server_cpu)):
        threads = [threading.Thread(target=f, daemon=True) for f in (run.legit, run.attack)]
        for t in threads:
            t.start()
        series = run.watch(threads, before)
    at1 = _Snapshot.after(stand)
    if run.errors:
        raise run.errors[0]
    return run.result(series, before, at0, at1)


def run_demo(
    out_dir: Path,
    *,
    quick: bool = False,
    prefix: str | None = None,
    on_tick: Callable[[DemoTick], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> DemoResult:
    """Bring a stand up, run both phases, write demo.json and demo.png, tear down.

    The stand is the open-loop overload model of stand.py: one CPU is the
    Internet (generator, upstream, clients), the other the server; the
    clients' frames ride in the flood's stream (shared link), so the
    server's ring refuses them as often as the flood's. Both phases run the
    same generator: at its own speed, one frame per flush (above what the
    kernel stack takes, within what XDP answers); the rate it reaches
    differs (measured 0.34-0.42 Mpps without the shield, 0.59-0.69 with it:
    the Internet's CPU also forwards the server's replies, one skb at a
    time for the kernel's, in batches for XDP's). The shield runs its
    default handshake (transparent where the kernel can: no RST); the clients
    would retry a reset connection once, as reset mode requires.

    The headline is what users who came during the flood got: of the
    connections started in a second the flood ran through, the share that
    completed on the first attempt (within CONNECT_TIMEOUT_S). The clients
    are a closed loop (each starts a connection when its last one ends), so
    a phase that serves badly also starts fewer: compare the counts too.
    """
    seconds = 8.0 if quick else 25.0
    # Many, so that even the phase that serves badly starts enough
    # connections under the flood to count.
    clients = 64
    layout = _layout()
    stand = layout.stand(prefix or netns.unique_prefix("xsdemo"))
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if on_phase:
            on_phase(f"stand {stand.prefix} up")
        stand.up()
        phases = []
        for name, with_shield in (("without shield", False), ("with shield", True)):
            if on_phase:
                on_phase(name)
            phases.append(_run_phase(stand, layout, name, with_shield, seconds, clients, on_tick))
    finally:
        stand.down()
    handshake = next((p.handshake for p in phases if p.handshake), "")
    result = DemoResult(
        quick,
        seconds,
        handshake,
        phases,
        stand={
            "queues": stand.queues,
            "server_napi_cpu": stand.server_napi_cpu,
            "upstream_napi_cpu": stand.upstream_napi_cpu,
            "shared_rx_ring": stand.shared_rx_ring,
            "internet_cpu": layout.internet_cpu,
            "server_cpu": layout.server_cpu,
            "clients": clients,
            "retries": RETRIES,
            "connect_timeout_s": CONNECT_TIMEOUT_S,
            "flood_live_batch": FLOOD_LIVE_BATCH,
        },
    )
    (out_dir / "demo.json").write_text(json.dumps(result.to_dict(), indent=2))
    plot_demo(result, out_dir / "demo.png")
    return result


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def plot_demo(result: DemoResult, path: Path) -> None:
    """Legit connections per second and flood rate over time, both runs side by side.

    Time is seconds since the clients started; the flood starts about a
    second later (its progress reports are shifted by the measured offset).
    """
    n = len(result.phases)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 4.8), sharey=True, squeeze=False)
    top = max((float(f) for p in result.phases for _, f in p.flood_series), default=0.0)
    twins = []
    for ax, phase in zip(axes[0], result.phases, strict=True):
        legit = phase.legit["series"]
        t = [s["t"] + 0.5 for s in legit]
        ax.plot(t, [s["completed"] for s in legit], "o-", color="tab:green", label="completed /s")
        ax.plot(
            t,
            [s.get("first_try", 0) for s in legit],
            "--",
            color="tab:olive",
            label="of them on the first try /s",
        )
        ax.plot(t, [s["failed"] for s in legit], "x-", color="tab:red", label="failed /s")
        ax.set_xlabel("seconds since the clients started")
        summ = phase.summary()
        under = summ["legit_success_under_flood_pct"]
        ax.set_title(
            f"{phase.name}\nunder the flood: {summ['legit_started_under_flood']:,} "
            f"connections started, {_pct(under)} on the first try\n"
            f"whole run: {summ['legit_completed']:,} completed, "
            f"{summ['legit_success_pct']:.1f}% success",
            fontsize=10,
        )
        ax2 = ax.twinx()
        if phase.flood_series:
            ft = [0.0, *[x for x, _ in phase.flood_series]]
            fr = [0.0, *[y / 1e6 for _, y in phase.flood_series]]
            ax2.fill_between(ft, fr, color="tab:gray", alpha=0.25, step="mid", label="SYN flood")
        ax2.set_ylim(0, max(top / 1e6 * 1.15, 0.1))
        ax2.set_ylabel("SYN flood sent (Mpps)")
        twins.append(ax2)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("legit connections per second")
    handles, labels = [], []
    for a in (axes[0][0], twins[0]):
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9)
    fig.suptitle("xdpshield demo: spoofed SYN flood against a real HTTP server (same generator)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
