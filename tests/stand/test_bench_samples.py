"""The sampling benchmark's quick form: both rows of each pair measured, the
cap row against the off row of the same run, the goal attached; and the
samples really flowed while the cap row ran (else it measures nothing)."""

from __future__ import annotations

import pytest

from xdpshield.lab.bench.samples import GROUP_LIVE, GROUP_TESTRUN, run_samples


def test_quick_sampling_rows() -> None:
    rows = run_samples(quick=True)
    by_name = {r.name: r for r in rows}
    assert {r.group for r in rows} == {GROUP_TESTRUN, GROUP_LIVE}
    for r in rows:
        assert r.skipped is None and r.value is not None and r.value > 0, (r.name, r.skipped)
    caps = [r for r in rows if "at cap" in r.name]
    assert len(caps) == 2
    for r in caps:
        assert r.goal is not None and r.baseline in by_name
        base = by_name[r.baseline]
        assert r.baseline_samples == base.samples
        assert r.ratio == pytest.approx(r.value / base.value)  # type: ignore[operator]
    testrun = next(r for r in caps if r.group == GROUP_TESTRUN)
    assert testrun.extra["samples_sent"] > 0
