"""The policy stages' benchmarks (issue 13): lookups in the test run, floods on the stand, loads.

* Deny-list lookup: a UDP frame whose source is denied (hit: XDP_DROP,
  counted DENY) and one whose source is not (miss: XDP_PASS), each family,
  against a shield holding 10 prefixes and one holding a million (random
  /24s, /48s). Rows: the big list's cost over the small one's.
* Rules: a frame that a rule matches and one that reaches the rules stage
  but matches none, 10 rules against 10,000 (UDP port rules from /24s,
  some port ranges).
* Floods that policy drops (a denied source network, UDP reflection from
  port 53, fragments whose first never came, SYN+FIN) against a bare
  XDP_DROP on the same stand in the same run.
* Loads: a million prefixes read from a file and added to a shield, the map
  write alone; a 10,000-rule config parsed, compiled, applied.

Test-run rows are timed as ``micro`` times the verdict paths (same
``MicroConfig``, interleaved in a shuffled order, every timed iteration
checked against the reason counters) next to a bare XDP_DROP of their own.
Loads are wall-clock time on a fresh shield; their goals are budgets, and
their baselines the part they build on (the map write alone, the compile
alone), so the ratio says how much the rest adds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import random
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice, repeat
from pathlib import Path
from typing import Any, Literal

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from xdpshield import netns
from xdpshield.ebpf import Collection, ObjectSpec
from xdpshield.lab import FloodKind
from xdpshield.lab.bench.frames import (
    CLIENT_MAC,
    CLIENT_PORT,
    PROTECTED_PORT,
    SERVER4,
    SERVER6,
    SERVER_MAC,
)
from xdpshield.lab.bench.harness import (
    BASELINE_OBJ,
    OBJ_DIR,
    XDP_DROP,
    XDP_PASS,
    Harness,
    counter_diff,
    load_shield,
    pinned,
    shield_stats_reader,
    tally_impure,
    vname,
)
from xdpshield.lab.bench.live import (
    LiveConfig,
    _attempt,
    _drop_flood_once,
    _qlabel,
    _Rows,
    cost_note,
    per_queue,
    prog_cost,
)
from xdpshield.lab.bench.micro import MicroConfig
from xdpshield.lab.bench.receivers import LEGIT_PORT, receiver
from xdpshield.lab.bench.results import Goal, Progress, Result, fmt_num, median, no_progress
from xdpshield.lab.stand import Stand
from xdpshield.policy.cidr import gc_paused, parse_prefix, read_prefix_file
from xdpshield.policy.config import load_config
from xdpshield.policy.model import Action, Policy, Prefix, PrefixList, Rule
from xdpshield.policy.rules import compile_rules
from xdpshield.shield import policy as shield_policy
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

__all__ = [
    "GOAL_APPLY",
    "GOAL_DENY",
    "GOAL_LIVE",
    "GOAL_LOAD",
    "GOAL_RULES",
    "GROUP_APPLY",
    "GROUP_DENY",
    "GROUP_LIVE",
    "GROUP_LOAD",
    "GROUP_RULES",
    "POLICY_FLOODS",
    "PolicyConfig",
    "PolicyFlood",
    "PolicyLiveSamples",
    "live_rows",
    "live_skipped",
    "load_rows",
    "lookup_rows",
    "random_prefixes",
    "rules_toml",
    "run_policy",
    "run_policy_live",
    "udp_rules",
]

GROUP_DENY = "policy: deny-list lookup (test run)"
GROUP_RULES = "policy: rules (test run)"
GROUP_LIVE = "policy: floods dropped by policy (live)"
# Loads in seconds and applies in ms: one chart (one axis) each.
GROUP_LOAD = "policy: loading prefix lists"
GROUP_APPLY = "policy: applying a rules config"
GOAL_DENY = Goal("<=", 1.2, "issue 13: deny lookup with 1M prefixes <= 1.2x with 10")
GOAL_RULES = Goal("<=", 1.2, "issue 13: rules stage with 10,000 rules <= 1.2x with 10")
GOAL_LIVE = Goal(">=", 0.9, "issue 13: drops by policy >= 0.9x bare XDP_DROP")
GOAL_LOAD = Goal("<=", 3.0, "issue 13: 1M prefixes read and loaded in <= 3 s", unit="s")
GOAL_APPLY = Goal("<=", 200.0, "issue 13: 10,000-rule config applied in <= 200 ms", unit="ms")
#: The sizes the goals are stated for (a quick run's smaller lists get none
#: of the time budgets, which would mean nothing there).
GOAL_PREFIXES, GOAL_RULES_N = 1_000_000, 10_000

DROP_ANCHOR = "xdp-drop (policy)"


@dataclass(frozen=True)
class PolicyConfig:
    """What the policy rows measure with; test-run settings come from ``MicroConfig``."""

    prefixes: int = GOAL_PREFIXES  # per family, the big deny list
    few_prefixes: int = 10
    rules: int = GOAL_RULES_N
    few_rules: int = 10
    # Loads take seconds each: at most this many (and no more than the
    # test run's repetitions).
    load_reps: int = 3
    # Iterations per timed test run, unless a MicroConfig is given (None: its default's).
    repeat: int | None = None
    seed: int = 13

    @classmethod
    def quick(cls) -> PolicyConfig:
        # Small enough to add well under 20 s to a quick bench.
        return cls(prefixes=50_000, rules=1_000, load_reps=2, repeat=250_000)


# -- what is looked up ---------------------------------------------------------------
# First bytes of the random prefixes: IPv4 unicast outside 0/8, 127/8 and
# 198/8 (the bench frames and the stand live in 198.18.0.0/15, and must
# miss); IPv6 in 2000::/3. As bytes.translate tables, so a million first
# bytes are drawn without Python code per prefix.
_FIRST4 = [b for b in range(1, 224) if b not in (127, 198)]
_FIRST_TABLE = {
    4: bytes(_FIRST4[i % len(_FIRST4)] for i in range(256)),
    6: bytes(0x20 + (i & 0x1F) for i in range(256)),
}
_SHAPE = {4: (4, 24), 6: (16, 48)}  # address bytes, prefix length
_new_prefix = partial(tuple.__new__, Prefix)  # as cidr.py: no per-tuple __new__
_CHUNK = 1 << 16  # prefixes drawn at a time


def random_prefixes(version: int, n: int, seed: int) -> list[Prefix]:
    """``n`` distinct random /24s (IPv4) or /48s (IPv6), none in 198/8 or fd00::/8.

    Built from random bytes with C-level passes (no ``ipaddress``): a
    million in a fraction of a second. The bytes are drawn in fixed chunks,
    so a shorter list is the start of a longer one (same seed).
    """
    out: dict[Prefix, None] = {}
    with gc_paused():
        _draw(out, random.Random(seed), version, n)
    # The first n distinct ones (dicts keep the order they were drawn in).
    return list(islice(out, n))


def _draw(out: dict[Prefix, None], rnd: random.Random, version: int, n: int) -> None:
    """Add random prefixes to ``out``, a chunk at a time, until it holds ``n``."""
    width, plen = _SHAPE[version]
    net = plen // 8
    pad = bytes(width - net)
    while len(out) < n:
        raw = bytearray(rnd.randbytes(net * _CHUNK))
        raw[0::net] = bytes(raw[0::net]).translate(_FIRST_TABLE[version])
        blob = bytes(raw)
        addrs = [blob[i : i + net] + pad for i in range(0, len(blob), net)]
        out.update(dict.fromkeys(map(_new_prefix, zip(repeat(version), addrs, repeat(plen)))))


def _uncovered(version: int, taken: PrefixList, seed: int) -> Prefix:
    """A random prefix of the same shape that ``taken`` does not hold."""
    for i in range(1000):
        p = random_prefixes(version, 1, seed + 7919 * (i + 1))[0]
        if p not in taken:
            return p
    raise AssertionError("no free prefix in 1000 draws")  # pragma: no cover


def _host(p: Prefix) -> str:
    """The prefix's first host address (.1, ::1) as text."""
    family = socket.AF_INET if p.version == 4 else socket.AF_INET6
    return socket.inet_ntop(family, p.addr[:-1] + b"\x01")


def _udp(src: str, dport: int = PROTECTED_PORT) -> bytes:
    """A UDP datagram from ``src`` to the bench's server (frames.py's hosts and ports)."""
    ip: Any = (
        IPv6(src=src, dst=SERVER6, hlim=64)
        if ":" in src
        else IP(src=src, dst=SERVER4, ttl=64, id=1, flags="DF")
    )
    return bytes(
        Ether(src=CLIENT_MAC, dst=SERVER_MAC)
        / ip
        / UDP(sport=CLIENT_PORT, dport=dport)
        / (b"x" * 18)
    )


def udp_rules(n: int, seed: int) -> tuple[Rule, ...]:
    """``n`` rules as a config holds them: UDP to a port (every tenth to a
    range of 8) from one random /24 each, drop and pass alternating. The
    first ``k`` of ``n`` rules are those of ``udp_rules(k)``: rule 0 (port
    1024, drop) is in every set."""
    sources = random_prefixes(4, n, seed)
    rules = []
    for i, src in enumerate(sources):
        lo = 20000 + 8 * (i // 10) if i % 10 == 9 else 1024 + i % 4000
        hi = lo + 7 if i % 10 == 9 else lo
        rules.append(
            Rule(
                name=f"r{i}",
                action=Action.DROP if i % 2 == 0 else Action.PASS,
                protocols=frozenset({17}),
                sources=(src,),
                dports=((lo, hi),),
            )
        )
    return tuple(rules)


def rules_toml(rules: Sequence[Rule]) -> str:
    """``udp_rules`` as a config file's ``[[rule]]`` tables."""
    out = []
    for r in rules:
        ((lo, hi),) = r.dports
        dport = str(lo) if lo == hi else f'"{lo}-{hi}"'
        out.append(
            f'[[rule]]\nname = "{r.name}"\naction = "{r.action.value}"\nprotocol = "udp"\n'
            f'dport = {dport}\nsource = "{r.sources[0]}"\n'
        )
    return "\n".join(out)


def _count(n: int) -> str:
    """1000000 -> '1M', 10000 -> '10k'."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# -- test run: the cases ---------------------------------------------------------------
@dataclass(frozen=True)
class _Case:
    """One timed path: which shield, the frame, what the shield must do with it."""

    name: str
    shield: str
    frame: bytes
    verdict: int
    reason: str
    note: str


@dataclass
class _Shields:
    """The shields the test-run rows use, each loaded with one policy."""

    colls: dict[str, Collection] = field(default_factory=dict)
    setup_s: dict[str, float] = field(default_factory=dict)

    def load(self, stack: contextlib.ExitStack, name: str, pol: Policy) -> None:
        coll = stack.enter_context(load_shield())
        shield_policy.init_policy(coll.maps)
        t0 = time.perf_counter()
        shield_policy.apply_policy(coll.maps, pol)
        self.setup_s[name] = time.perf_counter() - t0
        self.colls[name] = coll


def _cases(cfg: PolicyConfig, shields: _Shields, stack: contextlib.ExitStack) -> list[_Case]:
    """The frames, and three shields that differ only in the size under test:
    ``few`` (the small deny lists and rule set), ``many-prefixes`` (the big
    deny lists) and ``many-rules`` (the big rule set). Each frame runs on
    ``few`` and on the shield whose table it looks up is big."""
    small: PrefixList = {}
    big: PrefixList = {}
    srcs: list[tuple[int, str, str]] = []
    for version in (4, 6):
        many = random_prefixes(version, cfg.prefixes, cfg.seed + version)
        hit = many[len(many) // 2]  # a random one: the list is in random order
        big.update(dict.fromkeys(many))
        small.update(dict.fromkeys([*many[: cfg.few_prefixes - 1], hit]))
        srcs.append((version, _host(hit), _host(_uncovered(version, big, cfg.seed))))
        del many
    rules = udp_rules(cfg.rules, cfg.seed)
    few = rules[: cfg.few_rules]
    shields.load(stack, "few", Policy(deny=small, rules=few))
    shields.load(stack, "many-prefixes", Policy(deny=big, rules=few))
    del big
    shields.load(stack, "many-rules", Policy(deny=small, rules=rules))
    cases: list[_Case] = []
    for version, hit_src, miss_src in srcs:
        for which, n in (("few", cfg.few_prefixes), ("many-prefixes", cfg.prefixes)):
            lists = f"{_count(n)} prefixes per family"
            cases += [
                _Case(f"deny-hit-ipv{version} ({_count(n)} prefixes)", which, _udp(hit_src),
                      XDP_DROP, "DENY", f"UDP from a denied /{24 if version == 4 else 48}; "
                      f"{lists}"),
                _Case(f"deny-miss-ipv{version} ({_count(n)} prefixes)", which, _udp(miss_src),
                      XDP_PASS, "PASS_UNPROTECTED", f"UDP from a random source no prefix "
                      f"holds (then hygiene, the rules: no rule for its port); {lists}"),
            ]  # fmt: skip
    first = rules[0]
    (src,) = first.sources
    port = first.dports[0][0]
    taken = dict.fromkeys([*(p for r in rules for p in r.sources), *small])
    match, nomatch = _udp(_host(src), port), _udp(_host(_uncovered(4, taken, cfg.seed)), port)
    for which, n in (("few", cfg.few_rules), ("many-rules", cfg.rules)):
        cases += [
            _Case(f"rule-match ({_count(n)} rules)", which, match, XDP_DROP, "RULE_DROP",
                  f"UDP to port {port} from {src}: rule {first.name} drops it; "
                  f"{_count(n)} UDP port rules from /24s"),
            _Case(f"rule-miss ({_count(n)} rules)", which, nomatch, XDP_PASS, "PASS_UNPROTECTED",
                  f"UDP to the same port from a source no rule holds: the class's trie "
                  f"lookup finds nothing; {_count(n)} rules"),
        ]  # fmt: skip
    return cases


# -- test run: timing ------------------------------------------------------------------
def _check(h: Harness, shields: _Shields, case: _Case) -> str | None:
    """Run once; None if the shield took the path, else what it did instead."""
    coll = shields.colls[case.shield]
    read = shield_stats_reader(coll)
    before = read()
    verdict, _ = h.run(coll.program("xdpshield_xdp"), case.frame, 1, False)
    seen = counter_diff(read(), before)
    if verdict != case.verdict or seen != {case.reason: 1}:
        return f"shield answered {vname(verdict)} ({', '.join(seen) or 'nothing counted'})"
    return None


def _timed(
    h: Harness, shields: _Shields, case: _Case, repeat: int, impure: dict[str, dict[str, int]]
) -> float:
    """One timed run; iterations counted under another reason are kept in ``impure``."""
    coll = shields.colls[case.shield]
    read = shield_stats_reader(coll)
    before = read()
    ns = h.timed(coll.program("xdpshield_xdp"), case.frame, repeat, False)
    tally_impure(impure, case.name, counter_diff(read(), before), case.reason, repeat)
    return ns


def _time_cases(
    h: Harness, shields: _Shields, cases: list[_Case], mc: MicroConfig, report: Progress
) -> tuple[dict[str, list[float]], dict[str, dict[str, int]]]:
    """ns per iteration by row name, one per repetition, interleaved and shuffled."""
    samples: dict[str, list[float]] = {}
    impure: dict[str, dict[str, int]] = {}
    frame = cases[0].frame if cases else _udp("198.18.1.1")
    steps, done = mc.reps * (len(cases) + 1), 0
    for rep in range(mc.reps):
        order: list[tuple[str, Callable[[], float]]] = [
            (DROP_ANCHOR, partial(h.timed, h.drop, frame, mc.repeat, False))
        ]
        order += [(c.name, partial(_timed, h, shields, c, mc.repeat, impure)) for c in cases]
        random.Random(rep).shuffle(order)
        for name, fn in order:
            report(f"test run {name} ({rep + 1}/{mc.reps})", done / steps)
            samples.setdefault(name, []).append(float(fn()))
            done += 1
    return samples, impure


def _pairs(cfg: PolicyConfig) -> list[tuple[str, str, str, Goal]]:
    """(group, row at the small size, row at the big size, goal) of every ratio the issue asks."""
    out = []
    for version in (4, 6):
        for what in ("hit", "miss"):
            base = f"deny-{what}-ipv{version}"
            out.append((GROUP_DENY, f"{base} ({_count(cfg.few_prefixes)} prefixes)",
                        f"{base} ({_count(cfg.prefixes)} prefixes)", GOAL_DENY))  # fmt: skip
    for what in ("match", "miss"):
        out.append((GROUP_RULES, f"rule-{what} ({_count(cfg.few_rules)} rules)",
                    f"rule-{what} ({_count(cfg.rules)} rules)", GOAL_RULES))  # fmt: skip
    return out


def lookup_rows(
    cfg: PolicyConfig,
    cases: Sequence[_Case],
    samples: dict[str, list[float]],
    impure: dict[str, dict[str, int]],
    skipped: dict[str, str],
    total_iterations: int,
    apply_s: dict[str, float] | None = None,
) -> list[Result]:
    """The anchor, each small-size row against it, each big-size row against its small one.

    ``apply_s``: seconds the apply of each shield's policy took (in the rows' details).
    """
    drop = tuple(samples.get(DROP_ANCHOR, ()))
    rows = [
        Result(
            DROP_ANCHOR,
            GROUP_DENY,
            "ns/pkt",
            drop,
            note="bare XDP_DROP timed in this loop (the small-size rows' baseline)",
        )
    ]
    small_of = {big: (small, goal) for _, small, big, goal in _pairs(cfg)}
    by_name = {c.name: c for c in cases}
    named = [(group, name) for group, s, b, _ in _pairs(cfg) for name in (s, b)]
    for group, name in named:
        case = by_name.get(name)
        note = case.note if case else ""
        small, goal = small_of.get(name, (DROP_ANCHOR, None))
        base = tuple(samples.get(small, ())) if small != DROP_ANCHOR else drop
        vals = tuple(samples.get(name, ()))
        why = skipped.get(name)
        if why is None and name in impure:
            bad = impure[name]
            share = sum(bad.values()) / max(total_iterations, 1)
            if share > 0.01:
                why = f"{share:.0%} of the timed iterations took other paths ({bad})"
            else:
                note += f"; other paths counted during timing: {bad}"
        if why is None and small in skipped:
            why = f"its baseline did not run: {skipped[small]}"
        if why is None and not vals:
            why = "no measurement"
        rows.append(
            Result(
                name,
                group,
                "ns/pkt",
                () if why else vals,
                small,
                base,
                goal,
                note,
                why,
                extra=_case_extra(case, apply_s or {}),
            )
        )
    return rows


def _case_extra(case: _Case | None, apply_s: dict[str, float]) -> dict[str, Any]:
    if case is None:
        return {}
    return {"frame_bytes": len(case.frame), "policy_apply_s": round(apply_s.get(case.shield, 0), 3)}


def _testrun(cfg: PolicyConfig, mc: MicroConfig, report: Progress) -> list[Result]:
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(ObjectSpec(OBJ_DIR / BASELINE_OBJ).load())
        shields = _Shields()
        report("policy: loading shields with lists and rules", 0.0)
        cases = _cases(cfg, shields, stack)
        h = Harness(base, None)
        skipped: dict[str, str] = {}
        for case in cases:
            why = _check(h, shields, case)
            if why is not None:
                skipped[case.name] = why
        runnable = [c for c in cases if c.name not in skipped]
        with pinned(mc.cpu):
            h.calibrate()
            samples, impure = _time_cases(
                h, shields, runnable, mc, lambda w, f: report(w, 0.2 + 0.8 * f)
            )
        return lookup_rows(
            cfg, cases, samples, impure, skipped, mc.repeat * mc.reps, shields.setup_s
        )


# -- loads ------------------------------------------------------------------------------
#: Three timings of one repetition (see _load_once).
_Times = tuple[float, float, float]


def _fresh_maps(stack: contextlib.ExitStack) -> Any:
    """A newly loaded shield's maps, with the default policy (as a load leaves them)."""
    coll = stack.enter_context(load_shield())
    shield_policy.init_policy(coll.maps)
    return coll.maps


def _clock(fn: Callable[[], object]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _load_once(lists: dict[int, Path], rules: Path) -> tuple[dict[int, _Times], _Times]:
    """One fresh shield: the rules config parsed, compiled, applied (ms); then
    per family the list file read, added, and the map write alone (s).

    The rules go first: their apply meets the shield as a load leaves it.
    The write alone is what add_entries hands the kernel, already packed:
    the raw batched write of the same prefixes into the family's allow hash
    tier (the same map definition as the deny list's, still empty).
    """
    with contextlib.ExitStack() as stack:
        maps = _fresh_maps(stack)
        parse_s, config = _clock(partial(load_config, rules))
        compile_s, _ = _clock(partial(compile_rules, config.policy.rules))
        apply_s, _ = _clock(partial(shield_policy.apply_policy, maps, config.policy))
        out: dict[int, _Times] = {}
        for version, path in lists.items():
            read_s, prefixes = _clock(partial(read_prefix_file, path))
            add_s, _ = _clock(partial(shield_policy.add_entries, maps, "deny", prefixes))
            gen = shield_policy.selector(maps).allow_gen
            value = shield_policy._ACL.encode((0, shield_policy.ACL_LIVE, 0))
            keys = b"".join(shield_policy._hash_key(p, gen) for p in prefixes)
            table = shield_policy._hash(maps, "allow", version)
            write_s, _ = _clock(
                partial(table.update_batch_bytes, keys, value * len(prefixes), 65536)
            )
            out[version] = (read_s, add_s, write_s)
            del prefixes, keys
    return out, (parse_s * 1000, compile_s * 1000, apply_s * 1000)


def _load_row(
    name: str,
    unit: Literal["s", "ms"],
    vals: Sequence[float],
    anchor: str | None,
    base: Sequence[float],
    note: str,
    skip: str | None,
    goal: Goal | None = None,
) -> Result:
    return Result(
        name,
        GROUP_LOAD if unit == "s" else GROUP_APPLY,
        unit,
        () if skip else tuple(vals),
        anchor,
        tuple(base),
        goal,
        note,
        skip,
    )


def load_rows(
    cfg: PolicyConfig,
    lists: dict[int, list[_Times]],
    rules: list[_Times],
    skipped: dict[str, str] | None = None,
) -> list[Result]:
    """Rows of the loads: per family read + add (the budget), read, add, the
    write alone (their baseline); then the rules: apply (the budget), compile
    alone (the baseline), parse. ``lists``: (read, add, write) seconds per
    family, ``rules``: (parse, compile, apply) ms, one tuple per repetition."""
    why = skipped or {}
    n, nr = _count(cfg.prefixes), _count(cfg.rules)
    rows: list[Result] = []
    for version in (4, 6):
        got = lists.get(version, [])
        head = f"load {n} IPv{version} {'/24s' if version == 4 else '/48s'}"
        anchor = f"{head}: map write alone"
        write = [s[2] for s in got]
        skip = why.get(f"list{version}")
        budget = GOAL_LOAD if cfg.prefixes == GOAL_PREFIXES else None
        rows += [
            _load_row(f"{head}: read_prefix_file + add_entries", "s",
                      [r + a for r, a, _ in got], anchor, write,
                      "a generated list file read and added to a fresh shield's deny list "
                      "(what `xdpshield deny IFACE load FILE` does)", skip, budget),
            _load_row(f"{head}: read_prefix_file", "s", [s[0] for s in got], anchor, write,
                      "parsing alone", skip),
            _load_row(f"{head}: add_entries", "s", [s[1] for s in got], anchor, write,
                      "add_entries alone: packing the keys, the batched map writes", skip),
            _load_row(anchor, "s", write, None, (),
                      "the shield's batched map writes of keys already packed (the "
                      "kernel's inserts and the binding's encoding)", skip),
        ]  # fmt: skip
    skip = why.get("rules")
    anchor = f"apply {nr} rules: compile_rules"
    comp = [s[1] for s in rules]
    budget = GOAL_APPLY if cfg.rules == GOAL_RULES_N else None
    rows += [
        _load_row(f"apply {nr} rules: apply_policy", "ms", [s[2] for s in rules], anchor, comp,
                  "compile + map writes on a fresh shield (the config already parsed)", skip,
                  budget),
        _load_row(anchor, "ms", comp, None, (), "compiling alone (pure Python)", skip),
        _load_row(f"apply {nr} rules: load_config", "ms", [s[0] for s in rules], anchor, comp,
                  f"parsing a generated TOML of {nr} [[rule]] tables (reported apart)", skip),
    ]  # fmt: skip
    return rows


def _loads(cfg: PolicyConfig, reps: int, report: Progress) -> list[Result]:
    lists: dict[int, list[_Times]] = {4: [], 6: []}
    rules: list[_Times] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="xdpshield-bench-") as tmp:
        paths = {}
        for version in (4, 6):
            paths[version] = Path(tmp) / f"deny{version}.txt"
            text = "\n".join(map(str, random_prefixes(version, cfg.prefixes, cfg.seed + version)))
            paths[version].write_text(text + "\n")
        rules_path = Path(tmp) / "rules.toml"
        rules_path.write_text(rules_toml(udp_rules(cfg.rules, cfg.seed)))
        for rep in range(reps):
            report(f"policy: loading lists and rules ({rep + 1}/{reps})", rep / reps)
            try:
                by_family, applied = _load_once(paths, rules_path)
            except Exception as exc:  # reported in the rows, never lost
                why = f"{type(exc).__name__}: {exc}".splitlines()[0]
                skipped = dict.fromkeys(("list4", "list6", "rules"), why)
                break
            for version, times in by_family.items():
                lists[version].append(times)
            rules.append(applied)
            # The last load's garbage goes before the next is timed.
            gc.collect()
    return load_rows(cfg, lists, rules, skipped)


def run_policy(
    quick: bool,
    progress: Progress | None = None,
    micro: MicroConfig | None = None,
    cfg: PolicyConfig | None = None,
) -> list[Result]:
    """The test-run rows (deny lists, rules) and the loads; no stand needed."""
    report = progress or no_progress
    mc = micro or (MicroConfig.quick() if quick else MicroConfig())
    pc = cfg or (PolicyConfig.quick() if quick else PolicyConfig())
    if micro is None and pc.repeat is not None:
        mc = dataclasses.replace(mc, repeat=pc.repeat)
    try:
        rows = _testrun(pc, mc, lambda w, f: report(w, 0.6 * f))
    except Exception as exc:  # the shield did not load: say so in every row
        why = f"policy test run failed: {exc}".splitlines()[0]
        rows = [dataclasses.replace(r, samples=(), skipped=why)
                for r in lookup_rows(pc, [], {}, {}, {}, 0)]  # fmt: skip
    rows += _loads(pc, max(1, min(mc.reps, pc.load_reps)), lambda w, f: report(w, 0.6 + 0.4 * f))
    report("policy done", 1.0)
    return rows


# -- floods on the stand ------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyFlood:
    """A flood that a policy stage drops: its frame, and the reason it must be counted under."""

    name: str
    kind: FloodKind
    reason: Reason
    note: str
    frame: dict[str, Any] = field(default_factory=dict)  # more of flood()'s frame arguments


#: The deny flood's sources and the other floods' (two halves of the stand's
#: default sources): one shield, with this deny list, takes every flood, and
#: only the deny flood meets the list.
DENIED_SOURCES, OTHER_SOURCES = "198.19.128.0/17", "198.19.0.0/17"
POLICY_FLOODS: tuple[PolicyFlood, ...] = (
    PolicyFlood("deny-flood", "udp", Reason.DENY,
                f"UDP from random sources in {DENIED_SOURCES}, which the deny list holds",
                {"sources": DENIED_SOURCES}),
    PolicyFlood("reflection-flood", "udp", Reason.REFLECTION,
                "UDP from port 53 (DNS reflection) that no request of the server's opened",
                {"sources": OTHER_SOURCES, "sport": 53}),
    PolicyFlood("fragment-flood", "frag", Reason.FRAGMENT_UNKNOWN,
                "IPv4 fragments, random id and offset: non-first fragments whose first "
                "never passed (1 in 8192 is a first fragment, and passes)",
                {"sources": OTHER_SOURCES}),
    PolicyFlood("tcp-flags-flood", "syn", Reason.TCP_FLAGS,
                "TCP SYN+FIN (flag nonsense) to the protected port",
                {"sources": OTHER_SOURCES, "tcp_flags": "SF"}),
)  # fmt: skip
LIVE_RECEIVERS = ("xdpshield", "xdp-drop")


@contextlib.contextmanager
def _rx_policy_shield(stand: Stand) -> Iterator[Shield]:
    """The shield as a user loads it (default hygiene), with the deny list."""
    with netns.enter(stand.ns("server")):
        shield = Shield.load(stand.server_if, ports=[LEGIT_PORT], xdp_mode="native")
    try:
        deny: PrefixList = {parse_prefix(DENIED_SOURCES): None}
        shield.apply_policy(Policy(deny=deny), source="bench")
        yield shield
    finally:
        with netns.enter(stand.ns("server")):
            shield.unload()


@dataclass
class PolicyLiveSamples:
    """What the policy floods on one stand measured: drops/s by (flood,
    receiver), and by "FLOOD RECEIVER" the offered pps, the program's own ns
    per packet (bpf_stats, as ``LiveSamples.prog_ns``) and details; why a
    receiver ("RECEIVER") or one flood at it ("FLOOD RECEIVER") did not run."""

    drop: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    offered: dict[str, list[float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    prog_ns: dict[str, list[float]] = field(default_factory=dict)


def _verdicts(before: dict[Reason, tuple[int, int]], after: dict[Reason, tuple[int, int]],
              reason: Reason) -> dict[str, Any]:  # fmt: skip
    """The share of the shield's verdicts counted under ``reason``, and the others."""
    moved = {r.name: after[r][0] - before.get(r, (0, 0))[0] for r in after}
    moved = {k: v for k, v in moved.items() if v > 0}
    total = sum(moved.values())
    return {
        "reason_share": moved.get(reason.name, 0) / total if total else 0.0,
        "other_reasons": {k: v for k, v in moved.items() if k != reason.name},
    }


def _receiver_round(
    stand: Stand,
    cfg: LiveConfig,
    q: int,
    rx: str,
    data: PolicyLiveSamples,
    step: Callable[[str], None],
    floods: Sequence[PolicyFlood] = POLICY_FLOODS,
    setup: Callable[[PolicyFlood, Shield], None] | None = None,
    reset: Callable[[Shield], None] | None = None,
) -> None:
    """Every flood at ``rx``, set up once for all of them (a shield load
    takes a second). ``setup``: what the shield needs before a flood (the
    limits' rows set limits, earn a block); ``reset``: after it."""
    count = int(cfg.duration_s * cfg.max_pps)

    def one(fl: PolicyFlood, shield: Shield | None) -> None:
        key = f"{fl.name} {rx}"
        step(key)

        def measure() -> tuple[float, float, dict[str, Any], float | None]:
            if shield is not None and setup is not None:
                setup(fl, shield)
            before = shield.stats() if shield else {}
            got = _drop_flood_once(stand, cfg, q, count, fl.kind, **fl.frame)
            if shield is not None:  # the measured flood's verdicts only
                got[2].update(_verdicts(before, shield.stats(), fl.reason))
            ns = prog_cost(
                stand, cfg, rx, lambda c: _drop_flood_once(stand, c, q, count, fl.kind, **fl.frame)
            )
            if shield is not None and reset is not None:
                reset(shield)
            return *got, ns

        got = _attempt(data.unavailable, key, measure)
        if got is None:
            return
        rate, sent_pps, info, ns = got
        data.drop.setdefault((fl.name, rx), []).append(rate)
        data.offered.setdefault(key, []).append(sent_pps)
        if ns is not None:
            data.prog_ns.setdefault(key, []).append(ns)
        ex = data.extra.setdefault(key, {})
        if "reason_share" in info:
            ex.setdefault("reason_share", []).append(round(info.pop("reason_share"), 4))
        ex.update(info)

    def run_all() -> None:
        if rx == "xdp-drop":
            with receiver(rx, stand, "udp"):
                for fl in floods:
                    one(fl, None)
        else:
            with _rx_policy_shield(stand) as shield:
                for fl in floods:
                    one(fl, shield)

    _attempt(data.unavailable, rx, run_all)


def _live_key(data: PolicyLiveSamples, fl: PolicyFlood, rx: str) -> str:
    """Where a row finds why it did not run: its receiver's failure, else its own."""
    return rx if rx in data.unavailable else f"{fl.name} {rx}"


def live_rows(
    ql: str,
    data: PolicyLiveSamples,
    floods: Sequence[PolicyFlood] = POLICY_FLOODS,
    group: str = GROUP_LIVE,
    goal: Goal = GOAL_LIVE,
) -> list[Result]:
    """Per flood: the bare XDP_DROP, and the shield's drops against it (the
    policy's by default; the limits' floods, group and goal from limits.py)."""
    rows = _Rows(data.unavailable)
    out: list[Result] = []
    for fl in floods:
        base_name = f"{fl.name} xdp-drop ({ql})"
        base = data.drop.get((fl.name, "xdp-drop"), [])
        base_key = _live_key(data, fl, "xdp-drop")
        for rx in LIVE_RECEIVERS:
            key = _live_key(data, fl, rx)
            here = f"{fl.name} {rx}"
            sent = median(data.offered.get(here, []))
            ex = data.extra.get(here, {})
            note = f"{fl.note}; generator sent {fmt_num(sent)} pkt/s"
            note += cost_note(data.prog_ns.get(here, []))
            samples = data.drop.get((fl.name, rx), [])
            if rx == "xdp-drop":
                out.append(
                    rows.row(base_name, group, "drops/s", samples, key,
                             note=f"bare XDP_DROP baseline; {note}", ex=ex)
                )  # fmt: skip
                continue
            shares = ex.get("reason_share", [])
            if shares:
                note += f"; the shield counted {min(shares):.2%}+ of its verdicts {fl.reason.name}"
            r = rows.row(f"{fl.name} xdpshield ({ql})", group, "drops/s", samples, key,
                         base_name, base, goal, note, ex)  # fmt: skip
            no_base = data.unavailable.get(base_key) or (None if base else "no measurement")
            if r.skipped is None and no_base is not None:  # no baseline, no ratio
                r = dataclasses.replace(r, samples=(), skipped=f"baseline did not run: {no_base}")
            out.append(r)
    return out


def _live_stand(cfg: LiveConfig, q: int, report: Progress) -> list[Result]:
    stand = Stand(prefix=netns.unique_prefix("xsp"), queues=q)
    ql = _qlabel(q)
    data = PolicyLiveSamples()
    steps = cfg.reps * len(POLICY_FLOODS) * len(LIVE_RECEIVERS)
    done = 0
    try:
        stand.up()
        for rep in range(cfg.reps):

            def step(what: str, rep: int = rep) -> None:
                nonlocal done
                report(f"{what} ({ql}, {rep + 1}/{cfg.reps})", done / steps)
                done += 1

            # Receivers take turns in the lead, so that neither always
            # meets the stand fresh.
            for rx in LIVE_RECEIVERS[rep % 2 :] + LIVE_RECEIVERS[: rep % 2]:
                _receiver_round(stand, cfg, q, rx, data, step)
    finally:
        stand.down()
    return live_rows(ql, data)


def live_skipped(cfg: LiveConfig, why: str) -> list[Result]:
    data = PolicyLiveSamples(unavailable=dict.fromkeys(LIVE_RECEIVERS, why))
    return [r for q in cfg.queues for r in live_rows(_qlabel(q), data)]


def run_policy_live(
    quick: bool, progress: Progress | None = None, cfg: LiveConfig | None = None
) -> list[Result]:
    """Floods that policy drops, on a stand of their own, against a bare XDP_DROP there.

    A quick run floods for 0.3 s each (eight floods: a sanity check, not a number).
    """
    cfg = cfg or (LiveConfig.quick_drops() if quick else LiveConfig())
    results = per_queue(cfg, progress, _live_stand, live_skipped)
    (progress or no_progress)("policy floods done", 1.0)
    return results
