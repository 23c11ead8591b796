"""The test-run harness: the baseline object, the restore harness, the shield loaded for timing.

BPF_PROG_TEST_RUN with ``repeat`` > 1 runs every iteration on the buffer the
previous one left behind, so a program that rewrites the frame is timed under
``bench_restore`` (bpf/lab/baseline.bpf.c): it writes the original frame back and
tail-calls the program. ``Harness.timed`` takes the time with sub-ns
resolution; ``pinned`` keeps the measurement on one CPU.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

from xdpshield.ebpf import Collection, Map, ObjectSpec, Program, StructCodec, UInt, sum_percpu
from xdpshield.errors import TrafficError
from xdpshield.lab.bench.frames import PROTECTED_PORT, syn_frame
from xdpshield.objects import obj_dir
from xdpshield.shield import datapath

__all__ = ["BENCH_FRAME_MAX", "OBJ_DIR", "Harness", "SinkKind", "load_shield", "read_sink"]

OBJ_DIR = obj_dir()
BASELINE_OBJ = "baseline.o"
SHIELD_OBJ = "xdpshield.o"
BENCH_FRAME_MAX = 256  # bytes; BENCH_FRAME_MAX in bpf/lab/baseline.bpf.c

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3
VERDICT_NAMES = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}


def vname(verdict: int) -> str:
    return VERDICT_NAMES.get(verdict, str(verdict))


class SinkKind(IntEnum):
    """Mirrors ``enum bench_sink_kind`` in bpf/lab/baseline.bpf.c."""

    OTHER = 0
    SYNACK = 1
    RST = 2
    TCP = 3
    SYN = 4


def read_sink(stats: Map[Any, Any]) -> dict[SinkKind, int]:
    """Frames counted by ``bench_sink`` / ``bench_mark``, per kind, summed over CPUs."""
    m = stats.typed(UInt(4), UInt(8))
    return {k: int(sum_percpu(m.lookup_percpu(int(k)))) for k in SinkKind}


def shield_stats_reader(coll: Collection) -> Callable[[], dict[str, int]]:
    """Packets per verdict reason of ``coll``'s shield, by reason name."""

    def read() -> dict[str, int]:
        return {r.name: pk for r, (pk, _) in datapath.read_stats(coll.maps).items()}

    return read


def counter_diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def tally_impure(
    impure: dict[str, dict[str, int]], name: str, seen: Mapping[str, int], reason: str, repeat: int
) -> None:
    """Keep in ``impure[name]`` the iterations of a timed run that were
    counted under another reason than the row's (all ``repeat`` should be)."""
    other = {k: v for k, v in seen.items() if k != reason}
    if other or seen.get(reason, 0) != repeat:
        acc = impure.setdefault(name, {})
        for k, v in other.items():
            acc[k] = acc.get(k, 0) + v


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Measure on one CPU (the kernel's test-run timer already excludes preemption)."""
    try:
        old = os.sched_getaffinity(0)
    except OSError:
        yield
        return
    target = cpu if cpu is not None else max(old)
    try:
        os.sched_setaffinity(0, {target})
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, old)


def load_shield(
    ports: Sequence[int] = (PROTECTED_PORT,),
    obj_dir: Path = OBJ_DIR,
    opts: datapath.GuardOptions | None = None,
) -> Collection:
    """The shield object (from ``obj_dir``) with ``opts`` (default: the
    default options, no RSTs), protecting ``ports``."""
    spec = ObjectSpec(obj_dir / SHIELD_OBJ)
    # No RSTs for unverified segments: a flood spends the per-CPU cap within
    # a millisecond, after which forged ACKs take the drop path timed here.
    consts = datapath.constants(opts or datapath.GuardOptions(rst_pps=0))
    if consts:
        spec.set_constants(**consts)
    coll = spec.load()
    try:
        datapath.init_maps(coll.maps, ports)
        # Both key slots live, as after the first rotation: a forged ACK's
        # slot bit then always names a live key, and it pays the SipHash.
        datapath.rotate_keys(coll.maps)
    except BaseException:
        coll.close()
        raise
    return coll


class Harness:
    """Baselines, the restore harness, and the shield loaded once."""

    def __init__(self, base: Collection, shield: Collection | None) -> None:
        self.base = base
        self.shield = shield
        self.drop = base.program("bench_drop")
        self.tx = base.program("bench_tx")
        self.reflect = base.program("bench_reflect")
        self.restore = base.program("bench_restore")
        self.frame_map = base.map("bench_frame").typed(
            UInt(4), StructCodec(f"=II{BENCH_FRAME_MAX}s")
        )
        self.target = base.map("bench_target").typed(UInt(4), UInt(4))
        self.read_stats = shield_stats_reader(shield) if shield else None
        self.fixed_ns = 0.0

    def arm(self, frame: bytes, target: Program) -> None:
        if not 0 < len(frame) <= BENCH_FRAME_MAX:
            raise TrafficError(
                f"frame of {len(frame)} bytes does not fit the restore harness "
                f"(1..{BENCH_FRAME_MAX} bytes)"
            )
        self.frame_map.update(0, (len(frame), 0, frame.ljust(BENCH_FRAME_MAX, b"\0")))
        self.target.update(0, target.fd)

    def run(self, prog: Program, frame: bytes, repeat: int, restore: bool) -> tuple[int, int]:
        """(verdict, the kernel's integer ns per iteration) of ``prog`` on ``frame``."""
        if restore:
            self.arm(frame, prog)
            res = self.restore.run(frame, repeat)
        else:
            res = prog.run(frame, repeat)
        return res.verdict, res.ns

    def calibrate(self, samples: int = 7) -> None:
        """The fixed CPU cost of one test run with repeat > 1 (see ``timed``)."""
        frame = syn_frame()
        costs = []
        for _ in range(samples):
            t0 = time.thread_time_ns()
            self.drop.run(frame, 2)
            costs.append(time.thread_time_ns() - t0)
        self.fixed_ns = float(statistics.median(costs))

    def timed(self, prog: Program, frame: bytes, repeat: int, restore: bool) -> float:
        """ns per iteration, with sub-ns resolution.

        The kernel reports whole ns (an average, truncated: 1 ns is ~15% of a
        bare XDP_DROP on this machine), so the time is this thread's CPU time
        over the run (like the kernel's timer, it leaves out time preempted),
        less the fixed cost of a test run with repeat > 1 (~0.3 ms: switching
        the XDP dispatcher), measured by ``calibrate``. That fixed cost varies
        from run to run (more so with other CPUs busy), and at small repeats
        its variation can outweigh the loop itself; the kernel's truncated
        average says the truth lies in [ns, ns + 1), so the estimate is held
        there.
        """
        if restore:
            self.arm(frame, prog)
            prog = self.restore
        t0 = time.thread_time_ns()
        res = prog.run(frame, repeat)
        spent = time.thread_time_ns() - t0
        est = (spent - self.fixed_ns) / repeat
        return min(max(est, float(res.ns)), res.ns + 1.0)
