"""The shield as a whole: load, configure, attach, pin, reopen, unload.

A loaded shield leaves three things behind for the next process (the CLI, the
daemon): the XDP program attached to the interface (netlink, survives us), its
maps and program pinned under ``/sys/fs/bpf/xdpshield/[netns-NAME/]IFACE/``,
and a small JSON record of how it was loaded under ``/run/xdpshield/``
(bpffs holds only BPF objects). A daemon serving the shield records itself
beside it (``IFACE.daemon``: its pid and rotation period).

State kept across unload: ``unload`` leaves the pins of the state maps
(:data:`STATE_MAPS`: the cookie keys and the verified sources) in the shield's
directory, and the next ``load`` on that interface reuses them, so a handshake
answered before the reload completes after it and verified sources stay
verified. ``unload(purge=True)`` removes them too. A kept map that does not fit
the object being loaded (its layout changed between versions) is recreated,
with a warning that names it.

Stale shields: deleting the interface (``ip link del``) or its namespace
(``ip netns del``) takes the XDP program with it but not the pins nor the
record; :func:`stale_shields` finds them and :meth:`StaleShield.remove`
removes them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from xdpshield import netns
from xdpshield.ebpf import (
    Map,
    ObjectSpec,
    Program,
    XdpMode,
    attach_tc,
    attach_xdp,
    bpffs_root,
    close_maps,
    detach_tc,
    detach_xdp,
    ifindex_of,
    query_tc,
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
from xdpshield.objects import obj_dir, shield_object
from xdpshield.policy.ports import parse_ports
from xdpshield.shield import datapath
from xdpshield.shield.datapath import GuardOptions, Reason

__all__ = [
    "HANDSHAKE_MODES",
    "STATE_MAPS",
    "Shield",
    "ShieldStatus",
    "StaleShield",
    "check_privileges",
    "daemon_record",
    "find_stale",
    "forget_state",
    "host_path",
    "kept_state",
    "list_shields",
    "probe_handoff",
    "refresh_host_view",
    "resolve_handshake",
    "stale_shields",
    "syncookies_setting",
]

RUN_DIR = Path("/run/xdpshield")
#: auto: transparent where the kernel can take the handoff, else reset.
HANDSHAKE_MODES = ("auto", "transparent", "reset")
# Our tc filter on the protected link's clsact ingress ("xs").
TC_HANDLE, TC_PRIORITY = 0x7873, 1
_CAP_NET_ADMIN, _CAP_SYS_ADMIN, _CAP_BPF = 12, 21, 39
#: Maps whose pins outlive ``unload`` (unless purged): the next load reuses them,
#: so cookies minted before a reload stay valid and verified sources stay verified.
STATE_MAPS = ("xs_keys", "xs_verified")


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


def resolve_handshake(requested: str) -> tuple[str, str]:
    """(mode, why) for a requested handshake mode, in the current namespace.

    ``transparent`` fails loudly when it cannot work; ``auto`` falls back to
    reset mode and says why.
    """
    if requested not in HANDSHAKE_MODES:
        raise ConfigError(
            f"unknown handshake mode {requested!r} (choose from {', '.join(HANDSHAKE_MODES)})",
            key="mode",
        )
    if requested == "reset":
        return "reset", "requested"
    problem = probe_handoff()
    if problem is None and syncookies_setting() == 0:
        problem = _SYNCOOKIES_OFF
    if problem is None:
        return "transparent", f"{requested}: the kernel has bpf_sk_assign_tcp_reqsk"
    if requested == "transparent":
        raise ConfigError(f"transparent handshake unavailable: {problem}", key="mode")
    return "reset", f"auto: fell back to reset ({problem})"


def _scope(name: str | None = None) -> str:
    """Pins of a named namespace live apart: interface names repeat across namespaces.

    ``name``: that namespace's scope; default: the one this thread is in.
    """
    name = name or netns.current_name()
    return f"netns-{name}" if name else ""


def _pin_dir(iface: str, scope: str | None = None) -> Path:
    return bpffs_root() / "xdpshield" / (_scope() if scope is None else scope) / iface


def _meta_path(iface: str, scope: str | None = None) -> Path:
    return RUN_DIR / ((_scope() if scope is None else scope) or "host") / f"{iface}.json"


def _daemon_path(meta_path: Path) -> Path:
    return meta_path.with_suffix(".daemon")


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Shield:
    """A shield on one interface of the current network namespace."""

    def __init__(
        self,
        iface: str,
        maps: dict[str, Map[Any, Any]],
        prog: Program,
        meta: dict[str, Any],
        *,
        pin_dir: Path | None = None,
        meta_path: Path | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.iface = iface
        self.maps = maps
        self.program = prog
        self.meta = meta
        # Where the pins and the record are, fixed at open: valid from any namespace.
        self.pin_dir = pin_dir or _pin_dir(iface)
        self.meta_path = meta_path or _meta_path(iface)
        #: What load had to say (a kept state map that no longer fits, ...).
        self.warnings = warnings or []

    # -- lifecycle ----------------------------------------------------------------
    @classmethod
    def load(
        cls,
        iface: str,
        *,
        ports: Iterable[int] = (),
        xdp_mode: XdpMode | str = XdpMode.AUTO,
        handshake: str = "auto",
        debug: bool = False,
        options: GuardOptions | None = None,
    ) -> Shield:
        """Load the shield object, fill its maps, pin them, then attach.

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
        handshake, why = resolve_handshake(handshake)
        transparent = handshake == "transparent"
        mode = XdpMode(xdp_mode)
        port_list = parse_ports(ports)
        ifindex_of(iface)  # InterfaceNotFound before any work
        pin_dir, meta_path = _pin_dir(iface), _meta_path(iface)
        if pin_dir.exists():
            if _attached_is_ours(iface, pin_dir):
                raise AlreadyAttached(
                    f"xdpshield is already loaded on {iface}; 'xdpshield unload {iface}' first"
                )
            _detach_tc_ours(iface, pin_dir / "tc")
            # Stale (the interface was recreated or detached by hand), or what
            # an unload kept: all but the state maps go.
            _remove_pins(pin_dir, meta_path, keep=STATE_MAPS)
        if (cur := query_xdp(iface)) is not None:
            raise AlreadyAttached(
                f"{iface} already runs XDP program id {cur.prog_id} "
                f"({cur.mode}) that is not xdpshield's; detach it first"
            )
        opts = options or GuardOptions(debug=debug)
        # Never offer an option the protected stack has turned off.
        stack = {k: on and getattr(opts, k) for k, on in datapath.stack_options().items()}
        opts = replace(opts, transparent=transparent, **stack)
        spec = ObjectSpec(shield_object(debug))
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
        tc_attached = False
        try:
            # Keys are rotated only when none is live: kept keys stay.
            datapath.init_maps(coll.maps, port_list)
            refresh_host_view(coll.maps, iface)
            # Sockets from before the shield (a TIME_WAIT; in reset mode any
            # live connection) are known before its first packet.
            datapath.mark_seen(coll.maps, socket_peers())
            pin_dir.mkdir(parents=True, exist_ok=True)
            maps: dict[str, Map[Any, Any]] = {}
            for name in datapath.PIN_MAPS:
                m = coll.map(name)
                if name not in kept:  # a reused map is pinned already
                    m.pin(pin_dir / name)
                maps[name] = m
            prog = coll.program("xdpshield_xdp")
            prog.pin(pin_dir / "prog")
            if transparent:
                tc = coll.program("xdpshield_tc")
                tc.pin(pin_dir / "tc")
                attach_tc(tc, iface, handle=TC_HANDLE, priority=TC_PRIORITY)
                tc_attached = True
            att = attach_xdp(prog, iface, mode)
            meta = {
                "iface": iface,
                "prog_id": att.prog_id,
                "xdp_mode": att.mode,
                "handshake": handshake,
                "handshake_why": why,
                "debug": debug,
                "loaded_at": time.time(),
                "options": asdict(opts),
                "netns": netns.current_name(),
            }
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps(meta, indent=2))
        except BaseException:
            if tc_attached:
                with contextlib.suppress(XdpShieldError, OSError):
                    detach_tc(iface, handle=TC_HANDLE, priority=TC_PRIORITY)
            with contextlib.suppress(XdpShieldError, OSError):
                _remove_pins(pin_dir, meta_path, keep=kept)
            coll.close()
            raise
        # Keep the pinned maps and program; the object itself is no longer needed.
        for name, m in coll.maps.items():
            if name not in maps:
                m.close()
        return cls(iface, maps, prog, meta, pin_dir=pin_dir, meta_path=meta_path, warnings=warnings)

    @classmethod
    def open(cls, iface: str) -> Shield:
        """Reopen a running shield from its pins (e.g. from the CLI)."""
        check_privileges()
        ifindex_of(iface)
        return cls._from_pins(iface, _pin_dir(iface), _meta_path(iface))

    def reopen(self) -> Shield:
        """The shield now loaded at this one's pins (after a reload: new program
        and maps), from any namespace. NotAttached when none is."""
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
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {"iface": iface, "handshake": "reset", "debug": False, "loaded_at": 0.0}
        return cls(iface, maps, prog, meta, pin_dir=pin_dir, meta_path=meta_path)

    def unload(self, *, purge: bool = False) -> None:
        """Detach (only our programs) and remove the pins but those of the
        state maps (:data:`STATE_MAPS`), which the next load reuses;
        ``purge``: those too.

        XDP goes first, so no handshake is passed on after tc has gone.
        """
        _detach_ours(self.iface, self.program.id)
        _detach_tc_ours(self.iface, self.pin_dir / "tc")
        self.close()
        _remove_pins(self.pin_dir, self.meta_path, keep=() if purge else STATE_MAPS)

    def close(self) -> None:
        close_maps(self.maps)
        self.program.close()

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

    def status(self) -> ShieldStatus:
        att = query_xdp(self.iface)
        prog_id = self.program.id
        stats = self.stats()
        rec = daemon_record(self.meta_path)
        return ShieldStatus(
            iface=self.iface,
            attached=att is not None and att.prog_id == prog_id,
            prog_id=prog_id,
            xdp_mode=att.mode if att else "detached",
            handshake=str(self.meta.get("handshake", "reset")),
            handshake_why=str(self.meta.get("handshake_why", "")),
            tc_attached=query_tc(self.iface, handle=TC_HANDLE, priority=TC_PRIORITY) is not None,
            syncookies=syncookies_setting(),
            ports=self.ports,
            loaded_at=float(self.meta.get("loaded_at", 0.0)),
            pin_dir=host_path(self.pin_dir),
            debug=bool(self.meta.get("debug", False)),
            netns=netns.current_name(),
            totals={
                "packets": sum(p for p, _ in stats.values()),
                "bytes": sum(b for _, b in stats.values()),
            },
            key_age_s=datapath.key_age_s(self.maps),
            daemon=None
            if rec is None
            else {"pid": int(rec["pid"]), "rotate_s": float(rec.get("rotate_s", 0.0))},
        )


def _attached_is_ours(iface: str, pin_dir: Path) -> bool:
    try:
        prog = Program.open_pinned(pin_dir / "prog")
    except XdpShieldError:
        return False
    try:
        att = query_xdp(iface)
        return att is not None and att.prog_id == prog.id
    finally:
        prog.close()


def _detach_ours(iface: str, prog_id: int) -> None:
    with contextlib.suppress(NotAttached):
        detach_xdp(iface, prog_id)


def _detach_tc_ours(iface: str, pin: Path) -> None:
    """Remove our tc filter, if the one attached is the pinned program."""
    if not pin.exists():
        return
    try:
        prog = Program.open_pinned(pin)
    except XdpShieldError:
        return
    try:
        if query_tc(iface, handle=TC_HANDLE, priority=TC_PRIORITY) == prog.id:
            with contextlib.suppress(NotAttached):
                detach_tc(iface, handle=TC_HANDLE, priority=TC_PRIORITY)
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
    with contextlib.suppress(FileNotFoundError):
        meta.unlink()
    # Leave no empty per-namespace directories behind.
    for d in (pin_dir.parent, meta.parent):
        with contextlib.suppress(OSError):
            if d.name.startswith("netns-"):
                d.rmdir()


def refresh_host_view(maps: Mapping[str, Map[Any, Any]], iface: str) -> None:
    """Tell the data path what this namespace is now: its addresses (local
    and broadcast), the interface's MAC and the ports something listens on.
    The daemon calls it again periodically; the data path also marks a
    listener it finds itself."""
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
    from pyroute2 import DiagSocket

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
    from pyroute2 import DiagSocket

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
        raise ValueError("forget_namespace needs a namespace name")
    scope = _scope(name)
    pins = bpffs_root() / "xdpshield" / scope
    if pins.is_dir():
        shutil.rmtree(pins)
    shutil.rmtree(RUN_DIR / scope, ignore_errors=True)


def forget_state(iface: str) -> bool:
    """Remove the state maps an unload kept for ``iface`` in this namespace
    (the shield must be unloaded); False when there were none."""
    pin_dir = _pin_dir(iface)
    if (pin_dir / "prog").exists():
        raise AlreadyAttached(f"xdpshield is loaded on {iface}: 'xdpshield unload {iface} --purge'")
    if not pin_dir.is_dir():
        return False
    _remove_pins(pin_dir, _meta_path(iface))
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
        _remove_pins(self.pin_dir, self.meta_path)
        with contextlib.suppress(FileNotFoundError):
            _daemon_path(self.meta_path).unlink()
        for d in (self.pin_dir.parent, self.meta_path.parent):
            with contextlib.suppress(OSError):
                if d.name.startswith("netns-"):
                    d.rmdir()


def stale_shields() -> list[StaleShield]:
    """Shields whose interface is gone from this namespace and, seen from the
    host namespace, every shield of a named namespace that no longer exists
    (its pins sit under ``netns-NAME`` in the host's bpffs)."""
    scope = _scope()
    here = netns.current_name()
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
            if netns.exists(name) or not ns_dir.is_dir():
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
    if ns_name is not None and not netns.exists(ns_name):
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
    return next((s for s in stale_shields() if s.iface == iface and s.netns == ns_name), None)


def kept_state() -> list[str]:
    """Interfaces of this namespace with no shield loaded but state an unload kept."""
    root = bpffs_root() / "xdpshield" / _scope()
    if not root.is_dir():
        return []
    found = []
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
