"""Do no harm: the guard answers only where the kernel would, as the kernel would.

Each test here failed before its fix (issue 11): the link's MTU, ECN, cookie
age, the SYN-flood threshold, martians, checksums, closed ports, reset mode's
unverified segments, VLAN depth. Frames run through the real object
(BPF_PROG_TEST_RUN); where the host's own view matters (sockets, addresses,
an interface's MTU) inside a scratch namespace.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet

from xdpshield.shield import cookie, datapath
from xdpshield.shield.datapath import Reason

from .hostns import scratch_host, set_mtu
from .model import XDP_DROP, XDP_PASS, XDP_TX
from .test_guard import (
    CLIENT4,
    CLIENT6,
    CMAC,
    EPOCH,
    IP4,
    IP6,
    K2,
    NOW,
    OPTION_SETS,
    PORT,
    SERVER4,
    SERVER6,
    SMAC,
    Guard,
    ack_for,
    data_seg,
    eth,
    expected_synack,
    load,
    syn,
)
from .test_guard import guard as guard  # the fixture

LINUX = OPTION_SETS["linux"]
TICK_NS = 1 << cookie.TICK_SHIFT


def synack_of(ran_frame: bytes) -> Any:
    """The TCP layer of a reply (scapy's fields are untyped)."""
    return Ether(ran_frame)[TCP]


# -- 1. the MSS follows the link's MTU ----------------------------------------------------
@pytest.mark.parametrize(
    ("mtu", "v6", "want"),
    [(1400, False, 1360), (1400, True, 1340), (9000, False, 8960), (9000, True, 8940)],
)
def test_synack_mss_comes_from_the_interface_mtu(mtu: int, v6: bool, want: int) -> None:
    with scratch_host(mtu=mtu) as host, load(mss4=0, mss6=0) as coll:
        g = Guard(coll)
        frame = syn(eth() / (IP6 if v6 else IP4), [("MSS", 9000), *LINUX[1:]])
        ran = g.run(frame, ifindex=host.ifindex)
        assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
        sa = synack_of(ran.frame)
        assert dict(sa.options)["MSS"] == want
        # The cookie's top class is the link's MSS: the client's 9000 fits in it.
        assert sa.seq & 3 == 3


def test_mss_follows_an_mtu_change() -> None:
    """The link's MSS is cached per CPU for one 134 ms window (the helper
    that reads it costs a third of the SYN path): a change shows within it."""
    with scratch_host(mtu=1500) as host, load(mss4=0, mss6=0, fixed_now_ns=0) as coll:
        g = Guard(coll)
        frame = syn(eth() / IP4, LINUX)

        def offered() -> int:
            return int(dict(synack_of(g.run(frame, ifindex=host.ifindex).frame).options)["MSS"])

        assert offered() == 1460
        set_mtu(host, 1280)
        deadline = time.monotonic() + 2.0
        while offered() != 1240:
            assert time.monotonic() < deadline, "the MTU change was not followed"
            time.sleep(0.02)


def test_handshake_ack_decodes_the_link_mss_class() -> None:
    """Transparent mode hands the kernel the class the cookie names, clipped
    to the link: a client's 1460 on a 1400-byte link becomes 1360."""
    with scratch_host(mtu=1400) as host, load(mss4=0, mss6=0, transparent=True) as coll:
        g = Guard(coll)
        sa = synack_of(g.run(syn(eth() / IP4, LINUX), ifindex=host.ifindex).frame)
        ts = dict(sa.options)["Timestamp"][0]
        ack = (
            eth()
            / IP4
            / TCP(
                sport=40000,
                dport=PORT,
                flags="A",
                seq=1001,
                ack=sa.seq + 1,
                options=[("NOP", None), ("NOP", None), ("Timestamp", (5, ts))],
            )
        )
        ran = g.run(ack, ifindex=host.ifindex)
        assert (ran.verdict, ran.reason) == (XDP_PASS, Reason.ACK_VALID)
        meta = datapath.Meta.decode(ran.frame[: datapath.META.size])
        assert meta.mss == 1360


# -- 3. ECN: offered only where both ends will agree --------------------------------------
def test_ecn_setup_syn_gets_ece_when_the_server_takes_ecn() -> None:
    with load() as coll:
        sa = synack_of(Guard(coll).run(syn(eth() / IP4, LINUX, flags="SEC")).frame)
    assert sa.flags == "SAE"
    assert cookie.decode_tsval(dict(sa.options)["Timestamp"][0]).ecn


def test_no_ecn_when_the_server_has_it_off() -> None:
    with load(ecn=False) as coll:
        sa = synack_of(Guard(coll).run(syn(eth() / IP4, LINUX, flags="SEC")).frame)
    assert sa.flags == "SA"
    assert not cookie.decode_tsval(dict(sa.options)["Timestamp"][0]).ecn


def test_no_ecn_without_timestamps_to_carry_it() -> None:
    with load() as coll:
        sa = synack_of(Guard(coll).run(syn(eth() / IP4, [("MSS", 1460)], flags="SEC")).frame)
    assert sa.flags == "SA"


# -- 5. a cookie's age is bounded in the data path ----------------------------------------
@pytest.mark.parametrize(
    ("later_ns", "valid"),
    [(0, True), (60 * 10**9, True), (TICK_NS, True), (2 * TICK_NS, False), (203 * 10**9, False)],
)
def test_cookie_expires_without_any_key_rotation(later_ns: int, valid: bool) -> None:
    start = NOW >> cookie.TICK_SHIFT << cookie.TICK_SHIFT  # made at a tick's start
    with load(fixed_now_ns=start) as coll:
        sa = synack_of(Guard(coll).run(syn(eth() / IP4, [])).frame)
    with load(fixed_now_ns=start + later_ns) as coll:  # same keys, never rotated
        ack = eth() / IP4 / TCP(sport=40000, dport=PORT, flags="A", seq=1001, ack=sa.seq + 1)
        ran = Guard(coll).run(ack)
    assert ran.reason == (Reason.ACK_VALID if valid else Reason.ACK_INVALID)


# -- 2. transparent mode answers with cookies only under a SYN flood ----------------------
def flood_pps(per_window: int) -> int:
    """A syn_flood_pps that turns flood mode on at ``per_window`` per window."""
    return round(per_window * 10**9 / datapath.WIN_NS)


def test_below_the_threshold_syns_go_to_the_kernel() -> None:
    with load(transparent=True, syn_flood_pps=flood_pps(3)) as coll:
        g = Guard(coll)
        frame = syn(eth() / IP4, [("MSS", 1460), ("WScale", 7)])  # no timestamps
        for _ in range(2):
            ran = g.run(frame)
            assert (ran.verdict, ran.reason) == (XDP_PASS, Reason.SYN_UNDER_THRESHOLD)
            assert ran.frame == bytes(frame)
        ran = g.run(frame)  # the third in one window: a flood
        assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
        assert sum(s.floods for s in datapath.cpu_states(coll.maps)) == 1
        assert any(s.flood for s in datapath.cpu_states(coll.maps))


def test_stray_acks_go_to_the_kernel_until_a_flood() -> None:
    """An ACK that is neither a socket's nor ours may carry the kernel's own
    cookie: while no flood is on, the kernel judges it."""
    with load(transparent=True, syn_flood_pps=flood_pps(3)) as coll:
        g = Guard(coll)
        stray = data_seg(eth() / IP4, "A")
        for _ in range(2):
            ran = g.run(stray)
            assert (ran.verdict, ran.reason) == (XDP_PASS, Reason.STRAY_UNDER_THRESHOLD)
        assert g.run(stray).reason == Reason.ACK_INVALID
        assert g.run(syn(eth() / IP4, [])).reason == Reason.SYN_COOKIE_SENT


def test_flood_mode_ends_after_calm_windows() -> None:
    """Hysteresis on the real clock: on at once, off only after flood_off_s
    with fewer than half the threshold."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # the flood state is per CPU
    with (
        contextlib.ExitStack() as undo,
        load(transparent=True, syn_flood_pps=flood_pps(5), flood_off_s=0.3, fixed_now_ns=0) as c,
    ):
        undo.callback(os.sched_setaffinity, 0, cpus)
        g = Guard(c)
        frame = syn(eth() / IP4, [])
        while g.run(frame).reason != Reason.SYN_COOKIE_SENT:
            pass
        time.sleep(0.2)  # under the 0.3 s: still on
        assert g.run(frame).reason == Reason.SYN_COOKIE_SENT
        time.sleep(0.7)  # several calm windows
        assert g.run(frame).reason == Reason.SYN_UNDER_THRESHOLD
        assert not any(s.flood for s in datapath.cpu_states(c.maps))


# -- 6. martians -------------------------------------------------------------------------
MARTIANS: dict[str, Packet] = {
    "src-broadcast": Ether(src=CMAC, dst=SMAC) / IP(src="255.255.255.255", dst=SERVER4),
    "src-multicast": Ether(src=CMAC, dst=SMAC) / IP(src="224.0.0.5", dst=SERVER4),
    "src-loopback": Ether(src=CMAC, dst=SMAC) / IP(src="127.0.0.1", dst=SERVER4),
    "src-zero": Ether(src=CMAC, dst=SMAC) / IP(src="0.0.0.0", dst=SERVER4),
    "land": Ether(src=CMAC, dst=SMAC) / IP(src=SERVER4, dst=SERVER4),
    "dst-broadcast": Ether(src=CMAC, dst=SMAC) / IP(src=CLIENT4, dst="255.255.255.255"),
    "dst-multicast": Ether(src=CMAC, dst=SMAC) / IP(src=CLIENT4, dst="239.1.2.3"),
    "dst-zero": Ether(src=CMAC, dst=SMAC) / IP(src=CLIENT4, dst="0.1.2.3"),
    "mac-broadcast": Ether(src=CMAC, dst="ff:ff:ff:ff:ff:ff") / IP4,
    "mac-multicast": Ether(src=CMAC, dst="01:00:5e:00:00:01") / IP4,
    "v6-src-multicast": Ether(src=CMAC, dst=SMAC) / IPv6(src="ff02::1", dst=SERVER6),
    "v6-dst-multicast": Ether(src=CMAC, dst=SMAC) / IPv6(src=CLIENT6, dst="ff02::1"),
    "v6-src-loopback": Ether(src=CMAC, dst=SMAC) / IPv6(src="::1", dst=SERVER6),
    "v6-src-unspecified": Ether(src=CMAC, dst=SMAC) / IPv6(src="::", dst=SERVER6),
    "v6-src-v4mapped": Ether(src=CMAC, dst=SMAC) / IPv6(src="::ffff:198.18.0.1", dst=SERVER6),
    "v6-land": Ether(src=CMAC, dst=SMAC) / IPv6(src=SERVER6, dst=SERVER6),
}


@pytest.mark.parametrize("transparent", [False, True], ids=["reset", "transparent"])
@pytest.mark.parametrize("name", MARTIANS)
def test_martian_syns_are_dropped_unanswered(name: str, transparent: bool) -> None:
    with load(transparent=transparent) as coll:
        ran = Guard(coll).run(syn(MARTIANS[name], LINUX))
    assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.MARTIAN)


def host_view(coll: Any, mac: str = SMAC) -> None:
    datapath.set_local_addresses(
        coll.maps,
        {
            SERVER4: datapath.LOCAL_UNICAST,
            "198.18.0.255": datapath.LOCAL_BROADCAST,
            SERVER6: datapath.LOCAL_UNICAST,
        },
    )
    datapath.set_mac(coll.maps, mac)


def load_host(**opts: Any) -> Any:
    """A shield that knows its host's addresses and MAC, as Shield.load fills them."""
    from xdpshield.ebpf import ObjectSpec

    from .model import OBJ, TEST_OPTIONS, xdp_only

    spec = xdp_only(ObjectSpec(OBJ))
    gopts = datapath.GuardOptions(fixed_now_ns=NOW, **(TEST_OPTIONS | opts))
    spec.set_constants(**datapath.constants(gopts, local_known=True))
    coll = spec.load()
    datapath.set_ports(coll.maps, [PORT])
    datapath.set_keys(coll.maps, K2, None, epoch=EPOCH)
    host_view(coll)
    return coll


@pytest.mark.parametrize(
    ("frame", "transparent", "reason"),
    [
        (eth() / IP4, True, Reason.SYN_COOKIE_SENT),
        (eth() / IP6, True, Reason.SYN_COOKIE_SENT),
        # not one of the host's addresses: not ours to answer for its sockets
        (eth() / IP(src=CLIENT4, dst="198.18.0.7"), True, Reason.MARTIAN),
        (eth() / IPv6(src=CLIENT6, dst="fd00:3::7"), True, Reason.MARTIAN),
        # reset mode stands in front of other hosts too
        (eth() / IP(src=CLIENT4, dst="198.18.0.7"), False, Reason.SYN_COOKIE_SENT),
        (eth() / IP(src=CLIENT4, dst="198.18.0.255"), False, Reason.MARTIAN),
        (eth() / IP(src="198.18.0.255", dst=SERVER4), False, Reason.MARTIAN),
        (Ether(src=CMAC, dst="02:00:00:00:00:99") / IP4, False, Reason.MARTIAN),
    ],
)
def test_destinations_judged_by_the_hosts_view(
    frame: Packet, transparent: bool, reason: Reason
) -> None:
    with load_host(transparent=transparent) as coll:
        assert Guard(coll).run(syn(frame, LINUX)).reason == reason


# -- 7. checksums ------------------------------------------------------------------------
def corrupt(frame: Packet, layer: type[Packet]) -> bytes:
    pkt = Ether(bytes(frame))
    pkt[layer].chksum = (pkt[layer].chksum + 1) & 0xFFFF
    return bytes(pkt)


@pytest.mark.parametrize(
    ("frame", "layer"),
    [
        (syn(eth() / IP4, LINUX), IP),
        (syn(eth() / IP4, LINUX), TCP),
        (syn(eth() / IP6, LINUX), TCP),
        (syn(eth(Dot1AD(vlan=1), Dot1Q(vlan=2)) / IP4, []) / b"data", TCP),
    ],
    ids=["ipv4-header", "tcp-v4", "tcp-v6", "qinq-tcp-with-payload"],
)
def test_bad_checksum_syn_is_dropped(guard: Guard, frame: Packet, layer: type[Packet]) -> None:
    ran = guard.run(corrupt(frame, layer))
    assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.BAD_CHECKSUM)
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)


@pytest.mark.parametrize("l3", [IP4, IP6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("optlen", range(0, 44, 4))
def test_every_word_of_a_syn_header_is_summed(guard: Guard, l3: Packet, optlen: int) -> None:
    """A SYN's TCP header is summed at constant offsets, one case per length:
    a bit flipped in its last word (the checksum left as it was) is caught."""
    opts: list[tuple[str, Any]] = [("MSS", 1460)] if optlen else []
    opts += [("NOP", None)] * (optlen - 4)
    frame = bytes(syn(eth() / l3, opts))
    assert len(Ether(frame)[TCP]) == 20 + optlen
    assert guard.run(frame).reason == Reason.SYN_COOKIE_SENT
    bad = bytearray(frame)
    bad[-1] ^= 1  # the header's last byte: a NOP, the MSS or the urgent pointer
    assert guard.run(bytes(bad)).reason == Reason.BAD_CHECKSUM


def test_offloaded_checksum_is_taken_as_the_kernel_takes_it(guard: Guard) -> None:
    """Over veth a local stack's SYN carries only the pseudo-header sum
    (CHECKSUM_PARTIAL, completed by no one before XDP): the kernel accepts
    it, so the shield answers it; any other wrong value is dropped."""
    frame = Ether(bytes(syn(eth() / IP4, LINUX)))
    tcp_len = len(frame[TCP])
    pseudo = (
        socket.inet_aton(CLIENT4)
        + socket.inet_aton(SERVER4)
        + bytes([0, 6])
        + tcp_len.to_bytes(2, "big")
    )
    total = sum(int.from_bytes(pseudo[i : i + 2], "big") for i in range(0, 12, 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    frame[TCP].chksum = total
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
    frame[TCP].chksum = total ^ 0x100
    assert guard.run(frame).reason == Reason.BAD_CHECKSUM


def test_odd_length_syn_checksum_verifies(guard: Guard) -> None:
    frame = syn(eth() / IP6, LINUX) / b"odd"
    assert guard.run(frame).reason == Reason.SYN_COOKIE_SENT
    assert guard.run(corrupt(frame, TCP)).reason == Reason.BAD_CHECKSUM


# -- 8. closed ports answer RST, as the kernel would -------------------------------------
def rst_to_client(sport: int, *, seq: int, ack: int, flags: str) -> bytes:
    """The RST the shield builds in place, to the client's port 40000."""
    ip = IP(src=SERVER4, dst=CLIENT4, id=0, flags="DF", ttl=64)
    tcp = TCP(sport=sport, dport=40000, seq=seq, ack=ack, flags=flags, window=0)
    return bytes(Ether(src=SMAC, dst=CMAC) / ip / tcp)


def test_syn_to_a_port_nothing_listens_on_gets_an_rst() -> None:
    with scratch_host(), socket.socket() as lst:
        lst.bind((SERVER4, 0))
        lst.listen(8)
        open_port = lst.getsockname()[1]
        closed = open_port + 1 if open_port < 65535 else open_port - 1
        with load(transparent=True, listener_check=True, rst_pps=100) as coll:
            datapath.set_ports(coll.maps, [open_port, closed])
            datapath.set_listening(coll.maps, [])
            g = Guard(coll)
            ran = g.run(eth() / IP4 / TCP(sport=40000, dport=open_port, flags="S", seq=77))
            assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
            assert datapath.get_listening(coll.maps) == {open_port}, "found and marked"
            frame = eth() / IP4 / TCP(sport=40000, dport=closed, flags="S", seq=77)
            ran = g.run(frame)
            assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_NO_LISTENER)
            assert ran.frame == rst_to_client(closed, seq=0, ack=78, flags="RA")


def test_rsts_are_capped_per_cpu() -> None:
    with load(transparent=True, listener_check=True, rst_pps=8) as coll:  # 1 per window
        datapath.set_listening(coll.maps, [])
        g = Guard(coll)
        frame = eth() / IP4 / TCP(sport=40000, dport=PORT, flags="S", seq=1)
        assert g.run(frame).reason == Reason.SYN_NO_LISTENER
        assert g.run(frame).reason == Reason.RST_CAPPED


# -- 4. reset mode: no connection dies for want of verification --------------------------
def test_reset_mode_unverified_segment_with_a_socket_passes_and_verifies() -> None:
    """A connection from before the shield (or idle past the expiry)."""
    with scratch_host(), socket.socket() as lst:
        lst.bind((SERVER4, 0))
        lst.listen(1)
        port = lst.getsockname()[1]
        with socket.create_connection((SERVER4, port), source_address=(CLIENT4, 0)) as cli:
            srv, _ = lst.accept()
            with srv, load(rst_pps=100) as coll:
                datapath.set_ports(coll.maps, [port])
                g = Guard(coll)
                seg = (
                    eth()
                    / IP4
                    / TCP(sport=cli.getsockname()[1], dport=port, flags="PA", seq=1, ack=2)
                    / b"late"
                )
                # Only sources that had a socket here are looked up (a
                # forged-ACK flood is not): Shield.load marks the peers of
                # the sockets it finds.
                assert g.run(seg).reason == Reason.NOT_VERIFIED_RST
                datapath.mark_seen(coll.maps, [CLIENT4])
                ran = g.run(seg)
                assert (ran.verdict, ran.reason) == (XDP_PASS, Reason.ESTABLISHED_PASS)
                assert ran.frame == bytes(seg)
                assert {str(a) for a in datapath.verified_sources(coll.maps)} == {CLIENT4}


def test_reset_mode_answers_an_unverified_segment_with_an_rst() -> None:
    with load(rst_pps=100) as coll:
        g = Guard(coll)
        seg = data_seg(eth() / IP4)
        ran = g.run(seg)
        assert (ran.verdict, ran.reason) == (XDP_TX, Reason.NOT_VERIFIED_RST)
        assert ran.frame == rst_to_client(PORT, seq=6000, ack=0, flags="R")
        # never an RST to an RST
        ran = g.run(data_seg(eth() / IP4, "R"))
        assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.NOT_VERIFIED)
        # a valid handshake ACK still verifies, and then everything passes
        assert g.run(ack_for(eth() / IP4, K2, EPOCH)).reason == Reason.ACK_VALID
        assert g.run(seg).reason == Reason.VERIFIED_PASS


# -- 10. VLAN depth ----------------------------------------------------------------------
def test_three_vlan_tags_are_dropped_and_counted(guard: Guard) -> None:
    frame = syn(eth(Dot1AD(vlan=1), Dot1Q(vlan=2), Dot1Q(vlan=3)) / IP4, LINUX)
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.VLAN_TOO_DEEP)
    # two tags are judged as ever
    assert guard.run(syn(eth(Dot1AD(vlan=1), Dot1Q(vlan=2)) / IP4, LINUX)).verdict == XDP_TX


def test_synack_still_byte_exact_with_every_check_on(guard: Guard) -> None:
    frame = syn(eth() / IP4, LINUX)
    assert guard.run(frame).frame == expected_synack(frame)
