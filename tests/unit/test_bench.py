"""Benchmark results without the kernel: medians, spread, ratios, goals, JSON and Markdown."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from xdpshield.lab.bench import (
    DROP_KINDS,
    DROP_RECEIVERS,
    Goal,
    LiveConfig,
    Result,
    format_markdown,
    parse_synack,
    run_handshakes,
    syn_frame,
    write_outputs,
)
from xdpshield.lab.bench import handshake as handshake_bench
from xdpshield.lab.bench.live import LiveSamples, _live_results, _live_skipped

GROUP = "test run: verdict paths"


def row(**kw: object) -> Result:
    args: dict[str, object] = {"name": "syn-ipv4", "group": GROUP, "unit": "ns/pkt"}
    args.update(kw)
    return Result(**args)  # type: ignore[arg-type]


def test_value_is_the_median_and_spread_half_the_range() -> None:
    r = row(samples=(12.0, 10.0, 30.0, 11.0, 13.0))
    assert r.value == 12.0
    assert r.spread == 10.0
    assert r.spread_pct == pytest.approx(100 * 10 / 12)


def test_even_count_median() -> None:
    assert row(samples=(1.0, 2.0, 3.0, 10.0)).value == 2.5


def test_ratio_is_median_over_baseline_median_with_per_repetition_range() -> None:
    r = row(samples=(12.0, 14.0, 13.0), baseline="xdp-drop", baseline_samples=(6.0, 7.0, 6.5))
    assert r.baseline_value == 6.5
    assert r.ratio == pytest.approx(2.0)
    lo, hi = r.ratio_range or (0.0, 0.0)
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)


def test_ratio_range_needs_paired_samples() -> None:
    r = row(samples=(1.0, 2.0), baseline_samples=(1.0,))
    assert r.ratio_range is None
    assert r.ratio == pytest.approx(1.5)


def test_no_samples_means_no_numbers() -> None:
    r = row(skipped="nftables is not installed", baseline="xdp-tx")
    assert r.value is None and r.spread is None and r.ratio is None
    assert r.status == "skipped"


@pytest.mark.parametrize(
    ("goal", "ratio", "met"),
    [
        (Goal("<=", 2.0), 1.99, True),
        (Goal("<=", 2.0), 2.0, True),
        (Goal("<=", 2.0), 2.01, False),
        (Goal(">=", 0.9), 0.95, True),
        (Goal(">=", 0.9), 0.5, False),
        (Goal(">=", 0.9), None, None),
    ],
)
def test_goal(goal: Goal, ratio: float | None, met: bool | None) -> None:
    assert goal.met(ratio) is met


def test_goal_met_follows_the_ratio() -> None:
    ok = row(samples=(10.0,), baseline_samples=(6.0,), goal=Goal("<=", 2.0))
    bad = row(samples=(13.0,), baseline_samples=(6.0,), goal=Goal("<=", 2.0))
    assert ok.goal_met is True and bad.goal_met is False
    assert str(ok.goal) == "<= 2x"


def test_json_has_every_field_the_issue_asks_for() -> None:
    r = row(
        samples=(10.0, 12.0),
        baseline="xdp-drop",
        baseline_samples=(5.0, 6.0),
        goal=Goal("<=", 2.0, "issue 3"),
        note="n",
    )
    j = r.to_json()
    for key in ("name", "unit", "value", "baseline", "baseline_value", "ratio", "spread"):
        assert key in j
    assert j["value"] == 11.0 and j["baseline_value"] == 5.5 and j["ratio"] == pytest.approx(2.0)
    assert j["goal"] == "<= 2x" and j["goal_met"] is True and j["status"] == "ok"
    json.dumps(j)  # serialisable as is


def test_markdown_table_shows_numbers_and_why_a_row_did_not_run() -> None:
    rows = [
        row(name="xdp-drop", samples=(6.0,)),
        row(samples=(11.0,), baseline="xdp-drop", baseline_samples=(6.0,), goal=Goal("<=", 2)),
        Result(
            "syn-flood nftables-synproxy",
            "live",
            "SYN-ACK/s",
            baseline="xdp-tx",
            skipped="nft | missing",
        ),
    ]
    md = format_markdown(rows, {"kernel": "6.18"})
    lines = md.splitlines()
    syn = next(line for line in lines if line.startswith("| syn-ipv4 "))
    assert "11.0" in syn and "1.83x" in syn and "<= 2x" in syn and "| yes |" in syn
    skipped = next(line for line in lines if "nftables" in line)
    assert "not run: nft \\| missing" in skipped  # the pipe cannot break the table
    assert "## test run: verdict paths" in md and "## live" in md
    # Every table row has the same number of cells as the header.
    widths = {line.count(" | ") for line in lines if line.startswith("| ") and "---" not in line}
    assert len(widths) == 1


def test_write_outputs(tmp_path: Path) -> None:
    rows = [
        row(name="xdp-drop", samples=(6.0, 6.2)),
        row(samples=(11.0, 12.0), baseline="xdp-drop", baseline_samples=(6.0, 6.2)),
        Result("x", "live", "pkt/s", skipped="no stand"),
    ]
    paths = write_outputs(rows, tmp_path / "out", {"quick": True})
    names = {p.name for p in paths}
    assert {"bench.json", "bench.md"} <= names
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert doc["meta"] == {"quick": True}
    assert [r["name"] for r in doc["results"]] == ["xdp-drop", "syn-ipv4", "x"]
    assert doc["results"][2]["skipped"] == "no stand"


def test_syn_frame_carries_the_linux_option_layout() -> None:
    tcp = Ether(syn_frame())[TCP]
    assert [k for k, _ in tcp.options] == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
    assert tcp.dataofs == 10 and int(tcp.flags) == 0x02


def test_parse_synack() -> None:
    frame = syn_frame()
    assert parse_synack(frame) is None  # a SYN is not a SYN-ACK
    pkt = Ether(frame)
    pkt[TCP].flags = "SA"
    pkt[TCP].seq = 0xDEADBEEF
    pkt[TCP].options = [("MSS", 1460), ("Timestamp", (77, 0x5A5A0001))]
    assert parse_synack(bytes(pkt)) == (0xDEADBEEF, 77)


def test_live_rows_carry_goals_baselines_and_why_a_receiver_did_not_run() -> None:
    syn = {"xdpshield": [3.2e6, 3.3e6], "xdp-reflect": [3.4e6, 3.5e6],
           "linux-syncookies": [3.0e5, 3.1e5], "nftables-synproxy": []}  # fmt: skip
    legit = {r: [(100, 99), (100, 100)] for r in syn}
    drop = {(k, r): [4.0e6, 4.1e6] for k in DROP_KINDS for r in DROP_RECEIVERS}
    drop[("ack", "xdp-filter")] = []
    why = {"nftables-synproxy": "nft: no synproxy", "ack xdp-filter": "xdp-filter: EPERM"}
    prog_ns = {"syn xdpshield": [151.0, 149.0], "ack xdpshield": [90.0]}
    samples = LiveSamples(syn, legit, drop, {}, why, {}, prog_ns)
    samples.legit_failures = {"xdpshield": Counter({"connect timeout": 1})}
    rows = {r.name: r for r in _live_results(LiveConfig(), 2, samples)}
    vs_tx = rows["syn-flood xdpshield vs xdp-reflect (2 queues)"]
    assert vs_tx.goal is not None and vs_tx.goal.ratio == 0.85 and vs_tx.goal_met is True
    # Beside each live rate, the program's own cost (bpf_stats), when measured.
    assert "program's own cost 150 ns/pkt" in rows["syn-flood xdpshield (2 queues)"].note
    assert "program's own cost 90 ns/pkt" in rows["ack-flood xdpshield (2 queues)"].note
    assert "own cost" not in rows["ack-flood xdp-drop (2 queues)"].note
    # Issue 17: the forged-ACK drops against xdp-filter's, which did not run here.
    assert rows["ack-flood xdpshield vs xdp-filter (2 queues)"].skipped == "xdp-filter: EPERM"
    assert rows["udp-flood xdpshield (2 queues)"].goal is None
    vs_linux = rows["syn-flood xdpshield vs linux-syncookies (2 queues)"]
    assert vs_linux.ratio == pytest.approx(3.25e6 / 3.05e5) and vs_linux.goal_met is True
    assert rows["syn-flood nftables-synproxy (2 queues)"].skipped == "nft: no synproxy"
    assert rows["syn-flood xdpshield vs nftables-synproxy (2 queues)"].skipped == (
        "nft: no synproxy"
    )
    assert rows["ack-flood xdp-filter (2 queues)"].skipped == "xdp-filter: EPERM"
    # The floor of reading the headers, against the bare drop; the shield against it.
    floor = rows["ack-flood xdp-parse-drop (2 queues)"]
    assert floor.baseline == "ack-flood xdp-drop (2 queues)" and floor.goal is None
    vs_floor = rows["ack-flood xdpshield vs xdp-parse-drop (2 queues)"]
    assert vs_floor.baseline == "ack-flood xdp-parse-drop (2 queues)" and vs_floor.skipped is None
    ack = rows["ack-flood xdpshield (2 queues)"]
    assert ack.baseline == "ack-flood xdp-drop (2 queues)" and ack.ratio == pytest.approx(1.0)
    legit_row = rows["legit during SYN flood: xdpshield (2 queues)"]
    assert legit_row.value == 99.5
    # Every receiver's clients face the same flood, and the row says which.
    assert "SYN flood held at 400.0 k/s" in legit_row.note
    # A fetch that failed says why, so the stand's losses and the shield's can be told apart.
    assert legit_row.note.endswith("; failed: connect timeout 1")
    assert "failed" not in rows["legit during SYN flood: linux-syncookies (2 queues)"].note
    assert all(r.higher_is_better for r in rows.values())


def test_live_without_the_stand_says_why_for_every_row() -> None:
    rows = _live_skipped(LiveConfig.quick(), "needs root")
    assert rows and all(r.skipped == "needs root" for r in rows)
    assert {r.name for r in rows} >= {
        "syn-flood xdp-reflect (1 queue)", "syn-flood linux-syncookies (1 queue)",
        "syn-flood nftables-synproxy (1 queue)", "ack-flood xdp-filter (1 queue)",
        "udp-flood xdp-drop (1 queue)",
    }  # fmt: skip


def test_markdown_shows_the_per_repetition_ratio_range() -> None:
    r = row(samples=(10.0, 12.0, 14.0), baseline="xdp-drop", baseline_samples=(5.0, 5.0, 5.0))
    line = next(ln for ln in format_markdown([r]).splitlines() if ln.startswith("| syn-ipv4"))
    assert "| 2.40x (2.00..2.80) |" in line


def test_handshake_rows_say_why_when_the_stand_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handshake_bench, "live_unavailable", lambda: "needs root (test)")
    rows = run_handshakes(quick=True)
    assert {r.name for r in rows} == {
        "handshake xdpshield-transparent",
        "handshake kernel-alone",
    }
    assert all(r.skipped == "needs root (test)" and r.value is None for r in rows)


def test_a_sample_that_never_came_is_reported_not_plotted(tmp_path: Path) -> None:
    """A fleet trial that timed out is an inf sample: the report still writes
    (the table says inf), with no bar for it."""
    never = row(name="fleet-block-propagation-p99", samples=(float("inf"),))
    paths = write_outputs([never, row(samples=(10.0,))], tmp_path)
    assert "| fleet-block-propagation-p99 |" in (tmp_path / "bench.md").read_text()
    assert any(p.suffix == ".png" for p in paths)
