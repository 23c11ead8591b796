"""Drop samples to pcapng, or to one line each: what ``xdpshield capture`` does.

The pcapng file is written by hand after the specification
(draft-ietf-opsawg-pcapng): a Section Header Block, one Interface Description
Block per interface seen (nanosecond timestamps, snaplen = the sample's
bytes), and one Enhanced Packet Block per sample whose ``opt_comment`` says
why it was dropped (``reason=rule-drop rule=no-dns(3)``). tcpdump, tshark
and Wireshark read it; Wireshark and tshark show the comment
(``frame.comment``). No library of the product's dependencies writes pcapng
with comments (scapy, which can, is the lab's).
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from xdpshield.ebpf.pcapfilter import LINKTYPE_ETHERNET, PcapFilter
from xdpshield.shield.datapath import Reason
from xdpshield.shield.samples import SAMPLE_BYTES, Sample, Sampler, l3_start

__all__ = [
    "CaptureResult",
    "PcapngWriter",
    "capture",
    "comment",
    "parse_reasons",
    "summary",
]

_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_END, _OPT_COMMENT = 0, 1
_SHB_USERAPPL = 4
_IF_NAME, _IF_TSRESOL = 2, 9


def _opt(code: int, value: bytes) -> bytes:
    pad = -len(value) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Writes samples as pcapng to a binary stream (flushed per packet, so a
    reader at the other end of a pipe sees each at once)."""

    def __init__(
        self, f: BinaryIO, *, ifnames: Mapping[int, str] | None = None, app: str = "xdpshield"
    ) -> None:
        self.f = f
        self.ifnames = dict(ifnames or {})
        self._ifids: dict[int, int] = {}
        opts = _opt(_SHB_USERAPPL, app.encode()) + _opt(_OPT_END, b"")
        # Version 1.0, section length unknown (-1).
        body = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + opts
        self.f.write(_block(_SHB, body))
        self.count = 0

    def _ifid(self, ifindex: int) -> int:
        if ifindex not in self._ifids:
            name = self.ifnames.get(ifindex, f"ifindex {ifindex}")
            opts = (
                _opt(_IF_NAME, name.encode())
                + _opt(_IF_TSRESOL, bytes([9]))  # 10^-9: nanoseconds
                + _opt(_OPT_END, b"")
            )
            body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SAMPLE_BYTES) + opts
            self.f.write(_block(_IDB, body))
            self._ifids[ifindex] = len(self._ifids)
        return self._ifids[ifindex]

    def write(self, data: bytes, *, ifindex: int, ts: float, wirelen: int, note: str) -> None:
        ifid = self._ifid(ifindex)
        ns = round(ts * 1e9)
        body = struct.pack("<IIIII", ifid, ns >> 32, ns & 0xFFFFFFFF, len(data), wirelen)
        body += data + b"\0" * (-len(data) % 4)
        body += _opt(_OPT_COMMENT, note.encode()) + _opt(_OPT_END, b"")
        self.f.write(_block(_EPB, body))
        self.f.flush()
        self.count += 1

    def write_sample(self, s: Sample, note: str) -> None:
        self.write(s.bytes, ifindex=s.ifindex, ts=s.time, wirelen=s.length, note=note)


# -- what a sample says ---------------------------------------------------------------
_ACTIONS = {0: "aborted", 1: "drop", 2: "pass", 3: "tx", 4: "redirect"}
_TC_ACTIONS = {0: "ok", 2: "shot"}


def comment(s: Sample, rule_names: Mapping[int, str] | None = None) -> str:
    """The packet's comment: ``reason=R [rule=NAME(ID)] action=A``."""
    parts = [f"reason={s.reason.label}"]
    if s.rule is not None:
        name = (rule_names or {}).get(s.rule)
        parts.append(f"rule={name}({s.rule})" if name else f"rule={s.rule}")
    acts = _TC_ACTIONS if s.tc else _ACTIONS
    parts.append(f"action={'tc-' if s.tc else ''}{acts.get(s.action, str(s.action))}")
    return " ".join(parts)


_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}
_TCP_FLAGS = "FSRPAUEC"


def _l4(frame: bytes, off: int, proto: int) -> str:
    name = _PROTOS.get(proto, f"proto {proto}")
    if proto in (6, 17) and len(frame) >= off + 4:
        sport, dport = struct.unpack_from("!HH", frame, off)
        text = f"{name} {sport} > {dport}"
        if proto == 6 and len(frame) >= off + 14:
            flags = frame[off + 13]
            text += " [" + "".join(c for i, c in enumerate(_TCP_FLAGS) if flags >> i & 1) + "]"
        return text
    if proto in (1, 58) and len(frame) >= off + 2:
        return f"{name} type {frame[off]} code {frame[off + 1]}"
    return name


def summary(frame: bytes) -> str:
    """A one-line description of a frame's head: addresses, protocol, ports."""
    start = l3_start(frame)
    if start is None:
        return f"{len(frame)} bytes, no ethertype"
    off, ethertype = start
    if ethertype == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0xF) * 4
        src = ipaddress.IPv4Address(frame[off + 12 : off + 16])
        dst = ipaddress.IPv4Address(frame[off + 16 : off + 20])
        return f"{src} > {dst} {_l4(frame, off + max(ihl, 20), frame[off + 9])}"
    if ethertype == 0x86DD and len(frame) >= off + 40:
        src6 = ipaddress.IPv6Address(frame[off + 8 : off + 24])
        dst6 = ipaddress.IPv6Address(frame[off + 24 : off + 40])
        return f"{src6} > {dst6} {_l4(frame, off + 40, frame[off + 6])}"
    names = {0x0806: "arp", 0x0800: "ipv4 (cut)", 0x86DD: "ipv6 (cut)"}
    return names.get(ethertype, f"ethertype {ethertype:#06x}")


def line(s: Sample, rule_names: Mapping[int, str] | None = None) -> str:
    """One line per sample, as ``capture`` prints without -w."""
    t = time.strftime("%H:%M:%S", time.localtime(s.time)) + f".{int(s.time % 1 * 1e6):06d}"
    return f"{t} {summary(s.bytes)} length {s.length} {comment(s, rule_names)}"


def parse_reasons(texts: Iterable[str]) -> frozenset[Reason]:
    """Reasons by label (``rule-drop``) or name (``RULE_DROP``), comma lists
    allowed; ValueError naming the unknown one and the valid labels."""
    by_label = {r.label: r for r in Reason}
    out: set[Reason] = set()
    for text in texts:
        for part in text.split(","):
            key = part.strip().lower().replace("_", "-")
            if not key:
                continue
            if key not in by_label:
                raise ValueError(
                    f"unknown reason {part.strip()!r}; reasons: {', '.join(sorted(by_label))}"
                )
            out.add(by_label[key])
    return frozenset(out)


# -- the loop -------------------------------------------------------------------------
@dataclass
class CaptureResult:
    seen: int = 0  # samples read (of the selected reasons)
    kept: int = 0  # of them, passed the filter and written or printed
    lost: int = 0  # samples lost to a full ring meanwhile (every reason)
    by_reason: dict[Reason, int] = field(default_factory=dict)


def capture(
    sampler: Sampler,
    emit: Callable[[Sample], None],
    *,
    pcap_filter: PcapFilter | None = None,
    count: int | None = None,
    duration: float | None = None,
    lost: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CaptureResult:
    """Read samples until ``count`` passed the filter or ``duration`` seconds
    went by (neither: until interrupted); each passing one goes to ``emit``.
    ``lost()``: the ring-full counter, read at both ends."""
    res = CaptureResult()
    lost0 = lost() if lost else 0
    end = None if duration is None else clock() + duration
    try:
        while count is None or res.kept < count:
            wait = 0.2 if end is None else min(0.2, end - clock())
            if wait <= 0:
                break
            for s in sampler.poll(wait):
                res.seen += 1
                if pcap_filter is not None and not pcap_filter.matches(s.bytes, s.length):
                    continue
                res.kept += 1
                res.by_reason[s.reason] = res.by_reason.get(s.reason, 0) + 1
                emit(s)
                if count is not None and res.kept >= count:
                    break
    finally:
        if lost:
            res.lost = lost() - lost0
    return res
