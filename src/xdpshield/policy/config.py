"""The TOML config file -> :class:`~xdpshield.policy.model.Config`.

Every error of a file is collected (not just the first), each one as
``FILE:LINE: key: what is wrong``, so one run of ``check`` fixes a file.
``tomllib`` gives no line numbers: :class:`_Locator` reads the raw text once
more and maps each key path (table, array-of-tables index, key, array
element) to the line where it is written. The schema is in docs/config.md;
packaging/xdpshield.toml is a commented example.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from xdpshield.errors import ConfigError, ConfigErrors
from xdpshield.policy.cidr import parse_prefix, read_prefix_file
from xdpshield.policy.model import (
    LIMIT_PROTOCOLS,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_FLAGS,
    Action,
    Config,
    FleetConfig,
    Hygiene,
    InterfaceConfig,
    Limits,
    MetricsConfig,
    Policy,
    Prefix,
    PrefixList,
    Rule,
)
from xdpshield.policy.ports import parse_ports

__all__ = [
    "HANDSHAKES",
    "ICMP6_TYPES",
    "ICMP_TYPES",
    "LIMIT_KEYS",
    "PROTOCOLS",
    "XDP_MODES",
    "check_config",
    "limits_from_flags",
    "load_config",
    "parse_duration",
    "parse_listen",
    "parse_tcp_flags",
]

#: ``handshake`` values (shield/record.py Handshake; a unit test keeps them equal).
HANDSHAKES = ("auto", "transparent", "reset")
#: ``mode`` values (ebpf/link.py XdpMode; not imported: policy never loads libbpf).
XDP_MODES = ("auto", "native", "generic")

#: ICMP type names (RFC 792 and successors; the names nftables uses).
ICMP_TYPES: Mapping[str, int] = {
    "echo-reply": 0, "destination-unreachable": 3, "source-quench": 4,
    "redirect": 5, "echo-request": 8, "router-advertisement": 9,
    "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
    "timestamp": 13, "timestamp-request": 13, "timestamp-reply": 14,
    "info-request": 15, "info-reply": 16, "address-mask-request": 17,
    "address-mask-reply": 18,
}  # fmt: skip
#: ICMPv6 type names (RFC 4443, 4861, 2710, 3810).
ICMP6_TYPES: Mapping[str, int] = {
    "destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
    "parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
    "mld-query": 130, "mld-report": 131, "mld-done": 132,
    "router-solicitation": 133, "router-advertisement": 134,
    "neighbour-solicitation": 135, "neighbor-solicitation": 135,
    "neighbour-advertisement": 136, "neighbor-advertisement": 136,
    "redirect": 137, "router-renumbering": 138, "mld2-report": 143,
}  # fmt: skip
#: IP protocol names (IANA numbers; kept here, not read from /etc/protocols,
#: so a config means the same on every host).
PROTOCOLS: Mapping[str, int] = {
    "hopopt": 0, "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8,
    "udp": 17, "dccp": 33, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44,
    "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "eigrp": 88, "ospf": 89, "etherip": 97,
    "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115, "sctp": 132,
    "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137, "hip": 139,
    "shim6": 140, "ethernet": 143,
}  # fmt: skip
_PROTO_NAME = {n: name for name, n in reversed(list(PROTOCOLS.items()))}  # first name wins
#: What hygiene checks by itself: protocols_drop may not name these.
_OWN_CHECKS = frozenset({PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6})

_TOP = ("allow", "deny", "fleet", "hygiene", "interface", "limits", "metrics", "rule")
_METRICS_KEYS = ("enabled", "listen")
_FLEET_KEYS = (
    "endpoints", "key_period", "lease", "name", "node", "password_file", "start_timeout",
    "tls_ca", "tls_cert", "tls_key", "username",
)  # fmt: skip
_FLEET_NAME = re.compile(r"[A-Za-z0-9_.:/@-]{1,128}")
_FLEET_ENDPOINT = re.compile(
    r"rediss?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?(/[0-9]{1,2})?"
)
_INTERFACE_KEYS = ("handshake", "mode", "name", "netns", "protect", "rst_pps", "syn_flood_pps")
_LIST_KEYS = ("files", "prefixes")
_ENTRY_KEYS = ("prefix", "ttl")
_HYGIENE_BOOLS = ("fragments", "icmp", "icmp_pmtu", "reflection", "tcp_flags")
_HYGIENE_KEYS = (
    *_HYGIENE_BOOLS,
    "fragment_window",
    "icmp_types",
    "icmpv6_types",
    "protocols_drop",
    "reflection_ports",
    "reflection_window",
)
_RULE_KEYS = (
    "action", "burst", "comment", "dport", "icmp_code", "icmp_type", "name", "pps",
    "protocol", "source", "sport", "tcp_flags",
)  # fmt: skip
_RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: The GuardOptions bounds (shield/datapath.py), checked here to point at the line.
_MAX_SYN_FLOOD_PPS = 10**9
_MAX_RST_PPS = 10**7
#: ``[limits]`` keys, spelled as the flags of ``xdpshield limits IFACE set`` are
#: (``--syn-pps``), -> the :class:`Limits` field each one sets. The file also
#: takes each with underscores (``syn_pps``), like its other tables' keys.
LIMIT_KEYS: Mapping[str, str] = {
    "pps": "pps", "burst": "burst", "bps": "bps", "syn-pps": "syn_pps",
    "prefix4": "prefix4", "prefix6": "prefix6", "block-after": "block_after",
    "block-ttl": "block_ttl", "block-max-ttl": "block_max_ttl",
    "block-repeat": "block_repeat",
}  # fmt: skip
_LIMIT_DURATIONS = frozenset({"block-after", "block-ttl", "block-max-ttl", "block-repeat"})
#: Limit keys a flag may switch off ("off"); the others have a default instead.
_LIMIT_OPTIONAL = frozenset({"pps", "burst", "bps", "syn-pps", "block-after"})
#: The most a limit may be: far beyond any link (100 GbE carries at most 148 Mpps,
#: 12.5 GB/s), so a larger value is a typo, and the data path's bucket arithmetic
#: has bounds to be written for.
_MAX_LIMIT_PPS = 10**9
_MAX_LIMIT_BPS = 10**12
#: One full-size Ethernet frame (1500 bytes of IP and the 14-byte header): a
#: bytes-per-second limit below it could never pass a full packet's second.
_MIN_LIMIT_BPS = 1514
#: The longest block time, repeat window or sustained-excess time: a year.
_MAX_LIMIT_S = 365 * 86400.0
#: Prefix lengths a source is aggregated to, per family.
_LIMIT_PREFIX = {"prefix4": (16, 32), "prefix6": (32, 128)}
#: How each context says "switch a limit off" (a limit of 0 is an error).
_OFF_IN_FILE = "leave the key out to switch the limit off"
_OFF_BY_FLAG = 'give "off" to switch the limit off'
_OFF_RULE = 'to let the packets through unlimited, make the rule action = "pass"'
#: Conflicting allow/deny prefixes named one by one; beyond this, counted.
_MAX_CONFLICTS = 50

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TOML_AT = re.compile(r"(.*) \(at line (\d+), column (\d+)\)", re.DOTALL)

_Path = tuple[str | int, ...]


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check a config file; ConfigErrors holds every error found."""
    config, errors = _load(os.fspath(path))
    if errors or config is None:
        raise ConfigErrors(errors)
    return config


def check_config(path: str | os.PathLike[str]) -> list[ConfigError]:
    """Every error of a config file (and of the list files it names); [] when fine."""
    return _load(os.fspath(path))[1]


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a string like '500ms', '10s', '5m',
    '1h', '2d'. Raises ConfigError naming the value."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"duration {value!r} must be a finite number of seconds >= 0")
        return float(value)
    if isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        return float(m[1]) * _UNIT_S[m[2]]
    raise ConfigError(
        f"bad duration {value!r}: give seconds (30) or a number and a unit: "
        "'500ms', '10s', '5m', '1h', '2d'"
    )


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9435' or '[::1]:9435' -> (host, port). The host must be an
    IP address: a name would need DNS before the service can start. Raises
    ConfigError naming the value."""
    host, sep, port = text.strip().rpartition(":")
    example = 'like "127.0.0.1:9435" or "[::1]:9435"'
    if not sep or not host:
        raise ConfigError(f"{text!r} is not HOST:PORT ({example})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{text!r}: write an IPv6 address in brackets ({example})")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{host!r} in {text!r} is not an IP address ({example}; "
            "0.0.0.0 or [::] listen on every address)"
        ) from None
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ConfigError(f"port {port!r} in {text!r} is not a number 1-65535")
    return host, int(port)


def parse_tcp_flags(text: str) -> tuple[int, int]:
    """'SYN,!ACK' -> (mask, value): the listed flags must be set, the
    '!'-prefixed ones clear; a packet matches when flags & mask == value."""
    mask = value = 0
    for token in text.split(","):
        word = token.strip()
        clear = word.startswith("!")
        name = word[1:].strip().upper() if clear else word.upper()
        bit = TCP_FLAGS.get(name)
        if bit is None:
            what = f"unknown TCP flag {name!r}" if name else "an empty flag"
            raise ConfigError(
                f"{what} in {text!r}: use {', '.join(TCP_FLAGS)} separated by commas, "
                "'!' before a flag that must be clear (like 'SYN,!ACK')"
            )
        if mask & bit:
            raise ConfigError(f"TCP flag {name} appears twice in {text!r}")
        mask |= bit
        if not clear:
            value |= bit
    return mask, value


def limits_from_flags(
    base: Limits, flags: Mapping[str, object], *, limit_rules: bool = False
) -> Limits:
    """``base`` with the flags of ``xdpshield limits IFACE set`` applied,
    checked by the same rules as the file's ``[limits]`` table.

    ``flags`` are named like the Limits fields (``syn_pps``, ``block_after``)
    or like the flags (``syn-pps``; a leading ``--`` is fine too). A value may
    be what argparse gives (a string: ``"1000"``, ``"10m"``) or an int or
    float; None means the flag was not given (the base value stays); the
    string ``"off"`` switches an optional limit (pps, burst, bps, syn-pps,
    block-after) off. ``limit_rules``: the shield has ``action = "limit"``
    rules (a limit ``block_after`` can block on). The result as a whole is
    checked (``--pps off`` can leave a base's block-after nothing to exceed).
    Raises ConfigError whose key is the flag (``--pps: ...``), ConfigErrors
    (a ConfigError, one line per error) when several are wrong. A name that
    is no limit flag is a TypeError: a mistake of the caller, not the user.
    """
    kw: dict[str, Any] = {}
    given: set[str] = set()
    bad: set[str] = set()
    errors: list[ConfigError] = []
    for name, value in flags.items():
        key = name.removeprefix("--").replace("_", "-")
        if key not in LIMIT_KEYS:
            raise TypeError(f"limits_from_flags(): {name!r} is not a limit flag")
        if value is None:
            continue
        if key in given:
            raise TypeError(f"limits_from_flags() got {key!r} twice")
        given.add(key)
        try:
            if isinstance(value, str) and value.strip().lower() == "off":
                if key not in _LIMIT_OPTIONAL:
                    default = getattr(Limits(), LIMIT_KEYS[key])
                    raise ConfigError(f'cannot be "off": give a value (the default is {default})')
                kw[LIMIT_KEYS[key]] = None
            else:
                kw[LIMIT_KEYS[key]] = _limit_value(key, _flag_number(value), off=_OFF_BY_FLAG)
        except ConfigError as e:
            errors.append(ConfigError(e.message, key=f"--{key}"))
            bad.add(key)
    limits = dataclasses.replace(base, **kw)
    for key, message in _limit_conflicts(limits, given, limit_rules=limit_rules, bad=bad):
        errors.append(ConfigError(message, key=f"--{key}"))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    return limits


def _limit_value(key: str, value: object, *, off: str = _OFF_IN_FILE) -> int | float:
    """One limit's value checked: ``key`` is a name of :data:`LIMIT_KEYS` or
    ``"ceiling"``; ``off`` says how to switch the limit off instead of 0.
    Raises ConfigError (without where: the caller knows the line or flag)."""
    if key in _LIMIT_DURATIONS:
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ConfigError(f"must be more than 0 seconds, not {value!r}")
        if seconds > _MAX_LIMIT_S:
            raise ConfigError(
                f"{value!r} is more than a year ({_MAX_LIMIT_S:.0f} s), the longest allowed"
            )
        return seconds
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"must be an integer, not {_describe(value)}")
    if key in _LIMIT_PREFIX:
        lo, hi = _LIMIT_PREFIX[key]
        if not lo <= value <= hi:
            family = "IPv4" if key == "prefix4" else "IPv6"
            raise ConfigError(
                f"prefix length {value} is outside {lo}-{hi}: the {family} source prefix "
                f"a limit counts per is /{lo} to /{hi}"
            )
        return value
    if key == "burst":
        if value < 1:
            raise ConfigError(
                f"a burst below one packet ({value}) is not allowed: a bucket must hold at "
                "least 1 packet (leave burst out for one second's worth)"
            )
        top, unit = _MAX_LIMIT_PPS, "packets"
    elif key == "bps":
        top, unit = _MAX_LIMIT_BPS, "bytes per second"
    else:  # pps, syn-pps, a rule's pps, a ceiling
        top, unit = _MAX_LIMIT_PPS, "packets per second"
    if value <= 0:
        raise ConfigError(f"a limit of 0 or negative ({value}) is not allowed: {off}")
    if key == "bps" and value < _MIN_LIMIT_BPS:
        raise ConfigError(
            f"{value} bytes per second holds less than one full-size packet "
            f"({_MIN_LIMIT_BPS} bytes): give at least {_MIN_LIMIT_BPS} (bps counts bytes, "
            "not bits)"
        )
    if value > top:
        raise ConfigError(f"{value} is more than {top} {unit}, the most a limit can be")
    return value


def _limit_conflicts(
    limits: Limits,
    given: Collection[str],
    *,
    limit_rules: bool = False,
    bad: Collection[str] = (),
) -> list[tuple[str, str]]:
    """(key, message) for each setting that cannot work with the others.
    ``given``: the keys (:data:`LIMIT_KEYS` names) the person set, to blame
    the one they wrote rather than a default; ``limit_rules``: there are
    ``action = "limit"`` rules; ``bad``: keys whose value was wrong (already
    reported), so a check that needs one of them is skipped."""
    out: list[tuple[str, str]] = []

    def check(keys: set[str]) -> bool:
        return not keys & set(bad)

    rates = {"pps", "bps", "syn-pps"}
    if (
        check({"burst", "pps", "syn-pps"})
        and limits.burst is not None
        and limits.pps is None
        and limits.syn_pps is None
    ):
        out.append(
            ("burst", "a burst without a rate: set pps or syn-pps (the burst is their depth)")
        )
    if check({"block-ttl", "block-max-ttl"}) and limits.block_ttl > limits.block_max_ttl:
        blame = "block-max-ttl" if "block-ttl" not in given and "block-max-ttl" in given else ""
        out.append(
            (
                blame or "block-ttl",
                f"block-ttl ({_seconds(limits.block_ttl)}) is more than block-max-ttl "
                f"({_seconds(limits.block_max_ttl)}): a block never lasts longer than "
                "block-max-ttl",
            )
        )
    if (
        check({"block-after", *rates})
        and limits.block_after is not None
        and limits.pps is None
        and limits.bps is None
        and limits.syn_pps is None
        and not limit_rules
    ):
        out.append(
            (
                "block-after",
                "blocking needs a limit to exceed: set pps, bps or syn-pps, or add a rule "
                'with action = "limit"',
            )
        )
    return out


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _flag_number(value: object) -> object:
    """A flag's text as the number it spells ("1000", "2.5"), else as it is
    (a duration like "10m", or a word the checks name in their message)."""
    if isinstance(value, str):
        text = value.strip()
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    return value


# -- reading ---------------------------------------------------------------------------


def _load(file: str) -> tuple[Config | None, list[ConfigError]]:
    try:
        with open(file, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, [ConfigError(f"cannot read config: {e.strerror or e}", file=file)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return None, [ConfigError("not UTF-8 text", file=file, line=line)]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return None, [_syntax_error(file, text, e)]
    loader = _Loader(file, text)
    config = loader.config(doc)
    return config, loader.sorted_errors()


def _syntax_error(file: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    """tomllib says "... (at line L, column C)"; make it FILE:L like the rest."""
    message = str(exc)
    if m := _TOML_AT.fullmatch(message):
        return ConfigError(f"TOML syntax: {m[1]} (column {m[3]})", file=file, line=int(m[2]))
    if message.endswith("(at end of document)"):
        last = text.count("\n") + (0 if text.endswith("\n") else 1)
        return ConfigError(
            f"TOML syntax: {message.removesuffix(' (at end of document)')} at the end of the file",
            file=file,
            line=max(last, 1),
        )
    return ConfigError(f"TOML syntax: {message}", file=file, line=1)


# -- where each key is written -----------------------------------------------------------

_STR_RE = (
    r'"""(?:\\[\s\S]|[^\\])*?""""{0,2}'  # multi-line basic (ends with up to 2 more quotes)
    r"|'''[\s\S]*?''''{0,2}"  # multi-line literal
    r'|"(?:\\.|[^"\\\n])*"'  # basic
    r"|'[^'\n]*'"  # literal
)
_TOKEN = re.compile(
    r"(?P<nl>\n)|[ \t\r]+|#[^\n]*"
    rf"|(?P<str>{_STR_RE})"
    r"|(?P<punct>[\[\]{},=])"
    r"|(?P<bare>[^\s\[\]{},=\"'#]+)"
    r"|(?P<other>.)"
)
_DATE = re.compile(r"\d{4}-\d\d-\d\d")


@dataclass
class _Tok:
    kind: str  # nl, str, punct, bare, other, end
    text: str
    line: int


class _Locator:
    """Key path -> line, from the raw text (tomllib gives no positions).

    A path is what the loader walks: ``("rule", 2, "dport", 0)`` is the first
    element of the dport array of the third ``[[rule]]``. Headers, keys
    (dotted or not), array elements and inline-table keys are recorded; a
    path not written in the file (a missing key) takes its table's line.
    The text is valid TOML (tomllib said so): this only has to find things.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[_Path, int] = {}
        self._aot: dict[_Path, int] = {}  # array-of-tables path -> tables seen
        self._toks = list(self._tokens(text))
        self._i = 0
        self._end = _Tok("end", "", self._toks[-1].line if self._toks else 1)
        self._document()

    def line(self, path: _Path) -> int | None:
        for n in range(len(path), 0, -1):
            if (line := self.lines.get(path[:n])) is not None:
                return line
        return None

    @staticmethod
    def _tokens(text: str) -> Iterator[_Tok]:
        line = 1
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            if kind is not None:
                yield _Tok(kind, m[0], line)
            line += m[0].count("\n")

    def _peek(self) -> _Tok:
        return self._toks[self._i] if self._i < len(self._toks) else self._end

    def _next(self) -> _Tok:
        tok = self._peek()
        self._i += 1
        return tok

    def _is(self, punct: str) -> bool:
        tok = self._peek()
        return tok.kind == "punct" and tok.text == punct

    def _skip_line(self) -> None:
        while self._peek().kind not in ("nl", "end"):
            self._i += 1

    def _skip_nl(self) -> None:
        while self._peek().kind == "nl":
            self._i += 1

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while (tok := self._peek()).kind in ("bare", "str"):
            self._i += 1
            if tok.kind == "str":
                parts.append(tok.text[1:-1])
            else:  # a.b.c is one bare token
                parts.extend(p for p in tok.text.split(".") if p)
        return tuple(parts)

    def _document(self) -> None:
        table: _Path = ()
        while (tok := self._peek()).kind != "end":
            if tok.kind == "nl":
                self._i += 1
                continue
            if self._is("["):
                self._i += 1
                aot = self._is("[")
                if aot:
                    self._i += 1
                table = self._resolve(self._key(), aot)
                self.lines.setdefault(table, tok.line)
            else:
                parts = self._key()
                if parts and self._is("="):
                    self._i += 1
                    self._record(table, parts, tok.line)
                    self._value(table + parts)
            self._skip_line()

    def _resolve(self, parts: tuple[str, ...], aot: bool) -> _Path:
        """A header's path: an array of tables named on the way means its last table."""
        path: _Path = ()
        for k, part in enumerate(parts):
            path += (part,)
            if aot and k == len(parts) - 1:
                count = self._aot.get(path, 0)
                self._aot[path] = count + 1
                path += (count,)
            elif path in self._aot:
                path += (self._aot[path] - 1,)
        return path

    def _record(self, table: _Path, parts: tuple[str, ...], line: int) -> None:
        for n in range(1, len(parts) + 1):  # a.b.c = 1 also places a and a.b
            self.lines.setdefault(table + parts[:n], line)

    def _value(self, path: _Path) -> None:
        tok = self._next()
        if tok.kind == "punct" and tok.text == "[":
            index = 0
            while True:
                self._skip_nl()
                if self._peek().kind == "end" or self._is("]"):
                    self._i += 1
                    return
                if self._is(","):
                    self._i += 1
                    continue
                self.lines.setdefault((*path, index), self._peek().line)
                self._value((*path, index))
                index += 1
        elif tok.kind == "punct" and tok.text == "{":
            while True:
                self._skip_nl()
                if self._peek().kind == "end" or self._is("}"):
                    self._i += 1
                    return
                if self._is(","):
                    self._i += 1
                    continue
                first = self._peek()
                parts = self._key()
                if not parts or not self._is("="):
                    self._i += 1  # not a key: step over it rather than loop
                    continue
                self._i += 1
                self._record(path, parts, first.line)
                self._value(path + parts)
        elif tok.kind == "bare" and _DATE.fullmatch(tok.text):
            nxt = self._peek()  # "1979-05-27 07:32:00" is one value in two tokens
            if nxt.kind == "bare" and nxt.line == tok.line:
                self._i += 1


# -- checking ----------------------------------------------------------------------------


def _describe(value: object) -> str:
    """A TOML value as a person wrote it, for "must be X, not Y"."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"the date/time {value}"


def _key_name(path: _Path) -> str:
    return ".".join(p for p in path if isinstance(p, str))


def _hint(word: str, valid: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


@dataclass
class _ListSources:
    """Where an allow or deny list's prefixes came from (for conflict messages)."""

    inline: dict[Prefix, _Path] = field(default_factory=dict)
    files: list[tuple[str, PrefixList]] = field(default_factory=list)


class _Loader:
    """Walks tomllib's dict, builds the Config, and collects every error."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.dir = os.path.dirname(file)
        self.text = text
        self.errors: list[ConfigError] = []

    @cached_property
    def where(self) -> _Locator:
        # Built on first need (a rule's origin, an error): a config without
        # rules and errors never pays for a second reading.
        return _Locator(self.text)

    def err(self, path: _Path, message: str) -> None:
        line = self.where.line(path)
        self.errors.append(ConfigError(message, file=self.file, line=line, key=_key_name(path)))

    def origin(self, path: _Path) -> str:
        return f"{self.file}:{self.where.line(path)}"

    def sorted_errors(self) -> list[ConfigError]:
        # The config's errors in line order, then each list file's.
        def order(e: ConfigError) -> tuple[bool, str, int]:
            return (e.file != self.file, e.file or "", e.line or 0)

        return sorted(self.errors, key=order)

    # -- shapes and types

    def table(
        self,
        path: _Path,
        value: object,
        keys: Collection[str],
        what: str,
        shown: str | None = None,
    ) -> dict[str, Any]:
        """A table's known keys; unknown keys and a non-table reported.
        ``shown``: how the message lists the valid keys (default: all of them)."""
        if not isinstance(value, dict):
            self.err(path, f"must be a table ({what}), not {_describe(value)}")
            return {}
        for key in value:
            if key not in keys:
                hint = _hint(key, keys)
                valid = shown if shown is not None else ", ".join(sorted(keys))
                self.err((*path, key), f"unknown key in {what}; {hint}valid keys: {valid}")
        return {k: v for k, v in value.items() if k in keys}

    def tables(self, path: _Path, value: object, what: str) -> list[dict[str, Any]]:
        if isinstance(value, list) and all(isinstance(t, dict) for t in value):
            return value
        self.err(path, f"must be an array of tables: write each one as {what}")
        return []

    def boolean(self, path: _Path, value: object) -> bool | None:
        if isinstance(value, bool):
            return value
        self.err(path, f"must be true or false, not {_describe(value)}")
        return None

    def string(self, path: _Path, value: object) -> str | None:
        if isinstance(value, str):
            return value
        self.err(path, f"must be a string, not {_describe(value)}")
        return None

    def integer(self, path: _Path, value: object, lo: int, hi: int) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool):
            self.err(path, f"must be an integer, not {_describe(value)}")
            return None
        if not lo <= value <= hi:
            self.err(path, f"{value} is outside {lo}-{hi}")
            return None
        return value

    def choice(self, path: _Path, value: object, choices: Collection[str]) -> str | None:
        if isinstance(value, str) and value in choices:
            return value
        self.err(path, f"must be one of {', '.join(choices)}, not {_describe(value)}")
        return None

    def duration(self, path: _Path, value: object) -> float | None:
        try:
            seconds = parse_duration(value)
        except ConfigError as e:
            self.err(path, e.message)
            return None
        if seconds <= 0:
            self.err(path, f"must be more than 0 seconds, not {value!r}")
            return None
        return seconds

    def items(self, path: _Path, value: object) -> list[tuple[_Path, object]]:
        """A value that may be one item or an array of them, each with its path."""
        if isinstance(value, list):
            return [((*path, i), v) for i, v in enumerate(value)]
        return [(path, value)]

    def array(self, path: _Path, value: object, what: str) -> list[tuple[_Path, object]]:
        if isinstance(value, list):
            return self.items(path, value)
        self.err(path, f"must be an array of {what}, not {_describe(value)}")
        return []

    def number(self, path: _Path, value: object, names: Mapping[str, int], what: str) -> int | None:
        """0-255 as a number or a name from ``names``."""
        if isinstance(value, str):
            word = value.strip().lower()
            if word.isascii() and word.isdigit():
                value = int(word)
            elif word in names:
                return names[word]
            else:
                self.err(
                    path,
                    f"unknown {what} {value!r}; {_hint(word, names)}"
                    f"use a number 0-255 or one of: {', '.join(names)}",
                )
                return None
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value <= 255:
                return value
            self.err(path, f"{what} {value} is outside 0-255")
            return None
        self.err(path, f"must be a {what} (a name or a number 0-255), not {_describe(value)}")
        return None

    def port_range(self, path: _Path, value: object, lo: int) -> tuple[int, int] | None:
        """A port (an integer or "N") or a range "A-B", as (first, last)."""
        if isinstance(value, int) and not isinstance(value, bool):
            first = last = value
        elif isinstance(value, str):
            a, sep, b = value.strip().partition("-")
            a, b = a.strip(), b.strip()
            if not (a.isascii() and a.isdigit() and (not sep or (b.isascii() and b.isdigit()))):
                self.err(path, f"{value!r} is not a port or a range like 8000-8010")
                return None
            first, last = int(a), int(b) if sep else int(a)
            if first > last:
                self.err(path, f"range {value!r} runs backwards")
                return None
        else:
            self.err(path, f'must be a port or a range like "8000-8010", not {_describe(value)}')
            return None
        for port in (first, last):
            if not lo <= port <= 65535:
                self.err(path, f"port {port} is outside {lo}-65535")
                return None
        return first, last

    def prefix(self, path: _Path, value: object) -> Prefix | None:
        if not isinstance(value, str):
            self.err(path, f'must be a prefix like "198.51.100.0/24", not {_describe(value)}')
            return None
        try:
            return parse_prefix(value)
        except ConfigError as e:
            self.err(path, e.message)
            return None

    # -- the document

    def config(self, doc: dict[str, Any]) -> Config:
        for key, value in doc.items():
            if key not in _TOP:
                what = "table" if isinstance(value, dict | list) else "key"
                self.err((key,), f"unknown {what}; {_hint(key, _TOP)}valid: {', '.join(_TOP)}")
        interfaces = self.interfaces(doc.get("interface", []))
        allow, allow_src = self.prefix_list("allow", doc.get("allow", {}))
        deny, deny_src = self.prefix_list("deny", doc.get("deny", {}))
        self.conflicts(allow, allow_src, deny, deny_src)
        hygiene = self.hygiene(doc.get("hygiene", {}))
        rules = self.rules(doc.get("rule", []))
        raw_rules = doc.get("rule", [])
        # A limit rule written with a mistake still counts: its own error says what.
        limit_rules = isinstance(raw_rules, list) and any(
            isinstance(t, dict) and t.get("action") == Action.LIMIT.value for t in raw_rules
        )
        limits = self.limits(doc.get("limits", {}), limit_rules)
        policy = Policy(allow=allow, deny=deny, hygiene=hygiene, rules=rules, limits=limits)
        metrics = self.metrics(doc.get("metrics", {}))
        fleet = self.fleet(doc["fleet"]) if "fleet" in doc else None
        return Config(
            path=self.file, interfaces=interfaces, policy=policy, metrics=metrics, fleet=fleet
        )

    def fleet(self, raw: object) -> FleetConfig | None:
        """``[fleet]``: the store this run shares keys, lists and blocks through."""
        p: _Path = ("fleet",)
        t = self.table(p, raw, _FLEET_KEYS, "[fleet]")
        if not t and isinstance(raw, dict) and not raw:
            self.err(p, '[fleet] needs endpoints = ["redis://HOST:PORT", ...]')
            return None
        kw: dict[str, Any] = {}
        ok = True
        if "endpoints" not in t:
            if isinstance(raw, dict):
                self.err(p, '[fleet] needs endpoints = ["redis://HOST:PORT", ...]')
            ok = False
        else:
            eps: list[str] = []
            items = self.array((*p, "endpoints"), t["endpoints"], "redis:// or rediss:// URLs")
            for ip, v in items:
                e = self.string(ip, v)
                if e is None:
                    ok = False
                elif not _FLEET_ENDPOINT.fullmatch(e):
                    self.err(ip, f"{e!r} is not redis://HOST[:PORT][/DB] or rediss://...")
                    ok = False
                else:
                    eps.append(e)
            if ok and not eps:
                self.err((*p, "endpoints"), "must name at least one store")
                ok = False
            elif ok and len({e.startswith("rediss://") for e in eps}) > 1:
                self.err((*p, "endpoints"), "mixes redis:// and rediss://: all TLS or none")
                ok = False
            kw["endpoints"] = tuple(eps)
        for key in ("name", "node", "username"):
            if key in t and (v := self.string((*p, key), t[key])) is not None:
                if not _FLEET_NAME.fullmatch(v):
                    self.err((*p, key), f"{v!r}: 1-128 of A-Z a-z 0-9 _ . : / @ -")
                    ok = False
                kw[key] = v
        for key, field_ in (("key_period", "key_period_s"), ("lease", "lease_s"),
                            ("start_timeout", "start_timeout_s")):  # fmt: skip
            if key in t:
                sec = self.duration((*p, key), t[key])
                if sec is None:
                    ok = False
                    continue
                lo, hi = (2.0, 86400.0) if key == "key_period" else (1.0, 600.0)
                if not lo <= sec <= hi:
                    self.err((*p, key), f"{_seconds(sec)} is outside {_seconds(lo)}-{_seconds(hi)}")
                    ok = False
                kw[field_] = sec
        for key in ("tls_ca", "tls_cert", "tls_key", "password_file"):
            if key in t and (v := self.string((*p, key), t[key])) is not None:
                path = os.path.join(self.dir, v)
                if not os.access(path, os.R_OK):
                    self.err((*p, key), f"{path}: no such readable file")
                    ok = False
                kw[key] = path
        tls_files = [k for k in ("tls_ca", "tls_cert", "tls_key") if k in t]
        if tls_files and ok and not all(e.startswith("rediss://") for e in kw["endpoints"]):
            self.err(
                (*p, tls_files[0]),
                "TLS files are set but the endpoints are redis://: write rediss:// "
                "(else cookie keys travel in the clear)",
            )
            ok = False
        if ("tls_cert" in t) != ("tls_key" in t):
            self.err((*p, "tls_cert" if "tls_cert" in t else "tls_key"),
                     "tls_cert and tls_key go together")  # fmt: skip
            ok = False
        if ok and kw.get("lease_s", 5.0) * 2 > kw.get("key_period_s", 60.0):
            self.err((*p, "lease"), "must be at most half of key_period")
            ok = False
        return FleetConfig(**kw) if ok else None

    def metrics(self, raw: object) -> MetricsConfig:
        """``[metrics]``: what ``xdpshield run`` serves, and where."""
        p: _Path = ("metrics",)
        t = self.table(p, raw, _METRICS_KEYS, "[metrics]")
        kw: dict[str, Any] = {}
        if "enabled" in t:
            kw["enabled"] = self.boolean((*p, "enabled"), t["enabled"])
        if "listen" in t and (text := self.string((*p, "listen"), t["listen"])) is not None:
            try:
                kw["host"], kw["port"] = parse_listen(text)
            except ConfigError as e:
                self.err((*p, "listen"), e.message)
        return MetricsConfig(**{k: v for k, v in kw.items() if v is not None})

    def interfaces(self, raw: object) -> tuple[InterfaceConfig, ...]:
        out: list[InterfaceConfig] = []
        seen: dict[tuple[str | None, str], _Path] = {}
        for i, t in enumerate(self.tables(("interface",), raw, "[[interface]]")):
            p: _Path = ("interface", i)
            t = self.table(p, t, _INTERFACE_KEYS, "[[interface]]")
            name = self.ifname((*p, "name"), t.get("name"))
            netns = self.netns((*p, "netns"), t["netns"]) if "netns" in t else None
            kw: dict[str, Any] = {"protect": self.protect((*p, "protect"), t.get("protect", []))}
            if "handshake" in t:
                kw["handshake"] = self.choice((*p, "handshake"), t["handshake"], HANDSHAKES)
            if "mode" in t:
                kw["xdp_mode"] = self.choice((*p, "mode"), t["mode"], XDP_MODES)
            if "syn_flood_pps" in t:
                pps = t["syn_flood_pps"]
                kw["syn_flood_pps"] = self.integer(
                    (*p, "syn_flood_pps"), pps, 0, _MAX_SYN_FLOOD_PPS
                )
            if "rst_pps" in t:
                kw["rst_pps"] = self.integer((*p, "rst_pps"), t["rst_pps"], 0, _MAX_RST_PPS)
            if name is None:
                continue
            if (netns, name) in seen:
                where = f" in netns {netns}" if netns else ""
                first = self.origin(seen[(netns, name)])
                self.err((*p, "name"), f"interface {name}{where} is already defined at {first}")
                continue
            seen[(netns, name)] = p
            kw = {k: v for k, v in kw.items() if v is not None}
            out.append(InterfaceConfig(name=name, netns=netns, origin=self.origin(p), **kw))
        return tuple(out)

    def ifname(self, path: _Path, value: object) -> str | None:
        if value is None:
            self.err(path, 'missing: name the interface to shield, like name = "eth0"')
            return None
        name = self.string(path, value)
        # The kernel's dev_valid_name(): 1-15 bytes, no "/", ":" or whitespace.
        if name is not None and (
            not 0 < len(name.encode()) < 16
            or name in (".", "..")
            or any(c in name for c in "/:")
            or any(c.isspace() for c in name)
        ):
            self.err(path, f"{name!r} is not an interface name (1-15 characters, no / : or spaces)")
            return None
        return name

    def netns(self, path: _Path, value: object) -> str | None:
        """An `ip netns` name: a file under /run/netns."""
        name = self.string(path, value)
        if name is not None and (not name or "/" in name or name in (".", "..")):
            self.err(path, f"{name!r} is not a namespace name (leave netns out for this one)")
            return None
        return name

    def protect(self, path: _Path, value: object) -> tuple[int, ...]:
        """Like --protect: "N", "A-B" or integers (a "22,443" string works too)."""
        if not isinstance(value, list | str):
            self.err(
                path, f'must be an array of ports like ["22", "8000-8010"], not {_describe(value)}'
            )
            return ()
        ports: set[int] = set()
        for ep, item in self.items(path, value):
            if isinstance(item, int) and not isinstance(item, bool):
                text: str | list[int] = [item]
            elif isinstance(item, str) and item.strip():
                text = item
            else:
                self.err(ep, f'must be a port or a range like "8000-8010", not {_describe(item)}')
                continue
            try:
                ports.update(parse_ports(text))
            except ConfigError as e:
                self.err(ep, e.message)
        return tuple(sorted(ports))

    # -- allow and deny

    def prefix_list(self, name: str, raw: object) -> tuple[PrefixList, _ListSources]:
        """Inline prefixes (each a string or {prefix, ttl}) and list files, merged."""
        src = _ListSources()
        t = self.table((name,), raw, _LIST_KEYS, f"[{name}]")
        timed: dict[Prefix, float | None] = {}
        for ep, item in self.array((name, "prefixes"), t.get("prefixes", []), "prefixes"):
            ttl: float | None = None
            if isinstance(item, dict):
                entry = self.table(ep, item, _ENTRY_KEYS, "a prefix entry")
                if "ttl" in entry:
                    ttl = self.duration((*ep, "ttl"), entry["ttl"])
                if "prefix" not in entry:
                    self.err(
                        (*ep, "prefix"), 'missing: like { prefix = "203.0.113.7", ttl = "10m" }'
                    )
                    continue
                prefix = self.prefix((*ep, "prefix"), entry["prefix"])
            else:
                prefix = self.prefix(ep, item)
            if prefix is None:
                continue
            src.inline.setdefault(prefix, ep)
            _merge_one(timed, prefix, ttl)
        seen_files: set[str] = set()
        for ep, item in self.array((name, "files"), t.get("files", []), "file paths"):
            if (path := self.string(ep, item)) is None:
                continue
            path = os.path.join(self.dir, os.path.expanduser(path))  # relative: to this file
            if path in seen_files:
                continue
            seen_files.add(path)
            try:
                src.files.append((path, read_prefix_file(path)))
            except ConfigErrors as e:
                self.errors.extend(e.errors)
            except ConfigError as e:
                if e.line is None:  # cannot read it: say so where it is named
                    self.err(ep, f"{path}: {e.message}")
                else:
                    self.errors.append(e)
        # Start from the biggest list (a file of a million: no copy). A prefix
        # listed twice lives as long as its longest life (None: for ever).
        lists = sorted((lst for _, lst in src.files), key=len, reverse=True)
        merged: PrefixList = lists[0] if lists else {}
        for lst in lists[1:]:
            merged.update(lst)  # file entries never expire: None wins anyway
        for prefix, ttl in timed.items():
            _merge_one(merged, prefix, ttl)
        return merged, src

    def conflicts(
        self, allow: PrefixList, allow_src: _ListSources, deny: PrefixList, deny_src: _ListSources
    ) -> None:
        """The same prefix both allowed and denied: one of the two is a mistake."""
        both = allow.keys() & deny.keys()
        if not both:
            return
        shown = sorted(both)[:_MAX_CONFLICTS]
        allow_at = self.sites(shown, allow_src)
        deny_at = self.sites(shown, deny_src)
        unknown = (self.file, None)
        for prefix in shown:
            file, line = deny_at.get(prefix, unknown)
            message = (
                f"{prefix} is both allowed ({_site(allow_at.get(prefix, unknown))}) and denied "
                f"({_site((file, line))}); keep one"
            )
            self.errors.append(ConfigError(message, file=file, line=line, key="deny"))
        if len(both) > len(shown):
            file, line = deny_at.get(shown[-1], unknown)
            self.errors.append(
                ConfigError(
                    f"... and {len(both) - len(shown)} more prefixes both allowed and denied",
                    file=file,
                    line=line,
                    key="deny",
                )
            )

    def sites(
        self, prefixes: list[Prefix], src: _ListSources
    ) -> dict[Prefix, tuple[str, int | None]]:
        """FILE and LINE of each prefix in a list (list files are read once more,
        only when there is a conflict to name)."""
        out: dict[Prefix, tuple[str, int | None]] = {}
        for prefix in prefixes:
            if prefix in src.inline:
                out[prefix] = (self.file, self.where.line(src.inline[prefix]))
        for path, lst in src.files:
            wanted = {p for p in prefixes if p not in out and p in lst}
            if wanted:
                for prefix, line in _lines_of(path, wanted).items():
                    out[prefix] = (path, line)
        return out

    # -- hygiene

    def hygiene(self, raw: object) -> Hygiene:
        p: _Path = ("hygiene",)
        t = self.table(p, raw, _HYGIENE_KEYS, "[hygiene]")
        kw: dict[str, Any] = {}
        for key in _HYGIENE_BOOLS:
            if key in t:
                kw[key] = self.boolean((*p, key), t[key])
        if "reflection_ports" in t:
            ports: set[int] = set()
            for ep, item in self.array((*p, "reflection_ports"), t["reflection_ports"], "ports"):
                if (r := self.port_range(ep, item, 1)) is not None:
                    ports.update(range(r[0], r[1] + 1))
            kw["reflection_ports"] = frozenset(ports)
        for key in ("reflection_window", "fragment_window"):
            if key in t:
                kw[f"{key}_s"] = self.duration((*p, key), t[key])
        for key, names, what in (
            ("icmp_types", ICMP_TYPES, "ICMP type"),
            ("icmpv6_types", ICMP6_TYPES, "ICMPv6 type"),
        ):
            if key in t:
                kw[key] = frozenset(
                    n
                    for ep, item in self.array((*p, key), t[key], f"{what}s")
                    if (n := self.number(ep, item, names, what)) is not None
                )
        if "protocols_drop" in t:
            drop: set[int] = set()
            for ep, item in self.array((*p, "protocols_drop"), t["protocols_drop"], "protocols"):
                n = self.number(ep, item, PROTOCOLS, "protocol")
                if n in _OWN_CHECKS:
                    self.err(
                        ep,
                        f"{_PROTO_NAME[n]} cannot be dropped as a whole here: it has its own "
                        "checks ([hygiene] and [[rule]])",
                    )
                elif n is not None:
                    drop.add(n)
            kw["protocols_drop"] = frozenset(drop)
        kw = {k: v for k, v in kw.items() if v is not None}
        return dataclasses.replace(Hygiene(), **kw)

    # -- limits

    def limits(self, raw: object, limit_rules: bool) -> Limits:
        """``[limits]``: keys spelled like the flags (``syn-pps``) or with
        underscores (``syn_pps``), checked by the rules the flags meet."""
        p: _Path = ("limits",)
        spellings = {k: k for k in LIMIT_KEYS} | {k.replace("-", "_"): k for k in LIMIT_KEYS}
        shown = ", ".join([*LIMIT_KEYS, "ceiling"]) + " (or with _ for -)"
        t = self.table(p, raw, [*spellings, "ceiling"], "[limits]", shown)
        before = len(self.errors)
        written: dict[str, str] = {}  # key as the flag spells it -> as the file does
        bad: set[str] = set()
        kw: dict[str, Any] = {}
        for spelled, value in t.items():
            if spelled == "ceiling":
                kw["ceilings"] = self.ceilings((*p, spelled), value)
                continue
            key = spellings[spelled]
            if key in written:
                first = written[key]
                self.err(
                    (*p, spelled),
                    f"{first} (line {self.where.line((*p, first))}) and {spelled} are the same "
                    "key: write it once",
                )
                continue
            written[key] = spelled
            try:
                kw[LIMIT_KEYS[key]] = _limit_value(key, value)
            except ConfigError as e:
                self.err((*p, spelled), e.message)
                bad.add(key)
        # The combinations of the values that are right (all reported at once).
        limits = Limits(**kw)
        for key, message in _limit_conflicts(limits, written, limit_rules=limit_rules, bad=bad):
            self.err((*p, written.get(key, key)), message)
        return limits if len(self.errors) == before else Limits()

    def ceilings(self, path: _Path, raw: object) -> tuple[tuple[str, int], ...]:
        """``[limits.ceiling]``: protocol -> packets per second in total."""
        t = self.table(path, raw, LIMIT_PROTOCOLS, "[limits.ceiling]")
        out: dict[str, int] = {}
        for proto, value in t.items():
            try:
                out[proto] = int(_limit_value("ceiling", value))
            except ConfigError as e:
                self.err((*path, proto), e.message)
        return tuple((proto, out[proto]) for proto in LIMIT_PROTOCOLS if proto in out)

    # -- rules

    def rules(self, raw: object) -> tuple[Rule, ...]:
        out: list[Rule] = []
        names: dict[str, _Path] = {}
        for i, t in enumerate(self.tables(("rule",), raw, "[[rule]]")):
            p: _Path = ("rule", i)
            t = self.table(p, t, _RULE_KEYS, "[[rule]]")
            rule = self.rule(p, t, names)
            if rule is not None:
                out.append(rule)
        return tuple(out)

    def rule(self, p: _Path, t: dict[str, Any], names: dict[str, _Path]) -> Rule | None:
        before = len(self.errors)
        name = None
        if "name" not in t:
            self.err((*p, "name"), 'missing: every rule has a name (like name = "ssh-office")')
        elif (name := self.string((*p, "name"), t["name"])) is not None:
            if not _RULE_NAME.fullmatch(name):
                self.err((*p, "name"), f"{name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
            elif name in names:
                self.err(
                    (*p, "name"),
                    f"{name!r} is already the name of the rule at {self.origin(names[name])}",
                )
            else:
                names[name] = p
        action = None
        if "action" not in t:
            self.err((*p, "action"), 'missing: "drop", "pass" or "limit"')
        elif (
            act := self.choice((*p, "action"), t["action"], [a.value for a in Action])
        ) is not None:
            action = Action(act)
        pps, burst = self.rule_rate(p, t, action)
        before_protocol = len(self.errors)
        protocols = frozenset(
            n
            for ep, item in self.items((*p, "protocol"), t.get("protocol", []))
            if (n := self.number(ep, item, PROTOCOLS, "protocol")) is not None
        )
        protocol_ok = len(self.errors) == before_protocol  # else no combination checks
        sources = tuple(
            dict.fromkeys(
                pre
                for ep, item in self.items((*p, "source"), t.get("source", []))
                if (pre := self.prefix(ep, item)) is not None
            )
        )
        dports: list[tuple[int, int]] = []
        sports: set[int] = set()
        for key in ("dport", "sport"):
            if key not in t:
                continue
            ranges = [
                r
                for ep, item in self.items((*p, key), t[key])
                if (r := self.port_range(ep, item, 0)) is not None
            ]
            if key == "dport":
                dports = _merge_ranges(ranges)
            else:
                sports.update(n for a, b in ranges for n in range(a, b + 1))
            if protocol_ok and not (protocols and protocols <= {PROTO_TCP, PROTO_UDP}):
                self.err((*p, key), f"{key} matches TCP and UDP only, {_protocols_said(protocols)}")
        tcp_flags = None
        if (
            "tcp_flags" in t
            and (text := self.string((*p, "tcp_flags"), t["tcp_flags"])) is not None
        ):
            try:
                tcp_flags = parse_tcp_flags(text)
            except ConfigError as e:
                self.err((*p, "tcp_flags"), e.message)
            if protocol_ok and protocols != {PROTO_TCP}:
                self.err(
                    (*p, "tcp_flags"),
                    f'needs protocol = "tcp" alone, {_protocols_said(protocols)}',
                )
        icmp_type = icmp_code = None
        if "icmp_type" in t:
            v6 = protocols == {PROTO_ICMPV6}
            if protocol_ok and protocols not in ({PROTO_ICMP}, {PROTO_ICMPV6}):
                self.err(
                    (*p, "icmp_type"),
                    'needs protocol = "icmp" or "icmpv6" (exactly one), '
                    + _protocols_said(protocols),
                )
            else:
                kinds = [(ICMP_TYPES, "ICMP type", "icmp"), (ICMP6_TYPES, "ICMPv6 type", "icmpv6")]
                (table, what, proto), (other, other_what, other_proto) = (
                    kinds[::-1] if v6 else kinds
                )
                value = t["icmp_type"]
                word = value.strip().lower() if isinstance(value, str) else ""
                if word in other and word not in table:  # the numbers differ: say which
                    self.err(
                        (*p, "icmp_type"),
                        f"{value!r} is an {other_what}, but the protocol is {proto} "
                        f'(protocol = "{other_proto}"?)',
                    )
                else:
                    icmp_type = self.number((*p, "icmp_type"), value, table, what)
        if "icmp_code" in t:
            icmp_code = self.integer((*p, "icmp_code"), t["icmp_code"], 0, 255)
            if "icmp_type" not in t:
                self.err(
                    (*p, "icmp_code"), "needs icmp_type (a code means something only for its type)"
                )
        if "comment" in t:
            self.string((*p, "comment"), t["comment"])
        if name is None or action is None or len(self.errors) != before:
            return None
        return Rule(
            name=name,
            action=action,
            protocols=protocols,
            sources=sources,
            dports=tuple(dports),
            sports=frozenset(sports),
            tcp_flags=tcp_flags,
            icmp_type=icmp_type,
            icmp_code=icmp_code,
            pps=pps,
            burst=burst,
            origin=self.origin(p),
        )

    def rule_rate(
        self, p: _Path, t: dict[str, Any], action: Action | None
    ) -> tuple[int | None, int | None]:
        """A limit rule's ``pps`` (required) and ``burst``; neither on another action."""
        if action is not None and action is not Action.LIMIT:
            for key in ("pps", "burst"):
                if key in t:
                    self.err(
                        (*p, key),
                        f'{key} is for action = "limit" only, not "{action.value}" '
                        f'(leave it out, or make the rule action = "limit")',
                    )
            return None, None
        if action is Action.LIMIT and "pps" not in t:
            self.err(
                (*p, "pps"),
                'missing: a rule with action = "limit" needs pps, the packets per second '
                "each source may send (like pps = 50)",
            )
        out: list[int | None] = []
        for key in ("pps", "burst"):
            value = None
            if key in t:
                try:
                    value = int(_limit_value(key, t[key], off=_OFF_RULE))
                except ConfigError as e:
                    self.err((*p, key), e.message)
            out.append(value)
        return out[0], out[1]


def _protocols_said(protocols: frozenset[int]) -> str:
    if not protocols:
        return "but the rule has no protocol (it matches any)"
    said = ", ".join(_PROTO_NAME.get(n, str(n)) for n in sorted(protocols))
    return f"not {said}"


def _merge_one(lst: PrefixList, prefix: Prefix, ttl: float | None) -> None:
    """A prefix listed again keeps its longest life (None: for ever)."""
    if prefix not in lst:
        lst[prefix] = ttl
    else:
        old = lst[prefix]
        lst[prefix] = None if old is None or ttl is None else max(old, ttl)


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, overlapping and adjacent ranges joined."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _site(where: tuple[str, int | None]) -> str:
    file, line = where
    return f"{file}:{line}" if line is not None else file


def _lines_of(path: str, wanted: set[Prefix]) -> dict[Prefix, int]:
    """The first line of each wanted prefix in a list file (read again: only
    for a conflict's message, so the fast reader keeps no line numbers)."""
    found: dict[Prefix, int] = {}
    try:
        # newline="\n": lines counted as read_prefix_file counts them.
        with open(path, encoding="utf-8", newline="\n") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.partition("#")[0].strip()
                if not line:
                    continue
                try:
                    prefix = parse_prefix(line)
                except ConfigError:
                    continue
                if prefix in wanted and prefix not in found:
                    found[prefix] = lineno
    except (OSError, UnicodeDecodeError):
        pass
    return found
