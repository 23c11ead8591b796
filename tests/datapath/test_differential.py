"""Differential test: the kernel's verdicts against model.py's, frame by frame.

Hypothesis builds short sequences of frames (so that a handshake ACK can
verify a source and later frames exercise the verified path), mostly valid
and then mutated: truncated, bytes overwritten, flags and lengths changed.
Each frame goes through the real object (BPF_PROG_TEST_RUN) and through the
model; verdict, reason, reply bytes and the verified table must agree.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdpshield.ebpf import Collection, ObjectSpec
from xdpshield.shield import cookie, datapath
from xdpshield.shield.datapath import GuardOptions, Reason

from .model import OBJ, TEST_OPTIONS, XDP_PASS, XDP_TX, Config, decide

NOW = 5_000_000_000_000
KEY_CUR, KEY_PREV, EPOCH = bytes(range(16)), bytes(range(50, 66)), 11
PORTS = {80, 443}
TTL_S = 30.0
V4 = [bytes([198, 18, 0, i]) for i in (1, 2, 3)]
V6 = [bytes.fromhex("fd000000000000000000000000000000")[:15] + bytes([i]) for i in (1, 2)]


@pytest.fixture(scope="module")
def coll() -> Iterator[Collection]:
    spec = ObjectSpec(OBJ)
    opts = GuardOptions(fixed_now_ns=NOW, verified_ttl_s=TTL_S, **TEST_OPTIONS)
    spec.set_constants(**datapath.constants(opts))
    with spec.load() as c:
        datapath.set_ports(c.maps, PORTS)
        datapath.set_keys(c.maps, KEY_CUR, KEY_PREV, epoch=EPOCH)
        yield c


def new_config() -> Config:
    return Config(
        ports=set(PORTS),
        keys={EPOCH & 1: (KEY_CUR, EPOCH), (EPOCH - 1) & 1: (KEY_PREV, EPOCH - 1)},
        now_ns=NOW,
        ttl_ns=int(TTL_S * 1e9),
    )


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# -- frame strategies -------------------------------------------------------------------
TCP_OPTS = [
    b"\x02\x04\x05\xb4",
    b"\x02\x04\x00\x00",
    b"\x02\x04\x23\x28",
    b"\x01",
    b"\x00",
    b"\x04\x02",
    b"\x03\x03\x07",
    b"\x03\x03\x0f",
    b"\x08\x0a\x01\x02\x03\x04\x00\x00\x00\x00",
    b"\x02\x05\x05\xb4\x00",
    b"\x05\x01",
    b"\x1e\x00",
    b"\xfe\x04\xab\xcd",
    b"\x03\x09",
]
LINUX_OPTS = b"\x02\x04\x05\xb4\x04\x02\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00\x01\x03\x03\x07"


@st.composite
def tcp_segment(draw: st.DrawFn, saddr: bytes, daddr: bytes) -> bytes:
    opts = b"".join(draw(st.lists(st.sampled_from(TCP_OPTS), max_size=6)))
    if draw(st.booleans()):
        opts = LINUX_OPTS
    opts = opts[:40]
    opts += b"\0" * (-len(opts) % 4)
    sport = draw(st.sampled_from([40000, 40001, 80]))
    dport = draw(st.sampled_from([80, 80, 443, 8080, 22]))
    flags = draw(
        st.one_of(
            st.sampled_from([0x02, 0x10, 0x18, 0x12, 0x04, 0x14, 0x11, 0xC2, 0x42, 0x01]),
            st.sampled_from([0x02, 0x10]),
            st.integers(0, 255),
        )
    )
    seq = draw(st.sampled_from([0, 1, 1000, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1))
    ack = draw(st.integers(0, 2**32 - 1))
    if flags & 0x10 and draw(st.integers(0, 2)) != 0:
        # A handshake ACK with a real cookie, under the current or previous key.
        key, epoch = draw(st.sampled_from([(KEY_CUR, EPOCH), (KEY_PREV, EPOCH - 1)]))
        idx = draw(st.integers(0, 3))
        isn = (seq - 1) % 2**32
        ck = cookie.make_cookie(key, epoch, saddr, daddr, sport, dport, isn, idx, now_ns=NOW)
        ack = (ck + 1) % 2**32
    payload = draw(st.binary(max_size=8))
    doff = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 512, 0, 0)
    return hdr + opts + payload


@st.composite
def frame(draw: st.DrawFn) -> bytes:
    l2 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3]))):
        l2 += struct.pack("!HH", draw(st.sampled_from([0x8100, 0x88A8])), 5)
    v6 = draw(st.booleans())
    kind = draw(st.sampled_from(["tcp"] * 8 + ["udp", "icmp", "other", "nonip"]))
    if kind == "nonip":
        return l2 + struct.pack("!H", draw(st.sampled_from([0x0806, 0x88CC]))) + bytes(28)
    saddr = draw(st.sampled_from(V6 if v6 else V4))
    daddr = V6[1] if v6 else V4[1]
    if kind == "tcp":
        proto, l4 = 6, draw(tcp_segment(saddr, daddr))
        if draw(st.integers(0, 5)):  # mostly a right checksum, as a real stack sends
            n = len(l4)
            pseudo = (
                saddr
                + daddr
                + (n.to_bytes(4, "big") + b"\0\0\0\x06" if v6 else b"\0\x06" + n.to_bytes(2, "big"))
            )
            l4 = l4[:16] + struct.pack("!H", csum(pseudo + l4)) + l4[18:]
    elif kind == "udp":
        body = draw(st.binary(max_size=8))
        proto, l4 = 17, struct.pack("!HHHH", 53, 80, 8 + len(body), 0) + body
    elif kind == "icmp":
        proto, l4 = (58 if v6 else 1), bytes([draw(st.sampled_from([8, 135, 136]))]) + bytes(7)
    else:
        proto, l4 = draw(st.sampled_from([47, 50, 132])), bytes(8)
    if v6:
        ext = b""
        nh = proto
        exts = draw(st.lists(st.sampled_from([0, 43, 60, 44, 51]), max_size=7))
        if draw(st.integers(0, 2)):
            exts = exts[:1]
        for t in reversed(exts):
            if t == 44:
                fo = draw(st.sampled_from([0, 1, 8, 9]))
                ext = struct.pack("!BBHI", nh, 0, fo, 7) + ext
            elif t == 51:
                ext = struct.pack("!BB", nh, 1) + bytes(6) + ext
            else:
                ext = struct.pack("!BB", nh, 0) + bytes(6) + ext
            nh = t
        body = ext + l4
        l3 = struct.pack("!IHBB", 6 << 28, len(body), nh, 64) + saddr + daddr + body
        return l2 + b"\x86\xdd" + l3
    optlen = draw(st.sampled_from([0, 0, 4, 8, 40]))
    ihl = 5 + optlen // 4
    frag = draw(st.sampled_from([0] * 6 + [0x4000] * 4 + [0x2000, 0x0001, 0x2010]))
    tot = ihl * 4 + len(l4)
    hdr = struct.pack("!BBHHHBBH", 0x40 | ihl, 0, tot, 1, frag, 64, proto, 0) + saddr + daddr
    hdr += b"\x01" * optlen
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    pad = bytes(draw(st.sampled_from([0, 0, 6])))
    return l2 + b"\x08\x00" + hdr + l4 + pad


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(frame()))
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["cut", "byte", "byte", "nibble"]))
        if what == "cut" and len(raw) > 14:
            del raw[draw(st.integers(14, len(raw) - 1)) :]
        elif raw:
            i = draw(st.integers(12, len(raw) - 1)) if len(raw) > 12 else 0
            if what == "byte":
                raw[i] = draw(st.integers(0, 255))
            else:
                raw[i] = (raw[i] & 0xF0) | draw(st.integers(0, 15))
    return bytes(raw)


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(st.lists(st.one_of(frame(), mutated()), min_size=1, max_size=6))
def test_kernel_agrees_with_model(coll: Collection, frames: list[bytes]) -> None:
    datapath.age_verified(coll.maps, 2**64 - 1)  # a fresh verified table per example
    cfg = new_config()
    prog = coll.program("xdpshield_xdp")
    for raw in frames:
        if len(raw) < 14:
            continue
        want = decide(raw, cfg)
        before = datapath.read_stats(coll.maps)
        got = prog.run(raw)
        after = datapath.read_stats(coll.maps)
        moved = [r for r in Reason if after[r] != before[r]]
        assert (got.verdict, moved) == (want.verdict, [want.reason]), raw.hex()
        if want.verdict == XDP_TX:
            assert got.frame == want.reply, raw.hex()
        elif want.verdict == XDP_PASS:
            assert got.frame == raw
        kernel_table = {
            datapath.vkey(a): [e.expires_ns]
            for a, e in datapath.verified_sources(coll.maps).items()
        }
        assert kernel_table == cfg.verified, raw.hex()
