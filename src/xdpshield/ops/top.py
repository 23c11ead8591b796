"""What ``xdpshield top`` shows, computed: rates from counter deltas, top
sources from the drop samples, blocks, verified sources, the key's age.

Rates are per second between two reads of the per-reason counters (never
totals). Sources come from the samples, which are capped per reason: a
source's estimated rate is its share of a reason's samples in the window
times that reason's rate.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from xdpshield.errors import AlreadyRunning
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Address, Reason
from xdpshield.shield.limits import Block
from xdpshield.shield.samples import Sample, Sampler

__all__ = ["Rate", "Snapshot", "Source", "Watch"]

#: Seconds of samples the top sources are counted over.
WINDOW_S = 10.0


@dataclass(frozen=True)
class Rate:
    pps: float
    bps: float  # bits per second


@dataclass(frozen=True)
class Source:
    addr: Address
    samples: int  # in the window
    reason: Reason  # its most sampled reason
    est_pps: float  # share of each reason's samples times its rate, summed


@dataclass
class Snapshot:
    iface: str
    at: float  # time.time()
    interval: float  # seconds the rates are over
    rates: dict[Reason, Rate]
    sources: list[Source]
    blocks: list[Block]
    verified: int
    key_age_s: float | None
    samples_note: str | None = None  # why there are no sources, when so
    totals: dict[str, float] = field(default_factory=dict)


class Watch:
    """Reads a shield once per ``step()``; the first step's rates are over
    the time since the Watch was made."""

    def __init__(
        self, shield: Shield, *, clock: Callable[[], float] = time.monotonic, top: int = 10
    ) -> None:
        self.shield = shield
        self.clock = clock
        self.top = top
        self._prev = shield.stats()
        self._prev_t = clock()
        self._window: collections.deque[tuple[float, Sample]] = collections.deque()
        self.sampler: Sampler | None = None
        self.samples_note: str | None = None
        if not shield.has_samples:
            self.samples_note = "no drop samples on this shield (loaded by an older version)"
        else:
            try:
                self.sampler = shield.sampler()
            except AlreadyRunning as exc:
                self.samples_note = str(exc)

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None

    def poll(self, timeout_s: float) -> None:
        """Take in the samples that arrive within ``timeout_s`` (or sleep)."""
        if self.sampler is None:
            time.sleep(max(0.0, timeout_s))
            return
        now = self.clock()
        for s in self.sampler.poll(timeout_s):
            self._window.append((now, s))

    def step(self) -> Snapshot:
        now = self.clock()
        stats = self.shield.stats()
        dt = max(1e-6, now - self._prev_t)
        rates = {}
        for r, (pk, by) in stats.items():
            p0, b0 = self._prev.get(r, (0, 0))
            rates[r] = Rate(max(0, pk - p0) / dt, max(0, by - b0) * 8 / dt)
        self._prev, self._prev_t = stats, now
        while self._window and self._window[0][0] < now - WINDOW_S:
            self._window.popleft()
        blocks = self.shield.blocks()
        return Snapshot(
            iface=self.shield.iface,
            at=time.time(),
            interval=dt,
            rates=rates,
            sources=self._sources(rates),
            blocks=blocks,
            verified=len(self.shield.verified_sources()),
            key_age_s=self.shield.key_age_s(),
            samples_note=self.samples_note,
            totals={
                "pps": sum(x.pps for x in rates.values()),
                "bps": sum(x.bps for x in rates.values()),
            },
        )

    def _sources(self, rates: dict[Reason, Rate]) -> list[Source]:
        per_reason: collections.Counter[Reason] = collections.Counter()
        per_src: dict[Address, collections.Counter[Reason]] = {}
        for _, s in self._window:
            peer = s.peer
            if peer is None:
                continue
            per_reason[s.reason] += 1
            per_src.setdefault(peer, collections.Counter())[s.reason] += 1
        out = []
        for addr, reasons in per_src.items():
            est = sum(n / per_reason[r] * rates[r].pps for r, n in reasons.items() if r in rates)
            out.append(Source(addr, sum(reasons.values()), reasons.most_common(1)[0][0], est))
        out.sort(key=lambda s: (-s.est_pps, -s.samples, str(s.addr)))
        return out[: self.top]
