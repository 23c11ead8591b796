"""Do no harm, on the stand: real clients keep what the kernel would give them.

The same features as tests/datapath/test_do_no_harm.py (issue 11), end to
end: real namespaces, real sockets, the kernel on both sides. Each test
names the option that turns its feature off; loaded with it, the test fails.

- the SYN-ACK's MSS follows the protected link's MTU, so a client uploads
  through a path with no PMTU discovery to rescue it (``mss4``/``mss6``);
- below the SYN-flood threshold the kernel answers SYNs, so a client without
  timestamps keeps window scaling and SACK (``syn_flood_pps=0``);
- ECN is on at both ends or at neither (the server's ``tcp_ecn`` after load);
- reset mode keeps a verified client's connections, a connection from before
  the load, and answers what it drops with an RST (``rst_pps=0``);
- a SYN to a protected port nothing listens on is refused at connect(), and
  a listener that appears after the load is found (``listener_check``).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from xdpshield import netns
from xdpshield.lab.stand import Stand
from xdpshield.shield import datapath
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import GuardOptions, Reason

from .test_transparent import (
    ECHO,
    HTTP,
    TCPI_OPT_SACK,
    TCPI_OPT_WSCALE,
    EchoServer,
    TcpInfo,
    echo,
    needs_handoff,
    shielded,
    tcp_info,
)

TCPI_OPT_ECN = 8
TCP_FLAG_RST = 0x04


def moved(stats: dict[Reason, tuple[int, int]]) -> dict[str, int]:
    """The counters that moved, by label (for assertion messages)."""
    return {r.label: v[0] for r, v in stats.items() if v[0]}


def _af(family: int) -> socket.AddressFamily:
    return socket.AF_INET6 if family == 6 else socket.AF_INET


def _any(family: int) -> str:
    return "::" if family == 6 else "0.0.0.0"


# -- 1. the MSS follows the link's MTU ----------------------------------------------------
MTU = 1400
UPLOAD = 2 * 1024 * 1024
# Routers that drop "fragmentation needed" / "packet too big", as many paths
# do: a segment larger than the path is then lost, not shrunk.
PMTU_BLACKHOLE = """table inet xs_pmtu {
 chain out {
  type filter hook output priority 0;
  icmp type destination-unreachable icmp code frag-needed counter drop
  icmpv6 type packet-too-big counter drop
 }
}
"""


class Sink:
    """Accepts one connection in the server namespace, reads it to EOF and
    answers with the number of bytes it read (8 bytes, network order)."""

    def __init__(self, stand: Stand, family: int, port: int, timeout_s: float = 5.0) -> None:
        with netns.enter(stand.ns("server")):
            self.sock = socket.socket(_af(family), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((_any(family), port))
        self.sock.listen(4)
        self.sock.settimeout(timeout_s)
        self.timeout_s = timeout_s
        self.got: list[int] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(self.timeout_s)
                n = 0
                while chunk := conn.recv(1 << 16):
                    n += len(chunk)
                self.got.append(n)
                conn.sendall(struct.pack("!Q", n))
        except OSError as exc:
            self.errors.append(repr(exc))

    def close(self) -> None:
        self._thread.join(3 * self.timeout_s)
        self.sock.close()


def upload(stand: Stand, family: int, port: int, size: int) -> tuple[TcpInfo, int, float]:
    """Connect from the client, send ``size`` bytes, half-close; returns the
    client's TCP_INFO right after connect(), the count the server read, and
    the seconds it took. Each socket operation times out after 5 s."""
    with netns.enter(stand.ns("client")):
        s = socket.socket(_af(family), socket.SOCK_STREAM)
    with s:
        s.settimeout(5)
        s.connect((stand.addr("server", family), port))
        info = tcp_info(s)
        start = time.monotonic()
        chunk = bytes(range(256)) * 256  # 64 KiB
        for _ in range(size // len(chunk)):
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) < 8 and (part := s.recv(8 - len(reply))):
            reply += part
        took = time.monotonic() - start
    (count,) = struct.unpack("!Q", reply)
    return info, count, took


def narrow_uplink(stand: Stand, mtu: int) -> None:
    """Both ends of the server's link at ``mtu`` (the client's stays at 1500),
    and a router that sends no "too big" back."""
    stand.exec("server", ["ip", "link", "set", "dev", stand.server_if, "mtu", str(mtu)], check=True)
    stand.exec(
        "attacker", ["ip", "link", "set", "dev", stand.uplink_if, "mtu", str(mtu)], check=True
    )
    stand.exec("attacker", ["nft", "-f", "-"], input=PMTU_BLACKHOLE, check=True)


def too_big_dropped(stand: Stand) -> int:
    """How many "too big" messages the router had to send (and dropped)."""
    out = stand.exec("attacker", ["nft", "list", "table", "inet", "xs_pmtu"], check=True).stdout
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", out))


@needs_handoff
@pytest.mark.parametrize(("family", "want_mss"), [(4, MTU - 40), (6, MTU - 60)])
def test_upload_through_a_narrow_link_without_pmtu_discovery(
    stand: Stand, family: int, want_mss: int
) -> None:
    """The shield answers every SYN (syn_flood_pps=0) with the MSS of the
    link it came in on. Before the fix it offered 1460: the client's full
    segments were too big for the server's link and, with no "too big" coming
    back, the upload stalled. Mutation: ``mss4=1460, mss6=1440``."""
    narrow_uplink(stand, MTU)
    with shielded(stand, handshake="transparent", options=GuardOptions(syn_flood_pps=0)) as sh:
        sink = Sink(stand, family, ECHO)
        try:
            info, count, took = upload(stand, family, ECHO, UPLOAD)
        finally:
            sink.close()
        stats = sh.stats()
    assert sink.errors == []
    assert count == sink.got[0] == UPLOAD
    assert took < 5.0
    # What the SYN-ACK offered, net of the client's timestamps option.
    assert info.snd_mss <= want_mss, info
    assert too_big_dropped(stand) == 0  # no segment was ever larger than the path
    assert stats[Reason.SYN_COOKIE_SENT][0] == 1, moved(stats)
    assert stats[Reason.HANDOFF][0] == 1, moved(stats)


# -- 2. below the SYN-flood threshold the kernel answers -----------------------------------
@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize(
    ("syn_flood_pps", "kernel_answers"),
    [(5000, True), (0, False)],
    ids=["below-threshold", "always-cookies"],
)
def test_client_without_timestamps_keeps_scale_and_sack_below_the_threshold(
    stand: Stand, family: int, syn_flood_pps: int, kernel_answers: bool
) -> None:
    """A cookie without timestamps has nowhere to keep window scale and SACK.
    With no flood on, the shield leaves the SYN to the kernel, which keeps
    them. ``always-cookies`` (syn_flood_pps=0, also the mutation) documents the
    trade-off under a flood: the connection completes, as with Linux's own
    cookies, without them."""
    netns.set_sysctl(stand.ns("client"), "net.ipv4.tcp_timestamps", 0)
    # Linux's default: the kernel's cookies only when its SYN queue overflows.
    # The stand's 2 (always cookies) would drop scale and SACK by itself.
    netns.set_sysctl(stand.ns("server"), "net.ipv4.tcp_syncookies", 1)
    opts = GuardOptions(syn_flood_pps=syn_flood_pps)
    with shielded(stand, handshake="transparent", options=opts) as sh:
        srv = EchoServer(stand, family)
        try:
            got, client = echo(stand, family, b"z" * 5000)
        finally:
            srv.close()
        stats = sh.stats()
    assert got == b"z" * 5000
    (server,) = srv.infos
    both = TCPI_OPT_WSCALE | TCPI_OPT_SACK
    if kernel_answers:
        assert server.options & both == both, server
        assert client.options & both == both, client
        assert stats[Reason.SYN_UNDER_THRESHOLD][0] == 1, moved(stats)
        assert stats[Reason.SYN_COOKIE_SENT][0] == 0, moved(stats)
        assert stats[Reason.HANDOFF][0] == 0, moved(stats)
    else:
        assert server.options & both == 0, server
        assert client.options & TCPI_OPT_WSCALE == 0, client
        assert stats[Reason.SYN_UNDER_THRESHOLD][0] == 0, moved(stats)
        assert stats[Reason.SYN_COOKIE_SENT][0] == 1, moved(stats)
        assert stats[Reason.HANDOFF][0] == 1, moved(stats)


# -- 3. ECN: both ends agree --------------------------------------------------------------
@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("server_ecn", [2, 0])
def test_ecn_is_on_at_both_ends_or_at_neither(stand: Stand, family: int, server_ecn: int) -> None:
    """A client asks for ECN; the server takes it (2, Linux's default) or has
    it off (0, set before the load: the shield reads it then). Mutation: the
    server's tcp_ecn=0 set after the load (the shield offers what the server
    refuses)."""
    netns.set_sysctl(stand.ns("client"), "net.ipv4.tcp_ecn", 1)
    netns.set_sysctl(stand.ns("server"), "net.ipv4.tcp_ecn", server_ecn)
    with shielded(stand, handshake="transparent", options=GuardOptions(syn_flood_pps=0)) as sh:
        srv = EchoServer(stand, family)
        try:
            got, client = echo(stand, family, b"e" * 3000)
        finally:
            srv.close()
        stats = sh.stats()
    assert got == b"e" * 3000
    (server,) = srv.infos
    on = server_ecn != 0
    assert (bool(client.options & TCPI_OPT_ECN), bool(server.options & TCPI_OPT_ECN)) == (
        on,
        on,
    ), (client, server)
    assert stats[Reason.SYN_COOKIE_SENT][0] == stats[Reason.HANDOFF][0] == 1, moved(stats)


# -- 4. reset mode: no connection dies for want of verification -----------------------------
@contextlib.contextmanager
def reset_mode(stand: Stand, **opts: Any) -> Iterator[Shield]:
    """The shield in reset mode, with GuardOptions(**opts)."""
    with shielded(stand, handshake="reset", options=GuardOptions(**opts)) as sh:
        yield sh


N_CONNECTIONS = 40


def test_reset_mode_keeps_a_verified_clients_connections(stand: Stand) -> None:
    """The client's first handshake verifies it and is reset (reset mode's
    one retry); after that none of its connections is. Before the fix a
    verified source had a budget of 32 new connections: the 33rd was reset.
    Mutation: ``bench_reverify=True`` (every handshake of a verified client
    checked and reset again); and the client's xs_verified entry deleted
    before connection 20 (what the spent budget did) fails connection 20."""
    with reset_mode(stand) as sh:
        srv = EchoServer(stand, 4)
        failures: list[tuple[int, str]] = []
        try:
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                echo(stand, 4, b"verify me")
            first = sh.stats()
            for i in range(N_CONNECTIONS):
                payload = b"%04d" % i * 256
                try:
                    got, _ = echo(stand, 4, payload)
                except OSError as exc:
                    failures.append((i, repr(exc)))
                    continue
                if got != payload:
                    failures.append((i, f"echo of {len(got)} bytes"))
        finally:
            srv.close()
        stats = sh.stats()
    assert first[Reason.ACK_VALID][0] == 1, moved(first)  # the verifying handshake
    assert failures == [], moved(stats)
    assert len(srv.infos) >= N_CONNECTIONS
    assert stats[Reason.ACK_VALID][0] == 1, moved(stats)
    assert stats[Reason.NOT_VERIFIED_RST][0] == 0, moved(stats)
    assert stats[Reason.VERIFIED_PASS][0] > 0, moved(stats)


def roundtrip(s: socket.socket, payload: bytes) -> bytes:
    s.sendall(payload)
    got = b""
    while len(got) < len(payload) and (chunk := s.recv(65536)):
        got += chunk
    return got


@pytest.mark.parametrize("family", [4, 6])
def test_reset_mode_keeps_a_connection_from_before_the_load(stand: Stand, family: int) -> None:
    """The client's next segment meets an unverified source with a socket of
    the server's own: it passes (and verifies the source), no RST. No option
    turns this off, so it is not mutation-checked."""
    srv = EchoServer(stand, family)
    try:
        with netns.enter(stand.ns("client")):
            s = socket.socket(_af(family), socket.SOCK_STREAM)
        with s:
            s.settimeout(5)
            s.connect((stand.addr("server", family), ECHO))
            assert roundtrip(s, b"before the shield") == b"before the shield"
            with reset_mode(stand) as sh:
                for i in range(3):
                    payload = bytes([i]) * 20_000
                    assert roundtrip(s, payload) == payload, moved(sh.stats())
                s.shutdown(socket.SHUT_WR)
                assert s.recv(1) == b""
                stats = sh.stats()
    finally:
        srv.close()
    assert stats[Reason.ESTABLISHED_PASS][0] >= 1, moved(stats)
    assert stats[Reason.NOT_VERIFIED_RST][0] == 0, moved(stats)
    assert stats[Reason.ACK_VALID][0] == stats[Reason.SYN_COOKIE_SENT][0] == 0, moved(stats)


def bare_segment(
    family: int, src: str, dst: str, sport: int, dport: int, seq: int, ack: int
) -> bytes:
    """A TCP ACK (header only, checksum filled in) for a raw IPPROTO_TCP socket."""
    l3 = IP(src=src, dst=dst) if family == 4 else IPv6(src=src, dst=dst)
    frame = bytes(l3 / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags="A", window=512))
    return frame[20 if family == 4 else 40 :]


def wait_rst(rx: socket.socket, family: int, sport: int, dport: int, timeout_s: float) -> bytes:
    """The first TCP header from sport to dport with RST set, or b"" by the deadline."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        rx.settimeout(left)
        try:
            raw = rx.recv(65536)
        except TimeoutError:
            break
        tcp = raw[(raw[0] & 0xF) * 4 :] if family == 4 else raw  # v4 raw sockets get the IP header
        if len(tcp) < 20:
            continue
        sp, dp = struct.unpack_from("!HH", tcp)
        if (sp, dp) == (sport, dport) and tcp[13] & TCP_FLAG_RST:
            return tcp
    return b""


@pytest.mark.parametrize("family", [4, 6])
def test_reset_mode_answers_a_dropped_segment_with_an_rst(stand: Stand, family: int) -> None:
    """A bare ACK from a source never verified, to no socket: dropped, and
    answered by an RST so the peer does not wait on it (RFC 9293: seq = its
    ACK). Mutation: ``rst_pps=0``."""
    client, server = stand.addr("client", family), stand.addr("server", family)
    sport, ack = 40_000 + family, 0x12345678
    seg = bare_segment(family, client, server, sport, HTTP, seq=1000, ack=ack)
    with reset_mode(stand) as sh:
        with netns.enter(stand.ns("client")):
            rx = socket.socket(_af(family), socket.SOCK_RAW, socket.IPPROTO_TCP)
            tx = socket.socket(_af(family), socket.SOCK_RAW, socket.IPPROTO_TCP)
        with rx, tx:
            tx.sendto(seg, (server, 0))
            rst = wait_rst(rx, family, HTTP, sport, 2.0)
        stats = sh.stats()
    assert rst, f"no RST within 2 s; shield: {moved(stats)}"
    (seq,) = struct.unpack_from("!I", rst, 4)
    assert seq == ack
    assert stats[Reason.NOT_VERIFIED_RST][0] == 1, moved(stats)


# -- 8. a protected port nothing listens on ------------------------------------------------
@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
def test_closed_port_refuses_at_connect_and_a_new_listener_is_found(
    stand: Stand, family: int
) -> None:
    """Under flood mode (syn_flood_pps=0) the shield answers for the kernel:
    a SYN to a port nothing listens on gets the RST the kernel would send, so
    connect() fails with ECONNREFUSED (not a connect() that succeeds against
    a cookie and a reset after). A listener started after the load is found
    by the data path itself. Mutation: ``listener_check=False``."""
    server = stand.addr("server", family)
    with shielded(stand, handshake="transparent", options=GuardOptions(syn_flood_pps=0)) as sh:
        assert ECHO not in datapath.get_listening(sh.maps)
        with netns.enter(stand.ns("client")):
            s = socket.socket(_af(family), socket.SOCK_STREAM)
        with s:
            s.settimeout(5)
            with pytest.raises(ConnectionRefusedError):
                s.connect((server, ECHO))
        refused = sh.stats()
        srv = EchoServer(stand, family)  # listens only now
        try:
            got, _ = echo(stand, family, b"now something listens")
        finally:
            srv.close()
        listening = datapath.get_listening(sh.maps)
        stats = sh.stats()
    assert refused[Reason.SYN_NO_LISTENER][0] == 1, moved(refused)
    assert refused[Reason.SYN_COOKIE_SENT][0] == 0, moved(refused)
    assert got == b"now something listens"
    assert ECHO in listening  # marked by the data path, no refresh ran
    assert stats[Reason.SYN_COOKIE_SENT][0] == stats[Reason.HANDOFF][0] == 1, moved(stats)
