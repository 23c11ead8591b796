"""Network namespaces and veth pairs through pyroute2.

Namespaces are entered with setns() (``enter``), never ``ip netns exec``: the
latter remounts /sys and hides the BPF filesystem.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import IPRoute, NetNS, netns

from .errors import XdpShieldError

__all__ = [
    "NETNS_RUN_DIR",
    "add_address",
    "create",
    "current_inode",
    "current_name",
    "enter",
    "exists",
    "ipr",
    "link_up",
    "remove",
    "set_sysctl",
    "unique_prefix",
    "veth_pair",
]

NETNS_RUN_DIR = Path("/var/run/netns")


def unique_prefix(base: str = "xs") -> str:
    """A short prefix unique to this run: interface names must stay under 16 bytes."""
    return f"{base}{secrets.token_hex(2)}"


def exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def create(name: str) -> None:
    """Create a named namespace (like ``ip netns add``); harmless when it exists."""
    if not exists(name):
        netns.create(name)
    with enter(name), IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            ipr.link("set", index=lo[0], state="up")


def remove(name: str) -> None:
    """Delete a namespace; its interfaces (and veth peers) go with it."""
    if exists(name):
        netns.remove(name)


@contextlib.contextmanager
def enter(name: str | None) -> Iterator[None]:
    """Run the block inside namespace ``name`` (None: stay where we are)."""
    if name is None:
        yield
        return
    if not exists(name):
        raise XdpShieldError(f"network namespace {name!r} does not exist")
    # setns() moves only the calling thread, so save *this thread's* namespace
    # (pyroute2's pushns saves /proc/self, the main thread's), and never let
    # pyroute2 create a namespace that is missing (flags=0, not O_CREAT).
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(name, flags=0)
        try:
            yield
        finally:
            netns.setns(saved, flags=0)
    finally:
        os.close(saved)


def current_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def current_name() -> str | None:
    """The ``ip netns`` name of the namespace we are in, or None (host or unnamed)."""
    ino = current_inode()
    try:
        entries = list(NETNS_RUN_DIR.iterdir())
    except OSError:
        return None
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.stat().st_ino == ino:
                return entry.name
    return None


def ipr(ns: str | None) -> IPRoute | NetNS:
    if ns and not exists(ns):
        raise XdpShieldError(f"network namespace {ns!r} does not exist")
    return NetNS(ns, flags=0) if ns else IPRoute()  # flags=0: never create it


def veth_pair(a: str, b: str, ns_a: str | None, ns_b: str | None, *, queues: int = 1) -> None:
    """Create veth ``a``<->``b`` (``queues`` rx/tx queues each), move each end
    into its namespace, bring both up."""
    q = {"num_tx_queues": queues, "num_rx_queues": queues}
    with IPRoute() as nl:
        nl.link("add", ifname=a, kind="veth", peer={"ifname": b, **q}, **q)
        for name, ns in ((a, ns_a), (b, ns_b)):
            if ns:
                idx = nl.link_lookup(ifname=name)[0]
                nl.link("set", index=idx, net_ns_fd=ns)
    for name, ns in ((a, ns_a), (b, ns_b)):
        link_up(name, ns)


def link_up(ifname: str, ns: str | None) -> None:
    with ipr(ns) as nl:
        idx = nl.link_lookup(ifname=ifname)
        if not idx:
            raise XdpShieldError(f"no interface {ifname} in namespace {ns or '(host)'}")
        nl.link("set", index=idx[0], state="up")


def add_address(ifname: str, cidr: str, ns: str | None) -> None:
    """Add ``addr/len`` (IPv4 or IPv6; IPv6 without duplicate address detection)."""
    addr, _, plen = cidr.partition("/")
    with ipr(ns) as nl:
        idx = nl.link_lookup(ifname=ifname)[0]
        kw = {"flags": 0x80} if ":" in addr else {}  # IFA_F_NODAD: usable at once
        nl.addr("add", index=idx, address=addr, prefixlen=int(plen), **kw)


def set_sysctl(ns: str | None, key: str, value: str | int) -> None:
    """Write /proc/sys/<key> inside the namespace (net.* sysctls are per namespace)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    with enter(ns):
        path.write_text(f"{value}\n")
