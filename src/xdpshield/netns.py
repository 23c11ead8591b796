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
    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()


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


def _ipr(ns: str | None) -> IPRoute | NetNS:
    return NetNS(ns) if ns else IPRoute()


def veth_pair(a: str, b: str, ns_a: str | None, ns_b: str | None) -> None:
    """Create veth ``a``<->``b`` and move each end into its namespace, both up."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=a, kind="veth", peer={"ifname": b})
        for name, ns in ((a, ns_a), (b, ns_b)):
            if ns:
                idx = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=idx, net_ns_fd=ns)
    for name, ns in ((a, ns_a), (b, ns_b)):
        link_up(name, ns)


def link_up(ifname: str, ns: str | None) -> None:
    with _ipr(ns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise XdpShieldError(f"no interface {ifname} in namespace {ns or '(host)'}")
        ipr.link("set", index=idx[0], state="up")


def add_address(ifname: str, cidr: str, ns: str | None) -> None:
    """Add ``addr/len`` (IPv4 or IPv6; IPv6 without duplicate address detection)."""
    addr, _, plen = cidr.partition("/")
    with _ipr(ns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        kw = {"flags": 0x80} if ":" in addr else {}  # IFA_F_NODAD: usable at once
        ipr.addr("add", index=idx, address=addr, prefixlen=int(plen), **kw)


def set_sysctl(ns: str | None, key: str, value: str | int) -> None:
    """Write /proc/sys/<key> inside the namespace (net.* sysctls are per namespace)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    with enter(ns):
        path.write_text(f"{value}\n")
