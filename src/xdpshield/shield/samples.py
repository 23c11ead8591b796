"""Drop samples: the head of frames the shield drops or answers, and why.

The data path (bpf/include/sample.h) copies the first :data:`SAMPLE_BYTES`
bytes of a dropped (XDP_DROP, tc's shot) or answered (XDP_TX) frame, with
its length, reason, rule, interface and a timestamp, into the ``xs_samples``
ring buffer. Sampling is capped per reason by a token bucket on each CPU:

- ``rate`` samples per second per reason (default :data:`DEFAULT_RATE`;
  0: that reason is not sampled). Each CPU refills at its share,
  ``rate / CPUs`` per second, so a flood spread over every CPU is sampled
  at ``rate`` per second in all; a flood that lands on one CPU gets that
  CPU's share. A bucket holds ``rate`` samples: the first ``rate`` of a
  burst are sampled at once on any CPU. Once a bucket is empty, the next
  :data:`SKIP` packets of its reason on that CPU are let by without even a
  look at the clock (tokens keep accruing: samples are delayed by at most
  that many packets, never lost), so a flood over the cap costs a per-CPU
  read and a decrement per packet.
- A sample that finds the ring full is counted (``xs_sample_stat.full``)
  and lost; the data path never waits.
- An answered frame (XDP_TX: a SYN-ACK, an RST) is sampled as it leaves,
  that is the reply: its destination is the sender of the frame answered.

The ring has one read position: one reader at a time (:class:`Sampler`
takes a lock), or the readers would split the samples between them.
"""

from __future__ import annotations

import builtins
import fcntl
import ipaddress
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from xdpshield.ebpf import Map, StructCodec, UInt
from xdpshield.ebpf.ringbuf import RingBuffer
from xdpshield.errors import AlreadyRunning, ConfigError

from .datapath import SAMPLE_MAPS, Address, Reason

__all__ = [
    "DEFAULT_RATE",
    "MAX_RATE",
    "SAMPLE_BYTES",
    "SAMPLE_MAPS",
    "Sample",
    "Sampler",
    "has_samples",
    "init_samples",
    "rates",
    "ring_full_total",
    "sample_counts",
    "set_rate",
]

Maps = Mapping[str, Map[Any, Any]]

SAMPLE_BYTES = 128  # consts.h XS_SAMPLE_BYTES
V_RULE_SHIFT = 16  # consts.h XS_V_RULE_SHIFT: a verdict's rule id + 1
SKIP = 63  # consts.h XS_SAMPLE_SKIP
DEFAULT_RATE = 100
MAX_RATE = 1_000_000
_NS = 1_000_000_000

# struct xs_sample: ts_ns, ifindex, len, reason, rule, action, tc, caplen, data
SAMPLE = StructCodec(f"=QIIHHBBH{SAMPLE_BYTES}s")
# struct xs_sample_bkt: cost_ns, depth_ns, tat, rate, skip
_BKT = StructCodec("=QQQII")
# struct xs_sample_stat: sent, full
_STAT = StructCodec("=QQ")

XDP_TX = 3


@dataclass(frozen=True)
class Sample:
    """One sampled frame."""

    time: float  # when it was sampled, seconds since the epoch
    ifindex: int  # the interface it came in on
    reason: Reason
    rule: int | None  # the rule's id (rule-drop, rule-limit, rule-pass), else None
    length: int  # the frame's whole length
    bytes: builtins.bytes  # its first min(length, SAMPLE_BYTES) bytes
    action: int = 1  # the XDP action (tc's when ``tc``)
    tc: bool = False

    @classmethod
    def decode(cls, raw: builtins.bytes, wall_offset: float) -> Sample | None:
        """From a ring record; ``wall_offset``: time.time() - time.monotonic().
        None for a reason this version does not know (a newer object's)."""
        ts, ifindex, length, reason, rule, action, tc, caplen, data = SAMPLE.decode(
            raw[: SAMPLE.size]
        )
        if reason not in Reason._value2member_map_:
            return None
        return cls(
            time=ts / _NS + wall_offset,
            ifindex=ifindex,
            reason=Reason(reason),
            rule=rule - 1 if rule else None,
            length=length,
            bytes=builtins.bytes(data[: min(caplen, SAMPLE_BYTES)]),
            action=action,
            tc=bool(tc),
        )

    @property
    def answered(self) -> bool:
        """The shield replied (XDP_TX): ``bytes`` is the reply."""
        return not self.tc and self.action == XDP_TX

    def addresses(self) -> tuple[Address, Address] | None:
        """(source, destination) of the IP header in ``bytes``; None when the
        head holds none (not IP, or cut short)."""
        return ip_addresses(self.bytes)

    @property
    def peer(self) -> Address | None:
        """Who the frame is about: its source, or for a reply its destination."""
        addrs = self.addresses()
        if addrs is None:
            return None
        return addrs[1] if self.answered else addrs[0]


def l3_start(frame: bytes) -> tuple[int, int] | None:
    """(offset, ethertype) of an Ethernet frame's payload, after up to two
    VLAN tags as the data path walks them; None when the frame is too short."""
    off, ethertype = 12, 0
    for _ in range(3):
        if len(frame) < off + 2:
            return None
        ethertype = int.from_bytes(frame[off : off + 2], "big")
        if ethertype not in (0x8100, 0x88A8):
            break
        off += 4
    return off + 2, ethertype


def ip_addresses(frame: bytes) -> tuple[Address, Address] | None:
    """Source and destination of an Ethernet frame's IPv4 or IPv6 header."""
    start = l3_start(frame)
    if start is None:
        return None
    off, ethertype = start
    if ethertype == 0x0800 and len(frame) >= off + 20:
        return (
            ipaddress.IPv4Address(frame[off + 12 : off + 16]),
            ipaddress.IPv4Address(frame[off + 16 : off + 20]),
        )
    if ethertype == 0x86DD and len(frame) >= off + 40:
        return (
            ipaddress.IPv6Address(frame[off + 8 : off + 24]),
            ipaddress.IPv6Address(frame[off + 24 : off + 40]),
        )
    return None


# -- the caps ------------------------------------------------------------------------
def has_samples(maps: Maps) -> bool:
    """Whether the shield has drop samples (one loaded by an older version has none)."""
    return all(name in maps for name in SAMPLE_MAPS)


def _need(maps: Maps) -> None:
    if not has_samples(maps):
        raise ConfigError(
            "this shield has no drop samples (loaded by an older version: reload it)",
            key="samples",
        )


def _cpus() -> int:
    return os.cpu_count() or 1


def _bucket(rate: int, ncpus: int) -> tuple[int, int, int, int, int]:
    """struct xs_sample_bkt for ``rate`` per second over ``ncpus`` CPUs: each
    CPU refills at rate / ncpus per second and holds ``rate`` samples."""
    if rate == 0:
        return (0, 0, 0, 0, 0)
    cost = max(1, math.ceil(_NS * ncpus / rate))
    return (cost, cost * rate, 0, rate, 0)


def set_rate(
    maps: Maps, rate: int, reasons: Iterable[Reason] | None = None, *, ncpus: int | None = None
) -> None:
    """Cap the samples of ``reasons`` (default: every reason the running
    object has a bucket for) at ``rate`` per second; 0 turns them off. Each
    bucket starts full."""
    _need(maps)
    if not isinstance(rate, int) or isinstance(rate, bool) or not 0 <= rate <= MAX_RATE:
        raise ConfigError(f"sample rate must be 0..{MAX_RATE} per second, got {rate!r}", key="rate")
    value = _bucket(rate, ncpus or _cpus())
    bkt = maps["xs_sample_bkt"].typed(UInt(4), _BKT)
    for reason in Reason if reasons is None else reasons:
        if reason < bkt.max_entries:  # else newer than the running object
            bkt.update(int(reason), value)  # one value for every CPU


def init_samples(maps: Maps, rate: int = DEFAULT_RATE) -> None:
    """A fresh shield's sample caps (a no-op on a shield without samples)."""
    if has_samples(maps):
        set_rate(maps, rate)


def rates(maps: Maps) -> dict[Reason, int]:
    """The cap of each reason, samples per second (0: off, and for a reason
    newer than the running object, which has no bucket for it)."""
    _need(maps)
    bkt = maps["xs_sample_bkt"].typed(UInt(4), _BKT)
    return {r: int(bkt.lookup_percpu(int(r))[0][3]) if r < bkt.max_entries else 0 for r in Reason}


def sample_counts(maps: Maps) -> dict[Reason, tuple[int, int]]:
    """Per reason, summed over CPUs: (samples sent to the ring, samples lost
    to a full ring). Counters since load; never reset."""
    _need(maps)
    stat = maps["xs_sample_stat"].typed(UInt(4), _STAT)
    out: dict[Reason, tuple[int, int]] = {}
    for r in Reason:
        if r >= stat.max_entries:  # newer than the running object
            out[r] = (0, 0)
            continue
        per = stat.lookup_percpu(int(r))
        out[r] = (sum(v[0] for v in per), sum(v[1] for v in per))
    return out


def ring_full_total(maps: Maps) -> int:
    """Samples lost to a full ring, every reason and CPU."""
    return sum(full for _, full in sample_counts(maps).values())


# -- reading -------------------------------------------------------------------------
class Sampler:
    """Reads the shield's samples: ``poll()`` returns those that arrived.

    ``reasons``: keep only these. ``lock``: a file the reader holds locked
    while it reads (AlreadyRunning when another reader holds it).
    """

    def __init__(
        self,
        maps: Maps,
        *,
        reasons: Iterable[Reason] | None = None,
        lock: Path | None = None,
    ) -> None:
        _need(maps)
        self.reasons = frozenset(reasons) if reasons is not None else None
        self._lockf: IO[str] | None = None
        if lock is not None:
            self._lockf = _take_lock(lock)
        try:
            self._ring = RingBuffer(maps["xs_samples"])
        except BaseException:
            self._release()
            raise
        self._wall = time.time() - time.monotonic()

    def poll(self, timeout_s: float = 0.1) -> list[Sample]:
        out = []
        for raw in self._ring.poll(max(0, int(timeout_s * 1000))):
            s = Sample.decode(raw, self._wall)
            if s is not None and (self.reasons is None or s.reason in self.reasons):
                out.append(s)
        return out

    def drain(self) -> int:
        """Throw away what is in the ring now (old samples); returns how many."""
        return len(self._ring.poll(0))

    def _release(self) -> None:
        if self._lockf is not None:
            self._lockf.close()  # closing drops the lock
            self._lockf = None

    def close(self) -> None:
        self._ring.close()
        self._release()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _take_lock(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - held open while reading
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        text = f.read().strip()
        f.close()
        pid = int(text) if text.isdigit() else 0
        raise AlreadyRunning(
            f"another reader has the drop samples (pid {pid or '?'}: a capture or top); "
            "the ring has one read position, so one reader at a time",
            pid,
        ) from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f
