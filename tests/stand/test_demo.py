"""The quick demo, headless, as CI runs it: files, both phases, and what the shield changes.

What the JSON must show (repeated runs on the 2-core VM, see the report in the
commit): the same open-loop SYN flood in both phases; without the shield the
kernel's own SYN cookies answer a few hundred thousand per second and the ring
refuses most of the flood, the clients' frames among it (the stand's shared
link); with it, XDP answers several times more, and the clients who come
during the flood connect on the first try, many more of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from xdpshield import netns
from xdpshield.demo import run_demo

from .test_stand import leftovers


def test_quick_demo(tmp_path: Path) -> None:
    prefix = netns.unique_prefix("xsd")
    ticks: list[object] = []
    result = run_demo(tmp_path, quick=True, prefix=prefix, on_tick=ticks.append)
    assert leftovers(prefix) == []
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    data = json.loads((tmp_path / "demo.json").read_text())
    without, with_ = data["summary"]
    assert (without["phase"], with_["phase"]) == ("without shield", "with shield")
    assert [p["shield"] for p in data["phases"]] == [False, True]
    assert ticks and len(result.phases) == 2
    for s in (without, with_):
        assert s["legit_attempted"] > 0 and s["flood_pps"] > 0
        assert s["flood_delivered_pps"] is not None
    # The same flood reached the server in both phases, far above what the kernel
    # stack takes (measured ~0.3 Mpps): the ring refuses much of it without the shield.
    assert without["flood_refused_pct"] > 30, without
    # The shield answers the flood from XDP, several times what the kernel managed
    # (measured 3-5x; asserted 2x for a shared machine) ...
    assert with_["xdp_syn_cookies_per_s"] > 2 * without["kernel_syn_cookies_per_s"], data["summary"]
    assert with_["kernel_syn_cookies_per_s"] < 0.01 * with_["xdp_syn_cookies_per_s"]
    # ... and legit clients get through it. Measured: of the connections started
    # while the flood ran, 80-87 % completed on the first try without the
    # shield, 99.7-100 % with it, and 6-17x as many were started with it.
    assert with_["legit_success_pct"] >= 95.0, with_
    under = [s["legit_success_under_flood_pct"] for s in (without, with_)]
    assert None not in under, data["summary"]
    assert with_["legit_success_under_flood_pct"] >= 95.0, with_
    assert with_["legit_success_under_flood_pct"] > without["legit_success_under_flood_pct"]
    assert with_["legit_started_under_flood"] > 2 * without["legit_started_under_flood"]
    # The clients' frames rode the flood's stream in both phases.
    for p in data["phases"]:
        assert p["shared_link"]["sent"] > 0, p["shared_link"]
    assert data["handshake"] == with_["handshake"] in ("transparent", "reset")
    if with_["handshake"] == "transparent":
        # The handoff to the kernel: no RST, real clients connect on the first try.
        assert with_["legit_first_try_pct"] >= 99.0, with_
    else:
        # Reset mode resets a new source's first attempt; the one retry completes it.
        assert with_["legit_first_try_pct"] < with_["legit_success_pct"]
