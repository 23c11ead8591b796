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

from xdpshield.ebpf import Collection, ObjectSpec, Raw, UInt
from xdpshield.shield import datapath
from xdpshield.shield.datapath import GuardOptions, Reason

from ..unit.test_mirrors import btf_struct
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


FLIP = 1 << 63  # clock.h XS_JOFF_FLIP


def _offset(coll: Collection) -> int:
    """xs_jclock's offset, signed."""
    w = int(coll.maps["xs_jclock"].typed(UInt(4), UInt(8)).lookup(0))
    assert w, "no CPU has read the coarse clock"
    return (w ^ FLIP) - (1 << 64 if w ^ FLIP >= FLIP else 0)


def _set_offset(coll: Collection, off: int) -> None:
    coll.maps["xs_jclock"].typed(UInt(4), UInt(8)).update(0, (off & (1 << 64) - 1) ^ FLIP)


def _set_jreads(coll: Collection, per_cpu: dict[int, int]) -> None:
    """Each CPU's count of clock calls (0: its next one reads the coarse clock)."""
    at = btf_struct("xdpshield.o", "xs_cpu_state").members["jreads"]
    m = coll.maps["xs_cpu"]
    raw = m.typed(UInt(4), Raw(m.value_size))
    vals = [bytearray(v) for v in raw.lookup_percpu(0)]
    for cpu, n in per_cpu.items():
        vals[cpu][at : at + 4] = n.to_bytes(4, "little")
    raw.update(0, [bytes(v) for v in vals])


def test_every_cpu_tells_the_time_by_one_offset() -> None:
    """The jiffies clock's offset is one for all CPUs, the largest any has
    read: a CPU that has not read the coarse clock since tells the time by
    another's reading, and a smaller reading never lowers it."""
    if not TICK_NS:
        pytest.skip("CONFIG_HZ unknown: the data path reads its clock through the helper")
    cpus = os.sched_getaffinity(0)
    a, b = min(cpus), max(cpus)  # one CPU only: both steps on it
    ttl = int(TTL_S * 1e9)

    def now_on(cpu: int, g: Guard, client: str) -> tuple[int, int, int]:
        os.sched_setaffinity(0, {cpu})
        t0 = time.monotonic_ns()
        _verify(g, client)
        t1 = time.monotonic_ns()
        entry = datapath.verified_sources(g.maps)[ipaddress.ip_address(client)]
        return t0, entry.expires_ns - ttl, t1

    try:
        with _load(jiffies=True) as coll:
            g = Guard(coll)
            t0, now, t1 = now_on(a, g, "198.18.2.1")
            assert t0 - 2 * TICK_NS <= now <= t1 + TICK_NS
            good = _offset(coll)
            # A reading three ticks short, as if taken while jiffies ran ahead
            # of the timekeeper; no CPU reads the coarse clock in the next
            # calls but CPU a's next.
            _set_offset(coll, good - 3 * TICK_NS)
            _set_jreads(coll, {a: 1, b: 1} if a != b else {a: 1})
            t0, now, t1 = now_on(b, g, "198.18.2.2")
            assert now <= t1 - 2 * TICK_NS, "CPU b tells the time by the shared offset"
            _set_jreads(coll, {a: 0})
            t0, now, t1 = now_on(a, g, "198.18.2.3")
            assert t0 - 2 * TICK_NS <= now <= t1 + TICK_NS, "CPU a read the coarse clock"
            assert _offset(coll) > good - TICK_NS  # readings differ by a ns or so
            t0, now, t1 = now_on(b, g, "198.18.2.4")
            assert t0 - 2 * TICK_NS <= now <= t1 + TICK_NS, "CPU b has CPU a's reading at once"
            # A reading smaller than the offset kept leaves it as it is.
            _set_offset(coll, good + 5 * TICK_NS)
            _set_jreads(coll, {a: 0})
            t0, now, t1 = now_on(a, g, "198.18.2.5")
            assert now >= t0 + 3 * TICK_NS and _offset(coll) == good + 5 * TICK_NS
    finally:
        os.sched_setaffinity(0, cpus)
