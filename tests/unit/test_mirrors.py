"""Every number and layout Python mirrors from a BPF object agrees with it.

The C side keeps its mirrored numbers in enums that the objects' BTF carries
(``enum xs_abi`` in bpf/include/shared.h, ``enum traffic_abi`` and
``enum mux_stat`` in bpf/lab/traffic.bpf.c, ``enum bench_sink_kind`` in
bpf/lab/baseline.bpf.c); the map value layouts are read from the structs'
BTF. Each check names the C and the Python side of the pair it compares.
(The verdict reasons have their own test: test_reasons.py.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import xdpshield
from tests.datapath import model
from xdpshield.ebpf import ObjectSpec, StructCodec
from xdpshield.ebpf._libbpf import BtfType
from xdpshield.lab import bench, stand, traffic
from xdpshield.policy import rules
from xdpshield.shield import cookie, datapath, limits, policy, samples

OBJ_DIR = Path(xdpshield.__file__).parent / "_obj"
SHIELD_OBJS = ("xdpshield.o", "xdpshield_debug.o")


# -- reading the objects' BTF -----------------------------------------------------------
def btf_enum(obj: str, name: str) -> dict[str, int]:
    """``enum name`` of an object's BTF, values as unsigned 32-bit numbers."""
    spec = ObjectSpec(OBJ_DIR / obj)
    try:
        return {k: v & 0xFFFFFFFF for k, v in spec.btf_enum(name).items()}
    finally:
        spec.close()


class _BtfMember(ctypes.Structure):
    _fields_ = [
        ("name_off", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
    ]


_BTF_KIND_STRUCT = 4


@contextmanager
def _btf(obj: str) -> Iterator[tuple[Any, int]]:
    """(libbpf, struct btf *) of an object file; a handle of the test's own,
    so the argument types set here touch nothing of the package's binding."""
    bpf = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
    vp, u32 = ctypes.c_void_p, ctypes.c_uint32
    bpf.btf__parse.argtypes, bpf.btf__parse.restype = [ctypes.c_char_p, vp], vp
    bpf.btf__free.argtypes, bpf.btf__free.restype = [vp], None
    bpf.btf__find_by_name_kind.argtypes = [vp, ctypes.c_char_p, u32]
    bpf.btf__find_by_name_kind.restype = ctypes.c_int32
    bpf.btf__type_by_id.argtypes = [vp, u32]
    bpf.btf__type_by_id.restype = ctypes.POINTER(BtfType)
    bpf.btf__name_by_offset.argtypes, bpf.btf__name_by_offset.restype = [vp, u32], ctypes.c_char_p
    btf = bpf.btf__parse(str(OBJ_DIR / obj).encode(), None)
    if not btf:
        raise OSError(ctypes.get_errno(), f"btf__parse {obj}")
    try:
        yield bpf, btf
    finally:
        bpf.btf__free(btf)


@dataclass(frozen=True)
class Layout:
    size: int
    members: dict[str, int]  # name -> byte offset


def btf_struct(obj: str, name: str) -> Layout:
    """Size and member offsets of ``struct name`` in an object's BTF."""
    with _btf(obj) as (bpf, btf):
        tid = bpf.btf__find_by_name_kind(btf, name.encode(), _BTF_KIND_STRUCT)
        assert tid > 0, f"{obj} has no struct {name} in its BTF"
        t = bpf.btf__type_by_id(btf, tid).contents
        kflag, vlen = t.info >> 31, t.info & 0xFFFF
        base = ctypes.addressof(t) + ctypes.sizeof(BtfType)
        members = {}
        for i in range(vlen):
            m = _BtfMember.from_address(base + i * ctypes.sizeof(_BtfMember))
            bits = m.offset & 0xFFFFFF if kflag else m.offset
            assert bits % 8 == 0, f"struct {name}: a bitfield has no Python mirror"
            members[bpf.btf__name_by_offset(btf, m.name_off).decode()] = bits // 8
        return Layout(t.size_or_type, members)


# -- numbers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    c: str  # enum member
    py: str  # the Python name it mirrors
    value: int  # the Python value, as the C member should hold it

    def __str__(self) -> str:
        return f"{self.c} <-> {self.py}"


SHIELD_PAIRS = [
    Pair("XS_ABI_SRV_TS", "datapath.SRV_TS", datapath.SRV_TS),
    Pair("XS_ABI_SRV_SACK", "datapath.SRV_SACK", datapath.SRV_SACK),
    Pair("XS_ABI_SRV_WS", "datapath.SRV_WS", datapath.SRV_WS),
    Pair("XS_ABI_SRV_ECN", "datapath.SRV_ECN", datapath.SRV_ECN),
    Pair("XS_ABI_META_TS", "datapath.META_TS", datapath.META_TS),
    Pair("XS_ABI_META_SACK", "datapath.META_SACK", datapath.META_SACK),
    Pair("XS_ABI_META_WS", "datapath.META_WS", datapath.META_WS),
    Pair("XS_ABI_META_ECN", "datapath.META_ECN", datapath.META_ECN),
    Pair("XS_ABI_META_MAGIC", "datapath.META_MAGIC", datapath.META_MAGIC),
    Pair("XS_ABI_SEEN_BITS", "datapath.SEEN_BITS", datapath.SEEN_BITS),
    Pair("XS_ABI_OFFERED_BITS", "datapath.OFFERED_BITS", datapath.OFFERED_BITS),
    Pair("XS_ABI_TICK_SET", "datapath.TICK_SET", datapath.TICK_SET),
    Pair("XS_ABI_KERN_SYN_BITS", "datapath.KERN_SYN_BITS", datapath.KERN_SYN_BITS),
    Pair("XS_ABI_KEY_RECORDED", "datapath.KEY_RECORDED", datapath.KEY_RECORDED),
    # WIN_NS is 1 << XS_WIN_SHIFT; a WIN_NS that is no power of two fails too.
    Pair("XS_ABI_WIN_SHIFT", "log2(datapath.WIN_NS)", datapath.WIN_NS.bit_length() - 1),
    Pair("XS_ABI_LOCAL_UNICAST", "datapath.LOCAL_UNICAST", datapath.LOCAL_UNICAST),
    Pair("XS_ABI_LOCAL_BROADCAST", "datapath.LOCAL_BROADCAST", datapath.LOCAL_BROADCAST),
    Pair("XS_ABI_COOKIE_MSS_MASK", "cookie.MSS_MASK", cookie.MSS_MASK),
    Pair("XS_ABI_COOKIE_SLOT_SHIFT", "cookie.SLOT_SHIFT", cookie.SLOT_SHIFT),
    Pair("XS_ABI_COOKIE_TICK_SHIFT", "cookie.TICK_BIT_SHIFT", cookie.TICK_BIT_SHIFT),
    Pair("XS_ABI_COOKIE_HASH_MASK", "cookie.HASH_MASK", cookie.HASH_MASK),
    Pair("XS_ABI_COOKIE_TICK_NS_SHIFT", "cookie.TICK_SHIFT", cookie.TICK_SHIFT),
    Pair("XS_ABI_COOKIE_AHEAD_NS", "cookie.AHEAD_NS", cookie.AHEAD_NS),
    Pair("XS_ABI_TS_BITS", "cookie.TS_BITS", cookie.TS_BITS),
    Pair("XS_ABI_TS_WSCALE_MASK", "cookie.TS_WSCALE_NONE", cookie.TS_WSCALE_NONE),
    Pair("XS_ABI_TS_SACK", "cookie.TS_SACK", cookie.TS_SACK),
    Pair("XS_ABI_TS_ECN", "cookie.TS_ECN", cookie.TS_ECN),
    Pair("XS_ABI_MAX_WSCALE", "cookie.MAX_WSCALE", cookie.MAX_WSCALE),
    Pair("XS_ABI_TS_SHIFT", "cookie.TS_SHIFT", cookie.TS_SHIFT),
    Pair("XS_ABI_HYG_TCP_FLAGS", "policy.HYG_TCP_FLAGS", policy.HYG_TCP_FLAGS),
    Pair("XS_ABI_HYG_REFLECTION", "policy.HYG_REFLECTION", policy.HYG_REFLECTION),
    Pair("XS_ABI_HYG_FRAGMENTS", "policy.HYG_FRAGMENTS", policy.HYG_FRAGMENTS),
    Pair("XS_ABI_HYG_ICMP", "policy.HYG_ICMP", policy.HYG_ICMP),
    Pair("XS_ABI_ACL_LIVE", "policy.ACL_LIVE", policy.ACL_LIVE),
    Pair("XS_ABI_ACL_TIERS", "policy.TIERS", policy.TIERS),
    Pair("XS_ABI_RULE_ANY", "policy.RULE_ANY", policy.RULE_ANY),
    Pair("XS_ABI_RULE_DROP", "policy.RULE_DROP", policy.RULE_DROP),
    Pair("XS_ABI_RULE_PASS", "policy.RULE_PASS", policy.RULE_PASS),
    Pair("XS_ABI_RULE_LIMIT", "policy.RULE_LIMIT", policy.RULE_LIMIT),
    Pair("XS_ABI_LIM_BLOCKS", "limits.LIM_BLOCKS", limits.LIM_BLOCKS),
    Pair("XS_ABI_LIM_BLOCKS_LPM", "limits.LIM_BLOCKS_LPM", limits.LIM_BLOCKS_LPM),
    Pair("XS_ABI_LIM_SOURCES", "limits.LIM_SOURCES", limits.LIM_SOURCES),
    Pair("XS_ABI_BLOCK_MANUAL", "limits.BLOCK_MANUAL", limits.BLOCK_MANUAL),
    Pair("XS_ABI_ADMIT_SLOTS", "limits.ADMIT_SLOTS", limits.ADMIT_SLOTS),
    Pair("XS_ABI_ADMIT_SHIFT", "limits.ADMIT_SHIFT", limits.ADMIT_SHIFT),
    Pair("XS_ABI_ADMIT_WIN", "limits.ADMIT_WIN", limits.ADMIT_WIN),
    Pair("XS_ABI_ADMIT_REFRESH", "limits.ADMIT_REFRESH", limits.ADMIT_REFRESH),
    Pair("XS_ABI_RULE_CANDS", "rules.CANDS", rules.CANDS),
    Pair("XS_ABI_RULE_SLOTS", "rules.SLOTS", rules.SLOTS),
    Pair("XS_ABI_RULES_MAX", "rules.RULES_MAX", rules.RULES_MAX),
    Pair("XS_ABI_REPLY_TTL", "tests.datapath.model.TTL", model.TTL),
    Pair("XS_ABI_SYNACK_WINDOW", "tests.datapath.model.SYNACK_WINDOW", model.SYNACK_WINDOW),
    Pair("XS_ABI_SAMPLE_BYTES", "samples.SAMPLE_BYTES", samples.SAMPLE_BYTES),
    Pair("XS_ABI_V_RULE_SHIFT", "samples.V_RULE_SHIFT", samples.V_RULE_SHIFT),
    Pair("XS_ABI_SAMPLE_SKIP", "samples.SKIP", samples.SKIP),
]

TRAFFIC_PAIRS = [
    Pair("TRAFFIC_ABI_TMPL_MAX", "traffic.TMPL_MAX", traffic.TMPL_MAX),
    Pair("TRAFFIC_ABI_NFIELDS", "traffic.NFIELDS", traffic.NFIELDS),
]


def check_pair(values: dict[str, int], pair: Pair, where: str) -> None:
    assert pair.c in values, f"{where}: no {pair.c} in its BTF (mirrored by {pair.py})"
    assert values[pair.c] == pair.value, (
        f"{where}: {pair} disagree: C {values[pair.c]:#x}, Python {pair.value:#x}"
    )


@pytest.mark.parametrize("obj", SHIELD_OBJS)
@pytest.mark.parametrize("pair", SHIELD_PAIRS, ids=str)
def test_shield_numbers(obj: str, pair: Pair) -> None:
    check_pair(btf_enum(obj, "xs_abi"), pair, obj)


def test_every_abi_member_has_a_python_twin() -> None:
    """A number added to enum xs_abi is checked here too."""
    unchecked = set(btf_enum("xdpshield.o", "xs_abi")) - {p.c for p in SHIELD_PAIRS}
    assert not unchecked, f"enum xs_abi members with no Python pair here: {sorted(unchecked)}"


@pytest.mark.parametrize("pair", TRAFFIC_PAIRS, ids=str)
def test_traffic_numbers(pair: Pair) -> None:
    check_pair(btf_enum("traffic.o", "traffic_abi"), pair, "traffic.o")


def _enum_order(values: dict[str, int], prefix: str, count: str) -> list[str]:
    """Member names without ``prefix``, lower case, in value order; the
    ``count`` member (``*__MAX``, ``*_NSTATS``) must be the number of them."""
    names = {k: v for k, v in values.items() if k != count}
    order = sorted(names, key=names.__getitem__)
    assert [names[k] for k in order] == list(range(len(order)))
    if count:
        assert values[count] == len(order), f"{count} is {values[count]}, not {len(order)}"
    return [k.removeprefix(prefix).lower() for k in order]


def test_mux_stats_order() -> None:
    """stand.MUX_STATS names mux_stats' keys in enum mux_stat order."""
    got = _enum_order(btf_enum("traffic.o", "mux_stat"), "MUX_", "MUX_NSTATS")
    assert list(stand.MUX_STATS) == got, f"enum mux_stat {got} <-> stand.MUX_STATS"


def test_sink_kinds() -> None:
    """bench.SinkKind mirrors enum bench_sink_kind."""
    got = _enum_order(btf_enum("baseline.o", "bench_sink_kind"), "BENCH_SINK_", "BENCH_SINK__MAX")
    want = [k.name.lower() for k in sorted(bench.SinkKind)]
    assert want == got, f"enum bench_sink_kind {got} <-> bench.SinkKind {want}"


# -- layouts ----------------------------------------------------------------------------
def codec_offsets(fmt: str) -> list[int]:
    """Byte offset of each field of a '=' struct format (no padding)."""
    assert fmt[0] == "=", fmt
    offsets, done = [], "="
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt[1:]):
        for part in [count + code] if code in "sp" else [code] * int(count or 1):
            offsets.append(struct.calcsize(done))
            done += part
    return offsets


@dataclass(frozen=True)
class Mirror:
    struct: str  # the C struct
    py: str  # what mirrors it
    size: int  # the Python side's size of it
    fields: dict[str, int]  # C member -> the offset the Python side reads it at
    obj: str = "xdpshield.o"

    def __str__(self) -> str:
        return f"struct {self.struct} <-> {self.py}"


def codec(
    py: str, fmt: str | StructCodec, names: list[str | None]
) -> tuple[str, int, dict[str, int]]:
    """A struct format (or a StructCodec's) whose fields are, in order, the C
    members ``names`` (None: a further field of the member before)."""
    if isinstance(fmt, StructCodec):
        fmt = fmt.struct.format
    offs = codec_offsets(fmt)
    assert len(offs) == len(names), f"{py} ({fmt}): {len(offs)} fields, {len(names)} names"
    return py, struct.calcsize(fmt), {n: o for n, o in zip(names, offs, strict=True) if n}


def _mirror(c: str, spec: tuple[str, int, dict[str, int]], obj: str = "xdpshield.o") -> Mirror:
    return Mirror(c, *spec, obj=obj)


CPU_MEMBERS: list[str | None] = [
    "win_start",
    "count",
    "flood",
    "calm_wins",
    "rst_count",
    "floods",
    "last_change_ns",
    "cache_ns",
    "mss4",
    "mss6",
    "dst",
    "dst_kind",
    "dst_valid",
    "jreads",
    "pad",
]
META_MEMBERS: list[str | None] = ["tsval", "tsecr", "mss", "opts", "snd_wscale", "magic"]

MIRRORS = [
    _mirror("xs_key", codec("datapath._KEY", datapath._KEY, ["k", "epoch", "live", "born_s"])),
    _mirror(
        "xs_verified", codec("datapath._VERIFIED", datapath._VERIFIED, ["expires_ns", "pad", None])
    ),
    _mirror("xs_meta", codec("datapath.META", datapath.META, META_MEMBERS)),
    _mirror("xs_cpu_state", codec("datapath._CPU", datapath._CPU, CPU_MEMBERS)),
    _mirror("xs_counter", codec("datapath._COUNTER", datapath._COUNTER, ["packets", "bytes"])),
    # Raw byte strings: datapath writes the address, the bitmap, MAC + flag.
    Mirror("xs_vkey", "datapath._VKEY", datapath._VKEY.size, {"addr": 0}),
    Mirror("xs_portset", "datapath._PORTS // 8", datapath._PORTS // 8, {"bits": 0}),
    Mirror("xs_ifinfo", "datapath.set_mac (6-byte MAC, 2-byte flag)", 8, {"mac": 0, "has_mac": 6}),
    # The policy (shield/policy.py).
    _mirror(
        "xs_psel",
        codec(
            "policy._PSEL",
            policy._PSEL,
            [
                "allow_gen",
                "deny_gen",
                "rules_gen",
                "hyg_gen",
                "n_allow4",
                "n_allow6",
                "n_deny4",
                "n_deny6",
                "n_rules",
                "n_ttl",
                "lpm_allow4",
                "lpm_allow6",
                "lpm_deny4",
                "lpm_deny6",
                "tiers",
                "rule_tiers",
                "lpm_rules",
                "lim_gen",
                "lim_on",
                "acl_filt",
            ],
        ),
    ),
    Mirror("xs_acl_bits", "policy.ACL_FILTER_BYTES", policy.ACL_FILTER_BYTES, {"w": 0}),
    _mirror("xs_acl", codec("policy._ACL", policy._ACL, ["expires_ns", "flags", "pad"])),
    Mirror("xs_lpm4", "policy._lpm_key (v4)", 12, {"prefixlen": 0, "gen": 4, "addr": 8}),
    _mirror(
        "xs_rule_hkey",
        codec("policy._RULE_HKEY", policy._RULE_HKEY.format, ["gen", "cls", "plen", "addr"]),
    ),
    Mirror("xs_hkey4", "policy._hash_key (v4)", 12, {"gen": 0, "plen": 4, "addr": 8}),
    Mirror("xs_hkey6", "policy._hash_key (v6)", 24, {"gen": 0, "plen": 4, "addr": 8}),
    Mirror("xs_lpm6", "policy._lpm_key (v6)", 24, {"prefixlen": 0, "gen": 4, "addr": 8}),
    _mirror(
        "xs_hygiene",
        codec(
            "policy._HYG_HEAD + refl",
            policy._HYG_HEAD.format + f"{policy._PORTSET}s",
            [
                "flags",
                "pad",
                "frag_window_ns",
                "refl_window_ns",
                "icmp4",
                None,
                None,
                None,
                "icmp6",
                None,
                None,
                None,
                "proto_drop",
                None,
                None,
                None,
                "refl",
            ],
        ),
    ),
    Mirror(
        "xs_refl_key",
        "policy.refl_key",
        len(policy.refl_key("198.18.0.1", 1, 2)),
        {"peer": 0, "peer_port": 16, "local_port": 18},
    ),
    _mirror(
        "xs_rule_cand",
        codec(
            "policy._CAND",
            policy._CAND.format,
            ["id", "action", "sportset", "fmask", "fval", "has_code", "icmp_code"],
        ),
    ),
    Mirror(
        "xs_rule_val", "policy._rule_val", len(policy._rule_val([])), {"n": 0, "plen": 4, "c": 8}
    ),
    _mirror(
        "xs_rule_key",
        codec("policy._RULE_KEY", policy._RULE_KEY.format, ["prefixlen", "gen", "cls", "addr"]),
    ),
    Mirror("xs_rule_ports", "rules.CompiledRules.port_classes (u16)", 2 * 65536, {"cls": 0}),
    Mirror("xs_rule_sport", "rules.CompiledRules.sport_masks (u32)", 4 * 65536, {"mask": 0}),
    # The limits (shield/limits.py).
    _mirror("xs_rate", codec("limits._RATE", limits._RATE.format, ["cost", "depth"])),
    _mirror(
        "xs_limits",
        codec(
            "limits._LIMITS",
            limits._LIMITS.format,
            [
                "flags",
                "plen4",
                "plen6",
                "epoch",
                "pps",
                None,
                "bps",
                None,
                "syn",
                None,
                "block_after_ns",
                "block_ttl_ns",
                "block_max_ns",
                "block_repeat_ns",
                "ceil",
                *[None] * (2 * rules.SLOTS - 1),
            ],
        ),
    ),
    _mirror(
        "xs_src_key",
        codec("limits._SRC_KEY", limits._SRC_KEY.format, ["addr", "rule", "plen", "pad"]),
    ),
    _mirror(
        "xs_src",
        codec(
            "limits._SRC",
            limits._SRC.format,
            ["tat_pps", "tat_bps", "tat_syn", "over_since", "over_last"],
        ),
    ),
    _mirror(
        "xs_block",
        codec(
            "limits._BLOCK",
            limits._BLOCK.format,
            ["expires_ns", "ttl_ns", "since_ns", "drops", "count", "flags"],
        ),
    ),
    _mirror(
        "xs_block_lpm", codec("limits._BLOCK_LPM", limits._BLOCK_LPM.format, ["prefixlen", "addr"])
    ),
    # Drop samples (shield/samples.py).
    _mirror(
        "xs_sample",
        codec(
            "samples.SAMPLE",
            samples.SAMPLE,
            ["ts_ns", "ifindex", "len", "reason", "rule", "action", "tc", "caplen", "data"],
        ),
    ),
    _mirror(
        "xs_sample_bkt",
        codec("samples._BKT", samples._BKT, ["cost_ns", "depth_ns", "tat", "rate", "skip"]),
    ),
    _mirror("xs_sample_stat", codec("samples._STAT", samples._STAT, ["sent", "full"])),
    # traffic._mux_release: a 4-byte length, then the frame.
    Mirror("mux_frame", "traffic._mux_release", 4 + 512, {"len": 0, "data": 4}, obj="traffic.o"),
    _mirror(
        "bench_frame",
        codec("bench._Harness' codec", f"=II{bench.BENCH_FRAME_MAX}s", ["len", "pad", "data"]),
        obj="baseline.o",
    ),
]


@pytest.mark.parametrize("mirror", MIRRORS, ids=str)
def test_layouts(mirror: Mirror) -> None:
    got = btf_struct(mirror.obj, mirror.struct)
    assert got.size == mirror.size, (
        f"{mirror}: C {got.size} bytes, Python {mirror.size} ({mirror.obj})"
    )
    assert set(got.members) == set(mirror.fields), (
        f"{mirror}: C members {sorted(got.members)}, Python reads {sorted(mirror.fields)}"
    )
    for name, off in mirror.fields.items():
        assert got.members[name] == off, (
            f"{mirror}: member {name} is at {got.members[name]} in C, {off} in Python"
        )


def test_mux_frame_max() -> None:
    """mux_frame's size above is 4 + MUX_FRAME_MAX: the number it spells out."""
    check_pair(
        btf_enum("traffic.o", "traffic_abi"),
        Pair("TRAFFIC_ABI_MUX_FRAME_MAX", "test_layouts' mux_frame", 512),
        "traffic.o",
    )


# -- names ------------------------------------------------------------------------------
@pytest.mark.parametrize("obj", SHIELD_OBJS)
def test_pinned_maps_exist(obj: str) -> None:
    """Every map datapath.PIN_MAPS pins is one the object has."""
    spec = ObjectSpec(OBJ_DIR / obj)
    try:
        have = set(spec.map_names)
    finally:
        spec.close()
    missing = sorted(set(datapath.PIN_MAPS) - have)
    assert not missing, f"datapath.PIN_MAPS names maps {obj} lacks: {missing}"


def test_the_flood_state_is_read_from_the_head_of_every_cpu_state_layout() -> None:
    """``cpu_states`` reads only the head of struct xs_cpu_state, so a shield
    loaded before a field was added (still running until an upgrade) reads too."""
    head, full = datapath._CPU_FLOOD.struct.format, datapath._CPU.struct.format
    assert full.startswith(head) and datapath._CPU_FLOOD.size < datapath._CPU.size
    # The layouts before the jiffies clock (80 bytes) and before its offset
    # was one for all CPUs (96).
    for old in (bytes(range(80)), bytes(range(96))):
        padded = old.ljust(datapath._CPU.size, b"\0")
        assert datapath._CPU_FLOOD.decode(old) == datapath._CPU.struct.unpack_from(padded)[:7]
