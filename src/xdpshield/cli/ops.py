"""Running the shield unattended: run, reload, stop, daemon, metrics, events."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from prometheus_client import generate_latest
from rich.markup import escape

from xdpshield import netns
from xdpshield.errors import ConfigError, ConfigErrors, XdpShieldError
from xdpshield.ops import web
from xdpshield.ops.apply import IfaceChange
from xdpshield.ops.daemon import Daemon, DaemonEvent
from xdpshield.ops.events import (
    LOG_FORMATS,
    EventFile,
    EventLog,
    follow,
    format_text,
    parse_ts,
    read_events,
)
from xdpshield.ops.metrics import registry_for
from xdpshield.ops.service import (
    DEFAULT_CONFIG,
    RUNS_DIR,
    record_paths,
    request_reload,
    run_service,
    stop_run,
)
from xdpshield.policy.config import parse_duration
from xdpshield.shield.core import (
    Shield,
    list_shields,
    stale_shields,
)

from ._console import AddCommand, err, out
from .policy import EXIT_BAD_INPUT, print_change


def _listen_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        return (host.strip("[]") if sep else "127.0.0.1"), int(port)
    except ValueError:
        raise XdpShieldError(f"--metrics {text!r}: expected [HOST:]PORT, e.g. :9435") from None


def cmd_daemon(a: argparse.Namespace) -> int:

    for opt, value in (("--rotate-keys", a.rotate_keys), ("--seen-rebuild", a.seen_rebuild)):
        if value is not None and not 1.0 <= value <= 86400.0:
            raise XdpShieldError(f"{opt} {value:g}: the period must be 1 to 86400 seconds")
    shield = Shield.open(a.iface)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def log(ev: DaemonEvent) -> None:
        what = {
            "rotated": f"key epoch {ev.epoch}",
            "aged": f"{ev.removed} expired",
            "seen": f"{ev.removed} stale sources cleared",
            "reopened": f"the shield was reloaded; key epoch {ev.epoch}",
            "blocked": " ".join(f"{k}={v}" for k, v in ev.fields.items()),
            "unblocked": " ".join(f"{k}={v}" for k, v in ev.fields.items()),
            "unloaded": "the shield was unloaded; the daemon exits",
        }.get(ev.what, ev.what)
        out.print(f"{time.strftime('%H:%M:%S')} {a.iface}: {ev.what} ({what})")

    daemon = Daemon(shield, rotate_s=a.rotate_keys, seen_s=a.seen_rebuild, on_event=log)
    if a.metrics:
        host, port = _listen_addr(a.metrics)
        server = web.serve(host or "0.0.0.0", port, lambda: [daemon.shield])
        out.print(f"metrics on {server.url}/metrics, a live page on {server.url}/")
    out.print(f"xdpshield daemon on {a.iface}: keys rotate every {daemon.rotate_s:g} s")
    daemon.run(stop)
    daemon.shield.close()
    return 0


def events_path(config: str) -> Path:
    """Where ``run`` of ``config`` keeps its events (beside its run record)."""
    return record_paths(config)[0].with_suffix(".events")


def cmd_run(a: argparse.Namespace) -> int:
    log = EventLog(a.log_format, file=EventFile(events_path(a.config)))
    try:
        run_service(a.config, log)
    except ConfigErrors as exc:
        for e in exc.errors:
            log("start-failed", level="error", error=str(e))
        return EXIT_BAD_INPUT
    except XdpShieldError as exc:
        # In the log's format: a json log stays one object per line.
        log("start-failed", level="error", error=str(exc))
        return EXIT_BAD_INPUT if isinstance(exc, ConfigError) else 1
    return 0


def cmd_reload(a: argparse.Namespace) -> int:
    run, outcome = request_reload(a.config, timeout_s=a.timeout, wait=not a.no_wait)
    if a.no_wait:
        out.print(f"sent SIGHUP to xdpshield run pid {run.pid} ({run.config})")
        return 0
    if outcome is None:
        err.print(
            f"[yellow]sent SIGHUP to xdpshield run pid {run.pid}, but it recorded no outcome "
            f"within {a.timeout:g} s: see its log[/]"
        )
        return 1
    if not outcome.ok:
        what = "has errors" if outcome.result == "config" else "failed to apply"
        err.print(f"[red]{escape(run.config)} {what}; the running shields and policy stay:[/]")
        for e in outcome.errors:
            err.print(escape(e))
        return EXIT_BAD_INPUT if outcome.result == "config" else 1
    took = outcome.finished - outcome.started
    out.print(f"reloaded {run.config} (pid {run.pid}) in {took:.2f} s")
    for ch in outcome.changes:
        print_change(IfaceChange(**ch), applied=True)
    for w in outcome.warnings:
        err.print(f"[yellow]{escape(w)}[/]")
    return 0


def cmd_stop(a: argparse.Namespace) -> int:
    run, done = stop_run(a.config, purge=a.purge, timeout_s=a.timeout)
    if run is not None:
        out.print(f"stopped xdpshield run pid {run.pid} ({run.config})")
    for st in done:
        where = f" (netns {st.netns})" if st.netns else ""
        out.print(f"{st.iface}{where}: {st.what}")
    return 0


def cmd_metrics(a: argparse.Namespace) -> int:

    stale = {st.iface for st in stale_shields() if st.netns == netns.current_name()}
    ifaces = [a.iface] if a.iface else [i for i in list_shields() if i not in stale]
    shields = [Shield.open(i) for i in ifaces]
    sys.stdout.write(generate_latest(registry_for(shields)).decode())
    return 0


def _find_events(config: str | None) -> Path:
    if config is not None:
        return events_path(config)
    default = events_path(DEFAULT_CONFIG)
    if default.exists():
        return default
    found = sorted(RUNS_DIR.glob("*.events"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise XdpShieldError(
            f"no events kept in {RUNS_DIR}: 'xdpshield run' keeps them while it runs"
        )
    raise XdpShieldError(
        "the events of several runs are kept: name one with --config ("
        + ", ".join(p.name for p in found)
        + ")"
    )


def _since(text: str | None) -> float | None:
    """A time: seconds ago ("10m", "90s", "1h") or a UTC time ("2026-12-05T13:01:56")."""
    if text is None:
        return None
    try:
        return time.time() - parse_duration(text)
    except ConfigError:
        pass
    try:
        return parse_ts(text.replace(" ", "T"))
    except ValueError:
        raise XdpShieldError(
            f"--since {text!r}: expected a duration (10m, 1h) or a UTC time (2026-12-05T13:01:56)"
        ) from None


def cmd_events(a: argparse.Namespace) -> int:
    path = _find_events(a.config)
    since = _since(a.since)

    def show(rec: dict[str, object]) -> None:
        if a.iface is not None and rec.get("iface") != a.iface:
            return
        sys.stdout.write((json.dumps(rec) if a.json else format_text(dict(rec))) + "\n")

    if not a.follow:
        if not path.exists() and not path.with_name(path.name + ".1").exists():
            raise XdpShieldError(f"no events kept at {path}: has 'xdpshield run' run this file?")
        for rec in read_events(path, since=since):
            show(rec)
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for rec in follow(path, stop, since=since):
        show(rec)
        sys.stdout.flush()
    return 0


def add_parsers(add: AddCommand) -> None:
    """This group's subcommands."""
    sp = add("daemon", cmd_daemon, "rotate cookie keys, age verified sources, serve metrics")
    sp.add_argument("iface")
    sp.add_argument(
        "--rotate-keys",
        type=float,
        default=None,
        metavar="S",
        help="key rotation period (default: as loaded, 60 s)",
    )
    sp.add_argument(
        "--seen-rebuild",
        type=float,
        default=300.0,
        metavar="S",
        help="transparent mode: cut the seen-sources filter back to live sockets every S s",
    )
    sp.add_argument(
        "--metrics",
        default="",
        metavar="[HOST:]PORT",
        help="serve /metrics and a live page at / (e.g. 127.0.0.1:9435; :9435 is every address)",
    )

    sp = add(
        "run",
        cmd_run,
        "apply a config file and serve its shields in the foreground (SIGHUP reloads)",
    )
    sp.add_argument(
        "--config", default=DEFAULT_CONFIG, metavar="FILE", help=f"default: {DEFAULT_CONFIG}"
    )
    sp.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="event log on stderr: text lines or one JSON object per line "
        "(also kept as JSON for 'xdpshield events')",
    )

    sp = add("reload", cmd_reload, "make the running 'xdpshield run' re-read its config")
    sp.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help=f"the run of this file (default: that of {DEFAULT_CONFIG}, else the only one)",
    )
    sp.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="wait this long for the outcome (default 30; none: exit 1)",
    )
    sp.add_argument(
        "--no-wait", action="store_true", help="exit once the signal is sent (status 0)"
    )

    sp = add("stop", cmd_stop, "end 'xdpshield run' and unload every shield of its config")
    sp.add_argument("--config", default=None, metavar="FILE", help="as for reload")
    sp.add_argument(
        "--purge", action="store_true", help="also drop the kept cookie keys and verified sources"
    )
    sp.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="wait this long for the run to exit (default 30; else nothing is unloaded)",
    )

    sp = add("metrics", cmd_metrics, "print the shields' metrics in Prometheus text format")
    sp.add_argument("iface", nargs="?", default=None)

    sp = add("events", cmd_events, "print the events of 'xdpshield run' (blocks, applies, ...)")
    sp.add_argument("--config", default=None, metavar="FILE", help="as for reload")
    sp.add_argument(
        "--follow", "-f", action="store_true", help="then print each new event (Ctrl-C ends)"
    )
    sp.add_argument(
        "--since", default=None, metavar="TIME", help="only events since: 10m, 1h, or a UTC time"
    )
    sp.add_argument("--iface", default=None, help="only the events of this interface")
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
