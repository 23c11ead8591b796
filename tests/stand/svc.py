"""Helpers the service and upgrade stand tests share: the installed object
chosen by a test, and a TCP handshake by hand across a restart."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP

from tests.conftest import OBJ_DIR
from xdpshield import netns
from xdpshield.lab.stand import Stand
from xdpshield.objects import object_digest

PORT = 8080
ISN = 0x1000_0000


class ObjectFarm:
    """A folder standing in for the installed objects: a link per built object."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        for obj in OBJ_DIR.glob("*.o"):
            (path / obj.name).symlink_to(obj)

    def install(self, name: str) -> str:
        """Make ``name`` (a built object) the installed shield; its sha256."""
        link = self.path / "xdpshield.o"
        tmp = self.path / ".xdpshield.o.new"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(OBJ_DIR / name)
        tmp.replace(link)
        return object_digest(link)


class HalfOpen:
    """A handshake by hand from the client namespace (raw sockets): the SYN
    now, the SYN-ACK's cookie kept, the ACK later."""

    def __init__(self, stand: Stand, sport: int, dport: int = PORT) -> None:
        self.client, self.server = stand.addr("client", 4), stand.addr("server", 4)
        self.sport, self.dport = sport, dport
        with netns.enter(stand.ns("client")):
            self.rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
            self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        self.cookie = self._syn()

    def _segment(self, **kw: Any) -> bytes:
        pkt = IP(src=self.client, dst=self.server) / TCP(
            sport=self.sport, dport=self.dport, window=512, **kw
        )
        return bytes(pkt)[20:]  # the raw socket writes the IP header

    def _syn(self) -> int:
        self.tx.sendto(self._segment(seq=ISN, flags="S", options=[("MSS", 1460)]), (self.server, 0))
        deadline = time.monotonic() + 5
        while (left := deadline - time.monotonic()) > 0:
            self.rx.settimeout(left)
            try:
                raw = self.rx.recv(65536)
            except TimeoutError:
                break
            tcp = raw[(raw[0] & 0xF) * 4 :]
            sp, dp, seq, ack = struct.unpack_from("!HHII", tcp)
            if (sp, dp) == (self.dport, self.sport) and tcp[13] & 0x12 == 0x12:
                assert ack == ISN + 1
                return int(seq)
        pytest.fail("no SYN-ACK within 5 s")

    def ack(self) -> None:
        seg = self._segment(seq=ISN + 1, ack=(self.cookie + 1) & 0xFFFFFFFF, flags="A")
        self.tx.sendto(seg, (self.server, 0))

    def close(self) -> None:
        self.rx.close()
        self.tx.close()


@contextlib.contextmanager
def listener(stand: Stand, port: int = PORT) -> Iterator[socket.socket]:
    with netns.enter(stand.ns("server")):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((stand.addr("server", 4), port))
        ls.listen(16)
        yield ls


def wait_for(cond: Callable[[], object], timeout: float, what: str, poll_s: float = 0.05) -> None:
    """Until ``cond()`` holds; the test fails naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(poll_s)
