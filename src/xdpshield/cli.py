"""The ``xdpshield`` command: parses arguments and prints; the library does the work."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from . import __version__
from .bpf import XdpMode
from .errors import XdpShieldError
from .shield import HANDSHAKE_MODES, Shield, list_shields, parse_ports

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
    handshake = a.handshake
    xdp_mode = a.mode
    if xdp_mode in HANDSHAKE_MODES:  # `--mode reset` reads naturally; accept it
        handshake, xdp_mode = xdp_mode, "auto"
    ports = parse_ports(a.protect) if a.protect else []
    shield = Shield.load(
        a.iface, ports=ports, xdp_mode=xdp_mode, handshake=handshake, debug=a.debug
    )
    with shield:
        st = shield.status()
    out.print(
        f"xdpshield loaded on [bold]{st.iface}[/] ({st.xdp_mode} XDP, prog id "
        f"{st.prog_id}, handshake {st.handshake}); protecting "
        f"{_ports_text(st.ports)}"
    )
    return 0


def cmd_unload(a: argparse.Namespace) -> int:
    Shield.open(a.iface).unload()
    out.print(f"xdpshield unloaded from [bold]{a.iface}[/]")
    return 0


def _ports_text(ports: Sequence[int]) -> str:
    return "TCP " + ",".join(map(str, ports)) if ports else "no TCP ports"


def cmd_status(a: argparse.Namespace) -> int:
    rows = []
    for iface in list_shields():
        try:
            with Shield.open(iface) as s:
                rows.append(s.status().as_dict())
        except XdpShieldError as exc:
            rows.append({"iface": iface, "attached": False, "error": str(exc)})
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        out.print("no xdpshield loaded in this network namespace")
        return 0
    t = Table("iface", "state", "xdp", "prog", "handshake", "ports", "packets", "up")
    for r in rows:
        if "error" in r:
            t.add_row(r["iface"], "[red]broken[/]", "", "", "", "", "", r["error"])
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
        choices=[m.value for m in XdpMode] + list(HANDSHAKE_MODES),
        help="XDP attach mode (auto tries native, then generic)",
    )
    sp.add_argument(
        "--handshake",
        default="reset",
        choices=HANDSHAKE_MODES,
        help="what a verified handshake gets (reset: RST, client retries)",
    )
    sp.add_argument(
        "--protect",
        metavar="PORTS",
        default="",
        help="TCP ports to guard with SYN cookies, e.g. 22,80,8000-8010",
    )
    sp.add_argument("--debug", action="store_true", help="load the build with bpf_printk tracing")

    sp = add("unload", cmd_unload, "detach the shield and remove its pins")
    sp.add_argument("iface")

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
