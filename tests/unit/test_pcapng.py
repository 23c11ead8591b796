"""The pcapng capture writes, read back by scapy, tcpdump and (when
installed) tshark: bytes, lengths, timestamps to the nanosecond, comments."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

from xdpshield.ops.capture import PcapngWriter, comment, line, parse_reasons
from xdpshield.shield.datapath import Reason
from xdpshield.shield.samples import SAMPLE_BYTES, Sample

T0 = 1_796_000_000.123456789


def make_samples() -> list[Sample]:
    out = []
    for i, size in enumerate((4, 200, 33)):
        frame = bytes(
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src=f"198.19.0.{i + 1}", dst="198.18.0.2")
            / UDP(sport=4000 + i, dport=53)
            / Raw(b"z" * size)
        )
        out.append(
            Sample(
                time=T0 + i,
                ifindex=7 if i < 2 else 9,
                reason=Reason.RULE_DROP if i == 1 else Reason.DENY,
                rule=3 if i == 1 else None,
                length=len(frame),
                bytes=frame[:SAMPLE_BYTES],
            )
        )
    return out


@pytest.fixture
def capfile(tmp_path: Path) -> tuple[Path, list[Sample]]:
    smp = make_samples()
    path = tmp_path / "c.pcapng"
    with open(path, "wb") as f:
        w = PcapngWriter(f, ifnames={7: "eth7"})
        for s in smp:
            w.write_sample(s, comment(s, {3: "no-dns"}))
    return path, smp


def test_scapy_reads_it_back(capfile: tuple[Path, list[Sample]]) -> None:
    path, smp = capfile
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == [s.bytes for s in smp]
    assert [p.wirelen for p in pkts] == [s.length for s in smp]
    assert [p.comment for p in pkts] == [
        b"reason=deny action=drop",
        b"reason=rule-drop rule=no-dns(3) action=drop",
        b"reason=deny action=drop",
    ]
    # Nanosecond timestamps (if_tsresol 9): as close as a float's 1e-7 s.
    assert [float(p.time) for p in pkts] == pytest.approx([s.time for s in smp], abs=1e-6)


def test_tcpdump_reads_it(capfile: tuple[Path, list[Sample]]) -> None:
    path, _ = capfile
    r = subprocess.run(
        ["tcpdump", "-r", str(path), "-nn", "udp dst port 53 and src 198.19.0.2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1 and "198.19.0.2.4001 > 198.18.0.2.53" in r.stdout


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_shows_the_comments(capfile: tuple[Path, list[Sample]]) -> None:
    path, _ = capfile
    r = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.comment", "-e", "ip.src"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rows = [ln.split("\t") for ln in r.stdout.splitlines()]
    assert rows[1] == ["reason=rule-drop rule=no-dns(3) action=drop", "198.19.0.2"]
    assert [row[0] for row in rows].count("reason=deny action=drop") == 2


def test_line_and_reasons() -> None:
    s = make_samples()[1]
    text = line(s, {3: "no-dns"})
    assert "198.19.0.2 > 198.18.0.2 udp 4001 > 53 length 242" in text
    assert text.endswith("reason=rule-drop rule=no-dns(3) action=drop")
    assert parse_reasons(["deny,RULE_DROP", "syn-cookie-sent"]) == {
        Reason.DENY,
        Reason.RULE_DROP,
        Reason.SYN_COOKIE_SENT,
    }
    with pytest.raises(ValueError, match="unknown reason 'nope'"):
        parse_reasons(["nope"])
