"""The SYN cookie in plain Python: the reference the kernel's must agree with.

Mirrors bpf/include/cookie.h bit for bit, written independently so tests can
build the SYN-ACK the data path should send without trusting the data path:

- :func:`siphash24` is SipHash-2-4 (Aumasson and Bernstein), checked against
  the reference implementation's 64 test vectors.
- The hashed message is ``saddr || daddr || sport || dport || isn`` in network
  order, then the cookie clock's tick (``now_ns >> 36``, 4 bytes,
  little-endian) and the MSS index (one byte): 21 bytes for IPv4, 45 for IPv6.
- The 32-bit cookie holds hash bits 31..4, the tick's parity in bit 3, the
  key slot (``epoch & 1``) in bit 2 and the MSS index in bits 1..0. An ACK is
  checked against the tick of that parity that is now or just before: no
  cookie lives longer than two ticks (137 s).
- The MSS classes are Linux's msstab with the top class the link's own MSS
  (its MTU less 40 or 60 bytes) and every class clipped to it.
- With timestamps, TSval carries the client's window scale, SACK-permitted
  and ECN in its low 6 bits, as Linux's ``cookie_init_timestamp()`` does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MSS_V4",
    "DEFAULT_MSS_V6",
    "TICK_SHIFT",
    "TS_BITS",
    "TS_SHIFT",
    "TsOptions",
    "cookie_message",
    "cookie_valid",
    "decode_tsval",
    "link_mss",
    "make_cookie",
    "mss_index",
    "mss_table",
    "siphash24",
    "split_cookie",
    "tick",
    "ts_options",
    "tsval",
]

_M64 = (1 << 64) - 1

#: MSS assumed when the SYN carries no MSS option (RFC 9293 3.7.1, RFC 8200 5).
DEFAULT_MSS_V4 = 536
DEFAULT_MSS_V6 = 1220

HASH_MASK = 0xFFFFFFF0
TICK_BIT_SHIFT = 3
SLOT_SHIFT = 2
MSS_MASK = 0x3
#: The cookie clock: ns >> 36, a tick of 68.7 s.
TICK_SHIFT = 36
#: In a tick's last AHEAD_NS, a cookie with the next tick's parity is also
#: tried as the next tick's: a clock a little ahead (another node's) minted
#: it.
AHEAD_NS = 1 << 28

#: Low TSval bits that carry options, and their layout.
TS_BITS = 6
TS_WSCALE_NONE = 0xF
TS_SACK = 0x10
TS_ECN = 0x20
MAX_WSCALE = 14
#: TSval clock: nanoseconds >> 20 (a 1.05 ms tick).
TS_SHIFT = 20


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def _round(v: list[int]) -> None:
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & _M64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    v[:] = [v0, v1, v2, v3]


def siphash24(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 of ``msg`` under a 16-byte ``key``, as a 64-bit integer."""
    if len(key) != 16:
        raise ValueError(f"SipHash key must be 16 bytes, got {len(key)}")
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]
    full = len(msg) - len(msg) % 8
    blocks = [int.from_bytes(msg[i : i + 8], "little") for i in range(0, full, 8)]
    blocks.append(int.from_bytes(msg[full:], "little") | (len(msg) & 0xFF) << 56)
    for m in blocks:
        v[3] ^= m
        _round(v)
        _round(v)
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        _round(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _packed(addr: str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"an address is 4 or 16 bytes, got {len(addr)}")
        return addr
    return ipaddress.ip_address(addr).packed


def link_mss(mtu: int, v6: bool) -> int:
    """The MSS a link of this MTU takes (what the SYN-ACK offers)."""
    return min(65535, mtu - (60 if v6 else 40))


def mss_table(v6: bool, link: int) -> tuple[int, int, int, int]:
    """The four MSS classes a cookie can name, on a link of MSS ``link``."""
    v4_third = 1460 if link > 1460 else 1440  # a jumbo link keeps 1460 exact
    table = (1220, 1420, 1440, link) if v6 else (536, 1300, v4_third, link)
    a, b, c, d = (min(m, link) for m in table)
    return a, b, c, d


def mss_index(mss: int | None, v6: bool, link: int) -> int:
    """The MSS class for a client's MSS option (``None``: no option)."""
    if mss is None or mss == 0:  # Linux ignores an MSS option of 0
        mss = DEFAULT_MSS_V6 if v6 else DEFAULT_MSS_V4
    table = mss_table(v6, link)
    idx = 0
    for i, entry in enumerate(table):
        if mss >= entry:
            idx = i
    return idx


Addr = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address


def tick(now_ns: int) -> int:
    """The cookie clock's tick at ``now_ns`` (the data path's clock)."""
    return (now_ns >> TICK_SHIFT) & 0xFFFFFFFF


def cookie_message(
    saddr: Addr, daddr: Addr, sport: int, dport: int, isn: int, tick: int, mss_idx: int
) -> bytes:
    """The bytes hashed for a cookie (the client's SYN: its addresses, ports,
    ISN; the clock tick; the MSS class)."""
    s, d = _packed(saddr), _packed(daddr)
    if len(s) != len(d):
        raise ValueError("saddr and daddr must be of the same family")
    return (
        s
        + d
        + sport.to_bytes(2, "big")
        + dport.to_bytes(2, "big")
        + (isn & 0xFFFFFFFF).to_bytes(4, "big")
        + (tick & 0xFFFFFFFF).to_bytes(4, "little")
        + bytes([mss_idx & MSS_MASK])
    )


def make_cookie(
    key: bytes,
    epoch: int,
    saddr: Addr,
    daddr: Addr,
    sport: int,
    dport: int,
    isn: int,
    mss_idx: int,
    *,
    now_ns: int,
) -> int:
    """The SYN-ACK's sequence number for a client SYN at ``now_ns``, under
    ``key`` of ``epoch``."""
    t = tick(now_ns)
    h = siphash24(key, cookie_message(saddr, daddr, sport, dport, isn, t, mss_idx))
    return (h & HASH_MASK) | (t & 1) << TICK_BIT_SHIFT | (epoch & 1) << SLOT_SHIFT | mss_idx & 3


def split_cookie(cookie: int) -> tuple[int, int]:
    """(key slot, MSS index) carried in a cookie's low bits."""
    return (cookie >> SLOT_SHIFT) & 1, cookie & MSS_MASK


def cookie_valid(
    keys: dict[int, tuple[bytes, int]],
    saddr: Addr,
    daddr: Addr,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    *,
    now_ns: int,
) -> bool:
    """Would the data path accept this handshake ACK at ``now_ns``?

    ``keys`` maps a live slot (0, 1) to its (key, epoch); the ACK carries
    ``seq`` = ISN + 1 and ``ack`` = cookie + 1. The cookie must be of this
    tick or the one before (the one whose parity its bit 3 gives), or, in
    this tick's last AHEAD_NS, of the next.
    """
    cookie = (ack - 1) & 0xFFFFFFFF
    slot, mss_idx = split_cookie(cookie)
    if slot not in keys:
        return False
    key, _ = keys[slot]
    now_tick = tick(now_ns)
    made = (now_tick - ((now_tick ^ (cookie >> TICK_BIT_SHIFT)) & 1)) & 0xFFFFFFFF
    tries = [made]
    if made != now_tick and tick(now_ns + AHEAD_NS) != now_tick:
        tries.append((now_tick + 1) & 0xFFFFFFFF)
    isn = (seq - 1) & 0xFFFFFFFF
    return any(
        (siphash24(key, cookie_message(saddr, daddr, sport, dport, isn, t, mss_idx)) ^ cookie)
        & HASH_MASK
        == 0
        for t in tries
    )


@dataclass(frozen=True)
class TsOptions:
    """What a cookie SYN-ACK's TSval remembers of the client's SYN."""

    wscale: int | None
    sack: bool
    ecn: bool


def ts_options(wscale: int | None, sack: bool, ecn: bool) -> int:
    """The 6 low TSval bits for these client options."""
    bits = TS_WSCALE_NONE if wscale is None else min(wscale, MAX_WSCALE)
    return bits | (TS_SACK if sack else 0) | (TS_ECN if ecn else 0)


def tsval(now_ns: int, opts: int) -> int:
    """TSval of a cookie SYN-ACK sent at ``now_ns``: never ahead of the clock."""
    now = (now_ns >> TS_SHIFT) & 0xFFFFFFFF
    ts = (now & ~((1 << TS_BITS) - 1) & 0xFFFFFFFF) | opts
    ahead = (ts - now) & 0xFFFFFFFF
    if 0 < ahead < 0x80000000:  # (s32)(ts - now) > 0, serial-number order
        ts = (ts - (1 << TS_BITS)) & 0xFFFFFFFF
    return ts


def decode_tsval(ts: int) -> TsOptions:
    ws = ts & TS_WSCALE_NONE
    return TsOptions(None if ws == TS_WSCALE_NONE else ws, bool(ts & TS_SACK), bool(ts & TS_ECN))
