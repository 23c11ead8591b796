"""The service's parts that need no kernel: the event log's two formats, the
run record's lock (a second run refuses with the first one's pid; a killed
run blocks nothing), sd_notify's datagram, and the systemd unit as
systemd-analyze reads it."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from xdpshield.errors import AlreadyRunning, NotRunning
from xdpshield.ops import service
from xdpshield.ops.events import EventLog

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "xdpshield.service"


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run"
    monkeypatch.setattr(service, "RUNS_DIR", d)
    return d


# -- the event log ------------------------------------------------------------------------------


def test_json_log_is_one_object_per_line() -> None:
    buf = io.StringIO()
    log = EventLog("json", buf, clock=lambda: 1_700_000_000.25)
    log("rotated", iface="eth0", epoch=7)
    log("reload-failed", level="error", error="x.toml:3: bad\nx.toml:4: worse", kept=None)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(ln) for ln in lines)
    assert first == {
        "ts": "2023-11-14T22:13:20.250Z",
        "level": "info",
        "event": "rotated",
        "iface": "eth0",
        "epoch": 7,
    }
    # A multi-line error stays one line; a None field is left out.
    assert second["error"] == "x.toml:3: bad\nx.toml:4: worse" and "kept" not in second


def test_text_log_quotes_what_would_break_a_line() -> None:
    buf = io.StringIO()
    log = EventLog("text", buf, clock=lambda: 0.0)
    log("adopted", iface="eth0", prog_id=12, rules=["+a", "-b"], why="two words")
    log("reload-failed", level="error", error='a "b"\nc=d')
    first, second = buf.getvalue().splitlines()
    assert first == (
        '1970-01-01T00:00:00.000Z info adopted iface=eth0 prog_id=12 rules="[\\"+a\\",\\"-b\\"]"'
        ' why="two words"'
    )
    assert second == '1970-01-01T00:00:00.000Z error reload-failed error="a \\"b\\"\\nc=d"'
    with pytest.raises(ValueError, match="log level 'loud'"):
        log("x", level="loud")


# -- the run record ------------------------------------------------------------------------------


def test_second_run_refuses_naming_the_first(runs_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("")
    lock = service.RunLock.acquire(str(cfg))
    try:
        with pytest.raises(AlreadyRunning, match=f"as pid {os.getpid()} ") as raised:
            service.RunLock.acquire(str(tmp_path / "." / "a.toml"))  # the same file
        assert raised.value.pid == os.getpid()
        found = service.find_run(str(cfg))
        assert (found.pid, found.config) == (os.getpid(), str(cfg))
        assert service.find_run(None).pid == os.getpid()  # the only one
        # Another file is another run (dots in a name included).
        others = [service.RunLock.acquire(str(tmp_path / n)) for n in ("b.v2.toml", "b.v3.toml")]
        with pytest.raises(NotRunning, match="several xdpshield runs"):
            service.find_run(None)
        for o in others:
            o.release()
    finally:
        lock.release()
    assert not list(runs_dir.glob("*.pid"))
    with pytest.raises(NotRunning):
        service.find_run(str(cfg))


def test_a_killed_run_blocks_nothing(runs_dir: Path, tmp_path: Path) -> None:
    cfg = str(tmp_path / "a.toml")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from xdpshield.ops import service; "
            "service.RUNS_DIR = Path(sys.argv[1]); service.RunLock.acquire(sys.argv[2]); "
            "print('locked', flush=True); time.sleep(30)",
            str(runs_dir),
            cfg,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "locked\n"
        with pytest.raises(AlreadyRunning, match=f"as pid {child.pid} "):
            service.RunLock.acquire(cfg)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    # The record is still there (nothing removed it), but its lock died with the process.
    assert list(runs_dir.glob("*.pid"))
    with pytest.raises(NotRunning):
        service.find_run(cfg)
    service.RunLock.acquire(cfg).release()


# -- sd_notify -------------------------------------------------------------------------------


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_sends_one_datagram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, abstract: bool
) -> None:
    name = f"xs-notify-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name if abstract else name)
        s.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name if abstract else name)
        assert service.sd_notify("READY=1\nSTATUS=serving 2 shields")
        assert s.recv(4096) == b"READY=1\nSTATUS=serving 2 shields"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not service.sd_notify("READY=1")  # not under systemd: nothing to do


# -- the systemd unit ---------------------------------------------------------------------------


def unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_verifies(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: the venv's stands in for /usr/bin's.
    exe = Path(sys.executable).parent / "xdpshield"
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/xdpshield run --config /etc/xdpshield/xdpshield.toml" in text
    unit = tmp_path / "xdpshield.service"
    unit.write_text(text.replace("/usr/bin/xdpshield", str(exe)))
    r = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # A warning (an unknown key, a bad value) is a mistake too.
    assert (r.returncode, r.stderr.strip()) == (0, ""), r.stderr
    keys = unit_keys(text)
    assert keys["Type"] == ["notify"] and keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert keys["Restart"] == ["on-failure"] and keys["ProtectSystem"] == ["strict"]
    assert set(keys["ReadWritePaths"]) == {"/sys/fs/bpf", "/run/xdpshield"}
    # Kept across restarts: the records of shields that outlive the service.
    assert keys["RuntimeDirectoryPreserve"] == ["yes"]


def test_unit_capabilities_are_each_explained() -> None:
    text = UNIT.read_text()
    (caps,) = unit_keys(text)["CapabilityBoundingSet"]
    for cap in caps.split():
        assert f"# - {cap}:" in text, f"{cap} has no comment saying why"


def test_forget_records_removes_a_stopped_runs_files_and_spares_a_live_one(
    runs_dir: Path, tmp_path: Path
) -> None:
    """What a lab calls for the configs it made up: a stopped run's record,
    state and events go (the other configs' stay); a live run keeps its own."""
    done, other = str(tmp_path / "done.toml"), str(tmp_path / "other.toml")
    for cfg in (done, other):
        pid, state = service.record_paths(cfg)
        runs_dir.mkdir(exist_ok=True)
        for p in (pid, state, pid.with_suffix(".events"), Path(f"{pid.with_suffix('')}.events.1")):
            p.write_text("{}")
    service.forget_records(done)
    left = {p.name for p in runs_dir.iterdir()}
    assert len(left) == 4 and all(n.startswith("other-") for n in left), left
    lock = service.RunLock.acquire(other)
    try:
        service.forget_records(other)
        assert len(list(runs_dir.iterdir())) == 4
    finally:
        lock.release()
    service.forget_records(other)
    assert not runs_dir.exists()
