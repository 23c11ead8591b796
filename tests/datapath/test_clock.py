"""The data path's clock (clock.h) is CLOCK_MONOTONIC at the kernel tick's
resolution, counted in jiffies where the tick's length is known (one load,
no helper call): the times it writes, which userspace reads back against its
own clock (expiries, blocks), agree with CLOCK_MONOTONIC within a tick.
"""

from __future__ import annotations

import ipaddress
import os
import time

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from xdpshield.ebpf import Collection, ObjectSpec
from xdpshield.shield import datapath
from xdpshield.shield.datapath import GuardOptions, Reason

from .model import OBJ, TEST_OPTIONS, XDP_TX, xdp_only
from .test_guard import EPOCH, K1, K2, OPTION_SETS, PORT, SERVER4, TTL_S, Guard, eth, syn

TICK_NS = datapath.jiffy_ns()


def _load(jiffies: bool) -> Collection:
    spec = xdp_only(ObjectSpec(OBJ))
    consts = datapath.constants(GuardOptions(verified_ttl_s=TTL_S, **TEST_OPTIONS))
    assert consts["xs_fixed_now_ns"] == 0, "the kernel's clock, not a frozen one"
    if not jiffies:
        consts["xs_jiffy_ns"] = 0  # the coarse clock's helper
    spec.set_constants(**consts)
    coll = spec.load()
    datapath.set_ports(coll.maps, [PORT])
    datapath.set_keys(coll.maps, K2, K1, epoch=EPOCH)
    return coll


def _verify(g: Guard, client: str) -> None:
    """A reset-mode handshake from ``client``: its source is verified now."""
    ip = IP(src=client, dst=SERVER4)
    out = g.run(syn(eth() / ip, OPTION_SETS["linux"], seq=5))
    assert out.verdict == XDP_TX
    cookie = Ether(out.frame)[TCP].seq
    ack = eth() / ip / TCP(sport=40000, dport=PORT, flags="A", seq=6, ack=cookie + 1)
    assert g.run(ack).reason == Reason.ACK_VALID


@pytest.mark.parametrize("jiffies", [True, False], ids=["jiffies", "helper"])
def test_the_clock_is_the_monotonic_clock(jiffies: bool) -> None:
    if jiffies and not TICK_NS:
        pytest.skip(
            "KERNEL CONFIG UNREADABLE (no /proc/config.gz, no /boot/config-*): CONFIG_HZ "
            "unknown, the data path reads its clock through the helper"
        )
    tick = TICK_NS or 4_000_000
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one CPU: one learnt offset
    try:
        _times(jiffies, tick)
    finally:
        os.sched_setaffinity(0, cpus)


def _times(jiffies: bool, tick: int) -> None:
    ttl = int(TTL_S * 1e9)
    with _load(jiffies) as coll:
        g = Guard(coll)
        seen = []
        for i in range(12):  # across several ticks
            client = f"198.18.1.{i + 1}"
            t0 = time.monotonic_ns()
            _verify(g, client)
            t1 = time.monotonic_ns()
            entry = datapath.verified_sources(g.maps)[ipaddress.ip_address(client)]
            now = entry.expires_ns - ttl
            # Coarse: the last tick's time (up to a tick behind), or up to a
            # tick ahead (jiffies counted with the largest offset learnt).
            assert t0 - 2 * tick <= now <= t1 + tick, (t0, now, t1)
            seen.append(now)
            time.sleep(0.003)
        assert seen == sorted(seen), "never backwards on one CPU"
        assert seen[-1] > seen[0], "it moves"
