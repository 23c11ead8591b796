"""The shield's housekeeping: rotate cookie keys, age the verified table, serve metrics.

``xdpshield load`` leaves a running shield; ``xdpshield daemon IFACE`` keeps its
keys fresh. Keys rotate every ``GuardOptions.key_rotation_s`` (from the load),
so a cookie stays valid for one to two periods; expired verified sources are
removed before the LRU has to evict live ones. In transparent mode the filter
of sources seen with a socket is cut back to the sockets that exist, so that
it does not fill up (then every SYN would pay a socket lookup). The daemon
works from any namespace: the shield enters its own to list its sockets.

The daemon follows the shield it serves: about once a second it looks at the
program pinned in the shield's directory. A different program (the shield was
unloaded and loaded again) is reopened; no program for ``absent_s`` seconds
(unloaded) ends the run. While it runs it records itself beside the shield's
load record (``IFACE.daemon``: pid and rotation period), so that ``status``
can say what rotates the keys; the record goes when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xdpshield.errors import ConfigError, XdpShieldError
from xdpshield.policy.model import Prefix
from xdpshield.shield.core import Shield
from xdpshield.shield.limits import Block

__all__ = ["Daemon", "DaemonEvent"]


@dataclass(frozen=True)
class DaemonEvent:
    """Something the daemon did, for the log (never a key)."""

    #: "rotated", "aged", "seen" (the seen-sources filter rebuilt), "expired"
    #: (allow/deny entries whose ttl ran out removed), "blocked" and
    #: "unblocked" (a source's block began or ended), "reopened" (the shield
    #: was reloaded) or "unloaded" (the run ends)
    what: str
    epoch: int | None = None
    removed: int = 0  # expired verified sources; for "seen", bits cleared
    #: The event's own fields (a block: prefix, ttl_s, count, by, drops).
    fields: Mapping[str, Any] = field(default_factory=dict)


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
        check_s: float = 1.0,
        absent_s: float = 3.0,
        rotate: bool = True,
    ) -> None:
        self.shield = shield
        #: False: someone else owns the cookie keys (the fleet duty,
        #: ops/fleet.py, installs the fleet's): this daemon never rotates them.
        self.rotate = rotate
        # `is None`, not falsiness: 0 is a period the check below refuses.
        self.rotate_s = float(
            rotate_s if rotate_s is not None else shield.record.options.key_rotation_s
        )
        if not 1.0 <= self.rotate_s <= 86400.0:
            raise ConfigError(
                f"key rotation period {self.rotate_s} s: must be in [1, 86400]", key="rotate_s"
            )
        self.age_s = age_s
        if not 1.0 <= seen_s <= 86400.0:
            raise ConfigError(
                f"seen-filter rebuild period {seen_s} s: must be in [1, 86400]", key="seen_s"
            )
        # Both modes read the filter; an older shield has no pin.
        duty = shield.tracks_seen
        self.seen_s = seen_s if duty else None
        self.next_seen = time.monotonic() + seen_s if duty else math.inf
        self.on_event = on_event
        #: How often the pins are checked; how long a shield may be absent
        #: (between the unload and the load of a reload) before the run ends.
        self.check_s = check_s
        self.absent_s = absent_s
        self._absent_since: float | None = None
        #: The blocks in force at the last look (prefix -> when it began),
        #: and how many began and ended since the daemon started.
        self._blocked: dict[Prefix, int] = {}
        self.blocks_begun = 0
        self.blocks_ended = 0

    def step(self, now: float, next_rotate: float, next_age: float) -> tuple[float, float]:
        """Do what is due at ``now`` (monotonic seconds); return the next due times."""
        shield = self.shield
        if self.rotate and now >= next_rotate:
            self._emit(DaemonEvent("rotated", epoch=shield.rotate_keys()))
            next_rotate = now + self.rotate_s
        if now >= next_age:
            removed = shield.age_verified()
            if removed:
                self._emit(DaemonEvent("aged", removed=removed))
            # The data path's view of its host follows it: addresses (the
            # martian checks), the MAC, the ports that listen (a listener
            # gone is no longer answered for).
            shield.refresh_host_view()
            next_age = now + self.age_s
        if self.seen_s is not None and now >= self.next_seen:
            before, after = shield.rebuild_seen()
            self._emit(DaemonEvent("seen", removed=max(0, before - after)))
            self.next_seen = now + self.seen_s
        return next_rotate, next_age

    def expire_lists(self) -> int:
        """Remove allow/deny entries whose ttl ran out (each second: the data
        path ignores them already, but an expired prefix hides a shorter live
        one that contains it). Costs one map read while no entry has a ttl."""
        if "xs_psel" not in self.shield.maps:  # a shield from before policies
            return 0
        removed = self.shield.age_lists()
        if removed:
            self._emit(DaemonEvent("expired", removed=removed))
        return removed

    def watch_blocks(self, now_ns: int | None = None) -> tuple[int, int]:
        """Each second: remove what no longer counts (blocks by hand once
        expired, automatic ones past their repeat window) and say which
        blocks began and ended since the last look. Returns (begun, ended)."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        live, _ = self.shield.expire_blocks(now_ns=now)
        active = {b.prefix: b for b in live}
        begun = [b for p, b in active.items() if self._blocked.get(p) != b.since_ns]
        ended = [p for p in self._blocked if p not in active]
        for b in begun:
            self._emit(DaemonEvent("blocked", fields=_block_fields(b, now)))
        for p in ended:
            self._emit(DaemonEvent("unblocked", fields={"prefix": str(p)}))
        self._blocked = {p: b.since_ns for p, b in active.items()}
        self.blocks_begun += len(begun)
        self.blocks_ended += len(ended)
        return len(begun), len(ended)

    def follow(self, now: float) -> bool:
        """Check the shield's pins at ``now`` (monotonic seconds): reopen a
        reloaded shield; False once it has been absent for ``absent_s``."""
        current = self.shield.is_current()
        if current is None:
            if self._absent_since is None:
                self._absent_since = now
            return now - self._absent_since < self.absent_s
        self._absent_since = None
        if not current:
            try:
                new = self.shield.reopen()
            except XdpShieldError:  # caught mid-load or mid-unload: look again soon
                return True
            old, self.shield = self.shield, new
            old.close()
            self._emit(DaemonEvent("reopened", epoch=new.current_epoch()))
        return True

    def run(self, stop: threading.Event) -> None:
        """Run the duties until ``stop`` is set or the shield is unloaded."""
        record = self.shield.meta_path.with_suffix(".daemon")
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(
            json.dumps({"pid": os.getpid(), "rotate_s": self.rotate_s, "started": time.time()})
        )
        try:
            self._run(stop)
        finally:
            with contextlib.suppress(OSError):
                if json.loads(record.read_text()).get("pid") == os.getpid():
                    record.unlink()

    def _run(self, stop: threading.Event) -> None:
        now = time.monotonic()
        # The key installed at load is fresh: the first rotation is a period away.
        next_rotate, next_age = now + self.rotate_s, now + self.age_s
        if self.seen_s is not None:
            self.next_seen = now + self.seen_s
        next_check = now
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_check:
                if not self.follow(now):
                    self._emit(DaemonEvent("unloaded"))
                    return
                next_check = now + self.check_s
                if self._absent_since is None:
                    self.expire_lists()
                    self.watch_blocks()
            if self._absent_since is None:  # no duty on maps of an unloaded shield
                next_rotate, next_age = self.step(now, next_rotate, next_age)
            due = min(next_rotate, next_age, self.next_seen, next_check)
            stop.wait(max(0.0, due - time.monotonic()))

    def _emit(self, ev: DaemonEvent) -> None:
        if self.on_event is not None:
            self.on_event(ev)


def _block_fields(b: Block, now_ns: int) -> dict[str, Any]:
    d = b.as_json(now_ns)
    return {k: d[k] for k in ("prefix", "ttl_s", "expires_in_s", "count", "by")}
