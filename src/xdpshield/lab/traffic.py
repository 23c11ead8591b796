"""Traffic for the stand: in-kernel floods and a legitimate HTTP load.

Floods: ``xdp_flood`` (bpf/lab/traffic.bpf.c) runs under BPF_PROG_TEST_RUN in
live-frames mode on the attacker's uplink, so every XDP_TX leaves on the wire.
Python builds one correct frame (the template) and tells the program which
32-bit windows of it to randomise; the program rewrites the whole frame each
run (live-frames pages are recycled) and fixes the checksums. Workers are
threads: the test-run syscall releases the GIL, and each thread enters the
attacker's namespace with setns(), which is per thread.

Legit load: a small asyncio HTTP server in the server namespace and an
asyncio client pool in the client namespace, both this module run as
``python -m xdpshield.lab.traffic`` through ``ip netns exec``. The client connects,
asks for a body of known bytes, verifies every byte, and reports each second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pyroute2 import netns as pyroute2_netns
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from xdpshield import netns
from xdpshield.ebpf import Map, ObjectSpec, Program, close_maps
from xdpshield.errors import TrafficError
from xdpshield.lab import KINDS, FloodKind
from xdpshield.lab.stand import DEFAULT_SOURCES4, Stand, only_program
from xdpshield.objects import object_path

__all__ = [
    "KINDS",
    "FloodFrame",
    "FloodKind",
    "FloodResult",
    "FloodTarget",
    "HttpServer",
    "LegitResult",
    "LegitSample",
    "TrafficError",
    "body_bytes",
    "build_flood_frame",
    "flood",
    "legit_load",
    "serve_http",
]


TMPL_MAX = 256  # bpf/lab/traffic.bpf.c
_FLAGS = "FSRPAUEC"  # TCP flag letters, as scapy spells them
NFIELDS = 8  # bpf/lab/traffic.bpf.c
ETH_HLEN = 14
MAX_DURATION_S = 3600.0
MAX_COUNT = 10**12


# -- flood frames ---------------------------------------------------------------------
@dataclass(frozen=True)
class FloodTarget:
    """Where a flood goes: the sending interface (in ``ns``) and the victim."""

    ns: str | None
    ifname: str
    src_mac: str
    dst_mac: str
    dst4: str | None = None
    dst6: str | None = None

    @classmethod
    def of_stand(cls, stand: Stand) -> FloodTarget:
        """From the attacker's end of the uplink to the server's protected link."""
        return cls(
            stand.ns("attacker"),
            stand.uplink_if,
            stand.mac("attacker"),
            stand.mac("server"),
            stand.server4,
            stand.server6,
        )


@dataclass(frozen=True)
class FloodFrame:
    """One frame of a flood and how the generator varies it (the program's constants)."""

    kind: FloodKind
    frame: bytes
    constants: dict[str, int | bytes]

    def to_scapy(self) -> Any:
        return Ether(self.frame)


def _window_mask(mask: bytes) -> int:
    """A 4-byte mask in frame order as the u32 the program loads (host order)."""
    return int.from_bytes(mask, sys.byteorder)


def _addr_windows(
    offset: int, net: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> list[tuple[int, int]]:
    host = int(net.hostmask).to_bytes(net.max_prefixlen // 8, "big")
    return [
        (offset + i, _window_mask(host[i : i + 4]))
        for i in range(0, len(host), 4)
        if any(host[i : i + 4])
    ]


def build_flood_frame(
    kind: FloodKind,
    target: FloodTarget,
    *,
    sources: str | None = None,
    dport: int = 80,
    size: int = 60,
    sport: int | None = None,
    tcp_flags: str | None = None,
) -> FloodFrame:
    """The template frame of a flood and the constants that make the program vary it.

    ``sources`` is a CIDR of spoofed sources (IPv4 or IPv6: the flood's family);
    ``size`` the frame length without FCS (rounded up to a multiple of 4, at
    least what the headers need, at most 256); ``sport`` a fixed source port
    (a reflection flood: UDP from port 53), else random; ``tcp_flags`` the
    flags of a syn or ack flood instead of its own, as scapy spells them
    (``"SF"``: SYN+FIN, flag nonsense no stack sends).
    """
    if kind not in KINDS:
        raise TrafficError(f"unknown flood kind {kind!r}; kinds: {', '.join(KINDS)}")
    try:
        net = ipaddress.ip_network(sources or DEFAULT_SOURCES4, strict=False)
    except ValueError as exc:
        raise TrafficError(f"sources: {exc}") from None
    dst = target.dst6 if net.version == 6 else target.dst4
    if dst is None:
        raise TrafficError(f"the target has no IPv{net.version} address for sources {net}")
    if not 0 < dport < 65536:
        raise TrafficError(f"destination port {dport} is not in 1..65535")
    if sport is not None and not 0 < sport < 65536:
        raise TrafficError(f"source port {sport} is not in 1..65535")
    if tcp_flags is not None and (kind not in ("syn", "ack") or not set(tcp_flags) <= set(_FLAGS)):
        raise TrafficError(
            f"tcp flags {tcp_flags!r}: letters of {_FLAGS!r}, for a syn or ack flood only"
        )
    lay = _FrameLayout.of(kind, net.version == 6, size)
    raw = _template(kind, target, net, dst, dport, lay, sport or 1024, tcp_flags)
    windows = _random_windows(kind, net, lay, random_sport=sport is None)
    return FloodFrame(kind, raw, _flood_constants(kind, net.version == 6, raw, windows, lay))


@dataclass(frozen=True)
class _FrameLayout:
    """Where the headers of a flood frame start and how long its parts are."""

    l3_off: int
    l4_off: int
    l4_fixed: int  # bytes of the L4 header (TCP: with its options)
    l4_len: int  # L4 header and payload: what fits, a multiple of 4
    frame_len: int

    @classmethod
    def of(cls, kind: FloodKind, v6: bool, size: int) -> _FrameLayout:
        ip_hlen = 40 if v6 else 20
        l3_off = ETH_HLEN
        frag_hlen = 8 if (v6 and kind == "frag") else 0
        l4_off = l3_off + ip_hlen + frag_hlen
        l4_fixed = {"syn": 24, "ack": 20, "udp": 8, "icmp": 8, "frag": 8}[kind]
        need = l4_off + l4_fixed
        frame_len = max(size, need, 60)
        frame_len = (frame_len + 3) & ~3
        if frame_len > TMPL_MAX:
            raise TrafficError(f"frame size {frame_len} exceeds the generator's {TMPL_MAX} bytes")
        # L4 length: what fits, a multiple of 4 (the checksum helper's unit).
        l4_len = l4_fixed if kind in ("syn", "ack") else (frame_len - l4_off) & ~3
        return cls(l3_off, l4_off, l4_fixed, l4_len, frame_len)


def _template(
    kind: FloodKind,
    target: FloodTarget,
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    dst: str,
    dport: int,
    lay: _FrameLayout,
    sport: int = 1024,
    tcp_flags: str | None = None,
) -> bytes:
    """The frame the generator starts from (checksums right), padded to its length."""
    v6 = net.version == 6
    payload = Raw(bytes(lay.l4_len - lay.l4_fixed))
    src = str(net.network_address)
    ip: Any = (
        IPv6(src=src, dst=dst, hlim=64)
        if v6
        else IP(src=src, dst=dst, ttl=64, id=0, flags="DF" if kind != "frag" else "MF")
    )
    l4: Any
    if kind == "syn":
        mss = [("MSS", 1460)]
        l4 = TCP(sport=sport, dport=dport, flags=tcp_flags or "S", seq=0, window=64240, options=mss)
    elif kind == "ack":
        l4 = TCP(sport=sport, dport=dport, flags=tcp_flags or "A", seq=0, ack=0, window=502)
    elif kind == "icmp":
        l4 = (ICMPv6EchoRequest(id=0, seq=0) if v6 else ICMP(type=8, id=0, seq=0)) / payload
    else:
        l4 = UDP(sport=sport, dport=dport) / payload
    if kind == "frag" and v6:
        ip = ip / IPv6ExtHdrFragment(offset=0, m=1, id=0, nh=17)
    pkt = Ether(src=target.src_mac, dst=target.dst_mac) / ip / l4
    raw = bytes(pkt)
    if len(raw) > lay.frame_len:  # pragma: no cover - sizes above guarantee it
        raise TrafficError(f"{kind} headers need {len(raw)} bytes")
    return raw + bytes(lay.frame_len - len(raw))


def _random_windows(
    kind: FloodKind,
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    lay: _FrameLayout,
    *,
    random_sport: bool = True,
) -> list[tuple[int, int]]:
    """(offset, mask) of each 32-bit window the program randomises, padded to NFIELDS."""
    v6 = net.version == 6
    l3_off, l4_off = lay.l3_off, lay.l4_off
    windows: list[tuple[int, int]] = _addr_windows(l3_off + (8 if v6 else 12), net)
    if not v6:
        # IP id (and, for fragments, the 13-bit offset; MF stays set).
        windows.append(
            (l3_off + 4, _window_mask(b"\xff\xff" + (b"\x1f\xff" if kind == "frag" else b"\0\0")))
        )
    if kind == "frag" and v6:
        fh = l3_off + 40
        windows.append((fh, _window_mask(b"\0\0\xff\xf8")))  # offset; M stays set
        windows.append((fh + 4, _window_mask(b"\xff\xff\xff\xff")))  # identification
    if kind in ("syn", "ack", "udp") and random_sport:
        windows.append((l4_off, _window_mask(b"\xff\xff\0\0")))  # source port
    if kind in ("syn", "ack"):
        windows.append((l4_off + 4, _window_mask(b"\xff" * 4)))  # seq
    if kind == "ack":
        windows.append((l4_off + 8, _window_mask(b"\xff" * 4)))  # ack_seq
    if kind == "icmp":
        windows.append((l4_off + 4, _window_mask(b"\xff" * 4)))  # echo id and seq
    if len(windows) > NFIELDS:
        raise TrafficError(
            f"{kind} from {net} needs {len(windows)} random fields; the generator has {NFIELDS}"
        )
    return windows + [(0, 0)] * (NFIELDS - len(windows))


def _flood_constants(
    kind: FloodKind, v6: bool, raw: bytes, windows: list[tuple[int, int]], lay: _FrameLayout
) -> dict[str, int | bytes]:
    """The generator's load-time constants (bpf/lab/traffic.bpf.c) for this frame."""
    proto = {"syn": 6, "ack": 6, "udp": 17, "icmp": 58 if v6 else 1, "frag": 17}[kind]
    csum_off = {"syn": 16, "ack": 16, "udp": 6, "icmp": 2, "frag": 0}[kind]
    return {
        "tmpl": raw + bytes(TMPL_MAX - lay.frame_len),
        "frame_len": lay.frame_len,
        "ip_version": 6 if v6 else 4,
        "l4_off": lay.l4_off,
        "l4_len": lay.l4_len,
        "l4_csum_off": csum_off,
        "l4_pseudo": int(not (kind == "icmp" and not v6)),
        "l4_proto": proto,
        "field_off": b"".join(o.to_bytes(4, sys.byteorder) for o, _ in windows),
        "field_mask": b"".join(m.to_bytes(4, sys.byteorder) for _, m in windows),
    }


def load_flood_program(
    frame: FloodFrame, mux: Mapping[str, Map[bytes, bytes]] | None = None
) -> Program:
    """Load ``xdp_flood`` with the frame's constants (the caller closes the program).

    ``mux``: a stand's shared-link maps (``Stand.mux_maps``); the generator
    then also sends the client frames queued there, in its own stream.
    """
    spec = ObjectSpec(object_path("traffic.o"))
    spec.set_constants(**frame.constants, mux=int(mux is not None))
    for name, m in (mux or {}).items():
        spec.reuse_map(name, m)
    only_program(spec, "xdp_flood")
    coll = spec.load()
    prog = coll.program("xdp_flood")
    # The program keeps its own fd; the rest of the collection can go.
    coll.programs.pop("xdp_flood")
    coll.close()
    return prog


# -- flood ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FloodResult:
    """What a flood achieved: frames handed to the link, in how long, at what rate."""

    kind: FloodKind
    sent: int
    seconds: float
    pps: float
    workers: int
    per_worker: tuple[int, ...]
    frame_len: int
    family: int
    # From the veth's counters (None when unknown, e.g. not a veth): frames the
    # receiving end took into its ring, and the rest of ``sent``, which it
    # refused (ring full, or no NAPI: neither XDP nor GRO on the receiver).
    delivered: int | None = None
    tx_errors: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressFn = Callable[[int, float], None]


@dataclass
class _Worker:
    index: int
    quota: int
    rate: float | None
    cpu: int | None
    sent: int = 0
    ended: float = 0.0
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


# Each live-frames test run costs a fixed ~24 ms here (the kernel sets up and
# tears down a page pool per call, quantised to timer ticks), so frames go in
# large calls: the open rate aims each call at _CALL_S (shorter for short
# floods, to stop near the deadline); a held rate sends one call per _TICK_S.
_FIRST_BATCH = 1 << 16
_CALL_S = (0.05, 0.25)
_TICK_S = 0.1
_MAX_BATCH = 1 << 24
# Frames per kernel flush in live-frames mode (the kernel allows up to 256);
# the receiving veth's ring holds 256.
_LIVE_BATCH = 64


def _run_worker(
    w: _Worker,
    prog: Program,
    frame: bytes,
    target: FloodTarget,
    start: threading.Barrier,
    t0: list[float],
    deadline_s: float,
    stop: threading.Event,
    live_batch: int,
    tick_s: float = _TICK_S,
) -> None:
    try:
        if target.ns is not None:
            # setns() moves this thread only; the ifindex is looked up in it.
            pyroute2_netns.setns(target.ns, flags=0)
        if w.cpu is not None:
            os.sched_setaffinity(0, {w.cpu})
        ifindex = socket.if_nametoindex(target.ifname)
    except BaseException as exc:
        w.error = exc
        start.abort()
        return
    try:
        start.wait()
    except threading.BrokenBarrierError:
        return
    begin = t0[0]
    deadline = begin + deadline_s
    call_s = min(_CALL_S[1], max(_CALL_S[0], deadline_s / 20))
    batch = _FIRST_BATCH
    if w.rate is not None:
        batch = max(1, min(_MAX_BATCH, int(w.rate * tick_s)))
    try:
        while w.sent < w.quota and not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if w.rate is not None:
                due = begin + w.sent / w.rate
                if due > now:
                    time.sleep(min(due - now, deadline - now))
                    continue
            n = min(batch, w.quota - w.sent)
            t = time.monotonic()
            prog.run_live(frame, n, ifindex=ifindex, batch_size=live_batch)
            took = time.monotonic() - t
            w.sent += n
            if w.rate is None and took > 0:
                # The observed rate includes the per-call cost, so it grows
                # as calls grow; never aim past the deadline.
                est = n / took
                left = max(0.0, deadline - time.monotonic())
                want = int(est * min(call_s, left))
                batch = max(1, min(_MAX_BATCH, batch * 8, want))
    except BaseException as exc:
        w.error = exc
    finally:
        w.ended = time.monotonic()


def _veth_xmit(target: FloodTarget) -> int | None:
    """Frames the receiving veth took (sum of its tx_queue_*_xdp_xmit), or None."""
    argv = ["ethtool", "-S", target.ifname]
    if target.ns is not None:
        argv = ["ip", "netns", "exec", target.ns, *argv]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    total, seen = 0, False
    for line in out.stdout.splitlines():
        name, _, value = line.strip().partition(":")
        if name.startswith("tx_queue_") and name.endswith("_xdp_xmit"):
            total += int(value)
            seen = True
    return total if seen else None


def _mux_release(mux: Mapping[str, Map[bytes, bytes]], target: FloodTarget) -> None:
    """The flood is over: client frames take the router's path again.

    Frames still queued (sent in the generator's last pause) go out on the
    uplink as they are, the way a link's queue drains when a burst ends.
    """
    mux["mux_clock"].update(bytes(4), bytes(8))
    with contextlib.ExitStack() as stack:
        sock: socket.socket | None = None
        while (entry := mux["mux_queue"].pop()) is not None:
            if sock is None:
                stack.enter_context(netns.enter(target.ns))
                sock = stack.enter_context(socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
                sock.bind((target.ifname, 0))
            length = int.from_bytes(entry[:4], sys.byteorder)
            _send_draining(sock, entry[4 : 4 + length])


def _send_draining(sock: socket.socket, frame: bytes, tries: int = 200) -> None:
    """Send one frame on a packet socket whose device queue may be full for
    a moment (ENOBUFS right after a flood): wait for it to drain, as a
    link's queue would, rather than fail the whole release."""
    for _ in range(tries - 1):
        try:
            sock.send(frame)
            return
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            time.sleep(0.001)
    sock.send(frame)


def flood(
    kind: FloodKind,
    *,
    stand: Stand | None = None,
    target: FloodTarget | None = None,
    rate_pps: float | None = None,
    duration_s: float = 10.0,
    count: int = 10**9,
    sources: str | None = None,
    dport: int = 80,
    sport: int | None = None,
    tcp_flags: str | None = None,
    size: int = 60,
    workers: int = 1,
    pin: bool = True,
    cpus: Sequence[int] | None = None,
    on_progress: ProgressFn | None = None,
    progress_interval_s: float = 1.0,
    tick_s: float = _TICK_S,
    live_batch: int = _LIVE_BATCH,
) -> FloodResult:
    """Flood the stand's server (or ``target``) with ``kind`` frames; block until done.

    Bounded twice: it stops after ``count`` frames or ``duration_s`` seconds,
    whichever comes first. ``rate_pps`` None sends as fast as the machine
    can; otherwise the total rate is held by sleeping between calls (each
    call goes at line rate: the rate is an average over ~0.1 s). ``workers``
    threads (pinned round-robin to ``cpus``, default: every CPU we may use,
    when ``pin``) share the count and the rate. ``on_progress(sent,
    elapsed_s)`` is called from this thread about every ``progress_interval_s``.
    ``sources``, ``sport``, ``tcp_flags``, ``size``: the frame (see
    :func:`build_flood_frame`).
    """
    if (stand is None) == (target is None):
        raise TrafficError("give either a stand or a target")
    if target is None:
        assert stand is not None
        target = FloodTarget.of_stand(stand)
    _check_bounds(duration_s, count, rate_pps, workers)
    ff = build_flood_frame(
        kind,
        target,
        sources=sources or DEFAULT_SOURCES4,
        dport=dport,
        size=size,
        sport=sport,
        tcp_flags=tcp_flags,
    )
    pool = _pool(count, workers, rate_pps, cpus, pin)
    if not 0.001 <= tick_s <= 1.0:
        raise TrafficError(f"tick {tick_s} s: must be in [0.001, 1]")
    if not 1 <= live_batch <= 256:
        raise TrafficError(f"live batch {live_batch}: must be in 1..256")
    mux = stand.mux_maps() if stand is not None else None
    try:
        prog = load_flood_program(ff, mux)
    except BaseException:
        close_maps(mux)
        raise
    xmit_before = _veth_xmit(target)
    pace = _Pace(duration_s, live_batch, tick_s, on_progress, progress_interval_s)
    try:
        t0 = _run_pool(pool, prog, ff.frame, target, pace)
    finally:
        prog.close()
        if mux is not None:
            try:
                _mux_release(mux, target)
            finally:
                close_maps(mux)
    failed = [w.error for w in pool if w.error is not None]
    if failed:
        exc = failed[0]
        raise TrafficError(f"flood worker failed: {exc}") from exc
    return _flood_result(ff, pool, t0, xmit_before, _veth_xmit(target))


def _check_bounds(duration_s: float, count: int, rate_pps: float | None, workers: int) -> None:
    if not 0 < duration_s <= MAX_DURATION_S:
        raise TrafficError(f"duration {duration_s} s: must be in (0, {MAX_DURATION_S:.0f}]")
    if not 0 < count <= MAX_COUNT:
        raise TrafficError(f"count {count}: must be in 1..{MAX_COUNT}")
    if rate_pps is not None and not rate_pps > 0:
        raise TrafficError(f"rate {rate_pps} pps: must be positive (or None: unbounded)")
    ncpu = len(os.sched_getaffinity(0))
    if not 1 <= workers <= max(ncpu, 1) * 4:
        raise TrafficError(f"workers {workers}: must be in 1..{ncpu * 4}")


def _pool(
    count: int, workers: int, rate_pps: float | None, cpus: Sequence[int] | None, pin: bool
) -> list[_Worker]:
    """The workers, sharing the count and the rate, pinned round-robin to ``cpus``."""
    allowed = sorted(os.sched_getaffinity(0))
    use = sorted(set(cpus)) if cpus else allowed
    if not use or not set(use) <= set(allowed):
        raise TrafficError(f"cpus {list(cpus or [])}: must be among {allowed}")
    pool = [
        _Worker(
            i,
            count // workers + (1 if i < count % workers else 0),
            rate_pps / workers if rate_pps is not None else None,
            use[i % len(use)] if pin else None,
        )
        for i in range(workers)
    ]
    return [w for w in pool if w.quota > 0]


@dataclass(frozen=True)
class _Pace:
    """How long a flood runs, how it sends, and how often it reports."""

    duration_s: float
    live_batch: int
    tick_s: float
    on_progress: ProgressFn | None
    progress_interval_s: float


def _run_pool(
    pool: list[_Worker], prog: Program, frame: bytes, target: FloodTarget, pace: _Pace
) -> float:
    """Start the workers together, report progress until they end; returns the start time."""
    t0 = [0.0]
    start = threading.Barrier(len(pool) + 1)
    stop = threading.Event()
    for w in pool:
        w.thread = threading.Thread(
            target=_run_worker,
            args=(w, prog, frame, target, start, t0, pace.duration_s, stop, pace.live_batch,
                  pace.tick_s),
            name=f"xdpshield-flood-{w.index}",
            daemon=True,
        )  # fmt: skip
        w.thread.start()
    t0[0] = time.monotonic()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    last = t0[0]
    try:
        for w in pool:
            assert w.thread is not None
            while w.thread.is_alive():
                w.thread.join(timeout=min(0.1, pace.progress_interval_s))
                now = time.monotonic()
                if pace.on_progress is not None and now - last >= pace.progress_interval_s:
                    last = now
                    pace.on_progress(sum(x.sent for x in pool), now - t0[0])
    except BaseException:
        stop.set()  # Ctrl-C: the workers end after their current batch
        for w in pool:
            if w.thread is not None:
                w.thread.join()
        raise
    return t0[0]


def _flood_result(
    ff: FloodFrame,
    pool: list[_Worker],
    t0: float,
    xmit_before: int | None,
    xmit_after: int | None,
) -> FloodResult:
    sent = sum(w.sent for w in pool)
    seconds = max((w.ended for w in pool), default=t0) - t0
    delivered = (
        xmit_after - xmit_before if xmit_before is not None and xmit_after is not None else None
    )
    return FloodResult(
        kind=ff.kind,
        sent=sent,
        seconds=seconds,
        pps=sent / seconds if seconds > 0 else 0.0,
        workers=len(pool),
        per_worker=tuple(w.sent for w in pool),
        frame_len=len(ff.frame),
        family=int(ff.constants["ip_version"]),
        delivered=delivered,
        tx_errors=sent - delivered if delivered is not None else None,
    )


# -- legit load -----------------------------------------------------------------------
BODY_SEED = 0x5EED


def body_bytes(size: int) -> bytes:
    """The body the stand's HTTP server sends: known, non-periodic bytes."""
    return random.Random(BODY_SEED).randbytes(size)


@dataclass(frozen=True)
class LegitSample:
    """One second of the legit load: connections finished in [t, t+1) s.

    ``completed`` counts those that completed (after retries, if any),
    ``first_try`` those of them that completed on their first attempt.
    ``started`` counts the connections that *started* in that second and
    ``started_first_try`` those of them that completed on their first
    attempt: what a second of an attack did to the users who came then.
    Both are final only in ``LegitResult.series`` (a live sample has only the
    outcomes known so far).
    """

    t: int
    completed: int
    failed: int
    p50_ms: float | None
    first_try: int = 0
    started: int = 0
    started_first_try: int = 0


@dataclass(frozen=True)
class LegitResult:
    """What the legit clients saw.

    ``attempted`` counts connections a user asked for; each may take up to
    ``1 + retries`` TCP connections (``retried`` of them were retries, by the
    reason the one before failed). ``completed`` counts those that got the
    whole body in the end, ``first_try`` those that got it on the first
    connection; ``failed`` = attempted - completed, by the reason of the last
    attempt in ``failures``. Latencies are from the first SYN of a connection
    to the handshake of the attempt that completed (a retry's cost included).
    """

    attempted: int
    completed: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    bytes_verified: int
    seconds: float
    failures: dict[str, int]
    series: tuple[LegitSample, ...]
    first_try: int = 0
    retries: int = 0
    retried: dict[str, int] = field(default_factory=dict)

    @property
    def success(self) -> float:
        """Completed share of the attempted connections (1.0 when none were attempted)."""
        return self.completed / self.attempted if self.attempted else 1.0

    @property
    def first_try_success(self) -> float:
        """Share completed on the first attempt (1.0 when none were attempted)."""
        return self.first_try / self.attempted if self.attempted else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["success"] = self.success
        d["first_try_success"] = self.first_try_success
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LegitResult:
        return cls(
            attempted=int(d["attempted"]),
            completed=int(d["completed"]),
            failed=int(d["failed"]),
            p50_ms=d["p50_ms"],
            p99_ms=d["p99_ms"],
            bytes_verified=int(d["bytes_verified"]),
            seconds=float(d["seconds"]),
            failures={str(k): int(v) for k, v in d["failures"].items()},
            series=tuple(LegitSample(**s) for s in d["series"]),
            first_try=int(d.get("first_try", 0)),
            retries=int(d.get("retries", 0)),
            retried={str(k): int(v) for k, v in d.get("retried", {}).items()},
        )


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return round(ordered[k], 3)


class HttpServer:
    """The stand's HTTP server: a subprocess in the server namespace, ended by PID."""

    def __init__(self, proc: subprocess.Popen[str], port: int, body_size: int) -> None:
        self.proc = proc
        self.port = port
        self.body_size = body_size

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _module_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "xdpshield.lab.traffic", *args]


def _cpus_args(cpus: Sequence[int] | None) -> list[str]:
    if cpus is None:
        return []
    allowed = os.sched_getaffinity(0)
    if not cpus or not set(cpus) <= allowed:
        raise TrafficError(f"cpus {list(cpus)}: must be among {sorted(allowed)}")
    return ["--cpus", ",".join(str(c) for c in sorted(set(cpus)))]


def serve_http(
    stand: Stand,
    *,
    port: int = 80,
    body_size: int = 4096,
    ready_timeout_s: float = 15.0,
    cpus: Sequence[int] | None = None,
) -> HttpServer:
    """Start the HTTP server in the stand's server namespace; returns once it listens.

    ``cpus``: run the server process only there (default: anywhere).
    """
    proc = stand.popen(
        "server",
        _module_argv(
            "serve", "--port", str(port), "--body-size", str(body_size), *_cpus_args(cpus)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    server = HttpServer(proc, port, body_size)
    assert proc.stdout is not None
    line = _readline_timeout(proc, ready_timeout_s)
    if line.strip() != "ready":
        server.stop()
        err = proc.stderr.read() if proc.stderr is not None else ""
        raise TrafficError(
            f"HTTP server in {stand.ns('server')} did not start: {(line + err).strip()[-500:]}"
        )
    return server


def _readline_timeout(proc: subprocess.Popen[str], timeout_s: float) -> str:
    got: list[str] = []
    t = threading.Thread(
        target=lambda: got.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    t.start()
    t.join(timeout_s)
    return got[0] if got else ""


def legit_load(
    stand: Stand,
    *,
    n_clients: int = 16,
    duration_s: float = 5.0,
    count: int | None = None,
    port: int = 80,
    body_size: int = 4096,
    family: int = 4,
    connect_timeout_s: float = 3.0,
    retries: int = 0,
    server: bool = True,
    cpus: Sequence[int] | None = None,
    on_sample: Callable[[LegitSample], None] | None = None,
) -> LegitResult:
    """``n_clients`` concurrent HTTP clients in the client namespace, for ``duration_s``.

    Each client loops: connect (timed), GET, read the whole response, verify
    every byte of the known body. Bounded by ``duration_s`` (no new connection
    after it; one in flight may take ``connect_timeout_s`` more, plus as long
    again to read) and by ``count`` connections when given. With ``server``
    the HTTP server is started for the run and stopped after it; otherwise
    one must be listening on ``port`` (``serve_http``). ``on_sample`` gets
    each second's numbers as they come.

    ``retries``: a connection that is reset (at any point) or refused is
    retried at once, on a new connection, up to this many times, as a
    browser does; the shield's reset mode resets the first attempt by design
    (see ``LegitResult``). Timeouts are not retried: they already took
    ``connect_timeout_s``. ``cpus``: run the clients (and the server, when
    started here) only there.
    """
    _check_legit_args(n_clients, duration_s, count, family, retries)
    host = stand.addr("server", family)
    cpu_args = _cpus_args(cpus)
    srv = serve_http(stand, port=port, body_size=body_size, cpus=cpus) if server else None
    try:
        argv = _module_argv(
            "client",
            "--host",
            host,
            "--port",
            str(port),
            "--clients",
            str(n_clients),
            "--duration",
            str(duration_s),
            "--body-size",
            str(body_size),
            "--timeout",
            str(connect_timeout_s),
            "--retries",
            str(retries),
            *cpu_args,
        )
        if count is not None:
            argv += ["--count", str(count)]
        proc = stand.popen("client", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        limit = time.monotonic() + duration_s + 2 * (1 + retries) * connect_timeout_s + 30
        result, err = _client_output(proc, limit, on_sample)
        if result is None:
            raise TrafficError(
                f"legit clients in {stand.ns('client')} gave no result "
                f"(exit {proc.returncode}): {err.strip()[-500:]}"
            )
        return result
    finally:
        if srv is not None:
            srv.stop()


def _check_legit_args(
    n_clients: int, duration_s: float, count: int | None, family: int, retries: int
) -> None:
    if not 0 < duration_s <= MAX_DURATION_S:
        raise TrafficError(f"duration {duration_s} s: must be in (0, {MAX_DURATION_S:.0f}]")
    if not 1 <= n_clients <= 10000:
        raise TrafficError(f"clients {n_clients}: must be in 1..10000")
    if count is not None and count < 1:
        raise TrafficError(f"count {count}: must be at least 1")
    if family not in (4, 6):
        raise TrafficError(f"family {family}: 4 or 6")
    if not 0 <= retries <= 10:
        raise TrafficError(f"retries {retries}: must be in 0..10")


def _client_output(
    proc: subprocess.Popen[str], limit: float, on_sample: Callable[[LegitSample], None] | None
) -> tuple[LegitResult | None, str]:
    """Read the client process's samples and result until it ends (or ``limit``, on the
    monotonic clock); then it is ended for sure. Returns the result and its stderr."""
    result: LegitResult | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = json.loads(line)
            if "sample" in msg and on_sample is not None:
                on_sample(LegitSample(**msg["sample"]))
            elif "result" in msg:
                result = LegitResult.from_dict(msg["result"])
            if time.monotonic() > limit:
                break
        proc.wait(timeout=max(1.0, limit - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read() if proc.stderr is not None else ""
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    return result, err


# -- the processes behind serve_http() and legit_load() ---------------------------------
async def _serve(port: int, body_size: int) -> None:
    body = body_bytes(body_size)
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {body_size}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(head + body)
            await asyncio.wait_for(writer.drain(), 10)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # Both families; a deep backlog so the accept queue is not what fails.
    servers = [
        await asyncio.start_server(handle, host, port, backlog=4096, reuse_address=True)
        for host in ("0.0.0.0", "::")
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


# Failures that a client retries at once (the server, or a shield, said "again").
_RETRYABLE = frozenset({"reset", "refused", "broken_pipe"})


class _ClientPool:
    """The client process's run: ``clients`` workers, each one connection at a
    time, sharing the counters; a sample of each second printed as it ends."""

    def __init__(
        self,
        host: str,
        port: int,
        duration: float,
        count: int | None,
        body_size: int,
        timeout: float,
        retries: int,
    ) -> None:
        self.host, self.port, self.count = host, port, count
        self.timeout, self.retries = timeout, retries
        self.expected = body_bytes(body_size)
        self.request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()
        self.deadline = self.start + duration
        self.attempted = self.completed = self.first_try = self.failed = 0
        self.verified = self.retried_n = 0
        self.latencies: list[float] = []
        self.failures: dict[str, int] = {}
        self.retried: dict[str, int] = {}
        # second -> [completed, failed, connect latencies, first try]
        self.per_sec: dict[int, list[Any]] = {}
        # second a connection started -> [started, completed on the first attempt]
        self.by_start: dict[int, list[int]] = {}

    def record(self, ok: bool, first: bool, connect_ms: float | None, why: str = "") -> None:
        slot = self.per_sec.setdefault(int(self.loop.time() - self.start), [0, 0, [], 0])
        if ok:
            self.completed += 1
            slot[0] += 1
            if first:
                self.first_try += 1
                slot[3] += 1
            if connect_ms is not None:
                self.latencies.append(connect_ms)
                slot[2].append(connect_ms)
        else:
            self.failed += 1
            slot[1] += 1
            self.failures[why] = self.failures.get(why, 0) + 1

    async def one(self, t_first: float) -> tuple[str, float | None]:
        """One TCP connection: ("", connect ms since ``t_first``) or (why, ...)."""
        writer: asyncio.StreamWriter | None = None
        connect_ms: float | None = None
        try:
            reader, w = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
            writer = w
            connect_ms = (self.loop.time() - t_first) * 1000
            w.write(self.request)
            data = await asyncio.wait_for(reader.read(), self.timeout)
            head, sep, body = data.partition(b"\r\n\r\n")
            if not sep or not head.startswith(b"HTTP/1.1 200"):
                return "bad_response", connect_ms
            if body != self.expected:
                return "bad_body", connect_ms
            self.verified += len(body)
            return "", connect_ms
        except TimeoutError:
            return ("timeout" if connect_ms is None else "read_timeout"), connect_ms
        except ConnectionRefusedError:
            return "refused", connect_ms
        except ConnectionResetError:
            return "reset", connect_ms
        except BrokenPipeError:
            return "broken_pipe", connect_ms
        except OSError as exc:
            return type(exc).__name__, connect_ms
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def connection(self) -> None:
        """What a user asked for: one connection, retried as a browser does."""
        t_first = self.loop.time()
        began = self.by_start.setdefault(int(t_first - self.start), [0, 0])
        began[0] += 1
        for attempt in range(self.retries + 1):
            why, connect_ms = await self.one(t_first)
            if not why:
                self.record(True, attempt == 0, connect_ms)
                began[1] += attempt == 0
                return
            if why not in _RETRYABLE or attempt == self.retries:
                self.record(False, False, None, why)
                return
            self.retried_n += 1
            self.retried[why] = self.retried.get(why, 0) + 1

    async def worker(self) -> None:
        while self.loop.time() < self.deadline and (
            self.count is None or self.attempted < self.count
        ):
            self.attempted += 1
            await self.connection()

    def sample(self, sec: int) -> LegitSample:
        slot = self.per_sec.get(sec, [0, 0, [], 0])
        began = self.by_start.get(sec, [0, 0])
        return LegitSample(
            sec, slot[0], slot[1], _percentile(slot[2], 50), slot[3], began[0], began[1]
        )

    async def reporter(self) -> None:
        sec = 0
        while True:
            await asyncio.sleep(max(0.0, self.start + sec + 1 - self.loop.time()))
            print(json.dumps({"sample": asdict(self.sample(sec))}), flush=True)
            sec += 1

    def result(self) -> dict[str, Any]:
        """What ``LegitResult.from_dict`` reads."""
        last = max([*self.per_sec, *self.by_start], default=-1)
        return {
            "attempted": self.attempted,
            "completed": self.completed,
            "failed": self.failed,
            "p50_ms": _percentile(self.latencies, 50),
            "p99_ms": _percentile(self.latencies, 99),
            "bytes_verified": self.verified,
            "seconds": self.loop.time() - self.start,
            "failures": self.failures,
            "series": [asdict(self.sample(s)) for s in range(last + 1)],
            "first_try": self.first_try,
            "retries": self.retried_n,
            "retried": self.retried,
        }


async def _client(
    host: str,
    port: int,
    clients: int,
    duration: float,
    count: int | None,
    body_size: int,
    timeout: float,
    retries: int = 0,
) -> dict[str, Any]:
    pool = _ClientPool(host, port, duration, count, body_size, timeout, retries)
    rep = asyncio.create_task(pool.reporter())
    await asyncio.gather(*(pool.worker() for _ in range(clients)))
    rep.cancel()
    return pool.result()


def _main(argv: Sequence[str] | None = None) -> int:
    """Entry of the stand's helper processes (``python -m xdpshield.lab.traffic``)."""
    p = argparse.ArgumentParser(prog="python -m xdpshield.lab.traffic")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=80)
    s.add_argument("--body-size", type=int, default=4096)
    c = sub.add_parser("client")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, default=80)
    c.add_argument("--clients", type=int, default=16)
    c.add_argument("--duration", type=float, default=5.0)
    c.add_argument("--count", type=int, default=None)
    c.add_argument("--body-size", type=int, default=4096)
    c.add_argument("--timeout", type=float, default=3.0)
    c.add_argument("--retries", type=int, default=0)
    for sp in (s, c):
        sp.add_argument("--cpus", default=None, help="comma-separated CPUs to run on")
    a = p.parse_args(argv)
    if a.cpus:
        os.sched_setaffinity(0, {int(x) for x in a.cpus.split(",")})
    if a.cmd == "serve":
        asyncio.run(_serve(a.port, a.body_size))
        return 0
    res = asyncio.run(
        _client(a.host, a.port, a.clients, a.duration, a.count, a.body_size, a.timeout, a.retries)
    )
    print(json.dumps({"result": res}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
