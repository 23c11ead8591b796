"""``xdpshield run``: the shields of one config file and all their duties, in one process.

What it does, in order: reads the config (a file with errors starts
nothing), takes the run record of that file (a second run of the same file
refuses and names the first one's pid), binds the metrics server, applies
the config (apply_config: a shield loaded where none runs, a running one
adopted), then serves: one :class:`~xdpshield.ops.daemon.Daemon` per shield
(key rotation, verified ageing, seen rebuild, list expiry, following a
reload made by hand), each in its own thread, and the event log.

No hole on exit or crash. The programs are attached through netlink and tc
(not through links owned by this process) and every map is pinned, so the
shields keep answering whatever happens to this process: SIGTERM, SIGINT,
a crash, SIGKILL. A restarted run adopts the running shields (opens their
pins, applies the config: an unchanged table is not rewritten); it never
reloads one, so no packet meets a half-built shield. A running shield of
another object than the one installed (an upgrade) is moved to the new
object in place (shield/upgrade.py: maps whose layout is unchanged are
kept, the programs swapped on their hooks, never detached) and logged
``upgraded``; one whose state cannot move (a state map's layout changed)
keeps running as it was, logged ``upgrade-refused`` naming the map. A
reload never upgrades. ``xdpshield stop`` (:func:`stop_run`) removes
everything on purpose.

Reload (SIGHUP, ``xdpshield reload``): the file is read and checked whole,
every interface looked up and every rule set compiled before anything
changes; new shields are loaded next (the verifier's turn), then each
shield switches to its new policy atomically. A file with errors, a
verifier that refuses, an interface that is missing: what runs keeps
running (new shields are unloaded again; should a switch fail after
others succeeded, those go back to the old file's policy), and the
outcome, with why, is logged and recorded, so ``xdpshield reload`` can
wait for it and print it. Interfaces the new file no longer names are
unloaded.

Interfaces come and go: each tick (a second) the run looks for every
interface of the file. One that is gone (deleted, its namespace deleted, or
deleted and created again under the same name) is logged ``iface-gone``
with why, its duty ends and every pin and record of its shield is removed
(the kernel took the program with the interface; nothing is leaked); when
an interface of that name is there again, its shield is loaded again with
the file's ports and policy (``iface-back``). While one is gone a reload
fails (the file names an interface that does not exist).

Files, under /run/xdpshield/run/ (the same for every network namespace,
as /run is): ``STEM-HASH.pid`` (flock'ed for as long as the run lives: the
lock, not the pid in it, says whether the run is alive; JSON: pid, config,
start) and ``STEM-HASH.json`` (the shields it serves and the last reload's
outcome), HASH naming the config file's real path.

Signals are taken synchronously (blocked, then ``sigtimedwait`` in the main
loop): a reload never runs inside a signal handler, and a SIGTERM that
comes during a reload waits for its end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xdpshield import __version__
from xdpshield import netns as _ns
from xdpshield.ebpf import ifindex_of
from xdpshield.errors import (
    AlreadyRunning,
    ConfigError,
    ConfigErrors,
    InterfaceNotFound,
    NotAttached,
    NotRunning,
    XdpShieldError,
)
from xdpshield.ops import web
from xdpshield.ops.apply import IfaceChange, apply_config
from xdpshield.ops.daemon import Daemon, DaemonEvent
from xdpshield.ops.events import EventLog
from xdpshield.ops.fleet import FleetNode, node_name
from xdpshield.policy.config import load_config
from xdpshield.policy.model import Config, FleetConfig, InterfaceConfig, MetricsConfig
from xdpshield.shield.core import (
    RUN_DIR,
    Shield,
    StaleShield,
    check_privileges,
    daemon_record,
    find_stale,
    host_path,
)

__all__ = [
    "DEFAULT_CONFIG",
    "ReloadOutcome",
    "RunInfo",
    "RunLock",
    "Service",
    "find_run",
    "record_paths",
    "request_reload",
    "run_service",
    "sd_notify",
    "stop_run",
]

DEFAULT_CONFIG = "/etc/xdpshield/xdpshield.toml"
RUNS_DIR = RUN_DIR / "run"
#: The signals the service takes (blocked in every thread, waited for in the loop).
SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
#: How often the main loop looks at its duties (a duty that failed is restarted).
TICK_S = 1.0
#: A failed duty is restarted at most this often.
RESTART_S = 10.0

ShieldKey = tuple[str | None, str]  # (netns, iface) as the config names it


# -- the run record ---------------------------------------------------------------------------


def _record_stem(config: str) -> Path:
    real = os.path.realpath(config)
    digest = hashlib.sha256(real.encode()).hexdigest()[:12]
    # No dot in the name: with_suffix() must replace nothing but ours.
    return RUNS_DIR / f"{Path(real).stem.replace('.', '_')}-{digest}"


def record_paths(config: str) -> tuple[Path, Path]:
    """The run record (``.pid``) and state (``.json``) of ``config``."""
    stem = _record_stem(config)
    return stem.with_suffix(".pid"), stem.with_suffix(".json")


def forget_records(config: str) -> None:
    """Remove every file a run of ``config`` left under RUNS_DIR (record,
    state, events): for a lab that made the config up and is done with it.
    Nothing is removed while a run of it lives."""
    pid_path, _ = record_paths(config)
    if _live_run(pid_path, wait_s=0) is not None:
        return
    stem = pid_path.with_suffix("")
    _remove_records(stem.parent.glob(f"{stem.name}.*"))


def _remove_records(paths: Iterable[Path]) -> None:
    """Remove these files of a run, then RUNS_DIR if no other run's are left."""
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()
    with contextlib.suppress(OSError):
        RUNS_DIR.rmdir()  # only when empty


@dataclass(frozen=True)
class RunInfo:
    """A live ``xdpshield run``, as its record says."""

    pid: int
    config: str
    started: float
    pid_path: Path

    @property
    def state_path(self) -> Path:
        return self.pid_path.with_suffix(".json")

    def state(self) -> dict[str, Any]:
        return _read_json(self.state_path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


class RunLock:
    """The run record of one config file, locked for as long as the run lives.

    flock, not the pid: the kernel drops the lock when the process dies
    (SIGKILL included), so a dead run's record never blocks the next one,
    and a pid reused by another process is never taken for the run.
    """

    def __init__(self, fd: int, path: Path, config: str) -> None:
        self.fd, self.path, self.config = fd, path, config

    @classmethod
    def acquire(cls, config: str) -> RunLock:
        real = os.path.realpath(config)
        path = _record_stem(real).with_suffix(".pid")
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + 2.0
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                other = _live_run(path)
                # None: only a reader held it for a moment (find_run): try again.
                if other is not None or time.monotonic() > deadline:
                    pid = other.pid if other is not None else 0
                    raise AlreadyRunning(
                        f"xdpshield run is already running for {real} as pid {pid or '?'} "
                        f"(record {path}): 'xdpshield reload' or 'xdpshield stop' it",
                        pid,
                    ) from None
                time.sleep(0.01)
                continue
            # A run that stopped meanwhile unlinked the file we locked: lock the new one.
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == path.stat().st_ino:
                    break
            os.close(fd)
        record = {"pid": os.getpid(), "config": real, "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        return cls(fd, path, real)

    @property
    def state_path(self) -> Path:
        return self.path.with_suffix(".json")

    def release(self) -> None:
        """Remove the record (the state stays: ``stop`` reads it), then unlock."""
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)


def _live_run(pid_path: Path, wait_s: float = 1.0) -> RunInfo | None:
    """The run holding ``pid_path``'s lock, or None when no process holds it."""
    try:
        fd = os.open(pid_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # locked: alive
        else:
            return None
        # The record is written just after the lock is taken: wait for it.
        deadline = time.monotonic() + wait_s
        while True:
            try:
                rec = json.loads(os.pread(fd, 65536, 0) or b"null")
                return RunInfo(int(rec["pid"]), str(rec["config"]), float(rec["started"]), pid_path)
            except (ValueError, TypeError, KeyError):
                if time.monotonic() > deadline:
                    return RunInfo(0, "?", 0.0, pid_path)
                time.sleep(0.02)
    finally:
        os.close(fd)


def find_run(config: str | None = None) -> RunInfo:
    """The live run of ``config``; with None, that of the default config,
    else the only live run there is. NotRunning when there is none."""
    if config is not None:
        found = _live_run(_record_stem(config).with_suffix(".pid"))
        if found is None:
            raise NotRunning(f"no xdpshield run is running for {os.path.realpath(config)}")
        if found.pid <= 0:  # never signal pid 0 (our own process group)
            raise XdpShieldError(f"the run record {found.pid_path} is locked but unreadable")
        return found
    with contextlib.suppress(NotRunning):
        return find_run(DEFAULT_CONFIG)
    live = [r for p in sorted(RUNS_DIR.glob("*.pid")) if (r := _live_run(p)) is not None]
    if len(live) == 1 and live[0].pid > 0:
        return live[0]
    if not live:
        raise NotRunning("no xdpshield run is running")
    if len(live) == 1:
        raise XdpShieldError(f"the run record {live[0].pid_path} is locked but unreadable")
    raise NotRunning(
        "several xdpshield runs are running: name one with --config ("
        + ", ".join(f"{r.config}: pid {r.pid}" for r in live)
        + ")"
    )


# -- reload -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did, as the run records it."""

    #: "applied"; "config": the file has errors, nothing changed; "failed":
    #: applying it failed (a verifier rejection, ...), what ran keeps running
    result: str
    started: float
    finished: float
    errors: tuple[str, ...] = ()
    #: Problems that did not stop the reload (a restart-only setting changed, ...).
    warnings: tuple[str, ...] = ()
    #: IfaceChange.as_dict() per interface of the file
    changes: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return self.result == "applied"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReloadOutcome:
        return cls(
            result=str(d["result"]),
            started=float(d["started"]),
            finished=float(d["finished"]),
            errors=tuple(str(e) for e in d.get("errors", ())),
            warnings=tuple(str(w) for w in d.get("warnings", ())),
            changes=tuple(d.get("changes", ())),
        )


def request_reload(
    config: str | None = None, *, timeout_s: float = 30.0, wait: bool = True
) -> tuple[RunInfo, ReloadOutcome | None]:
    """SIGHUP the run of ``config`` (see :func:`find_run`) and, with
    ``wait``, the outcome of the reload that began after the signal (None:
    none within ``timeout_s``)."""
    run = find_run(config)
    sent = time.time()
    os.kill(run.pid, signal.SIGHUP)
    if not wait:
        return run, None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = run.state().get("reload")
        if isinstance(raw, dict) and float(raw.get("started", 0)) >= sent:
            return run, ReloadOutcome.from_dict(raw)
        if _live_run(run.pid_path, wait_s=0) is None:
            raise NotRunning(f"xdpshield run (pid {run.pid}) exited before it reloaded")
        time.sleep(0.05)
    return run, None


# -- stop -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stopped:
    """What ``stop`` did to one shield."""

    iface: str
    netns: str | None
    #: "unloaded", "not loaded", "stale removed" (its interface is gone)
    what: str


def stop_run(
    config: str | None = None, *, purge: bool = False, timeout_s: float = 30.0
) -> tuple[RunInfo | None, list[Stopped]]:
    """End the run of ``config`` (SIGTERM, and wait until it is gone) and
    unload every shield it served (``purge``: their kept keys and verified
    sources too). With no run, the shields its last run recorded, else
    those the file names."""
    try:
        run: RunInfo | None = find_run(config)
    except NotRunning:
        run = None
    path = run.config if run is not None else (config or DEFAULT_CONFIG)
    state = _read_json(record_paths(path)[1])
    if run is not None:
        os.kill(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _live_run(run.pid_path, wait_s=0) is not None:
            if time.monotonic() > deadline:
                raise XdpShieldError(
                    f"xdpshield run (pid {run.pid}) did not exit within {timeout_s:g} s "
                    "of SIGTERM: nothing was unloaded"
                )
            time.sleep(0.05)
    raw = state.get("shields")
    if isinstance(raw, list):
        targets = [(s.get("netns"), str(s["iface"])) for s in raw if isinstance(s, dict)]
    else:
        targets = [(ic.netns, ic.name) for ic in load_config(path).interfaces]
    done = [_unload(iface, ns, purge) for ns, iface in targets]
    pid_path, state_path = record_paths(path)
    # The events stay (what happened is still worth reading); a killed run's
    # record goes too: nothing holds it.
    live = _live_run(pid_path, wait_s=0) is not None
    _remove_records([state_path] if live else [state_path, pid_path])
    return run, done


def _unload(iface: str, ns: str | None, purge: bool) -> Stopped:
    try:
        shield = Shield.open(iface, netns=ns)
    except NotAttached:
        return Stopped(iface, ns, "not loaded")
    except XdpShieldError:  # the interface or its namespace is gone
        stale = find_stale(iface, ns)
        if stale is None:
            raise
        stale.remove()
        return Stopped(iface, ns, "stale removed")
    shield.unload(purge=purge)
    return Stopped(iface, ns, "unloaded")


# -- sd_notify --------------------------------------------------------------------------------


def sd_notify(state: str) -> bool:
    """Tell systemd (Type=notify) how the service is: "READY=1", "RELOADING=1",
    "STOPPING=1", "STATUS=...". The datagram protocol itself (a dozen lines),
    not libsystemd: no new dependency. False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # an abstract socket
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError:
        return False
    return True


# -- the service ------------------------------------------------------------------------------


class _Duty:
    """One shield's Daemon, in its own thread."""

    def __init__(
        self, key: ShieldKey, shield: Shield, log: EventLog, *, rotate: bool = True
    ) -> None:
        self.key = key
        self.log = log
        self.iface = shield.iface
        self.stop = threading.Event()
        # rotate False: the fleet duty owns the cookie keys (ops/fleet.py).
        self.daemon = Daemon(shield, on_event=self._event, rotate=rotate)
        self.error: BaseException | None = None
        self.unloaded = False
        self.thread = threading.Thread(
            target=self._run, name=f"xdpshield-{self.iface}", daemon=True
        )
        self.thread.start()

    @property
    def shield(self) -> Shield:
        return self.daemon.shield

    def _run(self) -> None:
        try:
            self.daemon.run(self.stop)
        except Exception as exc:  # any failure: the service restarts the duty
            self.error = exc
            self.log("duty-failed", level="error", iface=self.iface, error=str(exc))

    def _event(self, ev: DaemonEvent) -> None:
        fields: dict[str, Any] = {"epoch": ev.epoch} if ev.epoch is not None else {}
        if ev.what in ("aged", "seen", "expired"):
            fields["removed"] = ev.removed
        fields.update(ev.fields)
        if ev.what == "unloaded":
            self.unloaded = True
            self.log(
                "shield-gone",
                level="warning",
                iface=self.iface,
                why="unloaded by someone else; not served until the next reload",
            )
            return
        if ev.what == "reopened":
            fields["why"] = "reloaded by someone else; serving the new one"
        self.log(ev.what, iface=self.iface, **fields)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.daemon.shield.close()


class _MetricsServer:
    def __init__(self, mc: MetricsConfig, shields: Callable[[], list[Shield]]) -> None:
        self.config = mc
        # /metrics, and the local page at / (ops/web.py); XdpShieldError when it cannot listen.
        self.web = web.serve(mc.host, mc.port, shields)

    def close(self) -> None:
        self.web.close()


@dataclass
class _State:
    """What the service runs now: the config applied last, a duty per shield."""

    config: Config | None = None
    duties: dict[ShieldKey, _Duty] = field(default_factory=dict)
    restart_after: dict[ShieldKey, float] = field(default_factory=dict)
    #: Interfaces of the config that are gone (deleted, or their namespace
    #: is): why; their shield is loaded again when they come back.
    gone: dict[ShieldKey, str] = field(default_factory=dict)


class Service:
    """The shields of one config file, their duties, metrics and event log."""

    def __init__(
        self,
        config_path: str,
        log: EventLog,
        *,
        notify: Callable[[str], bool] = sd_notify,
    ) -> None:
        self.config_path = config_path
        self.log = log
        self.notify = notify
        self.state = _State()
        self.metrics: _MetricsServer | None = None
        self.lock: RunLock | None = None
        self._duties_lock = threading.Lock()  # the metrics thread reads the duties
        #: [fleet]: this run's node (keys, lists and blocks shared; ops/fleet.py).
        self.fleet: FleetNode | None = None

    # -- start and stop

    def start(self) -> None:
        """Check, lock, bind, apply, serve; on any failure nothing is left
        of this start (no shield it loaded, no record, no listener)."""
        cfg = load_config(self.config_path)  # ConfigErrors: nothing touched yet
        check_privileges()
        self.lock = RunLock.acquire(self.config_path)
        try:
            self.log("starting", config=self.lock.config, pid=os.getpid(), version=__version__)
            if cfg.metrics.enabled:
                self.metrics = _MetricsServer(cfg.metrics, self.shields)
            self._fleet_cfg = cfg.fleet  # before any duty: the fleet owns the keys
            changes = apply_config(cfg, upgrade=True)
            try:
                self._commit(cfg, changes, initial=True)
                self._start_fleet(cfg)
            except BaseException:
                # Nothing half-done: what this start loaded goes again.
                for ch in changes:
                    if ch.load:
                        with contextlib.suppress(XdpShieldError, OSError):
                            Shield.open(ch.iface, netns=ch.netns).unload()
                raise
        except BaseException:
            self.close(quiet=True)
            raise
        if self.metrics is not None:
            self.log("metrics", listen=self.metrics.config.listen)
        self.notify(f"READY=1\nSTATUS=serving {len(self.state.duties)} shields")
        self.log("ready", shields=len(self.state.duties))

    def close(self, *, quiet: bool = False) -> None:
        """End the duties and the metrics server, release the record. The
        shields stay attached and pinned: the data path goes on alone."""
        if not quiet:
            self.notify("STOPPING=1")
        if self.fleet is not None:
            self.fleet.close()
            self.fleet = None
        with self._duties_lock:
            duties = list(self.state.duties.values())
            self.state.duties = {}
        for d in duties:
            d.close()
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if not quiet:
            self.log(
                "stopped",
                shields=len(duties),
                why="the shields stay attached; 'xdpshield stop' removes them",
            )

    def shields(self) -> list[Shield]:
        """The shields served now (for the metrics)."""
        with self._duties_lock:
            return [d.shield for d in self.state.duties.values() if not d.unloaded]

    # -- the loop

    def serve(self, stop: threading.Event | None = None) -> None:
        """Take signals until SIGTERM or SIGINT (or ``stop``): SIGHUP reloads.
        The signals must be blocked in every thread (:func:`run_service`)."""
        while stop is None or not stop.is_set():
            info = signal.sigtimedwait(SIGNALS, TICK_S)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                self.log("stopping", signal=signal.Signals(info.si_signo).name)
                break
            if info is not None and info.si_signo == signal.SIGHUP:
                self.reload()
            self._check_interfaces()
            self._check_duties()
        self.close()

    # -- interfaces that come and go

    def _check_interfaces(self) -> None:
        """An interface of the config that disappeared: its duty ends and its
        pins go; one that came back (same name): its shield is loaded again
        with the config's policy."""
        cfg = self.state.config
        if cfg is None:
            return
        for ic in cfg.interfaces:
            key = (ic.netns, ic.name)
            duty = self.state.duties.get(key)
            why = _absent(key, duty.shield.ifindex if duty is not None else None)
            if key in self.state.gone:
                if why is None and time.monotonic() >= self.state.restart_after.get(key, 0.0):
                    self._iface_back(cfg, ic)
            elif why is not None:
                self._iface_gone(key, why)

    def _iface_gone(self, key: ShieldKey, why: str) -> None:
        ns, iface = key
        with self._duties_lock:
            duty = self.state.duties.pop(key, None)
        removed: list[str] = []
        stale: StaleShield | None = None
        if duty is not None:
            shield = duty.shield
            duty.close()
            stale = StaleShield(iface, ns, why, shield.pin_dir, shield.meta_path)
        else:
            with contextlib.suppress(XdpShieldError, OSError):
                stale = find_stale(iface, ns)
        if stale is not None and stale.pin_dir.is_dir():
            removed = sorted(p.name for p in stale.pin_dir.iterdir())
            try:
                stale.remove()
            except OSError as exc:
                self.log("unpin-failed", level="error", iface=iface, error=str(exc))
        self.state.gone[key] = why
        self.log(
            "iface-gone", level="warning", iface=iface, netns=ns, why=why,
            unpinned=host_path(stale.pin_dir) if removed and stale else None,
            pins=removed, next="its shield is loaded again when it comes back",
        )  # fmt: skip
        self._write_state(None)

    def _iface_back(self, cfg: Config, ic: InterfaceConfig) -> None:
        key = (ic.netns, ic.name)
        one = dataclasses.replace(cfg, interfaces=(ic,))
        try:
            (ch,) = apply_config(one)
            shield = Shield.open(ic.name, netns=ic.netns)
        except XdpShieldError as exc:
            self.state.restart_after[key] = time.monotonic() + RESTART_S
            self.log("iface-back-failed", level="error", iface=ic.name, error=str(exc))
            return
        del self.state.gone[key]
        self.log(
            "iface-back", iface=ic.name, netns=ic.netns, prog_id=shield.program.id,
            loaded=ch.load, why="the interface is back: its shield is loaded again",
        )  # fmt: skip
        self._serve_shield(key, shield)
        self._write_state(None)

    def _check_duties(self) -> None:
        now = time.monotonic()
        for key, d in list(self.state.duties.items()):
            if d.thread.is_alive():
                continue
            if d.unloaded:  # logged; a reload loads it again
                with self._duties_lock:
                    del self.state.duties[key]
                d.shield.close()
                continue
            if now < self.state.restart_after.get(key, 0.0):
                continue
            self.state.restart_after[key] = now + RESTART_S
            try:
                shield = Shield.open(key[1], netns=key[0])
            except XdpShieldError as exc:
                self.log("duty-restart-failed", level="error", iface=key[1], error=str(exc))
                continue
            d.shield.close()
            with self._duties_lock:
                self.state.duties[key] = _Duty(key, shield, self.log, rotate=self._own_keys)
            self.log("duty-restarted", iface=key[1])

    # -- reload

    def reload(self) -> ReloadOutcome:
        """Re-read the file and apply it; on any failure keep what runs."""
        started = time.time()
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        self.log("reloading", config=self.config_path)
        try:
            cfg = load_config(self.config_path)
            changes = apply_config(cfg)
        except ConfigErrors as exc:  # found before anything changed
            outcome = ReloadOutcome("config", started, time.time(), tuple(map(str, exc.errors)))
        except ConfigError as exc:  # a rule set that cannot compile, ...: nothing changed
            outcome = ReloadOutcome("config", started, time.time(), (str(exc),))
        except XdpShieldError as exc:  # the verifier, the kernel: new shields were unloaded
            outcome = ReloadOutcome("failed", started, time.time(), (str(exc),))
            self._restore()
        else:
            try:
                warnings = self._commit(cfg, changes, initial=False)
            except XdpShieldError as exc:
                outcome = ReloadOutcome("failed", started, time.time(), (str(exc),))
            else:
                outcome = ReloadOutcome(
                    "applied",
                    started,
                    time.time(),
                    warnings=tuple(warnings),
                    changes=tuple(c.as_dict() for c in changes),
                )
        if outcome.ok:
            self.log("reloaded", seconds=round(outcome.finished - started, 3))
        else:
            for e in outcome.errors:
                self.log(
                    "reload-failed",
                    level="error",
                    result=outcome.result,
                    error=e,
                    kept="the running shields and policy",
                )
        self._write_state(outcome)
        self.notify(f"READY=1\nSTATUS=serving {len(self.state.duties)} shields")
        return outcome

    def _restore(self) -> None:
        """After a failed apply: shields that switched to the new policy go
        back to the old file's (new shields were unloaded by apply_config)."""
        old = self.state.config
        if old is None:
            return
        try:
            apply_config(old)
        except XdpShieldError as exc:
            self.log("restore-failed", level="error", error=str(exc))
        else:
            self.log("restored", level="warning", config=old.path)

    # -- what a successful apply changes here

    def _commit(self, cfg: Config, changes: list[IfaceChange], *, initial: bool) -> list[str]:
        warnings: list[str] = []
        wanted: dict[ShieldKey, IfaceChange] = {
            (ic.netns, ic.name): ch for ic, ch in zip(cfg.interfaces, changes, strict=True)
        }
        for key in [k for k in self.state.duties if k not in wanted]:
            with self._duties_lock:
                gone = self.state.duties.pop(key)
            gone.close()
            try:
                Shield.open(key[1], netns=key[0]).unload()
            except XdpShieldError as exc:
                warnings.append(f"{key[1]}: no longer in the config, but unload failed: {exc}")
                self.log("unload-failed", level="error", iface=key[1], error=str(exc))
            else:
                self.log("unloaded", iface=key[1], why="no longer in the config")
        for key, ch in wanted.items():
            d = self.state.duties.get(key)
            shield = d.shield if d is not None else Shield.open(key[1], netns=key[0])
            self._log_change(ch, shield, initial=initial)
            for what, (have, want) in ch.restart.items():
                text = f"{key[1]}: {what} is {have} running, {want} in the config: " + (
                    "takes effect at the next load ('xdpshield stop', then run)"
                )
                warnings.append(text)
                self.log(
                    "restart-needed", level="warning", iface=key[1], key=what, running=have,
                    wanted=want,
                )  # fmt: skip
            if d is None:
                self._serve_shield(key, shield)
        self.state.gone = {}  # the apply found every interface of the file
        if not initial and self.state.config is not None and cfg.fleet != self._fleet_cfg:
            warnings.append("[fleet] changed: takes effect at the next start of run")
            self.log("restart-needed", level="warning", key="fleet")
        metrics_warning = self._switch_metrics(cfg.metrics) if not initial else None
        if metrics_warning:
            warnings.append(metrics_warning)
        self.state.config = cfg
        self._write_state(None)
        return warnings

    def _serve_shield(self, key: ShieldKey, shield: Shield) -> None:
        rec = daemon_record(shield.meta_path)
        if rec is not None and int(rec["pid"]) != os.getpid():
            self.log(
                "other-daemon",
                level="warning",
                iface=key[1],
                pid=int(rec["pid"]),
                why="another xdpshield daemon serves this shield too: stop it",
            )
        with self._duties_lock:
            self.state.duties[key] = _Duty(key, shield, self.log, rotate=self._own_keys)

    def _log_change(self, ch: IfaceChange, shield: Shield, *, initial: bool) -> None:
        fields: dict[str, Any] = {"netns": ch.netns, "prog_id": shield.program.id}
        added, removed = ch.ports
        if added or removed:
            fields["protect"] = " ".join([f"+{p}" for p in added] + [f"-{p}" for p in removed])
        for which, (_, _, n_plus, n_minus) in ch.lists.items():
            if n_plus or n_minus:
                fields[which] = f"+{n_plus} -{n_minus}"
        if ch.hygiene and not ch.load:  # at a load: every key, from nothing
            fields["hygiene"] = ",".join(ch.hygiene)
        if ch.limits:
            fields["limits"] = ",".join(ch.limits)
        for kind, sign in (("added", "+"), ("removed", "-"), ("changed", "~")):
            for name in ch.rules.get(kind, []):
                fields.setdefault("rules", []).append(sign + name)
        if ch.load:
            rec = shield.record
            self.log(
                "loaded", iface=ch.iface, mode=rec.xdp_mode, handshake=rec.handshake.value,
                **fields,
            )  # fmt: skip
            return
        event = "adopted" if initial else ("updated" if not ch.empty else "unchanged")
        up = ch.upgrade or {}
        if up.get("result") == "upgraded":
            self.log("upgraded", iface=ch.iface, **{k: v for k, v in up.items() if k != "result"})
        elif up:
            self.log(
                "upgrade-refused" if up["result"] == "refused" else "upgrade-failed",
                level="error", iface=ch.iface, error=up["error"],
                kept="the running shield, as it was",
            )  # fmt: skip
        if initial:
            fields["object"] = (
                "upgraded" if up.get("result") == "upgraded"
                else "differs" if "object" in ch.restart
                else "same" if shield.record.object_sha256 else "unknown"
            )  # fmt: skip
        self.log(event, iface=ch.iface, **fields)

    # -- the fleet (ops/fleet.py)

    _fleet_cfg: FleetConfig | None = None

    @property
    def _own_keys(self) -> bool:
        """Whether each shield's daemon rotates its keys (not in a fleet)."""
        return self._fleet_cfg is None

    def _start_fleet(self, cfg: Config) -> None:
        """Join the fleet before "ready": its keys, lists and blocks are in
        every shield when the run says it serves."""
        if cfg.fleet is None:
            return
        self.fleet = FleetNode(cfg.fleet, node_name(cfg), self.shields, self.log)
        self.fleet.start()

    def _switch_metrics(self, mc: MetricsConfig) -> str | None:
        old = self.metrics
        if (old.config if old is not None else None) == (mc if mc.enabled else None):
            return None
        if old is not None:
            old.close()
            self.metrics = None
        if not mc.enabled:
            self.log("metrics", listen=None, why="disabled")
            return None
        try:
            self.metrics = _MetricsServer(mc, self.shields)
        except XdpShieldError as exc:
            self.log("metrics-failed", level="error", error=str(exc))
            if old is not None:
                with contextlib.suppress(XdpShieldError):
                    self.metrics = _MetricsServer(old.config, self.shields)
            return str(exc)
        self.log("metrics", listen=mc.listen)
        return None

    def _write_state(self, outcome: ReloadOutcome | None) -> None:
        if self.lock is None:
            return
        state = _read_json(self.lock.state_path)
        with self._duties_lock:
            state["shields"] = [
                {"iface": d.shield.iface, "netns": d.shield.netns}
                for d in self.state.duties.values()
            ]
        state["gone"] = [
            {"iface": iface, "netns": ns, "why": why}
            for (ns, iface), why in self.state.gone.items()
        ]
        state["pid"] = os.getpid()
        state["config"] = self.lock.config
        if outcome is not None:
            state["reload"] = outcome.as_dict()
        _write_json(self.lock.state_path, state)


def _absent(key: ShieldKey, ifindex: int | None) -> str | None:
    """Why the interface ``key`` is not there (None: it is; with ``ifindex``,
    the index its shield was loaded on, it must still have that one)."""
    ns, iface = key
    if ns is not None and not _ns.exists(ns):
        return f"network namespace {ns} is gone"
    try:
        with _ns.enter(ns):
            now = ifindex_of(iface)
    except InterfaceNotFound:
        return f"interface {iface} is gone"
    except XdpShieldError as exc:
        return str(exc)
    if ifindex is not None and now != ifindex:
        return f"interface {iface} was deleted and created again (index {ifindex}, now {now})"
    return None


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block the service's signals in this thread and every thread it starts."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run_service(config_path: str, log: EventLog) -> None:
    """``xdpshield run``: start, serve until SIGTERM or SIGINT, stop (the
    shields stay). Raises what stopped the start (ConfigErrors,
    AlreadyRunning, ...): then nothing of it is left."""
    with _signals_blocked():
        service = Service(config_path, log)
        service.start()
        try:
            service.serve()
        except BaseException:
            service.close()
            raise
