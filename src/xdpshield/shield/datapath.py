"""The shield object's maps, constants and reasons, as Python sees them.

This module is the one contract between the BPF object (bpf/) and the rest of
the package: map names, key/value layouts, ``.rodata`` constants and the
verdict reasons. ``shield/core.py`` (Shield) calls only what is here; the rest of the
package goes through Shield.

Layouts mirror bpf/include/shared.h and maps.h:

- ``xs_stats``: per-CPU array, reason -> (packets, bytes).
- ``xs_ports``: one 8 KiB bitmap, bit ``port`` set = protected.
- ``xs_keys``: array of 2 ``struct xs_key`` (16-byte SipHash key, epoch,
  live), slot = epoch & 1. The highest live epoch is the current key, the
  other live slot the previous one. ``live`` is KEY_RECORDED for a key only
  this shield mints with (its rotation's), 1 for one written from outside.
- ``xs_offered``: the cookies offered, a tick byte per hash of a source
  address and ports, and after them the tick from which they are complete;
  ``xs_kern_syn`` the same bytes for the SYNs passed to the kernel.
- ``xs_verified``: LRU hash, source address (IPv4 as ::ffff:a.b.c.d) ->
  (expires_ns on CLOCK_MONOTONIC, budget of new connections).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import ipaddress
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, cast

from xdpshield.ebpf import Map, Raw, StructCodec, UInt, sum_percpu
from xdpshield.errors import ConfigError
from xdpshield.shield import cookie

__all__ = [
    "DEFAULT_KEY_ROTATION_S",
    "META",
    "OPTIONAL_PINS",
    "PIN_MAPS",
    "POLICY_MAPS",
    "PROGRAM_MAPS",
    "SAMPLE_MAPS",
    "CpuState",
    "GuardOptions",
    "Meta",
    "Reason",
    "VerifiedEntry",
    "age_verified",
    "constants",
    "cpu_states",
    "current_epoch",
    "get_ports",
    "init_maps",
    "key_age_s",
    "key_slots",
    "read_stats",
    "rebuild_seen",
    "rotate_keys",
    "set_clock",
    "set_keys",
    "set_listening",
    "set_local_addresses",
    "set_mac",
    "set_ports",
    "verified_sources",
    "write_key_slot",
]

Maps = Mapping[str, Map[Any, Any]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Reason(IntEnum):
    """Mirrors ``enum xs_reason`` in bpf/include/shared.h (a test checks the BTF)."""

    PASS_NON_IP = 0
    MALFORMED = 1
    PASS_UNPROTECTED = 2
    SYN_COOKIE_SENT = 3
    ACK_VALID = 4
    ACK_INVALID = 5
    VERIFIED_PASS = 6
    NOT_VERIFIED = 7
    PASS_FRAGMENT = 8
    NO_KEY = 9
    REPLY_FAILED = 10
    ESTABLISHED_PASS = 11
    HANDOFF = 12
    HANDOFF_FAILED = 13
    HANDOFF_NO_LISTENER = 14
    HANDOFF_BAD_COOKIE = 15
    SYN_EXISTING_SOCKET = 16
    MARTIAN = 17
    BAD_CHECKSUM = 18
    SYN_NO_LISTENER = 19
    SYN_UNDER_THRESHOLD = 20
    STRAY_UNDER_THRESHOLD = 21
    NOT_VERIFIED_RST = 22
    RST_CAPPED = 23
    VLAN_TOO_DEEP = 24
    ALLOW_PASS = 25
    DENY = 26
    TCP_FLAGS = 27
    REFLECTION = 28
    FRAGMENT_UNKNOWN = 29
    ICMP_TYPE = 30
    PROTOCOL = 31
    RULE_DROP = 32
    RULE_PASS = 33
    BLOCKED = 34
    LIMIT_PPS = 35
    LIMIT_BPS = 36
    LIMIT_SYN = 37
    RULE_LIMIT = 38
    CEILING = 39
    GUARD_MISSING = 40
    ACK_SEEN_PASS = 41

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


#: The policy's maps (shield/policy.py writes them).
POLICY_MAPS = (
    "xs_psel",
    "xs_allow4",
    "xs_allow6",
    "xs_deny4",
    "xs_deny6",
    "xs_allow4h",
    "xs_allow6h",
    "xs_deny4h",
    "xs_deny6h",
    "xs_acl_bits",
    "xs_acl_sure",
    "xs_hyg",
    "xs_refl",
    "xs_refl_hint",
    "xs_frag",
    "xs_frag_hint",
    "xs_rule_ports",
    "xs_rule_sport",
    "xs_rules",
    "xs_rules_h",
    "xs_rule_stats",
    "xs_lim",
    "xs_rule_rate",
)

#: The limits' other maps (shield/limits.py): buckets, blocks (state, kept
#: by an unload like the cookie keys), ceilings.
LIMIT_MAPS = ("xs_src", "xs_blocks", "xs_blocks_lpm", "xs_ceil")

#: Drop samples (shield/samples.py): the ring, the caps, the counts.
SAMPLE_MAPS = ("xs_samples", "xs_sample_bkt", "xs_sample_stat")

#: Program arrays: the programs the XDP entry tail-calls. Pinned, as the
#: kernel empties a program array when no file or pin holds it any more,
#: attached or not; never kept across an upgrade (they hold the object's own).
PROGRAM_MAPS = ("xs_progs",)

#: Maps pinned under the shield's directory, so other processes can reopen them
#: (the daemon rotates xs_keys and ages xs_verified through the pins).
PIN_MAPS = (
    "xs_stats",
    "xs_ports",
    "xs_keys",
    "xs_verified",
    "xs_seen",
    "xs_listen",
    "xs_local",
    "xs_ifinfo",
    "xs_cpu",
    "xs_clock",
    "xs_offered",
    "xs_kern_syn",
    *POLICY_MAPS,
    *LIMIT_MAPS,
    *SAMPLE_MAPS,
    *PROGRAM_MAPS,
)
# Pinned since a later version: a shield loaded before it runs without them.
OPTIONAL_PINS = frozenset(
    {
        "xs_seen",
        "xs_listen",
        "xs_local",
        "xs_ifinfo",
        "xs_clock",
        "xs_cpu",
        "xs_offered",
        "xs_kern_syn",
        *POLICY_MAPS,
        *LIMIT_MAPS,
        *SAMPLE_MAPS,
        *PROGRAM_MAPS,
    }
)

#: How often the daemon should call :func:`rotate_keys` unless configured.
DEFAULT_KEY_ROTATION_S = 60.0

_NS = 1_000_000_000
_PORTS = 65536
_KEY = StructCodec("=16sIIQ")  # struct xs_key: k[2], epoch, live, born_s
_VKEY = Raw(16)  # struct xs_vkey: the address, network order
_VERIFIED = StructCodec("=QII")  # struct xs_verified: expires_ns, pad[2]
_COUNTER = StructCodec("=QQ")  # struct xs_counter: packets, bytes
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


#: consts.h XS_WIN_SHIFT: the data path's per-CPU rate windows (134 ms).
WIN_NS = 1 << 27


@dataclass(frozen=True)
class GuardOptions:
    """Settings fixed at load time (most become ``.rodata`` constants).

    ``key_rotation_s`` is not in the object: it tells the daemon how often to
    call :func:`rotate_keys`. ``transparent`` selects the transparent
    handshake (valid handshake ACKs pass to the kernel, the tc program hands
    them over; see shield/core.py), else reset mode. ``timestamps``, ``sack``,
    ``window_scaling`` and ``ecn``: the TCP options the protected stack
    accepts (its ``net.ipv4.tcp_*`` sysctls, see :func:`stack_options`); the
    SYN-ACK offers no other.

    ``mss4`` / ``mss6``: the MSS the SYN-ACK offers; 0 (default) follows the
    interface's MTU (less 40 or 60 bytes), read per packet.
    ``syn_flood_pps``: transparent mode answers SYNs with cookies only while
    a CPU sees at least this many handshake packets per second (SYNs, and
    ACKs that are neither a socket's nor ours), until it sees fewer than half
    as many for ``flood_off_s``; below it the kernel answers, with every
    option it would give. 0: always cookies.
    ``rst_pps``: RSTs the shield may send per CPU and second (reset mode's
    answer to an unverified segment, a SYN to a closed port).
    ``listener_check``: answer SYNs only for ports something listens on,
    where the destination is the host's own. ``verify_csum``: check a SYN's
    checksums before answering it.
    ``fixed_now_ns`` and ``force_nometa`` (act as if the driver gave no XDP
    metadata) are for tests only; ``bench_reverify`` (a verified source's
    handshake ACK is checked and reset again) for the benchmarks.
    """

    debug: bool = False
    verified_ttl_s: float = 300.0
    key_rotation_s: float = DEFAULT_KEY_ROTATION_S
    wscale: int = 7
    mss4: int = 0
    mss6: int = 0
    timestamps: bool = True
    sack: bool = True
    window_scaling: bool = True
    ecn: bool = True
    syn_flood_pps: int = 5000
    flood_off_s: float = 1.0
    rst_pps: int = 100
    listener_check: bool = True
    verify_csum: bool = True
    fixed_now_ns: int = 0
    transparent: bool = False
    force_nometa: bool = False
    bench_reverify: bool = False

    def __post_init__(self) -> None:
        checks = (
            ("verified_ttl_s", 0 < self.verified_ttl_s <= 7 * 86400, "in (0, 604800] seconds"),
            ("key_rotation_s", 1 <= self.key_rotation_s <= 86400, "in [1, 86400] seconds"),
            ("wscale", 0 <= self.wscale <= 14, "in [0, 14] (RFC 7323)"),
            ("mss4", self.mss4 == 0 or 88 <= self.mss4 <= 65495, "0 (from the MTU) or 88-65495"),
            (
                "mss6",
                self.mss6 == 0 or 1220 <= self.mss6 <= 65475,
                "0 (from the MTU) or 1220-65475",
            ),
            ("syn_flood_pps", 0 <= self.syn_flood_pps <= 10**9, "in [0, 10^9] (0: always)"),
            ("flood_off_s", 0.1 <= self.flood_off_s <= 3600, "in [0.1, 3600] seconds"),
            ("rst_pps", 0 <= self.rst_pps <= 10**7, "in [0, 10^7]"),
            ("fixed_now_ns", 0 <= self.fixed_now_ns < 2**64, "in [0, 2^64)"),
        )
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"must be {want}, got {getattr(self, key)!r}", key=key)


def _per_window(per_s: float) -> int:
    """A per-second rate as a count per data-path window (at least 1)."""
    return max(1, round(per_s * WIN_NS / _NS))


def _kernel_config() -> str:
    """The running kernel's build configuration (IKCONFIG, or the distribution's file)."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return f.read()
    except OSError:
        pass
    try:
        return Path(f"/boot/config-{os.uname().release}").read_text()
    except OSError:
        return ""


@functools.cache
def jiffy_ns() -> int:
    """ns per kernel tick (1e9 / CONFIG_HZ), or 0 when the configuration
    cannot be read: the data path then reads its clock through a helper call
    instead of counting jiffies (clock.h)."""
    m = re.search(r"^CONFIG_HZ=(\d+)$", _kernel_config(), re.MULTILINE)
    hz = int(m.group(1)) if m else 0
    return (_NS + hz // 2) // hz if hz > 0 else 0  # the kernel's TICK_NSEC


def constants(opts: GuardOptions, *, local_known: bool = False) -> dict[str, int]:
    """``.rodata`` values for ObjectSpec.set_constants().

    ``local_known``: the caller fills ``xs_local`` (set_local_addresses)
    before attaching, so destinations can be judged local or not.
    """
    flood_on = _per_window(opts.syn_flood_pps) if opts.syn_flood_pps else 0
    return {
        "xs_verified_ttl_ns": int(opts.verified_ttl_s * _NS),
        "xs_wscale": opts.wscale,
        "xs_mss4": opts.mss4,
        "xs_mss6": opts.mss6,
        "xs_fixed_now_ns": opts.fixed_now_ns,
        "xs_jiffy_ns": jiffy_ns(),
        "xs_transparent": int(opts.transparent),
        "xs_force_nometa": int(opts.force_nometa),
        "xs_bench_reverify": int(opts.bench_reverify),
        "xs_server_opts": (
            SRV_TS * opts.timestamps
            | SRV_SACK * opts.sack
            | SRV_WS * opts.window_scaling
            | SRV_ECN * opts.ecn
        ),
        "xs_flood_on": flood_on,
        "xs_flood_off": max(1, flood_on // 2) if flood_on else 0,
        "xs_flood_off_wins": max(1, round(opts.flood_off_s * _NS / WIN_NS)),
        "xs_rst_per_win": _per_window(opts.rst_pps) if opts.rst_pps else 0,
        "xs_local_known": int(local_known),
        "xs_listener_check": int(opts.listener_check),
        "xs_verify_csum": int(opts.verify_csum),
        # Per load: where a source lands in the admission filter is unguessable.
        "xs_admit_seed": int.from_bytes(os.urandom(8), "little"),
    }


SRV_TS, SRV_SACK, SRV_WS, SRV_ECN = 0x1, 0x2, 0x4, 0x8  # consts.h XS_SRV_*
_STACK_SYSCTLS = {
    "timestamps": "net/ipv4/tcp_timestamps",
    "sack": "net/ipv4/tcp_sack",
    "window_scaling": "net/ipv4/tcp_window_scaling",
    "ecn": "net/ipv4/tcp_ecn",
}


def stack_options(proc_sys: str = "/proc/sys") -> dict[str, bool]:
    """The TCP options this namespace's stack has on, as GuardOptions fields.

    The kernel refuses a handed-off connection with an option it has turned
    off, so the shield must not offer it. A sysctl that cannot be read counts
    as the kernel's default (on).
    """
    found: dict[str, bool] = {}
    for field, path in _STACK_SYSCTLS.items():
        try:
            with open(os.path.join(proc_sys, path)) as f:
                found[field] = int(f.read().strip()) != 0
        except (OSError, ValueError):
            found[field] = True
    return found


# -- transparent mode's XDP metadata ---------------------------------------------------
META = StructCodec("=IIHBBI")  # struct xs_meta: tsval, tsecr, mss, opts, snd_wscale, magic
META_MAGIC = 0x78736D31
META_TS, META_SACK, META_WS, META_ECN = 0x01, 0x02, 0x04, 0x08


@dataclass(frozen=True)
class Meta:
    """What XDP hands tc for a verified handshake ACK (``struct xs_meta``)."""

    tsval: int
    tsecr: int
    mss: int
    timestamps: bool
    sack: bool
    wscale: int | None  # the client's, None when it offered none
    ecn: bool

    @classmethod
    def decode(cls, raw: bytes) -> Meta:
        """From the 16 metadata bytes; ValueError when they are not ours."""
        if len(raw) != META.size:
            raise ValueError(f"metadata is {META.size} bytes, got {len(raw)}")
        tsval, tsecr, mss, opts, ws, magic = META.decode(raw)
        if magic != META_MAGIC:
            raise ValueError(f"not xdpshield metadata (magic {magic:#x})")
        return cls(
            tsval=tsval,
            tsecr=tsecr,
            mss=mss,
            timestamps=bool(opts & META_TS),
            sack=bool(opts & META_SACK),
            wscale=ws if opts & META_WS else None,
            ecn=bool(opts & META_ECN),
        )


# -- ports ------------------------------------------------------------------------
def _portset(maps: Maps, name: str) -> Map[int, bytes]:
    """A ``struct xs_portset`` map (xs_ports, xs_listen): bit ``port`` set."""
    return maps[name].typed(UInt(4), Raw(_PORTS // 8))


def _read_portset(maps: Maps, name: str) -> set[int]:
    raw = _portset(maps, name).lookup(0)
    return {i * 8 + b for i, byte in enumerate(raw) if byte for b in range(8) if byte >> b & 1}


def _write_portset(maps: Maps, name: str, ports: Iterable[int], key: str) -> None:
    """One write of the whole bitmap (``key``: the setting a bad port names)."""
    bits = 0
    for port in sorted(set(ports)):  # the smallest bad port is named
        if not 0 <= port < _PORTS:
            raise ConfigError(f"not a TCP port: {port}", key=key)
        bits |= 1 << port
    _portset(maps, name).update(0, bits.to_bytes(_PORTS // 8, "little"))


def get_ports(maps: Maps) -> set[int]:
    return _read_portset(maps, "xs_ports")


def set_ports(maps: Maps, ports: Iterable[int]) -> None:
    """Make the protected set exactly ``ports``.

    One write of the whole bitmap: a port in both the old and the new set
    keeps its bit throughout, so it is never unguarded. Two processes editing
    the set at once can lose one's change (read-modify-write), as with any
    unlocked map.
    """
    _write_portset(maps, "xs_ports", ports, key="ports")


# -- cookie keys ------------------------------------------------------------------
#: ``struct xs_key``'s live for a key no other shield mints with (shared.h).
KEY_RECORDED = 2


def _keys(maps: Maps) -> Map[int, tuple[bytes, int, int, int]]:
    return maps["xs_keys"].typed(UInt(4), _KEY)


def _live_epochs(maps: Maps) -> dict[int, int]:
    """slot -> epoch of the live key slots."""
    m = _keys(maps)
    out: dict[int, int] = {}
    for slot in (0, 1):
        _, epoch, live, _ = m.lookup(slot)
        if live:
            out[slot] = epoch
    return out


def key_age_s(maps: Maps, now_s: float | None = None) -> float | None:
    """Seconds since the current cookie key was written (None before any key)."""
    epoch = current_epoch(maps)
    if epoch is None:
        return None
    born = _keys(maps).lookup(epoch & 1)[3]
    return max(0.0, (time.time() if now_s is None else now_s) - born)


def current_epoch(maps: Maps) -> int | None:
    """Epoch of the current cookie key (None before any key was set)."""
    live = _live_epochs(maps)
    if not live:
        return None
    if len(live) == 1:
        return next(iter(live.values()))
    a, b = live[0], live[1]
    # Serial-number order, as the data path compares them.
    return b if 0 < (b - a) & 0xFFFFFFFF < 0x80000000 else a


def rotate_keys(maps: Maps) -> None:
    """A fresh current key; the current one becomes the previous one.

    The new key (from os.urandom) goes into the slot of the key two epochs
    old, so cookies issued under the current key stay valid for one more
    period. The key is written before its epoch in the value, so a data path
    reading the slot mid-update still sees the old epoch and picks the other
    slot. Only this shield mints with it: it is marked so (KEY_RECORDED),
    and forged ACKs under it are checked against the cookies offered first.
    Keys are never returned, printed or logged.
    """
    epoch = current_epoch(maps)
    new = 0 if epoch is None else (epoch + 1) & 0xFFFFFFFF
    live = KEY_RECORDED if "xs_offered" in maps else 1
    _keys(maps).update(new & 1, (os.urandom(16), new, live, int(time.time())))


def set_keys(maps: Maps, current: bytes, previous: bytes | None = None, epoch: int = 1) -> None:
    """Install known keys (tests, or restoring state): ``current`` at ``epoch``,
    ``previous`` at ``epoch - 1`` (or that slot emptied)."""
    if len(current) != 16 or (previous is not None and len(previous) != 16):
        sizes = f"{len(current)}" + ("" if previous is None else f" and {len(previous)}")
        raise ConfigError(f"cookie keys are 16 bytes, got {sizes}", key="keys")
    epoch &= 0xFFFFFFFF
    m = _keys(maps)
    prev_epoch = (epoch - 1) & 0xFFFFFFFF
    if previous is None:
        m.update(prev_epoch & 1, (b"\0" * 16, prev_epoch, 0, 0))
    else:
        m.update(prev_epoch & 1, (previous, prev_epoch, 1, int(time.time())))
    m.update(epoch & 1, (current, epoch, 1, int(time.time())))


def key_slots(maps: Maps) -> dict[int, tuple[bytes, int]]:
    """slot -> (key, epoch) of the live key slots. For the fleet duty
    (ops/fleet.py), which compares them with the fleet's keys: never print
    or log what this returns."""
    m = _keys(maps)
    out: dict[int, tuple[bytes, int]] = {}
    for slot in (0, 1):
        key, epoch, live, _ = m.lookup(slot)
        if live:
            out[slot] = (key, epoch)
    return out


def write_key_slot(maps: Maps, slot: int, key: bytes, epoch: int) -> None:
    """Write ``key`` into ``slot`` (0 or 1) labelled ``epoch``; live at once.

    The data path mints with the slot whose epoch is newest and checks an
    ACK with the slot its cookie names, whatever that slot's epoch. So a key
    written into the other slot under an *older* epoch is checked but not
    yet minted with (the fleet stages the next key that way on every node
    before any node mints with it); relabelling it with its real epoch
    later makes it the one minted with. Keys are never returned or logged.
    """
    if slot not in (0, 1) or len(key) != 16:
        raise ConfigError(f"key slot {slot}: a slot is 0 or 1 and a key 16 bytes", key="keys")
    _keys(maps).update(slot, (key, epoch & 0xFFFFFFFF, 1, int(time.time())))


# -- verified sources --------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedEntry:
    expires_ns: int


def _verified(maps: Maps) -> Map[bytes, tuple[int, int, int]]:
    return maps["xs_verified"].typed(_VKEY, _VERIFIED)


def _verified_items(maps: Maps) -> list[tuple[bytes, tuple[int, int, int]]]:
    # One syscall per 256 entries; not per-CPU, so every value is one tuple.
    return cast(list[tuple[bytes, tuple[int, int, int]]], _verified(maps).lookup_batch())


def _addr_of(key: bytes) -> Address:
    if key.startswith(_V4_MAPPED):
        return ipaddress.IPv4Address(key[12:])
    return ipaddress.IPv6Address(key)


def vkey(addr: str | Address) -> bytes:
    """The xs_verified key of a source address."""
    ip = ipaddress.ip_address(addr)
    return _V4_MAPPED + ip.packed if ip.version == 4 else ip.packed


def verified_sources(maps: Maps) -> dict[Address, VerifiedEntry]:
    """Every entry of the verified table, expired ones included."""
    out: dict[Address, VerifiedEntry] = {}
    for key, (expires, _, _) in _verified_items(maps):
        out[_addr_of(key)] = VerifiedEntry(expires)
    return out


def age_verified(maps: Maps, now_ns: int) -> int:
    """Remove entries expired at ``now_ns`` (CLOCK_MONOTONIC, as time.monotonic_ns()).

    Returns how many were removed. The data path already ignores expired
    entries; ageing frees their room before the LRU has to.
    """
    m = _verified(maps)
    expired = [k for k, v in _verified_items(maps) if v[0] <= now_ns]
    removed = 0
    for key in expired:
        try:
            m.delete(key)
        except KeyError:  # evicted or removed meanwhile
            continue
        removed += 1
    return removed


# -- sources seen with a socket, cookies offered ---------------------------------------
SEEN_BITS = 20  # consts.h XS_SEEN_BITS
OFFERED_BITS = 19  # consts.h XS_OFFERED_BITS
KERN_SYN_BITS = 16  # consts.h XS_KERN_SYN_BITS
TICK_SET = 0x80  # consts.h XS_TICK_SET: a tick byte once written (both filters)
#: Cookie ticks after a load before its filter of cookies offered is
#: trusted: by then every cookie an earlier object (same keys, kept across a
#: reload or an upgrade) minted has expired (two ticks), with one to spare
#: for the time between the load and the attach or the swap.
OFFERED_AFTER_TICKS = 3


def _fib_hash(addr: str, bits: int, ports: tuple[int, int] | None = None) -> int:
    """A source address hashed as guard.h's xs_src_fold() (XORed with the
    TCP ports' word, as xs_tick_slot() does) and a Fibonacci hash to ``bits``
    bits.

    The data path loads address words raw (network order, read little-endian)
    and XORs an IPv6 address's four; an IPv4-mapped address is the IPv4 one,
    as it arrives on the wire.
    """
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    raw = ip.packed
    a = 0
    for i in range(0, len(raw), 4):
        a ^= int.from_bytes(raw[i : i + 4], "little")
    if ports is not None:
        a ^= int.from_bytes(ports[0].to_bytes(2, "big") + ports[1].to_bytes(2, "big"), "little")
    return ((a * 0x9E3779B1) & 0xFFFFFFFF) >> (32 - bits)


def seen_bit(addr: str) -> int:
    """The bit of ``xs_seen`` for a source address (guard.h xs_seen_word())."""
    return _fib_hash(addr, SEEN_BITS)


def offered_slot(addr: str, sport: int, dport: int) -> int:
    """The tick byte of ``xs_offered`` for a segment's source address and
    ports (guard.h xs_tick_slot()): word ``slot >> 3``, byte ``slot & 7``."""
    return _fib_hash(addr, OFFERED_BITS, (sport, dport))


def kern_syn_slot(addr: str, sport: int, dport: int) -> int:
    """The tick byte of ``xs_kern_syn`` (SYNs the kernel answered) for a
    segment's source address and ports: word ``slot >> 3``, byte ``slot & 7``."""
    return _fib_hash(addr, KERN_SYN_BITS, (sport, dport))


def tick_byte(tick: int) -> int:
    """A tick slot's byte (``xs_offered``, ``xs_kern_syn``) for cookie tick
    ``tick`` (guard.h xs_tick_note())."""
    return TICK_SET | tick & (TICK_SET - 1)


def start_offered(maps: Maps, now_ns: int | None = None) -> int | None:
    """Trust a freshly loaded object's filter of cookies offered only from
    OFFERED_AFTER_TICKS cookie ticks on (``now_ns`` on the cookie clock,
    CLOCK_TAI, default now); returns that tick (None: no such filter)."""
    if "xs_offered" not in maps:
        return None
    now = time.clock_gettime_ns(time.CLOCK_TAI) if now_ns is None else now_ns
    start = (cookie.tick(now) + OFFERED_AFTER_TICKS) & 0xFFFFFFFF or 1
    trust_offered(maps, start)
    return start


def trust_offered(maps: Maps, from_tick: int) -> None:
    """Trust the filter of cookies offered from cookie tick ``from_tick``
    on (0: never; then every forged ACK pays the SipHash)."""
    m = maps["xs_offered"]
    m.typed(UInt(4), UInt(8)).update(m.max_entries - 1, from_tick & 0xFFFFFFFF)


def mark_seen(maps: Maps, addrs: Iterable[str]) -> int:
    """Mark sources as having had a socket here (their SYNs then check for a
    TIME_WAIT first); returns how many words changed.

    Read-modify-write: a bit the data path sets in the same word meanwhile
    can be lost, and is set again by that source's next segment to a socket.
    """
    seen = maps["xs_seen"].typed(UInt(4), UInt(8))
    changed = 0
    for idx, bits in _seen_words(addrs).items():
        old = seen.lookup(idx)
        if old | bits != old:
            seen.update(idx, old | bits)
            changed += 1
    return changed


def _seen_words(addrs: Iterable[str]) -> dict[int, int]:
    words: dict[int, int] = {}
    for addr in addrs:
        h = seen_bit(addr)
        words[h >> 6] = words.get(h >> 6, 0) | 1 << (h & 63)
    return words


def rebuild_seen(maps: Maps, peers: Callable[[], Iterable[str]]) -> tuple[int, int]:
    """Clear ``xs_seen`` down to the peers of the sockets that exist now.

    The data path only ever sets bits, so after enough distinct peers every
    SYN (and, under a flood, every segment) pays the socket lookup.
    ``peers()`` lists them (``socket_peers`` in the shield's namespace). Safe
    against the data path's own marks: bits it set after the first read are
    kept, and a second listing is marked on top, so a source whose mark the
    rewrite lost is marked again if it still has a socket here (a TIME_WAIT
    included), and one with none needs no mark. Returns the bits set before
    and after.
    """
    seen = maps["xs_seen"].typed(UInt(4), UInt(8))
    snapshot = {i: cast(int, w) for i, w in seen.lookup_batch()}
    fresh = _seen_words(peers())
    before = sum(w.bit_count() for w in snapshot.values())
    # Under a flood a source's segments are looked up only if its bit is
    # set: bits the data path set since the snapshot (a handshake handed
    # off meanwhile) are kept, read again just before the write.
    changes: list[tuple[int, int]] = []
    for idx, cur in seen.lookup_batch():
        new = fresh.get(idx, 0) | (cast(int, cur) & ~snapshot.get(idx, 0))
        if new != cur:
            changes.append((idx, new))
    seen.update_batch(changes)
    mark_seen(maps, peers())
    after = sum(cast(int, v).bit_count() for _, v in seen.lookup_batch())
    return before, after


# -- what the data path knows of its host ----------------------------------------------
LOCAL_UNICAST, LOCAL_BROADCAST = 1, 2  # shared.h enum xs_local_kind


def set_listening(maps: Maps, ports: Iterable[int]) -> None:
    """Make ``xs_listen`` exactly these ports (the data path adds a port
    itself when a SYN's lookup finds its listener)."""
    _write_portset(maps, "xs_listen", ports, key="listening")


def get_listening(maps: Maps) -> set[int]:
    return _read_portset(maps, "xs_listen")


def set_local_addresses(maps: Maps, addrs: Mapping[str, int]) -> None:
    """Make ``xs_local`` exactly ``addrs`` (address -> LOCAL_UNICAST or
    LOCAL_BROADCAST): new entries first, then stale ones removed, so an
    address present before and after never goes missing."""
    m = maps["xs_local"].typed(_VKEY, UInt(4))
    want = {vkey(a): kind for a, kind in addrs.items()}
    for key, kind in want.items():
        m.update(key, kind)
    for key in [k for k in list(m.keys()) if k not in want]:
        with contextlib.suppress(KeyError):
            m.delete(key)


def local_addresses(maps: Maps) -> dict[Address, int]:
    m = maps["xs_local"].typed(_VKEY, UInt(4))
    return {_addr_of(k): cast(int, v) for k, v in m.items()}


def clock_offset_ns() -> int:
    """CLOCK_TAI - CLOCK_MONOTONIC now: what turns the data path's clock
    into the wall clock the cookies' ticks are counted on."""
    return time.clock_gettime_ns(time.CLOCK_TAI) - time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def set_clock(maps: Maps, offset_ns: int | None = None) -> None:
    """Write the cookie clock's offset (default: :func:`clock_offset_ns`);
    a shield too old to have ``xs_clock`` counts ticks on its monotonic clock."""
    if "xs_clock" in maps:
        off = clock_offset_ns() if offset_ns is None else offset_ns
        maps["xs_clock"].typed(UInt(4), UInt(8)).update(0, off & 0xFFFFFFFFFFFFFFFF)


def set_mac(maps: Maps, mac: str | None) -> None:
    """The interface's MAC (None: unknown; frames are then judged only by
    the group bit of their destination MAC)."""
    raw = bytes.fromhex(mac.replace(":", "")) if mac else b"\0" * 6
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    maps["xs_ifinfo"].typed(UInt(4), Raw(8)).update(0, raw + (b"\1\0" if mac else b"\0\0"))


@dataclass(frozen=True)
class CpuState:
    """One CPU's view: is a SYN flood on, and how often it began."""

    flood: bool
    floods: int
    last_change_ns: int


_CPU = StructCodec("=QIIIIQQQII16sIIII")  # struct xs_cpu_state (and its caches)
#: Its flood state, at the head of every layout it has had (objects from
#: before the jiffies clock, still running until an upgrade, had no jreads).
_CPU_FLOOD = StructCodec("=QIIIIQQ")


def cpu_states(maps: Maps) -> list[CpuState]:
    """Per CPU: flood mode on or off (transparent mode's SYN threshold)."""
    m = maps["xs_cpu"]
    raw = [_CPU_FLOOD.decode(v) for v in m.typed(UInt(4), Raw(m.value_size)).lookup_percpu(0)]
    return [CpuState(bool(v[2]), v[5], v[6]) for v in raw]


# -- lifecycle and stats ------------------------------------------------------------
def init_maps(maps: Maps, ports: Iterable[int]) -> None:
    """Fill a freshly loaded shield's maps: ports, and a first cookie key."""
    set_ports(maps, ports)
    start_offered(maps)
    if current_epoch(maps) is None:
        rotate_keys(maps)


def read_stats(maps: Maps) -> dict[Reason, tuple[int, int]]:
    """(packets, bytes) per reason, summed over CPUs (a reason newer than
    the running object: zeros)."""
    stats = maps["xs_stats"].typed(UInt(4), _COUNTER)
    out: dict[Reason, tuple[int, int]] = {}
    for reason in Reason:
        if reason >= stats.max_entries:
            out[reason] = (0, 0)
            continue
        pk, by = sum_percpu(stats.lookup_percpu(int(reason)))
        out[reason] = (pk, by)
    return out
