"""The shield as a whole: load, configure, attach, pin, reopen, unload.

A loaded shield leaves three things behind for the next process (the CLI, the
daemon): the XDP program attached to the interface (netlink, survives us), its
maps and program pinned under ``/sys/fs/bpf/xdpshield/[netns-NAME/]IFACE/``,
and a small JSON record of how it was loaded under ``/run/xdpshield/``
(bpffs holds only BPF objects).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from . import datapath, netns
from .bpf import (
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
from .datapath import GuardOptions, Reason
from .errors import (
    AlreadyAttached,
    ConfigError,
    NotAttached,
    NotPermitted,
    ObjectNotFound,
    XdpShieldError,
)

__all__ = [
    "HANDSHAKE_MODES",
    "Shield",
    "ShieldStatus",
    "check_privileges",
    "list_shields",
    "object_path",
    "parse_ports",
    "probe_handoff",
    "refresh_host_view",
    "resolve_handshake",
    "syncookies_setting",
]

RUN_DIR = Path("/run/xdpshield")
#: auto: transparent where the kernel can take the handoff, else reset.
HANDSHAKE_MODES = ("auto", "transparent", "reset")
# Our tc filter on the protected link's clsact ingress ("xs").
TC_HANDLE, TC_PRIORITY = 0x7873, 1
_CAP_NET_ADMIN, _CAP_SYS_ADMIN, _CAP_BPF = 12, 21, 39


def object_path(debug: bool = False) -> Path:
    """The built shield object, wherever the package is installed."""
    override = os.environ.get("XDPSHIELD_OBJ_DIR")
    base = Path(override) if override else Path(__file__).resolve().parent / "_obj"
    path = base / ("xdpshield_debug.o" if debug else "xdpshield.o")
    if not path.is_file():
        raise ObjectNotFound(f"BPF object not found: {path} (run 'make build')")
    return path


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


def parse_ports(text: str | Iterable[int]) -> list[int]:
    """'22,80,8000-8010' -> sorted ports; names the bad token on error."""
    if not isinstance(text, str):
        ports = list(text)
    else:
        ports = []
        for token in (t.strip() for t in text.split(",")):
            if not token:
                continue
            lo, sep, hi = token.partition("-")
            try:
                a = int(lo)
                b = int(hi) if sep else a
            except ValueError:
                raise ConfigError(
                    f"{token!r} is not a port or a range like 8000-8010", key="ports"
                ) from None
            if a > b:
                raise ConfigError(f"range {token!r} runs backwards", key="ports")
            ports.extend(range(a, b + 1))
    for p in ports:
        if not 1 <= p <= 65535:
            raise ConfigError(f"port {p} is outside 1-65535", key="ports")
    return sorted(set(ports))


def probe_handoff() -> str | None:
    """None when this kernel lets tc hand a connection over (the kfunc
    ``bpf_sk_assign_tcp_reqsk``), else why not. Asks the verifier by loading a
    tiny program: feature listings over-report on this kernel.
    """
    path = object_path().parent / "probe_reqsk.o"
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


def _pin_dir(iface: str) -> Path:
    return bpffs_root() / "xdpshield" / _scope() / iface


def _meta_path(iface: str) -> Path:
    return RUN_DIR / (_scope() or "host") / f"{iface}.json"


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Shield:
    """A shield on one interface of the current network namespace."""

    def __init__(
        self, iface: str, maps: dict[str, Map[Any, Any]], prog: Program, meta: dict[str, Any]
    ) -> None:
        self.iface = iface
        self.maps = maps
        self.program = prog
        self.meta = meta

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
        attached or pinned.

        ``handshake``: ``reset``, ``transparent`` or ``auto`` (transparent when
        the kernel supports it, see :func:`resolve_handshake`), the default.
        """
        check_privileges()
        handshake, why = resolve_handshake(handshake)
        transparent = handshake == "transparent"
        mode = XdpMode(xdp_mode)
        port_list = parse_ports(ports)
        ifindex_of(iface)  # InterfaceNotFound before any work
        pin_dir = _pin_dir(iface)
        if pin_dir.exists():
            if _attached_is_ours(iface, pin_dir):
                raise AlreadyAttached(
                    f"xdpshield is already loaded on {iface}; 'xdpshield unload {iface}' first"
                )
            _detach_tc_ours(iface, pin_dir / "tc")
            _remove_pins(iface)  # stale: the interface was recreated or detached by hand
        if (cur := query_xdp(iface)) is not None:
            raise AlreadyAttached(
                f"{iface} already runs XDP program id {cur.prog_id} "
                f"({cur.mode}) that is not xdpshield's; detach it first"
            )
        opts = options or GuardOptions(debug=debug)
        # Never offer an option the protected stack has turned off.
        stack = {k: on and getattr(opts, k) for k, on in datapath.stack_options().items()}
        opts = replace(opts, transparent=transparent, **stack)
        spec = ObjectSpec(object_path(debug))
        consts = datapath.constants(opts, local_known=True)
        if consts:
            spec.set_constants(**consts)
        spec.set_autoload("xdpshield_tc", transparent)
        coll = spec.load()
        tc_attached = False
        try:
            datapath.init_maps(coll.maps, port_list)
            refresh_host_view(coll.maps, iface)
            if transparent:
                # Sockets from before the shield (a TIME_WAIT above all) are
                # known before its first packet, not from their next segment.
                datapath.mark_seen(coll.maps, socket_peers())
            pin_dir.mkdir(parents=True, exist_ok=True)
            maps: dict[str, Map[Any, Any]] = {}
            for name in datapath.PIN_MAPS:
                m = coll.map(name)
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
            path = _meta_path(iface)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(meta, indent=2))
        except BaseException:
            if tc_attached:
                with contextlib.suppress(XdpShieldError, OSError):
                    detach_tc(iface, handle=TC_HANDLE, priority=TC_PRIORITY)
            with contextlib.suppress(XdpShieldError, OSError):
                _remove_pins(iface)
            coll.close()
            raise
        # Keep the pinned maps and program; the object itself is no longer needed.
        for name, m in coll.maps.items():
            if name not in maps:
                m.close()
        return cls(iface, maps, prog, meta)

    @classmethod
    def open(cls, iface: str) -> Shield:
        """Reopen a running shield from its pins (e.g. from the CLI)."""
        check_privileges()
        ifindex_of(iface)
        pin_dir = _pin_dir(iface)
        if not (pin_dir / "prog").exists():
            raise NotAttached(f"xdpshield is not loaded on {iface}")
        maps: dict[str, Map[Any, Any]] = {}
        for name in datapath.PIN_MAPS:
            if name in datapath.OPTIONAL_PINS and not (pin_dir / name).exists():
                continue
            maps[name] = Map.open_pinned(pin_dir / name)
        prog = Program.open_pinned(pin_dir / "prog")
        try:
            meta = json.loads(_meta_path(iface).read_text())
        except (OSError, ValueError):
            meta = {"iface": iface, "handshake": "reset", "debug": False, "loaded_at": 0.0}
        return cls(iface, maps, prog, meta)

    def unload(self) -> None:
        """Detach (only our programs) and remove the pins.

        XDP goes first, so no handshake is passed on after tc has gone.
        """
        _detach_ours(self.iface, self.program.id)
        _detach_tc_ours(self.iface, _pin_dir(self.iface) / "tc")
        self.close()
        _remove_pins(self.iface)

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
            pin_dir=str(_pin_dir(self.iface)),
            debug=bool(self.meta.get("debug", False)),
            netns=netns.current_name(),
            totals={
                "packets": sum(p for p, _ in stats.values()),
                "bytes": sum(b for _, b in stats.values()),
            },
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


def _remove_pins(iface: str) -> None:
    pin_dir, meta = _pin_dir(iface), _meta_path(iface)
    if pin_dir.exists():
        shutil.rmtree(pin_dir)  # unlinking a pin drops that reference only
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
