"""What an operator sees of a shield: every metric against the counters it
reports, the Grafana dashboard against what a scrape exports, the local web
page in a real browser during a flood, and ``xdpshield events`` of a run.

- a shield on the stand with a rule, a deny list, limits and a block by
  hand takes a bounded UDP flood and pings; a scrape over HTTP of the
  metrics server then says exactly what Shield.stats(), rules(), blocks(),
  limits(), policy_summary() and key_age_s() say (read before and after
  the scrape: a counter may only have moved between the two);
- every metric the dashboard queries is exported, with the labels it
  groups by; every exported metric is in README's table;
- headless Chromium opens ``/`` during a flood from a blocked source: the
  page shows the flood's reason with a rate near the flood's, and the
  source among the top sources;
- ``xdpshield run`` keeps its events: ``xdpshield events --follow`` shows
  a block by hand begin and end as it happens, ``events`` alone the run's
  start, and the run's server answers /metrics, /api/status and the page.
"""

from __future__ import annotations

import contextlib
import html.parser
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, VethPair
from xdpshield import netns
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import FloodResult, flood
from xdpshield.ops import web
from xdpshield.ops.metrics import METRICS, verdict_of
from xdpshield.ops.service import record_paths
from xdpshield.policy.cidr import parse_prefix
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

from .svc import wait_for
from .test_policy_stand import in_background, shielded, xdpshield

DASHBOARD = ROOT / "packaging" / "grafana" / "xdpshield.json"
FLOODER = "198.19.7.7"
POLICY = """
[[interface]]
name = "{iface}"
protect = ["80"]

[deny]
prefixes = ["198.19.66.0/24", "fd00:66::/48"]

[[rule]]
name = "no-memcached"
action = "drop"
protocol = "udp"
dport = 11211

[[rule]]
name = "icmp-echo"
action = "limit"
protocol = "icmp"
icmp_type = "echo-request"
pps = 1000

[limits]
bps = 100000000
syn-pps = 5000
block-after = 30

[limits.ceiling]
icmp = 100000
"""


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    """Every sample of a real scrape, by its exposed name."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


@contextlib.contextmanager
def served(s: Shield) -> Iterator[web.WebServer]:
    """The metrics server over the shield, on 127.0.0.1 in its namespace."""
    with netns.enter(s.netns):
        server = web.serve("127.0.0.1", 0, lambda: [s])
    try:
        yield server
    finally:
        server.close()


def in_ns(ns: str | None, fn: Callable[[], Any]) -> Any:
    with netns.enter(ns):
        return fn()


def test_every_metric_says_what_the_shield_counts_and_the_dashboard_uses_only_them(
    stand: Stand, tmp_path: Path
) -> None:
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(POLICY.format(iface=stand.server_if))
    with shielded(stand) as s, served(s) as server:
        r = xdpshield(stand, "config", "apply", str(cfg))
        assert r.returncode == 0, r.stderr
        r = xdpshield(stand, "blocks", stand.server_if, "add", f"{FLOODER}/32", "--ttl", "10m")
        assert r.returncode == 0, r.stderr
        # Frames of several reasons: a blocked source, a rule's drop, pings.
        fl = flood("udp", stand=stand, sources=f"{FLOODER}/32", rate_pps=20_000,
                   duration_s=5.0, count=3000, dport=9999)  # fmt: skip
        mc = flood("udp", stand=stand, sources="198.19.8.0/24", rate_pps=20_000,
                   duration_s=5.0, count=2000, dport=11211, sport=40000)  # fmt: skip
        assert fl.sent == 3000 and mc.sent == 2000, (fl, mc)
        stand.exec("client", ["ping", "-c", "3", "-i", "0.2", stand.addr("server", 4)])

        before = (s.stats(), {r["name"]: r for r in s.rules()}, s.key_age_s())
        got = in_ns(s.netns, lambda: scrape(f"{server.url}/metrics"))
        after = (s.stats(), {r["name"]: r for r in s.rules()}, s.key_age_s())
        i = s.iface

        # Verdicts: each reason between the reads before and after.
        for reason in Reason:
            for k, name in ((0, "xdpshield_packets_total"), (1, "xdpshield_bytes_total")):
                v = value(got, name, iface=i, reason=reason.label, verdict=verdict_of(reason))
                assert before[0][reason][k] <= v <= after[0][reason][k], (name, reason)
        blocked = value(got, "xdpshield_packets_total", iface=i, reason="blocked")
        assert blocked == 3000  # every flood frame, dropped by the block
        assert value(got, "xdpshield_packets_total", iface=i, reason="rule-drop") == 2000
        # Rules by name, and the count of rules.
        for name in ("no-memcached", "icmp-echo"):
            for key, metric in (("packets", "xdpshield_rule_packets_total"),
                                ("bytes", "xdpshield_rule_bytes_total")):  # fmt: skip
                v = value(got, metric, iface=i, rule=name)
                assert before[1][name][key] <= v <= after[1][name][key], (name, key)
        assert value(got, "xdpshield_rule_packets_total", iface=i, rule="no-memcached") == 2000
        assert value(got, "xdpshield_rule_packets_total", iface=i, rule="icmp-echo") >= 3
        assert value(got, "xdpshield_rules", iface=i) == len(s.rules()) == 2
        # Lists: their sizes as the policy says, their packets as their reasons.
        summary = s.policy_summary()
        assert summary is not None
        for which in ("allow", "deny"):
            assert value(got, "xdpshield_list_prefixes", iface=i, list=which) == summary[which]
        assert summary["deny"] == 2
        assert value(got, "xdpshield_list_packets_total", iface=i, list="blocks") == blocked
        assert value(got, "xdpshield_list_bytes_total", iface=i, list="deny") == (
            value(got, "xdpshield_bytes_total", iface=i, reason="deny")
        )
        # Blocks, limits.
        assert [str(b.prefix) for b in s.blocks()] == [f"{FLOODER}/32"]
        assert value(got, "xdpshield_blocked_sources", iface=i, by="hand") == 1
        assert value(got, "xdpshield_blocked_sources", iface=i, by="limit") == 0
        lim = s.limits()
        assert value(got, "xdpshield_limit_bytes_per_second", iface=i, limit="bps") == lim.bps
        syn = value(got, "xdpshield_limit_packets_per_second", iface=i, limit="syn-pps")
        assert syn == lim.syn_pps == 5000
        assert (
            value(got, "xdpshield_limit_packets_per_second", iface=i, limit="ceiling-icmp")
            == (dict(lim.ceilings)["icmp"])
        )
        assert not [x for x in got["xdpshield_limit_packets_per_second"] if x[0]["limit"] == "pps"]
        assert value(got, "xdpshield_block_after_seconds", iface=i) == lim.block_after == 30
        # Keys, ports, verified sources.
        assert before[2] is not None and after[2] is not None
        assert before[2] <= value(got, "xdpshield_key_age_seconds", iface=i) <= after[2]
        assert value(got, "xdpshield_key_epoch", iface=i) == s.current_epoch()
        assert value(got, "xdpshield_protected_ports", iface=i) == len(s.ports) == 1
        assert value(got, "xdpshield_verified_sources", iface=i) == len(s.verified_sources())
        # Attach state and what runs.
        assert value(got, "xdpshield_attached", iface=i, mode=s.record.xdp_mode) == 1
        info = got["xdpshield_shield_info"][0][0]
        assert info["object_sha256"] == s.record.object_sha256 != ""
        assert info["prog_id"] == str(s.program.id)
        build = got["xdpshield_build_info"][0][0]
        assert build["object_sha256"] == s.record.object_sha256  # it runs what is installed
        assert value(got, "xdpshield_loaded_timestamp_seconds", iface=i) == s.record.loaded_at

        # The names and labels exported are METRICS' (the README table's).
        assert set(got) == set(METRICS)
        for name, samples in got.items():
            assert set(samples[0][0]) == set(METRICS[name][1]), name
        check_dashboard(got)
        check_readme()

        # Detached by someone else: the scrape says so.
        with netns.enter(s.netns):
            assert s.xdp_link is not None
            s.xdp_link.detach()
        got = in_ns(s.netns, lambda: scrape(f"{server.url}/metrics"))
        assert [v for lab, v in got["xdpshield_attached"] if lab["iface"] == i] == [0]


def check_dashboard(got: Samples) -> None:
    """Every metric the dashboard queries is exported, with the labels it
    groups by or shows."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    assert len(exprs) >= 15
    used: set[str] = set()
    for e in exprs:
        names = set(re.findall(r"\bxdpshield_[a-z0-9_]+", e))
        assert names, e
        used |= names
        labels = {lab for n in names for lab in METRICS.get(n, ("?", ()))[1]}
        for m in re.finditer(r"by \(([^)]*)\)", e):
            for lab in m.group(1).split(","):
                assert lab.strip() in labels, (lab, e)
        for m in re.finditer(r"(\w+)(=~|!=|=)\"", e):
            assert m.group(1) in labels, (m.group(1), e)
        missing = names - set(got)
        assert not missing, f"the dashboard queries {missing}, not exported ({e})"
    # It shows each kind of thing the issue asks for.
    for wanted in ("xdpshield_packets_total", "xdpshield_rule_packets_total",
                   "xdpshield_blocked_sources", "xdpshield_key_age_seconds",
                   "xdpshield_attached", "xdpshield_list_packets_total"):  # fmt: skip
        assert wanted in used, wanted
    assert any('verdict="drop"' in e and "rate(" in e for e in exprs)
    for p in dash["panels"]:
        for t in p["targets"]:
            for lf in re.findall(r"\{\{(\w+)\}\}", t.get("legendFormat", "")):
                names = set(re.findall(r"\bxdpshield_[a-z0-9_]+", t["expr"]))
                assert any(lf in METRICS[n][1] for n in names), (lf, t["expr"])


def check_readme() -> None:
    """README's metrics table has one row per metric, with its type and labels."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| `(xdpshield_[a-z0-9_]+)` \| (\w+) \| ([^|]*) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), set(re.findall(r"[a-z0-9_]+", m.group(3))))
    assert set(rows) == set(METRICS)
    for name, (kind, labels) in METRICS.items():
        assert rows[name] == (kind, set(labels)), name


class _Dom(html.parser.HTMLParser):
    """The rows of the page's tables: data-* attributes and cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[dict[str, str], list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append(({k: v or "" for k, v in attrs}, []))
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self.rows:
            self.rows[-1][1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium_dom(stand: Stand, url: str, tmp: Path) -> str:
    """The page's DOM after its script ran a few polls (headless Chromium,
    in the server's namespace; ended by its PID if it hangs)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is missing: run 'make bootstrap' (scripts/bootstrap.sh installs it)")
    proc = stand.popen(
        "server",
        [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp}",
            "--virtual-time-budget=3000", "--dump-dom", url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out[-2000:]
    return out


def test_the_local_page_shows_the_flood_rate_and_its_source_in_chromium(
    stand: Stand, tmp_path: Path
) -> None:
    rate = 10_000
    with shielded(stand) as s, served(s) as server:
        s.add_blocks({parse_prefix(f"{FLOODER}/32"): 600.0})
        thread, result = in_background(
            lambda: flood(
                "udp",
                stand=stand,
                sources=f"{FLOODER}/32",
                rate_pps=rate,
                duration_s=25.0,
                count=25 * rate,
                dport=9999,
            )
        )
        try:
            wait_for(lambda: s.stats()[Reason.BLOCKED][0] > rate, 20, "the flood dropped")
            # A first look, so the page's first poll has a rate over a full second.
            in_ns(s.netns, lambda: urllib.request.urlopen(f"{server.url}/api/status").read())
            time.sleep(1.2)
            dom = chromium_dom(stand, f"{server.url}/", tmp_path / "chromium")
            status = json.loads(
                in_ns(s.netns, lambda: urllib.request.urlopen(f"{server.url}/api/status").read())
            )
        finally:
            thread.join(90)  # bounded: 25 s at most
    assert result and isinstance(result[0], FloodResult)
    actual = result[0].pps
    parser = _Dom()
    parser.feed(dom)
    rows = {a["data-reason"]: (a, cells) for a, cells in parser.rows if "data-reason" in a}
    assert "blocked" in rows, dom[-3000:]
    attrs, cells = rows["blocked"]
    pps = float(attrs["data-pps"])
    # The rate shown is the flood's (paced to an average: within a factor of 3).
    assert actual / 3 < pps < actual * 3, (pps, actual)
    assert cells[0] == "blocked" and cells[1] == "drop" and cells[2].endswith("pps"), cells
    assert cells[2] != "…"
    tops = [cells for a, cells in parser.rows if a.get("data-source") == f"{FLOODER}/32"]
    assert tops and int(tops[0][1].replace(",", "")) > rate, tops
    assert f'data-iface="{s.iface}"' in dom and "attached, native" in dom
    # The JSON the page shows: the same shield, blocks and key age.
    sh = status["shields"][0]
    assert sh["iface"] == s.iface and sh["blocks_total"] == 1
    assert sh["blocks"][0]["prefix"] == f"{FLOODER}/32" and sh["key_age_s"] is not None


def run_cmd(ns: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "xdpshield", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def run_done(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "xdpshield", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Lines:
    """A process's stdout lines, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)


def test_events_of_a_run_printed_and_followed_and_its_page_served(
    veth: VethPair, tmp_path: Path
) -> None:
    port = 19437
    cfg = tmp_path / "obs.toml"
    cfg.write_text(
        f'[[interface]]\nname = "{veth.inner}"\nprotect = ["80"]\n\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    events_file = record_paths(str(cfg))[0].with_suffix(".events")
    ns = veth.ns_inner
    run = run_cmd(ns, "run", "--config", str(cfg))
    follower: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: events_file.exists() and "ready" in events_file.read_text(), 60, "ready")
        follower = run_cmd(ns, "events", "--config", str(cfg), "--follow", "--json")
        followed = Lines(follower)
        wait_for(lambda: any('"ready"' in ln for ln in followed.lines), 30, "kept events followed")
        r = run_done(ns, "blocks", veth.inner, "add", "198.18.9.0/24", "--ttl", "2s")
        assert r.returncode == 0, r.stderr

        def seen(event: str) -> list[dict[str, Any]]:
            recs = [json.loads(ln) for ln in list(followed.lines)]
            return [e for e in recs if e["event"] == event]

        wait_for(lambda: seen("unblocked"), 30, "the block's end followed")
        (blocked,) = seen("blocked")
        assert blocked["prefix"] == "198.18.9.0/24" and blocked["by"] == "hand"
        assert blocked["iface"] == veth.inner
        assert seen("unblocked")[0]["prefix"] == "198.18.9.0/24"

        # The run's server: metrics for Prometheus, the page for a browser, the JSON.
        with netns.enter(ns):
            base = f"http://127.0.0.1:{port}"
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
                assert f'xdpshield_attached{{iface="{veth.inner}",mode="native"}} 1.0' in (
                    resp.read().decode()
                )
            req = urllib.request.Request(f"{base}/", headers={"Accept": "text/html"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.headers["Content-Type"].startswith("text/html")
                assert "/api/status" in resp.read().decode()
            with urllib.request.urlopen(f"{base}/api/status", timeout=5) as resp:
                assert [x["iface"] for x in json.load(resp)["shields"]] == [veth.inner]
            with urllib.request.urlopen(f"{base}/", timeout=5) as resp:  # curl, Prometheus
                assert b"xdpshield_packets_total" in resp.read()
    finally:
        if follower is not None:
            follower.send_signal(signal.SIGINT)
            follower.wait(10)
        run.send_signal(signal.SIGTERM)
        run.wait(30)
    assert follower is not None and follower.returncode == 0
    assert run.returncode == 0
    try:
        # Without --follow: what was kept, as text; --since narrows it.
        r = run_done(ns, "events", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        names = [ln.split()[2] for ln in lines]
        assert names[0] == "starting" and "ready" in names and names[-1] == "stopped", lines
        assert any(" blocked " in ln and "prefix=198.18.9.0/24" in ln for ln in lines)
        r = run_done(ns, "events", "--config", str(cfg), "--since", "2026-01-01T00:00:00Z")
        assert r.stdout.splitlines() == lines
        r = run_done(ns, "events", "--config", str(cfg), "--since", "1s", "--json")
        assert r.returncode == 0 and len(r.stdout.splitlines()) < len(lines)
        r = run_done(ns, "events", "--config", str(cfg), "--since", "yesterday")
        assert r.returncode != 0 and "--since 'yesterday'" in r.stderr
    finally:
        run_done(ns, "stop", "--config", str(cfg))
        for p in (events_file, events_file.with_name(events_file.name + ".1")):
            p.unlink(missing_ok=True)
