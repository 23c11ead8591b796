"""Network namespaces and veth pairs through pyroute2.

Namespaces are entered with setns() (``enter``), never ``ip netns exec``: the
latter remounts /sys and hides the BPF filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import weakref
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import IPRoute, NetNS, netns

from .errors import XdpShieldError

__all__ = [
    "NETNS_RUN_DIR",
    "NamespaceRef",
    "add_address",
    "create",
    "current_inode",
    "current_name",
    "enter",
    "enter_fd",
    "exists",
    "inode_of",
    "ipr",
    "link_up",
    "open_current",
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
    with _switched(name):
        yield


@contextlib.contextmanager
def enter_fd(fd: int) -> Iterator[None]:
    """Run the block inside the namespace open as ``fd`` (see ``open_current``)."""
    with _switched(fd):
        yield


@contextlib.contextmanager
def _switched(target: str | int) -> Iterator[None]:
    # setns() moves only the calling thread, so save *this thread's* namespace
    # (pyroute2's pushns saves /proc/self, the main thread's), and never let
    # pyroute2 create a namespace that is missing (flags=0, not O_CREAT).
    saved = open_current()
    try:
        try:
            netns.setns(target, flags=0)
        except OSError as exc:  # EPERM without CAP_SYS_ADMIN: say so, not a traceback
            name = target if isinstance(target, str) else f"fd {target}"
            raise XdpShieldError(
                f"cannot enter network namespace {name!r}: {os.strerror(exc.errno or 0)}"
                + (" (entering one needs CAP_SYS_ADMIN)" if exc.errno == errno.EPERM else "")
            ) from None
        try:
            yield
        finally:
            netns.setns(saved, flags=0)
    finally:
        os.close(saved)


def open_current() -> int:
    """An fd of this thread's network namespace (to come back to it from elsewhere)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY)


def current_inode() -> int:
    """This thread's namespace (setns() moves a thread, not the process)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def inode_of(name: str) -> int:
    """The namespace now named ``name`` (a deleted and recreated one differs)."""
    try:
        return (NETNS_RUN_DIR / name).stat().st_ino
    except OSError:
        raise XdpShieldError(f"network namespace {name!r} does not exist") from None


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


class NamespaceRef:
    """The namespace this thread is in at construction, to re-enter from any other.

    A named namespace is entered by name, so that holding the reference does
    not keep it alive after ``ip netns del`` (a daemon would keep a deleted
    namespace's interfaces up). The host's (or an unnamed one) has no name: it
    is held open by an fd, closed with ``close()`` or when collected.
    """

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.inode = current_inode()
        self._fd = None if name else open_current()
        self._finalizer = weakref.finalize(self, _close_fd, self._fd)

    def enter(self) -> contextlib.AbstractContextManager[None]:
        """Run a block in the namespace (nothing to do when already there)."""
        if current_inode() == self.inode:
            return contextlib.nullcontext()
        if self._fd is not None:
            return enter_fd(self._fd)
        assert self.name is not None
        if inode_of(self.name) != self.inode:
            raise XdpShieldError(
                f"network namespace {self.name!r} was deleted and another made under its name"
            )
        return enter(self.name)

    def close(self) -> None:
        self._finalizer()


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
