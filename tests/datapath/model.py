"""A Python model of the data path's verdict, and the replies it should send.

Written from the rules of issue 3 (the guard) and of the policy stages, not
from the C: a byte-level parser (no scapy leniency) decides verdict and
reason; the policy stages run in their documented order (allow, deny,
fragments, L4, hygiene, rules) with ``rules.first_match``, the linear
reference, as the rule stage; replies are built with scapy and
``xdpshield.cookie``. The guard tests compare the kernel's reply bytes with
:func:`synack` / :func:`rst`, the differential tests compare every verdict.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet

from xdpshield.ebpf import ObjectSpec
from xdpshield.objects import shield_object
from xdpshield.policy.model import Action, Hygiene, Policy, PrefixList
from xdpshield.policy.rules import first_match
from xdpshield.shield import cookie
from xdpshield.shield.datapath import Reason

OBJ = shield_object()
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
#: Guard options the byte-exact tests load with: a fixed link MSS (the test
#: run's device is the loopback), cookies for every SYN (no flood threshold),
#: no listener lookups (the host's sockets are not the test's) and no RSTs
#: for unverified segments; tests of those features turn them on.
TEST_OPTIONS: dict[str, Any] = {
    "mss4": 1460,
    "mss6": 1440,
    "syn_flood_pps": 0,
    "listener_check": False,
    "rst_pps": 0,
}


def xdp_only(spec: ObjectSpec) -> ObjectSpec:
    """Load the XDP programs alone: the two tc programs take half the
    verifier's time, and a test that runs neither need not wait for it."""
    for name in ("xdpshield_tc", "xdpshield_tc_egress"):
        spec.set_autoload(name, False)
    return spec


TTL = 64
SYNACK_WINDOW = 65535
MAX_L4_OFF = 1024
FIN, SYN, RST, ACK, ECE, CWR = 0x01, 0x02, 0x04, 0x10, 0x40, 0x80


@dataclass
class SynOptions:
    """What a client's SYN offered, as Linux's tcp_parse_options() reads it."""

    mss: int | None = None
    wscale: int | None = None
    sack: bool = False
    ts: int | None = None  # the client's TSval


def parse_tcp_options(opts: bytes) -> SynOptions:
    out = SynOptions()
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 2 > len(opts):
            break
        olen = opts[i + 1]
        if olen < 2 or i + olen > len(opts):
            break
        body = opts[i + 2 : i + olen]
        if kind == 2 and olen == 4:
            mss = int.from_bytes(body, "big")
            if mss:
                out.mss = mss
        elif kind == 3 and olen == 3:
            out.wscale = min(body[0], cookie.MAX_WSCALE)
        elif kind == 4 and olen == 2:
            out.sack = True
        elif kind == 8 and olen == 10:
            out.ts = int.from_bytes(body[:4], "big")
        i += olen
    return out


@dataclass
class Config:
    """The shield's settings and state, as the model needs them."""

    ports: set[int]
    keys: dict[int, tuple[bytes, int]]  # slot -> (key, epoch), live ones only
    now_ns: int
    ttl_ns: int = 300 * 1_000_000_000
    wscale: int = 7
    mss4: int = 1460
    mss6: int = 1440
    verified: dict[bytes, list[int]] = field(default_factory=dict)  # vkey -> [expires]

    def current_key(self) -> tuple[bytes, int] | None:
        if not self.keys:
            return None
        return max(self.keys.values(), key=lambda ke: ke[1])


@dataclass(frozen=True)
class Decision:
    verdict: int
    reason: Reason
    reply: bytes | None = None  # the frame after the program, for XDP_TX
    rule: str | None = None  # the rule that decided (and counts it)


def _drop(reason: Reason) -> Decision:
    return Decision(XDP_DROP, reason)


def _pass(reason: Reason) -> Decision:
    return Decision(XDP_PASS, reason)


def swap_l2(l2: bytes) -> bytes:
    return l2[6:12] + l2[0:6] + l2[12:]


def synack(
    l2: bytes,
    v6: bool,
    saddr: str,
    daddr: str,
    sport: int,
    dport: int,
    isn: int,
    opts: SynOptions,
    ecn: bool,
    key: bytes,
    epoch: int,
    now_ns: int,
    wscale: int = 7,
    mss: int | None = None,
) -> bytes:
    """The cookie SYN-ACK for a client SYN; ``l2`` is the SYN's Ethernet + tags."""
    link = mss or (1440 if v6 else 1460)
    idx = cookie.mss_index(opts.mss, v6, link)
    seq = cookie.make_cookie(key, epoch, saddr, daddr, sport, dport, isn, idx, now_ns=now_ns)
    tcp_opts: list[tuple[str, object]] = [("MSS", link)]
    ecn = ecn and opts.ts is not None  # only TSval can carry it
    if opts.ts is not None:
        ts = cookie.tsval(now_ns, cookie.ts_options(opts.wscale, opts.sack, ecn))
        if opts.sack:
            tcp_opts += [("SAckOK", b"")]
        else:
            tcp_opts += [("NOP", None), ("NOP", None)]
        tcp_opts += [("Timestamp", (ts, opts.ts))]
        if opts.wscale is not None:
            tcp_opts += [("NOP", None), ("WScale", wscale)]
    tcp = TCP(
        sport=dport,
        dport=sport,
        seq=seq,
        ack=(isn + 1) & 0xFFFFFFFF,
        flags="SAE" if ecn else "SA",
        window=SYNACK_WINDOW,
        options=tcp_opts,
    )
    return swap_l2(l2) + bytes(_ip(v6, daddr, saddr) / tcp)


def rst(l2: bytes, v6: bool, saddr: str, daddr: str, sport: int, dport: int, ack: int) -> bytes:
    """Reset mode's answer to a valid handshake ACK (seq taken from its ack)."""
    tcp = TCP(sport=dport, dport=sport, seq=ack, ack=0, flags="R", window=0)
    return swap_l2(l2) + bytes(_ip(v6, daddr, saddr) / tcp)


def _ip(v6: bool, src: str, dst: str) -> Packet:
    if v6:
        return IPv6(src=src, dst=dst, tc=0, fl=0, hlim=TTL)
    return IP(src=src, dst=dst, id=0, flags="DF", ttl=TTL, tos=0)


def vkey(v6: bool, saddr: bytes) -> bytes:
    return saddr if v6 else b"\0" * 10 + b"\xff\xff" + saddr


#: The policy maps before init_policy(): all zero, so no list or rule is
#: looked up and every hygiene check is off (the guard-only data path).
UNSET = Policy(
    hygiene=Hygiene(tcp_flags=False, reflection=False, fragments=False, icmp=False, icmp_pmtu=False)
)
NS = 1_000_000_000
#: IPv6 extension headers the data path walks (the fragment header apart).
EXTHDRS = (0, 43, 60, 51)
MAX_EXTHDR = 6
ICMP6_ND = frozenset(range(133, 138))


@dataclass
class PolicyState:
    """A policy applied at ``applied_ns``, and what the data path remembers
    under it (both written by the caller that set the kernel up alike)."""

    policy: Policy = UNSET
    applied_ns: int = 0
    #: Datagrams whose first fragment passed: (src, dst, id, proto) -> expires_ns,
    #: addresses as 16 bytes (IPv4 mapped).
    opened: dict[tuple[bytes, bytes, int, int], int] = field(default_factory=dict)
    #: Requests this host sent (the tc egress notes): (peer, peer port, local
    #: port) -> expires_ns, the peer as 16 bytes.
    requests: dict[tuple[bytes, int, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Parsed:
    """An IP packet up to its L4 header."""

    v6: bool
    l3off: int
    saddr: bytes
    daddr: bytes
    proto: int  # the upper layer (a non-first fragment's: its fragment header's next)
    l4off: int
    l4len: int
    nonfirst: bool
    first_frag: bool
    #: (id, proto) of the fragmented datagram: IPv4's id and protocol, IPv6's
    #: identification and the fragment header's next header (what every
    #: fragment of the datagram carries alike).
    datagram: tuple[int, int] | None


def parse(frame: bytes) -> Decision | Parsed:
    """Ethernet, VLAN tags and IP (the first stage): a Decision when it ends here."""
    n = len(frame)
    if n < 14:
        return _drop(Reason.MALFORMED)
    proto = int.from_bytes(frame[12:14], "big")
    off = 14
    for _ in range(2):
        if proto not in (0x8100, 0x88A8):
            break
        if off + 4 > n:
            return _drop(Reason.MALFORMED)
        proto = int.from_bytes(frame[off + 2 : off + 4], "big")
        off += 4
    if proto in (0x8100, 0x88A8):
        return _drop(Reason.VLAN_TOO_DEEP)
    l3off = off
    first_frag = nonfirst = False
    datagram: tuple[int, int] | None = None
    if proto == 0x0800:
        if off + 20 > n:
            return _drop(Reason.MALFORMED)
        ver, ihl = frame[off] >> 4, frame[off] & 0xF
        if ver != 4 or ihl < 5:
            return _drop(Reason.MALFORMED)
        tot = int.from_bytes(frame[off + 2 : off + 4], "big")
        if tot < ihl * 4 or off + tot > n:
            return _drop(Reason.MALFORMED)
        frag = int.from_bytes(frame[off + 6 : off + 8], "big")
        nonfirst = bool(frag & 0x1FFF)
        first_frag = not nonfirst and bool(frag & 0x2000)
        l4proto, l4off, l4len = frame[off + 9], off + ihl * 4, tot - ihl * 4
        v6 = False
        saddr, daddr = frame[off + 12 : off + 16], frame[off + 16 : off + 20]
        if nonfirst or first_frag:
            datagram = (int.from_bytes(frame[off + 4 : off + 6], "big"), l4proto)
    elif proto == 0x86DD:
        if off + 40 > n or frame[off] >> 4 != 6:
            return _drop(Reason.MALFORMED)
        plen = int.from_bytes(frame[off + 4 : off + 6], "big")
        if off + 40 + plen > n:
            return _drop(Reason.MALFORMED)
        nh, pos = frame[off + 6], off + 40
        saddr, daddr = frame[off + 8 : off + 24], frame[off + 24 : off + 40]
        v6 = True
        for _ in range(MAX_EXTHDR + 1):  # the extension headers, then the upper layer
            if nh in EXTHDRS:
                if pos + 8 > n or plen < 8:
                    return _drop(Reason.MALFORMED)
                hl = (frame[pos + 1] + 2) * 4 if nh == 51 else (frame[pos + 1] + 1) * 8
                if hl > plen:
                    return _drop(Reason.MALFORMED)
                nh, pos, plen = frame[pos], pos + hl, plen - hl
            elif nh == 44:
                if pos + 8 > n or plen < 8:
                    return _drop(Reason.MALFORMED)
                fo = int.from_bytes(frame[pos + 2 : pos + 4], "big")
                ident = int.from_bytes(frame[pos + 4 : pos + 8], "big")
                nh, pos, plen = frame[pos], pos + 8, plen - 8
                if fo & 0xFFF8:
                    nonfirst = True
                    datagram = (ident, nh)
                    break
                if fo & 1 and not first_frag:
                    # The outer header names the datagram (the one reassembled first).
                    first_frag = True
                    datagram = (ident, nh)
            else:
                break
        else:
            return _drop(Reason.MALFORMED)
        l4proto, l4off, l4len = nh, pos, plen
    else:
        return _pass(Reason.PASS_NON_IP)
    if l4off > MAX_L4_OFF:  # the data path reads L4 only this far in
        return _drop(Reason.MALFORMED)
    return Parsed(v6, l3off, saddr, daddr, l4proto, l4off, l4len, nonfirst, first_frag, datagram)


def decide(frame: bytes, cfg: Config, pol: PolicyState | None = None) -> Decision:
    """The verdict the data path should give ``frame`` under the policy
    ``pol`` (None: no policy written, the guard alone); updates
    ``cfg.verified`` and ``pol.opened``."""
    pkt = parse(frame)
    if isinstance(pkt, Decision):
        return pkt
    pol = pol or PolicyState()
    d = _stages(frame, pkt, cfg, pol)
    if pkt.first_frag and pkt.datagram and d.verdict == XDP_PASS:
        h = pol.policy.hygiene
        pol.opened[_datagram_key(pkt)] = cfg.now_ns + int(h.fragment_window_s * NS)
    return d


def _datagram_key(pkt: Parsed) -> tuple[bytes, bytes, int, int]:
    assert pkt.datagram is not None
    return (vkey(pkt.v6, pkt.saddr), vkey(pkt.v6, pkt.daddr), *pkt.datagram)


#: Prefix lengths per list and family held in the hash tier (README: the
#: four most common at an apply, ties to the longest).
HASH_TIERS = 4


def hashed_lengths(entries: PrefixList, v6: bool) -> set[int]:
    counts: dict[int, int] = {}
    for p in entries:
        if (p.version == 6) == v6:
            counts[p.plen] = counts.get(p.plen, 0) + 1
    return set(sorted(counts, key=lambda n: (-counts[n], -n))[:HASH_TIERS])


def listed(entries: PrefixList, v6: bool, saddr: bytes, applied_ns: int, now_ns: int) -> bool:
    """A live entry of a hashed length holds ``saddr``, or the longest entry
    of the other lengths that holds it is live. (There an expired one still
    hides a shorter live one: the trie answers with the longest match only;
    the daemon deletes expired entries.)"""
    addr = int.from_bytes(saddr, "big")
    bits = 128 if v6 else 32
    hashed = hashed_lengths(entries, v6)

    def live(ttl: float | None) -> bool:
        return ttl is None or applied_ns + int(ttl * NS) > now_ns

    best: tuple[int, float | None] | None = None
    for p, ttl in entries.items():
        if (p.version == 6) != v6:
            continue
        if addr >> (bits - p.plen) != int.from_bytes(p.addr, "big") >> (bits - p.plen):
            continue
        if p.plen in hashed:
            if live(ttl):
                return True
        elif best is None or p.plen > best[0]:
            best = (p.plen, ttl)
    return best is not None and live(best[1])


def _stages(frame: bytes, pkt: Parsed, cfg: Config, pol: PolicyState) -> Decision:
    """The policy stages in order, then the guard."""
    n, now, policy = len(frame), cfg.now_ns, pol.policy
    h = policy.hygiene
    if listed(policy.allow, pkt.v6, pkt.saddr, pol.applied_ns, now):
        return _pass(Reason.ALLOW_PASS)
    if listed(policy.deny, pkt.v6, pkt.saddr, pol.applied_ns, now):
        return _drop(Reason.DENY)
    if pkt.nonfirst:
        if not h.fragments or pol.opened.get(_datagram_key(pkt), 0) > now:
            return _pass(Reason.PASS_FRAGMENT)
        return _drop(Reason.FRAGMENT_UNKNOWN)
    proto, l4off, l4len = pkt.proto, pkt.l4off, pkt.l4len
    sport = dport = flags = code = 0
    if proto == 6:
        if l4off + 20 > n or l4len < 20:
            return _drop(Reason.MALFORMED)
        doff = frame[l4off + 12] >> 4
        if doff < 5 or doff * 4 > l4len:
            return _drop(Reason.MALFORMED)
        sport, dport = struct.unpack_from("!HH", frame, l4off)
        flags = frame[l4off + 13]
        if h.tcp_flags and tcp_flags_bad(flags):
            return _drop(Reason.TCP_FLAGS)
    elif proto == 17:
        if l4off + 8 > n or l4len < 8:
            return _drop(Reason.MALFORMED)
        sport, dport, ulen = struct.unpack_from("!HHH", frame, l4off)
        if ulen < 8 or (ulen > l4len and not pkt.first_frag):
            return _drop(Reason.MALFORMED)
        if h.reflection and sport in h.reflection_ports:
            asked = pol.requests.get((vkey(pkt.v6, pkt.saddr), sport, dport), 0)
            if asked <= now:
                return _drop(Reason.REFLECTION)
    elif proto in (1, 58):
        if l4off + 8 > n or l4len < 8:
            return _drop(Reason.MALFORMED)
        dport, code = frame[l4off], frame[l4off + 1]  # the type stands for the port
        if h.icmp and dport not in icmp_allowed(h, proto):
            return _drop(Reason.ICMP_TYPE)
    elif proto in h.protocols_drop:
        return _drop(Reason.PROTOCOL)
    rule = first_match(policy.rules, proto, pkt.saddr, dport, sport, flags, code)
    if rule is not None:
        if rule.action == Action.DROP:
            return Decision(XDP_DROP, Reason.RULE_DROP, rule=rule.name)
        return Decision(XDP_PASS, Reason.RULE_PASS, rule=rule.name)
    if proto == 6 and dport in cfg.ports:
        th = frame[l4off : l4off + (frame[l4off + 12] >> 4) * 4]
        sane = _kernel_would_answer(frame, pkt.l3off, l4off, l4len, pkt.v6)
        return _guard(frame[: pkt.l3off], pkt.v6, pkt.saddr, pkt.daddr, th, cfg, sane)
    return _pass(Reason.PASS_UNPROTECTED)


def tcp_flags_bad(f: int) -> bool:
    """No flag at all among FIN SYN RST PSH ACK URG, SYN+FIN, SYN+RST, FIN+PSH+URG."""
    fin, syn, rst_, psh, ack, urg = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
    return (
        not f & (fin | syn | rst_ | psh | ack | urg)
        or f & (syn | fin) == syn | fin
        or f & (syn | rst_) == syn | rst_
        or f & (fin | psh | urg) == fin | psh | urg
    )


def icmp_allowed(h: Hygiene, proto: int) -> frozenset[int]:
    """The ICMP (1) or ICMPv6 (58) types that pass the hygiene check."""
    if proto == 1:
        return h.icmp_types | ({3} if h.icmp_pmtu else set())
    return h.icmpv6_types | ICMP6_ND | ({2} if h.icmp_pmtu else set())


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _martian4(s: bytes, d: bytes) -> bool:
    si, di = int.from_bytes(s, "big"), int.from_bytes(d, "big")
    bad_src = s[0] in (0, 127) or s[0] >> 4 == 0xE or si == 0xFFFFFFFF
    bad_dst = d[0] in (0, 127) or di >= 0xE0000000
    return bad_src or bad_dst or s == d


def _martian6(s: bytes, d: bytes) -> bool:
    def special(a: bytes) -> bool:
        ip = ipaddress.IPv6Address(a)
        return ip.is_multicast or ip.is_loopback or ip.is_unspecified or ip.ipv4_mapped is not None

    return special(s) or special(d) or s == d


def _kernel_would_answer(
    frame: bytes, l3off: int, l4off: int, l4len: int, v6: bool
) -> Reason | None:
    """Why the kernel would drop a SYN unanswered (martian, bad checksum), or None."""
    if frame[0] & 1:  # a group MAC address
        return Reason.MARTIAN
    if v6:
        s, d = frame[l3off + 8 : l3off + 24], frame[l3off + 24 : l3off + 40]
        if _martian6(s, d):
            return Reason.MARTIAN
        pseudo = s + d + l4len.to_bytes(4, "big") + b"\0\0\0\x06"
    else:
        s, d = frame[l3off + 12 : l3off + 16], frame[l3off + 16 : l3off + 20]
        if _martian4(s, d):
            return Reason.MARTIAN
        ihl = (frame[l3off] & 0xF) * 4
        if _csum(frame[l3off : l3off + ihl]) != 0xFFFF:
            return Reason.BAD_CHECKSUM
        pseudo = s + d + b"\0\x06" + l4len.to_bytes(2, "big")
    field = int.from_bytes(frame[l4off + 16 : l4off + 18], "big")
    offloaded = field == _csum(pseudo)  # CHECKSUM_PARTIAL: the pseudo-header sum only
    if l4len <= 1500 and not offloaded and _csum(pseudo + frame[l4off : l4off + l4len]) != 0xFFFF:
        return Reason.BAD_CHECKSUM
    return None


def _guard(
    l2: bytes, v6: bool, saddr: bytes, daddr: bytes, th: bytes, cfg: Config, sane: Reason | None
) -> Decision:
    """Reset mode, no RSTs for unverified segments (the tests set no RST budget)."""
    sport, dport, seq, ack = struct.unpack_from("!HHII", th)
    tcpflags = th[13]
    flags = tcpflags & (SYN | ACK | RST | FIN)
    s = str(ipaddress.ip_address(saddr))
    d = str(ipaddress.ip_address(daddr))
    vk = vkey(v6, saddr)
    entry = cfg.verified.get(vk)
    if entry is not None and entry[0] <= cfg.now_ns:
        entry = None

    if entry is not None:
        if entry[0] < cfg.now_ns + cfg.ttl_ns // 2:
            entry[0] = cfg.now_ns + cfg.ttl_ns
        return _pass(Reason.VERIFIED_PASS)
    if flags == SYN:
        if sane is not None:
            return _drop(sane)
        cur = cfg.current_key()
        if cur is None:
            return _drop(Reason.NO_KEY)
        opts = parse_tcp_options(th[20:])
        ecn = tcpflags & (ECE | CWR) == ECE | CWR
        mss = cfg.mss6 if v6 else cfg.mss4
        reply = synack(
            l2, v6, s, d, sport, dport, seq, opts, ecn, *cur, cfg.now_ns, cfg.wscale, mss
        )
        return Decision(XDP_TX, Reason.SYN_COOKIE_SENT, reply)
    if flags == ACK:
        if not cookie.cookie_valid(cfg.keys, s, d, sport, dport, seq, ack, now_ns=cfg.now_ns):
            return _drop(Reason.ACK_INVALID)
        cfg.verified[vk] = [cfg.now_ns + cfg.ttl_ns]
        return Decision(XDP_TX, Reason.ACK_VALID, rst(l2, v6, s, d, sport, dport, ack))
    return _drop(Reason.NOT_VERIFIED)
