"""The test stand: a client, an attacker and a server in network namespaces.

Topology (one stand; every name carries the prefix ``P``)::

    P-client                 P-attacker (the upstream)                P-server
    P-c0 198.18.1.2 ---- P-a1 198.18.1.1  [routes]  P-a0 198.18.0.1 ---- P-s0 198.18.0.2
         fd00:18:1::2        fd00:18:1::1             fd00:18::1             fd00:18::2
                                                      xdp_upstream          protected link

Why this shape: the server has one link, ``P-s0``, and the shield attaches to
it. The attacker namespace is the server's upstream (the Internet, as seen
from the server): it routes the client's traffic and, in the same place a real
flood arrives from, injects the flood straight into the uplink with the
in-kernel generator at line rate. A bridge or an extra router hop would put an
skb path of about a million packets per second in front of the server, and a
benchmark would then measure the bridge, not the shield.

``P-a0`` runs ``xdp_upstream`` in native mode: a veth delivers XDP_TX frames
from ``P-s0`` (the shield's SYN-ACKs) only when its peer runs a native XDP
program. The program also blackholes replies to spoofed sources (anything
outside 198.18.0.0/23 and fd00:18::/32), as the Internet would. ``P-s0`` has
GRO on: that gives a veth NAPI, the only other way it accepts the generator's
XDP frames, so the flood also reaches a server that runs no XDP program (the
"without the shield" baseline). Neighbours on the uplink are pinned, so a
shield that drops ARP/ND cannot cut the stand in two.

Overload model (opt-in; the demo uses it, the defaults are unchanged)
----------------------------------------------------------------------
By default the stand is a *closed loop*: ``veth_xdp_xmit`` schedules the
receiver's NAPI on the sending CPU, so the server's whole receive cost is
charged to the generator and a flood slows down to what the server can
process. A real link is an open loop. These options make it one:

* ``server_napi_cpu``: the server link's NAPI runs in a kernel thread pinned
  to that CPU, so the generator's frames are received on another CPU than
  they are sent from; a receiver that is too slow overflows its ring (256
  frames) and the rest is refused, as a NIC's RX ring drops.
* ``upstream_napi_cpu``: the same for the upstream's end (``P-a0``), where
  the server's replies (the shield's SYN-ACKs) are received and blackholed:
  that work belongs to the Internet's side, not to the server's CPU.
* ``shared_rx_ring``: ``tso off gso off`` on ``P-a0``. veth puts a forwarded
  skb into the receiver's ring only if it is eligible for GRO, which it is
  not while the sender has TSO (``veth_skb_is_eligible_for_gro``); such skbs
  go through ``netif_rx`` on the sending CPU and bypass the ring the flood
  fills. Attaching a native XDP program to ``P-s0`` (the shield) clears
  those features of ``P-a0`` by itself, so without this option legit
  traffic shares the ring with the flood only *with* the shield: an unfair
  comparison. With it, both phases share the ring, as on a NIC's RX queue.
* ``shared_link``: client frames to the server ride in the generator's
  stream while a flood runs (``xdp_mux`` on ``P-a1`` queues them, the
  generator sends them at random runs), so they meet the server's ring as
  the flood's frames do, in one stream as on a real link. It also delivers
  a client's ACK and first data in one receive batch. Costs a few ms of
  queueing per frame; checksum offload is off on ``P-c0`` (frames are
  copied). See below.

What it does not model: the flood is sent in calls of the live-frames
generator (a fixed ~24 ms per call, line rate within a call), so it is
burstier than a real one; the stand has two CPUs, so the demo gives one to
the Internet (generator, upstream NAPI, legit clients) and one to the server
(its NAPI thread and its HTTP server). Measured on the 2-core VM: the kernel
stack (tcp_syncookies=2) takes ~0.2-0.35 Mpps of a ~2 Mpps SYN flood into
the stack and the ring refuses the rest; the shield answers ~1.3-1.7 Mpps
from XDP. Without ``shared_link`` the kernel's own SYN cookies still complete
the legit clients' connections: the ring's drops fall on the flood's frames,
not theirs. A frame finds the ring full only while the generator is running,
and the clients (and the softirq that forwards their packets) run on the same CPU,
so only while it is not; by then the server has freed a slot. Measured: 82 %
of the flood refused, 27 SYN retransmissions in 2,069 legit connections.
Clients on the server's CPU do meet the full ring, but far more often than
the flood does: they run when the server's NAPI thread, the ring's
consumer, does not. A fair share needs a CPU of their own.
``shared_link`` gives them that share: their frames wait in a queue for the
generator's next drain (a few ms) and leave in its stream. The drain starts
at a random run, but a frame is queued while the generator is off the CPU,
so it tends to leave soon after the generator resumes, when the ring has
room: the clients still fare somewhat better than the flood (quick demo
without the shield: ~80 % of their connections complete on the first try
while the ring refuses ~79 % of the flood). With it, the upstream's NAPI
threads run SCHED_FIFO: the Internet takes the server's replies as they
come, and a client's SYN-ACK is not lost among the shield's cookie replies
because the generator holds the CPU that empties that ring.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pyroute2 import NetlinkError

from xdpshield import netns
from xdpshield.ebpf import (
    Map,
    ObjectSpec,
    Program,
    UInt,
    XdpAttachment,
    attach_xdp,
    close_maps,
    query_xdp,
    sum_percpu,
)
from xdpshield.errors import InterfaceNotFound, StandError
from xdpshield.lab import ROLES, Role
from xdpshield.objects import object_path
from xdpshield.shield import core as shield

__all__ = [
    "DEFAULT_SOURCES4",
    "DEFAULT_SOURCES6",
    "ROLES",
    "LinkStatus",
    "Role",
    "Stand",
    "StandError",
    "StandStatus",
    "trace_lines",
]


TRACE_PIPES = (Path("/sys/kernel/tracing/trace_pipe"), Path("/sys/kernel/debug/tracing/trace_pipe"))

# Interface names are at most 15 bytes; the longest suffix is 3 ("-s0").
MAX_PREFIX = 12

# Spoofed sources of the floods by default: the half of 198.18.0.0/15 (and a
# part of fd00::/8) where no stand host lives, so replies to them are
# blackholed by xdp_upstream.
DEFAULT_SOURCES4 = "198.19.0.0/16"
DEFAULT_SOURCES6 = "fd00:19::/32"
# xdp_mux's counters (enum mux_stat in traffic.bpf.c).
MUX_STATS = ("queued", "idle", "full", "sent")
# What xdp_upstream delivers: the stand's own networks.
_PASS4 = ("198.18.0.0", 23)
_PASS6 = ("fd00:18::", 32)


def only_program(spec: ObjectSpec, program: str) -> None:
    """Load only ``program`` of traffic.o."""
    for name in ("xdp_flood", "xdp_upstream", "xdp_mux"):
        spec.set_autoload(name, name == program)


@dataclass(frozen=True)
class _Link:
    role: Role
    suffix: str
    addr4: str
    addr6: str
    plen4: int = 24
    plen6: int = 64


# The addresses are the same in every stand: namespaces keep them apart.
_LINKS = (
    _Link("server", "s0", "198.18.0.2", "fd00:18::2"),
    _Link("attacker", "a0", "198.18.0.1", "fd00:18::1"),
    _Link("attacker", "a1", "198.18.1.1", "fd00:18:1::1"),
    _Link("client", "c0", "198.18.1.2", "fd00:18:1::2"),
)


@dataclass(frozen=True)
class LinkStatus:
    """One interface of the stand as found in its namespace."""

    role: Role
    ifname: str
    present: bool
    up: bool = False
    mac: str | None = None
    addresses: tuple[str, ...] = ()
    xdp: XdpAttachment | None = None


@dataclass(frozen=True)
class StandStatus:
    prefix: str
    namespaces: dict[str, bool]
    links: tuple[LinkStatus, ...]

    @property
    def up(self) -> bool:
        """Everything is there: namespaces, links (up) and the upstream XDP program."""
        return (
            all(self.namespaces.values())
            and all(link.present and link.up for link in self.links)
            and any(link.xdp is not None for link in self.links if link.ifname.endswith("-a0"))
        )

    @property
    def absent(self) -> bool:
        return not any(self.namespaces.values())


def _nl_ok(exc: NetlinkError, *codes: int) -> bool:
    return exc.code in codes


@dataclass
class Stand:
    """A stand with namespaces ``<prefix>-client``, ``-attacker`` and ``-server``.

    ``up()`` and ``down()`` are idempotent; ``down()`` also cleans a stand
    whose ``up()`` crashed halfway. ``queues`` is the number of queues of the
    uplink veth (0: one per CPU, so each flood worker gets its own).
    """

    prefix: str = "xs"
    queues: int = 0
    syncookies: int = 2
    upstream_mode: Literal["native", "generic"] = "native"
    # Run the server link's NAPI in kernel threads pinned to this CPU. The
    # generator's frames are then received on another CPU than they are sent
    # from: an open loop, as on a real link, where a receiver that is too slow
    # drops (ring overflow) instead of slowing the sender down. None: NAPI
    # runs in the sender's softirq (closed loop: a flood can never overload).
    server_napi_cpu: int | None = None
    # Legit traffic takes the server link's receive ring, as the flood does.
    # See the module docstring ("Overload model").
    shared_rx_ring: bool = False
    # Likewise for the upstream's end (P-a0), where the server's replies land.
    upstream_napi_cpu: int | None = None
    # Client frames to the server ride in the generator's stream while a flood
    # runs (xdp_mux on P-a1). See the module docstring ("Overload model").
    shared_link: bool = False
    _queues: int = field(init=False, repr=False, default=1)

    def __post_init__(self) -> None:
        if (
            not self.prefix
            or len(self.prefix) > MAX_PREFIX
            or not all(c.isalnum() or c in "-_" for c in self.prefix)
        ):
            raise StandError(
                f"stand prefix {self.prefix!r}: use 1..{MAX_PREFIX} letters, digits, '-' or '_' "
                "(interface names must stay under 16 bytes)"
            )
        self._queues = self.queues or os.cpu_count() or 1

    # -- names ------------------------------------------------------------------------
    def ns(self, role: Role) -> str:
        if role not in ROLES:
            raise StandError(f"unknown stand role {role!r}; roles: {', '.join(ROLES)}")
        return f"{self.prefix}-{role}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.ns(r) for r in ROLES)

    def ifname(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    @property
    def server_if(self) -> str:
        """The protected link, in the server namespace: attach the shield here."""
        return self.ifname("s0")

    @property
    def uplink_if(self) -> str:
        """The attacker's end of the uplink: floods are sent from it."""
        return self.ifname("a0")

    @property
    def client_if(self) -> str:
        return self.ifname("c0")

    server4 = "198.18.0.2"
    server6 = "fd00:18::2"
    client4 = "198.18.1.2"
    client6 = "fd00:18:1::2"
    uplink4 = "198.18.0.1"
    uplink6 = "fd00:18::1"

    # -- up / down --------------------------------------------------------------------
    def up(self) -> StandStatus:
        """Create whatever is missing; on any failure remove everything and re-raise."""
        try:
            for name in self.namespaces:
                netns.create(name)
                self._ns_defaults(name)
            self._veth("a1", "attacker", "c0", "client", queues=1)
            self._veth("a0", "attacker", "s0", "server", queues=self._queues)
            for link in _LINKS:
                self._configure_link(link)
            self._routes()
            self._sysctls()
            self._pin_neighbours()
            self._attach_upstream()
            if self.server_napi_cpu is not None:
                self._threaded_napi(self.server_napi_cpu)
            if self.upstream_napi_cpu is not None:
                self._threaded_napi(self.upstream_napi_cpu, "attacker")
            if self.shared_rx_ring:
                self._offloads_off(self.uplink_if)
            if self.shared_link:
                self._attach_mux()
        except BaseException:
            self.down()
            raise
        return self.status()

    def down(self) -> None:
        """Remove the stand: its processes (by PID), then its namespaces and links.

        Only what carries this stand's prefix is touched; safe on a stand that
        is absent or half built.
        """
        for name in self.namespaces:
            if netns.exists(name):
                self._kill_processes_in(name)
        for name in self.namespaces:
            netns.remove(name)
            shield.forget_namespace(name)

    def __enter__(self) -> Stand:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- steps of up() ------------------------------------------------------------------
    @staticmethod
    def _ns_defaults(name: str) -> None:
        # No duplicate address detection on the stand's links (set before they
        # exist, through "default"): IPv6 would otherwise be unusable for about
        # two seconds after up(), and nobody else shares these links.
        for key in ("accept_dad", "dad_transmits"):
            netns.set_sysctl(name, f"net.ipv6.conf.default.{key}", 0)
            netns.set_sysctl(name, f"net.ipv6.conf.all.{key}", 0)

    def _veth(self, a: str, role_a: Role, b: str, role_b: Role, *, queues: int) -> None:
        # Created inside the namespace, never in the host's: if we crash now,
        # removing the namespaces removes the links too.
        name_a, name_b = self.ifname(a), self.ifname(b)
        with netns.ipr(self.ns(role_a)) as ipr:
            if ipr.link_lookup(ifname=name_a):
                return
            ipr.link(
                "add",
                ifname=name_a,
                kind="veth",
                num_tx_queues=queues,
                num_rx_queues=queues,
                peer={
                    "ifname": name_b,
                    "net_ns_fd": self.ns(role_b),
                    "num_tx_queues": queues,
                    "num_rx_queues": queues,
                },
            )

    def _configure_link(self, link: _Link) -> None:
        name = self.ifname(link.suffix)
        with netns.ipr(self.ns(link.role)) as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                raise StandError(f"{name} is missing in {self.ns(link.role)}")
            idx = found[0]
            for addr, plen, extra in (
                (link.addr4, link.plen4, {}),
                (link.addr6, link.plen6, {"flags": 0x80}),  # IFA_F_NODAD: usable at once
            ):
                try:
                    ipr.addr("add", index=idx, address=addr, prefixlen=plen, **extra)
                except NetlinkError as exc:
                    if not _nl_ok(exc, errno.EEXIST):
                        raise
            ipr.link("set", index=idx, state="up")
        if link.suffix == "s0":
            self._gro_on(link)

    def _gro_on(self, link: _Link) -> None:
        proc = self.exec(
            link.role, ["ethtool", "-K", self.ifname(link.suffix), "gro", "on"], check=False
        )
        if proc.returncode != 0:
            raise StandError(f"ethtool -K {self.ifname(link.suffix)} gro on: {proc.stderr.strip()}")

    def _offloads_off(self, ifname: str) -> None:
        # What attaching a native XDP program to the peer does by itself (veth
        # drops the software GSO features of the peer): forwarded skbs are then
        # eligible for the receiver's GRO and enter its ring, beside the flood.
        proc = self.exec("attacker", ["ethtool", "-K", ifname, "tso", "off", "gso", "off"])
        if proc.returncode != 0:
            raise StandError(f"ethtool -K {ifname} tso off gso off: {proc.stderr.strip()}")

    def _routes(self) -> None:
        gateways: tuple[tuple[Role, str, str], ...] = (
            ("client", "198.18.1.1", "fd00:18:1::1"),
            ("server", "198.18.0.1", "fd00:18::1"),
        )
        for role, gw4, gw6 in gateways:
            with netns.ipr(self.ns(role)) as ipr:
                ipr.route("replace", dst="0.0.0.0/0", gateway=gw4)
                ipr.route("replace", dst="::/0", gateway=gw6, family=10)

    def _sysctls(self) -> None:
        att = self.ns("attacker")
        netns.set_sysctl(att, "net.ipv4.ip_forward", 1)
        netns.set_sysctl(att, "net.ipv6.conf.all.forwarding", 1)
        netns.set_sysctl(self.ns("server"), "net.ipv4.tcp_syncookies", self.syncookies)
        # Legit load opens thousands of connections a second from one address.
        netns.set_sysctl(self.ns("client"), "net.ipv4.ip_local_port_range", "1024 65535")

    def _mac(self, role: Role, ifname: str) -> str:
        with netns.ipr(self.ns(role)) as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise StandError(f"{ifname} is missing in {self.ns(role)}")
            return str(ipr.get_links(found[0])[0].get_attr("IFLA_ADDRESS"))

    def _pin_neighbours(self) -> None:
        # Permanent entries on both links: no ARP/ND to wait for after up(), and
        # a shield that drops ARP/ND (or a flood that crowds it out) cannot cut
        # the stand in two.
        End = tuple[Role, str, str, str]
        uplink: tuple[End, End] = (
            ("server", self.server_if, "198.18.0.2", "fd00:18::2"),
            ("attacker", self.uplink_if, "198.18.0.1", "fd00:18::1"),
        )
        access: tuple[End, End] = (
            ("client", self.client_if, "198.18.1.2", "fd00:18:1::2"),
            ("attacker", self.ifname("a1"), "198.18.1.1", "fd00:18:1::1"),
        )
        pairs = (uplink, access)
        for one, other in pairs:
            for (role, ifname, _, _), (prole, pif, p4, p6) in ((one, other), (other, one)):
                mac = self._mac(prole, pif)
                with netns.ipr(self.ns(role)) as ipr:
                    idx = ipr.link_lookup(ifname=ifname)[0]
                    for ip in (p4, p6):
                        ipr.neigh(
                            "replace",
                            dst=ip,
                            lladdr=mac,
                            ifindex=idx,
                            state=0x80,  # NUD_PERMANENT
                            family=10 if ":" in ip else 2,
                        )

    def _attach_upstream(self) -> None:
        with netns.enter(self.ns("attacker")):
            if query_xdp(self.uplink_if) is not None:
                return
            spec = ObjectSpec(object_path("traffic.o"))
            spec.set_constants(
                pass_net4=_be32(_PASS4[0]),
                pass_mask4=_mask32(_PASS4[1]),
                pass_net6=_be32(_PASS6[0]),
                pass_mask6=_mask32(_PASS6[1]),
            )
            only_program(spec, "xdp_upstream")
            with spec.load() as coll:
                # The netlink attachment holds the program; our fds may close.
                attach_xdp(coll.program("xdp_upstream"), self.uplink_if, self.upstream_mode)

    @property
    def access_if(self) -> str:
        """The router's end of the client's link (where xdp_mux runs)."""
        return self.ifname("a1")

    def _attach_mux(self) -> None:
        # xdp_mux copies the client's frames: their TCP checksums must be
        # whole, not left to a checksum offload that the copy loses.
        proc = self.exec("client", ["ethtool", "-K", self.client_if, "tx", "off"])
        if proc.returncode != 0:
            raise StandError(f"ethtool -K {self.client_if} tx off: {proc.stderr.strip()}")
        eth = bytes.fromhex(self.mac("server").replace(":", ""))
        eth += bytes.fromhex(self.mac("attacker").replace(":", ""))
        with netns.enter(self.ns("attacker")):
            if query_xdp(self.access_if) is not None:
                return
            spec = ObjectSpec(object_path("traffic.o"))
            spec.set_constants(
                mux_eth=eth,
                mux_dst4=_be32(self.server4),
                mux_dst6=ipaddress.ip_address(self.server6).packed,
            )
            only_program(spec, "xdp_mux")
            with spec.load() as coll:
                attach_xdp(coll.program("xdp_mux"), self.access_if, "native")

    def mux_maps(self) -> dict[str, Map[bytes, bytes]] | None:
        """The shared link's maps (mux_queue, mux_clock, mux_stats), if it runs."""
        with netns.enter(self.ns("attacker")):
            try:
                found = query_xdp(self.access_if)
            except InterfaceNotFound:
                return None
            if found is None:
                return None
            prog = Program.from_id(found.prog_id)
        try:
            if prog.name != "xdp_mux":
                return None
            maps = prog.maps()
        finally:
            prog.close()
        keep = {"mux_queue", "mux_clock", "mux_stats"}
        close_maps({n: maps.pop(n) for n in set(maps) - keep})
        return maps

    def mux_stats(self) -> dict[str, int]:
        """What the shared link did with client frames (zeros without one)."""
        maps = self.mux_maps()
        if maps is None:
            return dict.fromkeys(MUX_STATS, 0)
        try:
            return mux_counts(maps["mux_stats"])
        finally:
            close_maps(maps)

    def _threaded_napi(self, cpu: int, role: Role = "server") -> None:
        ifname = self.server_if if role == "server" else self.uplink_if
        proc = self.exec(
            role, ["sh", "-c", f"echo 1 > /sys/class/net/{ifname}/threaded"], check=False
        )
        if proc.returncode != 0:
            raise StandError(f"threaded NAPI on {ifname}: {proc.stderr.strip()}")
        # The kernel names the threads napi/<ifname>-<napi id> (comm may be cut).
        stem = f"napi/{ifname}-"
        pids: list[int] = []
        for comm in Path("/proc").glob("[0-9]*/comm"):
            with contextlib.suppress(OSError):
                name = comm.read_text().strip()
                if name.startswith(stem[: len(name)]) and len(name) >= len(stem) - 1:
                    pids.append(int(comm.parent.name))
        if not pids:
            raise StandError(f"no NAPI threads found for {ifname}")
        for pid in pids:
            os.sched_setaffinity(pid, {cpu})
            if role == "attacker" and self.shared_link:
                # The Internet takes the server's replies as they come: a
                # client's SYN-ACK must not be lost among the shield's cookie
                # replies because the generator holds the CPU that empties
                # the upstream's ring.
                os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(1))

    # -- processes ------------------------------------------------------------------------
    @staticmethod
    def _pids_in(name: str) -> list[int]:
        proc = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        )
        return [int(p) for p in proc.stdout.split() if p.isdigit() and int(p) != os.getpid()]

    def _kill_processes_in(self, name: str, grace_s: float = 2.0) -> None:
        # Anything still running in the stand's own namespaces was started for
        # the stand (servers, clients): end it by PID, or the namespace lingers.
        pids = self._pids_in(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def exec(
        self,
        role: Role,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float | None = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a plain tool (ping, curl, ss, ethtool) in a namespace of the stand."""
        name = self.ns(role)
        if not netns.exists(name):
            raise StandError(f"namespace {name} does not exist: bring the stand up first")
        return subprocess.run(
            ["ip", "netns", "exec", name, *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            input=input,
        )

    def popen(self, role: Role, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start a process in a namespace of the stand; the caller ends it by PID."""
        name = self.ns(role)
        if not netns.exists(name):
            raise StandError(f"namespace {name} does not exist: bring the stand up first")
        kwargs.setdefault("text", True)
        return subprocess.Popen(["ip", "netns", "exec", name, *argv], **kwargs)

    # -- inspection -------------------------------------------------------------------------
    def status(self) -> StandStatus:
        present = {name: netns.exists(name) for name in self.namespaces}
        links: list[LinkStatus] = []
        for link in _LINKS:
            name, ns = self.ifname(link.suffix), self.ns(link.role)
            if not present[ns]:
                links.append(LinkStatus(link.role, name, False))
                continue
            links.append(self._link_status(link.role, name))
        return StandStatus(self.prefix, present, tuple(links))

    def _link_status(self, role: Role, name: str) -> LinkStatus:
        with netns.ipr(self.ns(role)) as ipr:
            found = ipr.link_lookup(ifname=name)
            if not found:
                return LinkStatus(role, name, False)
            msg = ipr.get_links(found[0])[0]
            addrs = tuple(
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=found[0])
                if a["scope"] == 0
            )
            up = bool(msg["flags"] & 1)
            mac = msg.get_attr("IFLA_ADDRESS")
        with netns.enter(self.ns(role)):
            try:
                xdp = query_xdp(name)
            except InterfaceNotFound:
                xdp = None
        return LinkStatus(role, name, True, up, mac, addrs, xdp)

    def mac(self, role: Role) -> str:
        """MAC of the role's stand-facing link (server: the protected link)."""
        ifname = {"server": self.server_if, "attacker": self.uplink_if, "client": self.client_if}
        return self._mac(role, ifname[role])

    def addr(self, role: Role, family: int = 4) -> str:
        table = {
            "server": (self.server4, self.server6),
            "attacker": (self.uplink4, self.uplink6),
            "client": (self.client4, self.client6),
        }
        return table[role][0 if family == 4 else 1]

    def log(self) -> Iterator[str]:
        """Lines of the kernel trace pipe (the debug build's bpf_printk), as they come.

        The trace pipe is global to the machine, not per stand. Stop by closing
        the generator (or breaking out of the loop).
        """
        yield from trace_lines()


def mux_counts(stats: Map[bytes, bytes]) -> dict[str, int]:
    """xdp_mux's counters (its mux_stats map), summed over CPUs, by name."""
    counters = stats.typed(UInt(4), UInt(8))
    try:
        return {
            name: int(sum_percpu(counters.lookup_percpu(i))) for i, name in enumerate(MUX_STATS)
        }
    finally:
        counters.close()


def trace_lines() -> Iterator[str]:
    for pipe in TRACE_PIPES:
        if pipe.exists():
            with pipe.open("r", errors="replace") as f:
                for line in f:
                    yield line.rstrip("\n")
            return
    raise StandError("no trace_pipe: mount tracefs on /sys/kernel/tracing")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _be32(addr: str) -> int:
    """The first 32 bits of an address as the u32 a BPF program loads from a frame."""
    packed = ipaddress.ip_address(addr).packed[:4]
    return int.from_bytes(packed, sys.byteorder)


def _mask32(plen: int) -> int:
    bits = (0xFFFFFFFF << (32 - min(plen, 32))) & 0xFFFFFFFF
    return int.from_bytes(bits.to_bytes(4, "big"), sys.byteorder)
