"""The policy on the stand: real tools (ping, curl, dig against dnsmasq,
ntpdig, the xdpshield command) and real floods between namespaces.

- deny the client's network: its ping and curl fail and the deny counter
  moves; delete it: they work again;
- allow a network: a SYN flood from it reaches the kernel;
- a UDP flood from source port 53 dies in XDP while the server's own DNS
  queries (dig, to a dnsmasq in the client namespace) and NTP (ntpdig) get
  their answers;
- a fragment flood dies while a real 4 KB datagram over MTU 1500 arrives whole;
- ``config apply`` of a changed file under a flood keeps every established
  connection;
- bad input to a live edit changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdpshield import netns
from xdpshield.lab.stand import DEFAULT_SOURCES4, Stand
from xdpshield.lab.traffic import FloodResult, flood, serve_http
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason


def xdpshield(stand: Stand, *args: str) -> subprocess.CompletedProcess[str]:
    """The command, run in the server's namespace."""
    return stand.exec("server", [sys.executable, "-m", "xdpshield", *args])


def ping(stand: Stand, family: int) -> bool:
    dst = stand.addr("server", family)
    return stand.exec("client", ["ping", f"-{family}", "-c1", "-W1", dst]).returncode == 0


def curl(stand: Stand, family: int) -> bool:
    dst = stand.addr("server", family)
    host = f"[{dst}]" if family == 6 else dst
    r = stand.exec("client", ["curl", "-sS", "-o", "/dev/null", "-m", "3", f"http://{host}/"])
    return r.returncode == 0


@contextlib.contextmanager
def shielded(stand: Stand, handshake: str = "auto") -> Iterator[Shield]:
    s = Shield.load(stand.server_if, ports=[80], handshake=handshake, netns=stand.ns("server"))
    try:
        yield s
    finally:
        s.unload()


def in_background(fn: object) -> tuple[threading.Thread, list[FloodResult]]:
    out: list[FloodResult] = []
    t = threading.Thread(target=lambda: out.append(fn()))  # type: ignore[operator]
    t.start()
    return t, out


@pytest.mark.parametrize("family", [4, 6])
def test_deny_and_undeny_the_clients_network(stand: Stand, family: int) -> None:
    net = "198.18.1.0/24" if family == 4 else "fd00:18:1::/48"
    with shielded(stand) as s, serve_http(stand, port=80):
        assert ping(stand, family) and curl(stand, family)
        r = xdpshield(stand, "deny", stand.server_if, "add", net)
        assert r.returncode == 0, r.stderr
        before = s.stats()[Reason.DENY][0]
        assert not ping(stand, family)
        assert not curl(stand, family)
        assert s.stats()[Reason.DENY][0] > before
        listed = xdpshield(stand, "deny", stand.server_if, "list", "--json")
        assert '"prefix": "' + net + '"' in listed.stdout
        r = xdpshield(stand, "deny", stand.server_if, "del", net)
        assert r.returncode == 0, r.stderr
        assert ping(stand, family) and curl(stand, family)


def test_an_allowed_network_floods_the_kernel_itself(stand: Stand) -> None:
    with shielded(stand, handshake="reset") as s:
        r = xdpshield(stand, "allow", stand.server_if, "add", DEFAULT_SOURCES4)
        assert r.returncode == 0, r.stderr
        fl = flood("syn", stand=stand, count=20_000, duration_s=5.0, dport=80)
        stats = s.stats()
    assert fl.sent >= 10_000
    # Every SYN that reached XDP passed unjudged; none met the guard.
    assert stats[Reason.ALLOW_PASS][0] >= 0.9 * fl.sent, stats[Reason.ALLOW_PASS]
    assert stats[Reason.SYN_COOKIE_SENT][0] == 0


DNS_NAME = "policy.test"


@contextlib.contextmanager
def resolver(stand: Stand) -> Iterator[str]:
    """dnsmasq in the client namespace, answering DNS_NAME itself."""
    addr = stand.addr("client", 4)
    proc = stand.popen(
        "client",
        [
            "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
            f"--listen-address={addr}", "--bind-interfaces", "--port=53",
            f"--address=/{DNS_NAME}/198.18.1.99", "--pid-file=", "--user=root",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(50):
            if stand.exec("client", ["ss", "-Hlun", "sport", "= :53"]).stdout.strip():
                break
            time.sleep(0.1)
        else:
            raise AssertionError("dnsmasq did not start")
        yield addr
    finally:
        proc.terminate()
        proc.wait(5)


NTP_EPOCH = 2_208_988_800


@contextlib.contextmanager
def ntp_server(stand: Stand) -> Iterator[str]:
    """An SNTP server (RFC 4330 server mode) in the client namespace: a
    mode-4 reply with the receive and transmit times, to anyone who asks."""
    addr = stand.addr("client", 4)
    stop = threading.Event()
    with netns.enter(stand.ns("client")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, 123))
    sock.settimeout(0.2)

    def ts() -> bytes:
        t = time.time() + NTP_EPOCH
        return struct.pack("!II", int(t), int((t % 1) * 2**32))

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            if len(data) < 48:
                continue
            rx = ts()
            head = struct.pack("!BBbb", (4 << 3) | 4, 2, 6, -20) + bytes(8) + b"LOCL"
            sock.sendto(head + ts() + data[40:48] + rx + ts(), peer)

    t = threading.Thread(target=serve)
    t.start()
    try:
        yield addr
    finally:
        stop.set()
        t.join(5)
        sock.close()


def test_reflection_flood_dies_while_our_dns_and_ntp_work(stand: Stand) -> None:
    with shielded(stand) as s, resolver(stand) as dns, ntp_server(stand) as ntp:
        t, result = in_background(
            lambda: flood("udp", stand=stand, sport=53, dport=40000, duration_s=4.0, count=400_000)
        )
        try:
            time.sleep(0.5)
            for _ in range(3):
                r = stand.exec("server", ["dig", f"@{dns}", DNS_NAME, "+short", "+tries=1",
                                          "+time=2"])  # fmt: skip
                assert r.stdout.strip() == "198.18.1.99", (r.stdout, r.stderr)
            r = stand.exec("server", ["ntpdig", "-t", "2", ntp])
            assert r.returncode == 0 and ntp in r.stdout, (r.stdout, r.stderr)
        finally:
            t.join(30)
        stats = s.stats()
    (fl,) = result
    assert fl.sent > 10_000
    assert stats[Reason.REFLECTION][0] >= 0.9 * fl.sent, (stats[Reason.REFLECTION], fl.sent)


def test_fragment_flood_dies_while_a_real_datagram_arrives_whole(stand: Stand) -> None:
    payload = os.urandom(4000)  # three fragments over MTU 1500
    server = stand.addr("server", 4)
    with netns.enter(stand.ns("server")):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.enter(stand.ns("client")):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx, shielded(stand) as s:
        rx.bind((server, 9000))
        rx.settimeout(3)
        t, result = in_background(
            lambda: flood("frag", stand=stand, duration_s=3.0, count=300_000, dport=9000)
        )
        try:
            time.sleep(0.3)
            got = []
            for _ in range(3):
                tx.sendto(payload, (server, 9000))
                got.append(rx.recv(65536))
        finally:
            t.join(30)
        stats = s.stats()
    (fl,) = result
    assert got == [payload] * 3
    assert stats[Reason.PASS_FRAGMENT][0] >= 6  # two per datagram at least
    # Of the flood, only first fragments (offset 0: 1 in 8192) may pass.
    assert stats[Reason.FRAGMENT_UNKNOWN][0] >= 0.9 * fl.sent, (stats, fl.sent)


CONFIG = """
[[interface]]
name = "{iface}"
protect = ["80"]

[deny]
prefixes = [{deny}]

[[rule]]
name = "no-memcached"
action = "drop"
protocol = "udp"
dport = {dport}
"""


def echo_server(stand: Stand, port: int, stop: threading.Event) -> threading.Thread:
    with netns.enter(stand.ns("server")):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((stand.addr("server", 4), port))
    ls.listen(64)
    ls.settimeout(0.2)

    def serve(c: socket.socket) -> None:
        with c:
            while data := c.recv(4096):
                c.sendall(data)

    def run() -> None:
        with ls:
            while not stop.is_set():
                try:
                    c, _ = ls.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=serve, args=(c,), daemon=True).start()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_config_apply_under_a_flood_keeps_established_connections(
    stand: Stand, tmp_path: Path
) -> None:
    cfg = tmp_path / "xdpshield.toml"
    stop = threading.Event()
    srv = echo_server(stand, 80, stop)
    conns: list[socket.socket] = []
    try:
        cfg.write_text(CONFIG.format(iface=stand.server_if, deny='"203.0.113.0/24"',
                                     dport=11211))  # fmt: skip
        r = xdpshield(stand, "config", "apply", str(cfg))
        assert r.returncode == 0, r.stderr
        with netns.enter(stand.ns("client")):
            for _ in range(20):
                c = socket.create_connection((stand.addr("server", 4), 80), timeout=5)
                conns.append(c)
        for i, c in enumerate(conns):
            c.sendall(b"before %d" % i)
            assert c.recv(64) == b"before %d" % i
        t, _ = in_background(
            lambda: flood("syn", stand=stand, duration_s=4.0, count=2_000_000, dport=80)
        )
        try:
            time.sleep(0.5)
            for n in range(3):  # three changed files while the flood runs
                deny = ", ".join(f'"198.51.{n}.{i * 16}/28"' for i in range(16))
                cfg.write_text(CONFIG.format(iface=stand.server_if, deny=deny, dport=11211 + n))
                r = xdpshield(stand, "config", "apply", str(cfg))
                assert r.returncode == 0, r.stderr
                for i, c in enumerate(conns):
                    c.sendall(b"during %d.%d" % (n, i))
                    assert c.recv(64) == b"during %d.%d" % (n, i)
        finally:
            t.join(30)
        with Shield.open(stand.server_if, netns=stand.ns("server")) as s:
            rules = s.rules()
            deny_live = [str(e.prefix) for e in s.list_entries("deny")]
        assert [r["name"] for r in rules] == ["no-memcached"]
        assert rules[0]["rule"] == "drop udp dport 11213", rules[0]["rule"]
        assert len(deny_live) == 16 and deny_live[0].startswith("198.51.2.")
    finally:
        for c in conns:
            c.close()
        stop.set()
        srv.join(5)
        with contextlib.suppress(Exception):
            Shield.open(stand.server_if, netns=stand.ns("server")).unload()


def test_a_bad_live_edit_changes_nothing(stand: Stand) -> None:
    with shielded(stand) as s:
        assert xdpshield(stand, "deny", stand.server_if, "add", "203.0.113.0/24").returncode == 0
        for bad in (["198.51.100.300/24"], ["198.51.100.1/24"], ["203.0.113.0/24", "nonsense"]):
            r = xdpshield(stand, "deny", stand.server_if, "add", *bad)
            assert r.returncode == 2, (bad, r.stdout, r.stderr)
            assert bad[-1] in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        r = xdpshield(stand, "deny", stand.server_if, "del", "198.51.100.0/24")
        assert r.returncode == 2 and "not in the deny list: 198.51.100.0/24" in r.stderr
        assert [str(e.prefix) for e in s.list_entries("deny")] == ["203.0.113.0/24"]


def test_config_diff_then_apply_and_a_bad_file_applies_nothing(
    stand: Stand, tmp_path: Path
) -> None:
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(CONFIG.format(iface=stand.server_if, deny='"203.0.113.0/24"', dport=11211))
    try:
        r = xdpshield(stand, "config", "diff", str(cfg))
        assert r.returncode == 0, r.stderr
        assert "would load the shield" in r.stdout and "+203.0.113.0/24" in r.stdout
        assert "rule +no-memcached" in r.stdout
        assert xdpshield(stand, "config", "apply", str(cfg)).returncode == 0
        r = xdpshield(stand, "config", "diff", str(cfg), "--json")
        (change,) = json.loads(r.stdout)
        assert change["load"] is False and change["rules"] == {
            "added": [], "removed": [], "changed": []
        }  # fmt: skip
        assert "no change" in xdpshield(stand, "config", "diff", str(cfg)).stdout
        # A changed file: the diff says what would change, and nothing else.
        cfg.write_text(CONFIG.format(iface=stand.server_if, deny='"198.51.100.0/24"', dport=53))
        r = xdpshield(stand, "config", "diff", str(cfg))
        assert "+198.51.100.0/24" in r.stdout and "-203.0.113.0/24" in r.stdout
        assert "rule ~no-memcached" in r.stdout and "protect" not in r.stdout
        # A file with errors: exit 2, every error named, nothing applied.
        bad = CONFIG.format(iface=stand.server_if, deny='"198.51.100.1/24"', dport=70000)
        cfg.write_text(bad)
        r = xdpshield(stand, "config", "apply", str(cfg))
        assert r.returncode == 2
        assert f"{cfg}:7:" in r.stderr and "host bits" in r.stderr
        assert f"{cfg}:13:" in r.stderr and "70000" in r.stderr
        with Shield.open(stand.server_if, netns=stand.ns("server")) as s:
            assert [str(e.prefix) for e in s.list_entries("deny")] == ["203.0.113.0/24"]
            assert s.rules()[0]["rule"] == "drop udp dport 11211"
    finally:
        with contextlib.suppress(Exception):
            Shield.open(stand.server_if, netns=stand.ns("server")).unload()
