"""``xdpshield fleet status``: the fleet as its store sees it."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from xdpshield.errors import ConfigError
from xdpshield.ops.fleet import fleet_status
from xdpshield.ops.service import DEFAULT_CONFIG
from xdpshield.policy.config import load_config

from ._console import AddCommand, out


def cmd_fleet_status(a: argparse.Namespace) -> int:
    cfg = load_config(a.config)
    if cfg.fleet is None:
        raise ConfigError(f"{a.config} has no [fleet] table", key="fleet")
    st = fleet_status(cfg.fleet)
    if a.json:
        out.print_json(json.dumps(st))
        return 0 if st["store"]["ok"] else 1
    store = st["store"]
    if not store["ok"]:
        out.print(f"fleet {escape(st['fleet'])}: [red]store down[/] ({escape(store['error'])})")
        return 1
    ent = st["entries"]
    out.print(
        f"fleet {escape(st['fleet'])}: store {escape(store['endpoint'])} ok "
        f"(redis {store['version']}, {store['connect_ms']} ms, "
        f"tls {'on' if store['tls'] else 'off'})"
        f"; leader {escape(str(st['leader']))}; epoch {st['epoch']}, keys held for "
        f"{', '.join(map(str, st['key_epochs'])) or 'none'}; "
        f"{ent['deny']} deny, {ent['allow']} allow, {ent['block']} blocks"
    )
    t = Table("node", "epoch", "leader", "heartbeat", "lag", "state")
    for n in st["nodes"]:
        state = "alive" if n["alive"] else "[red]silent[/]"
        if n["alone"]:
            state += " [yellow]alone[/]"
        if n["epoch"] != st["epoch"]:
            state += " [yellow]epoch differs[/]"
        t.add_row(
            escape(n["node"]), str(n["epoch"]), "yes" if n["leader"] else "",
            f"{n['heartbeat_age_s']} s ago", f"{n['lag_s']} s", state,
        )  # fmt: skip
    out.print(t)
    return 0


def add_parsers(add: AddCommand) -> None:
    """This group's subcommands."""
    sp = add("fleet", lambda a: a.fleet_func(a), "the fleet of shields this config joins")
    sub = sp.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    st = sub.add_parser(
        "status",
        help="nodes, their key epoch, the store's health, each node's lag",
        description="nodes, their key epoch, the store's health, each node's lag",
    )
    st.set_defaults(fleet_func=cmd_fleet_status)
    st.add_argument(
        "--config", default=DEFAULT_CONFIG, metavar="FILE", help=f"default: {DEFAULT_CONFIG}"
    )
    st.add_argument("--json", action="store_true", help="one JSON object")
