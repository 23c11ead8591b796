"""The limits benchmark's rows without the kernel: what they are named, their
units, baselines and goals, and what a row says when its flood was limited
or its baseline did not run. No speed is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdpshield.lab.bench import LiveConfig
from xdpshield.lab.bench.kstats import bpf_stats
from xdpshield.lab.bench.limits import (
    GOAL_BLOCK,
    GOAL_COST,
    GOAL_LIVE,
    GROUP_BLOCK,
    GROUP_COST,
    GROUP_LIVE,
    GROUP_MEM_ENTRY,
    GROUP_MEM_TABLE,
    LIMIT_FLOODS,
    LIMIT_TABLES,
    CostSamples,
    LimitsConfig,
    TableMemory,
    _skipped,
    block_rows,
    cost_rows,
    live_rows,
    memory_rows,
)
from xdpshield.lab.bench.policy import PolicyLiveSamples
from xdpshield.shield.datapath import Reason


def _cost_data(limited: int = 0) -> CostSamples:
    data = CostSamples()
    for kind in ("syn", "udp"):
        data.ns[(kind, "floor")] = [40.0, 42.0]
        for src in ("one", "random"):
            data.ns[(kind, f"off {src}")] = [100.0, 102.0]
            data.ns[(kind, f"on {src}")] = [120.0, 125.0]
            data.extra[(kind, f"on {src}")] = {
                "runs": 1000, "limited": limited, "reasons": {"LIMIT_PPS": limited},
            }  # fmt: skip
    return data


def test_cost_rows_hold_limits_on_against_off_with_the_goal() -> None:
    rows = {r.name: r for r in cost_rows(LimitsConfig(), _cost_data())}
    assert len(rows) == 2 * 5
    on = rows["syn-ipv6 limits on, random sources"]
    assert on.group == GROUP_COST and on.unit == "ns/pkt" and not on.higher_is_better
    assert on.baseline == "syn-ipv6 limits off, random sources" and on.goal == GOAL_COST
    assert on.ratio == pytest.approx(122.5 / 101) and on.goal_met is True
    # The kernel accounting's floor, taken off both sides, in the note.
    assert f"{(122.5 - 41) / (101 - 41):.2f}x with the floor taken off" in on.note
    off = rows["udp-ipv6 limits off, 1 source"]
    assert off.baseline == "udp-ipv6 xdp-drop (bpf_stats floor)" and off.goal is None
    for r in rows.values():  # every baseline is a row of the same run
        assert r.baseline is None or r.baseline in rows
    assert "each packet from its own random /64" in on.note and "10M packets or 12 s" in on.note


def test_a_cost_row_whose_flood_was_limited_has_no_number() -> None:
    rows = {r.name: r for r in cost_rows(LimitsConfig(), _cost_data(limited=50))}
    r = rows["syn-ipv6 limits on, 1 source"]
    assert not r.samples and "the flood was limited" in (r.skipped or "")


def test_live_rows_hold_each_flood_against_its_bare_drop() -> None:
    data = PolicyLiveSamples()
    for fl in LIMIT_FLOODS:
        data.drop[(fl.name, "xdpshield")] = [1.9e6, 2.0e6]
        data.drop[(fl.name, "xdp-drop")] = [2.0e6, 2.0e6]
        data.extra[f"{fl.name} xdpshield"] = {"reason_share": [0.999, 1.0]}
    data.unavailable["blocked-flood xdp-drop"] = "TrafficError: no"
    rows = {r.name: r for r in live_rows("1 queue", data)}
    assert len(rows) == 2 * len(LIMIT_FLOODS)
    over = rows["over-limit-flood xdpshield (1 queue)"]
    assert over.group == GROUP_LIVE and over.unit == "drops/s" and over.higher_is_better
    assert over.baseline == "over-limit-flood xdp-drop (1 queue)" and over.goal == GOAL_LIVE
    assert over.ratio == pytest.approx(0.975) and over.goal_met is True
    assert "99.90%+ of its verdicts LIMIT_PPS" in over.note
    assert "baseline did not run" in (rows["blocked-flood xdpshield (1 queue)"].skipped or "")
    assert {fl.reason for fl in LIMIT_FLOODS} == {Reason.LIMIT_PPS, Reason.BLOCKED}
    # One flooder, the same frame for both floods.
    assert len({fl.frame["sources"] for fl in LIMIT_FLOODS}) == 1


def test_block_rows_report_the_time_and_the_delay_beyond_block_after() -> None:
    rows = block_rows(LimitsConfig(), [(1.002, 1.05), (1.004, 1.06), (1.01, 1.1)], None)
    total, delay = rows
    assert total.group == delay.group == GROUP_BLOCK and total.unit == delay.unit == "s"
    assert total.goal == GOAL_BLOCK and str(GOAL_BLOCK) == "<= 2 s" and total.goal_met is True
    assert total.value == pytest.approx(1.004) and delay.value == pytest.approx(0.004)
    assert total.extra["from_flood_start_s"] == [1.05, 1.06, 1.1]
    assert all(r.skipped == "x" for r in block_rows(LimitsConfig(), [], "x"))


def test_memory_rows_per_entry_and_total() -> None:
    tables = [
        TableMemory(name, 1024, 100.0, 102400, name != "xs_blocks", name == "xs_ceil")
        for name in LIMIT_TABLES
    ]
    rows = {r.name: r for r in memory_rows(tables)}
    assert (
        rows["xs_src per entry"].group == GROUP_MEM_ENTRY and rows["xs_src per entry"].unit == "B"
    )
    assert rows["xs_src total"].group == GROUP_MEM_TABLE
    assert rows["xs_src total"].value == pytest.approx(102400 / 2**20)
    assert "allocated per entry" in rows["xs_blocks total"].note
    assert "per CPU" in rows["xs_ceil per entry"].note
    assert rows["all limits tables"].value == pytest.approx(len(LIMIT_TABLES) * 102400 / 2**20)
    off = memory_rows([], "no kernel")
    assert len(off) == 2 * len(LIMIT_TABLES) + 1 and all(r.skipped == "no kernel" for r in off)


def test_what_cannot_run_says_so_in_every_row() -> None:
    cfg = LiveConfig(queues=(1, 2))
    rows = _skipped(cfg, LimitsConfig(), "needs root", True)
    assert rows and all(r.skipped == "needs root" for r in rows)
    groups = {r.group for r in rows}
    assert groups == {GROUP_COST, GROUP_LIVE, GROUP_BLOCK}
    assert len([r for r in rows if r.group == GROUP_LIVE]) == 2 * 2 * len(LIMIT_FLOODS)


def test_bpf_stats_are_put_back_as_found(tmp_path: Path) -> None:
    knob = tmp_path / "bpf_stats_enabled"
    knob.write_text("0\n")
    with bpf_stats(knob):
        assert knob.read_text().strip() == "1"
    assert knob.read_text().strip() == "0"
    knob.write_text("1\n")
    with bpf_stats(knob):
        pass
    assert knob.read_text().strip() == "1"
