"""Reading a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) through libbpf's ring_buffer API."""

from __future__ import annotations

import errno
from typing import Any

from ..errors import from_oserror
from ._libbpf import lib
from .map import Map

__all__ = ["RingBuffer"]

RINGBUF_TYPE = 27  # BPF_MAP_TYPE_RINGBUF


class RingBuffer:
    """The records of one ring map, each as bytes, oldest first.

    ``poll`` waits up to ``timeout_ms`` for records and returns those read.
    A ring has one read position: two readers of one ring split its records
    between them (callers that care hold a lock; see shield/samples.py).
    """

    def __init__(self, ring: Map[Any, Any]) -> None:
        if ring.type != RINGBUF_TYPE:
            raise ValueError(f"map {ring.name} is a {ring.type_name}, not a ring buffer")
        self.name = ring.name
        self._pending: list[bytes] = []
        try:
            self._rb, self._keep = lib().ring_buffer(ring.fd, self._pending.append)
        except OSError as exc:
            raise from_oserror(exc, f"open ring buffer {ring.name}") from None

    def poll(self, timeout_ms: int = 100) -> list[bytes]:
        """Records that arrived within ``timeout_ms`` (0: only those there now)."""
        if not self._rb:
            raise ValueError(f"ring buffer {self.name} is closed")
        try:
            lib().bpf.ring_buffer__poll(self._rb, timeout_ms)
        except OSError as exc:
            if exc.errno != errno.EINTR:  # a signal: return what was read
                raise from_oserror(exc, f"poll ring buffer {self.name}") from None
        out, self._pending[:] = list(self._pending), []
        return out

    def close(self) -> None:
        if self._rb:
            lib().bpf.ring_buffer__free(self._rb)
            self._rb = 0

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
