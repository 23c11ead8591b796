"""``xdpshield run`` for real: two shields in one process, a SIGKILL under a
SYN flood, adoption, reloads under traffic, a second run, bad starts, and
the systemd unit's capabilities.

- two interfaces served by one run (the stand's server link and a second
  veth in the server namespace), metrics for both;
- a second run of the same file refuses with the first one's pid;
- SIGKILL while a bounded SYN flood runs: XDP keeps answering (the cookie
  counter moves with no process), a restarted run adopts both shields
  (same program ids, nothing loaded), and real HTTP fetches from the client
  all complete through the whole sequence;
- SIGHUP with a changed file keeps established connections; ``xdpshield
  reload`` of a broken file exits 2 naming the error and keeps the policy;
  a reload that drops an interface unloads its shield; ``stop`` unloads
  the rest;
- bad starts (no file, a directory, a file it may not read, an interface
  that does not exist) exit 2 and leave nothing; a reload whose new shield
  cannot load exits 1 and leaves what ran; SIGTERM keeps the shield;
  all of it with exactly the unit's capabilities;
- an interface deleted under the run: logged, its pins removed; created
  again: its shield is back with the file's ports and policy;
- a handshake whose SYN-ACK was sent before a SIGKILL of the run completes
  after the next run adopted the shield;
- a reload whose new shield the verifier rejects keeps what runs and logs
  the verifier's reason; a config that is not UTF-8 starts nothing.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, VethPair, obj_path, stand_up
from xdpshield import netns
from xdpshield.ebpf import ObjectSpec, attach_xdp, bpffs_root, query_xdp
from xdpshield.errors import NotAttached, XdpShieldError
from xdpshield.lab.fleet import accepted
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import flood, serve_http
from xdpshield.ops import service
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

from .svc import HalfOpen, ObjectFarm, listener, wait_for
from .test_policy_stand import echo_server, in_background, xdpshield

METRICS_PORT = 19436
JSON_LOG = ("--log-format", "json")
GOOD = """
[[interface]]
name = "{s0}"
protect = ["80", "8080"]

[[interface]]
name = "{s1}"
protect = ["22"]

[deny]
prefixes = [{deny}]

[metrics]
listen = "127.0.0.1:{port}"
"""


def events(log: Path) -> list[dict[str, Any]]:
    """The run's JSON log: every line must be one object."""
    return [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]


def named(log: Path, event: str) -> list[dict[str, Any]]:
    return [e for e in events(log) if e["event"] == event]


def prog_id(iface: str, ns: str) -> int:
    with Shield.open(iface, netns=ns) as s:
        return s.program.id


def cookies_sent(iface: str, ns: str) -> int:
    with Shield.open(iface, netns=ns) as s:
        return s.stats()[Reason.SYN_COOKIE_SENT][0]


def deny_list(iface: str, ns: str) -> list[str]:
    with Shield.open(iface, netns=ns) as s:
        return sorted(str(e.prefix) for e in s.list_entries("deny"))


class Fetcher:
    """Real HTTP fetches from the client namespace, one every 50 ms, each
    bounded by a 7 s timeout (a client's patience through three SYN
    retransmissions: a loaded 2-CPU machine can lose two SYNs in a row under
    the flood), until stopped; counts what completed."""

    def __init__(self, stand: Stand) -> None:
        self.url = f"http://{stand.addr('server', 4)}/"
        self.ns = stand.ns("client")
        self.ok = 0
        self.failures: list[str] = []
        #: What happened when (seconds from the start), for a failure's message.
        self.marks: list[str] = []
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def mark(self, what: str) -> None:
        self.marks.append(f"{time.monotonic() - self.t0:.2f}s {what}")

    def _run(self) -> None:
        with netns.enter(self.ns):
            while not self.stop.wait(0.05):
                start = time.monotonic() - self.t0
                try:
                    with urllib.request.urlopen(self.url, timeout=7) as r:
                        if len(r.read()) == 4096:
                            self.ok += 1
                            continue
                    self.failures.append(f"fetch from {start:.2f}s: short body")
                except OSError as exc:
                    self.failures.append(f"fetch from {start:.2f}s: {exc}")

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)


@contextlib.contextmanager
def running(stand: Stand, cfg: Path, log: Path) -> Iterator[subprocess.Popen[str]]:
    """``xdpshield run`` in the server namespace, its JSON log in ``log``;
    ended by PID if the test leaves it running."""
    with open(log, "w") as err:
        proc = stand.popen(
            "server",
            [
                sys.executable,
                "-m",
                "xdpshield",
                "run",
                "--config",
                str(cfg),
                "--log-format",
                "json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: named(log, "ready") or proc.poll() is not None, 60, "run ready")
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)


@pytest.fixture
def stand() -> Iterator[Stand]:
    """The stand with Linux's default net.ipv4.tcp_syncookies=1, what a
    service runs beside (the lab's is 2, for its Linux baselines)."""
    with stand_up(syncookies=1) as s:
        yield s


def test_one_run_two_shields_through_sigkill_and_reloads(stand: Stand, tmp_path: Path) -> None:
    ns = stand.ns("server")
    s0, s1 = stand.server_if, stand.ifname("s1")
    # A second link into the server: the attacker's end holds 198.18.2.1.
    netns.veth_pair(s1, stand.ifname("a2"), ns, stand.ns("attacker"))
    netns.add_address(s1, "198.18.2.2/24", ns)
    netns.add_address(stand.ifname("a2"), "198.18.2.1/24", stand.ns("attacker"))
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(GOOD.format(s0=s0, s1=s1, deny='"203.0.113.0/24"', port=METRICS_PORT))
    stop_echo = threading.Event()
    echo = echo_server(stand, 8080, stop_echo)
    conns: list[socket.socket] = []
    http = serve_http(stand, port=80)
    fetcher: Fetcher | None = None

    def echo_all(tag: bytes) -> None:
        for i, c in enumerate(conns):
            c.sendall(tag + b" %d" % i)
            assert c.recv(64) == tag + b" %d" % i

    try:
        with running(stand, cfg, tmp_path / "run1.log") as run1:
            ids = {i: prog_id(i, ns) for i in (s0, s1)}
            assert {e["iface"] for e in named(tmp_path / "run1.log", "loaded")} == {s0, s1}
            assert service.find_run(str(cfg)).pid == run1.pid
            # A second run of the file refuses, names the first, touches nothing.
            r = xdpshield(stand, "run", "--config", str(cfg))
            assert r.returncode == 1 and f"as pid {run1.pid} " in r.stderr, r.stderr
            metrics = stand.exec("server", ["curl", "-sS", f"http://127.0.0.1:{METRICS_PORT}/"])
            for i in (s0, s1):
                assert f'xdpshield_protected_ports{{iface="{i}"}} ' in metrics.stdout, i
            with netns.enter(stand.ns("client")):
                conns = [
                    socket.create_connection((stand.addr("server", 4), 8080), timeout=5)
                    for _ in range(8)
                ]
            echo_all(b"before")
            fetcher = Fetcher(stand)
            syn, fl = in_background(
                lambda: flood(
                    "syn", stand=stand, rate_pps=100_000, duration_s=10.0, count=1_000_000
                )
            )
            wait_for(lambda: cookies_sent(s0, ns) > 1000, 10, "the flood answered")
            fetcher.mark("flood answered; SIGKILL")
            run1.send_signal(signal.SIGKILL)
            run1.wait(10)
        # No process: XDP answers on, the same programs attached.
        before = cookies_sent(s0, ns)
        wait_for(lambda: cookies_sent(s0, ns) > before + 1000, 5, "cookies with no run")
        assert {i: prog_id(i, ns) for i in (s0, s1)} == ids
        echo_all(b"orphaned")
        with running(stand, cfg, tmp_path / "run2.log") as run2:
            fetcher.mark("run 2 started")
            log2 = tmp_path / "run2.log"
            adopted = {e["iface"]: e for e in named(log2, "adopted")}
            assert {i: adopted[i]["prog_id"] for i in (s0, s1)} == ids
            assert all(e["object"] == "same" for e in adopted.values())
            assert not named(log2, "loaded")
            assert {i: prog_id(i, ns) for i in (s0, s1)} == ids
            # SIGHUP with a changed file, under the flood: established
            # connections go on, the new deny list is live.
            assert syn.is_alive(), "the flood ended before the reload"
            cfg.write_text(GOOD.format(s0=s0, s1=s1, deny='"198.51.100.0/24"', port=METRICS_PORT))
            fetcher.mark("SIGHUP")
            run2.send_signal(signal.SIGHUP)
            wait_for(lambda: named(log2, "reloaded"), 20, "reloaded")
            fetcher.mark("reloaded")
            assert deny_list(s0, ns) == ["198.51.100.0/24"]
            echo_all(b"reloaded")
            # A broken file: 'reload' says why (exit 2), nothing changes.
            cfg.write_text(cfg.read_text().replace('"198.51.100.0/24"', '"198.51.100.1/24"'))
            r = xdpshield(stand, "reload", "--config", str(cfg))
            fetcher.mark("broken reload refused")
            assert r.returncode == 2, (r.stdout, r.stderr)
            line = cfg.read_text().splitlines().index('prefixes = ["198.51.100.1/24"]') + 1
            assert f"{cfg}:{line}: deny.prefixes: " in r.stderr, r.stderr
            assert "host bits" in r.stderr
            (failed,) = named(log2, "reload-failed")
            assert failed["level"] == "error" and "host bits" in failed["error"]
            assert deny_list(s0, ns) == ["198.51.100.0/24"]
            assert {i: prog_id(i, ns) for i in (s0, s1)} == ids
            echo_all(b"kept")
            syn.join(30)
            fetcher.mark("flood ended")
            with Shield.open(s0, netns=ns) as sh:
                counters = {r.name: n for r, (n, _) in sh.stats().items() if n}
            assert fl and fl[0].sent > 100_000
            fetcher.finish()
            # A file without the second interface: its shield goes.
            cfg.write_text(
                GOOD.format(s0=s0, s1=s1, deny='"198.51.100.0/24"', port=METRICS_PORT).replace(
                    f'[[interface]]\nname = "{s1}"\nprotect = ["22"]\n', ""
                )
            )
            r = xdpshield(stand, "reload", "--config", str(cfg))
            assert r.returncode == 0 and "reloaded" in r.stdout, (r.stdout, r.stderr)
            assert [e["iface"] for e in named(log2, "unloaded")] == [s1]
            with pytest.raises(NotAttached):
                Shield.open(s1, netns=ns)
            r = xdpshield(stand, "stop", "--config", str(cfg))
            assert r.returncode == 0, r.stderr
            assert f"stopped xdpshield run pid {run2.pid}" in r.stdout
            assert f"{s0} (netns {ns}): unloaded" in r.stdout
            assert run2.wait(10) == 0
        with pytest.raises(NotAttached):
            Shield.open(s0, netns=ns)
        assert not any(p.exists() for p in service.record_paths(str(cfg)))
        # Every fetch completed, across the kill, the restart and the reloads.
        assert fetcher.failures == [] and fetcher.ok > 50, (
            fetcher.ok,
            fetcher.failures[:5],
            fetcher.marks,
            counters,
        )
    finally:
        if fetcher is not None:
            fetcher.finish()
        for c in conns:
            c.close()
        stop_echo.set()
        echo.join(5)
        http.stop()
        with contextlib.suppress(XdpShieldError, OSError):
            service.stop_run(str(cfg))
        for p in service.record_paths(str(cfg)):
            p.unlink(missing_ok=True)


# -- bad starts, a failed reload, SIGTERM; with the unit's capabilities -------------------------


def unit_caps() -> list[str]:
    """CapabilityBoundingSet of packaging/xdpshield.service, as setpriv takes it."""
    text = (ROOT / "packaging" / "xdpshield.service").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("CapabilityBoundingSet=")]
    return [c.removeprefix("CAP_").lower() for c in line.partition("=")[2].split()]


def xs_in(ns: str, *args: str, caps: list[str] | None = None) -> list[str]:
    """The command in namespace ``ns``: nsenter enters only the network
    namespace (``ip netns exec`` would hide bpffs), setpriv keeps only ``caps``."""
    argv = ["nsenter", f"--net=/run/netns/{ns}"]
    if caps is not None:
        argv += ["setpriv", "--bounding-set", ",".join(["-all", *(f"+{c}" for c in caps)])]
    return [*argv, sys.executable, "-m", "xdpshield", *args]


def run_once(
    ns: str, *args: str, caps: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(xs_in(ns, *args, caps=caps), capture_output=True, text=True, timeout=60)


def start_errors(r: subprocess.CompletedProcess[str]) -> list[str]:
    lines = [json.loads(ln) for ln in r.stderr.splitlines()]  # each line is one JSON object
    errors = [e for e in lines if e["level"] == "error"]
    assert errors and all(e["event"] == "start-failed" for e in errors), r.stderr
    return [e["error"] for e in errors]


def test_bad_starts_leave_nothing_and_the_unit_caps_suffice(veth: VethPair, tmp_path: Path) -> None:
    ns, iface = veth.ns_inner, veth.inner
    caps = unit_caps()
    assert caps == ["bpf", "net_admin", "perfmon"]
    # No file; a directory; a file the unit's root may not read (no CAP_DAC_OVERRIDE).
    r = run_once(ns, "run", "--config", str(tmp_path / "none.toml"), *JSON_LOG)
    assert r.returncode == 2
    assert start_errors(r) == [
        f"{tmp_path / 'none.toml'}: cannot read config: No such file or directory"
    ]
    r = run_once(ns, "run", "--config", str(tmp_path), *JSON_LOG)
    assert r.returncode == 2 and "Is a directory" in start_errors(r)[0]
    garbled = tmp_path / "garbled.toml"
    garbled.write_bytes(b'[[interface]]\nname = "\xff\xfe"\n')
    r = run_once(ns, "run", "--config", str(garbled), *JSON_LOG)
    assert r.returncode == 2 and start_errors(r) == [f"{garbled}:2: not UTF-8 text"]
    assert not any(p.exists() for p in service.record_paths(str(garbled)))
    secret = tmp_path / "secret.toml"
    secret.write_text(f'[[interface]]\nname = "{iface}"\n')
    secret.chmod(0)
    r = run_once(ns, "run", "--config", str(secret), *JSON_LOG, caps=caps)
    assert r.returncode == 2 and "cannot read config: Permission denied" in start_errors(r)[0]
    # An interface that does not exist: its FILE:LINE, and the one that does gets no shield.
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(f'[[interface]]\nname = "{iface}"\n\n[[interface]]\nname = "nosuch0"\n')
    r = run_once(ns, "run", "--config", str(cfg), *JSON_LOG, caps=caps)
    assert r.returncode == 2
    (error,) = start_errors(r)
    assert error.startswith(f"{cfg}:4: interface.name: ") and "'nosuch0'" in error, error
    with pytest.raises(NotAttached):
        Shield.open(iface, netns=ns)
    assert not (bpffs_root() / "xdpshield" / f"netns-{ns}").exists()  # no pin, no kept map
    assert not any(p.exists() for p in service.record_paths(str(cfg)))

    # With exactly the unit's capabilities: it starts, a reload whose new
    # shield cannot load (another XDP program holds the link) exits 1 and
    # leaves what runs, SIGTERM ends it and the shield stays.
    other, peer = f"{veth.prefix}p", f"{veth.prefix}q"
    netns.veth_pair(other, peer, ns, veth.ns_outer)
    with netns.enter(ns):
        coll = ObjectSpec(obj_path("test_counter.o")).load()
        foreign = attach_xdp(coll.program("xdp_pass"), other, "native").prog_id
        coll.close()
    cfg.write_text(f'[[interface]]\nname = "{iface}"\n\n[metrics]\nenabled = false\n')
    log = tmp_path / "run.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            xs_in(ns, "run", "--config", str(cfg), *JSON_LOG, caps=caps),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        wait_for(lambda: named(log, "ready") or proc.poll() is not None, 60, "run ready")
        assert proc.poll() is None, log.read_text()
        first = prog_id(iface, ns)
        cfg.write_text(cfg.read_text() + f'\n[[interface]]\nname = "{other}"\n')
        r = run_once(ns, "reload", "--config", str(cfg))
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "failed to apply" in r.stderr and "not xdpshield's" in r.stderr, r.stderr
        (failed,) = named(log, "reload-failed")
        assert failed["result"] == "failed"
        with netns.enter(ns):
            assert (q := query_xdp(other)) is not None and q.prog_id == foreign
        assert prog_id(iface, ns) == first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert named(log, "stopped")
        assert prog_id(iface, ns) == first  # no hole: still attached, still pinned
        r = run_once(ns, "stop", "--config", str(cfg))
        assert r.returncode == 0 and f"{iface} (netns {ns}): unloaded" in r.stdout, r.stdout
        with pytest.raises(NotAttached):
            Shield.open(iface, netns=ns)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(XdpShieldError, OSError):
            service.stop_run(str(cfg))
        for p in service.record_paths(str(cfg)):
            p.unlink(missing_ok=True)


# -- interfaces that come and go ------------------------------------------------------------

GONE = """
[[interface]]
name = "{s0}"
protect = ["80"]

[[interface]]
name = "{s1}"
protect = ["8080"]

[deny]
prefixes = ["198.18.2.1/32"]

[metrics]
enabled = false
"""


def second_link(stand: Stand) -> tuple[str, str]:
    """A second link into the server (the attacker's end holds 198.18.2.1)."""
    ns, s1, a2 = stand.ns("server"), stand.ifname("s1"), stand.ifname("a2")
    netns.veth_pair(s1, a2, ns, stand.ns("attacker"))
    netns.add_address(s1, "198.18.2.2/24", ns)
    netns.add_address(a2, "198.18.2.1/24", stand.ns("attacker"))
    return s1, a2


def denied(stand: Stand, iface: str) -> int:
    with Shield.open(iface, netns=stand.ns("server")) as s:
        return s.stats()[Reason.DENY][0]


def attacker_pings(stand: Stand) -> bool:
    r = stand.exec("attacker", ["ping", "-c1", "-W1", "198.18.2.2"])
    return r.returncode == 0


def test_interface_deleted_and_created_again(stand: Stand, tmp_path: Path) -> None:
    ns, s0 = stand.ns("server"), stand.server_if
    s1, _ = second_link(stand)
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(GONE.format(s0=s0, s1=s1))
    log = tmp_path / "run.log"
    try:
        with running(stand, cfg, log) as run:
            first = prog_id(s0, ns)
            with Shield.open(s1, netns=ns) as s:
                pins, meta = s.pin_dir, s.meta_path
            assert pins.is_dir() and meta.exists()
            before = denied(stand, s1)
            assert not attacker_pings(stand) and denied(stand, s1) > before
            with netns.ipr(ns) as nl:
                nl.link("del", ifname=s1)  # takes its peer with it
            wait_for(lambda: named(log, "iface-gone"), 10, "iface-gone logged")
            (gone,) = named(log, "iface-gone")
            assert gone["iface"] == s1 and gone["why"] == f"interface {s1} is gone", gone
            assert gone["level"] == "warning" and "prog" in gone["pins"], gone
            assert not pins.exists() and not meta.exists()  # nothing leaked
            assert not (meta.with_suffix(".policy.json")).exists()
            assert prog_id(s0, ns) == first  # the other shield is untouched
            state = service.find_run(str(cfg)).state()
            assert [g["iface"] for g in state["gone"]] == [s1]
            # The same name again: its shield is back, with the file's policy.
            second_link(stand)
            wait_for(lambda: named(log, "iface-back"), 10, "iface-back logged")
            (back,) = named(log, "iface-back")
            assert back["iface"] == s1 and back["loaded"] is True
            with Shield.open(s1, netns=ns) as s:
                assert s.ports == [8080]
                assert [str(e.prefix) for e in s.list_entries("deny")] == ["198.18.2.1/32"]
                assert s.program.id == back["prog_id"]
            before = denied(stand, s1)
            assert not attacker_pings(stand)
            assert denied(stand, s1) > before  # enforced by the new shield
            assert service.find_run(str(cfg)).state()["gone"] == []
            assert run.poll() is None and not named(log, "duty-failed")
    finally:
        with contextlib.suppress(XdpShieldError, OSError):
            service.stop_run(str(cfg))
        for p in service.record_paths(str(cfg)):
            p.unlink(missing_ok=True)


# -- a handshake across a restart; a reload the verifier rejects -----------------------------

ONE = """
[[interface]]
name = "{s0}"
protect = ["8080"]
syn_flood_pps = 0

[metrics]
enabled = false
"""


def test_handshake_answered_before_a_sigkill_completes_after_it(
    stand: Stand, tmp_path: Path
) -> None:
    ns, s0 = stand.ns("server"), stand.server_if
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(ONE.format(s0=s0))
    try:
        with listener(stand) as ls:
            with running(stand, cfg, tmp_path / "run1.log") as run1:
                first = prog_id(s0, ns)
                half = HalfOpen(stand, sport=41_010)  # the SYN-ACK: a cookie of this key
                run1.send_signal(signal.SIGKILL)
                run1.wait(10)
            log = tmp_path / "run2.log"
            with running(stand, cfg, log):
                (adopted,) = named(log, "adopted")
                assert adopted["object"] == "same" and adopted["prog_id"] == first
                with Shield.open(s0, netns=ns) as s:
                    valid = s.stats()[Reason.ACK_VALID][0]
                half.ack()
                half.close()
                assert accepted(ls, 41_010, 5), "the handshake did not complete"
                with Shield.open(s0, netns=ns) as s:
                    assert s.stats()[Reason.ACK_VALID][0] == valid + 1
    finally:
        with contextlib.suppress(XdpShieldError, OSError):
            service.stop_run(str(cfg))
        for p in service.record_paths(str(cfg)):
            p.unlink(missing_ok=True)


def test_reload_the_verifier_rejects_keeps_what_runs(
    stand: Stand, tmp_path: Path, farm: ObjectFarm
) -> None:
    """The new interface's shield needs a load, and the installed object is
    one the verifier refuses (an unchecked packet read, built only for this)."""
    ns, s0 = stand.ns("server"), stand.server_if
    s1, _ = second_link(stand)
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(ONE.format(s0=s0))
    log = tmp_path / "run.log"
    try:
        with running(stand, cfg, log):
            first = prog_id(s0, ns)
            farm.install("xdpshield_test_reject.o")
            cfg.write_text(cfg.read_text() + f'\n[[interface]]\nname = "{s1}"\n')
            r = xdpshield(stand, "reload", "--config", str(cfg))
            assert r.returncode == 1, (r.stdout, r.stderr)
            assert "verifier rejected program 'xdpshield_xdp'" in r.stderr, r.stderr
            (failed,) = named(log, "reload-failed")
            assert failed["result"] == "failed" and failed["level"] == "error"
            assert "offset is outside of the packet" in failed["error"], failed
            assert failed["kept"] == "the running shields and policy"
            # What ran runs on; the new interface has nothing, pinned or attached.
            assert prog_id(s0, ns) == first
            with pytest.raises(NotAttached):
                Shield.open(s1, netns=ns)
            assert not (bpffs_root() / "xdpshield" / f"netns-{ns}" / s1).exists()
            with netns.enter(ns):
                assert query_xdp(s1) is None
            # The object fixed: the same file applies.
            farm.install("xdpshield.o")
            r = xdpshield(stand, "reload", "--config", str(cfg))
            assert r.returncode == 0, (r.stdout, r.stderr)
            assert prog_id(s0, ns) == first and prog_id(s1, ns) > 0
    finally:
        with contextlib.suppress(XdpShieldError, OSError):
            service.stop_run(str(cfg))
        for p in service.record_paths(str(cfg)):
            p.unlink(missing_ok=True)
