"""Cookie keys are secrets: with rediss:// endpoints they never cross the
wire in the clear, and no log line carries one. A node joins a real Redis
(TLS on, with a CA made here; or plain, to show the check can fail) while
tcpdump records the store's port on loopback, through a key rotation."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from xdpshield.lab.fleet import FleetLab
from xdpshield.shield import datapath
from xdpshield.shield.core import Shield


@pytest.mark.parametrize("tls", [True, False], ids=["rediss", "plain"])
def test_keys_cross_the_wire_only_inside_tls(tmp_path: Path, tls: bool) -> None:
    with FleetLab(tmp_path, key_period="4s", lease="2s", tls=tls) as lab:
        cap = tmp_path / "store.pcap"
        dump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-U", "-s0", "-c", "20000", "-w", str(cap),
             f"tcp port {lab.store.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert dump.stderr is not None
            assert "listening" in dump.stderr.readline()
            n = lab.add_node(1)
            lab.start(n)
            time.sleep(4.5)  # a rotation: the next keys are published and read
            with Shield.open(n.links["transparent"][1], netns=n.ns) as sh:
                slots = datapath.key_slots(sh.maps)
        finally:
            dump.send_signal(signal.SIGTERM)
            dump.wait(10)
        assert len(slots) == 2 and n.named("fleet-joined")
        wire = cap.read_bytes()
        assert len(wire) > 1000, "tcpdump saw nothing of the store's traffic"
        seen = [k.hex().encode() in wire or k in wire for k, _ in slots.values()]
        if tls:
            assert not any(seen), "a cookie key crossed the wire in the clear"
            assert not n.named("fleet-insecure")
        else:  # the same check finds them when nothing hides them
            assert all(seen)
            assert n.named("fleet-insecure")
        log = n.log.read_text()
        assert not any(k.hex() in log for k, _ in slots.values()), "a key in the log"
