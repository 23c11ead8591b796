"""The stand: up/down (idempotent, also after a failure or a crash), coexistence,
reachability over IPv4 and IPv6, and delivery of the server's XDP_TX replies.

Every test makes its own stand with a unique prefix and removes it even on failure.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdpshield import netns
from xdpshield.ebpf import ObjectSpec, attach_xdp, bpffs_root, query_xdp
from xdpshield.errors import StandError
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import flood, legit_load
from xdpshield.objects import obj_dir
from xdpshield.shield.core import RUN_DIR, Shield

OBJ = obj_dir()


def leftovers(prefix: str) -> list[str]:
    """Namespaces, host interfaces, shield pins and records that carry the prefix."""
    found = [f"netns {p.name}" for p in netns.NETNS_RUN_DIR.glob(f"{prefix}-*")]
    found += [f"link {name}" for _, name in socket.if_nameindex() if name.startswith(prefix)]
    for root in (bpffs_root() / "xdpshield", RUN_DIR):
        found += [f"pins {p}" for p in root.glob(f"netns-{prefix}-*")]
    return found


@pytest.fixture
def stand() -> Iterator[Stand]:
    s = Stand(netns.unique_prefix("xs"))
    try:
        yield s
    finally:
        s.down()
        assert leftovers(s.prefix) == []


def ping(s: Stand, dst: str, count: int = 2) -> subprocess.CompletedProcess[str]:
    return s.exec("client", ["ping", "-c", str(count), "-i", "0.2", "-W", "2", dst])


def ethtool_sum(s: Stand, role: str, ifname: str, suffix: str) -> int:
    out = s.exec(role, ["ethtool", "-S", ifname], check=True).stdout  # type: ignore[arg-type]
    total = 0
    for line in out.splitlines():
        name, _, value = line.strip().partition(":")
        if name.endswith(suffix):
            total += int(value)
    return total


def test_up_down_idempotent(stand: Stand) -> None:
    first = stand.up()
    assert first.up
    again = stand.up()
    assert again.up
    assert [link.ifname for link in again.links] == [link.ifname for link in first.links]
    upstream = next(link for link in again.links if link.ifname == stand.uplink_if)
    assert upstream.xdp is not None and upstream.xdp.mode == "native"
    # Idempotent: the upstream program was not replaced by the second up().
    assert upstream.xdp.prog_id == next(
        link.xdp.prog_id for link in first.links if link.xdp is not None
    )
    server = next(link for link in again.links if link.ifname == stand.server_if)
    assert {"198.18.0.2/24", "fd00:18::2/64"} <= set(server.addresses)
    with netns.enter(stand.ns("server")):
        cookies = Path("/proc/sys/net/ipv4/tcp_syncookies").read_text().strip()
    assert cookies == "2"
    stand.down()
    assert stand.status().absent
    assert leftovers(stand.prefix) == []
    stand.down()  # harmless when already down
    assert leftovers(stand.prefix) == []


def test_failure_halfway_leaves_nothing(stand: Stand, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Stand) -> None:
        assert netns.exists(self.ns("server"))  # we really are halfway
        raise RuntimeError("injected failure")

    monkeypatch.setattr(Stand, "_pin_neighbours", boom)
    with pytest.raises(RuntimeError, match="injected"):
        stand.up()
    assert leftovers(stand.prefix) == []


def test_crash_halfway_then_down_and_up(stand: Stand) -> None:
    # A process that dies in the middle of up(): nothing can roll back.
    code = textwrap.dedent(f"""
        import os
        from xdpshield.lab.stand import Stand
        Stand._routes = lambda self: os._exit(7)
        Stand({stand.prefix!r}).up()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 7, proc.stderr
    half = stand.status()
    assert all(half.namespaces.values()) and not half.up
    # up() completes a half-built stand, down() removes it.
    assert stand.up().up
    assert ping(stand, stand.server4).returncode == 0
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    stand.down()
    assert leftovers(stand.prefix) == []


def test_down_removes_a_loaded_shield_and_its_pins(stand: Stand) -> None:
    # The pins live in the host's bpffs and would keep the shield's maps alive
    # after its namespace is gone.
    stand.up()
    Shield.load(stand.server_if, ports=[80], handshake="reset", netns=stand.ns("server")).close()
    pins = list((bpffs_root() / "xdpshield").glob(f"netns-{stand.prefix}-*/*/prog"))
    assert len(pins) == 1
    stand.down()
    assert leftovers(stand.prefix) == []


def test_two_stands_coexist(stand: Stand) -> None:
    other = Stand(netns.unique_prefix("xs"))
    try:
        stand.up()
        other.up()
        for s in (stand, other):
            assert ping(s, s.server4).returncode == 0
        other.down()
        assert leftovers(other.prefix) == []
        assert stand.status().up
        assert ping(stand, stand.server4).returncode == 0
    finally:
        other.down()


@pytest.mark.parametrize("family", [4, 6])
def test_client_reaches_server(stand: Stand, family: int) -> None:
    stand.up()
    dst = stand.addr("server", family)
    res = ping(stand, dst, count=3)
    assert res.returncode == 0, res.stdout + res.stderr
    assert " 0% packet loss" in res.stdout
    # Real TCP through the upstream: connections complete and the body checks out.
    load = legit_load(stand, n_clients=4, duration_s=5, count=40, family=family)
    assert (load.attempted, load.completed, load.failed) == (40, 40, 0)
    assert load.bytes_verified == 40 * 4096


def test_server_xdp_tx_replies_are_delivered(stand: Stand) -> None:
    """A native program on the server link answers with XDP_TX: the upstream gets every
    reply (and blackholes it, as they go to spoofed sources), none is refused."""
    stand.up()
    with ObjectSpec(OBJ / "baseline.o").load() as coll, netns.enter(stand.ns("server")):
        attach_xdp(coll.program("bench_reflect"), stand.server_if, "native")
        assert query_xdp(stand.server_if) is not None
    tx_before = ethtool_sum(stand, "server", stand.server_if, "_xdp_tx")
    dropped_before = ethtool_sum(stand, "attacker", stand.uplink_if, "_xdp_drops")
    res = flood("syn", stand=stand, count=5000, duration_s=10)
    assert res.sent == 5000
    # A fresh link also carries a few MLD reports (IPv6 multicast, within ~1 s of up).
    assert 0 <= ethtool_sum(stand, "server", stand.server_if, "_xdp_tx") - tx_before - 5000 <= 8
    assert ethtool_sum(stand, "server", stand.server_if, "_xdp_tx_errors") == 0
    # Reflected MLD reports go to link-local addresses: delivered, not blackholed.
    assert ethtool_sum(stand, "attacker", stand.uplink_if, "_xdp_drops") - dropped_before == 5000


def test_bad_prefix_and_missing_stand() -> None:
    with pytest.raises(StandError, match="prefix"):
        Stand("a-prefix-too-long-for-ifnames")
    with pytest.raises(StandError, match="prefix"):
        Stand("bad/name")
    absent = Stand(netns.unique_prefix("xs"))
    with pytest.raises(StandError, match="does not exist"):
        absent.exec("client", ["true"])
    assert absent.status().absent


def test_threaded_server_napi() -> None:
    s = Stand(netns.unique_prefix("xs"), server_napi_cpu=0)
    try:
        assert s.up().up
        out = s.exec("server", ["cat", f"/sys/class/net/{s.server_if}/threaded"], check=True)
        assert out.stdout.strip() == "1"
        assert ping(s, s.server4).returncode == 0
    finally:
        s.down()
    assert leftovers(s.prefix) == []


def test_open_loop_options() -> None:
    """The overload model's options: both uplink ends threaded, the upstream's
    offloads off so forwarded skbs share the server's ring, and TCP still works."""
    s = Stand(
        netns.unique_prefix("xs"),
        queues=1,
        server_napi_cpu=0,
        upstream_napi_cpu=0,
        shared_rx_ring=True,
    )
    try:
        assert s.up().up
        for role, ifname in (("server", s.server_if), ("attacker", s.uplink_if)):
            out = s.exec(role, ["cat", f"/sys/class/net/{ifname}/threaded"], check=True)  # type: ignore[arg-type]
            assert out.stdout.strip() == "1"
        feats = s.exec("attacker", ["ethtool", "-k", s.uplink_if], check=True).stdout
        assert "tcp-segmentation-offload: off" in feats
        assert "generic-segmentation-offload: off" in feats
        before = ethtool_sum(s, "server", s.server_if, "_xdp_packets")
        load = legit_load(s, n_clients=2, duration_s=5, count=20)
        assert (load.attempted, load.completed) == (20, 20)
        # Legit skbs went through the server's ring (its NAPI counts them).
        assert ethtool_sum(s, "server", s.server_if, "_xdp_packets") - before >= 20 * 3
    finally:
        s.down()
    assert leftovers(s.prefix) == []
