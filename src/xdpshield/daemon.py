"""The shield's housekeeping: rotate cookie keys, age the verified table, serve metrics.

``xdpshield load`` leaves a running shield; ``xdpshield daemon IFACE`` keeps its
keys fresh. Keys rotate every ``GuardOptions.key_rotation_s`` (from the load),
so a cookie stays valid for one to two periods; expired verified sources are
removed before the LRU has to evict live ones. In transparent mode the filter
of sources seen with a socket is cut back to the sockets that exist, so that
it does not fill up (then every SYN would pay a socket lookup). The daemon
runs in the shield's network namespace: it lists that namespace's sockets.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import datapath
from .shield import Shield, socket_peers

__all__ = ["Daemon", "DaemonEvent"]


@dataclass(frozen=True)
class DaemonEvent:
    """Something the daemon did, for the log (never a key)."""

    what: str  # "rotated", "aged" or "seen" (the seen-sources filter rebuilt)
    epoch: int | None = None
    removed: int = 0  # expired verified sources; for "seen", bits cleared


class Daemon:
    """Runs until ``stop`` is set; each duty on its own period."""

    def __init__(
        self,
        shield: Shield,
        *,
        rotate_s: float | None = None,
        age_s: float = 10.0,
        seen_s: float = 300.0,
        on_event: Callable[[DaemonEvent], None] | None = None,
    ) -> None:
        opts = shield.meta.get("options", {})
        self.shield = shield
        self.rotate_s = float(
            rotate_s or opts.get("key_rotation_s", datapath.DEFAULT_KEY_ROTATION_S)
        )
        if not 1.0 <= self.rotate_s <= 86400.0:
            raise ValueError(f"key rotation period {self.rotate_s} s: must be in [1, 86400]")
        self.age_s = age_s
        if not 1.0 <= seen_s <= 86400.0:
            raise ValueError(f"seen-filter rebuild period {seen_s} s: must be in [1, 86400]")
        # Only transparent mode reads the filter, and an older shield has no pin.
        duty = shield.meta.get("handshake") == "transparent" and "xs_seen" in shield.maps
        self.seen_s = seen_s if duty else None
        self.next_seen = time.monotonic() + seen_s if duty else math.inf
        self.on_event = on_event

    def step(self, now: float, next_rotate: float, next_age: float) -> tuple[float, float]:
        """Do what is due at ``now`` (monotonic seconds); return the next due times."""
        maps = self.shield.maps
        if now >= next_rotate:
            datapath.rotate_keys(maps)
            self._emit(DaemonEvent("rotated", epoch=datapath.current_epoch(maps)))
            next_rotate = now + self.rotate_s
        if now >= next_age:
            removed = datapath.age_verified(maps, time.monotonic_ns())
            if removed:
                self._emit(DaemonEvent("aged", removed=removed))
            next_age = now + self.age_s
        if self.seen_s is not None and now >= self.next_seen:
            before, after = datapath.rebuild_seen(maps, socket_peers)
            self._emit(DaemonEvent("seen", removed=max(0, before - after)))
            self.next_seen = now + self.seen_s
        return next_rotate, next_age

    def run(self, stop: threading.Event) -> None:
        now = time.monotonic()
        # The key installed at load is fresh: the first rotation is a period away.
        next_rotate, next_age = now + self.rotate_s, now + self.age_s
        if self.seen_s is not None:
            self.next_seen = now + self.seen_s
        while not stop.is_set():
            next_rotate, next_age = self.step(time.monotonic(), next_rotate, next_age)
            due = min(next_rotate, next_age, self.next_seen)
            stop.wait(max(0.0, due - time.monotonic()))

    def _emit(self, ev: DaemonEvent) -> None:
        if self.on_event is not None:
            self.on_event(ev)
