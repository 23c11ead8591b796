"""Do no harm across a shield's life: reload, unload, the daemon that serves it,
and what is left when its link or namespace goes.

- unload keeps the cookie keys and the verified sources, load reuses them: a
  handshake answered before the reload completes after it, a verified source
  stays verified; ``unload --purge`` leaves nothing.
- the daemon follows its shield: it reopens a reloaded one and exits when the
  shield is unloaded; ``status`` says what rotates the keys.
- a deleted link or namespace leaves a stale shield that ``status`` shows and
  ``unload`` removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import VethPair
from xdpshield import netns
from xdpshield.ebpf import ObjectSpec, bpffs_root, query_xdp
from xdpshield.errors import XdpShieldError
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import body_bytes, serve_http
from xdpshield.objects import obj_dir
from xdpshield.shield import datapath
from xdpshield.shield.core import RUN_DIR, STATE_MAPS, Shield
from xdpshield.shield.datapath import GuardOptions, Reason

from .test_foundation_stand import cli, pins_for
from .test_guard_stand import fetch
from .test_transparent import ECHO, EchoServer, needs_handoff

OBJ = obj_dir()
HTTP = 80
IN_NS = ("ip", "netns", "exec")


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``cond`` until it is truthy; fail naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def record(pair: VethPair) -> Path:
    return RUN_DIR / f"netns-{pair.ns_inner}" / f"{pair.inner}.json"


def status_json(pair: VethPair) -> list[dict[str, Any]]:
    r = cli(pair, "status", "--json")
    assert r.returncode == 0, r.stderr
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    return rows


@contextlib.contextmanager
def server_shield(stand: Stand, **kw: Any) -> Iterator[Callable[[], Shield]]:
    """Load on the stand's server link; yields a function that reloads it
    (unload + load) and returns the current shield; purged at the end."""
    ns = stand.ns("server")

    def load() -> Shield:
        return Shield.load(stand.server_if, xdp_mode="native", **kw, netns=ns)

    current = [load()]

    def reload() -> Shield:
        current[0].unload()
        current[0] = load()
        return current[0]

    try:
        yield reload
    finally:
        with contextlib.suppress(XdpShieldError):
            Shield.open(stand.server_if, netns=ns).unload(purge=True)


# -- state kept across unload and load -------------------------------------------------
@needs_handoff
def test_handshake_answered_before_a_reload_completes_after_it(stand: Stand) -> None:
    # The client's third ACK is lost (as in test_transparent's lost-ACK test), so
    # its first data segment carries the cookie: it arrives after the reload.
    first_ack_len = 20 + 32
    nft = (
        "table inet xs_lossy {\n chain out {\n  type filter hook output priority 0;\n"
        f"  tcp dport {ECHO} tcp flags == ack quota until {first_ack_len + 1} bytes counter drop\n"
        " }\n}\n"
    )
    stand.exec("client", ["nft", "-f", "-"], input=nft, check=True)
    payload = b"answered by the old load, completed by the new one"
    # Every SYN answered by the shield (no flood threshold), so the cookie is ours.
    opts = GuardOptions(syn_flood_pps=0)
    with server_shield(stand, ports=[ECHO], handshake="transparent", options=opts) as reload:
        srv = EchoServer(stand, 4)
        try:
            with netns.enter(stand.ns("client")):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with s:
                s.settimeout(5)
                s.connect((stand.addr("server", 4), ECHO))  # SYN-ACK: a cookie of this load
                sh = reload()
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
        finally:
            srv.close()
        stats = sh.stats()
    assert got == payload
    assert stats[Reason.SYN_COOKIE_SENT][0] == 0  # the new load answered no SYN
    assert stats[Reason.HANDOFF][0] == 1  # yet handed the connection to the kernel


def test_verified_source_stays_verified_across_a_reload(stand: Stand) -> None:
    with server_shield(stand, ports=[HTTP], handshake="reset") as reload:
        with serve_http(stand, port=HTTP, body_size=1000):
            with pytest.raises(ConnectionResetError):
                fetch(stand)  # completes the cookie handshake: the source is verified
            sh = reload()
            assert fetch(stand) == body_bytes(1000)  # first try after the reload
        stats = sh.stats()
    assert stats[Reason.VERIFIED_PASS][0] >= 1
    assert stats[Reason.SYN_COOKIE_SENT][0] == 0


def test_unload_keeps_only_the_state_and_purge_removes_everything(veth: VethPair) -> None:
    pins = pins_for(veth) / veth.inner
    assert cli(veth, "load", veth.inner, "--protect", "80").returncode == 0
    r = cli(veth, "unload", veth.inner)
    assert r.returncode == 0, r.stderr
    assert "cookie keys and verified sources kept" in r.stdout
    assert sorted(p.name for p in pins.iterdir()) == sorted(STATE_MAPS)
    assert not record(veth).exists()
    assert status_json(veth) == []  # kept state is no loaded shield
    assert f"{veth.inner}: not loaded; its cookie keys and verified sources are kept" in (
        cli(veth, "status").stdout
    )
    with netns.enter(veth.ns_inner):
        assert query_xdp(veth.inner) is None
    r = cli(veth, "unload", veth.inner)
    assert r.returncode == 1 and "not loaded" in r.stderr and "--purge" in r.stderr
    # Unloaded with state kept: --purge removes the state.
    r = cli(veth, "unload", veth.inner, "--purge")
    assert r.returncode == 0, r.stderr
    assert "removed the state kept" in r.stdout
    assert not pins_for(veth).exists()
    assert "are kept" not in cli(veth, "status").stdout
    # Loaded: --purge unloads and removes it all at once.
    assert cli(veth, "load", veth.inner, "--protect", "80").returncode == 0
    r = cli(veth, "unload", veth.inner, "--purge")
    assert r.returncode == 0, r.stderr
    assert not pins_for(veth).exists() and not record(veth).exists()
    r = cli(veth, "unload", veth.inner, "--purge")
    assert r.returncode == 1 and "not loaded" in r.stderr


def test_kept_map_that_no_longer_fits_is_recreated_with_a_warning(veth: VethPair) -> None:
    pins = pins_for(veth) / veth.inner
    pins.mkdir(parents=True)
    with ObjectSpec(OBJ / "test_counter.o") as spec, spec.load() as coll:
        coll.map("hits").pin(pins / "xs_keys")  # a per-CPU array: not struct xs_key
    r = cli(veth, "load", veth.inner, "--protect", "80")
    try:
        assert r.returncode == 0, r.stderr
        assert "kept map xs_keys" in r.stderr and "created a new one" in r.stderr
        (st,) = status_json(veth)
        assert st["attached"] and st["key_age_s"] is not None and st["key_age_s"] < 60
    finally:
        cli(veth, "unload", veth.inner, "--purge")
    assert not pins_for(veth).exists()


# -- the daemon follows its shield ------------------------------------------------------
class DaemonProc:
    """``xdpshield daemon`` in the shield's namespace, its output read line by line."""

    def __init__(self, pair: VethPair, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*IN_NS, pair.ns_inner, sys.executable, "-m", "xdpshield", "daemon", pair.inner, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def said(self, text: str) -> bool:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return any(text in ln for ln in self.seen)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _daemon_of(pair: VethPair) -> dict[str, Any] | None:
    rows = status_json(pair)
    return rows[0].get("daemon") if rows else None


def test_daemon_reopens_a_reloaded_shield_and_exits_when_it_is_unloaded(veth: VethPair) -> None:
    sh = Shield.load(
        veth.inner, ports=[80], xdp_mode="native", handshake="reset", netns=veth.ns_inner
    )
    d = DaemonProc(veth, "--rotate-keys", "1")
    try:
        wait_for(lambda: d.said("keys rotate every 1 s"), 20, "the daemon to start")
        # A purged reload: new maps, new keys, a new program id.
        sh.unload(purge=True)
        sh = Shield.load(
            veth.inner, ports=[80], xdp_mode="native", handshake="reset", netns=veth.ns_inner
        )
        start = datapath.current_epoch(sh.maps)
        assert start is not None
        wait_for(lambda: d.said("the shield was reloaded"), 10, "the daemon to reopen")
        wait_for(
            lambda: (datapath.current_epoch(sh.maps) or 0) >= start + 2,
            10,
            "the daemon to rotate the new shield's keys",
        )
        assert _daemon_of(veth) == {"pid": d.proc.pid, "rotate_s": 1.0}
        sh.unload()
        assert d.proc.wait(15) == 0
        assert d.said("the shield was unloaded; the daemon exits")
        assert not record(veth).with_suffix(".daemon").exists()
    finally:
        d.stop()
        with contextlib.suppress(XdpShieldError):
            Shield.open(veth.inner, netns=veth.ns_inner).unload(purge=True)


def test_status_says_what_rotates_the_keys(veth: VethPair) -> None:
    assert cli(veth, "load", veth.inner, "--protect", "80").returncode == 0
    d: DaemonProc | None = None
    try:
        r = cli(veth, "status")
        assert f"keys never rotate: no daemon running (xdpshield daemon {veth.inner})" in r.stdout
        (st,) = status_json(veth)
        assert st["daemon"] is None and 0 <= st["key_age_s"] < 60
        d = DaemonProc(veth, "--rotate-keys", "7")
        want = {"pid": d.proc.pid, "rotate_s": 7.0}
        wait_for(lambda: _daemon_of(veth) == want, 20, "status to show the daemon")
        r = cli(veth, "status")
        assert f"rotated by daemon pid {d.proc.pid} every 7 s" in r.stdout
        assert "keys never rotate" not in r.stdout
        d.proc.kill()  # no chance to remove its record: a dead pid counts as none
        d.proc.wait(10)
        assert record(veth).with_suffix(".daemon").exists()
        assert _daemon_of(veth) is None
        assert "keys never rotate" in cli(veth, "status").stdout
    finally:
        if d is not None:
            d.stop()
        cli(veth, "unload", veth.inner, "--purge")


# -- stale shields -----------------------------------------------------------------------
@pytest.mark.parametrize("how", ["iface", "stale"])
def test_deleted_link_leaves_a_stale_shield_that_unload_removes(veth: VethPair, how: str) -> None:
    assert cli(veth, "load", veth.inner, "--protect", "80").returncode == 0
    assert record(veth).exists()
    with netns.ipr(veth.ns_inner) as nl:
        nl.link("del", index=nl.link_lookup(ifname=veth.inner)[0])
    (st,) = status_json(veth)
    assert st["stale"] is True and st["iface"] == veth.inner
    assert st["why"] == f"interface {veth.inner} is gone"
    assert "stale" in cli(veth, "status").stdout
    m = cli(veth, "metrics")  # the shields that are left, no error for the stale one
    assert m.returncode == 0 and f'iface="{veth.inner}"' not in m.stdout, m.stderr
    args = ("unload", veth.inner) if how == "iface" else ("unload", "--stale")
    r = cli(veth, *args)
    assert r.returncode == 0, r.stderr
    assert f"removed the stale shield on {veth.inner}" in r.stdout
    assert not pins_for(veth).exists()
    assert not record(veth).exists()
    assert status_json(veth) == []


def host_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xdpshield", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_deleted_namespace_is_stale_from_the_host_and_unload_netns_removes_it(
    veth: VethPair,
) -> None:
    assert cli(veth, "load", veth.inner, "--protect", "80").returncode == 0
    netns.remove(veth.ns_inner)
    r = host_cli("status", "--json")
    assert r.returncode == 0, r.stderr
    ours = [row for row in json.loads(r.stdout) if row.get("netns") == veth.ns_inner]
    assert [(row["iface"], row["stale"], row["why"]) for row in ours] == [
        (veth.inner, True, f"network namespace {veth.ns_inner} is gone")
    ]
    r = host_cli("unload", veth.inner, "--netns", veth.ns_inner)
    assert r.returncode == 0, r.stderr
    assert "removed the stale shield" in r.stdout
    assert not pins_for(veth).exists()
    assert not (RUN_DIR / f"netns-{veth.ns_inner}").exists()
    r = host_cli("unload", veth.inner, "--netns", veth.ns_inner)
    assert r.returncode == 1 and f"network namespace {veth.ns_inner!r} does not exist" in r.stderr


# -- what status shows ---------------------------------------------------------------------
def test_status_json_shows_the_pin_dir_as_on_the_host(veth: VethPair) -> None:
    # `ip netns exec` hides /sys/fs/bpf: the command reaches bpffs through
    # /proc/PID/root, a path that is gone once it exits.
    assert cli(veth, "load", veth.inner, "--protect", "80").returncode == 0
    try:
        (st,) = status_json(veth)
        want = f"/sys/fs/bpf/xdpshield/netns-{veth.ns_inner}/{veth.inner}"
        assert st["pin_dir"] == want
        assert os.path.isdir(want) and bpffs_root() == Path("/sys/fs/bpf")
    finally:
        cli(veth, "unload", veth.inner, "--purge")


def test_unload_netns_from_the_host_reaches_a_live_namespace(veth: VethPair) -> None:
    assert cli(veth, "load", veth.inner, "--protect", "80").returncode == 0
    r = host_cli("unload", veth.inner, "--netns", veth.ns_inner, "--purge")
    assert r.returncode == 0, r.stderr
    assert f"xdpshield unloaded from {veth.inner}" in r.stdout
    with netns.enter(veth.ns_inner):
        assert query_xdp(veth.inner) is None
    assert not pins_for(veth).exists() and not record(veth).exists()
