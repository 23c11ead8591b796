"""Transparent mode's XDP side in the kernel (BPF_PROG_TEST_RUN).

A handshake ACK with a valid cookie passes with the decoded cookie in 16 bytes
of XDP metadata (test-run returns them in front of the frame); a forged one
is dropped; a segment of a socket the kernel has passes untouched. The tc
handoff that consumes the metadata cannot run under test-run (the kfunc
refuses it there): tests/stand/test_transparent.py tests it live.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet

from xdpshield.ebpf import Collection, UInt
from xdpshield.shield import cookie, datapath
from xdpshield.shield.datapath import META, Meta

from .hostns import scratch_host
from .model import XDP_DROP, XDP_PASS, XDP_TX
from .test_do_no_harm import flood_pps
from .test_guard import CLIENT4, CLIENT6, EPOCH, K1, K2, NOW, PORT, SERVER4, SERVER6, Guard, eth
from .test_guard import load as load_guard

LINUX_SYN = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0xDEADBEEF, 0)), ("NOP", None)]


def load(**opts: Any) -> Collection:
    return load_guard(transparent=True, **opts)


@pytest.fixture
def guard() -> Iterator[Guard]:
    with load() as coll:
        yield Guard(coll)


def _ip4() -> Packet:
    return IP(src=CLIENT4, dst=SERVER4)


def _ip6() -> Packet:
    return IPv6(src=CLIENT6, dst=SERVER6)


L3: dict[str, Callable[[], Packet]] = {"ipv4": _ip4, "ipv6": _ip6}


def handshake(
    g: Guard, l3: Packet, syn_opts: list[tuple[str, Any]], flags: str = "S"
) -> tuple[int, int | None]:
    """Send a SYN through XDP; returns (cookie, our TSval or None) from its SYN-ACK."""
    ran = g.run(eth() / l3 / TCP(sport=40000, dport=PORT, seq=1000, flags=flags, options=syn_opts))
    assert ran.verdict == XDP_TX
    sa = (IP if l3.haslayer(IP) else IPv6)(ran.frame[14:])[TCP]
    ts = dict(sa.options).get("Timestamp")
    return sa.seq, ts[0] if ts else None


def run_ack(g: Guard, frame: Packet) -> tuple[int, Meta | None, str]:
    raw = bytes(frame)
    ran = g.run(raw)
    extra = len(ran.frame) - len(raw)
    assert extra in (0, META.size)
    meta = Meta.decode(ran.frame[: META.size]) if extra else None
    assert ran.frame[extra:] == raw, "the segment itself passes unchanged"
    return ran.verdict, meta, ran.reason.label


WS = ("WScale", 9)
CASES: dict[str, tuple[list[tuple[str, Any]], int | None, bool, bool]] = {
    # name: SYN options, client wscale, SACK, ECN (SYN with ECE|CWR)
    "linux": ([*LINUX_SYN, WS], 9, True, False),
    "linux-ecn": ([*LINUX_SYN, WS], 9, True, True),
    "ts-no-sack-no-ws": ([("MSS", 1300), ("Timestamp", (77, 0))], None, False, False),
    "ts-ws-no-sack": ([("MSS", 1440), ("WScale", 2), ("Timestamp", (77, 0))], 2, False, False),
}


@pytest.mark.parametrize("l3name", L3)
@pytest.mark.parametrize("case", CASES)
def test_valid_ack_passes_with_the_decoded_cookie(guard: Guard, l3name: str, case: str) -> None:
    syn_opts, ws, sack, ecn = CASES[case]
    v6 = l3name == "ipv6"
    ck, our_ts = handshake(guard, L3[l3name](), syn_opts, "SEC" if ecn else "S")
    assert our_ts is not None
    mss_opt = dict(syn_opts)["MSS"]
    ack = TCP(
        sport=40000,
        dport=PORT,
        seq=1001,
        ack=ck + 1,
        flags="A",
        options=[("NOP", None), ("NOP", None), ("Timestamp", (0x11223344, our_ts))],
    )
    verdict, meta, reason = run_ack(guard, eth() / L3[l3name]() / ack)
    assert (verdict, reason) == (XDP_PASS, "ack-valid")
    table = cookie.mss_table(v6, 1440 if v6 else 1460)
    assert meta == Meta(
        tsval=0x11223344,
        tsecr=our_ts,
        mss=table[cookie.mss_index(mss_opt, v6, table[3])],
        timestamps=True,
        sack=sack,
        wscale=ws,
        ecn=ecn,
    )


def test_timestamps_found_in_any_option_layout(guard: Guard) -> None:
    ck, our_ts = handshake(guard, L3["ipv4"](), [*LINUX_SYN, WS])
    # SACK blocks before the timestamps: the general option walk finds them.
    opts: list[tuple[str, Any]] = [("NOP", None), ("NOP", None), ("SAck", (5000, 6000))]
    opts += [("NOP", None), ("NOP", None), ("Timestamp", (99, our_ts))]
    frame = (
        eth()
        / L3["ipv4"]()
        / TCP(sport=40000, dport=PORT, seq=1001, ack=ck + 1, flags="A", options=opts)
    )
    verdict, meta, _ = run_ack(guard, frame)
    assert verdict == XDP_PASS and meta is not None
    assert (meta.tsval, meta.tsecr, meta.wscale, meta.sack) == (99, our_ts, 9, True)


def test_ack_without_timestamps_carries_mss_only(guard: Guard) -> None:
    ck, our_ts = handshake(guard, L3["ipv4"](), [("MSS", 1460)])
    assert our_ts is None
    frame = eth() / L3["ipv4"]() / TCP(sport=40000, dport=PORT, seq=1001, ack=ck + 1, flags="PA")
    verdict, meta, _ = run_ack(guard, frame / b"GET / HTTP/1.1\r\n\r\n")
    assert verdict == XDP_PASS
    assert meta == Meta(0, 0, 1460, False, False, None, False)


def test_previous_key_still_verifies(guard: Guard) -> None:
    ck = cookie.make_cookie(K1, EPOCH - 1, CLIENT4, SERVER4, 40000, PORT, 1000, 2, now_ns=NOW)
    frame = eth() / L3["ipv4"]() / TCP(sport=40000, dport=PORT, seq=1001, ack=ck + 1, flags="A")
    verdict, meta, _ = run_ack(guard, frame)
    assert verdict == XDP_PASS and meta is not None and meta.mss == 1440


FORGED: dict[str, tuple[dict[str, Any], str]] = {
    "random-ack": ({"ack": 0x12345678}, "ack-invalid"),
    "ack-off-by-one": ({"ack_delta": 2}, "ack-invalid"),
    "wrong-isn": ({"seq": 5000}, "ack-invalid"),
    "other-sport": ({"sport": 40001}, "ack-invalid"),
    # A valid cookie does not make an RST or a bare FIN a handshake.
    "rst-with-cookie": ({"flags": "RA"}, "not-verified"),
    "fin-without-ack": ({"flags": "F"}, "not-verified"),
}


@pytest.mark.parametrize("name", FORGED)
def test_forged_segments_are_dropped(guard: Guard, name: str) -> None:
    over, want = FORGED[name]
    over = dict(over)
    ck = cookie.make_cookie(K2, EPOCH, CLIENT4, SERVER4, 40000, PORT, 1000, 3, now_ns=NOW)
    ack = over.pop("ack", ck + int(over.pop("ack_delta", 1)))
    fields: dict[str, Any] = {"sport": 40000, "dport": PORT, "seq": 1001, "ack": ack, "flags": "A"}
    frame = eth() / L3["ipv4"]() / TCP(**(fields | over))
    verdict, meta, reason = run_ack(guard, frame)
    assert (verdict, meta) == (XDP_DROP, None)
    assert reason == want


# -- the cookies offered (xs_offered) --------------------------------------------------
TICK = cookie.tick(NOW)  # the frozen clock's cookie tick (xs_clock's offset is 0)


def _recorded_keys(coll: Collection) -> tuple[bytes, int]:
    """Both key slots written by rotations (KEY_RECORDED); the current (key, epoch)."""
    datapath.rotate_keys(coll.maps)
    datapath.rotate_keys(coll.maps)
    slots = datapath.key_slots(coll.maps)
    epoch = datapath.current_epoch(coll.maps)
    assert epoch is not None and slots[epoch & 1][1] == epoch
    return slots[epoch & 1][0], epoch


def _read_tick(coll: Collection, name: str, slot: int) -> int:
    """The byte in ``slot`` of the tick map ``name`` (8 to a word, guard.h)."""
    word = coll.maps[name].typed(UInt(4), UInt(8)).lookup(slot >> 3)
    return int(word) >> (slot & 7) * 8 & 0xFF


def _write_tick(coll: Collection, name: str, slot: int, tick: int) -> None:
    """Write cookie tick ``tick``'s byte into ``slot`` of the tick map ``name``."""
    m = coll.maps[name].typed(UInt(4), UInt(8))
    word = m.lookup(slot >> 3)
    shift = (slot & 7) * 8
    m.update(slot >> 3, word & ~(0xFF << shift) | datapath.tick_byte(tick) << shift)


def _set_offered(coll: Collection, addr: str, tick: int, sport: int = 40000) -> None:
    """Record ``addr``:``sport`` as sent a cookie in ``tick`` (the SYN path's byte)."""
    _write_tick(coll, "xs_offered", datapath.offered_slot(addr, sport, PORT), tick)


def _offered(coll: Collection, addr: str, sport: int = 40000) -> int:
    return _read_tick(coll, "xs_offered", datapath.offered_slot(addr, sport, PORT))


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_an_ack_to_no_cookie_offered_is_not_ours(family: str) -> None:
    """Once the filter of cookies offered is trusted, an ACK from a source
    the shield sent no cookie in the last two ticks is dropped before the
    SipHash, even with a cookie the hash would pass (only a shield minting
    with the same key could have sent it, and a rotated key is this
    shield's alone). Untrusted, or under a key written from outside (a
    fleet's), the hash decides. A SYN answered records its source."""
    client, server = (CLIENT4, SERVER4) if family == "ipv4" else (CLIENT6, SERVER6)
    with load(keys=False) as coll:
        key, epoch = _recorded_keys(coll)
        assert datapath.key_slots(coll.maps).keys() == {0, 1}
        g = Guard(coll)
        ck = cookie.make_cookie(key, epoch, client, server, 40000, PORT, 1000, 2, now_ns=NOW)
        ack = eth() / L3[family]() / TCP(sport=40000, dport=PORT, seq=1001, ack=ck + 1, flags="A")

        def check(frame: Packet) -> tuple[int, str]:
            # A source that passed is marked (xs_seen): its next ACKs would go
            # to the kernel; forgotten, each check is a stranger's.
            datapath.rebuild_seen(coll.maps, lambda: [])
            return run_ack(g, frame)[::2]

        datapath.trust_offered(coll.maps, TICK)
        assert check(ack) == (XDP_DROP, "ack-invalid")
        datapath.trust_offered(coll.maps, TICK + 1)  # from the next tick on
        assert check(ack) == (XDP_PASS, "ack-valid")
        datapath.trust_offered(coll.maps, 0)  # never
        assert check(ack) == (XDP_PASS, "ack-valid")
        datapath.trust_offered(coll.maps, TICK)
        # Its SYN answered, the source is recorded in this tick: checked, passed.
        sent, _ = handshake(g, L3[family](), [("MSS", 1460)])
        assert _offered(coll, client) == datapath.tick_byte(TICK)
        ok = eth() / L3[family]() / TCP(sport=40000, dport=PORT, seq=1001, ack=sent + 1, flags="A")
        assert check(ok) == (XDP_PASS, "ack-valid")
        # A cookie is valid in its tick and the next: recorded two ticks ago is too old.
        _set_offered(coll, client, TICK - 1)
        assert check(ok) == (XDP_PASS, "ack-valid")
        _set_offered(coll, client, TICK - 2)
        assert check(ok) == (XDP_DROP, "ack-invalid")
        # Noted by a clock a moment ahead (the next tick): still ours.
        _set_offered(coll, client, TICK + 1)
        assert check(ok) == (XDP_PASS, "ack-valid")
        _set_offered(coll, client, TICK + 2)
        assert check(ok) == (XDP_DROP, "ack-invalid")
        # A key written from outside (the fleet's: other shields mint with it).
        datapath.write_key_slot(coll.maps, epoch & 1, key, epoch)
        assert check(ok) == (XDP_PASS, "ack-valid")


def test_a_segment_overtaking_our_handshakes_ack_is_not_the_kernels() -> None:
    """Under a flood a marked source's ACK that is neither a socket's nor
    ours goes to the kernel only for the source and ports of a SYN the
    kernel answered: a segment of a handshake the shield answered that
    overtook its ACK (a FIN, more data) would draw the kernel's RST, which
    kills the connection the ACK then makes. Dropped, it is sent again (the
    stand's shared link reordered such a FIN). Another connection of the
    same source (a NAT's, a browser's) whose SYN the kernel answered still
    goes to the kernel."""
    with load() as coll:  # no threshold: a flood, always
        g = Guard(coll)
        fin = eth() / _ip4() / TCP(sport=40000, dport=PORT, seq=7000, ack=0x5EED, flags="FA")
        assert datapath.mark_seen(coll.maps, [CLIENT4]) == 1
        assert run_ack(g, fin)[::2] == (XDP_DROP, "ack-invalid")
        _kernel_answered(coll, CLIENT4, TICK, sport=40001)
        assert run_ack(g, fin)[::2] == (XDP_DROP, "ack-invalid")
        ack = eth() / _ip4() / TCP(sport=40001, dport=PORT, seq=7, ack=0x5EED, flags="A")
        assert run_ack(g, ack)[::2] == (XDP_PASS, "ack-seen-pass")


def test_a_load_trusts_the_filter_once_older_cookies_expired() -> None:
    """start_offered (every load and upgrade) trusts the filter from three
    ticks on: a cookie minted before the load (same keys, kept across a
    reload) is valid for two, and was not recorded by this object."""
    with load(keys=False) as coll:
        key, epoch = _recorded_keys(coll)
        g = Guard(coll)
        ck = cookie.make_cookie(key, epoch, CLIENT4, SERVER4, 40000, PORT, 1000, 2, now_ns=NOW)
        ack = eth() / _ip4() / TCP(sport=40000, dport=PORT, seq=1001, ack=ck + 1, flags="A")
        tick_ns = 1 << cookie.TICK_SHIFT
        datapath.start_offered(coll.maps, now_ns=NOW - 3 * tick_ns)
        assert run_ack(g, ack)[::2] == (XDP_DROP, "ack-invalid")
        datapath.start_offered(coll.maps, now_ns=NOW - 2 * tick_ns)
        assert run_ack(g, ack)[::2] == (XDP_PASS, "ack-valid")
        datapath.rebuild_seen(coll.maps, lambda: [])
        assert datapath.start_offered(coll.maps, now_ns=NOW) == TICK + 3
        assert run_ack(g, ack)[::2] == (XDP_PASS, "ack-valid")


@contextlib.contextmanager
def loopback_connection() -> Iterator[tuple[int, int]]:
    """An established connection over this namespace's loopback (test-run
    looks sockets up here): yields (listening port, client port)."""
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        with socket.create_connection(("127.0.0.1", lst.getsockname()[1])) as cli:
            srv, _ = lst.accept()
            with srv:
                yield lst.getsockname()[1], cli.getsockname()[1]


def marked(coll: Collection, addr: str) -> bool:
    """Is ``addr``'s bit set in the seen-sources filter?"""
    bit = datapath.seen_bit(addr)
    word = coll.maps["xs_seen"].typed(UInt(4), UInt(8)).lookup(bit >> 6)
    return bool(word >> (bit & 63) & 1)


def _data_segment(sport: int, dport: int) -> Packet:
    seg = IP(src="127.0.0.1", dst="127.0.0.1") / TCP(
        sport=sport, dport=dport, seq=1, ack=2, flags="PA"
    )
    return eth() / seg / b"data"


def test_established_socket_passes_without_a_cookie() -> None:
    """Under a flood, a segment of a connection the kernel has passes,
    whatever its seq/ack, when its source is marked as having had a socket
    here (the shield marks the peers of the sockets there are when it loads)."""
    with loopback_connection() as (lport, cport), load() as coll:
        datapath.set_ports(coll.maps, [lport])
        assert datapath.mark_seen(coll.maps, ["127.0.0.1"]) == 1
        g = Guard(coll)
        verdict, meta, reason = run_ack(g, _data_segment(cport, lport))
        assert (verdict, meta, reason) == (XDP_PASS, None, "established-pass")
        # The same segment from a port with no socket: forged, dropped (its
        # source had a socket, but no SYN of it went to the kernel lately).
        other = cport + 1 if cport < 65535 else cport - 1
        verdict, _, reason = run_ack(g, _data_segment(other, lport))
        assert (verdict, reason) == (XDP_DROP, "ack-invalid")


def _kernel_answered(coll: Collection, addr: str, tick: int, sport: int = 40000) -> None:
    """Record ``addr``:``sport``'s SYN as passed to the kernel in ``tick``
    (what a SYN under the threshold writes)."""
    _write_tick(coll, "xs_kern_syn", datapath.kern_syn_slot(addr, sport, PORT), tick)


def test_an_ack_after_a_syn_the_kernel_answered_goes_to_the_kernel() -> None:
    """With no flood on, a SYN goes to the kernel, which may answer with a
    cookie of its own (net.ipv4.tcp_syncookies=2, or its SYN queue full)
    and keep no socket. Once a flood is on, that handshake's ACK is neither
    a socket's nor ours: it passes to the kernel (``ack-seen-pass``), where
    it was dropped as forged and the client, connected, waited out its
    timeout. Only for a source whose SYN the kernel answered in the last
    two ticks; other sources' ACKs, and what is not a handshake ACK, are
    still dropped."""
    with load(syn_flood_pps=flood_pps(2)) as coll:  # the second SYN a flood
        g = Guard(coll)

        def seg(src: str, flags: str) -> Packet:
            ip = IP(src=src, dst=SERVER4)
            return eth() / ip / TCP(sport=40000, dport=PORT, seq=7, ack=0x5EED, flags=flags)

        syn = eth() / _ip4() / TCP(sport=40000, dport=PORT, seq=6, flags="S")
        assert g.run(syn).reason.label == "syn-under-threshold"
        other = eth() / IP(src="198.18.7.7", dst=SERVER4) / TCP(dport=PORT, flags="S")
        assert g.run(other).reason.label == "syn-cookie-sent"  # a flood now
        assert run_ack(g, seg(CLIENT4, "A"))[::2] == (XDP_PASS, "ack-seen-pass")
        assert run_ack(g, seg(CLIENT4, "PA") / b"GET")[::2] == (XDP_PASS, "ack-seen-pass")
        assert run_ack(g, seg(CLIENT4, "RA"))[::2] == (XDP_DROP, "not-verified")
        assert run_ack(g, seg(CLIENT4, "F"))[::2] == (XDP_DROP, "not-verified")
        # Marked as having had a socket, but its SYN was not the kernel's.
        assert datapath.mark_seen(coll.maps, ["198.18.7.8"]) == 1
        assert run_ack(g, seg("198.18.7.8", "A"))[::2] == (XDP_DROP, "ack-invalid")
        # Two ticks after the kernel's answer: its cookie (if any) is too old.
        _kernel_answered(coll, CLIENT4, TICK - 2)
        assert run_ack(g, seg(CLIENT4, "A"))[::2] == (XDP_DROP, "ack-invalid")
        _kernel_answered(coll, CLIENT4, TICK - 1)
        assert run_ack(g, seg(CLIENT4, "A"))[::2] == (XDP_PASS, "ack-seen-pass")


def test_flood_looks_up_only_sources_seen_with_a_socket() -> None:
    """Under a flood, a segment from a source never seen with a socket is
    not looked up (a forged-ACK flood costs one SipHash, no socket lookup):
    dropped even though a socket exists. With no flood on every segment is
    looked up, and a source found with a socket is marked for the next flood."""
    with loopback_connection() as (lport, cport):
        with load() as coll:  # no threshold: a flood, always
            datapath.set_ports(coll.maps, [lport])
            verdict, _, reason = run_ack(Guard(coll), _data_segment(cport, lport))
            assert (verdict, reason) == (XDP_DROP, "ack-invalid")
        with load(syn_flood_pps=10**6) as coll:  # far from a flood
            datapath.set_ports(coll.maps, [lport])
            verdict, _, reason = run_ack(Guard(coll), _data_segment(cport, lport))
            assert (verdict, reason) == (XDP_PASS, "established-pass")
            assert marked(coll, "127.0.0.1")


def test_handed_off_handshake_marks_its_source(guard: Guard) -> None:
    """A valid handshake ACK passes to the kernel, which makes the
    connection: its source is marked, so its later segments are looked up
    under the flood."""
    ck, _ = handshake(guard, L3["ipv4"](), LINUX_SYN)
    assert not marked(guard.coll, CLIENT4), "a SYN marks nothing"
    ack = eth() / L3["ipv4"]() / TCP(sport=40000, dport=PORT, seq=1001, ack=ck + 1, flags="A")
    assert run_ack(guard, ack)[::2] == (XDP_PASS, "ack-valid")
    assert marked(guard.coll, CLIENT4)


def test_a_syn_the_kernel_answers_marks_its_source() -> None:
    """With no flood on, the kernel answers a SYN and makes a request socket.
    Its handshake ACK may meet a flood (by then, or on another CPU): marked,
    the source's segments are looked up and find that socket, where unmarked
    they were judged as forged ACKs and dropped (the client, connected, then
    waited out its timeout)."""
    with load(syn_flood_pps=10**6) as coll:  # far from a flood
        g = Guard(coll)
        syn = eth() / _ip4() / TCP(sport=40000, dport=PORT, seq=1000, flags="S")
        assert not marked(coll, CLIENT4)
        assert g.run(syn).reason.label == "syn-under-threshold"
        assert marked(coll, CLIENT4)


@contextlib.contextmanager
def time_wait(host: str, client: str) -> Iterator[tuple[int, int]]:
    """A listener on ``host`` whose side of one closed connection (from
    ``client``) is in TIME_WAIT (the server closed first): yields (listener
    port, client port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as lst:
        lst.bind((host, 0))
        lst.listen(1)
        sport = lst.getsockname()[1]
        cli = socket.create_connection((host, sport), source_address=(client, 0))
        cport = cli.getsockname()[1]
        srv, _ = lst.accept()
        srv.close()  # the server closes first: its end goes to TIME_WAIT
        assert cli.recv(1) == b""
        cli.close()
        yield sport, cport


def test_syn_meeting_a_time_wait_goes_to_the_kernel() -> None:
    """A SYN whose 4-tuple the server holds in TIME_WAIT (it closed first, the
    client reused the port) is the kernel's: a cookie handshake could not replace
    the TIME_WAIT. Only sources seen with a socket are looked up: unmarked, the
    source's SYN gets a cookie like a spoofed one, and its other segments are
    not looked up under the flood either."""
    with scratch_host(), time_wait(SERVER4, CLIENT4) as (sport, cport), load() as coll:
        datapath.set_ports(coll.maps, [sport])
        g = Guard(coll)
        ip = IP(src=CLIENT4, dst=SERVER4)
        syn = eth() / ip / TCP(sport=cport, dport=sport, seq=5, options=LINUX_SYN)
        first = g.run(syn)
        assert (first.verdict, first.reason.label) == (XDP_TX, "syn-cookie-sent")
        fin = eth() / ip / TCP(sport=cport, dport=sport, seq=1, ack=2, flags="FA")
        assert run_ack(g, fin)[::2] == (XDP_DROP, "ack-invalid")
        # Marked (as the shield marks the peers of its sockets when it loads,
        # and the daemon at each rebuild): a segment of the old connection
        # reaches the TIME_WAIT, the kernel's.
        datapath.mark_seen(coll.maps, [CLIENT4])
        assert run_ack(g, fin)[::2] == (XDP_PASS, "established-pass")
        again = g.run(syn)
        assert (again.verdict, again.reason.label) == (XDP_PASS, "syn-existing-socket")
        assert again.frame == bytes(syn)
        # Another port of the same source has no socket: a cookie, as ever.
        syn[TCP].sport = cport + 1 if cport < 65535 else cport - 1
        assert g.run(syn).verdict == XDP_TX


@pytest.mark.parametrize(("server", "client"), [(SERVER4, CLIENT4), (SERVER6, CLIENT6)])
def test_sources_marked_from_userspace_are_looked_up(server: str, client: str) -> None:
    """The shield marks the peers of sockets that exist when it loads (its
    hash in Python agrees with the data path's): such a TIME_WAIT is found at
    the source's first SYN."""
    v6 = ":" in server
    with scratch_host(), time_wait(server, client) as (sport, cport), load() as coll:
        datapath.set_ports(coll.maps, [sport])
        g = Guard(coll)
        ip = IPv6(src=client, dst=server) if v6 else IP(src=client, dst=server)
        syn = eth() / ip / TCP(sport=cport, dport=sport, seq=5, options=LINUX_SYN)
        assert g.run(syn).verdict == XDP_TX  # not marked: a cookie
        assert datapath.mark_seen(coll.maps, [client]) == 1
        assert datapath.mark_seen(coll.maps, [client]) == 0  # already there
        again = g.run(syn)
        assert (again.verdict, again.reason.label) == (XDP_PASS, "syn-existing-socket")


def test_syn_is_answered_as_in_reset_mode(guard: Guard) -> None:
    with load_guard() as reset_coll:
        frame = eth() / L3["ipv4"]() / TCP(sport=1, dport=PORT, seq=7, options=LINUX_SYN)
        assert guard.run(frame).frame == Guard(reset_coll).run(frame).frame
    assert NOW  # the frozen clock makes both SYN-ACKs identical


def test_driver_without_metadata_passes_plain() -> None:
    with load(force_nometa=True) as coll:
        g = Guard(coll)
        ck, _ = handshake(g, L3["ipv4"](), LINUX_SYN)
        frame = eth() / L3["ipv4"]() / TCP(sport=40000, dport=PORT, seq=1001, ack=ck + 1, flags="A")
        verdict, meta, reason = run_ack(g, frame)
        assert (verdict, meta, reason) == (XDP_PASS, None, "ack-valid")
        bss = coll.map("xdpshiel.bss").lookup(b"\0" * 4)
        assert bss[:4] == (1).to_bytes(4, "little"), "tc is told to re-check cookies"


def test_rebuild_keeps_marks_made_while_it_runs(guard: Guard) -> None:
    """The daemon's rebuild cuts the filter to the peers of live sockets, but
    a mark the data path makes while it lists them (a handshake handed off
    meanwhile) survives: under a flood that source's segments must still be
    looked up."""
    datapath.mark_seen(guard.coll.maps, [CLIENT6])  # a peer gone since: cleared
    calls = 0

    def peers() -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:  # the handoff lands between the rebuild's read and write
            ck, _ = handshake(guard, L3["ipv4"](), LINUX_SYN)
            ack = (
                eth() / L3["ipv4"]() / TCP(sport=40000, dport=PORT, seq=1001, ack=ck + 1, flags="A")
            )
            assert run_ack(guard, ack)[::2] == (XDP_PASS, "ack-valid")
        return ["198.18.9.9"]

    before, after = datapath.rebuild_seen(guard.coll.maps, peers)
    assert (before, after) == (1, 2)
    assert marked(guard.coll, CLIENT4) and marked(guard.coll, "198.18.9.9")
    assert not marked(guard.coll, CLIENT6)
