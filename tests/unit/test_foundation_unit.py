"""Pure-Python parts of the foundation: no root, no kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdpshield.cli import build_parser
from xdpshield.ebpf import Raw, StructCodec, UInt, possible_cpus, sum_percpu
from xdpshield.errors import ConfigError, KeyNotFound, VerifierError
from xdpshield.policy.ports import parse_ports

LOG = """0: R1=ctx() R10=fp0
; unsigned char *data = (void *)(long)ctx->data; @ bad.bpf.c:11
0: (61) r1 = *(u32 *)(r1 +0)          ; R1=pkt(r=0)
; return data[20] == 0x42 ? XDP_DROP : XDP_PASS; @ bad.bpf.c:13
1: (71) r1 = *(u8 *)(r1 +20)
invalid access to packet, off=20 size=1, R1(id=0,off=20,r=0)
R1 offset is outside of the packet
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0
"""


def test_verifier_error_names_reason_source_line_and_instruction() -> None:
    e = VerifierError("xdp_bad", 13, LOG)
    text = str(e)
    assert "xdp_bad" in text
    assert "R1 offset is outside of the packet" in text
    assert "bad.bpf.c:13" in text
    assert "r1 = *(u8 *)(r1 +20)" in text
    assert e.log == LOG and e.errno == 13


@pytest.mark.parametrize(
    ("text", "ports"),
    [
        ("22", [22]),
        ("443,22,80", [22, 80, 443]),
        ("8000-8002, 22", [22, 8000, 8001, 8002]),
        ("80,80", [80]),
        ("", []),
    ],
)
def test_parse_ports(text: str, ports: list[int]) -> None:
    assert parse_ports(text) == ports


@pytest.mark.parametrize(
    ("text", "needle"),
    [("http", "'http'"), ("0", "port 0"), ("70000", "70000"), ("90-80", "backwards")],
)
def test_parse_ports_rejects_with_the_bad_token(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_ports(text)


def test_codecs_round_trip() -> None:
    assert UInt(2).decode(UInt(2).encode(443)) == 443
    assert UInt(4).encode(1) == b"\x01\0\0\0"
    s = StructCodec("=QQ")
    assert s.decode(s.encode((3, 4))) == (3, 4)
    with pytest.raises(ValueError):
        Raw(4).encode(b"abc")


def test_sum_percpu_ints_and_tuples() -> None:
    assert sum_percpu([1, 2, 3]) == 6
    assert sum_percpu([(1, 10), (2, 20)]) == (3, 30)
    with pytest.raises(ValueError):
        sum_percpu([])


def _cpus_listed(text: str) -> set[int]:
    """The CPU numbers of a kernel CPU list, expanded one by one (not by arithmetic)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def test_possible_cpus_counts_this_machines_list() -> None:
    listed = Path("/sys/devices/system/cpu/possible").read_text()
    assert possible_cpus() == len(_cpus_listed(listed))


@pytest.mark.parametrize(
    ("listed", "count"), [("0", 1), ("0-3", 4), ("0-3,6,8-9\n", 7), ("2-2,5", 2)]
)
def test_possible_cpus_counts_every_range(tmp_path: Path, listed: str, count: int) -> None:
    # Holes and single CPUs too: a per-CPU value array has one slot per listed CPU.
    f = tmp_path / "possible"
    f.write_text(listed)
    assert possible_cpus(f) == count == len(_cpus_listed(listed))


def test_key_not_found_reads_as_a_sentence() -> None:
    assert str(KeyNotFound("map x: no key 7", 2)) == "map x: no key 7"


def test_cli_accepts_issue_spellings() -> None:
    p = build_parser()
    a = p.parse_args(["load", "eth0", "--protect", "22,80", "--mode", "reset"])
    assert (a.iface, a.protect, a.mode) == ("eth0", "22,80", "reset")
    a = p.parse_args(["load", "eth0", "--mode", "generic"])
    assert a.mode == "generic"
    with pytest.raises(SystemExit):
        p.parse_args(["load", "eth0", "--mode", "bogus"])
