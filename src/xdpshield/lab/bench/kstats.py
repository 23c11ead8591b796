"""The kernel's own figures: fdinfo counters, and the per-program run time
accounting (``kernel.bpf_stats_enabled``) that gives a program's cost per
packet apart from the generator's and the link's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from xdpshield import netns
from xdpshield.ebpf import Program, query_xdp
from xdpshield.errors import TrafficError
from xdpshield.lab.stand import Stand

__all__ = ["attached", "bpf_stats", "fdinfo", "ns_per_run"]

_T = TypeVar("_T")


def fdinfo(fd: int) -> dict[str, int]:
    """The numeric lines of /proc/self/fdinfo/FD (a map's ``memlock``, a
    program's ``run_time_ns`` and ``run_cnt``)."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            out[key.strip()] = int(value)
    return out


_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


@contextlib.contextmanager
def bpf_stats(path: Path = _STATS_SYSCTL) -> Iterator[None]:
    """The kernel's per-program run time accounting on; as found afterwards."""
    old = path.read_text().strip()
    if old != "1":
        path.write_text("1\n")
    try:
        yield
    finally:
        if old != "1":
            path.write_text(old + "\n")


def attached(stand: Stand) -> Program:
    """The XDP program on the server's link."""
    with netns.enter(stand.ns("server")):
        cur = query_xdp(stand.server_if)
    if cur is None:
        raise TrafficError(f"no XDP program on {stand.server_if}")
    return Program.from_id(cur.prog_id)


def ns_per_run(prog: Program, run: Callable[[], _T]) -> tuple[float, int, _T]:
    """(ns per run, runs) of ``prog`` while ``run()`` runs (bpf_stats must be
    on), and what ``run()`` returned."""
    before = fdinfo(prog.fd)
    got = run()
    after = fdinfo(prog.fd)
    runs = after.get("run_cnt", 0) - before.get("run_cnt", 0)
    spent = after.get("run_time_ns", 0) - before.get("run_time_ns", 0)
    return (spent / runs if runs > 0 else 0.0), runs, got
