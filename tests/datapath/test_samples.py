"""Drop samples in the kernel (BPF_PROG_TEST_RUN): the cap, what a sample
carries, and the full ring.

The clock is frozen (test_guard's NOW, moved through ``xs_test_clock``), so
a bucket never refills unless a test moves time. Buckets are per CPU: every
test runs its frames pinned to one CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from xdpshield.policy.model import Action, Limits, Rule
from xdpshield.shield import samples
from xdpshield.shield.datapath import Reason
from xdpshield.shield.samples import Sample, Sampler

from .model import XDP_DROP, XDP_TX
from .test_guard import CLIENT4, CMAC, PORT, SERVER4, SMAC, load
from .test_limits import NS, LimitGuard, fresh4


@pytest.fixture(scope="module")
def sg() -> Iterator[LimitGuard]:
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one CPU: one bucket per reason
    try:
        with load() as coll:
            yield LimitGuard(coll)
    finally:
        os.sched_setaffinity(0, cpus)


@pytest.fixture
def reader(sg: LimitGuard) -> Iterator[Sampler]:
    samples.set_rate(sg.maps, 0)
    with Sampler(sg.maps) as s:
        s.drain()
        yield s


def malformed(i: int = 0) -> Packet:
    """Dropped as malformed: an IPv4 header length of 4 words."""
    return (
        Ether(src=CMAC, dst=SMAC)
        / IP(src=CLIENT4, dst=SERVER4, ihl=4, id=i)
        / TCP(dport=PORT, flags="S")
    )


def read_all(reader: Sampler) -> list[Sample]:
    out: list[Sample] = []
    while True:
        got = reader.poll(0)
        if not got:
            return out
        out += got


@pytest.mark.parametrize("n", [1, 9, 10, 11, 40])
def test_n_drops_give_min_n_cap_samples(sg: LimitGuard, reader: Sampler, n: int) -> None:
    cap = 10
    samples.set_rate(sg.maps, cap, [Reason.MALFORMED])
    frames = [bytes(malformed(i)) for i in range(n)]
    for f in frames:
        assert sg.run(f).reason == Reason.MALFORMED
    got = read_all(reader)
    assert len(got) == min(n, cap)
    # The first ones, in order, each byte for byte.
    assert [s.bytes for s in got] == frames[: min(n, cap)]
    assert {s.reason for s in got} == {Reason.MALFORMED}
    assert samples.sample_counts(sg.maps)[Reason.MALFORMED][0] >= len(got)


def test_bucket_refills_at_the_cpus_share(sg: LimitGuard, reader: Sampler) -> None:
    cap = 40
    samples.set_rate(sg.maps, cap, [Reason.MALFORMED])
    for i in range(cap + 5):
        sg.run(malformed(i))
    assert len(read_all(reader)) == cap
    sg.advance(NS)  # one second: this CPU's share comes back, no more
    share = NS // samples._bucket(cap, os.cpu_count() or 1)[0]
    # The empty bucket let SKIP packets by unclocked first: delayed, not lost.
    for i in range(samples.SKIP + 2 * cap):
        sg.run(malformed(i))
    assert len(read_all(reader)) == share


def test_rate_zero_and_other_reasons_are_off(sg: LimitGuard, reader: Sampler) -> None:
    samples.set_rate(sg.maps, 100, [Reason.TCP_FLAGS])  # not MALFORMED
    for i in range(5):
        sg.run(malformed(i))
    assert read_all(reader) == []
    samples.set_rate(sg.maps, 100)
    samples.set_rate(sg.maps, 0)
    for i in range(5):
        sg.run(malformed(i))
    assert read_all(reader) == []
    assert set(samples.rates(sg.maps).values()) == {0}


def test_passed_frames_are_not_sampled(sg: LimitGuard, reader: Sampler) -> None:
    samples.set_rate(sg.maps, 100)
    sg.apply(limits=Limits())
    frame = Ether(src=CMAC, dst=SMAC) / IP(src=fresh4(), dst=SERVER4) / UDP(sport=5000, dport=9)
    for _ in range(5):
        assert sg.run(frame).reason == Reason.PASS_UNPROTECTED
    assert read_all(reader) == []


def test_sample_carries_length_ifindex_and_the_head_only(sg: LimitGuard, reader: Sampler) -> None:
    samples.set_rate(sg.maps, 100)
    big = bytes(malformed() / Raw(bytes(range(256)) * 2))
    assert len(big) > samples.SAMPLE_BYTES
    sg.run(big, ifindex=1)
    (s,) = read_all(reader)
    assert (s.length, s.bytes, s.ifindex) == (len(big), big[: samples.SAMPLE_BYTES], 1)
    assert (s.action, s.tc, s.rule) == (XDP_DROP, False, None)
    assert str(s.peer) == CLIENT4


def test_rule_drop_and_rule_limit_carry_the_rule(sg: LimitGuard, reader: Sampler) -> None:
    samples.set_rate(sg.maps, 100)
    drop = Rule(name="no-dns", action=Action.DROP, protocols=frozenset({17}), dports=((53, 53),))
    echo = Rule(
        name="echo", action=Action.LIMIT, protocols=frozenset({1}), icmp_type=8, pps=1, burst=1
    )
    sg.apply(rules=(drop, echo), limits=Limits())
    sg.advance(10 * NS)
    ids = {n: rid for n, (rid, _) in sg.previous["rule_ids"].items()}
    src = fresh4()
    dns = Ether(src=CMAC, dst=SMAC) / IP(src=src, dst=SERVER4) / UDP(sport=5000, dport=53)
    assert sg.run(dns).reason == Reason.RULE_DROP
    ping = Ether(src=CMAC, dst=SMAC) / IP(src=src, dst=SERVER4) / ICMP(type=8)
    reasons = [sg.run(ping).reason for _ in range(3)]
    assert Reason.RULE_LIMIT in reasons
    got = read_all(reader)
    by_reason = {s.reason: s for s in got}
    assert by_reason[Reason.RULE_DROP].rule == ids["no-dns"]
    assert by_reason[Reason.RULE_DROP].bytes == bytes(dns)
    assert by_reason[Reason.RULE_LIMIT].rule == ids["echo"]
    sg.apply(limits=Limits())


def test_answered_syn_is_sampled_as_its_reply(sg: LimitGuard, reader: Sampler) -> None:
    samples.set_rate(sg.maps, 100, [Reason.SYN_COOKIE_SENT])
    syn = Ether(src=CMAC, dst=SMAC) / IP(src=CLIENT4, dst=SERVER4) / TCP(dport=PORT, flags="S")
    ran = sg.run(syn)
    assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
    (s,) = read_all(reader)
    assert s.answered and s.bytes == ran.frame[: samples.SAMPLE_BYTES]
    assert s.length == len(ran.frame)
    assert str(s.peer) == CLIENT4  # the reply goes to the SYN's sender


def test_full_ring_is_counted(sg: LimitGuard, reader: Sampler) -> None:
    samples.set_rate(sg.maps, samples.MAX_RATE, [Reason.MALFORMED])
    before = samples.sample_counts(sg.maps)[Reason.MALFORMED]
    frame = bytes(malformed())
    runs = 6000  # more than the ring holds (512 KiB / 160 bytes)
    assert sg.prog.run(frame, repeat=runs).verdict == XDP_DROP
    sent, full = samples.sample_counts(sg.maps)[Reason.MALFORMED]
    sent, full = sent - before[0], full - before[1]
    assert full > 0, "the ring filled: the rest are counted as lost"
    assert sent + full == runs
    assert samples.ring_full_total(sg.maps) >= full
    got = read_all(reader)
    assert len(got) == sent and all(s.bytes == frame for s in got)
    # Read, the ring takes samples again.
    sg.run(frame)
    assert len(read_all(reader)) == 1


def test_tc_drop_is_sampled_from_the_skb() -> None:
    """The tc program's drops go through the same exit: a handshake ACK whose
    cookie tc re-checks (no XDP metadata) and finds bad."""
    with load(transparent=True, force_nometa=True, tc=True) as coll:
        samples.set_rate(coll.maps, 100)
        # As XDP sets it once it met a driver without metadata room.
        bss = coll.maps["xdpshiel.bss"]
        bss.update(bytes(4), (1).to_bytes(4, "little") + bytes(bss.value_size - 4))
        ack = bytes(
            Ether(src=CMAC, dst=SMAC)
            / IP(src=CLIENT4, dst=SERVER4)
            / TCP(sport=4000, dport=PORT, flags="A", seq=1, ack=12345)
        )
        with Sampler(coll.maps) as reader:
            assert coll.program("xdpshield_tc").run(ack).verdict == 2  # TC_ACT_SHOT
            (s,) = read_all(reader)
    assert (s.reason, s.tc, s.action) == (Reason.HANDOFF_BAD_COOKIE, True, 2)
    assert (s.bytes, s.length) == (ack, len(ack))


def test_a_running_object_older_by_one_reason_is_read_and_set_without_error() -> None:
    """After a package upgrade the CLI (and an upgrade's fill) meets a
    running object whose per-reason arrays end one reason earlier: the newest
    reason reads as off and never sampled, and setting every rate skips it."""
    from xdpshield.ebpf import ObjectSpec

    from .model import OBJ, xdp_only

    newest = max(Reason)
    spec = xdp_only(ObjectSpec(OBJ))
    for name in ("xs_stats", "xs_sample_bkt", "xs_sample_stat"):
        spec.set_max_entries(name, int(newest))
    with spec, spec.load() as coll:
        samples.set_rate(coll.maps, 7)
        rates = samples.rates(coll.maps)
        assert rates[newest] == 0 and rates[Reason.MALFORMED] == 7
        assert samples.sample_counts(coll.maps)[newest] == (0, 0)
