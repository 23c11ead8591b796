"""Live: what the transparent handshake costs a real connection, against the kernel alone.

Sequential connects from the stand's client to a listener on its server, in
batches interleaved between the shield (cookie SYN-ACK in XDP, cookie check in
XDP, handoff in tc) and no XDP at all, on the same stand in the same run.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

from xdpshield import netns
from xdpshield.lab.bench.live import live_unavailable
from xdpshield.lab.bench.results import Progress, Result, no_progress
from xdpshield.lab.stand import Stand
from xdpshield.shield import datapath
from xdpshield.shield.core import Shield, probe_handoff
from xdpshield.shield.datapath import Reason

__all__ = ["GROUP_HANDSHAKE", "HandshakeConfig", "run_handshakes"]

GROUP_HANDSHAKE = "live: cost per handshake (transparent mode, XDP + tc)"
HANDSHAKE_PORT = 7  # any port the shield protects and nothing else uses on the stand
SHIELD, KERNEL = "xdpshield-transparent", "kernel-alone"
NAMES = (SHIELD, KERNEL)


@dataclass(frozen=True)
class HandshakeConfig:
    count: int = 2000  # handshakes per timed batch (bounded: one socket each)
    reps: int = 5  # batches per receiver (interleaved shield / kernel alone)

    @classmethod
    def quick(cls) -> HandshakeConfig:
        return cls(count=300, reps=2)


@dataclass
class _Batches:
    """µs per handshake by receiver, one per batch; handoffs counted; why a receiver stopped."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in NAMES})
    counted: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _handshake_batch(stand: Stand, listener: socket.socket, count: int, family: int) -> float:
    """µs per handshake: ``count`` connects from the client namespace, one at a time,
    each timed until the server has accepted it (so the third ACK went through XDP
    and tc and the kernel made the socket), then closed.
    """
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    with netns.enter(stand.ns("client")):
        # Made in the client namespace up front: entering it per connect would
        # time setns() as well.
        socks = [socket.socket(af, socket.SOCK_STREAM) for _ in range(count)]
    dest = (stand.addr("server", family), HANDSHAKE_PORT)
    linger = struct.pack("ii", 1, 0)
    try:
        t0 = time.perf_counter()
        for s in socks:
            s.connect(dest)
            conn, _ = listener.accept()
            conn.close()
            # An RST instead of FIN/TIME_WAIT: thousands of closed connections
            # must not pile up between batches.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
        spent = time.perf_counter() - t0
    finally:
        for s in socks:
            s.close()
    return spent / count * 1e6


def _shield_batch(
    stand: Stand, listener: socket.socket, cfg: HandshakeConfig, got: _Batches
) -> None:
    """One batch through the shield, loaded for it and unloaded after; handoffs counted."""
    with netns.enter(stand.ns("server")):
        # The cookie handoff's latency: every SYN answered by the shield (no
        # flood threshold).
        sh = Shield.load(
            stand.server_if,
            ports=[HANDSHAKE_PORT],
            xdp_mode="native",
            handshake="transparent",
            options=datapath.GuardOptions(syn_flood_pps=0),
        )
    try:
        got.samples[SHIELD].append(_handshake_batch(stand, listener, cfg.count, 4))
        handed = sh.stats()[Reason.HANDOFF][0]
    finally:
        with netns.enter(stand.ns("server")):
            sh.unload()
    got.counted["handoffs"] = got.counted.get("handoffs", 0) + handed
    got.counted["handshakes"] = got.counted.get("handshakes", 0) + cfg.count


def _batches(stand: Stand, cfg: HandshakeConfig, report: Progress, got: _Batches) -> None:
    """Warm up, then ``cfg.reps`` batches per receiver, alternating which goes first."""
    with netns.enter(stand.ns("server")):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", HANDSHAKE_PORT))
        listener.listen(128)
        listener.settimeout(5)
        _handshake_batch(stand, listener, min(50, cfg.count), 4)  # warm ARP, caches
        for rep in range(cfg.reps):
            for i, name in enumerate(NAMES if rep % 2 == 0 else NAMES[::-1]):
                report(f"handshakes → {name} ({rep + 1}/{cfg.reps})",
                       (2 * rep + i) / (2 * cfg.reps))  # fmt: skip
                if name in got.failed:
                    continue
                try:
                    if name == KERNEL:
                        got.samples[name].append(_handshake_batch(stand, listener, cfg.count, 4))
                    else:
                        _shield_batch(stand, listener, cfg, got)
                except Exception as exc:  # reported in the row, the rest goes on
                    got.failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]


def _rows(cfg: HandshakeConfig, got: _Batches) -> list[Result]:
    kernel = tuple(got.samples[KERNEL])
    note_k = "plain listener, no XDP or tc: connect() until accept() returns, one at a time"
    note_s = (
        "cookie SYN-ACK from XDP, ACK checked in XDP, handed to the kernel by tc "
        "(bpf_sk_assign_tcp_reqsk); lower is better"
    )
    shield_why = got.failed.get(SHIELD)
    handoffs, handshakes = got.counted.get("handoffs", 0), got.counted.get("handshakes", 0)
    if shield_why is None and handoffs < handshakes:
        # The row must measure the handoff path, not the kernel answering itself.
        shield_why = f"tc handed off {handoffs} of {handshakes}"
    return [
        Result(
            f"handshake {KERNEL}",
            GROUP_HANDSHAKE,
            "µs/handshake",
            kernel,
            note=note_k,
            skipped=got.failed.get(KERNEL),
        ),
        Result(
            f"handshake {SHIELD}",
            GROUP_HANDSHAKE,
            "µs/handshake",
            () if shield_why else tuple(got.samples[SHIELD]),
            f"handshake {KERNEL}",
            kernel,
            note=note_s,
            skipped=shield_why,
            extra={"count": cfg.count, **got.counted},
        ),
    ]


def _unavailable() -> str | None:
    why = live_unavailable()
    if why is None:
        probe = probe_handoff()
        if probe is not None:
            why = f"kernel lacks the handoff kfunc: {probe}"
    return why


def run_handshakes(
    quick: bool, progress: Progress | None = None, cfg: HandshakeConfig | None = None
) -> list[Result]:
    """Issue 5's live row: what the transparent handshake (cookie SYN-ACK in XDP,
    cookie check in XDP, handoff in tc) costs a real connection, against the
    kernel alone (no XDP, no tc, a plain listener) in the same run, same stand.
    Sequential connects, so the number is latency (µs per handshake) including
    both namespaces' stacks, not a capacity.
    """
    cfg = cfg or (HandshakeConfig.quick() if quick else HandshakeConfig())
    report = progress or no_progress
    why = _unavailable()
    if why is not None:
        return [
            Result(f"handshake {n}", GROUP_HANDSHAKE, "µs/handshake", skipped=why) for n in NAMES
        ]
    got = _Batches()
    stand = Stand(prefix=netns.unique_prefix("xsh"), queues=1)
    try:
        stand.up()
        _batches(stand, cfg, report, got)
    finally:
        stand.down()
    report("handshakes done", 1.0)
    return _rows(cfg, got)
