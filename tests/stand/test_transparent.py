"""Transparent handshake on the stand: real clients connect on the first try.

XDP answers the SYN with a cookie, the tc program hands the verified
handshake to the kernel (bpf_sk_assign_tcp_reqsk), and the server's socket
carries the options the client offered. Nothing else stands in the path: no
netfilter, no RST, no retry. The handoff itself cannot run under
BPF_PROG_TEST_RUN (the kfunc refuses it there), so it is tested here, live.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import stand_up
from xdpshield import netns
from xdpshield.ebpf import UInt, query_tc
from xdpshield.errors import ConfigError
from xdpshield.lab.stand import DEFAULT_SOURCES4, DEFAULT_SOURCES6, Stand
from xdpshield.lab.traffic import FloodResult, body_bytes, flood, legit_load, serve_http
from xdpshield.shield import core as shield_mod
from xdpshield.shield import datapath
from xdpshield.shield.core import Shield, probe_handoff
from xdpshield.shield.datapath import GuardOptions, Reason

BODY = 4096
HTTP, ECHO = 80, 7
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4

_PROBE = probe_handoff()
needs_handoff = pytest.mark.skipif(
    _PROBE is not None, reason=f"KERNEL LACKS THE HANDOFF KFUNC: {_PROBE}"
)


@contextlib.contextmanager
def shielded(stand: Stand, xdp_mode: str = "native", **kw: object) -> Iterator[Shield]:
    # These tests follow the shield's own handshake: every SYN gets a cookie
    # (no flood threshold), unless a test says otherwise.
    kw.setdefault("options", GuardOptions(syn_flood_pps=0))
    sh = Shield.load(
        stand.server_if,
        ports=[HTTP, ECHO],
        xdp_mode=xdp_mode,
        netns=stand.ns("server"),
        **kw,  # type: ignore[arg-type]
    )
    try:
        yield sh
    finally:
        sh.unload()


@dataclass(frozen=True)
class TcpInfo:
    options: int
    snd_wscale: int
    rcv_wscale: int
    snd_mss: int
    advmss: int


def tcp_info(sock: socket.socket) -> TcpInfo:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    b = struct.unpack_from("=8B", raw)
    u = struct.unpack_from("=20I", raw, 8)
    return TcpInfo(b[5], b[6] & 0xF, b[6] >> 4, u[2], u[19])


class EchoServer:
    """A TCP echo server in the server namespace; keeps TCP_INFO of what it accepted."""

    def __init__(self, stand: Stand, family: int) -> None:
        af = socket.AF_INET6 if family == 6 else socket.AF_INET
        with netns.enter(stand.ns("server")):
            self.sock = socket.socket(af, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("::" if family == 6 else "0.0.0.0", ECHO))
            self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.infos: list[TcpInfo] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                self.infos.append(tcp_info(conn))
                with contextlib.suppress(OSError):
                    while data := conn.recv(65536):
                        conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def echo(stand: Stand, family: int, payload: bytes) -> tuple[bytes, TcpInfo]:
    """One connection from the client namespace: no retry; returns the echo."""
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    with netns.enter(stand.ns("client")):
        s = socket.socket(af, socket.SOCK_STREAM)
    with s:
        s.settimeout(5)
        s.connect((stand.addr("server", family), ECHO))
        info = tcp_info(s)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got, info


@contextlib.contextmanager
def rst_capture(stand: Stand) -> Iterator[list[str]]:
    """RSTs seen on the client's link while the block runs (tcpdump, by PID)."""
    found: list[str] = []
    flt = "(tcp[tcpflags] & tcp-rst != 0) or (ip6 and ip6[6] == 6 and ip6[53] & 4 != 0)"
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "rst.pcap"
        proc = subprocess.Popen(
            [
                *_in(stand, "client"),
                "tcpdump",
                "-i",
                stand.client_if,
                "-nn",
                "-U",
                "-w",
                str(pcap),
                flt,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()  # "listening on ...": capture is live
            assert "listening" in line, line
            yield found
            time.sleep(0.3)
        finally:
            proc.terminate()
            proc.wait(10)
        out = subprocess.run(
            ["tcpdump", "-nn", "-r", str(pcap)], capture_output=True, text=True, check=True
        )
        found.extend(ln for ln in out.stdout.splitlines() if ln.strip())


CURL = ("curl", "-sS", "--fail", "--retry", "0", "--max-time", "5", "-o", "/dev/null")


def _in(stand: Stand, role: str) -> list[str]:
    return ["ip", "netns", "exec", stand.ns(role)]  # type: ignore[arg-type]


def status(stand: Stand, sh: Shield) -> shield_mod.ShieldStatus:
    return sh.status()  # from the host: the shield enters its namespace itself


def nstat(stand: Stand, counter: str) -> int:
    out = stand.exec("server", ["nstat", "-az", counter], check=True).stdout
    return next((int(ln.split()[1]) for ln in out.splitlines() if ln.startswith(counter)), 0)


def server_sockets(stand: Stand) -> list[str]:
    """Every TCP socket of the server namespace but the listeners."""
    out = stand.exec("server", ["ss", "-Htan"], check=True).stdout
    return [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("LISTEN")]


def url(stand: Stand, family: int) -> str:
    host = stand.addr("server", family)
    return f"http://[{host}]:{HTTP}/" if family == 6 else f"http://{host}:{HTTP}/"


# -- real clients, first try ------------------------------------------------------------
@needs_handoff
@pytest.mark.parametrize("xdp_mode", ["native", "generic"])
@pytest.mark.parametrize("family", [4, 6])
def test_real_clients_connect_on_the_first_try(stand: Stand, xdp_mode: str, family: int) -> None:
    payload = bytes(range(256)) * 400  # 100 KiB each way
    with shielded(stand, xdp_mode, handshake="transparent") as sh:
        st = status(stand, sh)
        assert (st.handshake, st.tc_attached, st.xdp_mode) == ("transparent", True, xdp_mode)
        srv = EchoServer(stand, family)
        try:
            with rst_capture(stand) as rsts, serve_http(stand, port=HTTP, body_size=BODY):
                # Python sockets: one connection, data both ways.
                got, client = echo(stand, family, payload)
                assert got == payload
                # curl: no retry allowed; the body arrives whole.
                r = stand.exec(
                    "client",
                    [*CURL, "-w", "%{http_code} %{size_download}", url(stand, family)],
                )
                assert (r.returncode, r.stdout) == (0, f"200 {BODY}"), r.stderr
                # nc (OpenBSD): sends, half-closes, prints the echo.
                r = stand.exec(
                    "client",
                    ["nc", "-N", "-w", "5", stand.addr("server", family), str(ECHO)],
                    input="hello through the shield\n",
                )
                assert (r.returncode, r.stdout) == (0, "hello through the shield\n"), r.stderr
        finally:
            srv.close()
        stats = sh.stats()
    assert rsts == []
    # Three handshakes, each answered by XDP and handed over by tc.
    assert stats[Reason.SYN_COOKIE_SENT][0] == 3
    assert stats[Reason.HANDOFF][0] == 3
    assert stats[Reason.HANDOFF_FAILED][0] == 0
    assert stats[Reason.ESTABLISHED_PASS][0] > 0
    # The server's socket carries the options the client offered.
    (server, _) = srv.infos[:2]
    want = TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE
    assert server.options & want == want
    assert client.options & want == want
    assert server.snd_wscale == client.rcv_wscale  # the client's own scale
    assert server.rcv_wscale == client.snd_wscale == 7  # the one our SYN-ACK offered
    # The client's MSS (1460 / 1440 on this link) is a cookie table entry, so
    # the server sends exactly what the client announced (both net of options).
    assert server.snd_mss == client.advmss


@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
def test_without_client_timestamps_only_mss(stand: Stand, family: int) -> None:
    stand.exec("client", ["sysctl", "-qw", "net.ipv4.tcp_timestamps=0"], check=True)
    with shielded(stand, handshake="transparent") as sh:
        srv = EchoServer(stand, family)
        try:
            got, client = echo(stand, family, b"x" * 5000)
        finally:
            srv.close()
        stats = sh.stats()
    assert got == b"x" * 5000
    assert stats[Reason.HANDOFF][0] == 1
    (server,) = srv.infos
    # As with Linux cookies: no timestamps to carry them, so no scale, no SACK.
    assert server.options & (TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE) == 0
    assert client.options & (TCPI_OPT_TIMESTAMPS | TCPI_OPT_WSCALE) == 0
    assert server.snd_mss == client.advmss


@needs_handoff
@pytest.mark.parametrize(
    ("sysctl", "gone"),
    [
        # Without timestamps a cookie has nowhere to keep scale and SACK.
        ("tcp_timestamps", TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE),
        ("tcp_sack", TCPI_OPT_SACK),
        ("tcp_window_scaling", TCPI_OPT_WSCALE),
    ],
)
def test_server_with_an_option_off_still_connects(stand: Stand, sysctl: str, gone: int) -> None:
    # The kernel refuses a handed-off connection with an option it has turned
    # off: the shield, loaded after the sysctl, must not offer it.
    stand.exec("server", ["sysctl", "-qw", f"net.ipv4.{sysctl}=0"], check=True)
    with shielded(stand, handshake="transparent") as sh:
        srv = EchoServer(stand, 4)
        try:
            got, client = echo(stand, 4, b"y" * 5000)
        finally:
            srv.close()
        stats = sh.stats()
    assert got == b"y" * 5000
    assert stats[Reason.HANDOFF][0] == 1 and stats[Reason.HANDOFF_FAILED][0] == 0
    (server,) = srv.infos
    every = TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE
    assert server.options & every == every & ~gone
    assert client.options & gone == 0


@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
def test_lost_third_ack_first_data_segment_completes(stand: Stand, family: int) -> None:
    # Drop exactly the client's first pure ACK (the handshake's third segment):
    # the quota is one byte more than that segment.
    first_ack_len = (20 if family == 4 else 40) + 32
    nft = (
        "table inet xs_lossy {\n chain out {\n  type filter hook output priority 0;\n"
        f"  tcp dport {ECHO} tcp flags == ack quota until {first_ack_len + 1} bytes counter drop\n"
        " }\n}\n"
    )
    stand.exec("client", ["nft", "-f", "-"], input=nft, check=True)
    with shielded(stand, handshake="transparent") as sh:
        srv = EchoServer(stand, family)
        try:
            got, _ = echo(stand, family, b"first data completes the handshake")
        finally:
            srv.close()
        stats = sh.stats()
    rules = stand.exec("client", ["nft", "list", "table", "inet", "xs_lossy"], check=True).stdout
    assert "counter packets 1 " in rules  # the third ACK really was lost
    assert got == b"first data completes the handshake"
    assert stats[Reason.HANDOFF][0] == 1  # made by the data segment
    assert stats[Reason.ACK_VALID][0] == 1


@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
def test_first_data_in_the_third_acks_receive_batch(family: int) -> None:
    """A client's first data right behind its third ACK, both in one receive
    batch, joins the connection the ACK made. Before the fix both got a
    request socket in tc; the data's was refused as a duplicate and the client
    resent it after its 200 ms RTO (two handoffs per connection).

    The stand's shared link makes the batch: the generator sends the queued
    ACK and data in consecutive runs, flushed together to the server's ring.
    """
    st = Stand(prefix=netns.unique_prefix("xsl"), queues=1, shared_link=True)
    n = 5
    try:
        st.up()
        with shielded(st, handshake="transparent") as sh:
            srv = EchoServer(st, family)
            attack = threading.Thread(
                target=flood,
                args=("syn",),
                kwargs={
                    "stand": st,
                    "duration_s": 4.0,
                    "dport": HTTP,
                    "sources": DEFAULT_SOURCES4 if family == 4 else DEFAULT_SOURCES6,
                },
                daemon=True,
            )
            attack.start()
            try:
                time.sleep(0.3)
                got = [echo(st, family, b"data %d" % i)[0] for i in range(n)]
            finally:
                attack.join()
                srv.close()
            stats = sh.stats()
        link = st.mux_stats()
    finally:
        st.down()
    assert got == [b"data %d" % i for i in range(n)]
    # Every connection's segments rode the flood's stream (SYN, ACK, data, FIN).
    assert link["sent"] >= 4 * n, link
    assert stats[Reason.HANDOFF][0] == n, {r.label: v for r, v in stats.items() if v[0]}


# -- floods ---------------------------------------------------------------------------------
def _floods(
    stand: Stand, family: int, seconds: float
) -> tuple[list[threading.Thread], list[FloodResult]]:
    sources = DEFAULT_SOURCES6 if family == 6 else DEFAULT_SOURCES4
    results: list[FloodResult] = []
    threads = [
        threading.Thread(
            target=lambda k=kind: results.append(
                flood(k, stand=stand, duration_s=seconds, dport=HTTP, sources=sources)
            )
        )
        for kind in ("syn", "ack")
    ]
    for t in threads:
        t.start()
    return threads, results


@needs_handoff
@pytest.mark.parametrize("syncookies", [1, 2])
def test_a_handshake_the_kernel_answered_completes_once_a_flood_is_on(syncookies: int) -> None:
    """A SYN that came before any flood goes to the kernel, which answers it:
    with a request socket (net.ipv4.tcp_syncookies=1, Linux's default) or
    with a cookie of its own and no socket (2). A flood comes on before the
    handshake's ACK (here the client's ACK and data are held back in its
    namespace until the flood is on): its retransmitted data still reaches
    the kernel, which completes the connection. Before, the SYN left its
    source unmarked, so under the flood its segments were judged forged ACKs
    and dropped, and the client, connected, waited out its timeout (about
    one fetch in 200 of test_service's); marked, at 2 they were still
    dropped, finding no socket and not carrying the shield's cookie."""
    hold = (
        "table inet xs_hold {\n chain out {\n  type filter hook output priority 0;\n"
        f"  tcp dport {ECHO} tcp flags & (syn | ack) == ack drop\n }}\n}}\n"
    )
    with contextlib.ExitStack() as undo:
        stand = undo.enter_context(stand_up("xsk", syncookies=syncookies))
        sh = undo.enter_context(
            shielded(stand, handshake="transparent", options=GuardOptions(syn_flood_pps=1000))
        )
        srv = EchoServer(stand, 4)
        got: list[bytes | OSError] = []

        def client() -> None:
            try:
                got.append(echo(stand, 4, b"the kernel's handshake")[0])
            except OSError as exc:
                got.append(exc)

        fl: list[FloodResult] = []
        # On every CPU, for longer than the client's 5 s patience.
        flooding = threading.Thread(
            target=lambda: fl.append(
                flood(
                    "syn", stand=stand, duration_s=8.0, count=8_000_000, rate_pps=1_000_000,
                    workers=2, dport=ECHO, sources=DEFAULT_SOURCES4,
                )
            )
        )  # fmt: skip
        t = threading.Thread(target=client)
        try:
            stand.exec("client", ["nft", "-f", "-"], input=hold, check=True)
            t.start()
            time.sleep(0.3)  # its SYN is with the kernel, no flood on
            assert sh.stats()[Reason.SYN_UNDER_THRESHOLD][0] == 1
            flooding.start()
            time.sleep(1.0)  # the flood is on
            stand.exec("client", ["nft", "delete", "table", "inet", "xs_hold"], check=True)
            t.join(10)
        finally:
            flooding.join(20)
            srv.close()
        stats = sh.stats()
    assert fl and fl[0].sent > 100_000
    assert stats[Reason.SYN_COOKIE_SENT][0] > 100_000  # the flood was on
    moved = {r.label: v for r, v in stats.items() if v[0]}
    assert got == [b"the kernel's handshake"], moved
    # To the kernel's request socket, or to its own cookie check.
    to_kernel = Reason.ESTABLISHED_PASS if syncookies == 1 else Reason.ACK_SEEN_PASS
    assert stats[to_kernel][0] >= 1, moved


@needs_handoff
def test_ack_flood_creates_nothing(stand: Stand) -> None:
    with (
        shielded(stand, handshake="transparent") as sh,
        serve_http(stand, port=HTTP, body_size=BODY),
    ):
        rsts_before = nstat(stand, "TcpOutRsts")
        threads, results = _floods(stand, 4, 3.0)
        for t in threads:
            t.join(30)
        time.sleep(0.5)
        leftovers = server_sockets(stand)
        stats = sh.stats()
        rsts = nstat(stand, "TcpOutRsts") - rsts_before
    acks = next(r for r in results if r.kind == "ack")
    assert acks.sent > 100_000
    assert leftovers == []
    assert rsts == 0
    # Both floods share the link (its counters mix them): compare with what was sent.
    assert stats[Reason.ACK_INVALID][0] >= 0.99 * acks.sent
    assert stats[Reason.HANDOFF][0] == stats[Reason.ACK_VALID][0] == 0


@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
def test_legit_clients_first_try_under_syn_and_ack_flood(stand: Stand, family: int) -> None:
    with shielded(stand, handshake="transparent") as sh:
        # As a shield runs past its first minutes: keys rotated, the filter
        # of cookies offered trusted (each legit ACK must find its source's
        # cookie recorded, whichever CPU answered the SYN).
        datapath.rotate_keys(sh.maps)
        datapath.trust_offered(sh.maps, 1)
        threads, results = _floods(stand, family, 25.0)
        try:
            time.sleep(0.5)
            # A SYN or SYN-ACK lost in the flooded rings is retransmitted by
            # TCP inside the same connect(): still the first try for the
            # application. 10 s covers two retransmissions (1 s, 3 s); the 3 s
            # default gave up after one and counted it as a failure.
            legit = legit_load(
                stand,
                n_clients=16,
                duration_s=25.0,
                count=1000,
                family=family,
                retries=0,
                connect_timeout_s=10.0,
            )
        finally:
            for t in threads:
                t.join(40)
        stats = sh.stats()
    assert {r.kind for r in results} == {"syn", "ack"}
    assert all(r.sent > 100_000 for r in results)
    assert legit.attempted == 1000, legit.failures
    assert legit.first_try >= 999, legit.failures
    assert legit.bytes_verified >= legit.first_try * BODY
    moved = {r.label: v for r, v in stats.items() if v[0]}
    # Each connection was handed over by tc, or its SYN met a socket of an
    # earlier connection on the same port (a TIME_WAIT) and the kernel took it.
    made = stats[Reason.HANDOFF][0] + stats[Reason.SYN_EXISTING_SOCKET][0]
    assert made >= legit.first_try, moved
    assert stats[Reason.HANDOFF_FAILED][0] == 0, moved


# -- mode selection ----------------------------------------------------------------------------
def test_auto_falls_back_to_reset_without_the_kfunc(
    stand: Stand, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shield_mod, "probe_handoff", lambda: "simulated: no kfunc")
    with shielded(stand, handshake="auto") as sh:
        st = status(stand, sh)
        assert st.handshake == "reset"
        assert "fell back to reset" in st.handshake_why
        assert "simulated: no kfunc" in st.handshake_why
        assert not st.tc_attached
        # Reset mode really is what runs: the first connection is reset.
        srv = EchoServer(stand, 4)
        try:
            with pytest.raises(ConnectionResetError):
                echo(stand, 4, b"x")
            assert echo(stand, 4, b"retry")[0] == b"retry"
        finally:
            srv.close()
    with pytest.raises(ConfigError, match="simulated"):
        Shield.load(
            stand.server_if, ports=[HTTP], handshake="transparent", netns=stand.ns("server")
        )


@needs_handoff
def test_auto_is_transparent_and_syncookies_zero_is_refused(stand: Stand) -> None:
    with shielded(stand, handshake="auto") as sh:
        st = status(stand, sh)
        assert (st.handshake, st.tc_attached) == ("transparent", True)
        assert "bpf_sk_assign_tcp_reqsk" in st.handshake_why
    # Unload removed the tc filter along with XDP.
    with netns.enter(stand.ns("server")):
        assert (
            query_tc(stand.server_if, handle=shield_mod.TC_HANDLE, priority=shield_mod.TC_PRIORITY)
            is None
        )
    stand.exec("server", ["sysctl", "-qw", "net.ipv4.tcp_syncookies=0"], check=True)
    with pytest.raises(ConfigError, match="tcp_syncookies is 0"):
        Shield.load(
            stand.server_if, ports=[HTTP], handshake="transparent", netns=stand.ns("server")
        )
    with shielded(stand, handshake="auto") as sh:
        st = status(stand, sh)
        assert st.handshake == "reset"
        assert "tcp_syncookies is 0" in st.handshake_why


def _get_from_port(stand: Stand, family: int, sport: int) -> bytes:
    """One HTTP GET from the client namespace, bound to ``sport``; the whole reply."""
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    with netns.enter(stand.ns("client")):
        s = socket.socket(af, socket.SOCK_STREAM)
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(5)
        s.bind(("::" if family == 6 else "0.0.0.0", sport))
        s.connect((stand.addr("server", family), HTTP))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got


def _get_leaving_time_wait(stand: Stand, family: int, sport: int) -> tuple[bytes, list[str]]:
    """A GET from ``sport`` that the server closes first: the reply and the
    server's TIME_WAIT sockets for that port."""
    got = _get_from_port(stand, family, sport)
    time.sleep(0.2)
    tw = [ln for ln in server_sockets(stand) if "TIME-WAIT" in ln and f":{sport}" in ln]
    return got, tw


@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
def test_port_reused_while_server_holds_time_wait(stand: Stand, family: int) -> None:
    # The HTTP server closes first, so the server keeps the 4-tuple in
    # TIME_WAIT; a busy client soon reuses the port (the client itself holds
    # nothing). A cookie handshake cannot replace a TIME_WAIT (the kernel
    # refuses the new socket as a duplicate and the client stalls), so the
    # shield leaves that SYN to the kernel, which retires the TIME_WAIT.
    sport = 41000 + family
    with (
        shielded(stand, handshake="transparent") as sh,
        serve_http(stand, port=HTTP, body_size=BODY),
    ):
        first, tw = _get_leaving_time_wait(stand, family, sport)
        second = _get_from_port(stand, family, sport)
        stats = sh.stats()
    assert len(tw) == 1, tw
    assert first.endswith(body_bytes(BODY)) and second.endswith(body_bytes(BODY))
    assert stats[Reason.SYN_COOKIE_SENT][0] == stats[Reason.HANDOFF][0] == 1
    assert stats[Reason.SYN_EXISTING_SOCKET][0] == 1
    assert stats[Reason.HANDOFF_FAILED][0] == 0


@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
def test_time_wait_from_before_the_shield(stand: Stand, family: int) -> None:
    # The TIME_WAIT is left by a connection made before the shield was
    # loaded: the shield learns its peer from the server's sockets at load,
    # so the client's port reuse still goes to the kernel.
    sport = 42000 + family
    with serve_http(stand, port=HTTP, body_size=BODY):
        first, tw = _get_leaving_time_wait(stand, family, sport)
        with shielded(stand, handshake="transparent") as sh:
            second = _get_from_port(stand, family, sport)
            stats = sh.stats()
    assert len(tw) == 1, tw
    assert first.endswith(body_bytes(BODY)) and second.endswith(body_bytes(BODY))
    assert stats[Reason.SYN_COOKIE_SENT][0] == 0
    assert stats[Reason.SYN_EXISTING_SOCKET][0] == 1


@needs_handoff
@pytest.mark.parametrize("family", [4, 6])
def test_seen_filter_rebuild_keeps_the_peers_with_a_socket(stand: Stand, family: int) -> None:
    # The data path only ever sets bits; the daemon's rebuild cuts it back to the
    # peers of the sockets that exist. A peer whose TIME_WAIT is still here
    # must stay in it: its port reuse still goes to the kernel afterwards.
    sport = 43000 + family
    stale = "198.19.77.7" if family == 4 else "fd00:19::77"
    client = stand.addr("client", family)
    with (
        shielded(stand, handshake="transparent") as sh,
        serve_http(stand, port=HTTP, body_size=BODY),
    ):
        first, tw = _get_leaving_time_wait(stand, family, sport)
        datapath.mark_seen(sh.maps, [stale])
        before, after = sh.rebuild_seen()  # lists the server namespace's sockets itself
        bits = seen_bits(sh)
        second = _get_from_port(stand, family, sport)
        stats = sh.stats()
    assert len(tw) == 1, tw
    assert datapath.seen_bit(client) in bits
    assert datapath.seen_bit(stale) not in bits
    assert before >= 2 and after == len(bits) < before
    assert first.endswith(body_bytes(BODY)) and second.endswith(body_bytes(BODY))
    assert stats[Reason.SYN_EXISTING_SOCKET][0] == 1
    assert stats[Reason.HANDOFF_FAILED][0] == 0


def seen_bits(sh: Shield) -> set[int]:
    """The bit numbers set in the shield's xs_seen."""
    out = set()
    seen = sh.maps["xs_seen"].typed(UInt(4), UInt(8))
    for idx, word in seen.lookup_batch():
        assert isinstance(word, int)
        out |= {idx * 64 + b for b in range(64) if word >> b & 1}
    return out
