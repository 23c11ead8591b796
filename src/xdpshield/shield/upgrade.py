"""Move a running shield to the object installed now, without a hole.

A shield keeps running the object it was loaded from; when another version
is installed (an upgrade), ``xdpshield run`` moves each shield it adopts to
it (:func:`upgrade`), in this order, each step before the next touches the
running shield:

1. Plan, per map of the new object, by comparing layouts (type, key size,
   value size, max_entries, flags: :meth:`ObjectSpec.reuse_mismatch`),
   never by a list of today's maps:

   - ``kept``: the pinned map fits: the new object uses it as it is (cookie
     keys, verified sources, counters, lists: nothing is copied or lost);
   - ``refilled``: a map the control plane fills anyway (ports, listeners,
     addresses, interface info, and the policy's tables: when one of those
     changed or is new, all of them are made anew and filled from the
     config, the entries added live carried over);
   - ``migrated``: the layout changed but every entry can move without loss:
     a hash-type map that only grew (its keys say what they are), or a
     counter array indexed by a stable number (:data:`INDEX_STABLE`) whose
     key and value are unchanged;
   - ``recreated``: any other map (flood state, caches, a map new in this
     version): made anew and empty; always a program array (the entry's
     tail calls), which holds the object's own programs;
   - refused: a state map (:data:`STATE`) that is neither kept nor
     migrated. Then nothing is loaded and :class:`UpgradeRefused` names
     the map: the running shield is left exactly as it was.

2. Load the new object with the kept maps in place (the verifier's turn: a
   rejection changes nothing either), fill the new maps.
3. Swap the programs in place: tc egress and ingress with ``tc filter
   replace`` at the same handle and priority, then XDP with
   XDP_FLAGS_REPLACE and the running program as the expected one. The hook
   never is empty; should a step fail, the tc filters go back to the old
   programs and the new object is dropped.
4. Re-pin (a new pin is written beside the old and renamed over it, so a
   reader finds one or the other), remove the pins of maps the new object
   no longer has, and rewrite the load record (new program id and object
   digest; everything else as it was).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xdpshield.ebpf import Collection, Map, ObjectSpec, Program, attach_tc, query_xdp, replace_xdp
from xdpshield.errors import UpgradeRefused, XdpShieldError
from xdpshield.objects import object_digest, shield_object
from xdpshield.policy.model import Policy
from xdpshield.shield import datapath
from xdpshield.shield import policy as _policy
from xdpshield.shield import samples as _samples
from xdpshield.shield.core import (
    STATE_MAPS,
    TC_HANDLE,
    TC_PRIORITY,
    Shield,
    refresh_host_view,
    socket_peers,
)
from xdpshield.shield.record import Handshake

__all__ = ["INDEX_STABLE", "REFILLED", "STATE", "UpgradeReport", "plan_maps", "upgrade"]

#: Maps whose content is state no config can give back: an upgrade keeps or
#: migrates them, or refuses (the cookie keys, the verified sources, the
#: seen-sources filter, and whatever core keeps across unload).
STATE = frozenset({"xs_keys", "xs_verified", "xs_seen", *STATE_MAPS})
#: Maps the control plane fills from the config and the namespace: made
#: anew when their layout changed.
REFILLED = frozenset({"xs_ports", "xs_listen", "xs_local", "xs_ifinfo", *datapath.POLICY_MAPS})
#: Per-CPU counter arrays whose index keeps its meaning across versions
#: (verdict reasons are only ever appended; rule ids are the apply's).
INDEX_STABLE = frozenset({"xs_stats", "xs_sample_stat", "xs_rule_stats"})

_HASH_TYPES = frozenset({1, 5, 9, 10, 11})  # HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, LPM
_ARRAY_TYPES = frozenset({2, 6})  # ARRAY, PERCPU_ARRAY
_PROG_ARRAY = 3  # BPF_MAP_TYPE_PROG_ARRAY
_PROGRAM_PINS = frozenset({"prog", "tc", "tc_egress"})


@dataclass
class UpgradeReport:
    """What an upgrade did to one shield."""

    iface: str
    netns: str | None
    old_object: str
    new_object: str
    old_prog_id: int
    new_prog_id: int = 0
    kept: list[str] = field(default_factory=list)
    migrated: list[str] = field(default_factory=list)
    refilled: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    #: Pinned maps the new object no longer has (their pins are removed).
    dropped: list[str] = field(default_factory=list)
    #: Why each map not kept could not be (name -> the layout difference).
    why: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """The ``upgraded`` event's fields."""
        out: dict[str, Any] = {
            "netns": self.netns,
            "from_object": self.old_object[:12],
            "to_object": self.new_object[:12],
            "from_prog_id": self.old_prog_id,
            "prog_id": self.new_prog_id,
        }
        for what in ("kept", "migrated", "refilled", "recreated", "dropped"):
            out[what] = sorted(getattr(self, what))
        out["changed"] = dict(sorted(self.why.items()))
        return out


def _layout_change(spec: ObjectSpec, name: str, old: Map[Any, Any]) -> str | None:
    return spec.reuse_mismatch(name, old)


def _migratable(spec: ObjectSpec, name: str, old: Map[Any, Any]) -> bool:
    """Whether every entry of ``old`` moves to the new map without loss
    or change of meaning (only max_entries differs, see the module doc)."""
    from xdpshield.ebpf._libbpf import lib  # the spec's map view, not in the public API

    L = lib().bpf
    ptr = spec._map_ptr(name)
    same = (
        spec.map_type(name) == old.type
        and L.bpf_map__key_size(ptr) == old.key_size
        and L.bpf_map__value_size(ptr) == old.value_size
    )
    if not same:
        return False
    new_max = L.bpf_map__max_entries(ptr)
    if old.type in _HASH_TYPES:
        return bool(new_max >= old.max_entries)
    return old.type in _ARRAY_TYPES and name in INDEX_STABLE


def plan_maps(spec: ObjectSpec, pin_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(action per map of ``spec``, why per map not kept), without loading.
    Actions: kept, migrated, refilled, recreated, refused."""
    actions: dict[str, str] = {}
    why: dict[str, str] = {}
    pinned = set(datapath.PIN_MAPS)
    for name in spec.map_names:
        pin = pin_dir / name
        if spec.map_type(name) == _PROG_ARRAY:
            # Kept, libbpf would write the new programs into the running
            # object's table at load, before the swap.
            actions[name] = "recreated"
            continue
        if name not in pinned or not pin.exists():
            actions[name] = "refilled" if name in REFILLED else "recreated"
            if name in STATE and name in pinned:
                why[name] = "not pinned by the running shield"
            continue
        old = Map.open_pinned(pin)
        try:
            change = _layout_change(spec, name, old)
            if change is None:
                actions[name] = "kept"
            else:
                why[name] = change
                if name in REFILLED:
                    actions[name] = "refilled"
                elif _migratable(spec, name, old):
                    actions[name] = "migrated"
                elif name in STATE:
                    actions[name] = "refused"
                else:
                    actions[name] = "recreated"
        finally:
            old.close()
    # The policy's tables go together: one generation scheme, one selector.
    policy_maps = [n for n in actions if n in datapath.POLICY_MAPS]
    if any(actions[n] != "kept" for n in policy_maps):
        for n in policy_maps:
            actions[n] = "refilled"
    return actions, why


def _copy(old: Map[Any, Any], new: Map[Any, Any]) -> int:
    """Every entry of ``old`` into ``new`` (an array: the indices both have)."""
    n = 0
    for key, value in old.items():
        if old.type in _ARRAY_TYPES and int.from_bytes(key, "little") >= new.max_entries:
            continue
        new.update(key, value)
        n += 1
    return n


#: Staged pins (bpffs refuses names with a dot): renamed over the real ones.
_STAGE = "upgrade-"


def _stage_pins(coll: Collection, shield: Shield, report: UpgradeReport) -> dict[str, Path]:
    """Pin every new object beside the pin it replaces (pin name -> staged
    path); nothing a reader opens changes yet."""
    want: dict[str, Map[Any, Any] | Program] = {
        name: m
        for name, m in coll.maps.items()
        if name in datapath.PIN_MAPS and name not in report.kept
    }
    want["prog"] = coll.program("xdpshield_xdp")
    for pin, prog_name in (("tc", "xdpshield_tc"), ("tc_egress", "xdpshield_tc_egress")):
        if prog_name in coll.programs:
            want[pin] = coll.programs[prog_name]
    staged: dict[str, Path] = {}
    try:
        for pin, obj in want.items():
            tmp = shield.pin_dir / f"{_STAGE}{pin}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # left by an upgrade that died here
            obj.pin(tmp)
            staged[pin] = tmp
    except BaseException:
        _unstage(staged)
        raise
    return staged


def _unstage(staged: dict[str, Path]) -> None:
    for tmp in staged.values():
        with contextlib.suppress(OSError):
            tmp.unlink()


def _live_entries(shield: Shield) -> dict[str, dict[Any, float | None]]:
    """The entries added live to the running shield's lists (kept across
    applies; carried into new tables). A shield from before the lists has
    none; one whose lists this version cannot read refuses the upgrade:
    carrying nothing would quietly drop what operators added."""
    out: dict[str, dict[Any, float | None]] = {}
    if "xs_psel" not in shield.maps:
        return out
    for which in ("allow", "deny"):
        try:
            out[which] = {e.prefix: e.ttl_s() for e in shield.list_entries(which) if e.live}
        except (XdpShieldError, ValueError, KeyError) as exc:
            raise UpgradeRefused(
                f"{shield.iface}: cannot read the running shield's {which} list ({exc}): "
                "the new tables would lose the entries added to it live, so the "
                "running shield is left as it is",
                ["xs_psel"],
            ) from None
    return out


def upgrade(
    shield: Shield,
    *,
    pol: Policy | None = None,
    ports: Iterable[int] | None = None,
    obj: Path | None = None,
) -> UpgradeReport:
    """Move ``shield`` to ``obj`` (default: the installed object); see the
    module doc. ``pol``: the policy to fill new policy tables with (the
    config's; its record is written by the apply that follows); ``ports``:
    the protected ports (default: the running shield's). ``shield`` is
    stale afterwards: reopen it.

    Raises UpgradeRefused (a state map would be lost), VerifierError, or
    any error of the swap; in every case the running shield is unchanged.
    """
    rec = shield.record
    path = obj or shield_object(rec.debug)
    digest = object_digest(path)
    report = UpgradeReport(
        shield.iface, shield.netns, rec.object_sha256 or "", digest, shield.program.id
    )
    with shield.in_netns():
        spec = ObjectSpec(path)
        try:
            coll = _load(spec, shield, report)
        except BaseException:
            spec.close()
            raise
        try:
            port_list = list(ports) if ports is not None else shield.ports
            _fill(coll, shield, report, pol, port_list)
            _swap(coll, shield, report)
        finally:
            coll.close()  # what is in use stays: pins and hooks hold it
    return report


def _load(spec: ObjectSpec, shield: Shield, report: UpgradeReport) -> Collection:
    rec = shield.record
    transparent = rec.handshake is Handshake.TRANSPARENT
    consts = datapath.constants(rec.options, local_known=True)
    if consts:
        spec.set_constants(**consts)
    spec.set_autoload("xdpshield_tc", transparent)
    actions, why = plan_maps(spec, shield.pin_dir)
    refused = sorted(n for n, a in actions.items() if a == "refused")
    if refused:
        detail = "; ".join(f"map {n}: {why[n]}" for n in refused)
        raise UpgradeRefused(
            f"{shield.iface}: cannot move the running shield (object {report.old_object[:12]}) "
            f"to {spec.path.name} ({report.new_object[:12]}): {detail}; its state cannot be "
            "migrated, so the running shield is left as it is",
            refused,
        )
    for name, action in actions.items():
        getattr(report, action).append(name)
        if action == "kept":
            old = Map.open_pinned(shield.pin_dir / name)
            try:
                spec.reuse_map(name, old)  # libbpf keeps its own duplicate
            finally:
                old.close()
    report.why = why
    return spec.load()


def _fill(
    coll: Collection,
    shield: Shield,
    report: UpgradeReport,
    pol: Policy | None,
    ports: list[int],
) -> None:
    """Give the new maps their content, before any packet meets them."""
    new = coll.maps
    # Read first: a refusal must come before anything is written (kept maps are live).
    refill_policy = any(n in datapath.POLICY_MAPS for n in report.refilled)
    live = _live_entries(shield) if refill_policy else {}
    for name in report.migrated:
        _copy(shield.maps[name], new[name])
    datapath.init_maps(new, ports)  # a kept key stays: rotated only when none is live
    if "xs_sample_bkt" in new and "xs_sample_bkt" not in report.kept:
        # Buckets made anew hold no cap: sampling would be off. A reason the
        # running object lacks keeps the new default.
        rates = shield.sample_rates() if shield.has_samples else {}
        had = shield.maps["xs_sample_bkt"].max_entries if shield.has_samples else 0
        _samples.init_samples(new)
        for reason, rate in rates.items():
            if reason < had:
                _samples.set_rate(new, rate, [reason])
    refresh_host_view(new, shield.iface)
    if "xs_seen" in new and "xs_seen" not in report.kept:
        datapath.mark_seen(new, socket_peers())
    if refill_policy:
        _policy.init_policy(new)
        if pol is not None:
            # The rule ids of the running shield's record: the apply that
            # follows the upgrade (apply_config) finds the same ones.
            prev = {"rule_ids": shield.applied().get("rule_ids", {})}
            _policy.apply_policy(new, pol, previous=prev)
        for which, entries in live.items():
            if entries:
                _policy.add_entries(new, which, entries)
        # What the host asked just before: its replies still pass.
        _policy.carry_remembered(shield.maps, new)


def _tc_progs(shield: Shield) -> dict[bool, Program | None]:
    out: dict[bool, Program | None] = {}
    for pin, ingress in (("tc", True), ("tc_egress", False)):
        try:
            out[ingress] = Program.open_pinned(shield.pin_dir / pin)
        except XdpShieldError:
            out[ingress] = None
    return out


def _swap(coll: Collection, shield: Shield, report: UpgradeReport) -> None:
    ifindex = shield.ifindex
    cur = query_xdp(ifindex)
    if cur is None or cur.prog_id != shield.program.id:
        raise XdpShieldError(
            f"{shield.iface}: the running program (id {shield.program.id}) is not attached "
            "(detached or replaced meanwhile): nothing to upgrade"
        )
    staged = _stage_pins(coll, shield, report)
    old_tc = _tc_progs(shield)
    swapped: list[bool] = []  # tc hooks replaced, in order
    new_tc = {
        False: coll.programs.get("xdpshield_tc_egress"),
        True: coll.programs.get("xdpshield_tc"),
    }
    try:
        for ingress in (False, True):  # egress first, as a load attaches it before XDP
            prog = new_tc[ingress]
            if prog is None:
                continue
            attach_tc(
                prog, ifindex, ingress=ingress, handle=TC_HANDLE, priority=TC_PRIORITY,
                replace=True,
            )  # fmt: skip
            swapped.append(ingress)
        link = replace_xdp(coll.program("xdpshield_xdp"), ifindex, shield.program, cur.mode)
    except BaseException:
        for ingress in swapped:
            back = old_tc[ingress]
            with contextlib.suppress(XdpShieldError, OSError):
                if back is not None:
                    attach_tc(
                        back, ifindex, ingress=ingress, handle=TC_HANDLE, priority=TC_PRIORITY,
                        replace=True,
                    )  # fmt: skip
        _unstage(staged)
        raise
    finally:
        for p in old_tc.values():
            if p is not None:
                p.close()
    report.new_prog_id = link.prog_id
    # The new object runs: the pins follow it (a rename each: a reader
    # opens the old object or the new one, never nothing).
    for pin, tmp in staged.items():
        os.replace(tmp, shield.pin_dir / pin)
    if "tc" not in staged:
        with contextlib.suppress(FileNotFoundError):
            (shield.pin_dir / "tc").unlink()
    for entry in shield.pin_dir.iterdir():
        if entry.name not in coll.maps and entry.name not in _PROGRAM_PINS and entry.is_file():
            report.dropped.append(entry.name)
            entry.unlink()
    rec = replace(
        shield.record, prog_id=link.prog_id, object_sha256=report.new_object, xdp_mode=link.mode
    )
    tmp = shield.meta_path.with_name(f".{shield.meta_path.name}.upgrade")
    tmp.write_text(rec.to_json())
    tmp.replace(shield.meta_path)
