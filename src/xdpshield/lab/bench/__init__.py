"""Benchmarks: every verdict path in the kernel's test run, and live floods on the stand.

Every measurement is reported next to a baseline measured in the same run
(bare XDP_DROP / XDP_TX programs from ``bpf/lab/baseline.bpf.c``, the Linux stack,
nftables synproxy, xdp-filter) and as a ratio to it; goals are reported, never
asserted. Nothing here prints: progress goes through the ``progress`` callback
and results come back as ``Result`` objects, written to ``bench.json``,
``bench.md`` and PNG plots by ``write_outputs``.

How the test-run numbers are taken (measured on Linux 6.18, see
``bench/testrun_semantics.py``): BPF_PROG_TEST_RUN with ``repeat`` > 1 runs
every iteration on the buffer the previous iteration left behind (and the
live-frames mode recycles pages without copying the input again), so a program
that rewrites the frame (SYN -> SYN-ACK, ACK -> RST) would be measured on its
own reply from the 2nd iteration on. Paths that leave the frame alone run
directly; paths that rewrite it run under ``bench_restore``, which writes the
original frame back and tail-calls the shield, and the harness's own cost
(restore + tail call into a bare XDP_DROP, same frame, same repetition) is
subtracted. After every timed run the shield's per-reason counters must show
that all ``repeat`` iterations took the path the row is named after;
otherwise the row is reported as skipped, with what happened instead.

The package, by concern: ``frames`` (the test frames), ``harness`` (the
baseline object and the restore harness), ``micro`` (the test-run verdict
paths), ``receivers`` and ``live`` (floods on the stand against each
baseline), ``handshake`` (the cost of a real handshake), ``policy`` (the
policy stages: list and rule lookups, floods policy drops, loads),
``limits`` (per-source limits: cost on vs off, floods they drop, time to
block, memory per table), ``samples`` (what drop samples cost),
``fleet`` (shields sharing keys, lists and blocks through Redis),
``results`` and ``report`` (what is measured and how it is written).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xdpshield.lab.bench.fleet import run_fleet
from xdpshield.lab.bench.frames import ack_frame, parse_synack, syn_frame
from xdpshield.lab.bench.handshake import HandshakeConfig, run_handshakes
from xdpshield.lab.bench.harness import BENCH_FRAME_MAX, OBJ_DIR, SinkKind, load_shield, read_sink
from xdpshield.lab.bench.limits import LimitsConfig, run_limits, run_limits_live
from xdpshield.lab.bench.live import (
    DROP_KINDS,
    DROP_RECEIVERS,
    SYN_RECEIVERS,
    LiveConfig,
    run_live,
)
from xdpshield.lab.bench.micro import Case, MicroConfig, run_microbench
from xdpshield.lab.bench.policy import PolicyConfig, run_policy, run_policy_live
from xdpshield.lab.bench.report import format_markdown, write_outputs
from xdpshield.lab.bench.results import Goal, Progress, Result, no_progress
from xdpshield.lab.bench.samples import run_samples

__all__ = [
    "BENCH_FRAME_MAX",
    "DROP_KINDS",
    "DROP_RECEIVERS",
    "OBJ_DIR",
    "SYN_RECEIVERS",
    "Case",
    "Goal",
    "HandshakeConfig",
    "LimitsConfig",
    "LiveConfig",
    "MicroConfig",
    "PolicyConfig",
    "Progress",
    "Result",
    "SinkKind",
    "ack_frame",
    "format_markdown",
    "load_shield",
    "parse_synack",
    "read_sink",
    "run_bench",
    "run_fleet",
    "run_handshakes",
    "run_limits",
    "run_limits_live",
    "run_live",
    "run_microbench",
    "run_policy",
    "run_policy_live",
    "run_samples",
    "syn_frame",
    "write_outputs",
]


def _meta(quick: bool, cfg: MicroConfig) -> dict[str, Any]:
    u = os.uname()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "kernel": u.release,
        "machine": u.machine,
        "cpus": os.cpu_count(),
        "quick": quick,
        "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "test_run_repeat": cfg.repeat,
        "repetitions": cfg.reps,
    }


def run_bench(
    out_dir: Path,
    quick: bool,
    progress: Progress | None = None,
    *,
    live: bool = True,
    micro: MicroConfig | None = None,
    live_cfg: LiveConfig | None = None,
) -> list[Result]:
    """Run every benchmark, write DIR/bench.json, DIR/bench.md and plots, return the results.

    ``quick`` keeps the whole run well under two minutes (CI); ``progress`` is
    called as ``progress(what, fraction)`` with fraction in [0, 1]. ``live``
    False leaves out the floods on the stand; ``micro`` overrides the test-run
    settings (the policy rows' too).
    """
    report = progress or no_progress
    cfg = micro or (MicroConfig.quick() if quick else MicroConfig())
    meta, t0 = _meta(quick, cfg), time.monotonic()
    # (share of the progress bar, what runs), in order.
    stages: list[tuple[float, Callable[[Progress], list[Result]]]] = [
        (3.0, lambda p: run_microbench(cfg, p)),
        (1.5, lambda p: run_policy(quick, p, micro)),
        (0.2, lambda p: run_limits(quick, p)),
        (0.5, lambda p: run_samples(quick, p, micro, live_cfg, live=live)),
    ]
    if live:
        stages += [
            (5.0, lambda p: run_live(quick, p, live_cfg)),
            (1.5, lambda p: run_policy_live(quick, p, live_cfg)),
            (2.5, lambda p: run_limits_live(quick, p, live_cfg)),
            (0.7, lambda p: run_handshakes(quick, p)),
            (0.7, lambda p: run_fleet(quick, p)),
        ]
    total = sum(w for w, _ in stages)
    results: list[Result] = []
    done = 0.0
    for weight, stage in stages:

        def sub(what: str, frac: float, done: float = done, weight: float = weight) -> None:
            report(what, (done + frac * weight) / total)

        results += stage(sub)
        done += weight
    meta["loadavg_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["seconds"] = round(time.monotonic() - t0, 1)
    report("writing outputs", 1.0)
    write_outputs(results, out_dir, meta)
    return results
