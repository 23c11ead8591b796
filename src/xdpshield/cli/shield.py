"""The shield's commands: load, unload, status, stats, ports."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from xdpshield import netns
from xdpshield.ebpf import XdpMode
from xdpshield.errors import InterfaceNotFound, NotAttached, XdpShieldError
from xdpshield.policy.ports import parse_ports
from xdpshield.shield.core import (
    HANDSHAKE_MODES,
    Shield,
    find_stale,
    forget_state,
    kept_state,
    list_shields,
    stale_shields,
)
from xdpshield.shield.datapath import GuardOptions

from ._console import AddCommand, err, human, out


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
    ns = a.netns or None
    try:
        shield = Shield.open(a.iface, netns=ns)
    except InterfaceNotFound:
        gone_if = find_stale(a.iface, ns or netns.current_name())
        if gone_if is None:
            raise
        gone_if.remove()
        out.print(f"removed the stale shield on {a.iface} ({gone_if.why})")
        return 0
    except NotAttached:
        if a.purge and forget_state(a.iface, ns):
            out.print(f"removed the state kept for {a.iface} (cookie keys, verified sources)")
            return 0
        if a.iface in kept_state(ns):
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
            human(r["totals"]["packets"]),
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
        pol = r.get("policy")
        if pol:
            hyg = ", ".join(c.replace("_", "-") for c in pol["hygiene"]) or "off"
            src = f", from {pol['source']}" if pol.get("source") else ""
            out.print(
                f"{r['iface']}: policy: allow {pol['allow']}, deny {pol['deny']} prefixes, "
                f"{pol['rules']} rules; hygiene: {hyg}{src}"
            )
            if pol.get("limits") or pol.get("blocks"):
                on = ", ".join(pol.get("limits") or []) or "none"
                out.print(f"{r['iface']}: limits: {on}; blocks in force: {pol.get('blocks', 0)}")
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
        rules = s.rules()
    if a.json:
        doc: dict[str, Any] = {r.label: {"packets": p, "bytes": b} for r, (p, b) in stats.items()}
        # Rules by name, under a key no reason label can take.
        doc["rules"] = {r["name"]: {"packets": r["packets"], "bytes": r["bytes"]} for r in rules}
        print(json.dumps(doc, indent=2))
        return 0
    t = Table("reason", "packets", "bytes", title=f"xdpshield verdicts on {a.iface}")
    for r, (p, b) in stats.items():
        t.add_row(r.label, f"{p:,}", f"{b:,}")
    out.print(t)
    if rules:
        rt = Table("rule", "packets", "bytes", title="rules")
        for rule in rules:
            rt.add_row(rule["name"], f"{rule['packets']:,}", f"{rule['bytes']:,}")
        out.print(rt)
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


def add_parsers(add: AddCommand) -> None:
    """This group's subcommands."""
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
