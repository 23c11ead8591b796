"""Running the shield unattended: daemon, metrics."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from prometheus_client import generate_latest, start_http_server

from xdpshield import netns
from xdpshield.errors import XdpShieldError
from xdpshield.ops.daemon import Daemon, DaemonEvent
from xdpshield.ops.metrics import registry_for
from xdpshield.shield.core import (
    Shield,
    list_shields,
    stale_shields,
)

from ._console import AddCommand, out


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
            "unloaded": "the shield was unloaded; the daemon exits",
        }.get(ev.what, ev.what)
        out.print(f"{time.strftime('%H:%M:%S')} {a.iface}: {ev.what} ({what})")

    daemon = Daemon(shield, rotate_s=a.rotate_keys, seen_s=a.seen_rebuild, on_event=log)
    if a.metrics:
        host, port = _listen_addr(a.metrics)
        start_http_server(
            port, addr=host or "0.0.0.0", registry=registry_for(lambda: [daemon.shield])
        )
        out.print(f"metrics on http://{host or '0.0.0.0'}:{port}/metrics")
    out.print(f"xdpshield daemon on {a.iface}: keys rotate every {daemon.rotate_s:g} s")
    daemon.run(stop)
    daemon.shield.close()
    return 0


def cmd_metrics(a: argparse.Namespace) -> int:

    stale = {st.iface for st in stale_shields() if st.netns == netns.current_name()}
    ifaces = [a.iface] if a.iface else [i for i in list_shields() if i not in stale]
    shields = [Shield.open(i) for i in ifaces]
    sys.stdout.write(generate_latest(registry_for(shields)).decode())
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
        "--metrics", default="", metavar="[HOST:]PORT", help="serve Prometheus metrics (e.g. :9435)"
    )

    sp = add("metrics", cmd_metrics, "print the shields' metrics in Prometheus text format")
    sp.add_argument("iface", nargs="?", default=None)
