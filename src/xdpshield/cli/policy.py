"""The policy's commands: config check|diff|apply, allow, deny, rules."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.markup import escape
from rich.table import Table

from xdpshield.errors import ConfigError, ConfigErrors
from xdpshield.ops.apply import IfaceChange, apply_config, diff_config
from xdpshield.policy.cidr import parse_prefix, read_prefix_file
from xdpshield.policy.config import check_config, load_config, parse_duration
from xdpshield.policy.model import PrefixList
from xdpshield.shield.core import Shield

from ._console import AddCommand, err, out

__all__ = ["EXIT_BAD_INPUT", "add_parsers", "print_change"]

#: ``config check`` and every bad-input error: the exit status of bad input
#: (argparse's own), apart from 1 for a failure of the system.
EXIT_BAD_INPUT = 2


def cmd_config(a: argparse.Namespace) -> int:
    if a.action == "check":
        errors = check_config(a.file)
        for e in errors:
            print(str(e))
        return EXIT_BAD_INPUT if errors else 0
    try:
        cfg = load_config(a.file)
        # An interface the file names that does not exist: one error per line too.
        changes = diff_config(cfg) if a.action == "diff" else apply_config(cfg)
    except ConfigErrors as exc:
        for e in exc.errors:
            err.print(escape(str(e)))
        return EXIT_BAD_INPUT
    if a.json:
        print(json.dumps([c.as_dict() for c in changes], indent=2))
        return 0
    for ch in changes:
        print_change(ch, applied=a.action == "apply")
    return 0


def print_change(ch: IfaceChange, *, applied: bool) -> None:
    where = ch.iface + (f" (netns {ch.netns})" if ch.netns else "")
    if ch.empty:
        out.print(f"{where}: {'unchanged' if applied else 'no change'}")
        return
    verb = "loaded" if applied else "would load"
    lines = [f"{where}:" + (f" {verb} the shield" if ch.load else "")]
    added, removed = ch.ports
    if added or removed:
        lines.append(
            "  protect: " + " ".join([f"+{p}" for p in added] + [f"-{p}" for p in removed])
        )
    for which, (plus, minus, n_plus, n_minus) in ch.lists.items():
        if n_plus or n_minus:
            lines.append(
                f"  {which}: +{n_plus} -{n_minus} prefixes: "
                + " ".join([f"+{p}" for p in plus] + [f"-{p}" for p in minus])
                + _more(plus, n_plus)
                + _more(minus, n_minus)
            )
    for table, diff in (("hygiene", ch.hygiene), ("limits", ch.limits)):
        for key, (old, new) in diff.items():
            lines.append(f"  {table}.{key}: {old} -> {new}")
    for kind, sign in (("added", "+"), ("removed", "-"), ("changed", "~")):
        for name in ch.rules.get(kind, []):
            lines.append(f"  rule {sign}{name}")
    for key, (have, want) in ch.restart.items():
        lines.append(
            f"  [yellow]{key}: running {have}, config {want}: takes effect at the next load[/]"
        )
    if applied and ch.seconds:
        lines.append(f"  policy switched in {ch.seconds * 1000:.0f} ms")
    out.print("\n".join(lines))


def _more(shown: list[str], n: int) -> str:
    return f" (+{n - len(shown)} more)" if n > len(shown) else ""


def _prefixes(texts: list[str], ttl: float | None) -> PrefixList:
    """Every argument parsed before anything is changed; a bad one is named."""
    entries: PrefixList = {}
    for t in texts:
        try:
            entries[parse_prefix(t)] = ttl
        except ConfigError as exc:
            raise ConfigError(exc.message, key=t) from None
    return entries


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise ConfigError(exc.message, key="--ttl") from None


def _ttl_text(s: float | None) -> str:
    """Seconds as 1d2h3m4s (the limits' commands too)."""
    if s is None:
        return ""
    s = int(s)
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m"), (sec, "s")) if v]
    return "".join(parts) or "0s"


def cmd_list(a: argparse.Namespace) -> int:
    which = a.command
    ttl = _duration(a.ttl) if a.ttl else None
    with Shield.open(a.iface) as s:
        if a.action == "list":
            now = time.monotonic_ns()
            entries = s.list_entries(which)
            if a.json:
                rows: list[dict[str, Any]] = [
                    {"prefix": str(e.prefix), "expires_in_s": e.ttl_s(now), "live": e.live}
                    for e in entries
                ]
                print(json.dumps(rows, indent=2))
                return 0
            for e in entries:
                extra = [f"expires {_ttl_text(e.ttl_s(now))}"] if e.expires_ns else []
                extra += ["live"] if e.live else []
                print(" ".join([str(e.prefix), *extra]))
            return 0
        if a.action == "load":
            if len(a.args) != 1:
                raise ConfigError(f"'{which} {a.iface} load' takes one file", key="load")
            bulk = {p: ttl for p in read_prefix_file(a.args[0])}
            t0 = time.perf_counter()
            n = s.add_entries(which, bulk)
            took = time.perf_counter() - t0
            out.print(f"{a.iface}: {which} list: loaded {n:,} prefixes in {took:.2f} s")
            return 0
        if not a.args:
            raise ConfigError(
                f"'{which} {a.action}' needs prefixes, e.g. 203.0.113.0/24", key=which
            )
        prefixes = _prefixes(a.args, ttl)
        if a.action == "add":
            n = s.add_entries(which, prefixes)
            out.print(f"{a.iface}: {which} list: added {n}")
        else:
            n = s.del_entries(which, prefixes)
            out.print(f"{a.iface}: {which} list: removed {n}")
    return 0


def cmd_rules(a: argparse.Namespace) -> int:
    with Shield.open(a.iface) as s:
        rules = s.rules()
    if a.json:
        print(json.dumps(rules, indent=2))
        return 0
    t = Table("#", "name", "rule", "packets", "bytes", title=f"xdpshield rules on {a.iface}")
    for i, r in enumerate(rules, 1):
        t.add_row(str(i), r["name"], escape(r["rule"]), f"{r['packets']:,}", f"{r['bytes']:,}")
    out.print(t if rules else f"{a.iface}: no rules")
    return 0


def add_parsers(add: AddCommand) -> None:
    """This group's subcommands."""
    sp = add("config", cmd_config, "check, compare or apply a config file")
    sp.add_argument("action", choices=["check", "diff", "apply"])
    sp.add_argument("file", nargs="?", default="/etc/xdpshield/xdpshield.toml")
    sp.add_argument("--json", action="store_true")

    for which, what in (
        ("allow", "sources that skip every check (never dropped, never limited)"),
        ("deny", "sources dropped before any other check"),
    ):
        sp = add(which, cmd_list, f"edit the {which} list live: {what}")
        sp.add_argument("iface")
        sp.add_argument(
            "action", choices=["add", "del", "list"] + (["load"] if which == "deny" else [])
        )
        sp.add_argument("args", nargs="*", metavar="CIDR" if which == "allow" else "CIDR|FILE")
        sp.add_argument("--ttl", default=None, help="expire the prefixes after this long, e.g. 10m")
        sp.add_argument("--json", action="store_true")

    sp = add("rules", cmd_rules, "the live rules and their counters")
    sp.add_argument("iface")
    sp.add_argument("action", choices=["list"])
    sp.add_argument("--json", action="store_true")
