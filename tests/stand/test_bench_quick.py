"""`xdpshield bench --quick` end to end, as CI runs it: every row produced and sane.

Speed is never asserted; only that each measurement exists, has a baseline
measured in the same run (or says why it could not run), and is positive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_quick_bench_writes_sane_results(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "xdpshield", "bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    by_name = {row["name"]: row for row in rows}
    measured = [row for row in rows if row["status"] == "ok"]
    assert len(measured) >= 0.8 * len(rows), [r["name"] for r in rows if r["status"] != "ok"]
    for row in measured:
        assert row["value"] >= 0, row
        if row["baseline"] is not None:
            # Each ratio is against a baseline measured in this same run.
            base = by_name[row["baseline"]]
            assert base["status"] == "ok" and base["value"] > 0, base
            assert row["ratio"] == pytest.approx(row["value"] / base["value"])
    groups = {row["group"] for row in measured}
    assert any(g.startswith("test run") for g in groups)
    assert any(g.startswith("live") for g in groups)
    # The paths a user asks about first: the SYN answer and the forged-ACK drop.
    for name in ("syn-ipv4", "ack-invalid-ipv4"):
        assert by_name[name]["status"] == "ok" and by_name[name]["value"] > 0
    # Issue 13: the policy stages' lookups, loads and floods, goals attached
    # (a quick run's lists are too small for the time budgets).
    policy = [row for row in rows if row["group"].startswith("policy:")]
    assert len({row["group"] for row in policy}) == 5
    assert all(row["status"] == "ok" for row in policy), [
        (row["name"], row["skipped"]) for row in policy if row["status"] != "ok"
    ]
    assert sum(row["goal"] is not None for row in policy) >= 6 + 4
    assert (tmp_path / "bench.md").read_text().strip()
    assert list(tmp_path.glob("*.png"))
