"""The policy floods of the benchmark on a stand, short: each is dropped by
the stage its row is named after, next to a bare XDP_DROP measured on the
same stand. No speed is asserted."""

from __future__ import annotations

from xdpshield.lab.bench import LiveConfig, run_policy_live
from xdpshield.lab.bench.policy import GOAL_LIVE, GROUP_LIVE, POLICY_FLOODS


def test_policy_floods_are_dropped_for_their_reason() -> None:
    rows = run_policy_live(False, cfg=LiveConfig(duration_s=0.3, reps=1, queues=(1,)))
    by_name = {r.name: r for r in rows}
    assert len(rows) == 2 * len(POLICY_FLOODS)
    for fl in POLICY_FLOODS:
        base = by_name[f"{fl.name} xdp-drop (1 queue)"]
        shield = by_name[f"{fl.name} xdpshield (1 queue)"]
        for r in (base, shield):
            assert r.skipped is None, (r.name, r.skipped)
            assert r.group == GROUP_LIVE and r.unit == "drops/s"
            assert r.value is not None and r.value > 0, r.name
        assert shield.baseline == base.name and shield.goal == GOAL_LIVE
        # What the shield counted: the flood's own reason, all but a trace
        # (a fragment flood's first fragments, 1 in 8192, pass).
        assert min(shield.extra["reason_share"]) > 0.99, (fl.name, shield.extra)
