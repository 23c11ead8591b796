"""Reset mode on the stand: real clients through a real spoofed SYN flood.

The first connection of a new client completes its handshake against an XDP
cookie and is then reset (reset mode verifies the source); the retry reaches
the real server and the bytes arrive intact. The flood never reaches the
server's kernel: no SYN-RECV sockets, no kernel SYN cookies.
"""

from __future__ import annotations

import socket
import threading

import pytest

from xdpshield import netns
from xdpshield.lab.stand import DEFAULT_SOURCES4, DEFAULT_SOURCES6, Stand
from xdpshield.lab.traffic import FloodResult, body_bytes, flood, serve_http
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

BODY = 4096


def fetch(stand: Stand, family: int = 4) -> bytes:
    """One HTTP GET from the client namespace over a fresh connection."""
    host = stand.addr("server", family)
    with netns.enter(stand.ns("client")):
        af = socket.AF_INET6 if family == 6 else socket.AF_INET
        with socket.socket(af, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect((host, 80))
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    return body


def nstat(stand: Stand, counter: str) -> int:
    out = stand.exec("server", ["nstat", "-az", counter], check=True).stdout
    return next((int(ln.split()[1]) for ln in out.splitlines() if ln.startswith(counter)), 0)


@pytest.mark.parametrize("family", [4, 6])
def test_client_connects_through_a_syn_flood(stand: Stand, family: int) -> None:
    shield = Shield.load(
        stand.server_if, ports=[80], xdp_mode="native", handshake="reset", netns=stand.ns("server")
    )
    cookies_before = nstat(stand, "TcpExtSyncookiesSent")
    result: list[FloodResult] = []
    attack = threading.Thread(
        target=lambda: result.append(
            flood(
                "syn",
                stand=stand,
                duration_s=4.0,
                dport=80,
                sources=DEFAULT_SOURCES6 if family == 6 else DEFAULT_SOURCES4,
            )
        )
    )
    try:
        with serve_http(stand, port=80, body_size=BODY):
            attack.start()
            # The first attempt completes the handshake with the cookie, then is reset.
            with pytest.raises(ConnectionResetError):
                fetch(stand, family)
            # The retry from the now verified source reaches the server: bytes intact.
            assert fetch(stand, family) == body_bytes(BODY)
            assert fetch(stand, family) == body_bytes(BODY)
            attack.join(30)
            half_open = stand.exec("server", ["ss", "-Htn", "state", "syn-recv"]).stdout
        stats = shield.stats()
    finally:
        attack.join(30)
        shield.unload()
    (fl,) = result
    assert fl.sent > 100_000
    # Every flood SYN the link delivered was answered by XDP, none by the kernel.
    assert stats[Reason.SYN_COOKIE_SENT][0] >= (fl.delivered or fl.sent)
    assert stats[Reason.ACK_VALID][0] >= 1  # the client's first handshake
    assert half_open.strip() == ""
    # tcp_syncookies=2 makes the kernel cookie-answer every SYN it sees: the two
    # verified retries (and a retransmission at most), none of the flood.
    assert nstat(stand, "TcpExtSyncookiesSent") - cookies_before <= 4
