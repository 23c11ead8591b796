"""Firewall rules compiled to fixed-cost lookup tables (pure Python, no kernel).

The data path (bpf/) finds a packet's rule in the same few steps whatever the
number of rules:

1. ``port_classes[slot][index]`` -> class id, where the slot is the protocol
   (TCP and UDP indexed by destination port, ICMP and ICMPv6 by type, every
   other protocol by its number in SLOT_OTHER); 0 means no rule can match.
2. A longest-prefix match of (class, source) in :attr:`CompiledRules.entries`,
   IPv4 as ``::ffff:a.b.c.d`` (an IPv4 /n is a /(96+n), no sources is ::/0).
3. Up to :data:`CANDS` candidates, in rule order, each checked for what the
   first two steps cannot index (source port set, TCP flags, ICMP code); the
   first that holds decides.

Why step 3 is exact: prefixes nest or are disjoint, so for an address whose
longest stored prefix in class C is P, the rules of C matching its source are
exactly those with a source prefix containing P. Each entry therefore lists
the class's rules covering P, cut after the first one with no per-packet
condition (nothing after it is reachable).

IPv6 packets from ``::ffff:0:0/96`` never get here (martian.h drops them), so
the mapped space is unambiguous: an IPv6 source prefix matches IPv6 packets
only, even one as wide as ::/0 (the IPv4 block is then stored as a hole).
"""

from __future__ import annotations

import array
import bisect
import gc
import heapq
import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from xdpshield.errors import ConfigError
from xdpshield.policy.model import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    Action,
    Prefix,
    Rule,
)

__all__ = [
    "CANDS",
    "CLASSES_MAX",
    "RULES_MAX",
    "SLOTS",
    "SLOT_ICMP",
    "SLOT_ICMPV6",
    "SLOT_OTHER",
    "SLOT_TCP",
    "SLOT_UDP",
    "SPORTSETS_MAX",
    "Candidate",
    "CompiledRules",
    "compile_rules",
    "fingerprint",
    "first_match",
]

SLOT_TCP = 0
SLOT_UDP = 1
SLOT_ICMP = 2
SLOT_ICMPV6 = 3
SLOT_OTHER = 4
SLOTS = 5
#: Candidates per LPM entry: rules that may overlap on one (class, prefix)
#: and still need a per-packet check.
CANDS = 4
RULES_MAX = 16384
#: Distinct source port sets: one bit each in a u32 per port.
SPORTSETS_MAX = 32
#: Class ids are u16 and 0 means "no rule".
CLASSES_MAX = 65535

_PORTS = 65536
#: Each slot's whole index range (the ICMP and other slots use 0..255).
_WHOLE = ([(0, _PORTS - 1)], [(0, _PORTS - 1)], [(0, 255)], [(0, 255)], [(0, 255)])
_SLOT_NAME = ("tcp dport", "udp dport", "icmp type", "icmpv6 type", "protocol")
_PROTO_SLOT = {PROTO_TCP: SLOT_TCP, PROTO_UDP: SLOT_UDP, PROTO_ICMP: SLOT_ICMP,
               PROTO_ICMPV6: SLOT_ICMPV6}  # fmt: skip

#: The IPv4-mapped block ::ffff:0:0/96 in the 128-bit space.
_V4_BASE = 0xFFFF << 32
_MASKS = tuple(((1 << n) - 1) << (128 - n) for n in range(129))
_MASK96 = _MASKS[96]

# A prefix in the mapped space, as the compiler handles it: (plen, address as
# an int with host bits clear).
_Key = tuple[int, int]
_ANY: _Key = (0, 0)
_V4_BLOCK: _Key = (96, _V4_BASE)


@dataclass(frozen=True)
class Candidate:
    """One rule as an LPM entry holds it: what decides, and what the data path
    still checks per packet (None: nothing)."""

    rule_id: int
    action: Action
    #: Bit in ``sport_masks[sport]`` that must be set.
    sportset: int | None
    #: (mask, value): flags & mask == value.
    tcp_flags: tuple[int, int] | None
    icmp_code: int | None

    @property
    def unconditional(self) -> bool:
        return self.sportset is None and self.tcp_flags is None and self.icmp_code is None


@dataclass
class CompiledRules:
    """The tables the shield writes to its maps, and a reference evaluator."""

    #: Rule name -> (counter id, fingerprint): ``previous`` for the next apply.
    ids: dict[str, tuple[int, str]]
    #: Per slot, 65536 u16 class ids (ICMP, ICMPv6, other: only 0..255 used;
    #: SLOT_OTHER's 1, 6, 17 and 58 may be set but are never looked up).
    port_classes: list[array.array[int]]
    #: Per source port, a u32 bitmap of the source port sets holding it.
    sport_masks: array.array[int]
    #: (class id, prefix in the mapped IPv6 space, candidates in rule order);
    #: an entry may hold no candidate (the IPv4 hole under a wide IPv6 prefix).
    entries: list[tuple[int, Prefix, tuple[Candidate, ...]]]
    _lpm: dict[int, dict[int, dict[int, tuple[Candidate, ...]]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def match(
        self,
        proto: int,
        src: bytes,
        dport_or_type: int,
        sport: int,
        tcp_flags: int,
        icmp_code: int,
    ) -> Candidate | None:
        """The candidate that decides for this packet, evaluated on the
        tables exactly as the data path does (a reference for tests).
        ``dport_or_type`` is the destination port for TCP and UDP, the type
        (0-255) for ICMP and ICMPv6, unused for other protocols; ``src`` is 4
        or 16 bytes."""
        slot = _PROTO_SLOT.get(proto, SLOT_OTHER)
        index = proto if slot == SLOT_OTHER else dport_or_type
        cls = self.port_classes[slot][index]
        if not cls:
            return None
        if self._lpm is None:
            lpm: dict[int, dict[int, dict[int, tuple[Candidate, ...]]]] = {}
            for c, p, cands in self.entries:
                by_len = lpm.setdefault(c, {})
                by_len.setdefault(p.plen, {})[int.from_bytes(p.addr, "big")] = cands
            self._lpm = lpm
        addr = _addr_int(src)
        by_len = self._lpm.get(cls, {})
        for plen in sorted(by_len, reverse=True):
            found = by_len[plen].get(addr & _MASKS[plen])
            if found is None:
                continue
            # The longest prefix decides alone: no falling back to a shorter one.
            return next((c for c in found if self._holds(c, sport, tcp_flags, icmp_code)), None)
        return None

    def _holds(self, cand: Candidate, sport: int, tcp_flags: int, icmp_code: int) -> bool:
        """A candidate's per-packet conditions, as the data path checks them."""
        if cand.sportset is not None and not (self.sport_masks[sport] >> cand.sportset) & 1:
            return False
        if cand.tcp_flags is not None and tcp_flags & cand.tcp_flags[0] != cand.tcp_flags[1]:
            return False
        return cand.icmp_code is None or icmp_code == cand.icmp_code


def fingerprint(rule: Rule) -> str:
    """Everything that decides what a rule matches and does, canonically
    (not its name or origin): an equal fingerprint keeps the rule's counter."""
    r = rule
    # Built for speed (10,000 rules per apply): empty fields cost nothing.
    proto = ",".join(map(str, sorted(r.protocols))) if r.protocols else ""
    src = ",".join(sorted([f"{p.version}:{p.addr.hex()}/{p.plen}" for p in r.sources]))
    dport = ",".join([f"{lo}-{hi}" for lo, hi in _merge(r.dports)]) if r.dports else ""
    sport = ",".join(map(str, sorted(r.sports))) if r.sports else ""
    flags = "" if r.tcp_flags is None else f"{r.tcp_flags[0]:#x}/{r.tcp_flags[1]:#x}"
    icmp = "" if r.icmp_type is None and r.icmp_code is None else f"{r.icmp_type}/{r.icmp_code}"
    # An f-string formats the StrEnum as its value, without .value's lookup.
    rate = f" rate={r.pps}/{r.burst}" if r.pps is not None else ""
    return (
        f"action={r.action} proto={proto} src={src} dport={dport} sport={sport} "
        f"flags={flags} icmp={icmp}{rate}"
    )


def first_match(
    rules: Iterable[Rule],
    proto: int,
    src: bytes,
    dport_or_type: int,
    sport: int,
    tcp_flags: int,
    icmp_code: int,
) -> Rule | None:
    """The first rule that matches, by reading every rule (the reference the
    compiled tables must agree with). ``src`` is 4 or 16 bytes; a 16-byte
    IPv4-mapped address counts as IPv4 (the data path drops IPv6 packets from
    one before the rules)."""
    addr = _addr_int(src)
    v4 = addr & _MASK96 == _V4_BASE
    ports = proto in (PROTO_TCP, PROTO_UDP)
    icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)
    for r in rules:
        if r.protocols and proto not in r.protocols:
            continue
        if r.sources and not any(_contains(p, addr, v4) for p in r.sources):
            continue
        if r.dports and not (ports and any(lo <= dport_or_type <= hi for lo, hi in r.dports)):
            continue
        if r.sports and not (ports and sport in r.sports):
            continue
        if r.tcp_flags is not None and not (
            proto == PROTO_TCP and tcp_flags & r.tcp_flags[0] == r.tcp_flags[1]
        ):
            continue
        if r.icmp_type is not None and not (icmp and dport_or_type == r.icmp_type):
            continue
        if r.icmp_code is not None and not (icmp and icmp_code == r.icmp_code):
            continue
        return r
    return None


def compile_rules(
    rules: Sequence[Rule], previous: Mapping[str, tuple[int, str]] | None = None
) -> CompiledRules:
    """Compile ``rules`` (first match wins) to the data path's tables.

    ``previous`` is the live policy's :attr:`CompiledRules.ids`: a rule with
    the same name and fingerprint keeps its counter id; every other rule gets
    an id the live policy does not use, so its counter can be zeroed first.
    Raises ConfigError when the rules do not fit the tables.
    """
    # Hundreds of thousands of small tuples and none in a cycle: the cyclic
    # collector would only rescan them, a third of the time at 10,000 rules.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _compile(rules, previous or {})
    finally:
        if enabled:
            gc.enable()


def _compile(rules: Sequence[Rule], previous: Mapping[str, tuple[int, str]]) -> CompiledRules:
    ids = _assign_ids(rules, previous)
    sportsets: dict[frozenset[int], int] = {}
    cands: list[Candidate] = []
    # Per slot: (lo, hi, rule index) for every interval a rule applies to.
    spans: list[list[tuple[int, int, int]]] = [[] for _ in range(SLOTS)]
    # Wide rules: all of every slot they apply to (no port, type or number).
    wide: list[bool] = []
    for i, r in enumerate(rules):
        cands.append(_candidate(r, ids[r.name][0], sportsets))
        full = True
        for slot, ranges in _slot_ranges(r):
            spans[slot] += [(lo, hi, i) for lo, hi in ranges]
            full = full and ranges == _WHOLE[slot]
        wide.append(full)

    sport_masks = array.array("I", bytes(4 * _PORTS))
    for sports, bit in sportsets.items():
        for port in sports:
            sport_masks[port] |= 1 << bit

    # A class is its rules, kept as (the slot's wide rules, numbered; its
    # narrow rules): whether a rule is wide does not depend on the slot, so
    # this is one key per rule list, and hashing it skips the wide ones.
    classes: dict[tuple[int, tuple[int, ...]], int] = {}
    wides: dict[tuple[int, ...], int] = {}
    # Class id -> where it first applies (slot, lo, hi), for messages.
    where: list[tuple[int, int, int]] = [(0, 0, 0)]
    port_classes: list[array.array[int]] = []
    builder = _Entries(rules, cands)
    entries: list[tuple[int, Prefix, tuple[Candidate, ...]]] = []
    for slot in range(SLOTS):
        arr = array.array("H", bytes(2 * _PORTS))
        # The slot's wide rules apply to all of it: every class of the slot
        # has them, beside the narrow ones the sweep keeps.
        slot_wide = tuple(sorted({i for _, _, i in spans[slot] if wide[i]}))
        wide_id = wides.setdefault(slot_wide, len(wides))
        for lo, hi, narrow in _intervals(spans[slot], wide, bool(slot_wide)):
            key = (wide_id, tuple(narrow))
            cid = classes.get(key)
            if cid is None:
                cid = classes[key] = len(where)
                if cid > CLASSES_MAX:
                    raise ConfigError(
                        f"the rules split ports, types and protocols into more than "
                        f"{CLASSES_MAX} classes; use fewer distinct port ranges",
                        key="rules",
                    )
                where.append((slot, lo, hi))
                builder.add(cid, slot_wide, key[1], where[cid], entries)
            # Slices, not a loop per port: a wildcard rule spans 65536 ports.
            if lo == hi:
                arr[lo] = cid
            else:
                arr[lo : hi + 1] = array.array("H", [cid]) * (hi + 1 - lo)
        port_classes.append(arr)
    return CompiledRules(ids, port_classes, sport_masks, entries)


def _merge(ranges: Collection[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, overlapping or touching ranges merged."""
    if len(ranges) < 2:
        return list(ranges)
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _addr_int(src: bytes) -> int:
    if len(src) == 4:
        return _V4_BASE | int.from_bytes(src, "big")
    if len(src) == 16:
        return int.from_bytes(src, "big")
    raise ValueError(f"an address is 4 or 16 bytes, not {len(src)}")


def _contains(p: Prefix, addr: int, v4: bool) -> bool:
    """Whether ``p`` holds the (mapped) address, of the family given."""
    plen, val = _key(p)
    return (p.version == 4) == v4 and addr & _MASKS[plen] == val


def _key(p: Prefix) -> _Key:
    """A prefix in the mapped space, host bits cleared."""
    if p.version == 4:
        plen = 96 + p.plen
        return plen, (_V4_BASE | int.from_bytes(p.addr, "big")) & _MASKS[plen]
    return p.plen, int.from_bytes(p.addr, "big") & _MASKS[p.plen]


def _prefix(key: _Key) -> Prefix:
    return Prefix(6, key[1].to_bytes(16, "big"), key[0])


def _show(key: _Key) -> str:
    """A mapped prefix as the user wrote it."""
    plen, val = key
    if key == _ANY:
        return "any address"
    if plen >= 96 and val & _MASK96 == _V4_BASE:
        return str(Prefix(4, (val & 0xFFFFFFFF).to_bytes(4, "big"), plen - 96))
    return str(_prefix(key))


def _in_v4(key: _Key) -> bool:
    return key[0] >= 96 and key[1] & _MASK96 == _V4_BASE


def _source_keys(r: Rule) -> tuple[list[_Key], list[_Key]] | None:
    """(IPv4 sources, IPv6 sources) in the mapped space; None: any source.
    An IPv6 prefix inside ::ffff:0:0/96 is left out: no packet that reaches
    the rules comes from one."""
    if not r.sources:
        return None
    v4: list[_Key] = []
    v6: list[_Key] = []
    for p in r.sources:
        k = _key(p)
        if p.version == 4:
            v4.append(k)
        elif not _in_v4(k):
            v6.append(k)
    return v4, v6


def _assign_ids(
    rules: Sequence[Rule], previous: Mapping[str, tuple[int, str]]
) -> dict[str, tuple[int, str]]:
    if len(rules) > RULES_MAX:
        raise ConfigError(f"{len(rules)} rules; at most {RULES_MAX} fit", key="rules")
    used = {rid for rid, _ in previous.values()}
    ids: dict[str, tuple[int, str]] = {}
    fresh: list[tuple[str, str]] = []
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise ConfigError(f"two rules are named {r.name!r}", key="rules")
        seen.add(r.name)
        fp = fingerprint(r)
        old = previous.get(r.name)
        if old is not None and old[1] == fp:
            ids[r.name] = (old[0], old[1])  # a tuple, also when read back from JSON
        else:
            fresh.append((r.name, fp))
    # New and changed rules take ids the live policy does not count with, so
    # the caller can zero their counters while it still runs.
    free = (i for i in range(RULES_MAX) if i not in used)
    for name, fp in fresh:
        rid = next(free, None)
        if rid is None:
            raise ConfigError(
                f"{len(fresh)} new or changed rules and {len(used)} live ones need more than "
                f"{RULES_MAX} counters; apply the change in smaller steps",
                key="rules",
            )
        ids[name] = (rid, fp)
    return {r.name: ids[r.name] for r in rules}


def _candidate(r: Rule, rule_id: int, sportsets: dict[frozenset[int], int]) -> Candidate:
    sportset = None
    if r.sports:
        if not all(0 <= p < _PORTS for p in r.sports):
            raise ConfigError(f"rule {r.name!r}: a source port is outside 0-65535", key="rules")
        sportset = sportsets.get(r.sports)
        if sportset is None:
            if len(sportsets) >= SPORTSETS_MAX:
                raise ConfigError(
                    f"rule {r.name!r}: more than {SPORTSETS_MAX} distinct source port sets; "
                    "give rules the same set where you can",
                    key="rules",
                )
            sportset = sportsets[r.sports] = len(sportsets)
    flags = r.tcp_flags
    if flags is not None:
        mask, value = flags
        if not (0 <= mask <= 0xFF and 0 <= value <= 0xFF) or value & ~mask:
            raise ConfigError(
                f"rule {r.name!r}: tcp flags {value:#x}/{mask:#x} can never match", key="rules"
            )
        if mask == 0:
            flags = None  # flags & 0 == 0 always holds
    if r.icmp_code is not None and not 0 <= r.icmp_code <= 255:
        raise ConfigError(f"rule {r.name!r}: icmp code {r.icmp_code} is not 0-255", key="rules")
    return Candidate(rule_id, r.action, sportset, flags, r.icmp_code)


def _slot_ranges(r: Rule) -> list[tuple[int, list[tuple[int, int]]]]:
    """The slots a rule applies to, and the index ranges in each."""
    if (
        len(r.protocols) == 1
        and r.tcp_flags is None
        and r.icmp_type is None
        and r.icmp_code is None
        and all(0 <= lo <= hi < _PORTS for lo, hi in r.dports)
    ):
        # The usual rule, TCP or UDP on some ports: the checks below all pass.
        slot = _PROTO_SLOT.get(next(iter(r.protocols)), SLOT_OTHER)
        if slot in (SLOT_TCP, SLOT_UDP):
            return [(slot, _merge(r.dports) if r.dports else [(0, _PORTS - 1)])]
    ports = bool(r.dports or r.sports)
    icmp = r.icmp_type is not None or r.icmp_code is not None
    flags = r.tcp_flags is not None
    # Which slots the rule's fields allow (a field it sets excludes the
    # protocols that lack it).
    fits = (
        not icmp,
        not icmp and not flags,
        not ports and not flags,
        not ports and not flags,
        not ports and not icmp and not flags,
    )
    other: list[tuple[int, int]] = [(0, 255)]
    if r.protocols:
        slots = set()
        other = []
        for proto in r.protocols:
            if not 0 <= proto <= 255:
                raise ConfigError(f"rule {r.name!r}: protocol {proto} is not 0-255", key="rules")
            slot = _PROTO_SLOT.get(proto, SLOT_OTHER)
            if not fits[slot]:
                raise ConfigError(
                    f"rule {r.name!r}: protocol {proto} lacks a field the rule sets (ports: tcp "
                    "and udp only; tcp flags: tcp only; icmp type and code: icmp and icmpv6)",
                    key="rules",
                )
            slots.add(slot)
            if slot == SLOT_OTHER:
                other.append((proto, proto))
    else:
        slots = {slot for slot in range(SLOTS) if fits[slot]}
        if not slots:
            raise ConfigError(
                f"rule {r.name!r} can match no packet: no protocol has all the fields it sets",
                key="rules",
            )
    if not all(0 <= lo <= hi < _PORTS for lo, hi in r.dports):
        raise ConfigError(f"rule {r.name!r}: a port range is not within 0-65535", key="rules")
    if r.icmp_type is not None and not 0 <= r.icmp_type <= 255:
        raise ConfigError(f"rule {r.name!r}: icmp type {r.icmp_type} is not 0-255", key="rules")
    out: list[tuple[int, list[tuple[int, int]]]] = []
    for slot in sorted(slots):
        if slot in (SLOT_TCP, SLOT_UDP):
            out.append((slot, _merge(r.dports) if r.dports else [(0, _PORTS - 1)]))
        elif slot == SLOT_OTHER:
            out.append((slot, _merge(other)))
        elif r.icmp_type is None:
            out.append((slot, [(0, 255)]))
        else:
            out.append((slot, [(r.icmp_type, r.icmp_type)]))
    return out


def _intervals(
    spans: list[tuple[int, int, int]], wide: list[bool], any_wide: bool
) -> Iterable[tuple[int, int, list[int]]]:
    """Sweep one slot's spans (lo, hi, rule index): (lo, hi, the narrow rules
    applying, in rule order) for each elementary interval some rule applies
    to. Wide rules apply to the whole slot (``any_wide``: the slot has one,
    so every interval counts). The list is the sweep's own: copy it to keep
    it."""
    starts: dict[int, list[int]] = {}
    ends: dict[int, list[int]] = {}
    for lo, hi, i in spans:
        if not wide[i]:
            starts.setdefault(lo, []).append(i)
            ends.setdefault(hi + 1, []).append(i)
    if any_wide:
        starts.setdefault(0, [])
        ends.setdefault(max(hi for _, hi, _ in spans) + 1, [])
    # A sorted list, not a set: the key of a class is then a plain copy.
    narrow: list[int] = []
    points = sorted(starts.keys() | ends.keys())
    for here, nxt in itertools.pairwise(points):
        # One rule's own ranges are merged: it never ends where it starts.
        for i in ends.get(here, ()):
            del narrow[bisect.bisect_left(narrow, i)]
        for i in starts.get(here, ()):
            bisect.insort(narrow, i)
        if narrow or any_wide:
            yield here, nxt - 1, narrow


def _spans_v4(key: _Key) -> bool:
    """An IPv6 prefix that holds the whole IPv4 block (but no IPv4 packet)."""
    return key[0] <= 96 and _V4_BASE & _MASKS[key[0]] == key[1]


#: Stored prefix -> the indices of the rules it lists, in order (cut).
_Lists = dict[_Key, tuple[int, ...]]
#: More narrow rules than this in a class: work it out whole.
_NARROW_MAX = 8


@dataclass
class _Base:
    """The entries of a class's wide rules, shared by the classes that have them."""

    lists: _Lists
    #: (key, prefix, candidates) in order, ready to write.
    made: list[tuple[_Key, Prefix, tuple[Candidate, ...]]]
    #: Keys sorted by address, for finding the prefixes inside another.
    by_addr: list[tuple[int, int]]
    #: Stored prefix lengths, longest first.
    plens: list[int]
    #: Keys whose lists are too long (an error unless a narrow rule cuts them).
    overflow: list[_Key]


class _Entries:
    """Builds the LPM entries of each class.

    Most classes are the same few wide rules (no port: every port of a slot)
    beside a port's own rule or two. So the wide rules' entries are worked
    out once (:class:`_Base`) and each class adds its narrow rules to them,
    one at a time: a new rule's prefix gets the list of the longest stored
    prefix holding it plus the rule, and the stored prefixes inside it get the
    rule too. That gives what working the class out whole would give, because
    every stored prefix lists exactly the rules whose prefixes hold it, and
    cutting a list (after its first unconditional rule or its CANDS + 1-th)
    keeps all an insertion can need.
    """

    def __init__(self, rules: Sequence[Rule], cands: list[Candidate]) -> None:
        self.rules = rules
        self.cands = cands
        self.srcs = [_source_keys(r) for r in rules]
        self.ends = [c.unconditional for c in cands]
        self.bases: dict[tuple[int, ...], _Base] = {}
        self.prefixes: dict[_Key, Prefix] = {}
        self.lists: dict[tuple[int, ...], tuple[Candidate, ...]] = {}

    def add(
        self,
        cid: int,
        wide: tuple[int, ...],
        narrow: tuple[int, ...],
        where: tuple[int, int, int],
        out: list[tuple[int, Prefix, tuple[Candidate, ...]]],
    ) -> None:
        """Append the entries of class ``cid`` (rules ``wide`` and ``narrow``)
        to ``out``."""
        if len(narrow) > _NARROW_MAX:
            whole = self._covering(sorted(wide + narrow))
            for key in whole:
                self._check(whole[key], where, key)
            out += [(cid, self._prefix(k), self._cands(v)) for k, v in whole.items()]
            return
        base = self.bases.get(wide)
        if base is None:
            base = self.bases[wide] = self._base(wide)
        if not narrow:
            for key in base.overflow:
                self._check(base.lists[key], where, key)
            out += [(cid, prefix, cands) for _, prefix, cands in base.made]
            return
        if len(narrow) == 1 and not base.overflow:
            # The usual class: one port's rule from one prefix that holds no
            # stored one: the wide rules' entries and one more.
            i = narrow[0]
            src = self.srcs[i]
            if src is not None and len(src[0]) + len(src[1]) == 1:
                key = src[0][0] if src[0] else src[1][0]
                plen, val = key
                top = val | (_MASKS[128] ^ _MASKS[plen])
                at = bisect.bisect_left(base.by_addr, (val, 0))
                if (at == len(base.by_addr) or base.by_addr[at][0] > top) and not _spans_v4(key):
                    chosen = self._with(self._longest(key, base.lists, base.plens), i)
                    self._check(chosen, where, key)
                    out += [(cid, prefix, cands) for _, prefix, cands in base.made]
                    out.append((cid, self._prefix(key), self._cands(chosen)))
                    return
        lists = dict(base.lists)
        plens = set(base.plens)
        changed: set[_Key] = set()
        for i in narrow:
            self._insert(i, lists, plens, changed, base)
        for key in base.overflow:
            if key not in changed:  # else checked below, maybe cut short by now
                self._check(lists[key], where, key)
        if changed.isdisjoint(base.lists):
            out += [(cid, prefix, cands) for _, prefix, cands in base.made]
        else:
            out += [(cid, p, c) for key, p, c in base.made if key not in changed]
        for key in changed:
            self._check(lists[key], where, key)
            out.append((cid, self._prefix(key), self._cands(lists[key])))

    def _check(self, chosen: tuple[int, ...], where: tuple[int, int, int], key: _Key) -> None:
        if len(chosen) > CANDS:
            raise ConfigError(_overlap_message(self.rules, chosen, where, key), key="rules")

    def _prefix(self, key: _Key) -> Prefix:
        p = self.prefixes.get(key)
        if p is None:
            p = self.prefixes[key] = _prefix(key)
        return p

    def _cands(self, chosen: tuple[int, ...]) -> tuple[Candidate, ...]:
        c = self.lists.get(chosen)
        if c is None:
            c = self.lists[chosen] = tuple(self.cands[i] for i in chosen)
        return c

    def _base(self, wide: tuple[int, ...]) -> _Base:
        lists = self._covering(wide)
        made = [(k, self._prefix(k), self._cands(v)) for k, v in lists.items()]
        by_addr = sorted((v, n) for n, v in lists)
        overflow = [k for k, v in lists.items() if len(v) > CANDS]
        plens = sorted({n for n, _ in lists}, reverse=True)
        return _Base(lists, made, by_addr, plens, overflow)

    def _covering(self, idx: Sequence[int]) -> _Lists:
        """The entries of rules ``idx`` (in order), worked out whole: for each
        stored prefix, the rules whose prefixes hold it, cut."""
        anywhere: list[int] = []
        # IPv4 prefixes only hold IPv4 ones, IPv6 only IPv6: two tables.
        t4: dict[_Key, list[int]] = {}
        t6: dict[_Key, list[int]] = {}
        stored: set[_Key] = set()
        for i in idx:
            src = self.srcs[i]
            if src is None:
                anywhere.append(i)
                continue
            for k in src[0]:
                t4.setdefault(k, []).append(i)
            for k in src[1]:
                t6.setdefault(k, []).append(i)
                if _spans_v4(k):
                    # An IPv6 prefix spans the IPv4 block but matches no IPv4
                    # packet: store the block so IPv4 sources stop there.
                    stored.add(_V4_BLOCK)
        stored.update(t4)
        stored.update(t6)
        if anywhere:
            stored.add(_ANY)  # ::/0 holds both families
        lens4 = sorted({k[0] for k in t4})
        lens6 = sorted({k[0] for k in t6})
        out: _Lists = {}
        for key in sorted(stored):
            plen, val = key
            table, lens = (t4, lens4) if _in_v4(key) else (t6, lens6)
            lists = [anywhere] if anywhere else []
            for n in lens:
                if n > plen:
                    break
                covering = table.get((n, val & _MASKS[n]))
                if covering is not None:
                    lists.append(covering)
            if len(lists) == 1:
                merged: Iterable[int] = lists[0]
            elif sum(map(len, lists)) < 64:
                merged = sorted(set().union(*lists))  # cheaper than merge when short
            else:
                merged = heapq.merge(*lists)
            out[key] = self._cut(merged)
        return out

    def _cut(self, merged: Iterable[int]) -> tuple[int, ...]:
        """Rules in order, once each, up to the first unconditional one
        (nothing after it is reachable) or CANDS + 1 (too many: an error)."""
        chosen: list[int] = []
        for i in merged:
            if chosen and chosen[-1] == i:
                continue  # two of one rule's sources hold the prefix
            chosen.append(i)
            if self.ends[i] or len(chosen) > CANDS:
                break
        return tuple(chosen)

    def _with(self, chosen: tuple[int, ...], i: int) -> tuple[int, ...]:
        """A cut list with rule ``i`` added, cut again."""
        at = bisect.bisect_left(chosen, i)
        if at < len(chosen) and chosen[at] == i:
            return chosen
        if at == len(chosen) and chosen and self.ends[chosen[-1]]:
            return chosen  # after an unconditional rule: unreachable
        if self.ends[i]:
            return (*chosen[:at], i)
        return (*chosen[:at], i, *chosen[at:])[: CANDS + 1]

    def _insert(
        self, i: int, lists: _Lists, plens: set[int], changed: set[_Key], base: _Base
    ) -> None:
        """Add narrow rule ``i`` to a class's entries (``lists``, stored
        prefix lengths ``plens``; keys it touches go into ``changed``)."""
        src = self.srcs[i]
        if src is None:
            # From anywhere: every stored prefix, of both families, gets it.
            if _ANY not in lists:
                lists[_ANY] = ()
                plens.add(0)
            for key in lists:
                lists[key] = self._with(lists[key], i)
            changed.update(lists)
            return
        for key in src[0]:
            self._add_prefix(i, key, lists, plens, changed, base, v6=False)
        for key in src[1]:
            if _spans_v4(key) and _V4_BLOCK not in lists:
                # The hole goes in first, listing what held the block before.
                lists[_V4_BLOCK] = self._longest(_V4_BLOCK, lists, sorted(plens, reverse=True))
                plens.add(96)
                changed.add(_V4_BLOCK)
            self._add_prefix(i, key, lists, plens, changed, base, v6=True)

    def _longest(self, key: _Key, lists: _Lists, plens: Iterable[int]) -> tuple[int, ...]:
        """The list of the longest stored prefix holding ``key`` (none: ());
        ``plens``: the stored prefix lengths, longest first."""
        plen, val = key
        for n in plens:
            if n <= plen:
                found = lists.get((n, val & _MASKS[n]))
                if found is not None:
                    return found
        return ()

    def _add_prefix(
        self,
        i: int,
        key: _Key,
        lists: _Lists,
        plens: set[int],
        changed: set[_Key],
        base: _Base,
        *,
        v6: bool,
    ) -> None:
        plen, val = key
        if key not in lists:
            lists[key] = self._longest(key, lists, sorted(plens, reverse=True))
            plens.add(plen)
        # The stored prefixes inside this one (itself included): the base's
        # by address, then those the class added. An IPv6 prefix holds no
        # prefix of the IPv4 block.
        top = val | (_MASKS[128] ^ _MASKS[plen])
        inside = {key}
        at = bisect.bisect_left(base.by_addr, (val, 0))
        while at < len(base.by_addr) and base.by_addr[at][0] <= top:
            v, n = base.by_addr[at]
            if n >= plen:
                inside.add((n, v))
            at += 1
        inside.update(k for k in changed if k[0] >= plen and k[1] & _MASKS[plen] == val)
        for k in inside:
            if v6 and _in_v4(k):
                continue
            lists[k] = self._with(lists[k], i)
            changed.add(k)


def _overlap_message(
    rules: Sequence[Rule], chosen: Sequence[int], where: tuple[int, int, int], key: _Key
) -> str:
    slot, lo, hi = where
    span = str(lo) if lo == hi else f"{lo}-{hi}"
    names = ", ".join(rules[i].name for i in chosen)
    return (
        f"rules {names} may all match {_SLOT_NAME[slot]} {span} from {_show(key)} and need "
        f"per-packet checks (source ports, tcp flags or icmp code); at most {CANDS} can overlap"
    )
