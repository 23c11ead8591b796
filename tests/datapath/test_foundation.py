"""The library against the real kernel: test-run, .rodata, maps, verifier errors."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from xdpshield.ebpf import Collection, ObjectSpec, StructCodec, UInt, sum_percpu
from xdpshield.errors import KeyNotFound, MapFull, ObjectNotFound, VerifierError
from xdpshield.objects import obj_dir

OBJ = obj_dir()
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3

FRAME = bytes(
    Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    / IP(src="198.18.0.1", dst="198.18.0.2")
    / UDP(sport=1000, dport=2000)
    / (b"x" * 18)
)


def load_counter(**consts: int) -> Collection:
    spec = ObjectSpec(OBJ / "test_counter.o")
    if consts:
        spec.set_constants(**consts)
    return spec.load()


@pytest.mark.parametrize("verdict", [XDP_DROP, XDP_PASS, XDP_TX])
def test_verdict_comes_from_rodata(verdict: int) -> None:
    with load_counter(verdict=verdict) as coll:
        r = coll.program("xdp_count").run(FRAME)
    assert r.verdict == verdict
    assert r.frame == FRAME  # swap_macs is off: the frame is untouched


def test_output_frame_carries_the_programs_rewrite() -> None:
    with load_counter(swap_macs=1, verdict=XDP_TX) as coll:
        r = coll.program("xdp_count").run(FRAME)
    assert r.verdict == XDP_TX
    assert r.frame[:6] == FRAME[6:12] and r.frame[6:12] == FRAME[:6]
    assert r.frame[12:] == FRAME[12:]


def test_constants_are_read_back_and_checked() -> None:
    spec = ObjectSpec(OBJ / "test_counter.o")
    assert spec.constants["verdict"] == XDP_PASS.to_bytes(4, "little")
    spec.set_constants(verdict=XDP_DROP)
    assert spec.constants["verdict"] == XDP_DROP.to_bytes(4, "little")
    with pytest.raises(KeyError, match="no constant 'nope'"):
        spec.set_constants(nope=1)
    spec.close()


def test_percpu_counters_move_with_each_run() -> None:
    with load_counter() as coll:
        coll.program("xdp_count").run(FRAME, repeat=1000)
        hits = coll.map("hits").typed(UInt(4), UInt(8))
        per_cpu = hits.lookup_percpu(0)
        assert len(per_cpu) == hits.ncpus
        assert sum_percpu(per_cpu) == 1000
        assert sum_percpu(hits.lookup_percpu(1)) == 1000 * len(FRAME)
        hits.clear()
        assert sum_percpu(hits.lookup_percpu(0)) == 0


def test_run_reports_time_per_packet() -> None:
    with load_counter() as coll:
        r = coll.program("xdp_count").run(FRAME, repeat=10_000)
    assert r.ns > 0


def test_hash_map_operations_and_errors() -> None:
    with load_counter() as coll:
        t = coll.map("table").typed(UInt(4), UInt(8))
        for i in range(4):
            t.update(i, i * 10)
        assert t.lookup(3) == 30 and 2 in t and 9 not in t
        assert sorted(t.items()) == [(0, 0), (1, 10), (2, 20), (3, 30)]
        assert sorted(t.lookup_batch(chunk=3)) == [(0, 0), (1, 10), (2, 20), (3, 30)]
        with pytest.raises(MapFull, match="full"):
            t.update(99, 1)
        t.delete_batch([0, 1])
        assert sorted(t.keys()) == [2, 3]
        with pytest.raises(KeyNotFound):
            t.lookup(0)
        with pytest.raises(KeyNotFound):
            t.delete(0)
        t.update_batch([(5, 50), (6, 60)])
        assert len(t) == 4 and t.lookup(6) == 60
        with pytest.raises(ValueError, match="value is 8 bytes"):
            coll.map("table").typed(UInt(4), StructCodec("=I"))


def test_verifier_rejection_carries_a_readable_log() -> None:
    with pytest.raises(VerifierError) as info:
        ObjectSpec(OBJ / "test_bad_oob.o").load()
    e = info.value
    assert e.program == "xdp_bad"
    assert "outside of the packet" in str(e)
    assert "bad_oob.bpf.c:" in str(e)  # the C line, from BTF line info
    assert "processed" in e.log


def test_missing_object_is_named() -> None:
    with pytest.raises(ObjectNotFound, match=r"nope\.o"):
        ObjectSpec(OBJ / "nope.o")


def test_lists_maps_programs_and_btf_enum() -> None:
    spec = ObjectSpec(OBJ / "test_counter.o")
    assert spec.map_names == ["hits", "table"]
    assert spec.program_names == ["xdp_count", "xdp_pass", "tc_count"]
    spec.close()
    shield = ObjectSpec(OBJ / "xdpshield.o")
    assert shield.btf_enum("xs_reason")["XS_R_PASS_NON_IP"] == 0
    shield.close()
