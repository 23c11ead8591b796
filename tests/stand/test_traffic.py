"""Generators on a real stand: frames are right, bounds hold, reported counts match a
receiver's count, and the legit load completes and verifies every byte without a shield.

The receiver is the test counter (XDP_DROP, counts packets and bytes per CPU) on the
server's protected link. Speeds are reported, never asserted beyond loose sanity.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether

from xdpshield import netns
from xdpshield.ebpf import Map, ObjectSpec, UInt, attach_xdp, close_maps, detach_xdp, sum_percpu
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import (
    KINDS,
    FloodKind,
    FloodTarget,
    LegitSample,
    TrafficError,
    build_flood_frame,
    flood,
    legit_load,
    load_flood_program,
)
from xdpshield.objects import obj_dir

OBJ = obj_dir()
SOURCES = {4: "198.19.0.0/16", 6: "fd00:19::/32"}
# A fresh link carries a few IPv6 MLD reports within about a second of coming up;
# the counter sees them too.
STRAY = 8


@dataclass
class Receiver:
    hits: Map[int, Any]

    def packets(self) -> int:
        return int(sum_percpu(self.hits.lookup_percpu(0)))


@pytest.fixture
def receiver(stand: Stand) -> Iterator[Receiver]:
    spec = ObjectSpec(OBJ / "test_counter.o").set_constants(verdict=1)  # XDP_DROP
    with spec.load() as coll:
        with netns.enter(stand.ns("server")):
            attach_xdp(coll.program("xdp_count"), stand.server_if, "native")
        try:
            yield Receiver(coll.map("hits").typed(UInt(4), UInt(8)))
        finally:
            with netns.enter(stand.ns("server")):
                detach_xdp(stand.server_if)


TARGET = FloodTarget(
    None, "lo", "02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.2", "fd00:18::2"
)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("kind", KINDS)
def test_generated_frames_are_right(kind: FloodKind, family: int) -> None:
    """What the program writes is the frame scapy would build, with right checksums,
    a source inside the CIDR, and fields that change from run to run."""
    ff = build_flood_frame(kind, TARGET, sources=SOURCES[family], dport=443)
    prog = load_flood_program(ff)
    try:
        frames = [prog.run(ff.frame).frame for _ in range(8)]
    finally:
        prog.close()
    assert all(len(f) == len(ff.frame) for f in frames)
    sources = set()
    for raw in frames:
        pkt = Ether(raw)
        assert pkt.src == TARGET.src_mac and pkt.dst == TARGET.dst_mac
        ip = pkt[IP] if family == 4 else pkt[IPv6]
        assert ip.dst == (TARGET.dst4 if family == 4 else TARGET.dst6)
        sources.add(ip.src)
        assert ip.src.startswith("198.19." if family == 4 else "fd00:19:")
        again = Ether(raw)
        l4: Any = None
        if kind in ("syn", "ack"):
            l4 = again[TCP]
            assert l4.dport == 443
            assert l4.flags == ("S" if kind == "syn" else "A")
        elif kind == "udp":
            l4 = again[UDP]
        elif kind == "icmp":
            l4 = again[ICMP] if family == 4 else again[ICMPv6EchoRequest]
        elif family == 4:
            assert again[IP].flags == "MF"
        else:
            assert again[IPv6ExtHdrFragment].m == 1
        if family == 4:
            del again[IP].chksum
        if l4 is not None:
            if hasattr(l4, "chksum"):
                del l4.chksum
            else:
                del l4.cksum
        rebuilt = bytes(again)
        assert rebuilt == raw[: len(rebuilt)], f"checksums differ for {pkt.summary()}"
    assert len(sources) > 1, "the source address does not vary"


@pytest.mark.parametrize(
    ("kind", "family"),
    [("syn", 4), ("ack", 4), ("udp", 4), ("icmp", 4), ("frag", 4), ("syn", 6), ("frag", 6)],
)
def test_count_bound_matches_receiver(
    stand: Stand, receiver: Receiver, kind: FloodKind, family: int
) -> None:
    before = receiver.packets()
    res = flood(kind, stand=stand, count=200_000, duration_s=30, sources=SOURCES[family])
    got = receiver.packets() - before
    assert res.sent == 200_000
    assert res.family == family and res.kind == kind
    assert 0 <= got - res.sent <= STRAY, (got, res)
    assert (res.delivered, res.tx_errors) == (res.sent, 0)
    assert res.seconds < 30 and res.pps == pytest.approx(res.sent / res.seconds)


def test_frames_left_on_the_shared_link_go_out_after_the_flood(
    stand: Stand, receiver: Receiver
) -> None:
    """Client frames still queued when a flood ends are sent on the uplink as
    they are, and the router takes the clients' path again."""
    shared = Stand(stand.prefix, shared_link=True)
    shared.up()  # the same stand, now with xdp_mux
    maps = shared.mux_maps()
    assert maps is not None
    frame = bytes(
        Ether(src=stand.mac("attacker"), dst=stand.mac("server"))
        / IP(src=stand.client4, dst=stand.server4, ttl=63)
        / ICMP()
    )
    try:
        for _ in range(50):
            maps["mux_queue"].push(len(frame).to_bytes(4, sys.byteorder) + frame.ljust(512, b"\0"))
    finally:
        close_maps(maps)
    before = receiver.packets()
    # One run: a drain at it (1 in 4096) would send one queued frame instead.
    res = flood("icmp", stand=stand, count=1, duration_s=5)
    got = receiver.packets() - before
    assert res.sent == 1
    assert 50 <= got <= 51 + STRAY, got
    maps = shared.mux_maps()
    assert maps is not None
    try:
        assert maps["mux_queue"].pop() is None
        assert maps["mux_clock"].lookup(bytes(4)) == bytes(8)  # no generator: pass
    finally:
        close_maps(maps)


def test_time_bound_matches_receiver(stand: Stand, receiver: Receiver) -> None:
    before = receiver.packets()
    res = flood("syn", stand=stand, duration_s=1.0, count=10**12)
    got = receiver.packets() - before
    assert 0.9 <= res.seconds <= 1.5, res
    assert res.sent < 10**12
    assert 0 <= got - res.sent <= STRAY, (got, res)
    # Loose sanity only (measured: millions per second): far below any real run.
    assert res.pps > 100_000, res


def test_two_workers_share_count(stand: Stand, receiver: Receiver) -> None:
    before = receiver.packets()
    res = flood("udp", stand=stand, count=300_001, duration_s=30, workers=2)
    got = receiver.packets() - before
    assert res.workers == 2 and sum(res.per_worker) == res.sent == 300_001
    assert abs(res.per_worker[0] - res.per_worker[1]) <= 1
    assert 0 <= got - res.sent <= STRAY


def test_rate_is_held(stand: Stand, receiver: Receiver) -> None:
    samples: list[tuple[int, float]] = []
    before = receiver.packets()
    res = flood(
        "syn",
        stand=stand,
        rate_pps=50_000,
        duration_s=2.0,
        workers=2,
        on_progress=lambda sent, t: samples.append((sent, t)),
        progress_interval_s=0.5,
    )
    got = receiver.packets() - before
    # Never above the rate (one call's worth of slack), and not far below it.
    assert res.sent <= 50_000 * 2.0 + 2 * 50_000 * 0.1, res
    assert res.pps > 25_000, res
    assert 0 <= got - res.sent <= STRAY
    assert samples and all(b[0] >= a[0] for a, b in itertools.pairwise(samples))


def test_flood_argument_errors(stand: Stand) -> None:
    target = FloodTarget.of_stand(stand)
    for kwargs in (
        {"duration_s": 0},
        {"count": 0},
        {"rate_pps": 0},
        {"workers": 0},
        {"size": 4096},
        {"sources": "not-a-cidr"},
        {"dport": 0},
    ):
        with pytest.raises(TrafficError):
            flood("syn", stand=stand, **kwargs)
    with pytest.raises(TrafficError, match="either"):
        flood("syn", stand=stand, target=target)
    with pytest.raises(TrafficError, match="kind"):
        flood("smurf", stand=stand)  # type: ignore[arg-type]
    with pytest.raises(TrafficError, match="IPv6"):
        flood(
            "syn",
            target=FloodTarget(
                stand.ns("attacker"),
                stand.uplink_if,
                target.src_mac,
                target.dst_mac,
                "198.18.0.2",
                None,
            ),
            sources="fd00:19::/32",
        )


@pytest.mark.parametrize("family", [4, 6])
def test_legit_load_without_shield(stand: Stand, family: int) -> None:
    samples: list[LegitSample] = []
    res = legit_load(
        stand,
        n_clients=8,
        duration_s=2.0,
        body_size=10_000,
        family=family,
        on_sample=samples.append,
    )
    assert res.attempted > 0
    assert res.completed == res.attempted and res.failed == 0, res.failures
    assert res.bytes_verified == res.completed * 10_000
    assert res.p50_ms is not None and res.p99_ms is not None and res.p50_ms <= res.p99_ms
    assert res.seconds < 2.0 + 3.0
    assert sum(s.completed for s in res.series) == res.completed
    assert sum(s.started for s in res.series) == res.attempted
    assert sum(s.started_first_try for s in res.series) == res.first_try == res.completed
    assert samples and samples[0].t == 0
    assert res.success == 1.0


def test_legit_load_counts_failures(stand: Stand) -> None:
    # Nobody listens: every connection is refused, and it says so.
    res = legit_load(stand, n_clients=2, duration_s=1.0, count=10, port=8081, server=False)
    assert (res.attempted, res.completed, res.failed) == (10, 0, 10)
    assert res.failures == {"refused": 10}
    assert res.bytes_verified == 0 and res.p50_ms is None


def test_refused_frames_are_reported(stand: Stand) -> None:
    # Without GRO and without XDP the server's veth has no NAPI and takes no XDP
    # frame: the flood must say so instead of claiming them sent.
    stand.exec("server", ["ethtool", "-K", stand.server_if, "gro", "off"], check=True)
    res = flood("syn", stand=stand, count=10_000, duration_s=10)
    assert res.sent == 10_000
    assert (res.delivered, res.tx_errors) == (0, 10_000)


def test_legit_retries_a_reset_first_attempt(stand: Stand) -> None:
    """The shield in reset mode resets a new source's first connection by design: with
    retries=1 the retry completes (and counts as completed, not first try); without
    retries that connection is a failure, counted as a reset."""
    from xdpshield.shield.core import Shield

    shield = Shield.load(
        stand.server_if, ports=[80], xdp_mode="native", handshake="reset", netns=stand.ns("server")
    )
    try:
        once = legit_load(stand, n_clients=1, duration_s=10, count=10, retries=1)
        assert (once.attempted, once.completed, once.failed) == (10, 10, 0), once.failures
        assert once.first_try < once.completed
        assert once.retries >= 1 and once.retried.get("reset", 0) == once.retries
        assert once.first_try_success == once.first_try / 10 < once.success == 1.0
        assert once.bytes_verified == 10 * 4096
        assert sum(s.first_try for s in once.series) == once.first_try
        # By the second they started: all ten, the retried ones not first try.
        assert sum(s.started for s in once.series) == 10
        assert sum(s.started_first_try for s in once.series) == once.first_try
    finally:
        shield.unload(purge=True)  # forget the verified source: an unload keeps it
    shield = Shield.load(
        stand.server_if, ports=[80], xdp_mode="native", handshake="reset", netns=stand.ns("server")
    )
    try:
        never = legit_load(stand, n_clients=1, duration_s=10, count=10, retries=0)
        assert never.failures.get("reset", 0) >= 1 and never.retries == 0
        assert never.completed == never.first_try == 10 - never.failed
    finally:
        shield.unload()


def test_legit_retries_are_bounded(stand: Stand) -> None:
    # Refused every time: each connection is tried 1 + retries times, then fails.
    res = legit_load(
        stand, n_clients=1, duration_s=2.0, count=5, port=8081, server=False, retries=2
    )
    assert (res.attempted, res.completed, res.first_try, res.failed) == (5, 0, 0, 5)
    assert res.retries == 10 and res.retried == {"refused": 10}
    assert res.failures == {"refused": 5}
    with pytest.raises(TrafficError, match="retries"):
        legit_load(stand, count=1, retries=-1)
