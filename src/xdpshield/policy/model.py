"""What a policy is, as plain values: the one interface between the config
file (config.py), the rule compiler (rules.py) and the shield that writes
them to its maps (shield/policy.py). Nothing here touches the kernel.

Semantics, in the data path's order (see bpf/xdpshield.bpf.c):

1. ``allow``: a source in one of these prefixes skips every later stage.
2. ``deny``: a source in one of these prefixes is dropped.
3. ``hygiene``: protocol checks (:class:`Hygiene`), each switchable.
   (A blocked source, :class:`Limits`, is dropped right after ``allow``.)
4. ``rules``: the first rule (in file order) that matches decides; a rule
   matches when every field it sets matches (a field holding several values
   matches any of them); ``pass`` hands the packet to the kernel (no TCP
   guard), ``drop`` drops it, ``limit`` drops it when its source is over
   the rule's own rate and otherwise lets it go on.
5. ``limits``: per-source token buckets, then the global ceilings.
6. The TCP guard on the protected ports.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = [
    "DEFAULT_ICMP6_TYPES",
    "DEFAULT_ICMP_TYPES",
    "DEFAULT_REFLECTION_PORTS",
    "ICMP6_ND_TYPES",
    "ICMP6_PTB",
    "ICMP_UNREACH",
    "LIMIT_PROTOCOLS",
    "PROTO_ICMP",
    "PROTO_ICMPV6",
    "PROTO_TCP",
    "PROTO_UDP",
    "TCP_FLAGS",
    "Action",
    "Config",
    "FleetConfig",
    "Hygiene",
    "InterfaceConfig",
    "Limits",
    "MetricsConfig",
    "Network",
    "Policy",
    "Prefix",
    "PrefixList",
    "Rule",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

#: TCP flag bits by name, as in the header's 13th byte.
TCP_FLAGS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08,
             "ACK": 0x10, "URG": 0x20, "ECE": 0x40, "CWR": 0x80}  # fmt: skip

#: UDP source ports of the amplification attacks seen in the wild: chargen,
#: DNS, portmap, NTP, NetBIOS, SNMP, CLDAP, SSDP, WS-Discovery, ARD, memcached
#: and others (US-CERT TA14-017A and its successors).
DEFAULT_REFLECTION_PORTS = (
    19, 53, 111, 123, 137, 161, 389, 520, 1900, 3283, 3702, 5353, 10001, 11211,
)  # fmt: skip

#: ICMP types that pass by default: echo reply/request, destination
#: unreachable (its code 4 is path MTU discovery), time exceeded (traceroute),
#: parameter problem.
DEFAULT_ICMP_TYPES = frozenset({0, 3, 8, 11, 12})
ICMP_UNREACH = 3
#: ICMPv6: destination unreachable, packet too big, time exceeded, parameter
#: problem, echo request/reply, multicast listener query/report/done (MLD)
#: and MLDv2 reports.
DEFAULT_ICMP6_TYPES = frozenset({1, 2, 3, 4, 128, 129, 130, 131, 132, 143})
ICMP6_PTB = 2
#: Neighbour discovery (router/neighbour solicitation and advertisement,
#: redirect): always passes, whatever the config says; IPv6 dies without it.
ICMP6_ND_TYPES = frozenset({133, 134, 135, 136, 137})


class Action(StrEnum):
    DROP = "drop"
    PASS = "pass"
    LIMIT = "limit"


class Prefix(NamedTuple):
    """An IPv4 or IPv6 prefix, host bits clear. A tuple, not an
    ``ipaddress`` network: a list of a million must parse and pack in well
    under a second (cidr.py makes them)."""

    version: int  # 4 or 6
    addr: bytes  # packed, 4 or 16 bytes
    plen: int

    @property
    def network(self) -> Network:
        return ipaddress.ip_network((self.addr, self.plen))

    def __str__(self) -> str:
        family = socket.AF_INET if self.version == 4 else socket.AF_INET6
        return f"{socket.inet_ntop(family, self.addr)}/{self.plen}"


#: An allow or deny list: prefix -> seconds it lives once applied (None: until
#: removed).
PrefixList = dict[Prefix, float | None]


@dataclass(frozen=True)
class Hygiene:
    """Protocol checks that need no list: each one switchable, all on by default."""

    #: Drop TCP with no flags, SYN+FIN, SYN+RST, FIN+PSH+URG (any port).
    tcp_flags: bool = True
    #: Drop UDP from ``reflection_ports`` unless it answers a request this
    #: host sent (to that peer and port, from that local port) within
    #: ``reflection_window_s``.
    reflection: bool = True
    reflection_ports: frozenset[int] = frozenset(DEFAULT_REFLECTION_PORTS)
    reflection_window_s: float = 10.0
    #: Pass a non-first fragment only when its datagram's first fragment
    #: passed within ``fragment_window_s``.
    fragments: bool = True
    fragment_window_s: float = 5.0
    #: Pass only these ICMP / ICMPv6 types (neighbour discovery always passes).
    icmp: bool = True
    icmp_types: frozenset[int] = DEFAULT_ICMP_TYPES
    icmpv6_types: frozenset[int] = DEFAULT_ICMP6_TYPES
    #: Path MTU discovery's messages (ICMP type 3, ICMPv6 type 2) pass even
    #: when the type lists leave them out.
    icmp_pmtu: bool = True
    #: Other IP protocols (not TCP, UDP, ICMP, ICMPv6): these numbers dropped.
    protocols_drop: frozenset[int] = frozenset()

    def as_json(self) -> dict[str, Any]:
        """The settings as JSON holds them (sets as sorted lists)."""
        return {k: sorted(v) if isinstance(v, frozenset) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Rule:
    """One named rule; an empty field matches anything."""

    name: str
    action: Action
    #: IP protocol numbers (empty: any).
    protocols: frozenset[int] = frozenset()
    sources: tuple[Prefix, ...] = ()
    #: Destination port ranges, inclusive (TCP and UDP only).
    dports: tuple[tuple[int, int], ...] = ()
    #: Source ports (TCP and UDP only).
    sports: frozenset[int] = frozenset()
    #: TCP flags: (mask, value); matches when flags & mask == value.
    tcp_flags: tuple[int, int] | None = None
    #: ICMP or ICMPv6 type and code (the protocol says which).
    icmp_type: int | None = None
    icmp_code: int | None = None
    #: Action ``limit``: packets per second per source (aggregated as
    #: :class:`Limits` says) and the bucket's depth in packets (None: pps).
    pps: int | None = None
    burst: int | None = None
    #: Where it was written (for messages): "FILE:LINE" or "".
    origin: str = ""

    def describe(self) -> str:
        """The rule as a person reads it: 'drop udp from 203.0.113.0/24 dport 53'."""
        names = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmpv6"}
        parts = [self.action.value]
        parts.append(",".join(names.get(p, str(p)) for p in sorted(self.protocols)) or "any")
        if self.sources:
            parts += ["from", ",".join(map(str, self.sources))]
        if self.dports:
            parts += ["dport", ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.dports)]
        if self.sports:
            parts += ["sport", ",".join(map(str, sorted(self.sports)))]
        if self.tcp_flags is not None:
            mask, value = self.tcp_flags
            flags = [("" if value & bit else "!") + name
                     for name, bit in TCP_FLAGS.items() if mask & bit]  # fmt: skip
            parts += ["flags", ",".join(flags)]
        if self.icmp_type is not None:
            parts += ["type", str(self.icmp_type)]
        if self.icmp_code is not None:
            parts += ["code", str(self.icmp_code)]
        if self.pps is not None:
            parts += ["pps", str(self.pps)]
            if self.burst is not None:
                parts += ["burst", str(self.burst)]
        return " ".join(parts)


#: The protocols a global ceiling can name, in the data path's slot order.
LIMIT_PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6", "other")


@dataclass(frozen=True)
class Limits:
    """``[limits]``: per-source token buckets and automatic blocks. A limit
    that is None is off; all None (the default): the stage costs nothing.

    A source is its address cut to ``prefix4`` / ``prefix6`` bits. Each
    bucket refills at its rate and holds ``burst`` packets (pps, syn_pps)
    or one second of bytes, at least 64 KiB (bps); a packet the bucket
    cannot pay for is dropped and costs nothing.
    """

    #: Packets per second per source (all protocols).
    pps: int | None = None
    #: Depth of the pps and syn_pps buckets, in packets (None: one second's worth).
    burst: int | None = None
    #: Bytes per second per source.
    bps: int | None = None
    #: SYNs to protected ports per second per source (new connections).
    syn_pps: int | None = None
    prefix4: int = 32
    prefix6: int = 64
    #: Seconds a source must stay over a limit before it is blocked (None: never).
    block_after: float | None = None
    #: A first block's time; a repeat offence within ``block_repeat`` of the
    #: last block's end doubles the last block's time, up to ``block_max_ttl``.
    block_ttl: float = 600.0
    block_max_ttl: float = 86400.0
    block_repeat: float = 3600.0
    #: Global ceilings: protocol (:data:`LIMIT_PROTOCOLS`) -> packets per second
    #: in total, shared out per CPU.
    ceilings: tuple[tuple[str, int], ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether any bucket, ceiling or automatic block is on."""
        return any(
            v is not None for v in (self.pps, self.bps, self.syn_pps, self.block_after)
        ) or bool(self.ceilings)

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ceilings"] = dict(self.ceilings)
        return d


@dataclass(frozen=True)
class Policy:
    allow: PrefixList = field(default_factory=dict)
    deny: PrefixList = field(default_factory=dict)
    hygiene: Hygiene = field(default_factory=Hygiene)
    rules: tuple[Rule, ...] = ()
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class InterfaceConfig:
    """One ``[[interface]]``: a shield and its protected ports."""

    name: str
    protect: tuple[int, ...] = ()
    #: ``ip netns`` name of the interface's namespace (None: the current one).
    netns: str | None = None
    handshake: str = "auto"
    xdp_mode: str = "auto"
    #: Transparent mode: SYNs per second and CPU before cookies start.
    syn_flood_pps: int | None = None
    #: RSTs the shield may send per second and CPU.
    rst_pps: int | None = None
    #: Where it was written (for messages): "FILE:LINE" or "". Not part of
    #: what the interface is: the same table on another line is equal.
    origin: str = field(default="", compare=False)


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: where ``xdpshield run`` serves Prometheus metrics."""

    enabled: bool = True
    #: An IP address (v4, or v6 without brackets) in the namespace ``run`` runs in.
    host: str = "127.0.0.1"
    port: int = 9435

    @property
    def listen(self) -> str:
        """HOST:PORT as written in the config ([v6]:PORT)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class FleetConfig:
    """``[fleet]``: shields on several machines sharing cookie keys, lists and
    blocks through a Redis server (ops/fleet.py). No secret is held here:
    the password is read from ``password_file`` when the run connects."""

    #: redis://HOST:PORT or rediss://HOST:PORT (TLS), tried in order.
    endpoints: tuple[str, ...]
    #: The fleet's name: the prefix of every key it keeps in the store.
    name: str = "xdpshield"
    #: This node's name in the fleet (default: the host name and the first
    #: interface, see ops/fleet.py node_name).
    node: str | None = None
    #: The fleet's cookie key period (every node rotates at the same moment).
    key_period_s: float = 60.0
    #: How long the key leader's election holds without renewal.
    lease_s: float = 5.0
    #: How long a start waits for the store before serving alone.
    start_timeout_s: float = 10.0
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    username: str | None = None
    password_file: str | None = None

    @property
    def tls(self) -> bool:
        return all(e.startswith("rediss://") for e in self.endpoints)


@dataclass(frozen=True)
class Config:
    """A whole config file."""

    path: str
    interfaces: tuple[InterfaceConfig, ...] = ()
    policy: Policy = field(default_factory=Policy)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    #: None: this run is no fleet's node.
    fleet: FleetConfig | None = None
