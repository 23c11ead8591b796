"""The limits' commands: ``limits IFACE show|set``, ``blocks IFACE list|add|del``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from rich.table import Table

from xdpshield.errors import ConfigError
from xdpshield.policy.cidr import parse_prefix
from xdpshield.policy.config import LIMIT_KEYS, limits_from_flags, parse_duration
from xdpshield.policy.model import LIMIT_PROTOCOLS, Limits, Prefix
from xdpshield.shield import limits as _lim
from xdpshield.shield.core import Shield

from ._console import AddCommand, out
from .policy import _ttl_text

__all__ = ["add_parsers"]

_MAX_CEILING = 10**9


def _ceilings(base: Limits, texts: list[str]) -> tuple[tuple[str, int], ...]:
    """``--ceiling PROTO=PPS`` (``PROTO=off`` removes one) over the base's."""
    ceil = dict(base.ceilings)
    for t in texts:
        proto, sep, value = t.partition("=")
        proto = proto.strip().lower()
        if not sep or proto not in LIMIT_PROTOCOLS:
            raise ConfigError(
                f"{t!r}: give PROTO=PPS, PROTO one of {', '.join(LIMIT_PROTOCOLS)}",
                key="--ceiling",
            )
        value = value.strip().lower()
        if value == "off":
            ceil.pop(proto, None)
            continue
        if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= _MAX_CEILING:
            raise ConfigError(
                f'{t!r}: the ceiling must be packets per second, 1-{_MAX_CEILING:,} (or "off")',
                key="--ceiling",
            )
        ceil[proto] = int(value)
    return tuple((p, ceil[p]) for p in LIMIT_PROTOCOLS if p in ceil)


def _show(s: Shield) -> dict[str, Any]:
    lim = s.limits()
    stats = s.stats()
    now = time.monotonic_ns()
    blocks = s.blocks()
    return {
        "limits": lim.as_json(),
        "enabled": lim.enabled,
        "blocks": len(blocks),
        "dropped": {r.label: stats[r][0] for r in _lim.REASONS},
        "blocks_list": [b.as_json(now) for b in blocks[:10]],
    }


def _setting(v: object) -> str:
    return "off" if v is None else str(v)


def cmd_limits(a: argparse.Namespace) -> int:
    with Shield.open(a.iface) as s:
        if a.action == "set":
            flags = {k: getattr(a, v) for k, v in LIMIT_KEYS.items()}
            base = s.limits()
            lim = limits_from_flags(base, flags, limit_rules=bool(s.applied().get("limit_rules")))
            if a.ceiling:
                lim = dataclasses.replace(lim, ceilings=_ceilings(base, a.ceiling))
            s.set_limits(lim)
            out.print(f"{a.iface}: limits set" + ("" if lim.enabled else " (all off)"))
            return 0
        shown = _show(s)
    if a.json:
        print(json.dumps(shown, indent=2))
        return 0
    lim = shown["limits"]
    t = Table("setting", "value", title=f"xdpshield limits on {a.iface}")
    for key, field in LIMIT_KEYS.items():
        t.add_row(key, _setting(lim[field]))
    for proto, pps in lim["ceilings"].items():
        t.add_row(f"ceiling {proto}", str(pps))
    out.print(t)
    out.print(
        f"blocks in force: {shown['blocks']}; dropped: "
        + ", ".join(f"{k} {v:,}" for k, v in shown["dropped"].items())
    )
    return 0


def _prefixes(texts: list[str]) -> list[Prefix]:
    """Every argument parsed before anything is changed; a bad one is named."""
    out_: list[Prefix] = []
    for t in texts:
        try:
            out_.append(parse_prefix(t))
        except ConfigError as exc:
            raise ConfigError(exc.message, key=t) from None
    return out_


def cmd_blocks(a: argparse.Namespace) -> int:
    if a.action != "list" and not a.cidrs:
        raise ConfigError(f"'blocks {a.action}' needs prefixes, e.g. 203.0.113.7", key="blocks")
    if a.action == "list" and a.cidrs:
        raise ConfigError("'blocks list' takes no prefixes", key="blocks")
    ttl = None
    if a.ttl is not None:
        try:
            ttl = parse_duration(a.ttl)
        except ConfigError as exc:
            raise ConfigError(exc.message, key="--ttl") from None
        if ttl <= 0:
            raise ConfigError(f"must be more than 0 seconds, not {a.ttl!r}", key="--ttl")
    prefixes = _prefixes(a.cidrs)
    with Shield.open(a.iface) as s:
        if a.action == "add":
            seconds = ttl if ttl is not None else s.limits().block_ttl
            n = s.add_blocks(dict.fromkeys(prefixes, seconds))
            out.print(f"{a.iface}: blocked {n} for {_ttl_text(seconds)}")
            return 0
        if a.action == "del":
            n = s.del_blocks(prefixes)
            out.print(f"{a.iface}: unblocked {n}")
            return 0
        now = time.monotonic_ns()
        blocks = s.blocks(expired=a.all)
    if a.json:
        print(json.dumps([b.as_json(now) for b in blocks], indent=2))
        return 0
    if not blocks:
        out.print(f"{a.iface}: no blocks")
        return 0
    t = Table("prefix", "expires in", "time", "repeat", "by", "dropped",
              title=f"xdpshield blocks on {a.iface}")  # fmt: skip
    for b in blocks:
        t.add_row(
            str(b.prefix),
            _ttl_text(b.remaining_s(now)) if b.active(now) else "expired",
            _ttl_text(b.ttl_ns / 1e9),
            str(b.count),
            "hand" if b.manual else "limit",
            f"{b.drops:,}",
        )
    out.print(t)
    return 0


def add_parsers(add: AddCommand) -> None:
    """This group's subcommands."""
    sp = add("limits", cmd_limits, "per-source rate limits: show or change them live")
    sp.add_argument("iface")
    sp.add_argument("action", choices=["show", "set"])
    sp.add_argument("--json", action="store_true")
    helps = {
        "pps": "packets per second per source",
        "burst": "packets a source may send at once (default: one second's worth)",
        "bps": "bytes per second per source",
        "syn-pps": "SYNs to protected ports per second per source",
        "prefix4": "IPv4 sources counted together (16-32, default 32)",
        "prefix6": "IPv6 sources counted together (32-128, default 64)",
        "block-after": "block a source over a limit for this long (e.g. 2s)",
        "block-ttl": "how long a first block lasts (e.g. 10m)",
        "block-max-ttl": "repeat blocks double up to this",
        "block-repeat": "a block within this long after the last one doubles",
    }
    for key, field in LIMIT_KEYS.items():
        metavar = "SECONDS" if key.startswith("block") else "LEN" if "prefix" in key else "N"
        sp.add_argument(f"--{key}", dest=field, default=None, metavar=metavar, help=helps[key])
    sp.add_argument(
        "--ceiling",
        action="append",
        default=[],
        metavar="PROTO=PPS",
        help=f"a global ceiling ({', '.join(LIMIT_PROTOCOLS)}); PROTO=off removes it",
    )

    sp = add("blocks", cmd_blocks, "blocked sources: list, add or remove them live")
    sp.add_argument("iface")
    sp.add_argument("action", choices=["list", "add", "del"])
    sp.add_argument("cidrs", nargs="*", metavar="CIDR")
    sp.add_argument("--ttl", default=None, help="block for this long (default: the block-ttl)")
    sp.add_argument("--all", action="store_true", help="also expired blocks kept for repeats")
    sp.add_argument("--json", action="store_true")
