"""Prometheus metrics of running shields, read from their maps at scrape time.

A custom collector rather than counters updated in a loop: the kernel's per-CPU
counters are the truth, and a scrape reads them directly (no drift, no thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from xdpshield.shield.core import Shield

__all__ = ["ShieldCollector", "registry_for"]


class ShieldCollector(Collector):
    """Verdict counters, protected ports, verified sources, key epoch, rule
    counters (by rule name) and blocks in force per shield."""

    def __init__(self, shields: Iterable[Shield] | Callable[[], Iterable[Shield]]) -> None:
        """``shields``: the shields, or a function that names them at each
        scrape (the daemon's, which it reopens after a reload)."""
        if callable(shields):
            self._shields = shields
        else:
            fixed = list(shields)
            self._shields = lambda: fixed

    @property
    def shields(self) -> list[Shield]:
        return list(self._shields())

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        packets = CounterMetricFamily(
            "xdpshield_packets", "Packets by verdict reason", labels=["iface", "reason"]
        )
        octets = CounterMetricFamily(
            "xdpshield_bytes", "Bytes by verdict reason", labels=["iface", "reason"]
        )
        ports = GaugeMetricFamily(
            "xdpshield_protected_ports", "TCP ports guarded", labels=["iface"]
        )
        verified = GaugeMetricFamily(
            "xdpshield_verified_sources", "Entries in the verified table", labels=["iface"]
        )
        epoch = GaugeMetricFamily(
            "xdpshield_key_epoch", "Epoch of the current cookie key", labels=["iface"]
        )
        rule_packets = CounterMetricFamily(
            "xdpshield_rule_packets", "Packets matched per rule", labels=["iface", "rule"]
        )
        rule_bytes = CounterMetricFamily(
            "xdpshield_rule_bytes", "Bytes matched per rule", labels=["iface", "rule"]
        )
        blocked = GaugeMetricFamily(
            "xdpshield_blocked_sources",
            "Blocks in force, by who made them (limit: sustained excess; hand)",
            labels=["iface", "by"],
        )
        for s in self.shields:
            for reason, (p, b) in s.stats().items():
                packets.add_metric([s.iface, reason.label], p)
                octets.add_metric([s.iface, reason.label], b)
            ports.add_metric([s.iface], len(s.ports))
            verified.add_metric([s.iface], len(s.verified_sources()))
            epoch.add_metric([s.iface], s.current_epoch() or 0)
            by = {"limit": 0, "hand": 0}
            for blk in s.blocks():
                by["hand" if blk.manual else "limit"] += 1
            for who, n in by.items():
                blocked.add_metric([s.iface, who], n)
            for r in s.rules():
                rule_packets.add_metric([s.iface, r["name"]], r["packets"])
                rule_bytes.add_metric([s.iface, r["name"]], r["bytes"])
        yield from (packets, octets, ports, verified, epoch, rule_packets, rule_bytes, blocked)


def registry_for(shields: Iterable[Shield] | Callable[[], Iterable[Shield]]) -> CollectorRegistry:
    """A registry with only the shields' metrics (no process/platform noise)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ShieldCollector(shields))
    return reg
