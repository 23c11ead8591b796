"""Live floods on the stand, every receiver side by side (needs root, the stand, the generator).

For each queue count a fresh stand is brought up with the real HTTP server
behind every receiver. Each repetition floods every receiver in turn: a SYN
flood at full rate (replies counted at the attacker), one held at an equal
rate while legit clients fetch from the server, and ACK and UDP floods
(drops counted on the server's link). A receiver that fails is reported in
its rows; the others go on.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from xdpshield import netns
from xdpshield.errors import Unavailable
from xdpshield.lab import FloodKind, Role
from xdpshield.lab.bench.harness import OBJ_DIR
from xdpshield.lab.bench.kstats import attached, bpf_stats, ns_per_run
from xdpshield.lab.bench.receivers import DROP_RECEIVERS, LEGIT_PORT, SYN_RECEIVERS, receiver
from xdpshield.lab.bench.results import Goal, Progress, Result, fmt_num, median, no_progress
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import LegitResult, flood, legit_load, serve_http

__all__ = [
    "DROP_KINDS",
    "DROP_RECEIVERS",
    "GOAL_LIVE_10X",
    "GOAL_LIVE_DROP",
    "GOAL_LIVE_FILTER",
    "GOAL_LIVE_TX",
    "GROUP_DROP",
    "GROUP_LEGIT",
    "GROUP_SYN",
    "SYN_RECEIVERS",
    "XDP_RECEIVERS",
    "LiveConfig",
    "LiveSamples",
    "cost_note",
    "live_unavailable",
    "prog_cost",
    "run_live",
]


@dataclass(frozen=True)
class LiveConfig:
    duration_s: float = 3.0  # seconds per flood
    reps: int = 3  # floods per receiver and queue count (interleaved)
    queues: tuple[int, ...] = (1, 2)  # receive queues of the server's link
    max_pps: int = 20_000_000  # packet bound of a flood: duration_s * max_pps
    legit_clients: int = 4  # concurrent legit HTTP clients during each SYN flood
    # The SYN flood the legit clients face, the same for every receiver: below
    # what the slowest one (the kernel alone) absorbs on the stand, so that each
    # takes the whole flood and the clients meet equal attacks. (At full rate the
    # generator slows to what the receiver absorbs: the kernel would face an
    # eighth of the shield's flood.)
    legit_flood_pps: int = 400_000
    # A further flood per XDP receiver with the kernel's bpf_stats on: the
    # program's own ns per packet (the accounting slows every receiver, so
    # the rates come from the floods without it). 0: none.
    stats_s: float = 1.0

    @classmethod
    def quick(cls) -> LiveConfig:
        return cls(duration_s=1.0, reps=1, queues=(1,), legit_clients=2, stats_s=0.3)

    @classmethod
    def quick_drops(cls) -> LiveConfig:
        """A quick run's policy and limits floods: 0.3 s each, and no cost
        flood (a quick run's program costs come from run_live's floods)."""
        return dataclasses.replace(cls.quick(), duration_s=0.3, stats_s=0.0)


GROUP_SYN = "live: SYN flood answered"
GROUP_DROP = "live: flood dropped"
GROUP_LEGIT = "live: legit connections during an equal SYN flood"
GOAL_LIVE_TX = Goal(">=", 0.85, "issue 17: SYN flood answered >= 0.85x bare XDP_TX")
GOAL_LIVE_10X = Goal(">=", 10.0, "issue 6: SYN flood answered >= 10x Linux / nftables")
GOAL_LIVE_DROP = Goal(">=", 0.85, "issue 17: forged ACKs dropped >= 0.85x bare XDP_DROP")
GOAL_LIVE_FILTER = Goal(">=", 1.0, "issue 17: forged ACKs dropped faster than xdp-filter")
#: Receivers that are an XDP program, whose own cost bpf_stats gives.
XDP_RECEIVERS = frozenset({"xdpshield", "xdp-reflect", "xdp-drop", "xdp-parse-drop", "xdp-filter"})
DROP_KINDS: tuple[FloodKind, ...] = ("ack", "udp")
#: Drop receivers set against the bare drop, and the shield against them on
#: the ACK flood (with the goal, if any): xdp-filter, and the floor of
#: reading the headers (what the shield's checks cost beyond it).
DROP_PEERS: dict[str, Goal | None] = {"xdp-filter": GOAL_LIVE_FILTER, "xdp-parse-drop": None}

_T = TypeVar("_T")


@dataclass
class LiveSamples:
    """What the floods on one stand measured, one sample per repetition.

    ``syn`` and ``legit`` by receiver, ``drop`` by (flood kind, receiver);
    ``offered`` is the generator's rate by row key ("syn RX", "legit RX",
    "KIND RX"), ``prog_ns`` the XDP program's own ns per packet by the same
    key (bpf_stats, a flood of its own), ``unavailable`` why a receiver (key
    "RX" or "KIND RX") did not run, ``extra`` the details of a drop row by its
    key.
    """

    syn: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in SYN_RECEIVERS})
    legit: dict[str, list[tuple[int, int]]] = field(
        default_factory=lambda: {r: [] for r in SYN_RECEIVERS}
    )
    drop: dict[tuple[FloodKind, str], list[float]] = field(
        default_factory=lambda: {(k, r): [] for k in DROP_KINDS for r in DROP_RECEIVERS}
    )
    offered: dict[str, list[float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    prog_ns: dict[str, list[float]] = field(default_factory=dict)  # by row key, bpf_stats
    #: Why the legit fetches that failed did (traffic.LegitResult.failures), summed per receiver.
    legit_failures: dict[str, Counter[str]] = field(default_factory=dict)


# -- counters -------------------------------------------------------------------------
def _ethtool(stand: Stand, role: Role, ifname: str) -> dict[str, int]:
    proc = stand.exec(role, ["ethtool", "-S", ifname], timeout=10)
    out: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.strip().partition(":")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def _sum_suffix(stats: Mapping[str, int], suffix: str) -> int:
    return sum(v for k, v in stats.items() if k.startswith("rx_queue_") and k.endswith(suffix))


# -- one flood ------------------------------------------------------------------------
@dataclass(frozen=True)
class _SynFlood:
    """What one SYN flood measured."""

    replies_per_s: float  # replies to the spoofed sources, seen at the attacker
    sent_pps: float  # the generator's rate
    legit: tuple[int, int] = (0, 0)  # legit fetches (tried, done) while it lasted
    failures: dict[str, int] = field(default_factory=dict)  # why those that failed did


def _syn_flood_once(
    stand: Stand,
    cfg: LiveConfig,
    q: int,
    count: int,
    rate_pps: float | None = None,
) -> _SynFlood:
    """A SYN flood from the attacker, its replies counted there.

    A flood at full speed (``rate_pps`` None) measures replies only; one held
    at ``rate_pps`` has the legit clients (``traffic.legit_load``, HTTP with
    every byte checked) running in a thread for as long as it lasts.
    """
    got: list[LegitResult | BaseException] = []

    def clients() -> None:
        try:
            got.append(
                legit_load(
                    stand,
                    n_clients=cfg.legit_clients,
                    duration_s=cfg.duration_s,
                    port=LEGIT_PORT,
                    connect_timeout_s=1.0,
                    server=False,
                )
            )
        except BaseException as exc:  # reported in the row, never lost
            got.append(exc)

    before = _ethtool(stand, "attacker", stand.uplink_if)
    t = threading.Thread(target=clients, name="xdpshield-bench-legit", daemon=True)
    if rate_pps is not None:
        t.start()
    try:
        fr = flood(
            "syn",
            stand=stand,
            duration_s=cfg.duration_s,
            count=count,
            workers=q,
            dport=LEGIT_PORT,
            rate_pps=rate_pps,
        )
        time.sleep(0.2)  # let the last replies drain
        after = _ethtool(stand, "attacker", stand.uplink_if)
    finally:
        if t.is_alive():
            t.join(timeout=cfg.duration_s + 40)
    replies = _sum_suffix(after, "_xdp_drops") - _sum_suffix(before, "_xdp_drops")
    res = got[0] if got else None
    if isinstance(res, LegitResult):
        legit, why = (res.attempted, res.completed), dict(res.failures)
    else:  # the clients did not run (or not held: no clients asked)
        legit, why = (0, 0), ({f"clients: {type(res).__name__}": 1} if res else {})
    return _SynFlood(replies / fr.seconds if fr.seconds else 0.0, fr.pps, legit, why)


def _drop_flood_once(
    stand: Stand, cfg: LiveConfig, q: int, count: int, kind: FloodKind, **frame: Any
) -> tuple[float, float, dict[str, Any]]:
    """(frames dropped per s by the server's XDP program, offered pps, details).

    ``frame``: more of the flood's frame (``sources``, ``sport``, ``tcp_flags``).
    """
    before = _ethtool(stand, "server", stand.server_if)
    fr = flood(
        kind,
        stand=stand,
        duration_s=cfg.duration_s,
        count=count,
        workers=q,
        dport=LEGIT_PORT,
        **frame,
    )
    time.sleep(0.2)
    after = _ethtool(stand, "server", stand.server_if)
    dropped = _sum_suffix(after, "_xdp_drops") - _sum_suffix(before, "_xdp_drops")
    seen = _sum_suffix(after, "_xdp_packets") - _sum_suffix(before, "_xdp_packets")
    info = {
        "xdp_packets_per_s": seen / fr.seconds if fr.seconds else 0.0,
        "generator_tx_errors": fr.tx_errors,
        "generator_delivered": fr.delivered,
    }
    return dropped / fr.seconds if fr.seconds else 0.0, fr.pps, info


def prog_cost(
    stand: Stand, cfg: LiveConfig, rx: str, run: Callable[[LiveConfig], object]
) -> float | None:
    """ns per packet of the XDP program ``rx`` put on the server's link while
    ``run(short)`` floods it for ``cfg.stats_s``, from the kernel's bpf_stats;
    None for a receiver that is no XDP program, or with ``stats_s`` 0."""
    if rx not in XDP_RECEIVERS or cfg.stats_s <= 0:
        return None
    short = dataclasses.replace(cfg, duration_s=cfg.stats_s)
    with bpf_stats():
        prog = attached(stand)
        try:
            ns, runs, _ = ns_per_run(prog, lambda: run(short))
        finally:
            prog.close()
    return ns if runs > 0 else None


# -- one stand --------------------------------------------------------------------------
def _attempt(unavailable: dict[str, str], key: str, measure: Callable[[], _T]) -> _T | None:
    """``measure()``, or None with the reason under ``key`` (then and from then on)."""
    if key in unavailable:
        return None
    try:
        return measure()
    except Unavailable as exc:
        unavailable[key] = str(exc)
    except Exception as exc:  # one receiver failing must not sink the rest
        unavailable[key] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def _syn_round(
    stand: Stand, cfg: LiveConfig, q: int, count: int, rx: str, data: LiveSamples
) -> None:
    """SYN floods at ``rx``: one at full rate, one held while the legit clients run."""

    def measure() -> tuple[_SynFlood, _SynFlood, float | None]:
        with receiver(rx, stand, "syn"):
            full = _syn_flood_once(stand, cfg, q, count)
            held = _syn_flood_once(stand, cfg, q, count, rate_pps=cfg.legit_flood_pps)
            ns = prog_cost(stand, cfg, rx, lambda c: _syn_flood_once(stand, c, q, count))
        return full, held, ns

    got = _attempt(data.unavailable, rx, measure)
    if got is None:
        return
    full, held, ns = got
    data.legit_failures.setdefault(rx, Counter()).update(held.failures)
    if ns is not None:
        data.prog_ns.setdefault(f"syn {rx}", []).append(ns)
    data.syn[rx].append(full.replies_per_s)
    data.legit[rx].append(held.legit)
    data.offered.setdefault(f"syn {rx}", []).append(full.sent_pps)
    data.offered.setdefault(f"legit {rx}", []).append(held.sent_pps)


def _drop_round(
    stand: Stand, cfg: LiveConfig, q: int, count: int, kind: FloodKind, rx: str, data: LiveSamples
) -> None:
    """A ``kind`` flood at ``rx``, its drops counted on the server's link."""
    key = f"{kind} {rx}"

    def measure() -> tuple[float, float, dict[str, Any], float | None]:
        with receiver(rx, stand, kind):
            got = _drop_flood_once(stand, cfg, q, count, kind)
            ns = prog_cost(stand, cfg, rx, lambda c: _drop_flood_once(stand, c, q, count, kind))
        return *got, ns

    got = _attempt(data.unavailable, key, measure)
    if got is None:
        return
    rate, sent_pps, info, ns = got
    if ns is not None:
        data.prog_ns.setdefault(key, []).append(ns)
    data.drop[(kind, rx)].append(rate)
    data.offered.setdefault(key, []).append(sent_pps)
    data.extra.setdefault(key, {}).update(info)


def _qlabel(q: int) -> str:
    return f"{q} queue" + ("s" if q > 1 else "")


def _live_queues(cfg: LiveConfig, q: int, report: Progress) -> list[Result]:
    """Every receiver, ``cfg.reps`` times, on a stand whose server link has ``q`` queues."""
    stand = Stand(prefix=netns.unique_prefix("xsb"), queues=q)
    ql = _qlabel(q)
    data = LiveSamples()
    steps = cfg.reps * (len(SYN_RECEIVERS) + len(DROP_KINDS) * len(DROP_RECEIVERS))
    done = 0
    count = int(cfg.duration_s * cfg.max_pps)
    server = None
    try:
        stand.up()
        # The real server behind every receiver: legit clients fetch from it.
        server = serve_http(stand, port=LEGIT_PORT)
        for rep in range(cfg.reps):
            which = f"({ql}, {rep + 1}/{cfg.reps})"
            for rx in SYN_RECEIVERS:
                report(f"SYN flood → {rx} {which}", done / steps)
                done += 1
                _syn_round(stand, cfg, q, count, rx, data)
            for kind in DROP_KINDS:
                for rx in DROP_RECEIVERS:
                    report(f"{kind.upper()} flood → {rx} {which}", done / steps)
                    done += 1
                    _drop_round(stand, cfg, q, count, kind, rx, data)
        report(f"live done ({ql})", 1.0)
    finally:
        if server is not None:
            server.stop()
        stand.down()
    return _live_results(cfg, q, data)


def run_live(
    quick: bool, progress: Progress | None = None, cfg: LiveConfig | None = None
) -> list[Result]:
    """Floods on the stand, every receiver side by side (needs root, the stand, the generator)."""
    cfg = cfg or (LiveConfig.quick() if quick else LiveConfig())
    return per_queue(cfg, progress, _live_queues, _live_skipped)


def per_queue(
    cfg: LiveConfig,
    progress: Progress | None,
    rows: Callable[[LiveConfig, int, Progress], list[Result]],
    skipped: Callable[[LiveConfig, str], list[Result]],
) -> list[Result]:
    """``rows(cfg, queues, progress)`` for each queue count of ``cfg``, on a
    stand of its own; what cannot run is reported by ``skipped(cfg, why)``
    for every row it would have made."""
    why = live_unavailable()
    if why is not None:
        return skipped(cfg, why)
    report = progress or no_progress
    results: list[Result] = []
    for qi, q in enumerate(cfg.queues):

        def sub(what: str, frac: float, qi: int = qi) -> None:
            report(what, (qi + frac) / len(cfg.queues))

        one = dataclasses.replace(cfg, queues=(q,))
        try:
            results += rows(cfg, q, sub)
        except Unavailable as exc:
            results += skipped(one, str(exc))
        except Exception as exc:  # the stand itself failed: say so for every row
            results += skipped(one, f"stand with {q} queue(s) failed: {exc}".splitlines()[0])
    return results


def live_unavailable() -> str | None:
    """Why the floods on the stand cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, XDP)"
    if not (OBJ_DIR / "traffic.o").exists():
        return "traffic.o (the in-kernel generator) is not built: run 'make build'"
    return None


# -- rows -------------------------------------------------------------------------------
def _med(xs: Sequence[float]) -> str:
    v = median(xs)
    return fmt_num(v) if v is not None else "—"


def cost_note(prog_ns: Sequence[float]) -> str:
    """The program's own cost beside a live rate, when bpf_stats gave one."""
    ns = median(prog_ns)
    return "" if ns is None else f"; program's own cost {ns:.0f} ns/pkt (bpf_stats)"


@dataclass(frozen=True)
class _Rows:
    """Makes the rows of one stand: a receiver that did not run says why."""

    unavailable: Mapping[str, str]

    def row(
        self,
        name: str,
        group: str,
        unit: str,
        samples: Sequence[float],
        key: str,
        baseline: str | None = None,
        base: Sequence[float] = (),
        goal: Goal | None = None,
        note: str = "",
        ex: Mapping[str, Any] | None = None,
    ) -> Result:
        why = self.unavailable.get(key)
        if why is None and not samples:
            why = "no measurement"
        return Result(
            name,
            group,
            unit,
            tuple(samples) if why is None else (),
            baseline,
            tuple(base),
            goal,
            note,
            why,
            True,
            dict(ex or {}),
        )


_SYN_NOTE = {
    "xdpshield": "SYN-ACK cookies from XDP (the default handshake)",
    "xdp-reflect": "bare XDP_TX baseline: the SYN swapped and sent back",
    "linux-syncookies": "no XDP; the listener with net.ipv4.tcp_syncookies=2",
    "nftables-synproxy": "nftables synproxy (notrack + synproxy) in front of the listener",
}
_DROP_NOTE = {
    "xdpshield": "the shield's own verdict (forged ACK: no cookie offered to its source)",
    "xdp-drop": "bare XDP_DROP baseline",
    "xdp-parse-drop": (
        "the floor of any verdict that reads the headers: the shield's own parse to "
        "L4, a per-CPU count, XDP_DROP (baseline.o bench_parse_drop)"
    ),
    "xdp-filter": "xdp-filter (xdp-tools) denying the flood's destination port",
}


def _syn_rows(ql: str, data: LiveSamples) -> list[Result]:
    """Replies per receiver, then the shield against each baseline with its goal."""
    rows = _Rows(data.unavailable)
    out: list[Result] = []
    for rx in SYN_RECEIVERS:
        note = f"{_SYN_NOTE[rx]}; generator sent {_med(data.offered.get(f'syn {rx}', []))} SYN/s"
        note += cost_note(data.prog_ns.get(f"syn {rx}", []))
        out.append(
            rows.row(f"syn-flood {rx} ({ql})", GROUP_SYN, "replies/s", data.syn[rx], rx, note=note)
        )
    for base, goal in (
        ("xdp-reflect", GOAL_LIVE_TX),
        ("linux-syncookies", GOAL_LIVE_10X),
        ("nftables-synproxy", GOAL_LIVE_10X),
    ):
        key = "xdpshield" if "xdpshield" in data.unavailable else base
        out.append(
            rows.row(
                f"syn-flood xdpshield vs {base} ({ql})",
                GROUP_SYN,
                "replies/s",
                data.syn["xdpshield"],
                key,
                f"syn-flood {base} ({ql})",
                data.syn[base],
                goal,
            )
        )
    return out


def _legit_rows(cfg: LiveConfig, ql: str, data: LiveSamples) -> list[Result]:
    """Legit connections completed during the held SYN flood, per receiver."""
    rows = _Rows(data.unavailable)
    out: list[Result] = []
    for rx in SYN_RECEIVERS:
        lg = data.legit[rx]
        note = ""
        if lg:
            note = (
                f"SYN flood held at {fmt_num(cfg.legit_flood_pps)}/s (generator sent "
                f"{_med(data.offered.get(f'legit {rx}', []))}/s); "
                "HTTP fetches completed (every byte checked) of tried: "
                + ", ".join(f"{done}/{tried}" for tried, done in lg)
                + (" — a bare reflector serves no connection" if rx == "xdp-reflect" else "")
            )
            why = data.legit_failures.get(rx, Counter())
            if why:
                note += "; failed: " + ", ".join(f"{k} {n}" for k, n in sorted(why.items()))
        done_ = [float(done) for _, done in lg]
        out.append(
            rows.row(
                f"legit during SYN flood: {rx} ({ql})",
                GROUP_LEGIT,
                "connections",
                done_,
                rx,
                note=note,
            )
        )
    return out


def _drop_rows(ql: str, data: LiveSamples) -> list[Result]:
    """Drops per receiver and flood kind; the shield's, the parse floor's and
    xdp-filter's against xdp-drop; the shield's against xdp-filter's and the floor's."""
    rows = _Rows(data.unavailable)
    out: list[Result] = []
    for kind in DROP_KINDS:
        base_name = f"{kind}-flood xdp-drop ({ql})"
        base = data.drop[(kind, "xdp-drop")]
        for rx in DROP_RECEIVERS:
            key = f"{kind} {rx}"
            sent = _med(data.offered.get(key, []))
            note = f"{_DROP_NOTE[rx]}; generator sent {sent} pkt/s"
            if rx == "xdpshield" and kind == "udp":
                note = (
                    "the shield's verdict on a UDP flood to the protected address "
                    f"(passed unless a rule drops it); generator sent {sent} pkt/s"
                )
            note += cost_note(data.prog_ns.get(key, []))
            name, samples = f"{kind}-flood {rx} ({ql})", data.drop[(kind, rx)]
            ex = data.extra.get(key)
            if rx == "xdpshield":
                goal = GOAL_LIVE_DROP if kind == "ack" else None
                r = rows.row(
                    name, GROUP_DROP, "drops/s", samples, key, base_name, base, goal, note, ex
                )
            elif rx in DROP_PEERS:
                r = rows.row(
                    name, GROUP_DROP, "drops/s", samples, key, base_name, base, note=note, ex=ex
                )
            else:
                r = rows.row(name, GROUP_DROP, "drops/s", samples, key, note=note, ex=ex)
            out.append(r)
        if kind != "ack":
            continue
        shield_key = f"{kind} xdpshield"
        for other, goal in DROP_PEERS.items():
            key = shield_key if shield_key in data.unavailable else f"{kind} {other}"
            out.append(
                rows.row(
                    f"ack-flood xdpshield vs {other} ({ql})", GROUP_DROP, "drops/s",
                    data.drop[(kind, "xdpshield")], key,
                    f"{kind}-flood {other} ({ql})", data.drop[(kind, other)], goal,
                )
            )  # fmt: skip
    return out


def _live_results(cfg: LiveConfig, q: int, data: LiveSamples) -> list[Result]:
    ql = _qlabel(q)
    return _syn_rows(ql, data) + _legit_rows(cfg, ql, data) + _drop_rows(ql, data)


def _live_skipped(cfg: LiveConfig, why: str) -> list[Result]:
    rows: list[Result] = []
    for q in cfg.queues:
        ql = _qlabel(q)
        for rx in SYN_RECEIVERS:
            rows.append(
                Result(
                    f"syn-flood {rx} ({ql})",
                    GROUP_SYN,
                    "replies/s",
                    higher_is_better=True,
                    skipped=why,
                )
            )
        for kind in DROP_KINDS:
            for rx in DROP_RECEIVERS:
                rows.append(
                    Result(
                        f"{kind}-flood {rx} ({ql})",
                        GROUP_DROP,
                        "drops/s",
                        higher_is_better=True,
                        skipped=why,
                    )
                )
    return rows
