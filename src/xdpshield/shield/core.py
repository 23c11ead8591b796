"""The shield as a whole: load, configure, attach, pin, reopen, unload.

A loaded shield leaves three things behind for the next process (the CLI, the
daemon): the XDP program attached to the interface (netlink, survives us), its
maps and program pinned under ``/sys/fs/bpf/xdpshield/[netns-NAME/]IFACE/``,
and a small JSON record of how it was loaded under ``/run/xdpshield/``
(bpffs holds only BPF objects; :class:`LoadRecord`). A daemon serving the shield records itself
beside it (``IFACE.daemon``: its pid and rotation period).

State kept across unload: ``unload`` leaves the pins of the state maps
(:data:`STATE_MAPS`: the cookie keys, the verified sources, the blocks) in the shield's
directory, and the next ``load`` on that interface reuses them, so a handshake
answered before the reload completes after it and verified sources stay
verified. ``unload(purge=True)`` removes them too. A kept map that does not fit
the object being loaded (its layout changed between versions) is recreated,
with a warning that names it.

Upgrade: :meth:`Shield.upgrade` moves a running shield to another object in
place (shield/upgrade.py): same maps where their layout is unchanged, the
programs swapped on their hooks, never detached.

Stale shields: deleting the interface (``ip link del``) or its namespace
(``ip netns del``) takes the XDP program with it but not the pins nor the
record; :func:`stale_shields` finds them and :meth:`StaleShield.remove`
removes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyroute2 import DiagSocket, IPRoute

from xdpshield import netns as _ns
from xdpshield.ebpf import (
    Collection,
    Map,
    ObjectSpec,
    Program,
    TcLink,
    XdpLink,
    XdpMode,
    bpffs_root,
    close_maps,
    ifindex_of,
    query_xdp,
)
from xdpshield.errors import (
    AlreadyAttached,
    ConfigError,
    InterfaceNotFound,
    NotAttached,
    NotPermitted,
    XdpShieldError,
)
from xdpshield.objects import obj_dir, object_digest, shield_object
from xdpshield.policy.model import Action, Hygiene, Limits, Policy, Prefix, PrefixList
from xdpshield.policy.ports import parse_ports
from xdpshield.policy.rules import CompiledRules
from xdpshield.shield import datapath, policy
from xdpshield.shield import limits as _lim
from xdpshield.shield import samples as _samples
from xdpshield.shield.datapath import GuardOptions, Reason
from xdpshield.shield.limits import Block
from xdpshield.shield.record import HANDSHAKE_MODES, Handshake, LoadRecord

if TYPE_CHECKING:
    from xdpshield.shield.upgrade import UpgradeReport

__all__ = [
    "HANDSHAKE_MODES",
    "STATE_MAPS",
    "Handshake",
    "LoadRecord",
    "Shield",
    "ShieldStatus",
    "StaleShield",
    "check_privileges",
    "daemon_record",
    "find_stale",
    "forget_namespace",
    "forget_state",
    "host_path",
    "kept_state",
    "list_shields",
    "probe_handoff",
    "refresh_host_view",
    "resolve_handshake",
    "socket_peers",
    "stale_shields",
    "syncookies_setting",
]

RUN_DIR = Path("/run/xdpshield")
# Our tc filter on the protected link's clsact ingress ("xs").
TC_HANDLE, TC_PRIORITY = 0x7873, 1
_CAP_NET_ADMIN, _CAP_SYS_ADMIN, _CAP_BPF = 12, 21, 39
#: Maps whose pins outlive ``unload`` (unless purged): the next load reuses them,
#: so cookies minted before a reload stay valid, verified sources stay verified
#: and blocked sources stay blocked.
STATE_MAPS = ("xs_keys", "xs_verified", "xs_blocks", "xs_blocks_lpm")


def check_privileges() -> None:
    """Fail early and clearly: BPF and XDP need CAP_BPF (or SYS_ADMIN) and NET_ADMIN."""
    try:
        caps = int(
            next(
                ln.split()[1]
                for ln in Path("/proc/self/status").read_text().splitlines()
                if ln.startswith("CapEff:")
            ),
            16,
        )
    except (OSError, StopIteration, ValueError):
        return
    has_bpf = bool(caps & (1 << _CAP_BPF) or caps & (1 << _CAP_SYS_ADMIN))
    if not (has_bpf and caps & (1 << _CAP_NET_ADMIN)):
        raise NotPermitted("xdpshield needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo")


def probe_handoff() -> str | None:
    """None when this kernel lets tc hand a connection over (the kfunc
    ``bpf_sk_assign_tcp_reqsk``), else why not. Asks the verifier by loading a
    tiny program: feature listings over-report on this kernel.
    """
    path = obj_dir() / "probe_reqsk.o"
    if not path.is_file():
        return f"probe object missing: {path} (run 'make build')"
    try:
        with ObjectSpec(path) as spec, spec.load():
            return None
    except XdpShieldError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"the kernel refused bpf_sk_assign_tcp_reqsk: {first}"


def syncookies_setting() -> int | None:
    """net.ipv4.tcp_syncookies of the current network namespace (None: unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_syncookies").read_text().strip())
    except (OSError, ValueError):
        return None


_SYNCOOKIES_OFF = (
    "net.ipv4.tcp_syncookies is 0 in this namespace: the kernel would answer every "
    "handed-over connection with an RST (set it to 1)"
)


def resolve_handshake(requested: Handshake | str) -> tuple[Handshake, str]:
    """(mode, why) for a requested handshake mode, in the current namespace.

    ``transparent`` fails loudly when it cannot work; ``auto`` falls back to
    reset mode and says why.
    """
    try:
        want = Handshake(requested)
    except ValueError:
        raise ConfigError(
            f"unknown handshake mode {requested!r} (choose from {', '.join(HANDSHAKE_MODES)})",
            key="mode",
        ) from None
    if want is Handshake.RESET:
        return Handshake.RESET, "requested"
    problem = probe_handoff()
    if problem is None and syncookies_setting() == 0:
        problem = _SYNCOOKIES_OFF
    if problem is None:
        return Handshake.TRANSPARENT, f"{want}: the kernel has bpf_sk_assign_tcp_reqsk"
    if want is Handshake.TRANSPARENT:
        raise ConfigError(f"transparent handshake unavailable: {problem}", key="mode")
    return Handshake.RESET, f"auto: fell back to reset ({problem})"


def _scope(name: str | None = None) -> str:
    """Pins of a named namespace live apart: interface names repeat across namespaces.

    ``name``: that namespace's scope; default: the one this thread is in.
    """
    name = name or _ns.current_name()
    return f"netns-{name}" if name else ""


def _pin_dir(iface: str, scope: str | None = None) -> Path:
    return bpffs_root() / "xdpshield" / (_scope() if scope is None else scope) / iface


def _meta_path(iface: str, scope: str | None = None) -> Path:
    return RUN_DIR / ((_scope() if scope is None else scope) or "host") / f"{iface}.json"


def _daemon_path(meta_path: Path) -> Path:
    return meta_path.with_suffix(".daemon")


def _samples_lock(meta_path: Path) -> Path:
    """Held by the one reader of the drop samples (capture, top)."""
    return meta_path.with_suffix(".samples.lock")


def _policy_path(meta_path: Path) -> Path:
    """What the last policy apply recorded (rule names and ids, digests)."""
    return meta_path.with_suffix(".policy.json")


def host_path(path: Path | str) -> str:
    """``path`` as it reads on the host: bpffs reached through /proc/PID/root
    (where ``ip netns exec`` hid /sys/fs/bpf) is the host's /sys/fs/bpf, and
    the /proc path is gone once this command exits."""
    parts = Path(path).parts
    if len(parts) > 3 and parts[:2] == ("/", "proc") and parts[2].isdigit() and parts[3] == "root":
        return str(Path("/", *parts[4:]))
    return str(path)


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has exited


def daemon_record(meta_path: Path) -> dict[str, Any] | None:
    """The record of the daemon serving the shield whose load record is
    ``meta_path``, or None when there is none or its process is dead."""
    try:
        rec = json.loads(_daemon_path(meta_path).read_text())
        pid = int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec if _pid_alive(pid) else None


@dataclass
class ShieldStatus:
    iface: str
    attached: bool
    prog_id: int
    xdp_mode: str
    handshake: str
    handshake_why: str
    tc_attached: bool
    syncookies: int | None
    ports: list[int]
    loaded_at: float
    pin_dir: str
    debug: bool
    netns: str | None
    totals: dict[str, int] = field(default_factory=dict)
    #: Seconds since the current cookie key was written (None: no key).
    key_age_s: float | None = None
    #: The daemon rotating the keys ({"pid", "rotate_s"}), None: nothing rotates them.
    daemon: dict[str, Any] | None = None
    stale: bool = False
    #: The policy: list sizes (upper bounds), rule count, hygiene checks on,
    #: the file last applied (None: a shield from before policies).
    policy: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Shield:
    """A shield on one interface; it owns its interface index, namespace, pins and links.

    Every method works from any network namespace: what needs the shield's
    own (netlink, sock_diag, its sysctls) enters it; map access goes through
    fds, which work anywhere.
    """

    def __init__(
        self,
        iface: str,
        maps: dict[str, Map[Any, Any]],
        prog: Program,
        record: LoadRecord,
        *,
        pin_dir: Path | None = None,
        meta_path: Path | None = None,
        warnings: list[str] | None = None,
        xdp_link: XdpLink | None = None,
        tc_link: TcLink | None = None,
        tc_egress: TcLink | None = None,
        ns: _ns.NamespaceRef | None = None,
    ) -> None:
        self.iface = iface
        self.maps = maps
        self.program = prog
        self.record = record
        # Made in the shield's namespace (load and open run there).
        self._ns = ns or _ns.NamespaceRef(record.netns)
        self.ifindex = record.ifindex
        # Where the pins and the record are, fixed at open: valid from any namespace.
        self.pin_dir = pin_dir or _pin_dir(iface, _scope(record.netns))
        self.meta_path = meta_path or _meta_path(iface, _scope(record.netns))
        #: Our XDP attachment (None: nothing of ours is attached) and tc handoff.
        self.xdp_link = xdp_link
        self.tc_link = tc_link
        #: tc egress: notes the host's requests to reflection ports (hygiene).
        self.tc_egress = tc_egress
        #: What load had to say (a kept state map that no longer fits, ...).
        self.warnings = warnings or []

    @property
    def netns(self) -> str | None:
        """The shield's namespace (``ip netns`` name; None: the host's or an unnamed one)."""
        return self._ns.name

    @property
    def meta(self) -> dict[str, Any]:
        """The load record as a dict, for callers written before :attr:`record`."""
        return self.record.as_dict()

    def in_netns(self) -> contextlib.AbstractContextManager[None]:
        """Run a block in the shield's namespace (e.g. to list its sockets)."""
        return self._ns.enter()

    # -- lifecycle ----------------------------------------------------------------
    @classmethod
    def load(
        cls,
        iface: str,
        *,
        ports: Iterable[int] = (),
        xdp_mode: XdpMode | str = XdpMode.AUTO,
        handshake: Handshake | str = Handshake.AUTO,
        debug: bool = False,
        options: GuardOptions | None = None,
        netns: str | None = None,
    ) -> Shield:
        """Load the shield object, fill its maps, pin them, then attach.

        ``netns``: the namespace of ``iface`` (default: the current one); the
        shield remembers it, so its methods work from anywhere.

        Maps are filled before the attach so the first packet already meets the
        configured ports. In transparent mode the tc program is attached before
        XDP starts passing handshakes to it. On any failure nothing is left
        attached or pinned (kept state maps stay kept).

        The state maps (:data:`STATE_MAPS`) an earlier ``unload`` kept are
        reused: same cookie keys, same verified sources. One that does not fit
        this object is recreated and named in :attr:`warnings`.

        ``handshake``: ``reset``, ``transparent`` or ``auto`` (transparent when
        the kernel supports it, see :func:`resolve_handshake`), the default.
        """
        check_privileges()
        port_list = parse_ports(ports)
        mode = XdpMode(xdp_mode)
        with _ns.enter(netns):
            ns = _ns.NamespaceRef(netns or _ns.current_name())
            try:
                return cls._load_here(
                    iface,
                    port_list,
                    mode,
                    handshake,
                    debug,
                    options or GuardOptions(debug=debug),
                    ns,
                )
            except BaseException:
                ns.close()
                raise

    @classmethod
    def _load_here(
        cls,
        iface: str,
        ports: list[int],
        mode: XdpMode,
        handshake: Handshake | str,
        debug: bool,
        opts: GuardOptions,
        ns: _ns.NamespaceRef,
    ) -> Shield:
        """``load`` inside the shield's namespace."""
        resolved, why = resolve_handshake(handshake)
        scope = _scope(ns.name)
        pin_dir, meta_path = _pin_dir(iface, scope), _meta_path(iface, scope)
        ifindex = _claim_interface(iface, pin_dir, meta_path)
        transparent = resolved is Handshake.TRANSPARENT
        # Never offer an option the protected stack has turned off.
        stack = {k: on and getattr(opts, k) for k, on in datapath.stack_options().items()}
        opts = replace(opts, transparent=transparent, **stack)
        obj = shield_object(debug)
        digest = object_digest(obj)
        spec = ObjectSpec(obj)
        consts = datapath.constants(opts, local_known=True)
        if consts:
            spec.set_constants(**consts)
        spec.set_autoload("xdpshield_tc", transparent)
        kept, warnings = _reuse_state(spec, pin_dir)
        try:
            coll = spec.load()
        except BaseException:
            _remove_pins(pin_dir, meta_path, keep=kept)
            raise
        installed = _Install(coll, iface, pin_dir, meta_path, kept)
        try:
            installed.run(ports, transparent, mode)
            record = LoadRecord(
                iface=iface,
                ifindex=ifindex,
                prog_id=installed.xdp.prog_id,
                xdp_mode=installed.xdp.mode,
                handshake=resolved,
                handshake_why=why,
                debug=debug,
                loaded_at=time.time(),
                options=opts,
                netns=ns.name,
                object_sha256=digest,
            )
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(record.to_json())
        except BaseException:
            installed.undo()
            raise
        return cls(
            iface,
            installed.maps,
            installed.prog,
            record,
            pin_dir=pin_dir,
            meta_path=meta_path,
            warnings=warnings,
            xdp_link=installed.xdp,
            tc_link=installed.tc,
            tc_egress=installed.tc_egress,
            ns=ns,
        )

    def upgrade(
        self,
        *,
        pol: Policy | None = None,
        ports: Iterable[int] | None = None,
        obj: Path | None = None,
    ) -> UpgradeReport:
        """Move this running shield to the installed object (``obj``) in
        place, keeping every map whose layout is unchanged; see
        shield/upgrade.py. Raises UpgradeRefused (a state map cannot move),
        VerifierError, ...: then the running shield is unchanged. This
        object is stale afterwards: :meth:`reopen`."""
        from xdpshield.shield.upgrade import upgrade

        return upgrade(self, pol=pol, ports=ports, obj=obj)

    @classmethod
    def open(cls, iface: str, *, netns: str | None = None) -> Shield:
        """Reopen a running shield from its pins (e.g. from the CLI).

        ``netns``: the namespace of ``iface`` (default: the current one).
        """
        check_privileges()
        with _ns.enter(netns):
            ifindex_of(iface)
            scope = _scope(netns)
            return cls._from_pins(iface, _pin_dir(iface, scope), _meta_path(iface, scope))

    def reopen(self) -> Shield:
        """The shield now loaded at this one's pins (after a reload: new program
        and maps), from any namespace. NotAttached when none is."""
        with self._ns.enter():
            return Shield._from_pins(self.iface, self.pin_dir, self.meta_path)

    def is_current(self) -> bool | None:
        """Whether the program pinned at this shield's pins is still this one
        (False: reloaded since; None: nothing is pinned, unloaded)."""
        try:
            prog = Program.open_pinned(self.pin_dir / "prog")
        except XdpShieldError:
            return None
        try:
            return prog.id == self.program.id
        finally:
            prog.close()

    @classmethod
    def _from_pins(cls, iface: str, pin_dir: Path, meta_path: Path) -> Shield:
        """Open the shield pinned at ``pin_dir``, in its namespace (the current one)."""
        if not (pin_dir / "prog").exists():
            raise NotAttached(f"xdpshield is not loaded on {iface}")
        maps: dict[str, Map[Any, Any]] = {}
        try:
            for name in datapath.PIN_MAPS:
                if name in datapath.OPTIONAL_PINS and not (pin_dir / name).exists():
                    continue
                maps[name] = Map.open_pinned(pin_dir / name)
            prog = Program.open_pinned(pin_dir / "prog")
        except BaseException:
            close_maps(maps)
            raise
        record, warnings = _read_record(iface, meta_path)
        ifindex = ifindex_of(iface)
        record = replace(record, ifindex=ifindex, netns=_ns.current_name())
        cur = query_xdp(ifindex)
        xdp = XdpLink(ifindex, prog.id, cur.mode if cur else record.xdp_mode)
        return cls(
            iface,
            maps,
            prog,
            record,
            pin_dir=pin_dir,
            meta_path=meta_path,
            warnings=warnings,
            xdp_link=xdp,
            tc_link=_pinned_tc_link(ifindex, pin_dir / "tc"),
            tc_egress=_pinned_tc_link(ifindex, pin_dir / "tc_egress", ingress=False),
        )

    def unload(self, *, purge: bool = False) -> None:
        """Detach (only our programs) and remove the pins but those of the
        state maps (:data:`STATE_MAPS`), which the next load reuses;
        ``purge``: those too.

        XDP goes first, so no handshake is passed on after tc has gone.
        """
        with self._ns.enter():
            for link in (self.xdp_link, self.tc_link, self.tc_egress):
                if link is not None:
                    with contextlib.suppress(NotAttached):  # someone else's now: left alone
                        link.detach()
        self.close()
        _remove_pins(self.pin_dir, self.meta_path, keep=() if purge else STATE_MAPS)

    def close(self) -> None:
        close_maps(self.maps)
        self.program.close()
        self._ns.close()

    def __enter__(self) -> Shield:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- live configuration and state ---------------------------------------------
    @property
    def ports(self) -> list[int]:
        return sorted(datapath.get_ports(self.maps))

    def set_ports(self, ports: Iterable[int]) -> None:
        datapath.set_ports(self.maps, parse_ports(ports))

    def add_ports(self, ports: Iterable[int]) -> None:
        self.set_ports(set(self.ports) | set(parse_ports(ports)))

    def del_ports(self, ports: Iterable[int]) -> None:
        gone = set(parse_ports(ports))
        missing = gone - set(self.ports)
        if missing:
            raise ConfigError(f"not protected: {', '.join(map(str, sorted(missing)))}", key="ports")
        self.set_ports(set(self.ports) - gone)

    def stats(self) -> dict[Reason, tuple[int, int]]:
        return datapath.read_stats(self.maps)

    # -- policy (shield/policy.py) --------------------------------------------------
    @contextlib.contextmanager
    def _policy_lock(self) -> Iterator[None]:
        """One policy writer at a time (the CLI, the daemon, an apply)."""
        self.meta_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.meta_path.with_suffix(".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def applied(self) -> dict[str, Any]:
        """What the last apply recorded ({} before any)."""
        try:
            data = json.loads(_policy_path(self.meta_path).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def apply_policy(
        self, pol: Policy, *, source: str | None = None, compiled: CompiledRules | None = None
    ) -> policy.ApplyResult:
        """Make ``pol`` live, atomically; see :func:`policy.apply_policy`.
        ``compiled``: its rules, compiled against :meth:`applied`'s ids."""
        with self._policy_lock():
            prev = self.applied()
            res = policy.apply_policy(self.maps, pol, previous=prev, compiled=compiled)
            record = {
                "source": source,
                "applied_at": time.time(),
                **res.carry(),
                "rules": [
                    {
                        "name": r.name,
                        "id": res.rule_ids[r.name][0],
                        "rule": r.describe(),
                        "origin": r.origin,
                    }
                    for r in pol.rules
                ],
                "hygiene": pol.hygiene.as_json(),
                "limits": pol.limits.as_json(),
                "limit_rules": any(r.action == Action.LIMIT for r in pol.rules),
            }
            self._write_applied(record)
            return res

    def _write_applied(self, record: Mapping[str, Any]) -> None:
        path = _policy_path(self.meta_path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)

    def list_entries(self, which: str) -> list[policy.ListEntry]:
        return policy.list_entries(self.maps, which)

    def add_entries(self, which: str, entries: PrefixList) -> int:
        with self._policy_lock():
            return policy.add_entries(self.maps, which, entries)

    def del_entries(self, which: str, prefixes: Iterable[Prefix]) -> int:
        with self._policy_lock():
            return policy.del_entries(self.maps, which, prefixes)

    def age_lists(self, now_ns: int | None = None) -> int:
        with self._policy_lock():
            return policy.age_lists(self.maps, now_ns)

    def policy_summary(self) -> dict[str, Any] | None:
        """What ``status`` says of the policy (None: a shield from before policies)."""
        if "xs_psel" not in self.maps:
            return None
        sel = policy.selector(self.maps)
        applied = self.applied()
        hyg = applied.get("hygiene") or Hygiene().as_json()
        checks = ("tcp_flags", "reflection", "fragments", "icmp")
        return {
            "allow": sel.n_allow4 + sel.n_allow6,
            "deny": sel.n_deny4 + sel.n_deny6,
            "rules": sel.n_rules,
            "hygiene": [c for c in checks if hyg.get(c)],
            "source": applied.get("source"),
            # The limits that are on, by key (ceilings as ceiling-PROTO).
            "limits": [
                k.replace("_", "-")
                for k, v in (applied.get("limits") or {}).items()
                if k in ("pps", "bps", "syn_pps", "block_after") and v is not None
            ]
            + [f"ceiling-{p}" for p in (applied.get("limits") or {}).get("ceilings") or {}],
            "blocks": len(self.blocks()),
        }

    def rules(self) -> list[dict[str, Any]]:
        """The live rules in order: name, id, definition, where written, and
        their counters (packets, bytes); none on a shield from before policies."""
        if "xs_rule_stats" not in self.maps:
            return []
        rules = [dict(r) for r in self.applied().get("rules", [])]
        stats = policy.rule_stats(self.maps, {r["name"]: int(r["id"]) for r in rules})
        for r in rules:
            r["packets"], r["bytes"] = stats[r["name"]]
        return rules

    # -- limits (shield/limits.py) ------------------------------------------------
    def limits(self) -> Limits:
        """The live limits (as the last apply or ``limits set`` made them)."""
        raw = self.applied().get("limits")
        return _lim.limits_from_json(raw) if isinstance(raw, dict) else Limits()

    def set_limits(self, lim: Limits) -> None:
        """Make ``lim`` the live limits at once (one switch); a later config
        apply puts the file's back."""
        with self._policy_lock():
            record = self._switch_limits(lim)
            record["limits"] = lim.as_json()
            # The next apply compares the file's limits with these.
            record.setdefault("digests", {})["limits"] = policy.limits_digest(lim)
            self._write_applied(record)

    def _switch_limits(self, lim: Limits) -> dict[str, Any]:
        """Switch to ``lim`` (policy lock held); the record, its generations
        brought up to date (so the next apply still trusts it)."""
        record = self.applied()
        policy.switch_limits(self.maps, lim, limit_rules=bool(record.get("limit_rules")))
        if isinstance(record.get("gens"), dict):
            record["gens"]["lim"] = policy.selector(self.maps).lim_gen
        return record

    def blocks(self, *, expired: bool = False) -> list[Block]:
        """The blocks in force (``expired``: also those kept for their repeat window)."""
        if "xs_blocks" not in self.maps:
            return []
        return _lim.list_blocks(self.maps, expired=expired)

    def add_blocks(self, prefixes: Mapping[Prefix, float]) -> int:
        """Block each prefix for its seconds, by hand."""
        with self._policy_lock():
            n = _lim.add_blocks(self.maps, prefixes)
            record = self._switch_limits(self.limits())  # the block flags
            if record:
                self._write_applied(record)
            return n

    def del_blocks(self, prefixes: Iterable[Prefix]) -> int:
        with self._policy_lock():
            return _lim.del_blocks(self.maps, prefixes)

    def expire_blocks(self, now_ns: int | None = None) -> tuple[list[Block], list[Block]]:
        """Remove blocks past their time (automatic ones: past their repeat
        window too); returns (in force, removed)."""
        if "xs_blocks" not in self.maps:
            return [], []
        return _lim.expire_blocks(self.maps, self.limits().block_repeat, now_ns=now_ns)

    # -- drop samples (shield/samples.py) ---------------------------------------
    @property
    def has_samples(self) -> bool:
        """Whether the shield has drop samples (one loaded by an older version has none)."""
        return _samples.has_samples(self.maps)

    def sampler(self, reasons: Iterable[Reason] | None = None) -> _samples.Sampler:
        """A reader of the drop samples (one at a time per shield: AlreadyRunning
        when another capture or top reads them)."""
        return _samples.Sampler(self.maps, reasons=reasons, lock=_samples_lock(self.meta_path))

    def sample_rates(self) -> dict[Reason, int]:
        """Each reason's cap on samples per second (0: off)."""
        return _samples.rates(self.maps)

    def set_sample_rate(self, rate: int, reasons: Iterable[Reason] | None = None) -> None:
        """Cap the samples of ``reasons`` (default: all) at ``rate`` per second; 0: off."""
        _samples.set_rate(self.maps, rate, reasons)

    def sample_counts(self) -> dict[Reason, tuple[int, int]]:
        """Per reason: (samples sent, samples lost to a full ring), since load."""
        return _samples.sample_counts(self.maps)

    # -- housekeeping (the daemon's duties) ---------------------------------------
    def rotate_keys(self) -> int | None:
        """A fresh cookie key (the current one stays valid one more period);
        returns the new epoch."""
        datapath.rotate_keys(self.maps)
        return datapath.current_epoch(self.maps)

    def current_epoch(self) -> int | None:
        """Epoch of the current cookie key (None before any key)."""
        return datapath.current_epoch(self.maps)

    def key_age_s(self) -> float | None:
        """Seconds since the current cookie key was written (None: no key)."""
        return datapath.key_age_s(self.maps)

    def verified_sources(self) -> dict[datapath.Address, datapath.VerifiedEntry]:
        return datapath.verified_sources(self.maps)

    def age_verified(self, now_ns: int | None = None) -> int:
        """Remove verified sources expired at ``now_ns`` (default: now, on
        CLOCK_MONOTONIC as the data path); returns how many."""
        return datapath.age_verified(self.maps, time.monotonic_ns() if now_ns is None else now_ns)

    def cpu_states(self) -> list[datapath.CpuState]:
        return datapath.cpu_states(self.maps)

    @property
    def tracks_seen(self) -> bool:
        """Whether the shield has the seen-sources filter (one loaded by an
        older version has none)."""
        return "xs_seen" in self.maps

    def rebuild_seen(self) -> tuple[int, int]:
        """Cut the seen-sources filter back to the peers of the namespace's
        sockets now; returns the bits set before and after."""
        with self._ns.enter():
            return datapath.rebuild_seen(self.maps, socket_peers)

    def refresh_host_view(self) -> bool:
        """Tell the data path the namespace's addresses, MAC and listeners now;
        False when the shield is too old to have those maps."""
        if not {"xs_local", "xs_ifinfo", "xs_listen"} <= self.maps.keys():
            return False
        with self._ns.enter():
            refresh_host_view(self.maps, self.iface)
        return True

    def status(self) -> ShieldStatus:
        with self._ns.enter():
            attached = self.xdp_link is not None and self.xdp_link.attached()
            tc_attached = self.tc_link is not None and self.tc_link.attached()
            syncookies = syncookies_setting()
        stats = self.stats()
        rec = daemon_record(self.meta_path)
        return ShieldStatus(
            iface=self.iface,
            attached=attached,
            prog_id=self.program.id,
            xdp_mode=self.xdp_link.mode if attached and self.xdp_link else "detached",
            handshake=self.record.handshake.value,
            handshake_why=self.record.handshake_why,
            tc_attached=tc_attached,
            syncookies=syncookies,
            ports=self.ports,
            loaded_at=self.record.loaded_at,
            pin_dir=host_path(self.pin_dir),
            debug=self.record.debug,
            netns=self.netns,
            totals={
                "packets": sum(p for p, _ in stats.values()),
                "bytes": sum(b for _, b in stats.values()),
            },
            key_age_s=self.key_age_s(),
            policy=self.policy_summary(),
            daemon=None
            if rec is None
            else {"pid": int(rec["pid"]), "rotate_s": float(rec.get("rotate_s", 0.0))},
        )


def _claim_interface(iface: str, pin_dir: Path, meta_path: Path) -> int:
    """The interface's index, once it is free for the shield: no shield of
    ours on it (AlreadyAttached), no one else's XDP program; clears what a
    stale or unloaded shield left (but the state maps)."""
    ifindex = ifindex_of(iface)  # InterfaceNotFound before any work
    if pin_dir.exists():
        if _attached_is_ours(ifindex, pin_dir):
            raise AlreadyAttached(
                f"xdpshield is already loaded on {iface}; 'xdpshield unload {iface}' first"
            )
        for pin, ingress in (("tc", True), ("tc_egress", False)):
            tc = _pinned_tc_link(ifindex, pin_dir / pin, ingress=ingress)
            if tc is not None:
                with contextlib.suppress(NotAttached):
                    tc.detach()
        # Stale (the interface was recreated or detached by hand), or what
        # an unload kept: all but the state maps go.
        _remove_pins(pin_dir, meta_path, keep=STATE_MAPS)
    if (cur := query_xdp(ifindex)) is not None:
        raise AlreadyAttached(
            f"{iface} already runs XDP program id {cur.prog_id} "
            f"({cur.mode}) that is not xdpshield's; detach it first"
        )
    return ifindex


class _Install:
    """The steps of a load after the object is in the kernel, and their undo."""

    def __init__(
        self, coll: Collection, iface: str, pin_dir: Path, meta_path: Path, kept: set[str]
    ) -> None:
        self.coll, self.iface, self.kept = coll, iface, kept
        self.pin_dir, self.meta_path = pin_dir, meta_path
        self.maps: dict[str, Map[Any, Any]] = {}
        self.prog = coll.program("xdpshield_xdp")
        self.tc: TcLink | None = None
        self.tc_egress: TcLink | None = None
        self._xdp: XdpLink | None = None

    @property
    def xdp(self) -> XdpLink:
        assert self._xdp is not None, "run() attaches first"
        return self._xdp

    def run(self, ports: list[int], transparent: bool, mode: XdpMode) -> None:
        maps = self.coll.maps
        # Keys are rotated only when none is live: kept keys stay.
        datapath.init_maps(maps, ports)
        _samples.init_samples(maps)
        policy.init_policy(maps)
        refresh_host_view(maps, self.iface)
        # Sockets from before the shield (a TIME_WAIT; in reset mode any
        # live connection) are known before its first packet.
        datapath.mark_seen(maps, socket_peers())
        self.pin_dir.mkdir(parents=True, exist_ok=True)
        for name in datapath.PIN_MAPS:
            m = self.coll.map(name)
            if name not in self.kept:  # a reused map is pinned already
                m.pin(self.pin_dir / name)
            self.maps[name] = m
        self.prog.pin(self.pin_dir / "prog")
        if transparent:
            tc = self.coll.program("xdpshield_tc")
            tc.pin(self.pin_dir / "tc")
            self.tc = TcLink.attach(tc, self.iface, handle=TC_HANDLE, priority=TC_PRIORITY)
        # Before XDP: the host's requests to reflection ports are noted
        # before any reply can be judged.
        egress = self.coll.program("xdpshield_tc_egress")
        egress.pin(self.pin_dir / "tc_egress")
        self.tc_egress = TcLink.attach(
            egress, self.iface, ingress=False, handle=TC_HANDLE, priority=TC_PRIORITY
        )
        self._xdp = XdpLink.attach(self.prog, self.iface, mode)
        # Keep the pinned maps and program; the object itself is no longer needed.
        for name, m in self.coll.maps.items():
            if name not in self.maps:
                m.close()

    def undo(self) -> None:
        """Leave nothing attached or pinned (kept state maps stay kept)."""
        for link in (self._xdp, self.tc, self.tc_egress):
            if link is not None:
                with contextlib.suppress(XdpShieldError, OSError):
                    link.detach()
        with contextlib.suppress(XdpShieldError, OSError):
            _remove_pins(self.pin_dir, self.meta_path, keep=self.kept)
        self.coll.close()


def _read_record(iface: str, meta_path: Path) -> tuple[LoadRecord, list[str]]:
    """The load record, or defaults and a warning when it is missing or broken
    (the shield must stay usable: unload above all)."""
    try:
        text = meta_path.read_text()
    except OSError as exc:
        why = f"no load record at {meta_path} ({exc.strerror}): handshake and options unknown"
        return LoadRecord(iface), [why]
    try:
        return LoadRecord.from_json(text, iface=iface, source=str(meta_path)), []
    except ConfigError as exc:
        return LoadRecord(iface), [f"load record ignored: {exc}"]


def _attached_is_ours(ifindex: int, pin_dir: Path) -> bool:
    try:
        prog = Program.open_pinned(pin_dir / "prog")
    except XdpShieldError:
        return False
    try:
        att = query_xdp(ifindex)
        return att is not None and att.prog_id == prog.id
    finally:
        prog.close()


def _pinned_tc_link(ifindex: int, pin: Path, *, ingress: bool = True) -> TcLink | None:
    """The link our tc program pinned at ``pin`` would have (None: no pin)."""
    if not pin.exists():
        return None
    try:
        prog = Program.open_pinned(pin)
    except XdpShieldError:
        return None
    try:
        return TcLink(ifindex, prog.id, TC_HANDLE, TC_PRIORITY, ingress=ingress)
    finally:
        prog.close()


def _reuse_state(spec: ObjectSpec, pin_dir: Path) -> tuple[set[str], list[str]]:
    """Make ``spec`` load with the state maps pinned in ``pin_dir``; returns
    the names reused and a warning for each kept map that no longer fits
    (its pin is removed, so the load creates and pins a new one)."""
    kept: set[str] = set()
    warnings: list[str] = []
    for name in STATE_MAPS:
        pin = pin_dir / name
        if not pin.exists():
            continue
        why: str | None
        try:
            m = Map.open_pinned(pin)
        except XdpShieldError as exc:
            why = str(exc)
        else:
            try:
                why = spec.reuse_mismatch(name, m)
                if why is None:
                    spec.reuse_map(name, m)  # libbpf keeps its own duplicate of the fd
                    kept.add(name)
                    continue
            finally:
                m.close()
        warnings.append(
            f"kept map {name} at {host_path(pin)} does not fit this version ({why}): "
            "created a new one, its state is lost"
        )
        pin.unlink()
    return kept, warnings


def _remove_pins(pin_dir: Path, meta: Path, *, keep: Iterable[str] = ()) -> None:
    """Remove a shield's pins but those named in ``keep``, and its load record."""
    keep = set(keep)
    if pin_dir.is_dir():
        for p in pin_dir.iterdir():
            if p.name in keep:
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()  # unlinking a pin drops that reference only
        with contextlib.suppress(OSError):
            pin_dir.rmdir()  # only when empty: nothing kept
    # The policy lock goes too: a writer holding it keeps its open file.
    for path in (meta, _policy_path(meta), meta.with_suffix(".lock"), _samples_lock(meta)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    # Leave no empty directories behind: per namespace, then the roots
    # (rmdir removes only what is empty: another shield's pins stay).
    for d in (pin_dir.parent, meta.parent):
        with contextlib.suppress(OSError):
            if d.name.startswith("netns-") or d.name == "host":
                d.rmdir()
    for d in (next(p for p in pin_dir.parents if p.name == "xdpshield"), RUN_DIR):
        with contextlib.suppress(OSError):
            d.rmdir()


def refresh_host_view(maps: Mapping[str, Map[Any, Any]], iface: str) -> None:
    """Tell the data path what this namespace is now: its addresses (local
    and broadcast), the interface's MAC, the ports something listens on, and
    the cookie clock's offset (NTP may slew it). The daemon calls it again
    periodically; the data path also marks a listener it finds itself."""
    datapath.set_clock(maps)
    addrs: dict[str, int] = {}
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            for attr, kind in (
                ("IFA_LOCAL", datapath.LOCAL_UNICAST),
                ("IFA_ADDRESS", datapath.LOCAL_UNICAST),
                ("IFA_BROADCAST", datapath.LOCAL_BROADCAST),
            ):
                value = msg.get_attr(attr)
                if value and not (attr == "IFA_ADDRESS" and msg["family"] == socket.AF_INET):
                    addrs.setdefault(str(value), kind)
        links = ipr.link_lookup(ifname=iface)
        mac = ipr.get_links(links[0])[0].get_attr("IFLA_ADDRESS") if links else None
    datapath.set_local_addresses(maps, addrs)
    datapath.set_mac(maps, mac if mac and mac != "00:00:00:00:00:00" else None)
    datapath.set_listening(maps, listening_ports())


def listening_ports() -> set[int]:
    """TCP ports something listens on in this namespace (sock_diag)."""
    ports: set[int] = set()
    with DiagSocket() as ds:
        ds.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ds.get_sock_stats(family=family, states=1 << 10):  # TCP_LISTEN
                ports.add(int(msg["idiag_sport"]))
    return ports


def socket_peers() -> set[str]:
    """Remote addresses of this namespace's TCP sockets but the listeners
    (TIME_WAIT included), through sock_diag."""
    every_but_listen = ((1 << 13) - 2) & ~(1 << 10)  # TCP states 1..12, LISTEN is 10
    peers: set[str] = set()
    with DiagSocket() as ds:
        ds.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ds.get_sock_stats(family=family, states=every_but_listen):
                peers.add(str(msg["idiag_dst"]))
    return peers


def forget_namespace(name: str) -> None:
    """Remove the pins and records of shields in namespace NAME, once it is gone.

    Deleting a namespace takes its links and their XDP programs with it, but
    the pins in the host's bpffs keep the maps alive until removed here.
    """
    if not name:
        raise ConfigError("forget_namespace needs a namespace name", key="netns")
    scope = _scope(name)
    pins = bpffs_root() / "xdpshield" / scope
    if pins.is_dir():
        shutil.rmtree(pins)
    shutil.rmtree(RUN_DIR / scope, ignore_errors=True)


def forget_state(iface: str, netns: str | None = None) -> bool:
    """Remove the state maps an unload kept for ``iface`` in namespace
    ``netns`` (default: this one; the shield must be unloaded); False when
    there were none."""
    scope = _scope(netns)
    pin_dir = _pin_dir(iface, scope)
    if (pin_dir / "prog").exists():
        raise AlreadyAttached(f"xdpshield is loaded on {iface}: 'xdpshield unload {iface} --purge'")
    if not pin_dir.is_dir():
        return False
    _remove_pins(pin_dir, _meta_path(iface, scope))
    return True


@dataclass(frozen=True)
class StaleShield:
    """Pins (and a record) of a shield whose interface or namespace is gone."""

    iface: str
    netns: str | None
    why: str
    pin_dir: Path
    meta_path: Path

    def as_dict(self) -> dict[str, Any]:
        return {
            "iface": self.iface,
            "netns": self.netns,
            "stale": True,
            "attached": False,
            "why": self.why,
            "pin_dir": host_path(self.pin_dir),
        }

    def remove(self) -> None:
        """Remove every pin (state included: its interface is gone) and record."""
        with contextlib.suppress(FileNotFoundError):
            _daemon_path(self.meta_path).unlink()
        _remove_pins(self.pin_dir, self.meta_path)  # and the directories left empty


def stale_shields() -> list[StaleShield]:
    """Shields whose interface is gone from this namespace and, seen from the
    host namespace, every shield of a named namespace that no longer exists
    (its pins sit under ``netns-NAME`` in the host's bpffs)."""
    scope = _scope()
    here = _ns.current_name()
    root = bpffs_root() / "xdpshield"
    found: list[StaleShield] = []
    mine = root / scope
    if mine.is_dir():
        for p in sorted(mine.iterdir()):
            if not p.is_dir() or p.name.startswith("netns-"):
                continue
            try:
                ifindex_of(p.name)
            except InterfaceNotFound:
                found.append(
                    StaleShield(
                        p.name,
                        here,
                        f"interface {p.name} is gone",
                        p,
                        _meta_path(p.name, scope),
                    )
                )
    if not scope and root.is_dir():
        for ns_dir in sorted(root.glob("netns-*")):
            name = ns_dir.name.removeprefix("netns-")
            if _ns.exists(name) or not ns_dir.is_dir():
                continue
            for p in sorted(ns_dir.iterdir()):
                if p.is_dir():
                    found.append(
                        StaleShield(
                            p.name,
                            name,
                            f"network namespace {name} is gone",
                            p,
                            _meta_path(p.name, ns_dir.name),
                        )
                    )
    return found


def find_stale(iface: str, ns_name: str | None = None) -> StaleShield | None:
    """The stale shield on ``iface`` (of namespace ``ns_name`` when given and
    gone, else of this namespace), or None when it is not stale."""
    if ns_name is not None and not _ns.exists(ns_name):
        scope = _scope(ns_name)
        pin_dir = bpffs_root() / "xdpshield" / scope / iface
        if not pin_dir.is_dir():
            return None
        return StaleShield(
            iface,
            ns_name,
            f"network namespace {ns_name} is gone",
            pin_dir,
            _meta_path(iface, scope),
        )
    with _ns.enter(ns_name):  # its interfaces are seen from inside it
        here = _ns.current_name()
        return next((s for s in stale_shields() if s.iface == iface and s.netns == here), None)


def kept_state(netns: str | None = None) -> list[str]:
    """Interfaces of namespace ``netns`` (default: this one) with no shield
    loaded but state an unload kept."""
    root = bpffs_root() / "xdpshield" / _scope(netns)
    if not root.is_dir():
        return []
    found = []
    with _ns.enter(netns):
        for p in sorted(root.iterdir()):
            if p.is_dir() and not p.name.startswith("netns-") and not (p / "prog").exists():
                with contextlib.suppress(InterfaceNotFound):  # gone: stale_shields() has it
                    ifindex_of(p.name)
                    found.append(p.name)
    return found


def list_shields() -> list[str]:
    """Interfaces of this namespace with a shield's pins (loaded or stale)."""
    root = bpffs_root() / "xdpshield" / _scope()
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith("netns-") and (p / "prog").exists()
    )
