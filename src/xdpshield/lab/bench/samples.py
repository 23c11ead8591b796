"""What drop samples cost: a flood the shield drops, with sampling at its cap
(the default 100 per second per reason, a reader draining the ring) against
the same flood with sampling off, measured in the same run, interleaved.

Two forms: the test run (ns per dropped frame, BPF_PROG_TEST_RUN on the
kernel's clock, so the bucket empties within the first microseconds and the
rest pay the capped path) and live (drops per second of a denied UDP flood
on the stand, one receive queue). The goal (issue 16): sampling at its cap
costs at most 3 %.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import threading
from collections.abc import Callable

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from xdpshield import netns
from xdpshield.lab.bench.harness import load_shield
from xdpshield.lab.bench.live import LiveConfig, _attempt, _drop_flood_once, _Rows, per_queue
from xdpshield.lab.bench.micro import MicroConfig
from xdpshield.lab.bench.policy import DENIED_SOURCES, _rx_policy_shield
from xdpshield.lab.bench.results import Goal, Progress, Result, fmt_num, median, no_progress
from xdpshield.lab.stand import Stand
from xdpshield.policy.cidr import parse_prefix
from xdpshield.policy.model import Policy
from xdpshield.shield import policy as shield_policy
from xdpshield.shield import samples
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

__all__ = ["GOAL", "GROUP_LIVE", "GROUP_TESTRUN", "run_samples"]

GROUP_TESTRUN = "samples: drop path, sampling at its cap vs off (test run)"
GROUP_LIVE = "samples: denied flood, sampling at its cap vs off (live)"
GOAL = Goal("<=", 1.03, "issue 16: sampling at its cap costs <= 3 %")
GOAL_LIVE = Goal(">=", 0.97, "issue 16: sampling at its cap costs <= 3 %")
_MODES = ("off", "cap")


def _frame() -> bytes:
    src = str(ipaddress.ip_network(DENIED_SOURCES).network_address + 7)
    return bytes(Ether() / IP(src=src, dst="198.18.0.2") / UDP(sport=4000, dport=9000))


def _testrun_rows(cfg: MicroConfig, report: Progress) -> list[Result]:
    coll = load_shield()
    got: dict[str, list[float]] = {m: [] for m in _MODES}
    sent = 0
    try:
        maps = coll.maps
        shield_policy.init_policy(maps)
        shield_policy.apply_policy(maps, Policy(deny={parse_prefix(DENIED_SOURCES): None}))
        prog = coll.program("xdpshield_xdp")
        frame = _frame()
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cfg.cpu if cfg.cpu is not None else max(cpus)})
        try:
            with samples.Sampler(maps) as reader:
                for rep in range(cfg.reps):
                    for mode in _MODES[rep % 2 :] + _MODES[: rep % 2]:
                        report(f"samples test run {mode} {rep + 1}/{cfg.reps}", rep / cfg.reps)
                        samples.set_rate(maps, samples.DEFAULT_RATE if mode == "cap" else 0)
                        r = prog.run(frame, repeat=cfg.repeat)
                        got[mode].append(float(r.ns))
                        sent += len(reader.poll(0))
        finally:
            os.sched_setaffinity(0, cpus)
        counts = samples.sample_counts(maps)[Reason.DENY]
    finally:
        coll.close()
    base = "deny-drop, samples off (test run)"
    note = f"UDP from a denied source, {fmt_num(cfg.repeat)} runs each; "
    return [
        Result(base, GROUP_TESTRUN, "ns/pkt", tuple(got["off"]), note=note + "sampling off"),
        Result(
            "deny-drop, samples at cap (test run)",
            GROUP_TESTRUN,
            "ns/pkt",
            tuple(got["cap"]),
            base,
            tuple(got["off"]),
            GOAL,
            note + f"cap {samples.DEFAULT_RATE}/s per reason; {counts[0]} samples sent, "
            f"{counts[1]} lost to a full ring, {sent} read",
            extra={"samples_sent": counts[0], "ring_full": counts[1]},
        ),
    ]


def _drain(shield: Shield, stop: threading.Event, seen: list[int]) -> None:
    """Read the samples as ``capture`` would, until ``stop``."""
    with shield.sampler() as reader:
        while not stop.is_set():
            seen[0] += len(reader.poll(0.1))


def _live_stand(cfg: LiveConfig, q: int, report: Progress) -> list[Result]:
    stand = Stand(prefix=netns.unique_prefix("xss"), queues=q)
    got: dict[str, list[float]] = {m: [] for m in _MODES}
    offered: list[float] = []
    unavailable: dict[str, str] = {}
    seen = [0]
    count = int(cfg.duration_s * cfg.max_pps)
    try:
        stand.up()

        def run_all() -> None:
            with _rx_policy_shield(stand) as shield:
                stop = threading.Event()
                t = threading.Thread(target=_drain, args=(shield, stop, seen))
                t.start()
                try:
                    for rep in range(cfg.reps):
                        for mode in _MODES[rep % 2 :] + _MODES[: rep % 2]:
                            report(f"samples live {mode} {rep + 1}/{cfg.reps}", rep / cfg.reps)
                            shield.set_sample_rate(samples.DEFAULT_RATE if mode == "cap" else 0)
                            rate, pps, _ = _drop_flood_once(
                                stand, cfg, q, count, "udp", sources=DENIED_SOURCES
                            )
                            got[mode].append(rate)
                            offered.append(pps)
                finally:
                    stop.set()
                    t.join(10)

        _attempt(unavailable, "xdpshield", run_all)
    finally:
        stand.down()
    return _live_rows(q, got, offered, seen[0], unavailable)


def _live_rows(
    q: int, got: dict[str, list[float]], offered: list[float], seen: int, why: dict[str, str]
) -> list[Result]:
    rows = _Rows(why)
    ql = f"{q}q"
    base = f"deny-flood, samples off ({ql})"
    note = f"UDP from {DENIED_SOURCES} (denied); generator sent {fmt_num(median(offered))} pkt/s"
    return [
        rows.row(base, GROUP_LIVE, "drops/s", got["off"], "xdpshield", note=note),
        rows.row(
            f"deny-flood, samples at cap ({ql})",
            GROUP_LIVE,
            "drops/s",
            got["cap"],
            "xdpshield",
            base,
            got["off"],
            GOAL_LIVE,
            note + f"; cap {samples.DEFAULT_RATE}/s per reason, {seen} samples read meanwhile",
        ),
    ]


def _live_skipped(cfg: LiveConfig, why: str) -> list[Result]:
    return [
        r
        for q in cfg.queues
        for r in _live_rows(q, {m: [] for m in _MODES}, [], 0, {"xdpshield": why})
    ]


def run_samples(
    quick: bool,
    progress: Progress | None = None,
    micro: MicroConfig | None = None,
    live_cfg: LiveConfig | None = None,
    *,
    live: bool = True,
) -> list[Result]:
    """The test-run rows, then (``live``) the live ones on one receive queue."""
    report = progress or no_progress
    mcfg = micro or (MicroConfig.quick() if quick else MicroConfig())
    sub: Callable[[str, float], None] = lambda w, f: report(w, f * (0.3 if live else 1.0))  # noqa: E731
    rows = _testrun_rows(mcfg, sub)
    if live:
        cfg = live_cfg or (LiveConfig.quick() if quick else LiveConfig())
        cfg = dataclasses.replace(cfg, queues=(1,), reps=max(cfg.reps, 2 if quick else 5))
        rows += per_queue(cfg, lambda w, f: report(w, 0.3 + 0.7 * f), _live_stand, _live_skipped)
    report("samples done", 1.0)
    return rows
