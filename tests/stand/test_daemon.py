"""The daemon rotates keys, ages verified sources and cuts back the seen filter; metrics
read the live maps."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import generate_latest

from tests.conftest import VethPair
from xdpshield import netns
from xdpshield.ebpf import UInt
from xdpshield.errors import ConfigError
from xdpshield.ops.daemon import Daemon, DaemonEvent
from xdpshield.ops.metrics import registry_for
from xdpshield.shield import datapath
from xdpshield.shield.core import Shield

from .test_transparent import needs_handoff


def wait_for(cond: Callable[[], object], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def shield(veth: VethPair) -> Iterator[Shield]:
    s = Shield.load(veth.inner, ports=[80], xdp_mode="native", netns=veth.ns_inner)
    try:
        yield s
    finally:
        s.unload()


def test_rotation_advances_the_epoch_and_reports_no_key(shield: Shield) -> None:
    events: list[DaemonEvent] = []
    start = datapath.current_epoch(shield.maps)
    assert start is not None
    stop = threading.Event()
    d = Daemon(shield, rotate_s=1.0, on_event=events.append)
    t = threading.Thread(target=d.run, args=(stop,))
    t.start()
    try:
        wait_for(lambda: (datapath.current_epoch(shield.maps) or 0) >= start + 2, 10)
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
    rotated = [e.epoch for e in events if e.what == "rotated"]
    # One epoch per rotation, each reported, none skipped.
    assert rotated == list(range(start + 1, (datapath.current_epoch(shield.maps) or 0) + 1))
    # No event carries a key: neither of the live keys shows in what is logged.
    keys = shield.maps["xs_keys"].typed(UInt(4), datapath._KEY)
    secrets = [keys.lookup(slot)[0] for slot in (0, 1)]
    assert all(len(k) == 16 and any(k) for k in secrets)
    for e in events:
        logged = f"{e!r} {vars(e)}"
        assert not any(k.hex() in logged or repr(k) in logged for k in secrets), logged


def test_ageing_removes_only_expired_sources(shield: Shield) -> None:
    table = shield.maps["xs_verified"].typed(datapath._VKEY, datapath._VERIFIED)
    now = time.monotonic_ns()
    table.update(datapath.vkey("198.18.0.1"), (now - 1, 5, 0))
    table.update(datapath.vkey("fd00:5::1"), (now + 60 * 10**9, 5, 0))
    d = Daemon(shield, rotate_s=60.0)
    d.step(time.monotonic(), next_rotate=float("inf"), next_age=0.0)
    assert [str(a) for a in datapath.verified_sources(shield.maps)] == ["fd00:5::1"]


def test_metrics_expose_verdict_counters(veth: VethPair, shield: Shield) -> None:
    with netns.enter(veth.ns_outer):
        subprocess.run(
            ["ping", "-c", "2", "-i", "0.2", veth.addr_inner], check=True, capture_output=True
        )
    text = generate_latest(registry_for([shield])).decode()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("xdpshield_packets_total") and "pass-unprotected" in ln
    )
    assert f'iface="{veth.inner}"' in line and float(line.split()[-1]) >= 2
    assert f'xdpshield_protected_ports{{iface="{veth.inner}"}} 1.0' in text


def test_daemon_command_serves_metrics_and_stops_on_sigterm(veth: VethPair, shield: Shield) -> None:
    port = 19435
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            veth.ns_inner,
            sys.executable,
            "-m",
            "xdpshield",
            "daemon",
            veth.inner,
            "--rotate-keys",
            "1",
            "--metrics",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        with netns.enter(veth.ns_inner):  # the metrics listen in the shield's namespace
            for _ in range(50):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                        body = r.read().decode()
                    break
                except OSError:
                    time.sleep(0.1)
        assert "xdpshield_key_epoch" in body
        start = datapath.current_epoch(shield.maps) or 0
        wait_for(lambda: (datapath.current_epoch(shield.maps) or 0) > start, 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "rotated (key epoch" in out


@needs_handoff
def test_seen_filter_is_cut_back_to_live_peers(veth: VethPair) -> None:
    # In transparent mode the daemon rebuilds the seen-sources filter from the
    # namespace's sockets: a source with no socket left drops out of it.
    sh = Shield.load(
        veth.inner, ports=[80], xdp_mode="native", handshake="transparent", netns=veth.ns_inner
    )
    try:
        datapath.mark_seen(sh.maps, ["198.19.77.7", "fd00:19::77"])
        events: list[DaemonEvent] = []
        d = Daemon(sh, seen_s=1.0, on_event=events.append)
        inf = float("inf")
        d.step(time.monotonic(), next_rotate=inf, next_age=inf)
        assert events == []  # not due yet
        # From the host: the shield lists its own namespace's sockets.
        d.step(time.monotonic() + 1.0, next_rotate=inf, next_age=inf)
        assert events == [DaemonEvent("seen", removed=2)]
        seen = sh.maps["xs_seen"].typed(UInt(4), UInt(8))
        assert all(word == 0 for _, word in seen.lookup_batch())
    finally:
        sh.unload()


def test_reset_mode_has_the_seen_duty_too(veth: VethPair) -> None:
    # Reset mode reads the filter too: only seen sources' unverified
    # segments pay a socket lookup.
    reset = Shield.load(
        veth.inner, ports=[80], xdp_mode="native", handshake="reset", netns=veth.ns_inner
    )
    try:
        assert Daemon(reset, seen_s=1.0).seen_s == 1.0
        with pytest.raises(ConfigError, match=r"seen_s: seen-filter rebuild period 0\.5 s"):
            Daemon(reset, seen_s=0.5)
    finally:
        reset.unload()
