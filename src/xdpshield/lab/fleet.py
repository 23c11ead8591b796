"""A fleet on one machine: a Redis store and shield nodes in namespaces.

Topology (every name carries the prefix ``P``)::

    P-c (the client, the ECMP in front)        P-nI (node I, one run each)
    PcIt  (no address) ----------------------- PnIt 198.18.100.1 (the VIP), transparent
    PcIr  (no address) ----------------------- PnIr 198.18.101.1 (the VIP), reset

Every node holds the same service addresses (anycast), so which node a
packet reaches is the link it is sent on: the client writes whole frames
onto the link it chooses (AF_PACKET), as an ECMP router would, and reads the
replies there. The nodes' neighbour entries for the client addresses are
pinned, and the client namespace has no address at all, so its kernel never
answers (no RST to a SYN-ACK it did not ask for). The client ends run
``xdp_upstream`` natively (a veth delivers a shield's XDP_TX only then),
passing 198.18.0.0/15.

The store is Debian's ``redis-server`` on 127.0.0.1 (no persistence: a
restart loses everything, the hardest case for "no key or block lost"); the
runs of the nodes (``xdpshield run``, one per node, with its own config)
live in the host namespace and name their interfaces' namespaces, so they
all reach the store on loopback. Each is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from xdpshield import netns
from xdpshield.ebpf import ObjectSpec, attach_xdp
from xdpshield.errors import XdpShieldError
from xdpshield.lab.stand import _be32, _mask32, only_program
from xdpshield.objects import object_path
from xdpshield.ops.service import forget_records
from xdpshield.shield.core import forget_namespace

__all__ = [
    "VIP_RESET",
    "VIP_TRANSPARENT",
    "FleetLab",
    "Node",
    "RedisServer",
    "accepted",
    "listener_in",
]

VIP_TRANSPARENT = "198.18.100.1"
VIP_RESET = "198.18.101.1"
CLIENT_T = "198.18.100.2"
CLIENT_R = "198.18.101.2"
PORT = 8080
ETH_P_ALL = 0x0003
MODES = ("transparent", "reset")


def make_tls(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl):
    (ca, cert, key)."""
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key, csr = (
        d / n for n in ("ca.pem", "ca.key", "srv.pem", "srv.key", "srv.csr")
    )
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
         "-days", "1", "-subj", "/CN=xdpshield-test-ca")  # fmt: skip
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
         "-subj", "/CN=127.0.0.1")  # fmt: skip
    ossl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


class RedisServer:
    """redis-server on 127.0.0.1:``port``, started and stopped by PID (with
    ``tls``: (ca, cert, key), TLS only on that port)."""

    def __init__(
        self, port: int, workdir: Path, tls: tuple[Path, Path, Path] | None = None
    ) -> None:
        self.port = port
        self.workdir = workdir
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        exe = shutil.which("redis-server")
        if exe is None:
            raise XdpShieldError("redis-server is missing: run 'make bootstrap'")
        self.exe = exe

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            ca, cert, key = self.tls
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                     "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                     "--tls-auth-clients", "no"]  # fmt: skip
        self.proc = subprocess.Popen(
            [
                self.exe, "--bind", "127.0.0.1", *ports, "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "yes",
                "--daemonize", "no", "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while self.tls is not None and time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return  # listening; the handshake is the client's business
            time.sleep(0.05)
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise XdpShieldError(f"redis-server did not answer on 127.0.0.1:{self.port}")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}"


@dataclass
class Node:
    """One shield node: its namespace, links, config and run."""

    index: int
    ns: str
    links: dict[str, tuple[str, str]]  # mode -> (client end, node end)
    cfg: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    macs: dict[str, tuple[str, str]] = field(default_factory=dict)  # mode -> (client, node)

    @property
    def name(self) -> str:
        return f"n{self.index}"

    def events(self) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(OSError):
            for ln in self.log.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    out.append(json.loads(ln))
        return out

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]


class FleetLab:
    """The client namespace, the nodes, and the store."""

    def __init__(self, workdir: Path, *, key_period: str = "10s", lease: str = "2s",
                 limits: str = "", redis_port: int = 0, tls: bool = False) -> None:  # fmt: skip
        self.prefix = netns.unique_prefix("xf")
        self.workdir = workdir
        self.client = f"{self.prefix}-c"
        self.key_period = key_period
        self.lease = lease
        self.limits = limits
        port = redis_port or _free_port()
        self.tls = make_tls(workdir / "tls") if tls else None
        self.store = RedisServer(port, workdir / "redis", self.tls)
        self.nodes: dict[int, Node] = {}
        self.namespaces: list[str] = []

    # -- building and removing

    def up(self) -> None:
        netns.create(self.client)
        self.namespaces.append(self.client)
        self.store.start()

    def down(self) -> None:
        for n in self.nodes.values():
            self.kill(n)
            forget_records(str(n.cfg))  # the configs were this lab's alone
        self.store.stop()
        for ns in self.namespaces:
            netns.remove(ns)
            forget_namespace(ns)

    def __enter__(self) -> FleetLab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def add_node(self, i: int) -> Node:
        ns = f"{self.prefix}-n{i}"
        netns.create(ns)
        self.namespaces.append(ns)
        links: dict[str, tuple[str, str]] = {}
        node = Node(i, ns, links, self.workdir / f"n{i}.toml", self.workdir / f"n{i}.log")
        for mode, vip, client_ip in (("transparent", VIP_TRANSPARENT, CLIENT_T),
                                     ("reset", VIP_RESET, CLIENT_R)):  # fmt: skip
            c_end, n_end = f"{self.prefix}c{i}{mode[0]}", f"{self.prefix}n{i}{mode[0]}"
            netns.veth_pair(c_end, n_end, self.client, ns)
            netns.add_address(n_end, f"{vip}/24", ns)
            links[mode] = (c_end, n_end)
            node.macs[mode] = (_mac(self.client, c_end), _mac(ns, n_end))
            with netns.ipr(ns) as ipr:
                idx = ipr.link_lookup(ifname=n_end)[0]
                ipr.neigh("replace", dst=client_ip, lladdr=node.macs[mode][0], ifindex=idx,
                          state=0x80, family=socket.AF_INET)  # fmt: skip
            _attach_pass(self.client, c_end)
        node.cfg.write_text(self.config(node))
        self.nodes[i] = node
        return node

    def config(self, node: Node) -> str:
        t, r = node.links["transparent"][1], node.links["reset"][1]
        return f"""
[[interface]]
name = "{t}"
netns = "{node.ns}"
handshake = "transparent"
syn_flood_pps = 0
protect = ["{PORT}"]

[[interface]]
name = "{r}"
netns = "{node.ns}"
handshake = "reset"
protect = ["{PORT}"]

{self.limits}

[metrics]
enabled = false

[fleet]
endpoints = ["{self.store.url}"]
name = "{self.prefix}"
node = "{node.name}"
key_period = "{self.key_period}"
lease = "{self.lease}"
start_timeout = "5s"
""" + (f'tls_ca = "{self.tls[0]}"\n' if self.tls else "")

    # -- runs

    def start(self, node: Node, *, wait: bool = True) -> None:
        """``xdpshield run`` for ``node`` (in this namespace: the store is on loopback)."""
        with open(node.log, "a") as err:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "xdpshield", "run", "--config", str(node.cfg),
                 "--log-format", "json"],
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        if wait:
            self.wait_ready(node)

    def wait_ready(self, node: Node, timeout: float = 60.0) -> None:
        assert node.proc is not None
        pid = node.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("pid") == pid for e in node.named("starting")) and self._ready(node, pid):
                return
            if node.proc.poll() is not None:
                raise XdpShieldError(f"{node.name}'s run exited: {node.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise XdpShieldError(f"{node.name}'s run not ready within {timeout} s")

    @staticmethod
    def _ready(node: Node, pid: int) -> bool:
        seen = False
        for e in node.events():
            if e.get("event") == "starting":
                seen = e.get("pid") == pid
            elif e.get("event") == "ready" and seen:
                return True
        return False

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(sig)
            node.proc.wait(15)
        node.proc = None

    # -- packets, as an ECMP router in front of the nodes would send them

    @contextlib.contextmanager
    def link(self, node: Node, mode: str) -> Iterator[socket.socket]:
        """An AF_PACKET socket on the client's end of ``node``'s ``mode`` link."""
        with netns.enter(self.client):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        with s:
            s.bind((node.links[mode][0], 0))
            yield s

    def frame(self, node: Node, mode: str, pkt: Any) -> bytes:
        c_mac, n_mac = node.macs[mode]
        return bytes(Ether(src=c_mac, dst=n_mac) / pkt)

    def syn(
        self, node: Node, mode: str, sport: int, isn: int = 0x1000_0000, src: str | None = None
    ) -> int | None:
        """Send a SYN to ``node`` (from ``src``, default the client address of
        the mode: in reset mode a verified source's SYN goes to the kernel, so
        give each handshake its own); the cookie of its SYN-ACK (None: none in 3 s)."""
        src = src or _ends(mode)[0]
        dst = _ends(mode)[1]
        pkt = IP(src=src, dst=dst) / TCP(sport=sport, dport=PORT, seq=isn, flags="S",
                                         window=512, options=[("MSS", 1460)])  # fmt: skip
        with self.link(node, mode) as s:
            s.send(self.frame(node, mode, pkt))
            return _reply(s, dst, sport, 0x12, 3.0)

    def ack(
        self,
        node: Node,
        mode: str,
        sport: int,
        cookie: int,
        isn: int = 0x1000_0000,
        src: str | None = None,
        wait_s: float | None = None,
    ) -> int:
        """Send the handshake's ACK to ``node``; the flags of its answer (0:
        none within ``wait_s``; default 1 s in reset mode, where the shield
        answers RST, and none in transparent mode, where nothing answers)."""
        if wait_s is None:
            wait_s = 1.0 if mode == "reset" else 0.0
        src = src or _ends(mode)[0]
        dst = _ends(mode)[1]
        ack = (cookie + 1) & 0xFFFFFFFF
        pkt = IP(src=src, dst=dst) / TCP(
            sport=sport, dport=PORT, seq=isn + 1, ack=ack, flags="A", window=512
        )
        with self.link(node, mode) as s:
            s.send(self.frame(node, mode, pkt))
            got = _reply(s, dst, sport, 0, wait_s, flags_out=True) if wait_s > 0 else None
            return got or 0

    def udp(self, node: Node, src: str, count: int, pps: float, mode: str = "transparent") -> None:
        """``count`` UDP packets from ``src`` to ``node`` at ``pps`` (bounded by both)."""
        dst = _ends(mode)[1]
        raw = self.frame(node, mode, IP(src=src, dst=dst) / UDP(sport=4000, dport=9) / (b"x" * 18))
        gap = 1.0 / pps
        with self.link(node, mode) as s:
            t = time.monotonic()
            for _ in range(count):
                s.send(raw)
                t += gap
                if (d := t - time.monotonic()) > 0:
                    time.sleep(d)


def _ends(mode: str) -> tuple[str, str]:
    return (CLIENT_T, VIP_TRANSPARENT) if mode == "transparent" else (CLIENT_R, VIP_RESET)


def _reply(
    s: socket.socket, vip: str, sport: int, want: int, timeout: float, *, flags_out: bool = False
) -> int | None:
    """The first TCP segment from ``vip``:PORT to ``sport`` seen on ``s``
    (with flags ``want`` all set): its sequence number, or its flags."""
    deadline = time.monotonic() + timeout
    vip_b = socket.inet_aton(vip)
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            raw, addr = s.recvfrom(65536)
        except TimeoutError:
            return None
        if addr[2] == socket.PACKET_OUTGOING or len(raw) < 54 or raw[12:14] != b"\x08\x00":
            continue
        ip = raw[14:]
        if ip[9] != 6 or ip[12:16] != vip_b:
            continue
        tcp = ip[(ip[0] & 0xF) * 4 :]
        sp, dp, seq = struct.unpack_from("!HHI", tcp)
        if (sp, dp) != (PORT, sport) or tcp[13] & want != want:
            continue
        return int(tcp[13]) if flags_out else int(seq)
    return None


def _mac(ns: str, ifname: str) -> str:
    with netns.ipr(ns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        return str(ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS"))


def _attach_pass(ns: str, ifname: str) -> None:
    with netns.enter(ns):
        spec = ObjectSpec(object_path("traffic.o"))
        spec.set_constants(
            pass_net4=_be32("198.18.0.0"), pass_mask4=_mask32(15),
            pass_net6=_be32("fd00::"), pass_mask6=_mask32(8),
        )  # fmt: skip
        only_program(spec, "xdp_upstream")
        with spec.load() as coll:
            attach_xdp(coll.program("xdp_upstream"), ifname, "native")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener_in(ns: str, port: int = PORT) -> socket.socket:
    """A listening socket on every address of ``ns`` (the nodes' service)."""
    with netns.enter(ns):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(64)
    return ls


def accepted(ls: socket.socket, sport: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ls.settimeout(left)
        try:
            c, peer = ls.accept()
        except TimeoutError:
            return False
        c.close()
        if peer[1] == sport:
            return True
    return False
