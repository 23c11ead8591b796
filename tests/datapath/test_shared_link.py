"""The stand's shared link (xdp_mux + the generator), run in the kernel.

A client frame to the server, taken by xdp_mux while a generator runs, must
leave in the generator's stream as the router would have forwarded it: the
server link's MACs, TTL (hop limit) one less, a valid IPv4 checksum, and
nothing else changed. Without a running generator the router forwards it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from xdpshield.ebpf import Collection, ObjectSpec, Program
from xdpshield.lab.stand import mux_counts, only_program
from xdpshield.lab.traffic import FloodTarget, build_flood_frame, load_flood_program
from xdpshield.objects import object_path

OBJ = object_path("traffic.o")
SERVER_MAC, ROUTER_MAC = "02:00:00:00:00:02", "02:00:00:00:00:01"
CLIENT_MAC, ACCESS_MAC = "02:00:00:00:01:02", "02:00:00:00:01:01"
SERVER = {4: "198.18.0.2", 6: "fd00:18::2"}
CLIENT = {4: "198.18.1.2", 6: "fd00:18:1::2"}
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3


@dataclasses.dataclass
class Link:
    mux: Program
    coll: Collection
    flood: Program

    def stats(self) -> dict[str, int]:
        return mux_counts(self.coll.map("mux_stats"))

    def generator_runs(self, when_ns: int | None = None) -> None:
        """Say a generator ran at ``when_ns`` (now by default; 0: never)."""
        when = time.monotonic_ns() if when_ns is None else when_ns
        self.coll.map("mux_clock").update(bytes(4), when.to_bytes(8, sys.byteorder))


@pytest.fixture
def link() -> Iterator[Link]:
    eth = bytes.fromhex((SERVER_MAC + ROUTER_MAC).replace(":", ""))
    spec = ObjectSpec(OBJ).set_constants(
        mux_eth=eth,
        mux_dst4=int.from_bytes(ipaddress.ip_address(SERVER[4]).packed, sys.byteorder),
        mux_dst6=ipaddress.ip_address(SERVER[6]).packed,
    )
    only_program(spec, "xdp_mux")
    coll = spec.load()
    target = FloodTarget(None, "lo", ROUTER_MAC, SERVER_MAC, SERVER[4], SERVER[6])
    ff = build_flood_frame("syn", target, sources="198.19.0.0/16")
    # A drain at every run: the queued frame leaves at the generator's next run.
    ff = dataclasses.replace(ff, constants={**ff.constants, "mux_drain_mask": 0})
    shared = {n: coll.map(n) for n in ("mux_queue", "mux_clock", "mux_stats")}
    flood = load_flood_program(ff, shared)
    try:
        yield Link(coll.program("xdp_mux"), coll, flood)
    finally:
        flood.close()
        coll.close()


def client_frame(family: int, payload: bytes = b"GET / HTTP/1.1\r\n\r\n", **ip: Any) -> bytes:
    l3: Any = (
        IP(src=CLIENT[4], dst=SERVER[4], ttl=64, **ip)
        if family == 4
        else IPv6(src=CLIENT[6], dst=SERVER[6], hlim=64, **ip)
    )
    return bytes(
        Ether(src=CLIENT_MAC, dst=ACCESS_MAC)
        / l3
        / TCP(sport=40000, dport=80, flags="PA")
        / Raw(payload)
    )


def forwarded(frame: bytes) -> bytes:
    """What the router would send on the server link."""
    pkt = Ether(frame)
    pkt.src, pkt.dst = ROUTER_MAC, SERVER_MAC
    if IP in pkt:
        pkt[IP].ttl -= 1
        del pkt[IP].chksum
    else:
        pkt[IPv6].hlim -= 1
    return bytes(pkt)


@pytest.mark.parametrize("family", [4, 6])
def test_client_frame_leaves_in_the_generators_stream(link: Link, family: int) -> None:
    frame = client_frame(family)
    link.generator_runs()
    assert link.mux.run(frame).verdict == XDP_DROP
    ff_len = 60  # the SYN template's length
    out = link.flood.run(bytes(ff_len))
    assert out.verdict == XDP_TX
    assert out.frame == forwarded(frame)
    # The queue is empty again: the next run is a flood frame.
    again = link.flood.run(bytes(ff_len))
    assert again.verdict == XDP_TX and len(again.frame) == ff_len
    assert Ether(again.frame)[TCP].flags == "S"
    assert link.stats() == {"queued": 1, "idle": 0, "full": 0, "sent": 1}


def test_without_a_generator_the_router_forwards(link: Link) -> None:
    link.generator_runs(0)
    assert link.mux.run(client_frame(4)).verdict == XDP_PASS
    # Long ago is as good as never.
    link.generator_runs(time.monotonic_ns() - 2 * 10**9)
    assert link.mux.run(client_frame(6)).verdict == XDP_PASS
    assert link.stats() == {"queued": 0, "idle": 2, "full": 0, "sent": 0}


def test_what_the_mux_does_not_take(link: Link) -> None:
    # Frames built before the clock is set, with their MACs given: scapy
    # resolving a MAC can take longer than the mux's 100 ms "generator runs"
    # window, and the frames would then be passed as idle, not as not taken.
    other = bytes(
        Ether(src=CLIENT_MAC, dst=ACCESS_MAC) / IP(src=CLIENT[4], dst="198.18.1.1") / TCP()
    )
    last_hop = client_frame(4)[:22] + b"\x01" + client_frame(4)[23:]
    arp = bytes(Ether(src=CLIENT_MAC, dst=ACCESS_MAC, type=0x0806) / Raw(bytes(28)))
    too_long = client_frame(4, payload=bytes(600))
    for frame in (other, last_hop, arp):
        link.generator_runs()
        assert link.mux.run(frame).verdict == XDP_PASS
    assert link.stats()["queued"] == 0
    # Too long to queue: forwarded, and counted.
    link.generator_runs()
    assert link.mux.run(too_long).verdict == XDP_PASS
    assert link.stats() == {"queued": 0, "idle": 0, "full": 1, "sent": 0}
