"""Prometheus metrics of running shields, read from their maps at scrape time.

A custom collector rather than counters updated in a loop: the kernel's per-CPU
counters are the truth, and a scrape reads them directly (no drift, no thread).

Names follow Prometheus' conventions: counters end in ``_total``, values are
in base units (``_bytes_total``, ``_seconds``, ``_per_second``), and every
series of a shield carries ``iface``. README's table lists every metric;
:data:`METRICS` is the same list in code (a test checks the two agree with
what a scrape exports, and the Grafana dashboard uses only these).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from xdpshield import __version__
from xdpshield.errors import XdpShieldError
from xdpshield.objects import object_digest, shield_object
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason
from xdpshield.shield.limits import REASONS

__all__ = [
    "ANSWER_REASONS",
    "DROP_REASONS",
    "METRICS",
    "PASS_REASONS",
    "ShieldCollector",
    "object_sha256",
    "registry_for",
]

#: Reasons whose packets are always dropped (XDP_DROP, or tc's shot); every
#: other reason passes the packet or answers it in place (SYN cookie, RST).
DROP_REASONS = frozenset(
    {
        Reason.MALFORMED,
        Reason.ACK_INVALID,
        Reason.NOT_VERIFIED,
        Reason.NO_KEY,
        Reason.REPLY_FAILED,
        Reason.HANDOFF_FAILED,
        Reason.HANDOFF_BAD_COOKIE,
        Reason.MARTIAN,
        Reason.BAD_CHECKSUM,
        Reason.RST_CAPPED,
        Reason.VLAN_TOO_DEEP,
        Reason.DENY,
        Reason.TCP_FLAGS,
        Reason.REFLECTION,
        Reason.FRAGMENT_UNKNOWN,
        Reason.ICMP_TYPE,
        Reason.PROTOCOL,
        Reason.RULE_DROP,
        *REASONS,
    }
)
#: Reasons answered in place (XDP_TX): a SYN cookie or an RST.
ANSWER_REASONS = frozenset(
    {Reason.SYN_COOKIE_SENT, Reason.NOT_VERIFIED_RST, Reason.SYN_NO_LISTENER}
)

#: Reasons whose packets pass to the kernel (ack-valid: in reset mode the
#: valid ACK is answered by an RST, and the client's retry passes).
PASS_REASONS = frozenset(Reason) - DROP_REASONS - ANSWER_REASONS

#: The verdict reasons that are a list's: the list's packets are theirs.
LIST_REASONS = {"allow": Reason.ALLOW_PASS, "deny": Reason.DENY, "blocks": Reason.BLOCKED}

#: Limits with a rate in packets per second (the JSON key of Limits -> label).
_PPS_LIMITS = {"pps": "pps", "syn_pps": "syn-pps"}

#: Every metric exported, as exposed (counters with their _total): name ->
#: (type, labels). Documented one per row in README ("Metrics").
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xdpshield_build_info": ("gauge", ("version", "object_sha256")),
    "xdpshield_shield_info": ("gauge", ("iface", "object_sha256", "handshake", "prog_id")),
    "xdpshield_attached": ("gauge", ("iface", "mode")),
    "xdpshield_loaded_timestamp_seconds": ("gauge", ("iface",)),
    "xdpshield_packets_total": ("counter", ("iface", "reason", "verdict")),
    "xdpshield_bytes_total": ("counter", ("iface", "reason", "verdict")),
    "xdpshield_protected_ports": ("gauge", ("iface",)),
    "xdpshield_verified_sources": ("gauge", ("iface",)),
    "xdpshield_key_epoch": ("gauge", ("iface",)),
    "xdpshield_key_age_seconds": ("gauge", ("iface",)),
    "xdpshield_rules": ("gauge", ("iface",)),
    "xdpshield_rule_packets_total": ("counter", ("iface", "rule")),
    "xdpshield_rule_bytes_total": ("counter", ("iface", "rule")),
    "xdpshield_list_prefixes": ("gauge", ("iface", "list")),
    "xdpshield_list_packets_total": ("counter", ("iface", "list")),
    "xdpshield_list_bytes_total": ("counter", ("iface", "list")),
    "xdpshield_blocked_sources": ("gauge", ("iface", "by")),
    "xdpshield_limit_packets_per_second": ("gauge", ("iface", "limit")),
    "xdpshield_limit_bytes_per_second": ("gauge", ("iface", "limit")),
    "xdpshield_block_after_seconds": ("gauge", ("iface",)),
    "xdpshield_samples_total": ("counter", ("iface", "reason")),
    "xdpshield_samples_lost_total": ("counter", ("iface", "reason")),
    "xdpshield_sample_rate_per_second": ("gauge", ("iface", "reason")),
}


def verdict_of(reason: Reason) -> str:
    """ "drop", "answer" (a reply sent in place) or "pass"."""
    if reason in DROP_REASONS:
        return "drop"
    return "answer" if reason in ANSWER_REASONS else "pass"


_object_sha: dict[tuple[str, int, int], str] = {}


def object_sha256() -> str:
    """SHA-256 of the installed shield object (what a load would load now;
    "": none is installed). Hashed again only when the file changes."""
    try:
        path = shield_object()
        st = path.stat()
    except (OSError, XdpShieldError):
        return ""
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _object_sha:
        _object_sha.clear()
        try:
            _object_sha[key] = object_digest(path)
        except XdpShieldError:
            return ""
    return _object_sha[key]


class _Families:
    """One family per metric of :data:`METRICS`, filled shield by shield."""

    def __init__(self) -> None:
        self.by_name: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for name, (kind, labels) in METRICS.items():
            doc = _HELP[name]
            if kind == "counter":
                self.by_name[name] = CounterMetricFamily(
                    name.removesuffix("_total"), doc, labels=list(labels)
                )
            else:
                self.by_name[name] = GaugeMetricFamily(name, doc, labels=list(labels))

    def add(self, name: str, labels: list[str], value: float) -> None:
        self.by_name[name].add_metric(labels, value)


_HELP = {
    "xdpshield_build_info": "The xdpshield version and the SHA-256 of its installed object",
    "xdpshield_shield_info": "The object a shield runs (SHA-256 from its load record), "
    "its handshake mode and program id",
    "xdpshield_attached": "1 when the shield's XDP program is attached (mode: native, "
    "generic), 0 when it is not",
    "xdpshield_loaded_timestamp_seconds": "When the shield was loaded (Unix time)",
    "xdpshield_packets_total": "Packets by verdict reason (verdict: drop, answer, pass)",
    "xdpshield_bytes_total": "Bytes by verdict reason (verdict: drop, answer, pass)",
    "xdpshield_protected_ports": "TCP ports guarded",
    "xdpshield_verified_sources": "Entries in the verified table",
    "xdpshield_key_epoch": "Epoch of the current cookie key",
    "xdpshield_key_age_seconds": "Seconds since the current cookie key was written",
    "xdpshield_rules": "Rules in the live policy",
    "xdpshield_rule_packets_total": "Packets matched per rule",
    "xdpshield_rule_bytes_total": "Bytes matched per rule",
    "xdpshield_list_prefixes": "Prefixes in the allow and deny lists (an upper bound)",
    "xdpshield_list_packets_total": "Packets decided by a list (allow: passed, deny and "
    "blocks: dropped)",
    "xdpshield_list_bytes_total": "Bytes decided by a list",
    "xdpshield_blocked_sources": "Blocks in force, by who made them (limit: sustained "
    "excess; hand)",
    "xdpshield_limit_packets_per_second": "Limits on in packets per second: per source "
    "(pps, syn-pps) and global ceilings (ceiling-PROTO)",
    "xdpshield_limit_bytes_per_second": "Limits on in bytes per second per source (bps)",
    "xdpshield_block_after_seconds": "Seconds over a limit before a source is blocked "
    "(absent: no automatic blocks)",
    "xdpshield_samples_total": "Drop samples sent to the ring buffer, per reason",
    "xdpshield_samples_lost_total": "Drop samples lost to a full ring, per reason",
    "xdpshield_sample_rate_per_second": "Each reason's cap on samples per second (0: off)",
}


class ShieldCollector(Collector):
    """Every metric of :data:`METRICS`, read from the shields at each scrape."""

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

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        f.add("xdpshield_build_info", [__version__, object_sha256()], 1)
        for s in self.shields:
            # A shield unloaded or reloaded under us: its fds fail; skip it
            # this scrape (the next one sees the new shield, or none).
            with contextlib.suppress(XdpShieldError, OSError):
                self._shield(f, s)
        yield from f.by_name.values()

    def _shield(self, f: _Families, s: Shield) -> None:
        i = s.iface
        rec = s.record
        info = [i, rec.object_sha256, rec.handshake.value, str(s.program.id)]
        f.add("xdpshield_shield_info", info, 1)
        with s.in_netns():
            attached = s.xdp_link is not None and s.xdp_link.attached()
        mode = s.xdp_link.mode if attached and s.xdp_link is not None else rec.xdp_mode
        f.add("xdpshield_attached", [i, mode], 1 if attached else 0)
        f.add("xdpshield_loaded_timestamp_seconds", [i], rec.loaded_at)
        stats = s.stats()
        for reason, (p, b) in stats.items():
            f.add("xdpshield_packets_total", [i, reason.label, verdict_of(reason)], p)
            f.add("xdpshield_bytes_total", [i, reason.label, verdict_of(reason)], b)
        for which, reason in LIST_REASONS.items():
            p, b = stats.get(reason, (0, 0))
            f.add("xdpshield_list_packets_total", [i, which], p)
            f.add("xdpshield_list_bytes_total", [i, which], b)
        f.add("xdpshield_protected_ports", [i], len(s.ports))
        f.add("xdpshield_verified_sources", [i], len(s.verified_sources()))
        f.add("xdpshield_key_epoch", [i], s.current_epoch() or 0)
        age = s.key_age_s()
        if age is not None:
            f.add("xdpshield_key_age_seconds", [i], age)
        rules = s.rules()
        f.add("xdpshield_rules", [i], len(rules))
        for r in rules:
            f.add("xdpshield_rule_packets_total", [i, r["name"]], r["packets"])
            f.add("xdpshield_rule_bytes_total", [i, r["name"]], r["bytes"])
        summary = s.policy_summary() or {}
        for which in ("allow", "deny"):
            f.add("xdpshield_list_prefixes", [i, which], int(summary.get(which, 0)))
        by = {"limit": 0, "hand": 0}
        for blk in s.blocks():
            by["hand" if blk.manual else "limit"] += 1
        for who, n in by.items():
            f.add("xdpshield_blocked_sources", [i, who], n)
        lim = s.limits().as_json()
        for key, label in _PPS_LIMITS.items():
            if lim.get(key) is not None:
                f.add("xdpshield_limit_packets_per_second", [i, label], lim[key])
        for proto, pps in (lim.get("ceilings") or {}).items():
            f.add("xdpshield_limit_packets_per_second", [i, f"ceiling-{proto}"], pps)
        if lim.get("bps") is not None:
            f.add("xdpshield_limit_bytes_per_second", [i, "bps"], lim["bps"])
        if lim.get("block_after") is not None:
            f.add("xdpshield_block_after_seconds", [i], lim["block_after"])
        self._samples(f, s)

    def _samples(self, f: _Families, s: Shield) -> None:
        """Drop samples sent to the ring and lost to a full ring, per reason,
        and each reason's cap (a shield from before samples has none)."""
        if not s.has_samples:
            return
        i = s.iface
        for reason, (sent, lost) in s.sample_counts().items():
            f.add("xdpshield_samples_total", [i, reason.label], sent)
            f.add("xdpshield_samples_lost_total", [i, reason.label], lost)
        for reason, rate in s.sample_rates().items():
            f.add("xdpshield_sample_rate_per_second", [i, reason.label], rate)


def registry_for(shields: Iterable[Shield] | Callable[[], Iterable[Shield]]) -> CollectorRegistry:
    """A registry with only the shields' metrics (no process/platform noise)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ShieldCollector(shields))
    return reg
