"""The lab's commands (stand, flood, demo, bench): they need the ``lab`` extra."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.live import Live
from rich.progress import Progress
from rich.table import Table

from xdpshield import netns
from xdpshield.ebpf import XdpMode
from xdpshield.errors import StandError, Unavailable
from xdpshield.lab import KINDS, ROLES
from xdpshield.policy.ports import parse_ports
from xdpshield.shield.core import HANDSHAKE_MODES, Shield

from ._console import AddCommand, err, human, out

if TYPE_CHECKING:
    from xdpshield.lab.stand import Stand, StandStatus

LAB_MISSING = (
    "the lab commands (stand, flood, demo, bench) need the lab extra: "
    "pip install 'xdpshield[lab]' (make build installs it)"
)


@contextlib.contextmanager
def lab_extra() -> Iterator[None]:
    """Around the lazy imports of the lab (scapy, matplotlib: the ``lab``
    extra), so that the shield's own commands never load them; a missing
    extra is named, with how to get it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in ("scapy", "matplotlib"):
            raise Unavailable(f"{LAB_MISSING} ({top} is missing)") from None
        raise


def _stand(a: argparse.Namespace) -> Stand:
    with lab_extra():  # the lab extra, imported only for lab commands
        from xdpshield.lab.stand import Stand
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
        else:
            out.print(_status_table(stand, st))
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
            raise StandError(
                "stand exec: no command given, e.g. 'stand exec client -- curl http://198.18.0.2/'"
            )
        r = stand.exec(a.role, argv, timeout=None)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        return r.returncode
    raise StandError(f"unknown stand action {a.action}")


def _status_table(stand: Stand, st: StandStatus) -> Table:
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
    return t


def cmd_flood(a: argparse.Namespace) -> int:
    with lab_extra():  # the lab extra, imported only for lab commands
        from xdpshield.lab.traffic import flood
    stand = _stand(a)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"{a.kind} flood", total=a.duration)

        def progress(sent: int, elapsed: float) -> None:
            bar.update(task, completed=elapsed, description=f"{a.kind} flood: {human(sent)} frames")

        r = flood(
            a.kind,
            stand=stand,
            rate_pps=a.rate,
            duration_s=a.duration,
            count=a.count,
            sources=a.sources,
            dport=a.port,
            sport=a.sport,
            workers=a.workers,
            on_progress=progress,
        )
    if a.json:
        print(json.dumps(r.to_dict(), indent=2))
    else:
        out.print(
            f"{r.kind} flood: {r.sent:,} frames in {r.seconds:.2f} s = "
            f"[bold]{human(r.pps)}pps[/] ({r.workers} worker(s))"
        )
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    with lab_extra():  # the lab extra, imported only for lab commands
        from xdpshield.lab.demo import DemoTick, run_demo

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
            verdicts = " ".join(f"{k}={human(v)}" for k, v in sorted(tick.shield.items()))
            t.add_row(
                tick.phase,
                f"{tick.t}s",
                f"{human(tick.flood_pps)}pps",
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
    with lab_extra():  # the lab extra, imported only for lab commands
        from xdpshield.lab.bench import run_bench

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


def add_parsers(add: AddCommand) -> None:
    """This group's subcommands."""
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
    sp.add_argument(
        "--sport",
        type=int,
        default=None,
        help="a fixed source port (syn, ack, udp; e.g. 53 for a DNS reflection flood); "
        "default random",
    )
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--prefix", default="xs")
    sp.add_argument("--json", action="store_true")

    sp = add("demo", cmd_demo, "the same flood without and with the shield, live")
    sp.add_argument("--out", default="out/demo")
    sp.add_argument("--quick", action="store_true", help="about 30 s (CI)")

    sp = add("bench", cmd_bench, "benchmarks against the baselines")
    sp.add_argument("--out", default="out/bench")
    sp.add_argument("--quick", action="store_true")
