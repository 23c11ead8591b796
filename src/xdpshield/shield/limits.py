"""Limits in a shield's maps: the settings' encoding, blocks, tracked sources.

Layouts mirror bpf/include/shared.h (struct xs_rate, xs_limits, xs_src_key,
xs_src, xs_block, xs_block_lpm); tests/unit/test_mirrors.py checks them
against the object's BTF. The data path is bpf/include/limits.h.

Buckets are GCRA (one arrival time each): a rate of N per second is a cost
of 10^9 // N ns per packet and a depth of burst * cost ns. Bytes: the cost
per byte is kept in 1/256 ns so a fast rate keeps its precision.

Blocks: the data path blocks a source cut to the limits' prefix, in
``xs_blocks``; blocks added by hand (any prefix length) go to
``xs_blocks_lpm``. An expired automatic block stays in the table for the
repeat window (its time doubles on a repeat), then :func:`expire_blocks`
removes it; a block by hand goes once expired.

The switch of the settings (a slot of ``xs_lim`` and ``xs_psel.lim_gen``)
is shield/policy.py's: it is part of the policy's one atomic switch.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from xdpshield.ebpf import Map, Raw, UInt
from xdpshield.errors import KeyNotFound
from xdpshield.policy.model import LIMIT_PROTOCOLS, Limits, Prefix
from xdpshield.policy.rules import SLOTS
from xdpshield.shield.datapath import Reason

__all__ = [
    "BLOCK_MANUAL",
    "LIM_BLOCKS",
    "LIM_BLOCKS_LPM",
    "LIM_SOURCES",
    "REASONS",
    "Block",
    "Source",
    "add_blocks",
    "block_flags",
    "bps_rate",
    "ceiling_rate",
    "del_blocks",
    "expire_blocks",
    "limits_bytes",
    "limits_from_json",
    "list_blocks",
    "pps_rate",
    "tracked_sources",
]

Maps = Mapping[str, Map[Any, Any]]

NS = 1_000_000_000
BPS_SHIFT = 8  # struct xs_limits.bps.cost: ns per byte << 8
BPS_MIN_DEPTH = 65536  # bytes: the bps bucket holds one second, at least this
LIM_BLOCKS, LIM_BLOCKS_LPM, LIM_SOURCES = 0x1, 0x2, 0x4  # consts.h XS_LIM_*
BLOCK_MANUAL = 0x1  # consts.h XS_BLOCK_MANUAL
ADMIT_SLOTS, ADMIT_SHIFT, ADMIT_WIN, ADMIT_REFRESH = 1 << 16, 20, 954, 64  # consts.h XS_ADMIT_*

#: The verdicts of the limits stage (all drops).
REASONS = (
    Reason.BLOCKED,
    Reason.LIMIT_PPS,
    Reason.LIMIT_BPS,
    Reason.LIMIT_SYN,
    Reason.RULE_LIMIT,
    Reason.CEILING,
)

_RATE = struct.Struct("=QQ")  # struct xs_rate: cost, depth
# struct xs_limits: flags, plen4, plen6, epoch; pps, bps, syn; block_after, ttl,
# max, repeat; ceil[SLOTS]
_LIMITS = struct.Struct(f"=4I6Q4Q{2 * SLOTS}Q")
_SRC_KEY = struct.Struct("=16sHBB")  # struct xs_src_key: addr, rule, plen, pad
_SRC = struct.Struct("=5Q")  # struct xs_src
_BLOCK = struct.Struct("=4QII")  # struct xs_block: expires, ttl, since, drops, count, flags
_BLOCK_LPM = struct.Struct("=I16s")  # struct xs_block_lpm: prefixlen, addr
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
_BATCH = 4096


def pps_rate(per_s: int, burst: int | None = None) -> tuple[int, int]:
    """(cost, depth) of a bucket of ``per_s`` packets per second holding
    ``burst`` packets (None: one second's worth)."""
    cost = max(1, NS // per_s)
    return cost, (burst if burst is not None else per_s) * cost


def bps_rate(bytes_per_s: int) -> tuple[int, int]:
    """(cost per byte << 8, depth in ns) of a bucket of ``bytes_per_s``
    holding one second of bytes, at least :data:`BPS_MIN_DEPTH`."""
    cost = max(1, (NS << BPS_SHIFT) // bytes_per_s)
    return cost, (max(bytes_per_s, BPS_MIN_DEPTH) * cost) >> BPS_SHIFT


def ceiling_rate(per_s: int, ncpus: int) -> tuple[int, int]:
    """A global ceiling's per-CPU bucket: each CPU gets an equal share of
    ``per_s`` and may burst one second of its share."""
    cost = max(1, NS * ncpus // per_s)
    return cost, max(cost, NS)


def limits_bytes(lim: Limits, ncpus: int, flags: int) -> bytes:
    """``struct xs_limits`` for ``lim`` (``flags``: :func:`block_flags`)."""
    off = (0, 0)
    pps = pps_rate(lim.pps, lim.burst) if lim.pps else off
    bps = bps_rate(lim.bps) if lim.bps else off
    syn = pps_rate(lim.syn_pps, lim.burst) if lim.syn_pps else off
    ceil = dict(lim.ceilings)
    ceilings = [
        ceiling_rate(ceil[p], ncpus) if ceil.get(p) else off for p in LIMIT_PROTOCOLS[:SLOTS]
    ]
    if lim.block_after is not None:
        flags |= LIM_BLOCKS
    if lim.pps or lim.bps or lim.syn_pps or lim.block_after is not None:
        flags |= LIM_SOURCES
    return _LIMITS.pack(
        flags,
        lim.prefix4,
        lim.prefix6,
        0,
        *pps,
        *bps,
        *syn,
        round((lim.block_after or 0) * NS),
        round(lim.block_ttl * NS),
        round(lim.block_max_ttl * NS),
        round(lim.block_repeat * NS),
        *(v for c in ceilings for v in c),
    )


def limits_from_json(d: Mapping[str, Any]) -> Limits:
    """A :class:`Limits` from :meth:`Limits.as_json` (a policy record)."""
    kw = dict(d)
    kw["ceilings"] = tuple(sorted(dict(kw.get("ceilings") or {}).items()))
    return Limits(**kw)


def _nonempty(m: Map[Any, Any]) -> bool:
    return next(iter(m.keys()), None) is not None


def block_flags(maps: Maps) -> int:
    """The XS_LIM_BLOCKS* flags the tables' contents need."""
    flags = LIM_BLOCKS if _nonempty(maps["xs_blocks"]) else 0
    return flags | (LIM_BLOCKS_LPM if _nonempty(maps["xs_blocks_lpm"]) else 0)


# -- blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One block: the blocked prefix and its times (CLOCK_MONOTONIC ns)."""

    prefix: Prefix
    expires_ns: int
    ttl_ns: int
    since_ns: int
    drops: int
    count: int  # blocks in a row: 2 means its time was doubled once
    manual: bool

    def active(self, now_ns: int) -> bool:
        return self.expires_ns > now_ns

    def remaining_s(self, now_ns: int) -> float:
        return max(0.0, (self.expires_ns - now_ns) / NS)

    def as_json(self, now_ns: int) -> dict[str, Any]:
        return {
            "prefix": str(self.prefix),
            "expires_in_s": round(self.remaining_s(now_ns), 3),
            "ttl_s": self.ttl_ns / NS,
            "since_s_ago": round(max(0, now_ns - self.since_ns) / NS, 3),
            "drops": self.drops,
            "count": self.count,
            "by": "hand" if self.manual else "limit",
            "active": self.active(now_ns),
        }


def _prefix(addr16: bytes, plen128: int) -> Prefix:
    if addr16[:12] == _V4_MAPPED and plen128 >= 96:
        return Prefix(4, addr16[12:], plen128 - 96)
    return Prefix(6, addr16, plen128)


def _addr16(p: Prefix) -> tuple[bytes, int]:
    """The prefix as the tables key it: IPv4 mapped into 128 bits."""
    if p.version == 4:
        return _V4_MAPPED + p.addr, 96 + p.plen
    return p.addr, p.plen


def _raw(m: Map[Any, Any]) -> Map[bytes, bytes]:
    return m.typed(Raw(m.key_size), Raw(m.value_size))


def _block_of(prefix: Prefix, raw: bytes) -> Block:
    exp, ttl, since, drops, count, flags = _BLOCK.unpack(raw)
    return Block(prefix, exp, ttl, since, drops, count, bool(flags & BLOCK_MANUAL))


def _entries(maps: Maps) -> list[tuple[Map[bytes, bytes], bytes, Block]]:
    out: list[tuple[Map[bytes, bytes], bytes, Block]] = []
    hashed = _raw(maps["xs_blocks"])
    for k, v in hashed.lookup_batch(_BATCH):
        addr, _, plen, _ = _SRC_KEY.unpack(k)
        out.append((hashed, k, _block_of(_prefix(addr, plen), cast(bytes, v))))
    trie = _raw(maps["xs_blocks_lpm"])
    for k, v in trie.lookup_batch(_BATCH):
        plen, addr = _BLOCK_LPM.unpack(k)
        out.append((trie, k, _block_of(_prefix(addr, plen), cast(bytes, v))))
    return out


def list_blocks(maps: Maps, *, now_ns: int | None = None, expired: bool = False) -> list[Block]:
    """The blocks in force (``expired``: also those kept for their repeat
    window), longest-lived first."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    blocks = [b for _, _, b in _entries(maps) if expired or b.active(now)]
    return sorted(blocks, key=lambda b: (-b.expires_ns, str(b.prefix)))


def add_blocks(maps: Maps, prefixes: Mapping[Prefix, float], *, now_ns: int | None = None) -> int:
    """Block each prefix for its seconds (by hand: no doubling); an existing
    block by hand is replaced. Returns how many were added."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    trie = _raw(maps["xs_blocks_lpm"])
    for p, ttl_s in prefixes.items():
        addr, plen = _addr16(p)
        ttl = round(ttl_s * NS)
        trie.update(
            _BLOCK_LPM.pack(plen, addr), _BLOCK.pack(now + ttl, ttl, now, 0, 1, BLOCK_MANUAL)
        )
    return len(prefixes)


def del_blocks(maps: Maps, prefixes: Iterable[Prefix]) -> int:
    """Unblock these prefixes (by hand or automatic); returns how many were.
    The next packet from them is judged anew: the data path's per-CPU drop
    caches (struct xs_dc) forget every block."""
    wanted = set(prefixes)
    n = 0
    for m, k, b in _entries(maps):
        if b.prefix in wanted:
            try:
                m.delete(k)
            except KeyNotFound:
                continue
            n += 1
    if n:
        _new_epoch(maps)
    return n


def _new_epoch(maps: Maps) -> None:
    """Bump struct xs_limits.epoch in both slots (the live one and the
    spare, so a switch meanwhile keeps it): what each CPU's drop cache
    holds is stale."""
    m = maps["xs_lim"]
    slots = m.typed(UInt(4), Raw(m.value_size))
    for slot in (0, 1):
        fields = list(_LIMITS.unpack(slots.lookup(slot)))
        fields[3] = (fields[3] + 1) & 0xFFFFFFFF
        slots.update(slot, _LIMITS.pack(*fields))


def expire_blocks(
    maps: Maps, repeat_s: float, *, now_ns: int | None = None
) -> tuple[list[Block], list[Block]]:
    """Remove what no longer counts: blocks by hand once expired, automatic
    ones once past their repeat window. Returns (in force, removed)."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    repeat = round(repeat_s * NS)
    live: list[Block] = []
    gone: list[Block] = []
    for m, k, b in _entries(maps):
        if b.active(now):
            live.append(b)
            continue
        if not b.manual and now - b.expires_ns <= repeat:
            continue
        try:
            m.delete(k)
        except KeyNotFound:
            continue
        gone.append(b)
    return live, gone


# -- sources --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A tracked source's buckets (how far in debt each is, in ns) and its excess."""

    prefix: Prefix
    rule: int | None  # a limit rule's id, or None: the source's own buckets
    debt_ns: tuple[int, int, int]  # pps, bps, syn
    over_since_ns: int


def tracked_sources(maps: Maps, *, now_ns: int | None = None) -> list[Source]:
    """The sources with state (admitted: they sent twice within ~1 s)."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    out: list[Source] = []
    for k, v in _raw(maps["xs_src"]).lookup_batch(_BATCH):
        addr, rule, plen, _ = _SRC_KEY.unpack(k)
        tats = _SRC.unpack(cast(bytes, v))
        debt = (max(0, tats[0] - now), max(0, tats[1] - now), max(0, tats[2] - now))
        out.append(Source(_prefix(addr, plen), rule - 1 if rule else None, debt, tats[3]))
    return out
