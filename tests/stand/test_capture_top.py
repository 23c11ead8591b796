"""``xdpshield capture`` and ``top`` on the stand: real frames from the
attacker, the command in the server's namespace, the file read back by
tcpdump and scapy; ``top`` in tmux during a bounded flood.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

from xdpshield import netns
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import flood
from xdpshield.policy.model import Action, Policy, Prefix, Rule
from xdpshield.shield.core import Shield, _samples_lock

from .test_policy_stand import shielded, xdpshield

DENIED = "198.19.7.7"
RULED = "198.19.8.8"
RULE_PORT = 7001


def P(text: str) -> Prefix:
    n = ipaddress.ip_network(text, strict=False)
    return Prefix(n.version, n.network_address.packed, n.prefixlen)


def policy() -> Policy:
    rule = Rule(
        name="no-7001",
        action=Action.DROP,
        protocols=frozenset({17}),
        dports=((RULE_PORT, RULE_PORT),),
    )
    return Policy(deny={P(DENIED + "/32"): None}, rules=(rule,))


def frames(stand: Stand) -> list[bytes]:
    """Three denied frames (one longer than a sample's head), three a rule drops."""
    eth = Ether(src=stand.mac("attacker"), dst=stand.mac("server"))
    out = []
    for i, size in enumerate((10, 300, 20)):
        ip = IP(src=DENIED, dst=stand.server4, id=100 + i)
        out.append(bytes(eth / ip / UDP(sport=4000 + i, dport=7000) / Raw(bytes([i]) * size)))
    for i in range(3):
        ip = IP(src=RULED, dst=stand.server4, id=200 + i)
        out.append(bytes(eth / ip / UDP(sport=5000 + i, dport=RULE_PORT) / Raw(b"r" * (i + 1))))
    return out


def send(stand: Stand, raw: list[bytes]) -> None:
    with netns.enter(stand.ns("attacker")), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((stand.uplink_if, 0))
        for f in raw:
            s.send(f)
            time.sleep(0.01)


@contextlib.contextmanager
def capturing(stand: Stand, shield: Shield, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``xdpshield capture`` in the background, reading once this returns;
    ended by its PID if it has not stopped by itself."""
    lock = _samples_lock(shield.meta_path)
    proc = stand.popen(
        "server",
        [sys.executable, "-m", "xdpshield", "capture", stand.server_if, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not (lock.exists() and lock.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "capture never took the samples"
            time.sleep(0.05)
        time.sleep(0.3)  # from the lock to the ring opened
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def tcpdump_frames(path: Path) -> list[bytes]:
    """The frames of a capture file as tcpdump prints them (-xx: hex from the link layer)."""
    r = subprocess.run(
        ["tcpdump", "-r", str(path), "-nn", "-xx"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    out: list[bytes] = []
    for ln in r.stdout.splitlines():
        m = re.match(r"\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{2,4}\s?)+)", ln)
        if m:
            out[-1] += bytes.fromhex(m.group(1).replace(" ", ""))
        else:
            out.append(b"")
    return out


def test_capture_pcapng_reads_back_byte_for_byte(stand: Stand, tmp_path: Path) -> None:
    path = tmp_path / "drops.pcapng"
    sent = frames(stand)
    with shielded(stand) as s:
        s.apply_policy(policy())
        rule_id = next(int(r["id"]) for r in s.rules() if r["name"] == "no-7001")
        with capturing(stand, s, "-w", str(path), "--count", "6", "--duration", "30") as proc:
            send(stand, sent)
            _, errtext = proc.communicate(timeout=40)
        assert proc.returncode == 0, errtext
    heads = [f[:128] for f in sent]
    assert tcpdump_frames(path) == heads
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == heads
    assert [p.wirelen for p in pkts] == [len(f) for f in sent]
    comments = [(p.comment or b"").decode() for p in pkts]
    assert comments[:3] == ["reason=deny action=drop"] * 3
    assert comments[3:] == [f"reason=rule-drop rule=no-7001({rule_id}) action=drop"] * 3


def test_capture_reason_and_filter_select(stand: Stand) -> None:
    sent = frames(stand)
    with shielded(stand) as s:
        s.apply_policy(policy())
        args = ["--reason", "rule-drop", "--filter", "udp src port 5001", "--duration", "8"]
        with capturing(stand, s, *args) as proc:
            send(stand, sent)
            outtext, errtext = proc.communicate(timeout=20)
        assert proc.returncode == 0, errtext
        lines = outtext.splitlines()
        assert len(lines) == 1, outtext
        assert f"{RULED} > {stand.server4} udp 5001 > {RULE_PORT}" in lines[0]
        assert "reason=rule-drop rule=no-7001(" in lines[0]
        # Only the reason: every rule drop, no deny.
        with capturing(stand, s, "--reason", "rule-drop", "--count", "3", "--duration", "10") as p:
            send(stand, sent)
            outtext, _ = p.communicate(timeout=20)
        assert len(outtext.splitlines()) == 3 and "reason=deny" not in outtext


@pytest.mark.parametrize(
    "args, text",
    [
        (["capture", "lo", "--reason", "bogus"], "unknown reason 'bogus'"),
        (["capture", "lo", "--filter", "udp port nonsense"], "--filter"),
        (["capture", "nosuchif0"], "no network interface named 'nosuchif0'"),
        (["samples", "nosuchif0", "set", "--rate", "5"], "nosuchif0"),
        (["top", "nosuchif0", "--once"], "nosuchif0"),
    ],
)
def test_bad_input_exits_2(args: list[str], text: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "xdpshield", *args], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert text in r.stderr.replace("\n", " ")


def test_samples_set_changes_the_cap(stand: Stand) -> None:
    with shielded(stand) as s:
        r = xdpshield(stand, "samples", stand.server_if, "set", "--rate", "7", "--reason", "deny")
        assert r.returncode == 0, r.stderr
        rates = s.sample_rates()
        assert rates[next(x for x in rates if x.label == "deny")] == 7
        assert {v for k, v in rates.items() if k.label != "deny"} == {100}
        r = xdpshield(stand, "samples", stand.server_if, "--json")
        assert '"deny": {\n    "rate": 7' in r.stdout
        r = xdpshield(stand, "samples", stand.server_if, "set", "--rate", "-1")
        assert r.returncode == 2 and "--rate" in r.stderr


# -- top ------------------------------------------------------------------------------------
FLOODER = "198.19.9.9"
FLOOD_PPS = 20_000


def flood_in_background(stand: Stand, seconds: float) -> threading.Thread:
    t = threading.Thread(
        target=flood,
        args=("udp",),
        kwargs={
            "stand": stand,
            "rate_pps": FLOOD_PPS,
            "duration_s": seconds,
            "count": int(FLOOD_PPS * seconds),
            "sources": FLOODER + "/32",
            "dport": 9000,
        },
    )
    t.start()
    return t


def test_top_once_shows_the_flood(stand: Stand) -> None:
    with shielded(stand) as s:
        s.apply_policy(Policy(deny={P(FLOODER + "/32"): None}))
        t = flood_in_background(stand, 6)
        try:
            time.sleep(1.5)
            r = xdpshield(stand, "top", stand.server_if, "--once")
        finally:
            t.join(30)
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if re.search(r"\bdeny\b", ln) and "│" in ln)
    pps = _number(row.split("│")[2])
    assert FLOOD_PPS * 0.3 < pps < FLOOD_PPS * 1.5, row
    assert FLOODER in r.stdout  # the top source, from the samples
    assert "key age" in r.stdout and "blocks in force" in r.stdout


def _number(text: str) -> float:
    m = re.match(r"\s*([\d.]+)([kMG]?)", text)
    assert m, text
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]


def _deny_pps(screen: str) -> float | None:
    for ln in screen.splitlines():
        if re.search(r"\bdeny\b", ln) and "│" in ln:
            return _number(ln.split("│")[2])
    return None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_in_tmux_follows_the_flood(stand: Stand) -> None:
    session = f"xs-top-{uuid.uuid4().hex[:8]}"
    with shielded(stand) as s:
        s.apply_policy(Policy(deny={P(FLOODER + "/32"): None}))
        ns = stand.ns("server")
        cmd = f"ip netns exec {ns} {sys.executable} -m xdpshield top {stand.server_if}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", cmd],
            check=True,
            timeout=10,
        )
        try:

            def screen() -> str:
                return subprocess.run(
                    ["tmux", "capture-pane", "-p", "-t", session],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout

            time.sleep(2.5)
            assert "xdpshield top" in screen(), screen()
            assert _deny_pps(screen()) is None  # no flood yet
            t = flood_in_background(stand, 8)
            try:
                seen: list[float] = []
                for _ in range(5):
                    time.sleep(1.2)
                    v = _deny_pps(screen())
                    if v:
                        seen.append(v)
            finally:
                t.join(30)
            assert len(seen) >= 3, seen
            assert all(FLOOD_PPS * 0.3 < v < FLOOD_PPS * 1.5 for v in seen), seen
            time.sleep(2.5)  # the flood is over: its rate falls away
            assert not _deny_pps(screen()), screen()
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], timeout=10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                alive = subprocess.run(["tmux", "has-session", "-t", session], capture_output=True)
                if alive.returncode != 0:
                    break
                time.sleep(0.2)
            else:
                pytest.fail("top did not quit on q")
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
