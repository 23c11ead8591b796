"""The cookie's clock is the wall clock, so two machines agree on its tick.

Each kernel's monotonic clock starts at its own boot: two nodes of a fleet
read different times at the same moment. The data path adds the offset
userspace writes (CLOCK_TAI - CLOCK_MONOTONIC, ``datapath.set_clock``), so
a SYN-ACK made on one node is checked on another against the same tick.
Here two loads of the object stand for two machines: frozen monotonic
clocks a tick and a half apart, each with its own offset.
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from xdpshield.shield import cookie, datapath
from xdpshield.shield.datapath import Reason

from .model import XDP_TX
from .test_guard import CLIENT4, NOW, OPTION_SETS, PORT, SERVER4, Guard, eth, load, syn

TICK_NS = 1 << cookie.TICK_SHIFT
WALL = 1_765_000_000 * 10**9  # a wall-clock time, ns
#: Node B booted a tick and a half after node A.
SKEW = TICK_NS + TICK_NS // 2


def handshake(offset_a: int, offset_b: int) -> Reason:
    """A SYN answered by node A, its ACK checked by node B (same keys)."""
    with load(fixed_now_ns=NOW) as ca, load(fixed_now_ns=NOW - SKEW) as cb:
        a, b = Guard(ca), Guard(cb)
        datapath.set_clock(a.maps, offset_a)
        datapath.set_clock(b.maps, offset_b)
        ran = a.run(syn(eth() / IP(src=CLIENT4, dst=SERVER4), OPTION_SETS["linux"], seq=7))
        assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
        synack = Ether(ran.frame)
        ack = (
            eth()
            / IP(src=CLIENT4, dst=SERVER4)
            / TCP(sport=40000, dport=PORT, flags="A", seq=8, ack=synack[TCP].seq + 1)
        )
        return b.run(ack).reason


def test_nodes_with_their_offsets_agree_on_the_tick() -> None:
    # Both offsets turn their monotonic "now" into the same wall-clock time.
    assert handshake(WALL - NOW, WALL - (NOW - SKEW)) == Reason.ACK_VALID


def test_a_node_a_little_ahead_across_a_tick_boundary() -> None:
    """Node A's wall clock 3 ms ahead of B's, the SYN just after a tick
    began on A's clock, its ACK on B's a moment later, still in the tick
    before: taken (within XS_COOKIE_AHEAD_NS of the tick's end). The same
    cookie 10 s before the boundary on B's clock is two ticks old to B."""
    boundary = (WALL // TICK_NS + 1) * TICK_NS
    a_wall = boundary + 10**6
    assert handshake(a_wall - NOW, a_wall - 3 * 10**6 - (NOW - SKEW)) == Reason.ACK_VALID
    assert handshake(a_wall - NOW, a_wall - 10 * 10**9 - (NOW - SKEW)) == Reason.ACK_INVALID
    # A cookie of the tick before, near the boundary, is still taken (its
    # own tick is tried first).
    a_wall = boundary - TICK_NS - TICK_NS // 2
    assert handshake(a_wall - NOW, boundary - 10**6 - (NOW - SKEW)) == Reason.ACK_VALID


def test_without_the_offset_the_ticks_differ() -> None:
    """What the offset fixes: on monotonic clocks alone, B counts the cookie
    as made two ticks ago and refuses it."""
    assert handshake(0, 0) == Reason.ACK_INVALID
