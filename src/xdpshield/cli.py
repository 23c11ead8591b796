"""The ``xdpshield`` command: parses arguments and prints; the library does the work."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.table import Table

from . import __version__, netns
from .bpf import XdpMode
from .datapath import GuardOptions
from .errors import InterfaceNotFound, NotAttached, XdpShieldError
from .shield import (
    HANDSHAKE_MODES,
    Shield,
    find_stale,
    forget_state,
    kept_state,
    list_shields,
    parse_ports,
    stale_shields,
)
from .stand import ROLES, Stand
from .traffic import KINDS, flood

__all__ = ["main"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _human(n: float) -> str:
    for unit in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


# -- subcommands ---------------------------------------------------------------------
def cmd_load(a: argparse.Namespace) -> int:
    handshake = a.handshake or "auto"
    xdp_mode = a.mode
    if xdp_mode in ("reset", "transparent"):  # `--mode reset` reads naturally; accept it
        if a.handshake not in (None, xdp_mode):
            raise XdpShieldError(
                f"--mode {xdp_mode} and --handshake {a.handshake} disagree: --mode "
                f"{xdp_mode} is a shorthand for --handshake {xdp_mode}; give one of them"
            )
        handshake, xdp_mode = xdp_mode, "auto"
    ports = parse_ports(a.protect) if a.protect is not None else []
    if a.protect is not None and not ports:
        raise XdpShieldError(
            f"--protect {a.protect!r} names no port, so nothing would be protected; "
            "give ports (e.g. --protect 22,443) or leave --protect out"
        )
    options = GuardOptions(debug=a.debug, syn_flood_pps=a.syn_flood_pps, rst_pps=a.rst_pps)
    shield = Shield.load(
        a.iface,
        ports=ports,
        xdp_mode=xdp_mode,
        handshake=handshake,
        debug=a.debug,
        options=options,
    )
    with shield:
        st = shield.status()
    for warning in shield.warnings:
        err.print(f"[yellow]xdpshield: warning:[/] {warning}")
    if not ports:
        err.print(
            f"[yellow]xdpshield: warning:[/] no TCP port is protected on {a.iface}: add some "
            f"with 'xdpshield ports {a.iface} add 22,443' (or load with --protect)"
        )
    out.print(
        f"xdpshield loaded on [bold]{st.iface}[/] ({st.xdp_mode} XDP, prog id "
        f"{st.prog_id}, handshake {st.handshake}); protecting "
        f"{_ports_text(st.ports)}"
    )
    out.print(f"handshake {st.handshake}: {st.handshake_why}")
    return 0


def cmd_unload(a: argparse.Namespace) -> int:
    if a.stale:
        if a.iface or a.netns:
            raise XdpShieldError("--stale removes every stale shield: give no interface or --netns")
        gone = stale_shields()
        for st in gone:
            st.remove()
            where = f" of namespace {st.netns}" if st.netns else ""
            out.print(f"removed the stale shield on {st.iface}{where} ({st.why})")
        if not gone:
            out.print("no stale shield found")
        return 0
    if not a.iface:
        raise XdpShieldError("unload needs an interface (or --stale for every stale shield)")
    if a.netns and not netns.exists(a.netns):
        gone_ns = find_stale(a.iface, a.netns)
        if gone_ns is None:
            raise XdpShieldError(
                f"network namespace {a.netns!r} does not exist and left no shield on {a.iface}"
            )
        gone_ns.remove()
        out.print(f"removed the stale shield on {a.iface} of namespace {a.netns} ({gone_ns.why})")
        return 0
    with netns.enter(a.netns or None):
        try:
            shield = Shield.open(a.iface)
        except InterfaceNotFound:
            gone_if = find_stale(a.iface, netns.current_name())
            if gone_if is None:
                raise
            gone_if.remove()
            out.print(f"removed the stale shield on {a.iface} ({gone_if.why})")
            return 0
        except NotAttached:
            if a.purge and forget_state(a.iface):
                out.print(f"removed the state kept for {a.iface} (cookie keys, verified sources)")
                return 0
            if a.iface in kept_state():
                raise NotAttached(
                    f"xdpshield is not loaded on {a.iface}; it keeps the cookie keys and "
                    f"verified sources of an earlier load ('unload {a.iface} --purge' drops them)"
                ) from None
            raise
        shield.unload(purge=a.purge)
    kept = "" if a.purge else "; cookie keys and verified sources kept for the next load"
    out.print(f"xdpshield unloaded from [bold]{a.iface}[/]{kept}")
    return 0


def _ports_text(ports: Sequence[int]) -> str:
    return "TCP " + ",".join(map(str, ports)) if ports else "no TCP ports"


def cmd_status(a: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    stale = stale_shields()
    gone = {st.iface for st in stale if st.netns == netns.current_name()}
    for iface in list_shields():
        if iface in gone:
            continue
        try:
            with Shield.open(iface) as s:
                rows.append(s.status().as_dict())
        except XdpShieldError as exc:
            rows.append({"iface": iface, "attached": False, "error": str(exc)})
    rows += [st.as_dict() for st in stale]
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    for iface in kept_state():
        out.print(
            f"{iface}: not loaded; its cookie keys and verified sources are kept for the "
            f"next load ('xdpshield unload {iface} --purge' drops them)"
        )
    if not rows:
        out.print("no xdpshield loaded in this network namespace")
        return 0
    t = Table("iface", "state", "xdp", "prog", "handshake", "ports", "packets", "up")
    for r in rows:
        if "error" in r:
            t.add_row(r["iface"], "[red]broken[/]", "", "", "", "", "", r["error"])
            continue
        if r.get("stale"):
            t.add_row(r["iface"], "[red]stale[/]", "", "", "", "", "", r["why"])
            continue
        state = "[green]active[/]" if r["attached"] else "[red]detached (stale pins)[/]"
        up = time.time() - r["loaded_at"] if r["loaded_at"] else 0
        t.add_row(
            r["iface"],
            state,
            r["xdp_mode"],
            str(r["prog_id"]),
            r["handshake"],
            ",".join(map(str, r["ports"])) or "-",
            _human(r["totals"]["packets"]),
            f"{up:.0f}s",
        )
    out.print(t)
    for r in rows:
        if r.get("stale"):
            where = f" --netns {r['netns']}" if r.get("netns") else ""
            out.print(
                f"[red]{r['iface']}: stale, {r['why']}[/]: its pins remain at {r['pin_dir']}; "
                f"'xdpshield unload {r['iface']}{where}' (or 'unload --stale') removes them"
            )
            continue
        if "error" in r:
            continue
        out.print(f"{r['iface']}: handshake {r['handshake']} ({r.get('handshake_why') or '-'})")
        age = r.get("key_age_s")
        age_text = f"cookie key {age:.0f} s old" if age is not None else "no cookie key"
        d = r.get("daemon")
        if d:
            out.print(
                f"{r['iface']}: {age_text}, rotated by daemon pid {d['pid']} "
                f"every {d['rotate_s']:g} s"
            )
        else:
            out.print(
                f"[yellow]{r['iface']}: warning: {age_text}; keys never rotate: no daemon "
                f"running (xdpshield daemon {r['iface']})[/]"
            )
        if r["handshake"] == "transparent":
            if not r.get("tc_attached"):
                out.print(f"[red]{r['iface']}: the tc handoff program is not attached[/]")
            if r.get("syncookies") == 0:
                out.print(
                    f"[red]{r['iface']}: net.ipv4.tcp_syncookies is 0: the kernel answers "
                    "handed-over connections with RST; set it to 1[/]"
                )
    return 0


def cmd_stats(a: argparse.Namespace) -> int:
    with Shield.open(a.iface) as s:
        stats = s.stats()
    if a.json:
        print(
            json.dumps(
                {r.label: {"packets": p, "bytes": b} for r, (p, b) in stats.items()}, indent=2
            )
        )
        return 0
    t = Table("reason", "packets", "bytes", title=f"xdpshield verdicts on {a.iface}")
    for r, (p, b) in stats.items():
        t.add_row(r.label, f"{p:,}", f"{b:,}")
    out.print(t)
    return 0


def cmd_ports(a: argparse.Namespace) -> int:
    with Shield.open(a.iface) as s:
        if a.action == "list":
            ports = s.ports
            print(json.dumps(ports) if a.json else (",".join(map(str, ports)) or "(none)"))
            return 0
        if not a.ports:
            raise XdpShieldError(f"'ports {a.action}' needs a port list, e.g. 80,443")
        if a.action == "add":
            s.add_ports(parse_ports(a.ports))
        else:
            s.del_ports(parse_ports(a.ports))
        out.print(f"{a.iface}: protecting {_ports_text(s.ports)}")
    return 0


def _listen_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        return (host.strip("[]") if sep else "127.0.0.1"), int(port)
    except ValueError:
        raise XdpShieldError(f"--metrics {text!r}: expected [HOST:]PORT, e.g. :9435") from None


def cmd_daemon(a: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from .daemon import Daemon, DaemonEvent
    from .metrics import registry_for

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

    try:
        daemon = Daemon(shield, rotate_s=a.rotate_keys, seen_s=a.seen_rebuild, on_event=log)
    except ValueError as exc:
        raise XdpShieldError(str(exc)) from None
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
    from prometheus_client import generate_latest

    from .metrics import registry_for

    stale = {st.iface for st in stale_shields() if st.netns == netns.current_name()}
    ifaces = [a.iface] if a.iface else [i for i in list_shields() if i not in stale]
    shields = [Shield.open(i) for i in ifaces]
    sys.stdout.write(generate_latest(registry_for(shields)).decode())
    return 0


def _stand(a: argparse.Namespace) -> Stand:
    return Stand(prefix=a.prefix)


def cmd_stand(a: argparse.Namespace) -> int:
    stand = _stand(a)
    if a.action == "up":
        st = stand.up()
        out.print(
            f"stand [bold]{stand.prefix}[/] up: client {stand.client4}, server "
            f"{stand.server4} (protected link {stand.server_if} in {stand.ns('server')})"
        )
        return 0 if st.up else 1
    if a.action == "down":
        stand.down()
        out.print(f"stand [bold]{stand.prefix}[/] down")
        return 0
    if a.action == "status":
        st = stand.status()
        if a.json:
            print(json.dumps(dataclasses.asdict(st), indent=2, default=str))
            return 0
        t = Table(
            "namespace",
            "link",
            "up",
            "addresses",
            "xdp",
            title=f"stand {stand.prefix}: {'up' if st.up else 'not up'}",
        )
        for link in st.links:
            xdp = f"{link.xdp.mode} id {link.xdp.prog_id}" if link.xdp else "-"
            t.add_row(
                stand.ns(link.role),
                link.ifname,
                "yes" if link.up else ("absent" if not link.present else "no"),
                " ".join(link.addresses),
                xdp,
            )
        out.print(t)
        return 0 if st.up else 1
    if a.action == "attach":
        with netns.enter(stand.ns("server")):
            shield = Shield.load(
                stand.server_if,
                ports=parse_ports(a.protect),
                xdp_mode=a.mode,
                handshake=a.handshake,
                debug=a.debug,
            )
            with shield:
                sh = shield.status()
        out.print(
            f"xdpshield attached to {stand.server_if} in {stand.ns('server')} "
            f"({sh.xdp_mode} XDP, handshake {sh.handshake})"
        )
        return 0
    if a.action == "detach":
        with netns.enter(stand.ns("server")):
            Shield.open(stand.server_if).unload()
        out.print(f"xdpshield detached from {stand.server_if}")
        return 0
    if a.action == "log":
        for line in stand.log():
            print(line, flush=True)
        return 0
    if a.action == "exec":
        argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
        if not argv:
            raise XdpShieldError(
                "stand exec: no command given, e.g. 'stand exec client -- curl http://198.18.0.2/'"
            )
        r = stand.exec(a.role, argv, timeout=None)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        return r.returncode
    raise XdpShieldError(f"unknown stand action {a.action}")


def cmd_flood(a: argparse.Namespace) -> int:
    stand = _stand(a)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"{a.kind} flood", total=a.duration)

        def progress(sent: int, elapsed: float) -> None:
            bar.update(
                task, completed=elapsed, description=f"{a.kind} flood: {_human(sent)} frames"
            )

        r = flood(
            a.kind,
            stand=stand,
            rate_pps=a.rate,
            duration_s=a.duration,
            count=a.count,
            sources=a.sources,
            dport=a.port,
            workers=a.workers,
            on_progress=progress,
        )
    if a.json:
        print(json.dumps(r.to_dict(), indent=2))
    else:
        out.print(
            f"{r.kind} flood: {r.sent:,} frames in {r.seconds:.2f} s = "
            f"[bold]{_human(r.pps)}pps[/] ({r.workers} worker(s))"
        )
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import DemoTick, run_demo

    table_rows: list[DemoTick] = []

    def view() -> Table:
        t = Table(
            "phase",
            "t",
            "flood",
            "legit ok/s (1st try)",
            "legit fail/s",
            "p50 ms",
            "shield verdicts/s",
            title="xdpshield demo (Ctrl-C stops and cleans up)",
        )
        for tick in table_rows[-12:]:
            verdicts = " ".join(f"{k}={_human(v)}" for k, v in sorted(tick.shield.items()))
            t.add_row(
                tick.phase,
                f"{tick.t}s",
                f"{_human(tick.flood_pps)}pps",
                "-" if tick.legit_t is None else f"{tick.legit_completed} ({tick.legit_first_try})",
                "-" if tick.legit_t is None else str(tick.legit_failed),
                f"{tick.legit_p50_ms:.1f}" if tick.legit_p50_ms is not None else "-",
                verdicts or "-",
            )
        return t

    with Live(view(), console=out, refresh_per_second=4, transient=False) as live:

        def on_tick(tick: DemoTick) -> None:
            table_rows.append(tick)
            live.update(view())

        result = run_demo(
            Path(a.out),
            quick=a.quick,
            on_tick=on_tick,
            on_phase=lambda p: live.console.print(f"[bold cyan]>> {p}[/]"),
        )
    t = Table("", *[p.name for p in result.phases], title="demo summary")
    rows = [p.summary() for p in result.phases]
    for key, label in (
        ("legit_success_under_flood_pct", "legit started under the flood: first try %"),
        ("legit_started_under_flood", "legit started under the flood"),
        ("legit_first_try_pct", "legit success %, first try"),
        ("legit_success_pct", "legit success %, one retry"),
        ("legit_completed", "legit connections completed"),
        ("connect_p50_ms", "connect p50 ms"),
        ("connect_p99_ms", "connect p99 ms"),
        ("flood_pps", "SYN flood sent (pps)"),
        ("flood_delivered_pps", "SYN flood taken by the server's ring (pps)"),
        ("flood_refused_pct", "SYN flood refused at the ring %"),
        ("xdp_syn_cookies_per_s", "SYN cookies answered from XDP (/s)"),
        ("kernel_syn_cookies_per_s", "SYN cookies sent by the kernel (/s)"),
        ("server_cpu_busy_pct", "server CPU busy %"),
        ("softirq_cpu_pct", "softirq CPU % (host)"),
    ):
        t.add_row(label, *[_fmt(r[key]) for r in rows])
    out.print(t)
    out.print(f"wrote {a.out}/demo.json and {a.out}/demo.png")
    return 0


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def cmd_bench(a: argparse.Namespace) -> int:
    from .bench import run_bench

    with Progress(console=err) as bar:
        task = bar.add_task("bench", total=1.0)

        def progress(what: str, frac: float) -> None:
            bar.update(task, completed=frac, description=what)

        results = run_bench(Path(a.out), a.quick, progress)
    md = Path(a.out) / "bench.md"
    if md.exists():
        out.print(md.read_text())
    out.print(f"{len(results)} measurements; wrote {a.out}/bench.json, bench.md and plots")
    return 0


# -- parser -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xdpshield",
        description="XDP DDoS shield: SYN cookies and filtering before the kernel stack.",
    )
    p.add_argument("--version", action="version", version=f"xdpshield {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=fn)
        return sp

    sp = add("load", cmd_load, "load the shield on an interface")
    sp.add_argument("iface")
    sp.add_argument(
        "--mode",
        default="auto",
        choices=[m.value for m in XdpMode] + ["reset", "transparent"],
        help="XDP attach mode (auto tries native, then generic)",
    )
    sp.add_argument(
        "--handshake",
        default=None,
        choices=HANDSHAKE_MODES,
        help="what a verified handshake gets (transparent: handed to the kernel, "
        "the client connects at once; reset: RST, the client retries; auto: "
        "transparent where the kernel supports it)",
    )
    sp.add_argument(
        "--protect",
        metavar="PORTS",
        default=None,
        help="TCP ports to guard with SYN cookies, e.g. 22,80,8000-8010",
    )
    sp.add_argument(
        "--syn-flood-pps",
        type=int,
        default=GuardOptions.syn_flood_pps,
        metavar="PPS",
        help="transparent mode: answer SYNs with cookies only while a CPU sees this many "
        "handshake packets per second (below it the kernel answers, with every TCP option); "
        f"0: always (default {GuardOptions.syn_flood_pps})",
    )
    sp.add_argument(
        "--rst-pps",
        type=int,
        default=GuardOptions.rst_pps,
        metavar="PPS",
        help="RSTs the shield may send per CPU and second (closed ports, reset mode's "
        f"unverified segments); 0: none (default {GuardOptions.rst_pps})",
    )
    sp.add_argument("--debug", action="store_true", help="load the build with bpf_printk tracing")

    sp = add(
        "unload",
        cmd_unload,
        "detach the shield and remove its pins (the cookie keys and verified "
        "sources are kept for the next load unless --purge)",
    )
    sp.add_argument("iface", nargs="?", default=None)
    sp.add_argument(
        "--purge", action="store_true", help="remove the kept keys and verified sources too"
    )
    sp.add_argument(
        "--netns",
        metavar="NAME",
        default=None,
        help="the shield of namespace NAME (like ip -n NAME); works when NAME is gone",
    )
    sp.add_argument(
        "--stale",
        action="store_true",
        help="remove every stale shield (its interface or namespace is gone)",
    )

    sp = add("status", cmd_status, "show the shields loaded in this namespace")
    sp.add_argument("--json", action="store_true")

    sp = add("stats", cmd_stats, "verdict counters by reason")
    sp.add_argument("iface")
    sp.add_argument("--json", action="store_true")

    sp = add("ports", cmd_ports, "change the protected TCP ports live")
    sp.add_argument("iface")
    sp.add_argument("action", choices=["add", "del", "list"])
    sp.add_argument("ports", nargs="?", default="")
    sp.add_argument("--json", action="store_true")

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

    sp = add("stand", cmd_stand, "the test stand: client, attacker, server namespaces")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefix", default="xs", help="name prefix of the stand (default xs)")
    acts = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_ in (
        ("up", "create the stand (harmless when it exists)"),
        ("down", "remove the stand and its processes"),
        ("status", "what of the stand exists"),
        ("attach", "load the shield on the server's protected link"),
        ("detach", "unload the shield from the stand"),
        ("log", "stream the debug build's trace output"),
        ("exec", "run a command in a namespace of the stand"),
    ):
        ap = acts.add_parser(name, help=help_, description=help_, parents=[common])
        if name == "status":
            ap.add_argument("--json", action="store_true")
        if name == "attach":
            ap.add_argument("--protect", default="80", help="ports to guard (default 80)")
            ap.add_argument("--mode", default="native", choices=[m.value for m in XdpMode])
            ap.add_argument("--handshake", default="auto", choices=HANDSHAKE_MODES)
            ap.add_argument("--debug", action="store_true", help="the tracing build")
        if name == "exec":
            ap.add_argument("role", choices=ROLES)
            ap.add_argument(
                "argv",
                nargs=argparse.REMAINDER,
                metavar="COMMAND",
                help="the command and its arguments (after --)",
            )

    sp = add("flood", cmd_flood, "flood the stand's server from the attacker (in-kernel)")
    sp.add_argument("kind", choices=KINDS)
    sp.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="PPS",
        help="packets per second (default: as fast as possible)",
    )
    sp.add_argument("--duration", type=float, default=5.0, metavar="S")
    sp.add_argument("--count", type=int, default=10**9, metavar="N")
    sp.add_argument(
        "--sources",
        default=None,
        metavar="CIDR",
        help="spoofed source range (default 198.19.0.0/16)",
    )
    sp.add_argument("--port", type=int, default=80)
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--prefix", default="xs")
    sp.add_argument("--json", action="store_true")

    sp = add("demo", cmd_demo, "the same flood without and with the shield, live")
    sp.add_argument("--out", default="out/demo")
    sp.add_argument("--quick", action="store_true", help="about 30 s (CI)")

    sp = add("bench", cmd_bench, "benchmarks against the baselines")
    sp.add_argument("--out", default="out/bench")
    sp.add_argument("--quick", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        rc: int = a.func(a)
        return rc
    except XdpShieldError as exc:
        err.print(f"[red]xdpshield: error:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        err.print("xdpshield: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
