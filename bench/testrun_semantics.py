"""Experiment: what does BPF_PROG_TEST_RUN hand to the 2nd..Nth run?

Run as root after `make build`:  .venv/bin/python bench/testrun_semantics.py

Uses bench_mark (bpf/lab/baseline.bpf.c), which counts the kind of frame it sees
and then sets the ACK bit of a SYN. If every run got a fresh copy of the input,
all N runs count a SYN; if runs reuse what an earlier run left, only the first
(or the first per recycled page) does.

Result on Linux 6.18 (recorded in bench.py's docstring):
  test run, repeat=1: SYN seen 1, SYN-ACK seen 0
  test run, repeat=1000: SYN seen 1, SYN-ACK seen 999   <- the buffer is reused
  restore harness, repeat=1000: SYN seen 1000, SYN-ACK seen 0
  live frames, repeat=64: SYN seen 64, SYN-ACK seen 0
  live frames, repeat=10000: SYN seen 64, SYN-ACK seen 9936   <- pages recycled
So live-frames mode gives a fresh copy only on a page's first use (one batch,
64 frames by default); afterwards a page carries what the last run wrote.
"""

from __future__ import annotations

import socket

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from xdpshield.ebpf import ObjectSpec, StructCodec, UInt
from xdpshield.lab.bench import BENCH_FRAME_MAX, OBJ_DIR, SinkKind, read_sink


def main() -> None:
    frame = bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="198.18.0.1", dst="198.18.0.2")
        / TCP(sport=40000, dport=80, flags="S")
    )
    with ObjectSpec(OBJ_DIR / "baseline.o").load() as coll:
        prog, stats = coll.program("bench_mark"), coll.map("bench_sink_stats")
        for repeat in (1, 2, 1000):
            stats.clear()
            res = prog.run(frame, repeat)
            seen = read_sink(stats)
            print(
                f"test run, repeat={repeat}: SYN seen {seen[SinkKind.SYN]}, "
                f"SYN-ACK seen {seen[SinkKind.SYNACK]}, output flags "
                f"{TCP(res.frame[34:]).flags}"
            )
        # The harness bench.py uses: bench_restore writes the input back, then
        # tail-calls the program under test.
        coll.map("bench_target").typed(UInt(4), UInt(4)).update(0, prog.fd)
        coll.map("bench_frame").typed(UInt(4), StructCodec(f"=II{BENCH_FRAME_MAX}s")).update(
            0, (len(frame), 0, frame.ljust(BENCH_FRAME_MAX, b"\0"))
        )
        stats.clear()
        coll.program("bench_restore").run(frame, 1000)
        seen = read_sink(stats)
        print(
            f"restore harness, repeat=1000: SYN seen {seen[SinkKind.SYN]}, "
            f"SYN-ACK seen {seen[SinkKind.SYNACK]}"
        )
        lo = socket.if_nametoindex("lo")
        for repeat in (64, 10000):
            stats.clear()
            prog.run_live(frame, repeat, ifindex=lo)
            seen = read_sink(stats)
            print(
                f"live frames, repeat={repeat}: SYN seen {seen[SinkKind.SYN]}, "
                f"SYN-ACK seen {seen[SinkKind.SYNACK]}"
            )


if __name__ == "__main__":
    main()
