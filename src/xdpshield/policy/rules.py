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
    return (
        f"action={r.action.value} proto={proto} src={src} dport={dport} sport={sport} "
        f"flags={flags} icmp={_opt(r.icmp_type)}/{_opt(r.icmp_code)}"
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
    for i, r in enumerate(rules):
        cands.append(_candidate(r, ids[r.name][0], sportsets))
        for slot, ranges in _slot_ranges(r):
            spans[slot].extend((lo, hi, i) for lo, hi in ranges)

    sport_masks = array.array("I", bytes(4 * _PORTS))
    for sports, bit in sportsets.items():
        for port in sports:
            sport_masks[port] |= 1 << bit

    # A class's LPM entries split in two halves: prefixes inside the IPv4
    # block (decided by its rules with IPv4 sources or none) and outside it
    # (IPv6 sources or none). Many classes share a half (the same wildcard
    # rules beside one port's rule), so each distinct half is worked out once.
    src_keys = [_source_keys(r) for r in rules]
    kinds = [_kind(k) for k in src_keys]
    classes: dict[tuple[int, ...], int] = {}
    # Per class id: where it first applies (slot, lo, hi), for messages, and
    # its halves' keys (the half, its rules in order; -1: the IPv4 hole).
    where: list[tuple[int, int, int]] = [(0, 0, 0)]
    class_halves: list[tuple[tuple[int, ...], ...]] = [()]
    port_classes: list[array.array[int]] = []
    sweep = _Sweep(kinds)
    for slot in range(SLOTS):
        arr = array.array("H", bytes(2 * _PORTS))
        for lo, hi in sweep.run(spans[slot]):
            sig = tuple(sweep.active)
            cid = classes.get(sig)
            if cid is None:
                cid = classes[sig] = len(where)
                if cid > CLASSES_MAX:
                    raise ConfigError(
                        f"the rules split ports, types and protocols into more than "
                        f"{CLASSES_MAX} classes; use fewer distinct port ranges",
                        key="rules",
                    )
                where.append((slot, lo, hi))
                class_halves.append(sweep.halves())
            # Slices, not a loop per port: a wildcard rule spans 65536 ports.
            arr[lo : hi + 1] = array.array("H", [cid]) * (hi + 1 - lo)
        port_classes.append(arr)

    made: dict[tuple[int, ...], list[tuple[Prefix, tuple[Candidate, ...]]]] = {}
    entries: list[tuple[int, Prefix, tuple[Candidate, ...]]] = []
    for cid in range(1, len(where)):
        for half in class_halves[cid]:
            done = made.get(half)
            if done is None:
                # Worked out at the first class that has it: an error names that one.
                done = made[half] = []
                for key, chosen in _half_entries(half[1:], half[0], src_keys, cands):
                    if len(chosen) > CANDS:
                        message = _overlap_message(rules, chosen, where[cid], key)
                        raise ConfigError(message, key="rules")
                    done.append((_prefix(key), tuple(cands[i] for i in chosen)))
            entries += [(cid, prefix, chosen_cands) for prefix, chosen_cands in done]
    return CompiledRules(ids, port_classes, sport_masks, entries)


def _opt(v: int | None) -> str:
    return "" if v is None else str(v)


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
            ids[r.name] = old
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


class _Sweep:
    """Sweeps one slot's spans (lo, hi, rule index) into elementary intervals.
    Along with the rules applying (a sorted list: a signature is then a plain
    copy) it keeps the two halves' rule lists, updated at each rule's start
    and end rather than filtered out of every new class."""

    def __init__(self, kinds: list[int]) -> None:
        self.in4 = [bool(k & _IN4) for k in kinds]
        self.in6 = [bool(k & _IN6) for k in kinds]
        self.v4src = [1 if k & _V4_SRC else 0 for k in kinds]
        self.spans4 = [1 if k & _SPANS_V4 else 0 for k in kinds]
        self.active: list[int] = []
        self.active4: list[int] = []
        self.active6: list[int] = []
        self.n_v4src = self.n_spans4 = 0

    def run(self, spans: list[tuple[int, int, int]]) -> Iterable[tuple[int, int]]:
        """(lo, hi) of each elementary interval some rule applies to; read
        :attr:`active` and :meth:`halves` for it before the next one."""
        starts: dict[int, list[int]] = {}
        ends: dict[int, list[int]] = {}
        for lo, hi, i in spans:
            starts.setdefault(lo, []).append(i)
            ends.setdefault(hi + 1, []).append(i)
        active, active4, active6 = self.active, self.active4, self.active6
        # The last point's ends are never applied (nothing follows): start clean.
        active.clear()
        active4.clear()
        active6.clear()
        self.n_v4src = self.n_spans4 = 0
        in4, in6, v4src, spans4 = self.in4, self.in6, self.v4src, self.spans4
        points = sorted(starts.keys() | ends.keys())
        for here, nxt in itertools.pairwise(points):
            # One rule's own ranges are merged: it never ends where it starts.
            for i in ends.get(here, ()):
                del active[bisect.bisect_left(active, i)]
                if in4[i]:
                    del active4[bisect.bisect_left(active4, i)]
                if in6[i]:
                    del active6[bisect.bisect_left(active6, i)]
                self.n_v4src -= v4src[i]
                self.n_spans4 -= spans4[i]
            for i in starts.get(here, ()):
                bisect.insort(active, i)
                if in4[i]:
                    bisect.insort(active4, i)
                if in6[i]:
                    bisect.insort(active6, i)
                self.n_v4src += v4src[i]
                self.n_spans4 += spans4[i]
            if active:
                yield here, nxt - 1

    def halves(self) -> tuple[tuple[int, ...], ...]:
        """The current class's halves, as keys: (4 or 6, its rules...; -1:
        the IPv4 hole)."""
        keys: list[tuple[int, ...]] = []
        if self.n_v4src or self.n_spans4:  # else IPv4 sources fall to ::/0
            # An IPv6 prefix spanning the IPv4 block stores the block as a hole.
            hole = (-1,) if self.n_spans4 else ()
            keys.append((4, *self.active4, *hole))
        if self.active6:
            keys.append((6, *self.active6))
        return tuple(keys)


# What kinds of source a rule has (bits): none (any address), IPv4, IPv6,
# an IPv6 prefix spanning the IPv4 block.
_ANY_SRC, _V4_SRC, _V6_SRC, _SPANS_V4 = 1, 2, 4, 8
# Rules that take part in each half of a class's entries.
_IN4 = _ANY_SRC | _V4_SRC
_IN6 = _ANY_SRC | _V6_SRC


def _kind(keys: tuple[list[_Key], list[_Key]] | None) -> int:
    if keys is None:
        return _ANY_SRC
    kind = (_V4_SRC if keys[0] else 0) | (_V6_SRC if keys[1] else 0)
    if any(n <= 96 and _V4_BASE & _MASKS[n] == v for n, v in keys[1]):
        kind |= _SPANS_V4
    return kind


def _half_entries(
    relevant: tuple[int, ...],
    half: int,
    src_keys: list[tuple[list[_Key], list[_Key]] | None],
    cands: list[Candidate],
) -> list[tuple[_Key, list[int]]]:
    """One half of a class's LPM entries (prefixes inside the IPv4 block or
    outside it), from its rules in order (-1: store the IPv4 block): for each
    stored prefix, the rules covering it, cut after the first unconditional
    one (or after CANDS + 1, an error)."""
    anywhere: list[int] = []
    table: dict[_Key, list[int]] = {}
    stored: set[_Key] = set()
    for i in relevant:
        if i < 0:
            # An IPv6 prefix spans the IPv4 block but matches no IPv4 packet:
            # store the block so IPv4 sources stop there.
            stored.add(_V4_BLOCK)
            continue
        keys = src_keys[i]
        if keys is None:
            anywhere.append(i)
            continue
        for k in keys[0] if half == 4 else keys[1]:
            table.setdefault(k, []).append(i)
    if len(table) == 1 and not stored and _ANY not in table:
        # The common case (one port's rule from one prefix, maybe beside
        # rules from anywhere): two lists to merge at most.
        ((key, found),) = table.items()
        out = [(_ANY, _cut(anywhere, cands))] if anywhere and half == 6 else []
        out.append((key, _cut(sorted({*anywhere, *found}) if anywhere else found, cands)))
        return out
    stored.update(table)
    if anywhere and half == 6:
        stored.add(_ANY)  # ::/0 holds both families, but is outside the block
    lens = sorted({k[0] for k in table})
    out = []
    for key in sorted(stored):
        plen, val = key
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
        out.append((key, _cut(merged, cands)))
    return out


def _cut(merged: Iterable[int], cands: list[Candidate]) -> list[int]:
    """Rules in order, once each, up to the first unconditional one (nothing
    after it is reachable) or CANDS + 1 (too many: the caller's error)."""
    chosen: list[int] = []
    for i in merged:
        if chosen and chosen[-1] == i:
            continue  # two of one rule's sources cover the prefix
        chosen.append(i)
        if cands[i].unconditional or len(chosen) > CANDS:
            break
    return chosen


def _overlap_message(
    rules: Sequence[Rule], chosen: list[int], where: tuple[int, int, int], key: _Key
) -> str:
    slot, lo, hi = where
    span = str(lo) if lo == hi else f"{lo}-{hi}"
    names = ", ".join(rules[i].name for i in chosen)
    return (
        f"rules {names} may all match {_SLOT_NAME[slot]} {span} from {_show(key)} and need "
        f"per-packet checks (source ports, tcp flags or icmp code); at most {CANDS} can overlap"
    )
