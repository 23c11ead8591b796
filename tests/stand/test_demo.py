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
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from xdpshield import netns
from xdpshield.lab.demo import run_demo

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


def _procs_in(inodes: set[int]) -> list[int]:
    """PIDs of processes whose network namespace is one of ``inodes``."""
    found = []
    for ns in Path("/proc").glob("[0-9]*/ns/net"):
        try:
            if os.stat(ns).st_ino in inodes:
                found.append(int(ns.parent.parent.name))
        except OSError:
            pass  # gone meanwhile
    return found


def test_ctrl_c_mid_flood_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C while the flood and the clients run: the demo stops with the
    interrupt and removes its stand, shield and processes."""
    prefix = netns.unique_prefix("xsd")
    code = (
        # Ctrl-C as in a terminal, even if this run was started with SIGINT
        # ignored (a background job inherits that, and Python keeps it).
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from pathlib import Path\n"
        "from xdpshield.lab.demo import run_demo\n"
        f"run_demo(Path({str(tmp_path)!r}), quick=True, prefix={prefix!r},\n"
        "         on_tick=lambda t: print(t.phase, int(t.flood_pps), flush=True))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    inodes: set[int] = set()
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            # The flood is on (the namespaces all exist by now): note them, interrupt.
            if int(line.split()[-1]) > 0:
                inodes = {os.stat(p).st_ino for p in netns.NETNS_RUN_DIR.glob(f"{prefix}-*")}
                break
            assert time.monotonic() < deadline, "the flood never started"
        assert len(inodes) == 3
        assert _procs_in(inodes), "nothing runs in the stand"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    assert leftovers(prefix) == []
    assert _procs_in(inodes) == []
    assert not (tmp_path / "demo.json").exists()
