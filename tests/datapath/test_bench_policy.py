"""The policy benchmark against the real kernel, small: every row runs the
path it is named after, with a baseline from the same run. No speed is
asserted (``make bench`` measures it)."""

from __future__ import annotations

from xdpshield.lab.bench import MicroConfig, PolicyConfig, run_policy
from xdpshield.lab.bench.policy import (
    GOAL_DENY,
    GOAL_RULES,
    GROUP_APPLY,
    GROUP_DENY,
    GROUP_LOAD,
    GROUP_RULES,
)


def test_policy_rows_are_measured_with_baselines_and_goals() -> None:
    seen: list[float] = []
    rows = run_policy(
        False,
        lambda _what, frac: seen.append(frac),
        micro=MicroConfig(repeat=20_000, reps=2),
        cfg=PolicyConfig(prefixes=3000, rules=200),
    )
    assert seen and all(0.0 <= f <= 1.0 for f in seen) and seen[-1] == 1.0
    by_name = {r.name: r for r in rows}
    assert len(by_name) == len(rows)  # names are unique
    for r in rows:
        # Not skipped: each test-run frame took the path (verdict and reason)
        # its row is named after, in every timed iteration.
        assert r.skipped is None, (r.name, r.skipped)
        assert r.value is not None and r.value > 0 and len(r.samples) == 2, r.name
        if r.baseline is not None:
            base = by_name[r.baseline]
            assert base.skipped is None and base.value is not None and base.value > 0
            assert r.ratio is not None and r.ratio > 0
    units = {r.group: r.unit for r in rows}
    assert units == {
        GROUP_DENY: "ns/pkt",
        GROUP_RULES: "ns/pkt",
        GROUP_LOAD: "s",
        GROUP_APPLY: "ms",
    }
    assert len({(r.group, r.unit) for r in rows}) == len(units)  # one unit a group
    big = by_name["deny-hit-ipv6 (3k prefixes)"]
    assert big.baseline == "deny-hit-ipv6 (10 prefixes)" and big.goal == GOAL_DENY
    assert by_name["rule-miss (200 rules)"].goal == GOAL_RULES
    # The time budgets are for 1M prefixes and 10,000 rules: none here.
    assert all(r.goal is None for r in rows if r.group in (GROUP_LOAD, GROUP_APPLY))
