"""A policy in a shield's maps: generations, live list edits, rule counters.

Layouts mirror bpf/include/shared.h (struct xs_psel, xs_lpm4/6, xs_acl,
xs_hygiene, xs_rule_*); tests/unit/test_mirrors.py checks them against the
object's BTF.

Atomic apply: every policy table is keyed or indexed by a generation, and
``struct xs_psel`` (a one-element array) says which generation of each table
is live. :func:`apply_policy` writes the new generation of every table that
changed beside the live one, then switches them all with one update of
``xs_psel``; only then is the old generation removed. A failure before the
switch removes what was written and leaves the live policy as it was.

Live edits (:func:`add_entries`, :func:`del_entries`) change the live
generation's entries in place (each entry update is atomic on its own);
entries added live carry ``ACL_LIVE`` and are carried into every later
generation, so a config apply keeps them.

In front of each list and family, a filter (``struct xs_acl_bits``, see
:func:`acl_bits`) spares the data path the lookups of a source no entry can
hold. It is kept a superset of every generation a packet may read: an
apply writes the union of the live and the new bits before its switch and
the new ones alone after it; a live add sets its bits before its entries;
a delete leaves them until the list's next apply.

Beside the deny list's IPv4 filter, its sure bits (``xs_acl_sure``, see
:func:`deny_sure`): a /24 that permanent entries hold whole is denied
without a tier lookup. They are kept a subset of every generation a packet
may read: an apply writes the intersection of the live and the new bits
before its switch and the new ones after it; a live add clears the bits its
other entries touch (one with an expiry may replace a permanent one) before
its entries and sets its own after them; a delete clears before.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from xdpshield.ebpf import Map, Raw, StructCodec, UInt, sum_percpu
from xdpshield.errors import ConfigError, KeyNotFound
from xdpshield.policy.cidr import gc_paused
from xdpshield.policy.model import Action, Hygiene, Limits, Policy, Prefix, PrefixList, Rule
from xdpshield.policy.rules import CANDS, RULES_MAX, SLOTS, CompiledRules, compile_rules
from xdpshield.shield import limits

__all__ = [
    "ACL6_MIN_PLEN",
    "ACL_FILTER_BYTES",
    "ACL_LIVE",
    "HYG_FRAGMENTS",
    "HYG_ICMP",
    "HYG_REFLECTION",
    "HYG_TCP_FLAGS",
    "LISTS",
    "ApplyResult",
    "ListEntry",
    "Selector",
    "acl6_n",
    "acl_bits",
    "acl_filt",
    "add_entries",
    "age_lists",
    "apply_policy",
    "carry_remembered",
    "del_entries",
    "deny_sure",
    "hint_slot",
    "hygiene_bytes",
    "init_policy",
    "limits_digest",
    "list_entries",
    "note_request",
    "read_acl_filter",
    "read_deny_sure",
    "refl_key",
    "rule_stats",
    "selector",
    "switch_limits",
    "write_hygiene",
]

Maps = Mapping[str, Map[Any, Any]]

LISTS = ("allow", "deny")
HYG_TCP_FLAGS, HYG_REFLECTION, HYG_FRAGMENTS, HYG_ICMP = 0x1, 0x2, 0x4, 0x8  # consts.h XS_HYG_*
ACL_LIVE = 0x1  # consts.h XS_ACL_LIVE
RULE_ANY, RULE_DROP, RULE_PASS, RULE_LIMIT = 0xFF, 1, 2, 3  # consts.h XS_RULE_*
_ACTIONS = {"drop": RULE_DROP, "pass": RULE_PASS, "limit": RULE_LIMIT}

_PSEL = StructCodec("=14I16s4s4I")  # struct xs_psel
_ACL = StructCodec("=QII")  # struct xs_acl: expires_ns, flags, pad
_HYG_HEAD = struct.Struct("=IIQQ4Q4Q4Q")  # struct xs_hygiene up to refl
_PORTSET = 65536 // 8
_CAND = struct.Struct("=HBBBBBB")  # struct xs_rule_cand
_RULE_KEY = struct.Struct("=IHH16s")  # struct xs_rule_key
_RULE_HKEY = struct.Struct("=HHI16s")  # struct xs_rule_hkey
_COUNTER = StructCodec("=QQ")
_BATCH = 65536  # entries per batch syscall
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
_NS = 1_000_000_000
TIERS = 4  # consts.h XS_ACL_TIERS: prefix lengths per list and family in the hash tier
_NO_TIER = 0xFF
#: struct xs_psel.tiers rows, in order.
_TIER_ROWS = (("allow", 4), ("allow", 6), ("deny", 4), ("deny", 6))


@dataclass(frozen=True)
class Selector:
    """``struct xs_psel``: the live generation of each table, how full the
    lists are (upper bounds: 0 means empty; ``lpm_*`` the part in the LPM
    tries, which the data path reads only when not 0), and the prefix
    lengths each list and family holds in its hash tier."""

    allow_gen: int = 0
    deny_gen: int = 0
    rules_gen: int = 0
    hyg_gen: int = 0
    n_allow4: int = 0
    n_allow6: int = 0
    n_deny4: int = 0
    n_deny6: int = 0
    n_rules: int = 0
    n_ttl: int = 0
    lpm_allow4: int = 0
    lpm_allow6: int = 0
    lpm_deny4: int = 0
    lpm_deny6: int = 0
    tiers: bytes = bytes([_NO_TIER]) * (TIERS * 4)
    rule_tiers: bytes = bytes([_NO_TIER]) * TIERS
    lpm_rules: int = 0
    lim_gen: int = 0
    lim_on: int = 0
    acl_filt: int = 0  # acl_filt() bits: the lists and families whose filter is kept

    def gen(self, which: str) -> int:
        return cast(int, getattr(self, f"{which}_gen"))

    def count(self, which: str, version: int) -> int:
        return cast(int, getattr(self, f"n_{which}{version}"))

    def lpm(self, which: str, version: int) -> int:
        return cast(int, getattr(self, f"lpm_{which}{version}"))

    def tier_lens(self, which: str, version: int) -> list[int]:
        row = _TIER_ROWS.index((which, version)) * TIERS
        return [b for b in self.tiers[row : row + TIERS] if b != _NO_TIER]

    def with_counts(self, **counts: int) -> Selector:
        """A copy with these counters or generations (named as the fields)."""
        return replace(self, **cast(dict[str, Any], counts))

    def with_tiers(self, which: str, version: int, lens: Sequence[int]) -> Selector:
        row = _TIER_ROWS.index((which, version)) * TIERS
        cells = bytes(lens) + bytes([_NO_TIER]) * (TIERS - len(lens))
        return replace(self, tiers=self.tiers[:row] + cells + self.tiers[row + TIERS :])


def selector(maps: Maps) -> Selector:
    m = maps["xs_psel"]
    raw = m.typed(UInt(4), Raw(m.value_size)).lookup(0)
    # A shield from before the last fields (an upgrade reads its live list
    # entries through this): they read as 0, what they mean when absent.
    return Selector(*_PSEL.decode(raw.ljust(_PSEL.size, b"\0")))


def _write_selector(maps: Maps, sel: Selector) -> None:
    values = (
        sel.allow_gen, sel.deny_gen, sel.rules_gen, sel.hyg_gen,
        sel.n_allow4, sel.n_allow6, sel.n_deny4, sel.n_deny6, sel.n_rules, sel.n_ttl,
        sel.lpm_allow4, sel.lpm_allow6, sel.lpm_deny4, sel.lpm_deny6,
    )  # fmt: skip
    maps["xs_psel"].typed(UInt(4), _PSEL).update(
        0,
        (
            *(v & 0xFFFFFFFF for v in values),
            sel.tiers,
            sel.rule_tiers,
            sel.lpm_rules,
            sel.lim_gen & 0xFFFFFFFF,
            sel.lim_on,
            sel.acl_filt,
        ),
    )


# -- allow and deny lists ------------------------------------------------------------
def _check_list(which: str) -> None:
    if which not in LISTS:
        raise ConfigError(f"no list {which!r} (lists: {', '.join(LISTS)})", key="list")


AclMap = Map[bytes, tuple[int, int, int]]
#: Keys written or to remove, grouped by map.
Keys = list[tuple[Map[bytes, Any], list[bytes]]]


def _trie(maps: Maps, which: str, version: int) -> AclMap:
    m = maps[f"xs_{which}{version}"]
    return m.typed(Raw(m.key_size), _ACL)


def _hash(maps: Maps, which: str, version: int) -> AclMap:
    m = maps[f"xs_{which}{version}h"]
    return m.typed(Raw(m.key_size), _ACL)


def _lpm_key(p: Prefix, gen: int) -> bytes:
    """struct xs_lpm4/6: the generation's 32 bits count in prefixlen."""
    return struct.pack("=II", 32 + p.plen, gen & 0xFFFFFFFF) + p.addr


def _hash_key(p: Prefix, gen: int) -> bytes:
    """struct xs_hkey4/6."""
    return struct.pack("=II", gen & 0xFFFFFFFF, p.plen) + p.addr


def _prefix_of(key: bytes, *, hashed: bool = False) -> tuple[int, Prefix]:
    """(generation, prefix) of a trie or hash-tier key."""
    a, b = struct.unpack_from("=II", key)
    gen, plen = (a, b) if hashed else (b, a - 32)
    addr = key[8:]
    return gen, Prefix(4 if len(addr) == 4 else 6, addr, plen)


# -- the lists' filters (struct xs_acl_bits) -----------------------------------------
#: Bytes of one filter: 2^24 bits (consts.h XS_ACL_WORDS words of 64).
ACL_FILTER_BYTES = (1 << 24) // 8
#: An IPv6 filter takes no prefix shorter than this (a /16 is 65,536 /32s' bits).
ACL6_MIN_PLEN = 16
#: Bits an IPv6 filter may need set, at most (beyond it: no filter).
_ACL6_MAX_BITS = 1 << 22


def acl_filt(which: str, version: int) -> int:
    """struct xs_psel.acl_filt's bit for a list and family (consts.h XS_ACL_FILT)."""
    return 1 << _acl_slot(which, version)


def _acl_slot(which: str, version: int) -> int:
    return LISTS.index(which) + (2 if version == 6 else 0)


def _acl6_bit(a0: int) -> int:
    """acl.h xs_acl6_n() of a /32 given as its first 32 bits (``_place``
    inlines it for the common case)."""
    return ((a0 * 0x9E3779B1) & 0xFFFFFFFF) >> 8


def acl6_n(addr: bytes) -> int:
    """acl.h xs_acl6_n(): the IPv6 filter's bit of an address (its /32, hashed)."""
    return _acl6_bit(int.from_bytes(addr[:4], "big"))


class _Bits:
    """A filter being built, per family: ``out[version]`` (None: that
    family keeps no filter). :meth:`add` marks one prefix; ``_place`` marks
    the common shapes (IPv4 /24 and longer, IPv6 /32 and longer) inline, in
    the loop that packs the keys (a million prefixes: a second pass over
    them cost 0.4 s of a 3 s budget).

    ``sure``: also the IPv4 /24s touched by an entry that is not permanent
    or is longer than /24 (``unsure``); :meth:`sure_bits` is then the /24s
    only permanent /24-or-shorter entries touch, which they hold whole."""

    def __init__(self, versions: Iterable[int], *, sure: bool = False) -> None:
        self.out: dict[int, bytearray | None] = {v: bytearray(ACL_FILTER_BYTES) for v in versions}
        self.unsure = bytearray(ACL_FILTER_BYTES) if sure and 4 in self.out else None
        self.budget = _ACL6_MAX_BITS

    def sure_bits(self) -> bytes | None:
        out = self.out.get(4)
        if out is None or self.unsure is None:
            return None
        touched, unsure = int.from_bytes(out, "little"), int.from_bytes(self.unsure, "little")
        return (touched & ~unsure).to_bytes(ACL_FILTER_BYTES, "little")

    def add(self, version: int, addr: bytes, plen: int, perm: bool = True) -> None:
        out = self.out.get(version)
        if out is None:
            return
        if version == 6:
            if plen < ACL6_MIN_PLEN:
                self.out[6] = None
                return
            span = 1 << max(0, 32 - plen)
            self.budget -= span
            if self.budget < 0:
                self.out[6] = None
                return
            first = int.from_bytes(addr[:4], "big") & ~(span - 1)
            for a0 in range(first, first + span):
                n = _acl6_bit(a0)
                out[n >> 3] |= 1 << (n & 7)
            return
        n = int.from_bytes(addr[:3], "big")
        span = 1 << max(0, 24 - plen)
        n &= ~(span - 1)
        marks = [out]
        if self.unsure is not None and (plen > 24 or not perm):
            marks.append(self.unsure)
        for b in marks:
            _mark_range(b, n, span)


def _mark_range(b: bytearray, n: int, span: int) -> None:
    """Set bits n .. n + span - 1 (span a power of two, n a multiple of it)."""
    if span >= 8:  # whole bytes
        b[n >> 3 : (n + span) >> 3] = b"\xff" * (span >> 3)
    else:
        for i in range(n, n + span):
            b[i >> 3] |= 1 << (i & 7)


def acl_bits(prefixes: Iterable[Prefix], version: int) -> bytearray | None:
    """The filter of a list holding ``prefixes``, for one family (the
    other's prefixes are skipped): IPv4, the bit of every /24 a prefix holds
    part of; IPv6, the bit of every /32 (:func:`acl6_n`). Bit n is byte
    n >> 3's bit n & 7 (the data path's little-endian words). None: no
    IPv6 filter can be kept (a prefix shorter than :data:`ACL6_MIN_PLEN`)."""
    bits = _Bits([version])
    for v, addr, plen in prefixes:
        if v == version:
            bits.add(v, addr, plen)
    return bits.out[version]


def _acl_filter(maps: Maps) -> Map[int, bytes]:
    return maps["xs_acl_bits"].typed(UInt(4), Raw(ACL_FILTER_BYTES))


def read_acl_filter(maps: Maps, which: str, version: int) -> bytes:
    """The filter of a list and family as the data path reads it."""
    return _acl_filter(maps).lookup(_acl_slot(which, version))


def _write_acl_filter(maps: Maps, which: str, version: int, bits: bytes | bytearray) -> None:
    _acl_filter(maps).update(_acl_slot(which, version), bytes(bits))


_BITOPS: dict[str, Callable[[int, int], int]] = {
    "or": lambda x, y: x | y,
    "and": lambda x, y: x & y,
    "andnot": lambda x, y: x & ~y,
}


def _bitop(a: bytes, b: bytes | bytearray, how: str) -> bytes:
    """Two bit sets of one size combined (``how``: a key of _BITOPS)."""
    x, y = int.from_bytes(a, "little"), int.from_bytes(b, "little")
    return _BITOPS[how](x, y).to_bytes(len(a), "little")


def deny_sure(prefixes: Mapping[Prefix, float | None]) -> bytes:
    """The deny list's sure bits for entries ``prefixes`` (prefix -> TTL,
    None: permanent): the IPv4 /24s only permanent entries of /24 or
    shorter touch. Bit n as in :func:`acl_bits`."""
    bits = _Bits([4], sure=True)
    for (v, addr, plen), ttl in prefixes.items():
        if v == 4:
            bits.add(4, addr, plen, ttl is None)
    return cast(bytes, bits.sure_bits())


def _sure_map(maps: Maps) -> Map[int, bytes]:
    return maps["xs_acl_sure"].typed(UInt(4), Raw(ACL_FILTER_BYTES))


def read_deny_sure(maps: Maps) -> bytes:
    """The deny list's sure bits as the data path reads them."""
    return _sure_map(maps).lookup(0)


def _write_deny_sure(maps: Maps, bits: bytes) -> None:
    _sure_map(maps).update(0, bits)


def _change_deny_sure(maps: Maps, bits: bytes | bytearray, how: str) -> bytes:
    """The sure bits combined with ``bits`` (:func:`_bitop`), written if that
    changes them; returns what they were."""
    cur = read_deny_sure(maps)
    new = _bitop(cur, bits, how)
    if new != cur:
        _write_deny_sure(maps, new)
    return cur


@dataclass(frozen=True)
class ListEntry:
    """An entry of a live list. ``expires_ns``: CLOCK_MONOTONIC (0: never);
    ``live``: added live (kept across config applies)."""

    prefix: Prefix
    expires_ns: int
    live: bool

    def ttl_s(self, now_ns: int | None = None) -> float | None:
        """Seconds left (None: no expiry)."""
        if not self.expires_ns:
            return None
        now = time.monotonic_ns() if now_ns is None else now_ns
        return max(0.0, (self.expires_ns - now) / _NS)


#: Where an entry is: (map, key) -> (expires_ns, flags).
Placed = dict[tuple[AclMap, bytes], tuple[int, int]]


def _read_gen(maps: Maps, which: str, version: int, sel: Selector) -> dict[Prefix, Any]:
    """Prefix -> (expires_ns, flags, map, key, in the trie) of the live
    generation of a list and family, both tiers."""
    gen = sel.gen(which)
    out: dict[Prefix, Any] = {}
    tiers: list[tuple[AclMap, bool]] = [(_hash(maps, which, version), True)]
    if sel.lpm(which, version):
        tiers.append((_trie(maps, which, version), False))
    for m, hashed in tiers:
        for key, value in m.lookup_batch(chunk=4096):
            g, p = _prefix_of(key, hashed=hashed)
            if g == gen:
                exp, flags, _ = cast(tuple[int, int, int], value)
                out[p] = (exp, flags, m, key, not hashed)
    return out


def list_entries(maps: Maps, which: str) -> list[ListEntry]:
    """The live generation of a list, IPv4 first, each family in address order."""
    _check_list(which)
    sel = selector(maps)
    out: list[ListEntry] = []
    for version in (4, 6):
        if not sel.count(which, version):
            continue
        for p, (exp, flags, *_) in _read_gen(maps, which, version, sel).items():
            out.append(ListEntry(p, exp, bool(flags & ACL_LIVE)))
    out.sort(key=lambda e: (e.prefix.version, e.prefix.addr, e.prefix.plen))
    return out


def _expiry(ttl_s: float | None, now_ns: int) -> int:
    return 0 if ttl_s is None else now_ns + max(1, int(ttl_s * _NS))


def _place(
    maps: Maps,
    which: str,
    entries: Mapping[Prefix, Any],
    value_of: Callable[[Any], tuple[int, int]],
    gen: int,
    lens: dict[int, list[int]],
    bits: _Bits | None = None,
    ready: Callable[[], None] | None = None,
) -> tuple[Keys, dict[int, int], dict[int, int]]:
    """Write ``entries`` into generation ``gen`` of a list, both families:
    ``value_of(v)`` gives an entry's (expires_ns, flags) from its mapping
    value; the hash tier takes the lengths in ``lens[version]`` (extended,
    up to TIERS, by new lengths), the trie the rest. Returns what was
    written and, per family, how many entries and how many went to the trie.
    ``bits``: the entries' filter bits are marked there; ``ready``: called
    once they are, before any entry is written.

    The path of a million-prefix list: one pass, keys packed here and
    written raw, values encoded once per distinct value, the collector off.
    """
    b4 = bits.out.get(4) if bits is not None else None
    b6 = bits.out.get(6) if bits is not None else None
    u4 = bits.unsure if bits is not None else None
    word = int.from_bytes
    g = gen & 0xFFFFFFFF
    head = struct.Struct("=II")
    encoded: dict[Any, tuple[bytes, bool]] = {}  # raw -> (value, permanent)
    # version -> (hash keys, hash values, trie keys, trie values)
    out: dict[int, tuple[list[bytes], list[bytes], list[bytes], list[bytes]]] = {
        4: ([], [], [], []),
        6: ([], [], [], []),
    }
    with gc_paused():
        for p, raw in entries.items():
            version, addr, plen = p
            hit = encoded.get(raw)
            if hit is None:
                exp, flags = value_of(raw)
                hit = encoded[raw] = (_ACL.encode((exp, flags, 0)), not exp)
            value, perm = hit
            # The filter's common cases inline (see _Bits).
            if version == 4 and plen >= 24 and b4 is not None:
                n = word(addr[:3], "big")
                b4[n >> 3] |= 1 << (n & 7)
                if u4 is not None and (plen > 24 or not perm):
                    u4[n >> 3] |= 1 << (n & 7)
            elif version == 6 and plen >= 32 and b6 is not None:  # _acl6_bit(), inlined
                n = ((word(addr[:4], "big") * 0x9E3779B1) & 0xFFFFFFFF) >> 8
                b6[n >> 3] |= 1 << (n & 7)
            elif bits is not None:
                bits.add(version, addr, plen, perm)
                b6 = bits.out.get(6)
            ls = lens[version]
            hk, hv, tk, tv = out[version]
            if plen not in ls and len(ls) < TIERS:
                ls.append(plen)
            if plen in ls:
                hk.append(head.pack(g, plen) + addr)
                hv.append(value)
            else:
                tk.append(head.pack(32 + plen, g) + addr)
                tv.append(value)
    if ready is not None:
        ready()
    written: Keys = []
    for version, (hk, hv, tk, tv) in out.items():
        for m, keys, vals in (
            (_hash(maps, which, version), hk, hv),
            (_trie(maps, which, version), tk, tv),
        ):
            if not keys:
                continue
            try:
                m.update_batch_bytes(b"".join(keys), b"".join(vals), _BATCH)
            except BaseException:
                # Part of this batch may be in: those keys go too.
                _delete_keys([*written, (m, keys)])
                raise
            written.append((m, keys))
    counts = {v: len(o[0]) + len(o[2]) for v, o in out.items()}
    in_trie = {v: len(o[2]) for v, o in out.items()}
    return written, counts, in_trie


def _tier_order(entries: Iterable[Prefix], version: int) -> list[int]:
    """The prefix lengths of a family to hash: the most common first (ties:
    longest)."""
    counts = Counter(p.plen for p in entries if p.version == version)
    return sorted(counts, key=lambda n: (-counts[n], -n))[:TIERS]


def add_entries(
    maps: Maps, which: str, entries: PrefixList, *, now_ns: int | None = None, live: bool = True
) -> int:
    """Add (or renew) prefixes in the live generation of a list; returns how
    many were written. Batched: a million prefixes are a few dozen syscalls."""
    _check_list(which)
    now = time.monotonic_ns() if now_ns is None else now_ns
    sel = selector(maps)
    flags = ACL_LIVE if live else 0
    lens = {}
    for v in (4, 6):
        # An empty tier takes the new entries' own most common lengths.
        lens[v] = sel.tier_lens(which, v) or _tier_order(entries, v)
    # The filters first: an entry they do not cover would never be read.
    kept = [v for v in (4, 6) if sel.acl_filt & acl_filt(which, v)]
    sure = which == "deny" and "xs_acl_sure" in maps
    bits = _Bits([*kept, 4] if sure and 4 not in kept else kept, sure=sure)

    def write_filters() -> None:
        nonlocal sel
        if bits.unsure is not None:
            # An entry with an expiry may replace a permanent one: its /24s
            # are not sure from now on (nor, for simplicity, any other /24
            # this add touches otherwise than whole and for good).
            _change_deny_sure(maps, bits.unsure, "andnot")
        for v in kept:
            more = bits.out[v]
            if more is None:  # too wide for a filter: none from now on
                sel = replace(sel, acl_filt=sel.acl_filt & ~acl_filt(which, v))
                _write_selector(maps, sel)
                continue
            cur = read_acl_filter(maps, which, v)
            new = _bitop(cur, more, "or")
            if new != cur:
                _write_acl_filter(maps, which, v, new)

    _, counts, in_trie = _place(
        maps,
        which,
        entries,
        lambda ttl: (_expiry(ttl, now), flags),
        sel.gen(which),
        lens,
        bits,
        write_filters,
    )
    new = sel
    for v in (4, 6):
        # Counts stay upper bounds (a renewed prefix is counted again): they
        # only tell the data path whether to look up at all.
        new = new.with_tiers(which, v, lens[v]).with_counts(
            **{
                f"n_{which}{v}": new.count(which, v) + counts[v],
                f"lpm_{which}{v}": new.lpm(which, v) + in_trie[v],
            }
        )
    ttls = sum(t is not None for t in entries.values())
    _write_selector(maps, new.with_counts(n_ttl=new.n_ttl + ttls))
    more = bits.sure_bits()
    if more is not None:  # its permanent entries are in: their /24s are sure
        _change_deny_sure(maps, more, "or")
    return len(entries)


def del_entries(maps: Maps, which: str, prefixes: Iterable[Prefix]) -> int:
    """Remove exact prefixes from the live generation. All or nothing: a
    prefix that is not in the list is an error and nothing is removed."""
    _check_list(which)
    prefixes = list(dict.fromkeys(prefixes))
    sel = selector(maps)
    gen = sel.gen(which)
    # Sure bits first: a /24 an entry to go holds is not sure from now on.
    old_sure: bytes | None = None
    wide = [p for p in prefixes if p.version == 4 and p.plen <= 24]
    if which == "deny" and wide and "xs_acl_sure" in maps:
        old_sure = _change_deny_sure(maps, cast(bytearray, acl_bits(wide, 4)), "andnot")
    done: list[tuple[AclMap, bytes, tuple[int, int, int], Prefix, bool]] = []
    missing: list[Prefix] = []
    views: dict[tuple[int, bool], AclMap] = {}  # one fd per table, not per prefix
    for p in prefixes:
        hashed = p.plen in sel.tier_lens(which, p.version)
        m = views.get((p.version, hashed))
        if m is None:
            m = views[p.version, hashed] = (_hash if hashed else _trie)(maps, which, p.version)
        key = _hash_key(p, gen) if hashed else _lpm_key(p, gen)
        try:
            # In the trie a lookup may give a shorter prefix; the delete is exact.
            value = m.lookup(key)
            m.delete(key)
        except KeyNotFound:
            missing.append(p)
            continue
        done.append((m, key, value, p, hashed))
    if missing:
        for m, key, value, _, _ in done:  # put back what went: nothing changed
            m.update(key, value)
        if old_sure is not None:
            _write_deny_sure(maps, old_sure)
        raise ConfigError(f"not in the {which} list: {', '.join(map(str, missing))}", key=which)
    new = sel
    for _, _, _, p, hashed in done:
        v = p.version
        new = new.with_counts(
            **{
                f"n_{which}{v}": max(0, new.count(which, v) - 1),
                f"lpm_{which}{v}": max(0, new.lpm(which, v) - (0 if hashed else 1)),
            },
        )
    _write_selector(maps, new)
    return len(done)


def age_lists(maps: Maps, now_ns: int | None = None) -> int:
    """Remove expired entries from the live lists; returns how many. Reads
    the lists only while some entry has an expiry (``n_ttl``)."""
    sel = selector(maps)
    if not sel.n_ttl:
        return 0
    now = time.monotonic_ns() if now_ns is None else now_ns
    removed = left = 0
    counts: dict[str, int] = {}
    for which in LISTS:
        for version in (4, 6):
            if not sel.count(which, version):
                continue
            entries = _read_gen(maps, which, version, sel)
            gone = [(m, k) for exp, _, m, k, _ in entries.values() if exp and exp <= now]
            left += sum(1 for exp, *_ in entries.values() if exp and exp > now)
            for m, key in gone:
                try:
                    m.delete(key)
                except KeyNotFound:  # removed meanwhile
                    continue
                removed += 1
            counts[f"n_{which}{version}"] = len(entries) - len(gone)
            counts[f"lpm_{which}{version}"] = sum(
                1 for exp, _, _, _, in_trie in entries.values() if in_trie and not 0 < exp <= now
            )
    cur = selector(maps)  # a live edit may have run meanwhile: keep its counts
    if cur == sel:
        _write_selector(maps, sel.with_counts(n_ttl=left, **counts))
    return removed


# -- hygiene ------------------------------------------------------------------------
def _bits256(values: Iterable[int]) -> tuple[int, int, int, int]:
    n = 0
    for v in values:
        n |= 1 << (v & 0xFF)
    return (n & (2**64 - 1), n >> 64 & (2**64 - 1), n >> 128 & (2**64 - 1), n >> 192)


def hygiene_bytes(h: Hygiene) -> bytes:
    """``struct xs_hygiene`` for these settings."""
    flags = (
        HYG_TCP_FLAGS * h.tcp_flags
        | HYG_REFLECTION * h.reflection
        | HYG_FRAGMENTS * h.fragments
        | HYG_ICMP * h.icmp
    )
    icmp4 = set(h.icmp_types) | ({3} if h.icmp_pmtu else set())
    icmp6 = set(h.icmpv6_types) | ({2} if h.icmp_pmtu else set())
    refl = 0
    for port in h.reflection_ports:
        refl |= 1 << port
    head = _HYG_HEAD.pack(
        flags,
        0,
        int(h.fragment_window_s * _NS),
        int(h.reflection_window_s * _NS),
        *_bits256(icmp4),
        *_bits256(icmp6),
        *_bits256(h.protocols_drop),
    )
    return head + refl.to_bytes(_PORTSET, "little")


def init_policy(maps: Maps) -> None:
    """A fresh shield's policy: the default hygiene, no lists, no rules (and
    no hash tier: a zeroed selector would look up length 0 four times)."""
    write_hygiene(maps, Hygiene(), 0)
    filt = 0
    if "xs_acl_bits" in maps:  # not in objects from before it
        empty = bytes(ACL_FILTER_BYTES)
        for which in LISTS:
            for v in (4, 6):
                _write_acl_filter(maps, which, v, empty)
                filt |= acl_filt(which, v)
    if "xs_acl_sure" in maps:
        _write_deny_sure(maps, bytes(ACL_FILTER_BYTES))
    _write_selector(maps, Selector(acl_filt=filt))


def refl_key(peer: str, peer_port: int, local_port: int) -> bytes:
    """``struct xs_refl_key``: a request to ``peer``:``peer_port`` from our
    ``local_port`` (tests and tools; the tc egress program writes them)."""
    addr = ipaddress.ip_address(peer)
    raw = _V4_MAPPED + addr.packed if addr.version == 4 else addr.packed
    return raw + struct.pack("!HH", peer_port, local_port)


#: The hints in front of xs_refl and xs_frag (consts.h XS_HINT_SLOTS, XS_HINT_SHIFT).
HINT_SLOTS, _HINT_SHIFT = 1 << 14, 20
_M64 = (1 << 64) - 1


def hint_slot(addr16: bytes, extra: int = 0) -> int:
    """hygiene.h xs_hint_slot(): the hint slot of an address as struct
    xs_vkey holds it (IPv4 mapped), and ``extra`` (a fragment's id)."""
    a0, a1, a2, a3 = cast(tuple[int, int, int, int], struct.unpack("=4I", addr16))
    h = ((a0 ^ a2) << 32 | (a1 ^ a3)) ^ extra
    h = ((h ^ (h >> 33)) * 0xFF51AFD7ED558CCD) & _M64
    h = ((h ^ (h >> 33)) * 0xC4CEB9FE1A85EC53) & _M64
    return (h ^ (h >> 33)) & (HINT_SLOTS - 1)


def _mark_hints(hints: Map[Any, Any], expiries: Mapping[int, int]) -> None:
    """hygiene.h xs_hint_mark() of many entries: slot -> the latest expiry of
    its entries (ns); a slot keeps the later of that and what it holds."""
    m = hints.typed(UInt(4), UInt(4))
    for slot, exp in expiries.items():
        tick = ((exp >> _HINT_SHIFT) + 1) & 0xFFFFFFFF
        cur = m.lookup(slot)
        if not cur or 0 < (tick - cur) & 0xFFFFFFFF < 1 << 31:
            m.update(slot, tick)


def note_request(maps: Maps, key: bytes, expires_ns: int) -> None:
    """What the tc egress program writes for a request (``key``: :func:`refl_key`):
    its entry in xs_refl, and its hint (kept at the latest expiry)."""
    _mark_hints(maps["xs_refl_hint"], {hint_slot(key[:16]): expires_ns})
    maps["xs_refl"].typed(Raw(len(key)), UInt(8)).update(key, expires_ns)


#: struct xs_frag_key (shared.h): source, destination (as struct xs_vkey), id, protocol.
_FRAG_KEY = struct.Struct("=16s16sII")


def _frag_hint_slot(key: bytes) -> int:
    """The hint slot of an xs_frag key: its datagram's source and id."""
    src, _dst, ident, _proto = _FRAG_KEY.unpack(key)
    return hint_slot(src, ident)


#: The tables of what this host asked and let in (hygiene.h), their hints, and
#: a key's hint slot: a request's peer (struct xs_refl_key starts with it).
_REMEMBERED: tuple[tuple[str, str, Callable[[bytes], int]], ...] = (
    ("xs_refl", "xs_refl_hint", lambda k: hint_slot(k[:16])),
    ("xs_frag", "xs_frag_hint", _frag_hint_slot),
)


def carry_remembered(old: Maps, new: Maps, now_ns: int | None = None) -> int:
    """Copy the requests and first fragments ``old`` still remembers (xs_refl,
    xs_frag, unexpired) into ``new``'s tables and hints, where both have the
    table with one layout: replies to requests sent just before an upgrade
    that makes new policy tables then still pass. Returns how many."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    n = 0
    for table, hints, slot_of in _REMEMBERED:
        if table not in old or table not in new or hints not in new:
            continue
        src, dst = old[table], new[table]
        if (src.key_size, src.value_size) != (dst.key_size, dst.value_size):
            continue  # another layout: nothing this version can read
        table_rows = src.typed(Raw(src.key_size), UInt(8)).items()
        rows = [(k, exp) for k, v in table_rows if (exp := cast(int, v)) > now]
        rows = rows[: dst.max_entries]
        expiries: dict[int, int] = {}
        for k, exp in rows:
            slot = slot_of(k)
            expiries[slot] = max(exp, expiries.get(slot, 0))
        _mark_hints(new[hints], expiries)  # before the entries, as the data path does
        dst.typed(Raw(dst.key_size), UInt(8)).update_batch(rows)
        n += len(rows)
    return n


def _hyg(maps: Maps) -> Map[int, bytes]:
    m = maps["xs_hyg"]
    return m.typed(UInt(4), Raw(m.value_size))


def write_hygiene(maps: Maps, h: Hygiene, slot: int) -> None:
    _hyg(maps).update(slot & 1, hygiene_bytes(h))


# -- rules --------------------------------------------------------------------------
def _rule_val(cands: Sequence[Any], plen: int = 0) -> bytes:
    parts = []
    for c in cands:
        fmask, fval = c.tcp_flags or (0, 0)
        parts.append(
            _CAND.pack(
                c.rule_id,
                _ACTIONS[c.action],
                RULE_ANY if c.sportset is None else c.sportset,
                fmask,
                fval,
                c.icmp_code is not None,
                c.icmp_code or 0,
            )
        )
    parts += [bytes(_CAND.size)] * (CANDS - len(cands))
    return struct.pack("=II", len(cands), plen) + b"".join(parts)


def _rules_maps(maps: Maps) -> tuple[Map[bytes, bytes], Map[bytes, bytes]]:
    """The rules' trie and their hash tier, raw."""
    t, h = maps["xs_rules"], maps["xs_rules_h"]
    return t.typed(Raw(t.key_size), Raw(t.value_size)), h.typed(Raw(h.key_size), Raw(h.value_size))


def _write_rules(
    maps: Maps, compiled: CompiledRules, gen: int, new_ids: Iterable[int]
) -> tuple[Keys, bytes, int]:
    """Write generation ``gen`` of the rules; returns the entry keys written,
    the hash tier's lengths (struct xs_psel.rule_tiers) and how many entries
    went to the trie. The most common prefix lengths are hashed (one exact
    lookup each, whatever the number of rules), the rest go to the trie."""
    half = gen & 1
    ports = maps["xs_rule_ports"].typed(UInt(4), Raw(maps["xs_rule_ports"].value_size))
    for slot, arr in enumerate(compiled.port_classes):
        ports.update(half * SLOTS + slot, arr.tobytes())
    sport = maps["xs_rule_sport"]
    sport.typed(UInt(4), Raw(sport.value_size)).update(half, compiled.sport_masks.tobytes())
    stats = maps["xs_rule_stats"].typed(UInt(4), _COUNTER)
    zero = [(0, 0)] * stats.ncpus
    for rid in new_ids:  # a reused id starts from zero
        stats.update(rid, zero)
    counts = Counter(p.plen for _, p, _ in compiled.entries)
    lens = sorted(sorted(counts, key=lambda n: (-counts[n], -n))[:TIERS], reverse=True)
    trie, hashed = _rules_maps(maps)
    g = gen & 0xFFFF
    hk: list[bytes] = []
    hv: list[bytes] = []
    tk: list[bytes] = []
    tv: list[bytes] = []
    vals: dict[tuple[Any, int], bytes] = {}  # many entries share their candidates
    for cls, p, cands in compiled.entries:
        v = vals.get((cands, p.plen))
        if v is None:
            v = vals[cands, p.plen] = _rule_val(cands, p.plen)
        if p.plen in lens:
            hk.append(_RULE_HKEY.pack(g, cls, p.plen, p.addr))
            hv.append(v)
        else:
            tk.append(_RULE_KEY.pack(32 + p.plen, g, cls, p.addr))
            tv.append(v)
    written: Keys = []
    for m, keys, values in ((hashed, hk, hv), (trie, tk, tv)):
        if not keys:
            continue
        try:
            m.update_batch_bytes(b"".join(keys), b"".join(values), _BATCH)
        except BaseException:
            _delete_keys([*written, (m, keys)])
            raise
        written.append((m, keys))
    tiers = bytes(lens) + bytes([_NO_TIER]) * (TIERS - len(lens))
    return written, tiers, len(tk)


def _rule_keys(maps: Maps, sel: Selector) -> Keys:
    """Keys of the live generation of the rules, both tiers."""
    trie, hashed = _rules_maps(maps)
    g = sel.rules_gen & 0xFFFF
    out: Keys = [
        (hashed, [k for k, _ in hashed.lookup_batch(4096) if _RULE_HKEY.unpack(k)[0] == g])
    ]
    if sel.lpm_rules:
        out.append((trie, [k for k, _ in trie.lookup_batch(4096) if _RULE_KEY.unpack(k)[1] == g]))
    return out


def rule_stats(maps: Maps, ids: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """(packets, bytes) per rule name, summed over CPUs."""
    stats = maps["xs_rule_stats"].typed(UInt(4), _COUNTER)
    return {
        name: cast(tuple[int, int], sum_percpu(stats.lookup_percpu(rid)))
        for name, rid in ids.items()
    }


# -- apply -----------------------------------------------------------------------------
def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def limits_digest(lim: Limits) -> str:
    return _digest(lim)


def list_digest(entries: PrefixList) -> str:
    return _digest(sorted((p.version, p.addr, p.plen, t) for p, t in entries.items()))


@dataclass(frozen=True)
class ApplyResult:
    """What an apply changed, and what the next one needs to know."""

    changed: tuple[str, ...]  # tables switched to a new generation
    digests: dict[str, str]
    gens: dict[str, int]  # the generations these digests describe
    dirty_ids: list[int]  # rule ids ever used on this shield (their counters may hold counts)
    rule_ids: dict[str, tuple[int, str]]  # name -> (id, fingerprint)
    kept_live: int  # live list entries carried over
    seconds: float

    def carry(self) -> dict[str, Any]:
        """What the next apply needs to know (its ``previous``)."""
        return {
            "digests": self.digests,
            "gens": self.gens,
            "dirty_ids": self.dirty_ids,
            "rule_ids": self.rule_ids,
        }


def apply_policy(
    maps: Maps,
    policy: Policy,
    *,
    previous: Mapping[str, Any] | None = None,
    compiled: CompiledRules | None = None,
    now_ns: int | None = None,
) -> ApplyResult:
    """Make ``policy`` the live one, atomically (see the module doc).

    ``previous``: what the last apply returned (``digests`` and
    ``rule_ids``), so unchanged tables are not rewritten and unchanged rules
    keep their ids and counters. ``compiled``: the rules already compiled
    with those ids (else compiled here).
    """
    # The collector off: a process that holds big lists would walk them all
    # for the tuples made here (tens of ms for 10,000 rules).
    with gc_paused():
        return _apply(maps, policy, previous, compiled, now_ns)


def _apply(
    maps: Maps,
    policy: Policy,
    previous: Mapping[str, Any] | None,
    compiled: CompiledRules | None,
    now_ns: int | None,
) -> ApplyResult:
    t0 = time.perf_counter()
    now = time.monotonic_ns() if now_ns is None else now_ns
    sel = selector(maps)
    prev_digests: Mapping[str, str] = (previous or {}).get("digests", {})
    prev_ids: Mapping[str, tuple[int, str]] = (previous or {}).get("rule_ids", {})
    # Rule ids whose counters may hold counts (None: any may).
    dirty: set[int] | None = set((previous or {}).get("dirty_ids", []))
    if (previous or {}).get("gens") != _gens(sel):
        # The record is not of the live policy (an apply died between its
        # switch and its record): trust no digest, rewrite every table.
        prev_digests = {}
        dirty = None if previous else set()
    if compiled is None:
        compiled = compile_rules(policy.rules, prev_ids)
    digests = {
        "allow": list_digest(policy.allow),
        "deny": list_digest(policy.deny),
        "hygiene": _digest(policy.hygiene),
        "rules": _digest(sorted(compiled.ids.items()), [r.name for r in policy.rules]),
        "limits": limits_digest(policy.limits),
    }
    limit_rules = any(r.action == Action.LIMIT for r in policy.rules)
    if "xs_lim" not in maps and (policy.limits.enabled or limit_rules):
        raise ConfigError(
            "this shield's program predates rate limits: load it again "
            "('xdpshield stop', then run) to use [limits] or limit rules",
            key="limits",
        )
    new = sel
    changed = [t for t in digests if digests[t] != prev_digests.get(t)]
    written: Keys = []  # undone on failure
    stale: Keys = []  # the old generations
    exact: dict[tuple[str, int], bytes] = {}  # filters to write again after the switch
    sure_after: bytes | None = None  # the deny list's sure bits, after the switch
    kept_live = 0
    try:
        for which in LISTS:
            if which not in changed:
                continue
            gen = (sel.gen(which) + 1) & 0xFFFFFFFF
            config = policy.allow if which == "allow" else policy.deny
            items: dict[Prefix, tuple[int, int]] = {
                p: (_expiry(ttl, now), 0) for p, ttl in config.items()
            }
            for version in (4, 6):
                old = _read_gen(maps, which, version, sel) if sel.count(which, version) else {}
                for _, _, m, k, _ in old.values():
                    stale.append((m, [k]))
                for p, (exp, flags, *_) in old.items():
                    if flags & ACL_LIVE and (not exp or exp > now) and p not in items:
                        items[p] = (exp, flags)
                        kept_live += 1
            lens = {v: _tier_order(items, v) for v in (4, 6)}
            sure = which == "deny" and "xs_acl_sure" in maps
            bits = _Bits((4, 6), sure=sure) if "xs_acl_bits" in maps else None
            placed, counts, in_trie = _place(maps, which, items, lambda v: v, gen, lens, bits)
            written += placed
            if bits is not None:  # the new generation is not live yet: any order
                for v in (4, 6):
                    new = _stage_acl_filter(maps, which, v, sel, new, bits.out[v], exact)
                if bits.unsure is not None:
                    # Sure of both generations until the switch is behind us.
                    sure_after = bits.sure_bits()
                    _change_deny_sure(maps, cast(bytes, sure_after), "and")
            for v in (4, 6):
                new = new.with_tiers(which, v, lens[v]).with_counts(
                    **{f"n_{which}{v}": counts[v], f"lpm_{which}{v}": in_trie[v]}
                )
            new = new.with_counts(**{f"{which}_gen": gen})
        if "hygiene" in changed:
            write_hygiene(maps, policy.hygiene, sel.hyg_gen + 1)
            new = replace(new, hyg_gen=(sel.hyg_gen + 1) & 0xFFFFFFFF)
        if "rules" in changed:
            gen = (sel.rules_gen + 1) & 0xFFFFFFFF
            live_ids = {rid for rid, _ in prev_ids.values()}
            # A new rule's id starts from zero; one never used is zero already.
            fresh = [
                rid
                for rid, _ in compiled.ids.values()
                if rid not in live_ids and (dirty is None or rid in dirty)
            ]
            if sel.n_rules:
                stale += _rule_keys(maps, sel)
            placed, tiers, rules_in_trie = _write_rules(maps, compiled, gen, fresh)
            written += placed
            _write_rule_rates(maps, policy.rules, compiled)
            new = replace(new, rule_tiers=tiers, lpm_rules=rules_in_trie)
            new = replace(new, rules_gen=gen, n_rules=len(policy.rules))
        ttls = sum(t is not None for t in policy.allow.values()) + sum(
            t is not None for t in policy.deny.values()
        )
        new = replace(new, n_ttl=ttls + kept_live)
        if "xs_lim" in maps:
            new = _next_limits(maps, new, policy.limits, limit_rules, rewrite="limits" in changed)
        _write_selector(maps, new)  # the switch
    except BaseException:
        _delete_keys(written)
        raise
    # Packets that read the old selector may still be using the old
    # generation (and its filter bits): give them an RCU grace period's
    # worth of time.
    if stale or exact or sure_after is not None:
        time.sleep(0.01)
        _delete_keys(stale)
    for (which, v), narrow in exact.items():
        _write_acl_filter(maps, which, v, narrow)
    if sure_after is not None:
        _write_deny_sure(maps, sure_after)
    return ApplyResult(
        changed=tuple(changed),
        digests=digests,
        gens=_gens(new),
        dirty_ids=sorted(
            (dirty if dirty is not None else set(range(RULES_MAX)))
            | {rid for rid, _ in compiled.ids.values()}
        ),
        rule_ids=dict(compiled.ids),
        kept_live=kept_live,
        seconds=time.perf_counter() - t0,
    )


def _stage_acl_filter(
    maps: Maps,
    which: str,
    version: int,
    sel: Selector,
    new: Selector,
    bits: bytearray | None,
    exact: dict[tuple[str, int], bytes],
) -> Selector:
    """Before the switch: the filter of the new generation of a list and
    family, written with the live one's bits kept (packets that read the
    old selector still look in the old generation); its own bits go in
    ``exact`` when they are narrower, to be written after the switch.
    Returns ``new`` with the filter kept, or not (``bits`` None: too wide)."""
    bit = acl_filt(which, version)
    if bits is None:
        return replace(new, acl_filt=new.acl_filt & ~bit)
    cur = read_acl_filter(maps, which, version) if sel.acl_filt & bit else None
    union = bytes(bits) if cur is None else _bitop(cur, bits, "or")
    if union != cur:
        _write_acl_filter(maps, which, version, union)
    if union != bits:
        exact[which, version] = bytes(bits)
    return replace(new, acl_filt=new.acl_filt | bit)


def _gens(sel: Selector) -> dict[str, int]:
    return {t: getattr(sel, f"{t}_gen") for t in ("allow", "deny", "rules", "hyg", "lim")}


# -- limits ---------------------------------------------------------------------------


def _write_rule_rates(maps: Maps, rules: Sequence[Rule], compiled: CompiledRules) -> None:
    """Each limit rule's rate at its id (before its generation is live: a
    changed rate is a changed rule, with a new id)."""
    if "xs_rule_rate" not in maps:
        return
    rates = maps["xs_rule_rate"].typed(UInt(4), StructCodec("=QQ"))
    for r in rules:
        if r.action == Action.LIMIT and r.pps:
            rates.update(compiled.ids[r.name][0], limits.pps_rate(r.pps, r.burst))


def _next_limits(
    maps: Maps, sel: Selector, lim: Limits, limit_rules: bool, *, rewrite: bool = True
) -> Selector:
    """``sel`` with the limits ``lim`` (written to the other slot of xs_lim
    when ``rewrite``) and the stage on when anything needs it."""
    flags = limits.block_flags(maps)
    if rewrite:
        slot = (sel.lim_gen + 1) & 1
        raw = limits.limits_bytes(lim, os.cpu_count() or 1, flags)
        maps["xs_lim"].typed(UInt(4), Raw(len(raw))).update(slot, raw)
        sel = replace(sel, lim_gen=(sel.lim_gen + 1) & 0xFFFFFFFF)
    return replace(sel, lim_on=int(lim.enabled or limit_rules or bool(flags)))


def switch_limits(maps: Maps, lim: Limits, *, limit_rules: bool) -> None:
    """Make ``lim`` the live limits (one switch of xs_psel), e.g. after
    ``limits set`` or a block added by hand (the block flags follow the
    tables)."""
    if "xs_lim" not in maps:
        raise ConfigError(
            "this shield's program predates rate limits: load it again to use them",
            key="limits",
        )
    _write_selector(maps, _next_limits(maps, selector(maps), lim, limit_rules))


def _delete_keys(groups: Keys) -> None:
    """Delete every key of each (map, keys) group, batched; keys gone
    meanwhile are skipped."""
    by_map: dict[int, tuple[Map[bytes, Any], list[bytes]]] = {}
    for m, ks in groups:
        by_map.setdefault(m.fd, (m, []))[1].extend(ks)
    for m, ks in by_map.values():
        for i in range(0, len(ks), _BATCH):
            chunk = ks[i : i + _BATCH]
            try:
                m.delete_batch(chunk)
            except KeyNotFound:  # some went meanwhile: one by one
                for k in chunk:
                    try:
                        m.delete(k)
                    except KeyNotFound:
                        continue
