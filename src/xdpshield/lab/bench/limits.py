"""Per-source limits' benchmarks (issue 14): cost per packet, drops, time to block, memory.

* Cost per packet, limits on vs off, live on the stand. The test run cannot
  give a new source per iteration (``repeat`` reuses the frame), so the
  in-kernel generator floods the server from one IPv6 source and from random
  /64s of ``fd80::/9`` (inside fd00::/8, apart from the stand's own
  addresses: 55 random bits, so every packet is a new source), up to 10
  million packets (bounded in seconds too: on a slow stand the bound in
  seconds comes first; the admission filter's 2^20 slots are all taken
  after the first million or so, and no spoofed source gets state, so a
  longer flood costs the same per packet). The number is the shield program's own time: the
  kernel's ``run_time_ns / run_cnt`` for the attached program (read from
  its fdinfo) over the flood, with ``kernel.bpf_stats_enabled`` set to 1 for
  the measurement and put back as found. The same flood meets the same
  shield with limits off and on: on is pps, bytes/s and SYN buckets and the
  flood protocol's global ceiling, all far above the flood's rate, so every
  packet takes the verdict it takes with limits off (checked in the reason
  counters: a row whose floods were limited is not reported). Two paths:
  a SYN to the protected port (the guard's SYN-ACK, which also pays the SYN
  bucket) and a UDP datagram that is passed (the cheapest path that reaches
  the limits, so the one where they weigh most). One source: an LRU hit and
  the bucket updates; random sources: the admission filter's miss and write
  on every packet, no state made. The kernel's accounting adds its clock
  reads to every packet (a constant, which pulls ratios towards 1): the row
  ``xdp-drop (bpf_stats floor)``, a bare XDP_DROP timed the same way, shows
  how much that is, and each ratio's note gives it with the floor taken off
  both sides.
* Floods dropped by the limits, on the stand, against a bare XDP_DROP in
  the same run (policy's live machinery): one source far over its pps limit
  (reason ``LIMIT_PPS``), and the same source once the data path has
  blocked it (``BLOCKED``; a short flood over the limit earns the block
  first).
* Time to block: one source at 20x its limit for block-after + 1.5 s; the
  time from the start of its excess, as the data path records it
  (``xs_src.over_since``, read while the flood runs), to its block's
  ``since`` (same clock), and the delay beyond block-after. The generator
  holds a rate in bursts 0.1 s apart (a finer tick falls short of the rate:
  each of its calls has a fixed cost), and the block is taken by the first
  packet over the limit after block-after: up to one gap between bursts is
  in the delay.
* Memory of each limits table, by the kernel's own figure (the ``memlock:``
  line of the map fd's fdinfo, what bpftool shows): a table the kernel
  preallocates is that figure over its max_entries; one that allocates per
  entry is measured before and after ``fill`` entries are written, and its
  total is given at max_entries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdpshield import netns
from xdpshield.ebpf import Map, Program, Raw
from xdpshield.errors import TrafficError
from xdpshield.lab import FloodKind
from xdpshield.lab.bench.harness import load_shield
from xdpshield.lab.bench.kstats import attached, bpf_stats, fdinfo, ns_per_run
from xdpshield.lab.bench.live import (
    LiveConfig,
    _attempt,
    _qlabel,
    _Rows,
    per_queue,
)
from xdpshield.lab.bench.policy import (
    PolicyFlood,
    PolicyLiveSamples,
    _count,
    _receiver_round,
    _rx_policy_shield,
)
from xdpshield.lab.bench.policy import live_rows as policy_live_rows
from xdpshield.lab.bench.receivers import LEGIT_PORT, receiver
from xdpshield.lab.bench.results import Goal, Progress, Result, fmt_num, median, no_progress
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import FloodResult, flood, serve_http
from xdpshield.policy.cidr import parse_prefix
from xdpshield.policy.model import Limits
from xdpshield.shield import limits as shield_limits
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

__all__ = [
    "GOAL_BLOCK",
    "GOAL_COST",
    "GOAL_LIVE",
    "GROUP_BLOCK",
    "GROUP_COST",
    "GROUP_LIVE",
    "GROUP_MEM_ENTRY",
    "GROUP_MEM_TABLE",
    "LIMIT_FLOODS",
    "LIMIT_TABLES",
    "CostSamples",
    "LimitsConfig",
    "TableMemory",
    "block_rows",
    "cost_rows",
    "live_rows",
    "memory_rows",
    "run_limits",
    "run_limits_live",
    "table_memory",
]

GROUP_COST = "limits: per-packet cost, on vs off (live, bpf_stats)"
GROUP_LIVE = "limits: floods dropped by limits (live)"
GROUP_BLOCK = "limits: time to block"
GROUP_MEM_ENTRY = "limits: memory per entry"
GROUP_MEM_TABLE = "limits: memory per table"
GOAL_COST = Goal("<=", 1.3, "issue 14: per-packet cost with limits on <= 1.3x limits off")
GOAL_LIVE = Goal(">=", 0.9, "issue 14: over-limit and blocked drops >= 0.9x bare XDP_DROP")
GOAL_BLOCK = Goal(
    "<=", 2.0, "issue 14: blocked within 2 s of the sustained excess (block-after 1 s)", unit="s"
)
#: Every table of the limits stage (bpf/include/maps.h).
LIMIT_TABLES = ("xs_src", "xs_admit", "xs_dcache", "xs_blocks", "xs_blocks_lpm", "xs_rule_rate",
                "xs_lim", "xs_ceil")  # fmt: skip
NS = 1_000_000_000

#: The flooder of the drop and block rows (outside policy's deny list,
#: 198.19.128.0/17, which the shield of those rows holds).
FLOODER, SLOW_FLOODER = "198.19.5.5", "198.19.7.7"
#: The random sources of the cost rows, and the one source.
RANDOM6, ONE6 = "fd80::/9", "fd80::1/128"
#: Far above any flood this machine makes: nothing is limited.
HIGH_PPS, HIGH_BPS = 100_000_000, 100_000_000_000


@dataclass(frozen=True)
class LimitsConfig:
    """What the limits rows measure with (the drop floods take LiveConfig's)."""

    sources: int = 10_000_000  # packets of a random-source flood (~ distinct /64s)
    random_s: float = 12.0  # its bound in seconds
    single_s: float = 3.0  # a one-source flood's seconds
    kinds: tuple[FloodKind, ...] = ("syn", "udp")
    limit_pps: int = 1000  # the flooder's limit (drop and block rows)
    block_after_s: float = 1.0
    block_reps: int = 3
    fill: int = 4096  # entries written to measure a table that allocates per entry

    @classmethod
    def quick(cls) -> LimitsConfig:
        return cls(sources=200_000, random_s=0.5, single_s=0.3, block_reps=1, fill=1024)


# -- cost per packet ---------------------------------------------------------------------------
#: (limits, sources) of one cost flood: "off"/"on", "one"/"random".
_Setting = tuple[str, str]
_FLOOR = "floor"


@dataclass
class CostSamples:
    """ns/pkt by (kind, setting), and the details of each by the same key."""

    ns: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    extra: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # by kind


def _on_limits(kind: FloodKind) -> Limits:
    proto = "tcp" if kind in ("syn", "ack") else "udp"
    return Limits(pps=HIGH_PPS, bps=HIGH_BPS, syn_pps=HIGH_PPS, ceilings=((proto, HIGH_PPS),))


def _cost_flood(
    stand: Stand, prog: Program, kind: FloodKind, sources: str, count: int, seconds: float
) -> tuple[float, dict[str, Any]]:
    """ns per packet of ``prog`` over one flood, and what the flood was."""

    def run() -> FloodResult:
        fr = flood(kind, stand=stand, sources=sources, count=count, duration_s=seconds,
                   dport=LEGIT_PORT)  # fmt: skip
        time.sleep(0.1)
        return fr

    ns, runs, fr = ns_per_run(prog, run)
    if runs <= 0:
        raise TrafficError(f"the program ran 0 times for {fr.sent} packets sent")
    return ns, {"packets": fr.sent, "runs": runs, "generator_pps": round(fr.pps)}


def _moved(before: Mapping[Reason, tuple[int, int]], after: Mapping[Reason, tuple[int, int]]
           ) -> dict[str, int]:  # fmt: skip
    moved = {r.name: after[r][0] - before.get(r, (0, 0))[0] for r in after}
    return {k: v for k, v in moved.items() if v > 0}


_LIMITED = {r.name for r in (Reason.BLOCKED, Reason.LIMIT_PPS, Reason.LIMIT_BPS,
                             Reason.LIMIT_SYN, Reason.RULE_LIMIT, Reason.CEILING)}  # fmt: skip


def _cost_kind(stand: Stand, lc: LimitsConfig, kind: FloodKind, rep: int, data: CostSamples,
               step: Callable[[str], None]) -> None:  # fmt: skip
    """One repetition of ``kind``: the floor, then the shield, off and on
    (in turns first), one source and random ones."""
    floods = {"one": (ONE6, 10**9, lc.single_s), "random": (RANDOM6, lc.sources, lc.random_s)}

    def floor() -> None:
        step(f"{kind} cost: xdp-drop floor")
        with receiver("xdp-drop", stand, kind):
            prog = attached(stand)
            try:
                ns, ex = _cost_flood(stand, prog, kind, *floods["one"])
            finally:
                prog.close()
        data.ns.setdefault((kind, _FLOOR), []).append(ns)
        data.extra.setdefault((kind, _FLOOR), {}).update(ex)

    def shield() -> None:
        with _rx_policy_shield(stand) as s:
            order = ("off", "on") if rep % 2 == 0 else ("on", "off")
            for src in ("one", "random"):
                for lim in order:
                    step(f"{kind} cost: limits {lim}, {src} source(s)")
                    s.set_limits(_on_limits(kind) if lim == "on" else Limits())
                    before = s.stats()
                    ns, ex = _cost_flood(stand, s.program, kind, *floods[src])
                    ex["reasons"] = _moved(before, s.stats())
                    key = (kind, f"{lim} {src}")
                    data.ns.setdefault(key, []).append(ns)
                    acc = data.extra.setdefault(key, {})
                    limited = sum(v for k, v in ex["reasons"].items() if k in _LIMITED)
                    acc["limited"] = acc.get("limited", 0) + limited
                    acc.update(ex)

    with bpf_stats():
        _attempt(data.unavailable, kind, floor)
        _attempt(data.unavailable, kind, shield)


def _src_label(src: str) -> str:
    return "1 source" if src == "one" else "random sources"


def cost_rows(lc: LimitsConfig, data: CostSamples) -> list[Result]:
    """Per kind: the floor, limits off (against the floor) and on (against
    off, with the goal), one source and random sources."""
    rows = _Rows(data.unavailable)
    out: list[Result] = []
    for kind in lc.kinds:
        head = f"{kind}-ipv6"
        floor_name = f"{head} xdp-drop (bpf_stats floor)"
        floor = data.ns.get((kind, _FLOOR), [])
        out.append(dataclasses.replace(
            rows.row(floor_name, GROUP_COST, "ns/pkt", floor, kind,
                     note="a bare XDP_DROP timed by the same kernel accounting (one "
                          "source): its clock reads are in every row",
                     ex=data.extra.get((kind, _FLOOR))),
            higher_is_better=False))  # fmt: skip
        fl = median(floor) or 0.0
        for src in ("one", "random"):
            label = _src_label(src)
            off_name = f"{head} limits off, {label}"
            off = data.ns.get((kind, f"off {src}"), [])
            on = data.ns.get((kind, f"on {src}"), [])
            for lim, name, samples, base_name, base, goal in (
                ("off", off_name, off, floor_name, floor, None),
                ("on", f"{head} limits on, {label}", on, off_name, off, GOAL_COST),
            ):
                ex = dict(data.extra.get((kind, f"{lim} {src}"), {}))
                what = "SYN to the protected port (SYN-ACK)" if kind == "syn" else "UDP, passed"
                sent = (
                    f"{fmt_num(ex.get('packets'))} packets at {fmt_num(ex.get('generator_pps'))}/s"
                )
                if src == "one":
                    note = f"{what} from {ONE6}; {sent}"
                else:
                    note = (f"{what}, each packet from its own random /64 of {RANDOM6}; {sent} "
                            f"(a flood stops at {_count(lc.sources)} packets or "
                            f"{lc.random_s:g} s)")  # fmt: skip
                r = rows.row(name, GROUP_COST, "ns/pkt", samples, kind, base_name, base, goal,
                             note, ex)  # fmt: skip
                r = dataclasses.replace(r, higher_is_better=False)
                if lim == "on" and r.skipped is None:
                    m_on, m_off = median(on) or 0.0, median(off) or 0.0
                    if ex.get("limited", 0) > 0.01 * max(ex.get("runs", 1), 1):
                        r = dataclasses.replace(
                            r, samples=(), skipped=f"the flood was limited: {ex['reasons']}"
                        )
                    elif m_off > fl:
                        note += f"; {(m_on - fl) / (m_off - fl):.2f}x with the floor taken off"
                        r = dataclasses.replace(r, note=note)
                out.append(r)
    return out


# -- floods dropped by the limits ------------------------------------------------------------
LIMIT_FLOODS: tuple[PolicyFlood, ...] = (
    PolicyFlood("over-limit-flood", "udp", Reason.LIMIT_PPS,
                f"UDP from one source ({FLOODER}) at full speed, far over its pps limit",
                {"sources": f"{FLOODER}/32"}),
    PolicyFlood("blocked-flood", "udp", Reason.BLOCKED,
                f"the same flood once the data path has blocked {FLOODER}",
                {"sources": f"{FLOODER}/32"}),
)  # fmt: skip
LIVE_RECEIVERS = ("xdpshield", "xdp-drop")


def _block_of(s: Shield, addr: str) -> shield_limits.Block | None:
    prefix = parse_prefix(f"{addr}/32")
    return next((b for b in s.blocks(expired=True) if b.prefix == prefix), None)


def _earn_block(stand: Stand, s: Shield, lc: LimitsConfig, addr: str) -> None:
    """A flood at 20x the limit until the data path blocks ``addr``."""
    rate = 20 * lc.limit_pps
    seconds = 0.2 + 1.5 * 0.2
    s.set_limits(Limits(pps=lc.limit_pps, block_after=0.2, block_ttl=600.0))
    flood("udp", stand=stand, sources=f"{addr}/32", rate_pps=rate, duration_s=seconds,
          count=int(rate * seconds), dport=LEGIT_PORT)  # fmt: skip
    if _block_of(s, addr) is None:
        raise TrafficError(f"{addr} was not blocked after {seconds} s at {rate} pps")


def _drop_round(stand: Stand, cfg: LiveConfig, lc: LimitsConfig, q: int, rx: str,
                data: PolicyLiveSamples, step: Callable[[str], None]) -> None:  # fmt: skip
    """The limits' floods, through the policy rows' receiver round."""

    def setup(fl: PolicyFlood, s: Shield) -> None:
        if fl.reason == Reason.BLOCKED:
            _earn_block(stand, s, lc, FLOODER)
        else:
            s.set_limits(Limits(pps=lc.limit_pps))

    def reset(s: Shield) -> None:
        s.del_blocks([parse_prefix(f"{FLOODER}/32")])
        s.set_limits(Limits())

    _receiver_round(stand, cfg, q, rx, data, step, LIMIT_FLOODS, setup, reset)


def live_rows(ql: str, data: PolicyLiveSamples) -> list[Result]:
    """Per flood: the bare XDP_DROP, and the shield's drops by the limits against it."""
    return policy_live_rows(ql, data, LIMIT_FLOODS, GROUP_LIVE, GOAL_LIVE)


# -- time to block -----------------------------------------------------------------------------
def _time_to_block(stand: Stand, lc: LimitsConfig, s: Shield) -> tuple[float, float]:
    """(s from the excess's start to the block, s from the flood's start)."""
    rate = 20 * lc.limit_pps
    seconds = lc.block_after_s + 1.5
    prefix = parse_prefix(f"{SLOW_FLOODER}/32")
    s.set_limits(Limits(pps=lc.limit_pps, block_after=lc.block_after_s, block_ttl=600.0))
    since: list[int] = []

    def watch(_sent: int, _elapsed: float) -> None:
        if not since:
            for src in shield_limits.tracked_sources(s.maps):
                if src.prefix == prefix and src.rule is None and src.over_since_ns:
                    since.append(src.over_since_ns)

    t0 = time.monotonic_ns()
    flood("udp", stand=stand, sources=f"{SLOW_FLOODER}/32", rate_pps=rate, duration_s=seconds,
          count=int(rate * seconds), dport=LEGIT_PORT, on_progress=watch,
          progress_interval_s=0.1)  # fmt: skip
    block = _block_of(s, SLOW_FLOODER)
    s.del_blocks([prefix])
    s.set_limits(Limits())
    if block is None:
        raise TrafficError(f"{SLOW_FLOODER} was not blocked in {seconds} s at {rate} pps")
    if not since:
        raise TrafficError("the excess's start was never seen in xs_src")
    return (block.since_ns - since[0]) / NS, (block.since_ns - t0) / NS


def block_rows(lc: LimitsConfig, times: Sequence[tuple[float, float]], why: str | None
               ) -> list[Result]:  # fmt: skip
    after = lc.block_after_s
    skip = why or (None if times else "no measurement")
    first = [t for t, _ in times]
    note = (
        f"one source at 20x its {lc.limit_pps} pps limit, block-after {after:g} s: from its "
        "first packet over the limit (xs_src.over_since) to its block's since, one clock; "
        "the generator holds the rate in bursts 0.1 s apart and the block is taken by the "
        "first packet over the limit after block-after, so up to a burst's gap is in the delay"
    )
    ex = {"from_flood_start_s": [round(t, 4) for _, t in times]}
    return [
        Result(f"time to block (block-after {after:g} s)", GROUP_BLOCK, "s",
               () if skip else tuple(first), goal=GOAL_BLOCK, note=note, skipped=skip, extra=ex),
        Result(f"block delay beyond block-after ({after:g} s)", GROUP_BLOCK, "s",
               () if skip else tuple(t - after for t in first),
               note="the time to block less block-after", skipped=skip),
    ]  # fmt: skip


# -- memory ---------------------------------------------------------------------------------------
_HASH, _LRU_HASH, _LPM_TRIE = 1, 9, 11


@dataclass(frozen=True)
class TableMemory:
    name: str
    max_entries: int
    per_entry: float  # bytes
    total: int  # bytes, at max_entries
    prealloc: bool
    percpu: bool


def _fill_keys(m: Map[Any, Any], n: int, seed: int) -> list[bytes]:
    """``n`` distinct keys the map takes (an LPM trie's: full-length prefixes)."""
    rnd = random.Random(seed)
    if m.type == _LPM_TRIE:
        data = m.key_size - 4
        plen = (data * 8).to_bytes(4, "little")
        return [plen + rnd.randbytes(data) for _ in range(n)]
    return [rnd.randbytes(m.key_size) for _ in range(n)]


def table_memory(maps: Mapping[str, Map[Any, Any]], fill: int, seed: int = 14) -> list[TableMemory]:
    """Each limits table's memory by the kernel's memlock figure (see the module doc)."""
    out: list[TableMemory] = []
    for name in LIMIT_TABLES:
        m = maps[name]
        empty = fdinfo(m.fd)["memlock"]
        per, total, prealloc = empty / m.max_entries, empty, True
        if m.type in (_HASH, _LRU_HASH, _LPM_TRIE):
            raw = m.typed(Raw(m.key_size), Raw(m.value_size))
            zero = bytes(m.value_size)
            keys = _fill_keys(m, min(fill, m.max_entries), seed)
            for k in keys:
                raw.update(k, zero)
            grown = fdinfo(m.fd)["memlock"] - empty
            if grown > 0:
                per, prealloc = grown / len(keys), False
                total = empty + round(per * m.max_entries)
            for k in keys:
                with contextlib.suppress(Exception):
                    raw.delete(k)
        out.append(TableMemory(name, m.max_entries, per, total, prealloc, m.percpu))
    return out


def memory_rows(tables: Sequence[TableMemory], why: str | None = None) -> list[Result]:
    rows: list[Result] = []
    if why is not None:
        for name in LIMIT_TABLES:
            rows += [Result(f"{name} per entry", GROUP_MEM_ENTRY, "B", skipped=why),
                     Result(f"{name} total", GROUP_MEM_TABLE, "MiB", skipped=why)]  # fmt: skip
        return [*rows, Result("all limits tables", GROUP_MEM_TABLE, "MiB", skipped=why)]
    ncpus = os.cpu_count() or 1
    for t in tables:
        how = (
            "preallocated: memlock / max_entries"
            if t.prealloc
            else "allocated per entry: memlock grown per entry written, total at max_entries"
        )
        if t.percpu:
            how += f" (per CPU: {ncpus} CPUs here)"
        note = f"{t.max_entries:,} entries; {how}"
        rows.append(Result(f"{t.name} per entry", GROUP_MEM_ENTRY, "B", (t.per_entry,),
                           note=note))  # fmt: skip
        rows.append(Result(f"{t.name} total", GROUP_MEM_TABLE, "MiB", (t.total / 2**20,),
                           note=note))  # fmt: skip
    all_mib = sum(t.total for t in tables) / 2**20
    rows.append(
        Result(
            "all limits tables",
            GROUP_MEM_TABLE,
            "MiB",
            (all_mib,),
            note="every limits table at max_entries (the kernel's memlock figures)",
        )
    )
    return rows


def run_limits(quick: bool, progress: Progress | None = None,
               lc: LimitsConfig | None = None) -> list[Result]:  # fmt: skip
    """The memory rows: a shield object loaded for the test run (no stand needed)."""
    report = progress or no_progress
    cfg = lc or (LimitsConfig.quick() if quick else LimitsConfig())
    report("limits: memory per table", 0.0)
    try:
        with load_shield() as coll:
            rows = memory_rows(table_memory(coll.maps, cfg.fill))
    except Exception as exc:  # reported in every row, never lost
        rows = memory_rows([], f"{type(exc).__name__}: {exc}".splitlines()[0])
    report("limits memory done", 1.0)
    return rows


# -- the stand -----------------------------------------------------------------------------------
def _live_stand(cfg: LiveConfig, lc: LimitsConfig, q: int, first: bool, report: Progress
                ) -> list[Result]:  # fmt: skip
    stand = Stand(prefix=netns.unique_prefix("xsl"), queues=q)
    ql = _qlabel(q)
    drops = PolicyLiveSamples()
    cost = CostSamples()
    times: list[tuple[float, float]] = []
    block_why: dict[str, str] = {}
    steps = cfg.reps * len(LIMIT_FLOODS) * len(LIVE_RECEIVERS)
    if first:
        steps += cfg.reps * len(lc.kinds) * 5 + lc.block_reps
    done = 0

    def step(what: str) -> None:
        nonlocal done
        report(f"limits: {what} ({ql})", min(done / steps, 1.0))
        done += 1

    server = None
    try:
        stand.up()
        # A listener behind the protected port: a SYN meets the SYN-ACK path.
        server = serve_http(stand, port=LEGIT_PORT)
        for rep in range(cfg.reps):
            for rx in LIVE_RECEIVERS[rep % 2 :] + LIVE_RECEIVERS[: rep % 2]:
                _drop_round(stand, cfg, lc, q, rx, drops, step)
            if first:
                for kind in lc.kinds:
                    _cost_kind(stand, lc, kind, rep, cost, step)
        if first:

            def blocks() -> None:
                with _rx_policy_shield(stand) as s:
                    for _ in range(lc.block_reps):
                        step("time to block")
                        times.append(_time_to_block(stand, lc, s))
                        time.sleep(1.1)  # past the excess gap: the next excess starts anew

            _attempt(block_why, "block", blocks)
    finally:
        if server is not None:
            server.stop()
        stand.down()
    rows = live_rows(ql, drops)
    if first:
        rows = cost_rows(lc, cost) + rows + block_rows(lc, times, block_why.get("block"))
    return rows


def _skipped(cfg: LiveConfig, lc: LimitsConfig, why: str, first: bool) -> list[Result]:
    out: list[Result] = []
    for q in cfg.queues:
        data = PolicyLiveSamples(unavailable=dict.fromkeys(LIVE_RECEIVERS, why))
        out += live_rows(_qlabel(q), data)
    if first:
        cost = CostSamples(unavailable=dict.fromkeys(lc.kinds, why))
        out = cost_rows(lc, cost) + out + block_rows(lc, [], why)
    return out


def run_limits_live(
    quick: bool,
    progress: Progress | None = None,
    cfg: LiveConfig | None = None,
    lc: LimitsConfig | None = None,
) -> list[Result]:
    """The cost, drop and block rows, on stands of their own (the cost and
    block rows on the first queue count's)."""
    cfg = cfg or (LiveConfig.quick_drops() if quick else LiveConfig())
    lim = lc or (LimitsConfig.quick() if quick else LimitsConfig())
    first_q = cfg.queues[0] if cfg.queues else None

    def rows(c: LiveConfig, q: int, p: Progress) -> list[Result]:
        return _live_stand(c, lim, q, q == first_q, p)

    def skipped(c: LiveConfig, why: str) -> list[Result]:
        return _skipped(c, lim, why, first_q in c.queues)

    results = per_queue(cfg, progress, rows, skipped)
    (progress or no_progress)("limits floods done", 1.0)
    return results
