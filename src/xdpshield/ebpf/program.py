"""Programs: pins, ids, the kernel test run (BPF_PROG_TEST_RUN)."""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path

from ..errors import Op, from_oserror
from ._libbpf import TEST_RUN_XDP_LIVE_FRAMES, XdpMd, lib
from .map import Map, _obj_get, _obj_pin


@dataclass(frozen=True)
class RunResult:
    """One BPF_PROG_TEST_RUN: the verdict, the frame as the program left it, ns per run."""

    verdict: int
    frame: bytes
    ns: int


class Program:
    """A loaded program; owns a duplicate of its fd."""

    def __init__(self, fd: int, name: str, section: str, prog_type: int) -> None:
        self.fd = fd
        self.name = name
        self.section = section
        self.type = prog_type
        self._finalizer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._finalizer()

    @property
    def id(self) -> int:
        return int(lib().prog_info(self.fd).id)

    def pin(self, path: str | Path) -> None:
        _obj_pin(self.fd, path, f"program {self.name}")

    @classmethod
    def open_pinned(cls, path: str | Path) -> Program:
        return cls._from_fd(_obj_get(path, "program"))

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        """The loaded program with this ID (e.g. the one an interface runs)."""
        try:
            fd = int(lib().bpf.bpf_prog_get_fd_by_id(prog_id))
        except OSError as exc:
            raise from_oserror(exc, f"open program id {prog_id}", Op.BY_ID) from None
        return cls._from_fd(fd)

    @classmethod
    def _from_fd(cls, fd: int) -> Program:
        info = lib().prog_info(fd)
        return cls(fd, info.name.decode(), "", info.type)

    def maps(self) -> dict[str, Map[bytes, bytes]]:
        """The maps the program uses, by name (each with its own fd)."""
        found = (Map.from_id(i) for i in lib().prog_map_ids(self.fd))
        return {m.name: m for m in found}

    def run(
        self, frame: bytes, repeat: int = 1, *, ifindex: int = 0, headroom: int = 256
    ) -> RunResult:
        """Run the program on ``frame`` in the kernel (BPF_PROG_TEST_RUN).

        With ``repeat`` > 1 the kernel feeds the output back as the next input,
        so only idempotent programs give a meaningful output frame; ``ns`` is
        the kernel's average per run.
        """
        if repeat < 1:
            raise ValueError("repeat must be >= 1")
        ctx = None
        if ifindex and self.section.startswith("xdp"):
            ctx = XdpMd(data=0, data_end=len(frame), ingress_ifindex=ifindex)
        try:
            verdict, out, ns = lib().test_run(
                self.fd, frame, repeat=repeat, out_size=len(frame) + headroom, ctx=ctx
            )
        except OSError as exc:
            raise from_oserror(exc, f"test run of {self.name}") from None
        return RunResult(verdict, out or b"", ns)

    def run_live(self, frame: bytes, repeat: int, *, ifindex: int, batch_size: int = 64) -> int:
        """Live-frames mode: XDP_TX/REDIRECT really transmit (an in-kernel generator).

        The frame is handed to the program ``repeat`` times on ``ifindex``; pages
        are recycled, so the program must rewrite every byte it depends on.
        Returns the kernel's ns per run.
        """
        ctx = XdpMd(data=0, data_end=len(frame), ingress_ifindex=ifindex)
        try:
            _, _, ns = lib().test_run(
                self.fd,
                frame,
                repeat=repeat,
                ctx=ctx,
                flags=TEST_RUN_XDP_LIVE_FRAMES,
                batch_size=batch_size,
            )
        except OSError as exc:
            raise from_oserror(exc, f"live test run of {self.name}") from None
        return ns
