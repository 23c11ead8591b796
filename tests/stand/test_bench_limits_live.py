"""The limits rows of the benchmark on a stand, short: each flood is dropped
for the reason its row is named after, next to a bare XDP_DROP on the same
stand; the cost rows' floods take the same verdicts with limits on as off;
the block comes after block-after; every limits table has its memory. No
speed is asserted."""

from __future__ import annotations

from xdpshield.lab.bench import LiveConfig, run_limits, run_limits_live
from xdpshield.lab.bench.limits import (
    GOAL_COST,
    GOAL_LIVE,
    GROUP_BLOCK,
    GROUP_COST,
    GROUP_LIVE,
    LIMIT_FLOODS,
    LIMIT_TABLES,
    LimitsConfig,
)


def test_limits_rows_are_produced_and_sane() -> None:
    lc = LimitsConfig.quick()
    rows = run_limits_live(False, cfg=LiveConfig(duration_s=0.3, reps=1, queues=(1,)), lc=lc)
    by_name = {r.name: r for r in rows}
    not_run = [(r.name, r.skipped) for r in rows if r.skipped is not None]
    assert not not_run, not_run
    for r in rows:
        assert r.value is not None, r.name
        # A block may come on the very tick block-after ends (the data path's
        # clock counts jiffies): a delay of 0 is a measurement, not a failure.
        assert r.value >= 0 if r.group == GROUP_BLOCK else r.value > 0, r.name
        assert r.baseline is None or r.baseline in by_name, r.name
    # Cost: per kind the floor, limits off and on with 1 and with random sources.
    cost = [r for r in rows if r.group == GROUP_COST]
    assert len(cost) == 5 * len(lc.kinds)
    for kind in lc.kinds:
        for src in ("1 source", "random sources"):
            on = by_name[f"{kind}-ipv6 limits on, {src}"]
            assert on.goal == GOAL_COST and on.baseline == f"{kind}-ipv6 limits off, {src}"
            assert on.extra["limited"] == 0, on.extra
            # The same verdicts with limits on as off.
            off = by_name[on.baseline]
            assert max(on.extra["reasons"], key=on.extra["reasons"].get) == max(
                off.extra["reasons"], key=off.extra["reasons"].get
            )
    # Drops: each flood for its own reason, against a bare XDP_DROP.
    for fl in LIMIT_FLOODS:
        shield = by_name[f"{fl.name} xdpshield (1 queue)"]
        assert shield.group == GROUP_LIVE and shield.goal == GOAL_LIVE
        assert shield.baseline == f"{fl.name} xdp-drop (1 queue)"
        assert min(shield.extra["reason_share"]) > 0.95, (fl.name, shield.extra)
    # The block: after block-after (1 s), within the 2 s.
    block = [r for r in rows if r.group == GROUP_BLOCK]
    assert len(block) == 2
    assert 1.0 <= block[0].samples[0] <= 2.0, block[0]


def test_limits_memory_rows() -> None:
    rows = {r.name: r for r in run_limits(True)}
    assert len(rows) == 2 * len(LIMIT_TABLES) + 1
    for name in LIMIT_TABLES:
        per, total = rows[f"{name} per entry"], rows[f"{name} total"]
        assert per.skipped is None and total.skipped is None, (per.skipped, total.skipped)
        assert per.value is not None and per.value >= 8  # a key or value at the least
        assert total.value is not None and total.value > 0
    assert rows["all limits tables"].value == sum(
        rows[f"{n} total"].value or 0 for n in LIMIT_TABLES
    )
