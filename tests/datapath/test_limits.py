"""Per-source limits, blocks and ceilings in the kernel (BPF_PROG_TEST_RUN).

Time is injected: the object's clock is frozen at NOW (as in every datapath
test) plus an offset these tests move through the ``xs_test_clock`` map.
The bucket arithmetic is checked against a plain token bucket written here
(hypothesis), the rest case by case: which reason counts, which source is
limited, when a block begins, ends and doubles, that a spoofed flood leaves
a real source's state alone.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from xdpshield.ebpf import Raw as RawCodec
from xdpshield.ebpf import UInt
from xdpshield.policy.model import Action, Limits, Policy, Prefix, Rule
from xdpshield.shield import limits, policy
from xdpshield.shield.datapath import Reason

from .model import XDP_DROP, XDP_PASS
from .test_guard import CMAC, NOW, PORT, SERVER4, SERVER6, SMAC, Guard, load

NS = 1_000_000_000
_addrs = itertools.count(1)


def fresh4() -> str:
    """A source no earlier case used (state and admission start empty)."""
    n = next(_addrs)
    return f"198.18.{100 + (n >> 8) % 100}.{n & 0xFF}"


def fresh6() -> str:
    return f"fd00:51::{next(_addrs):x}"


def P(text: str) -> Prefix:
    n = ipaddress.ip_network(text, strict=False)
    return Prefix(n.version, n.network_address.packed, n.prefixlen)


class LimitGuard(Guard):
    def __init__(self, coll: Any) -> None:
        super().__init__(coll)
        policy.init_policy(self.maps)
        self.previous: dict[str, Any] = {}
        self.clock = self.maps["xs_test_clock"].typed(UInt(4), UInt(8))
        self.offset = 0

    @property
    def now(self) -> int:
        return NOW + self.offset

    def advance(self, ns: int) -> None:
        self.offset += ns
        self.clock.update(0, self.offset)

    def apply(self, **kw: Any) -> None:
        res = policy.apply_policy(self.maps, Policy(**kw), previous=self.previous, now_ns=self.now)
        self.previous = res.carry()

    def send(self, frame: Packet) -> Reason | None:
        """None: passed; else the drop's reason."""
        ran = self.run(frame)
        if ran.verdict == XDP_DROP:
            return ran.reason
        assert ran.verdict == XDP_PASS or ran.reason == Reason.SYN_COOKIE_SENT, ran
        return None


@pytest.fixture(scope="module")
def lg() -> Iterator[LimitGuard]:
    with load() as coll:
        yield LimitGuard(coll)


def udp(src: str, size: int = 0, dport: int = 9999) -> Packet:
    l3 = IPv6(src=src, dst=SERVER6) if ":" in src else IP(src=src, dst=SERVER4)
    return Ether(src=CMAC, dst=SMAC) / l3 / UDP(sport=5000, dport=dport) / Raw(b"x" * size)


def syn(src: str, dport: int = PORT) -> Packet:
    return (
        Ether(src=CMAC, dst=SMAC)
        / IP(src=src, dst=SERVER4)
        / TCP(sport=4000, dport=dport, flags="S")
    )


# -- the bucket arithmetic against a token bucket ---------------------------------------------


@dataclass
class Bucket:
    """A token bucket counted in ns of refill: full at ``depth``, a packet
    takes ``cost`` if that many are there."""

    cost: int
    depth: int
    tokens: int = -1
    last: int = 0

    def level(self, now: int) -> int:
        if self.tokens < 0:
            return self.depth
        return min(self.depth, self.tokens + (now - self.last))

    def can(self, now: int, cost: int) -> bool:
        return self.level(now) >= cost

    def take(self, now: int, cost: int) -> None:
        self.tokens, self.last = self.level(now) - cost, now


@dataclass
class SourceModel:
    """One source as the data path should treat it (admission, then buckets)."""

    lim: Limits
    admit_tick: int | None = None
    admitted: bool = False
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def send(self, now: int, size: int, is_syn: bool) -> Reason | None:
        # The admission filter, for every packet: a source seen within its
        # window goes on (its slot refreshed when stale), any other takes
        # the slot and passes unlimited.
        tick = (now >> limits.ADMIT_SHIFT) & 0xFFFFFFFF
        age = None if self.admit_tick is None else (tick - self.admit_tick) & 0xFFFFFFFF
        if age is None or age > limits.ADMIT_WIN:
            self.admit_tick = tick
            return None
        if age > limits.ADMIT_REFRESH:
            self.admit_tick = tick
        if not self.admitted:
            self.admitted = True
            self.buckets = self._buckets()
        wants = []
        if "pps" in self.buckets:
            wants.append(("pps", self.buckets["pps"].cost, Reason.LIMIT_PPS))
        if "bps" in self.buckets:
            cost = (size * self.buckets["bps"].cost) >> limits.BPS_SHIFT
            wants.append(("bps", cost, Reason.LIMIT_BPS))
        if is_syn and "syn" in self.buckets:
            wants.append(("syn", self.buckets["syn"].cost, Reason.LIMIT_SYN))
        for name, cost, reason in wants:
            if not self.buckets[name].can(now, cost):
                return reason
        for name, cost, _ in wants:
            self.buckets[name].take(now, cost)
        return None

    def _buckets(self) -> dict[str, Bucket]:
        b = {}
        if self.lim.pps:
            b["pps"] = Bucket(*limits.pps_rate(self.lim.pps, self.lim.burst))
        if self.lim.bps:
            b["bps"] = Bucket(*limits.bps_rate(self.lim.bps))
        if self.lim.syn_pps:
            b["syn"] = Bucket(*limits.pps_rate(self.lim.syn_pps, self.lim.burst))
        return b


packets = st.lists(
    st.tuples(
        st.one_of(
            st.integers(0, 40_000_000),  # ns since the last packet (up to 40 ms)
            st.integers(0, 1_500_000_000),  # or up to 1.5 s: past the admission window
        ),
        st.integers(0, 1400),  # payload bytes
        st.booleans(),  # a SYN to the protected port (else UDP)
    ),
    min_size=2,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    pps=st.one_of(st.none(), st.integers(1, 2000)),
    burst=st.one_of(st.none(), st.integers(1, 20)),
    bps=st.one_of(st.none(), st.integers(1514, 400_000)),
    syn_pps=st.one_of(st.none(), st.integers(1, 500)),
    seq=packets,
)
def test_buckets_match_a_token_bucket(
    lg: LimitGuard,
    pps: int | None,
    burst: int | None,
    bps: int | None,
    syn_pps: int | None,
    seq: list[tuple[int, int, bool]],
) -> None:
    lim = Limits(pps=pps, burst=burst, bps=bps, syn_pps=syn_pps)
    lg.apply(limits=lim)
    lg.advance(10 * NS)  # earlier examples' sources are far behind
    src = fresh4()
    model = SourceModel(lim)
    for dt, size, is_syn in seq:
        lg.advance(dt)
        frame = syn(src) if is_syn else udp(src, size)
        want = model.send(lg.now, len(bytes(frame)), is_syn)
        got = lg.send(frame)  # a SYN that passes is answered with a cookie
        assert got == want, f"at +{lg.offset} ns: data path {got}, model {want}"


# -- case by case -----------------------------------------------------------------------------


def test_pps_limit_drops_the_excess_of_one_source_only(lg: LimitGuard) -> None:
    lg.apply(limits=Limits(pps=10, burst=5))
    lg.advance(10 * NS)
    noisy, quiet = fresh4(), fresh4()
    verdicts = [lg.send(udp(noisy)) for _ in range(20)]
    # The first packet only earns admission; then a burst of 5, then drops.
    assert verdicts[:6] == [None] * 6
    assert set(verdicts[6:]) == {Reason.LIMIT_PPS}
    assert lg.send(udp(quiet)) is None and lg.send(udp(quiet)) is None
    lg.advance(NS // 10)  # 100 ms refills one packet
    assert lg.send(udp(noisy)) is None
    assert lg.send(udp(noisy)) == Reason.LIMIT_PPS


def test_ipv6_sources_share_their_64(lg: LimitGuard) -> None:
    lg.apply(limits=Limits(pps=1, burst=2))
    lg.advance(10 * NS)
    a = "fd00:52:0:1::1"
    b = "fd00:52:0:1::2"  # same /64
    c = "fd00:52:0:2::1"  # another /64
    assert [lg.send(udp(a)) for _ in range(3)] == [None, None, None]
    assert lg.send(udp(b)) == Reason.LIMIT_PPS
    assert lg.send(udp(c)) is None


def test_prefix4_24_aggregates_a_network(lg: LimitGuard) -> None:
    lg.apply(limits=Limits(pps=1, burst=2, prefix4=24))
    lg.advance(10 * NS)
    assert [lg.send(udp("198.19.33.1")) for _ in range(3)] == [None, None, None]
    assert lg.send(udp("198.19.33.200")) == Reason.LIMIT_PPS
    assert lg.send(udp("198.19.34.1")) is None


def test_bps_limit_counts_bytes(lg: LimitGuard) -> None:
    lg.apply(limits=Limits(bps=100_000))  # depth: 100 kB
    lg.advance(10 * NS)
    src = fresh4()
    sent = 0
    verdicts = []
    for _ in range(120):
        frame = udp(src, 1400)
        verdicts.append(lg.send(frame))
        sent += len(bytes(frame))
    passed = verdicts.count(None)
    # One unadmitted packet, then one second of bytes: 100,000 / 1442 = 69.
    assert passed == 1 + 100_000 // len(bytes(udp(src, 1400)))
    assert set(verdicts[passed:]) == {Reason.LIMIT_BPS}


def test_syn_limit_counts_only_syns_to_protected_ports(lg: LimitGuard) -> None:
    lg.apply(limits=Limits(syn_pps=2, burst=2))
    lg.advance(10 * NS)
    src = fresh4()
    assert lg.send(syn(src)) is None  # admission
    assert lg.send(syn(src)) is None
    assert lg.send(syn(src)) is None
    assert lg.send(syn(src)) == Reason.LIMIT_SYN
    # Not a SYN, or not a protected port: not counted.
    ack = (
        Ether(src=CMAC, dst=SMAC)
        / IP(src=src, dst=SERVER4)
        / TCP(sport=4000, dport=PORT, flags="A")
    )
    assert lg.run(ack).reason != Reason.LIMIT_SYN
    assert lg.send(syn(src, dport=8081)) is None


def test_limit_rule_has_its_own_bucket(lg: LimitGuard) -> None:
    echo = Rule(
        name="echo", action=Action.LIMIT, protocols=frozenset({1}), icmp_type=8, pps=5, burst=3
    )
    lg.apply(rules=(echo,), limits=Limits())
    lg.advance(10 * NS)
    src = fresh4()

    def ping() -> Packet:
        return Ether(src=CMAC, dst=SMAC) / IP(src=src, dst=SERVER4) / ICMP(type=8)

    verdicts = [lg.send(ping()) for _ in range(6)]
    assert verdicts == [None, None, None, None, Reason.RULE_LIMIT, Reason.RULE_LIMIT]
    assert lg.send(udp(src)) is None  # the rule's bucket only
    ids = {n: rid for n, (rid, _) in lg.previous["rule_ids"].items()}
    assert policy.rule_stats(lg.maps, ids)["echo"][0] == 6  # every match counted
    lg.apply(limits=Limits())


def test_ceiling_caps_a_protocol_across_sources(lg: LimitGuard) -> None:
    lg.apply(limits=Limits(ceilings=(("icmp", 1000),)))
    lg.advance(10 * NS)
    per_cpu = limits.ceiling_rate(1000, os.cpu_count() or 1)
    burst = per_cpu[1] // per_cpu[0]
    # On one CPU, whose share is a burst of one second's share.
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        verdicts = [
            lg.send(Ether(src=CMAC, dst=SMAC) / IP(src=fresh4(), dst=SERVER4) / ICMP(type=8))
            for _ in range(burst + 5)
        ]
    finally:
        os.sched_setaffinity(0, cpus)
    assert verdicts.count(None) == burst
    assert set(verdicts[burst:]) == {Reason.CEILING}
    assert lg.send(udp(fresh4())) is None  # UDP has no ceiling


def test_allow_listed_source_is_never_limited_nor_blocked(lg: LimitGuard) -> None:
    src = fresh4()
    lg.apply(allow={P(src): None}, limits=Limits(pps=1, burst=1, block_after=0.001))
    lg.advance(10 * NS)
    reasons = {lg.run(udp(src)).reason for _ in range(50)}
    assert reasons == {Reason.ALLOW_PASS}
    lg.apply(limits=Limits())


def test_sustained_excess_blocks_then_expires_then_doubles(lg: LimitGuard) -> None:
    lim = Limits(pps=10, burst=1, block_after=1.0, block_ttl=5.0, block_max_ttl=12.0)
    lg.apply(limits=lim)
    lg.advance(10 * NS)
    src = fresh4()
    # 100 pps for 1.1 s: over the limit from the start, blocked after 1 s.
    reasons = []
    for _ in range(110):
        reasons.append(lg.send(udp(src)))
        lg.advance(NS // 100)
    first_block = reasons.index(Reason.BLOCKED)
    assert 100 <= first_block <= 103, reasons
    assert Reason.LIMIT_PPS in reasons[:first_block]
    (b,) = [b for b in limits.list_blocks(lg.maps, now_ns=lg.now) if b.prefix == P(src)]
    assert (b.ttl_ns, b.count, b.manual) == (5 * NS, 1, False)
    # Blocked for 5 s, whatever it sends, then free.
    lg.advance(4 * NS)
    assert lg.send(udp(src)) == Reason.BLOCKED
    lg.advance(NS)
    assert lg.send(udp(src)) is None
    # Again within the repeat window: 10 s this time, then capped at 12 s.
    for want_ttl in (10, 12):
        for _ in range(115):
            if lg.send(udp(src)) == Reason.BLOCKED:
                break
            lg.advance(NS // 100)
        (b,) = [b for b in limits.list_blocks(lg.maps, now_ns=lg.now) if b.prefix == P(src)]
        assert b.ttl_ns == want_ttl * NS
        lg.advance(want_ttl * NS)
        assert lg.send(udp(src)) is None
    _, gone = limits.expire_blocks(lg.maps, lim.block_repeat, now_ns=lg.now)
    assert P(src) not in {b.prefix for b in gone}  # kept for its repeat window
    _, gone = limits.expire_blocks(lg.maps, lim.block_repeat, now_ns=lg.now + 3601 * NS)
    assert P(src) in {b.prefix for b in gone}
    lg.apply(limits=Limits())


def test_an_excess_spread_over_cpus_blocks_on_time(lg: LimitGuard) -> None:
    """The CPUs' clocks may differ by a tick (each learns its offset from
    the coarse clock): a packet judged on a CPU a tick behind the one that
    judged the one before must not restart the excess (a source spread over
    CPUs was then never blocked), nor one a tick ahead block it at once."""
    tick = 4 * NS // 1000  # HZ=250
    lg.apply(limits=Limits(pps=10, burst=1, block_after=1.0, block_ttl=5.0))
    lg.advance(10 * NS)
    for skew in (-tick, tick):
        src = fresh4()
        t0, blocked_at = lg.now, None
        while blocked_at is None and lg.now - t0 < 2 * NS:
            # One packet on this CPU, the next (1 ms later) on one whose
            # clock is a tick behind or ahead.
            got = [lg.send(udp(src))]
            lg.advance(NS // 1000 + skew)
            got.append(lg.send(udp(src)))
            lg.advance(-skew + 9 * NS // 1000)
            if Reason.BLOCKED in got:
                blocked_at = lg.now - t0
        assert blocked_at is not None, f"skew {skew}: no block in 2 s"
        # Over the limit from the 2nd packet on; blocked 1 s after that.
        assert NS <= blocked_at <= NS + 30 * NS // 1000, (skew, blocked_at)
    lg.apply(limits=Limits())


def test_manual_blocks_any_prefix_and_del(lg: LimitGuard) -> None:
    lg.apply(limits=Limits())
    net, host6 = P("198.19.77.0/24"), P("fd00:53::7/128")
    limits.add_blocks(lg.maps, {net: 60.0, host6: 60.0}, now_ns=lg.now)
    policy.switch_limits(lg.maps, Limits(), limit_rules=False)
    assert lg.send(udp("198.19.77.9")) == Reason.BLOCKED
    assert lg.send(udp("fd00:53::7")) == Reason.BLOCKED
    assert lg.send(udp("fd00:53::8")) is None
    assert lg.send(udp("198.19.78.9")) is None
    assert {b.prefix for b in limits.list_blocks(lg.maps, now_ns=lg.now)} >= {net, host6}
    assert limits.del_blocks(lg.maps, [net]) == 1
    assert lg.send(udp("198.19.77.9")) is None
    lg.advance(61 * NS)  # the other expired
    assert lg.send(udp("fd00:53::7")) is None
    _, gone = limits.expire_blocks(lg.maps, 3600, now_ns=lg.now)
    assert host6 in {b.prefix for b in gone}


def test_a_raised_limit_holds_from_the_next_packet(lg: LimitGuard) -> None:
    """A source over its limit is dropped from this CPU's drop cache; a new
    limit is a new generation, which the cache does not trust."""
    lg.apply(limits=Limits(pps=1, burst=1))
    lg.advance(10 * NS)
    src = fresh4()
    assert [lg.send(udp(src)) for _ in range(4)] == [None, None, Reason.LIMIT_PPS, Reason.LIMIT_PPS]
    # The bucket's time is ~1 s ahead (the old cost): a 5 s burst takes it.
    lg.apply(limits=Limits(pps=1000, burst=5000))
    assert lg.send(udp(src)) is None
    lg.apply(limits=Limits())


def test_a_blocks_drops_are_counted(lg: LimitGuard) -> None:
    """Drops the per-CPU cache answers reach the block's count at its next
    lookup (within XS_DC_TTL_NS, ~17 ms) on the same CPU: the test runs
    pinned to one."""
    lg.apply(limits=Limits())
    src = fresh4()
    limits.add_blocks(lg.maps, {P(src): 60.0}, now_ns=lg.now)
    policy.switch_limits(lg.maps, Limits(), limit_rules=False)
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        assert [lg.send(udp(src)) for _ in range(10)] == [Reason.BLOCKED] * 10
        lg.advance(20_000_000)
        assert lg.send(udp(src)) == Reason.BLOCKED
    finally:
        os.sched_setaffinity(0, cpus)
    (b,) = [b for b in limits.list_blocks(lg.maps, now_ns=lg.now) if b.prefix == P(src)]
    assert b.drops == 11
    assert limits.del_blocks(lg.maps, [P(src)]) == 1
    assert lg.send(udp(src)) is None


def test_spoofed_sources_do_not_evict_a_real_one(lg: LimitGuard) -> None:
    """10,000 random sources, one packet each, between a real source's
    packets: none gets state, the real source keeps its own."""
    lg.apply(limits=Limits(pps=1000))
    lg.advance(10 * NS)
    real = fresh4()
    assert lg.send(udp(real)) is None
    assert lg.send(udp(real)) is None  # admitted
    key = limits._SRC_KEY.pack(limits._addr16(P(real))[0], 0, 128, 0)
    before = {k for k, _ in lg.maps["xs_src"].typed(RawCodec(20), RawCodec(40)).lookup_batch()}
    frames = [
        bytes(udp(str(ipaddress.IPv4Address(0xC6130000 | (i * 7919) & 0xFFFF))))
        for i in range(10_000)
    ]
    for f in frames:
        lg.prog.run(f)
    after = {k for k, _ in lg.maps["xs_src"].typed(RawCodec(20), RawCodec(40)).lookup_batch()}
    assert key in after
    assert len(after - before) <= 2  # a fingerprint collision at most
    assert lg.send(udp(real)) is None
