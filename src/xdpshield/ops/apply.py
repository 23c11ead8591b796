"""A config file made real: load the shields it names where missing, and
bring every one to its ports and policy (``xdpshield config apply``); or
say what that would change (``config diff``).

All or nothing before the first write: the file is checked whole, every
interface it names looked up and every interface's rules compiled before
any shield is touched, so a bad file applies nothing. The missing shields
are loaded next (and unloaded again if anything after fails); each shield
then switches to its new policy atomically (shield/policy.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from xdpshield import netns as _ns
from xdpshield.ebpf import ifindex_of
from xdpshield.errors import (
    ConfigError,
    ConfigErrors,
    NotAttached,
    UpgradeRefused,
    XdpShieldError,
)
from xdpshield.objects import object_digest, shield_object
from xdpshield.policy.model import Config, Hygiene, InterfaceConfig, Limits, Prefix
from xdpshield.policy.rules import CompiledRules, compile_rules, fingerprint
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import GuardOptions

__all__ = ["IfaceChange", "apply_config", "diff_config"]

_SHOWN = 20  # prefixes named per list in a diff; the rest are counted


@dataclass
class IfaceChange:
    """What applying the config does (or did) to one interface."""

    iface: str
    netns: str | None
    load: bool = False  # the shield is not loaded: applying loads it
    ports: tuple[list[int], list[int]] = ([], [])  # (added, removed)
    lists: dict[str, tuple[list[str], list[str], int, int]] = field(default_factory=dict)
    hygiene: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (old, new)
    limits: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (old, new)
    rules: dict[str, list[str]] = field(default_factory=dict)  # added/removed/changed
    #: Settings only a reload changes (handshake, options): key -> (running, config).
    restart: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: A running shield of another object moved to the installed one
    #: (apply_config(upgrade=True)): {"result": "upgraded", what it kept,
    #: ...} or {"result": "refused" | "failed", "error": why}; None: no upgrade.
    upgrade: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def empty(self) -> bool:
        return not (
            self.load
            or any(self.ports)
            or any(a or r for a, r, _, _ in self.lists.values())
            or self.hygiene
            or self.limits
            or any(self.rules.values())
            or self.restart
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _options(ic: InterfaceConfig) -> GuardOptions:
    kw: dict[str, Any] = {}
    if ic.syn_flood_pps is not None:
        kw["syn_flood_pps"] = ic.syn_flood_pps
    if ic.rst_pps is not None:
        kw["rst_pps"] = ic.rst_pps
    return GuardOptions(**kw)


@contextlib.contextmanager
def _open(ic: InterfaceConfig) -> Iterator[Shield | None]:
    try:
        s = Shield.open(ic.name, netns=ic.netns)
    except NotAttached:
        yield None
        return
    with s:
        yield s


def _list_diff(
    want: dict[Prefix, float | None], have: set[Prefix]
) -> tuple[list[str], list[str], int, int]:
    added = [p for p in want if p not in have]
    removed = [p for p in have if p not in want]
    return (
        [str(p) for p in added[:_SHOWN]],
        [str(p) for p in removed[:_SHOWN]],
        len(added),
        len(removed),
    )


def _settings_diff(old: dict[str, Any], new: Hygiene | Limits) -> dict[str, tuple[Any, Any]]:
    return {k: (old.get(k), v) for k, v in new.as_json().items() if old.get(k) != v}


def _diff_one(cfg: Config, ic: InterfaceConfig, s: Shield | None) -> IfaceChange:
    ch = IfaceChange(ic.name, ic.netns)
    pol = cfg.policy
    if s is None:
        ch.load = True
        ch.ports = (list(ic.protect), [])
        ch.lists = {w: _list_diff(getattr(pol, w), set()) for w in ("allow", "deny")}
        ch.hygiene = _settings_diff({}, pol.hygiene)
        ch.limits = _settings_diff(Limits().as_json(), pol.limits)
        ch.rules = {"added": [r.name for r in pol.rules], "removed": [], "changed": []}
        return ch
    have_ports = set(s.ports)
    ch.ports = (
        sorted(set(ic.protect) - have_ports),
        sorted(have_ports - set(ic.protect)),
    )
    for which in ("allow", "deny"):
        # Entries added live are not the file's: applying keeps them.
        have = {e.prefix for e in s.list_entries(which) if not e.live}
        ch.lists[which] = _list_diff(getattr(pol, which), have)
    applied = s.applied()
    ch.hygiene = _settings_diff(applied.get("hygiene") or Hygiene().as_json(), pol.hygiene)
    ch.limits = _settings_diff(applied.get("limits") or Limits().as_json(), pol.limits)
    old = {n: fp for n, (_, fp) in (applied.get("rule_ids") or {}).items()}
    new = {r.name: fingerprint(r) for r in pol.rules}
    ch.rules = {
        "added": [n for n in new if n not in old],
        "removed": [n for n in old if n not in new],
        "changed": [n for n in new if n in old and old[n] != new[n]],
    }
    # A running shield is adopted as it is: one of another object (an
    # upgrade installed since it was loaded) keeps running that object.
    running = s.record.object_sha256
    if running:
        installed = object_digest(shield_object(s.record.debug))
        if running != installed:
            ch.restart["object"] = (running[:12], installed[:12])
    want_hs = ic.handshake
    if want_hs != "auto" and s.record.handshake.value != want_hs:
        ch.restart["handshake"] = (s.record.handshake.value, want_hs)
    opts = _options(ic)
    for key in ("syn_flood_pps", "rst_pps"):
        have_v, want_v = getattr(s.record.options, key), getattr(opts, key)
        if getattr(ic, key) is not None and have_v != want_v:
            ch.restart[key] = (have_v, want_v)
    return ch


def diff_config(cfg: Config) -> list[IfaceChange]:
    """What ``apply_config(cfg)`` would change, per interface; touches nothing."""
    _check_interfaces(cfg)
    out = []
    for ic in cfg.interfaces:
        with _open(ic) as s:
            out.append(_diff_one(cfg, ic, s))
    return out


def _check_interfaces(cfg: Config) -> None:
    """Every interface (and namespace) the file names exists, else one
    error per missing one at its line: found before anything is touched."""
    errors: list[ConfigError] = []
    for ic in cfg.interfaces:
        try:
            with _ns.enter(ic.netns):
                ifindex_of(ic.name)
        except XdpShieldError as exc:  # no such interface, or no such namespace
            file, _, line = ic.origin.rpartition(":")
            where = f" (netns {ic.netns})" if ic.netns and "namespace" not in str(exc) else ""
            errors.append(
                ConfigError(
                    f"{exc}{where}",
                    file=file or cfg.path,
                    line=int(line) if line.isdigit() else None,
                    key="interface.name",
                )
            )
    if errors:
        raise ConfigErrors(errors)


def _upgrade(ic: InterfaceConfig, ch: IfaceChange, cfg: Config) -> None:
    """Move a running shield of another object to the installed one; a
    refusal or failure leaves it running as it was (noted in ``ch``)."""
    with Shield.open(ic.name, netns=ic.netns) as s:
        try:
            rep = s.upgrade(pol=cfg.policy, ports=ic.protect)
        except UpgradeRefused as exc:
            ch.upgrade = {"result": "refused", "error": str(exc), "maps": exc.maps}
        except (XdpShieldError, OSError) as exc:  # the verifier, the swap: nothing changed
            ch.upgrade = {"result": "failed", "error": str(exc)}
        else:
            ch.upgrade = {"result": "upgraded", **rep.fields()}
            del ch.restart["object"]


def apply_config(cfg: Config, *, upgrade: bool = False) -> list[IfaceChange]:
    """Load the shields that are missing and bring every one to the config.

    In three steps, each before the next touches anything: every interface
    is checked and every rule set compiled; the missing shields are loaded
    (the verifier's turn); then each shield switches to its ports and
    policy. A failure in the second or third step unloads the shields this
    call loaded, so a file that fails leaves no new shield behind; shields
    that ran before keep running (one that switched already keeps its new
    policy: the caller re-applies the old file to go back, as ``xdpshield
    run`` does). Settings fixed at load (handshake, SYN threshold, RST cap,
    the object) are not changed on a running shield: they are reported in
    ``restart``, but with ``upgrade`` the object: a running shield of
    another object is moved to the installed one first (shield/upgrade.py;
    one that cannot be stays as it is, see ``IfaceChange.upgrade``).
    """
    _check_interfaces(cfg)
    plans: list[tuple[InterfaceConfig, IfaceChange, CompiledRules]] = []
    for ic in cfg.interfaces:
        with _open(ic) as s:
            ch = _diff_one(cfg, ic, s)
            prev = s.applied().get("rule_ids") if s is not None else None
            plans.append((ic, ch, compile_rules(cfg.policy.rules, prev)))
    loaded: dict[int, Shield] = {}  # plan index -> the shield this call loaded
    try:
        for i, (ic, ch, _) in enumerate(plans):
            if ch.load:
                loaded[i] = Shield.load(
                    ic.name,
                    ports=ic.protect,
                    xdp_mode=ic.xdp_mode,
                    handshake=ic.handshake,
                    options=_options(ic),
                    netns=ic.netns,
                )
        for i, (ic, ch, _) in enumerate(plans):
            if upgrade and i not in loaded and "object" in ch.restart:
                _upgrade(ic, ch, cfg)
        for i, (ic, ch, compiled) in enumerate(plans):
            s = loaded.get(i) or Shield.open(ic.name, netns=ic.netns)
            try:
                if not ch.load and any(ch.ports):
                    s.set_ports(ic.protect)
                res = s.apply_policy(cfg.policy, source=cfg.path, compiled=compiled)
                ch.seconds = res.seconds
            finally:
                if i not in loaded:
                    s.close()
    except BaseException:
        for s in loaded.values():
            with contextlib.suppress(XdpShieldError, OSError):
                s.unload()
        raise
    for s in loaded.values():
        s.close()
    return [ch for _, ch, _ in plans]
