"""Attachments: XDP and tc on an interface, and the BPF filesystem."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..errors import (
    AlreadyAttached,
    BpfError,
    InterfaceNotFound,
    NotAttached,
    Op,
    from_oserror,
)
from ._libbpf import XdpAttachOpts, lib
from .program import Program

BPFFS_ROOT = Path("/sys/fs/bpf")
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
BPF_TC_F_REPLACE = 1 << 0


def ifindex_of(iface: str | int) -> int:
    if isinstance(iface, int):
        return iface
    # Not /sys/class/net: sysfs shows the namespace it was mounted in, not ours.
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise InterfaceNotFound(f"no network interface named {iface!r} in this namespace") from None


class XdpMode(Enum):
    NATIVE = "native"
    GENERIC = "generic"
    AUTO = "auto"


class Link(ABC):
    """One attachment of one program to one hook, identified by the program's id.

    Netlink acts in the caller's network namespace: use a link from the
    namespace of its interface. ``detach`` removes only this link's program:
    a program someone attached since is left alone (NotAttached).
    """

    ifindex: int
    prog_id: int

    @abstractmethod
    def attached(self) -> bool:
        """Whether this link's program is still the one on the hook."""

    @abstractmethod
    def detach(self) -> None:
        """Remove the attachment if it is still this link's program."""


@dataclass(frozen=True)
class XdpLink(Link):
    """An XDP program on an interface, in ``mode`` ("native", "generic", "offload")."""

    ifindex: int
    prog_id: int
    mode: str

    @classmethod
    def attach(cls, prog: Program, iface: str | int, mode: XdpMode | str = XdpMode.AUTO) -> XdpLink:
        return attach_xdp(prog, iface, mode)

    def attached(self) -> bool:
        cur = query_xdp(self.ifindex)
        return cur is not None and cur.prog_id == self.prog_id

    def detach(self) -> None:
        detach_xdp(self.ifindex, self.prog_id)


#: The name before links could detach themselves.
XdpAttachment = XdpLink


@dataclass(frozen=True)
class TcLink(Link):
    """A direct-action tc classifier, known by its handle and priority on the hook."""

    ifindex: int
    prog_id: int
    handle: int
    priority: int
    ingress: bool

    @classmethod
    def attach(
        cls,
        prog: Program,
        iface: str | int,
        *,
        ingress: bool = True,
        handle: int = 1,
        priority: int = 1,
    ) -> TcLink:
        return attach_tc(prog, iface, ingress=ingress, handle=handle, priority=priority)

    def attached(self) -> bool:
        return self._query() == self.prog_id

    def _query(self) -> int | None:
        return query_tc(
            self.ifindex, ingress=self.ingress, handle=self.handle, priority=self.priority
        )

    def detach(self) -> None:
        cur, where = self._query(), f"interface {self.ifindex}"
        if cur is None:
            raise NotAttached(
                f"{where}: no tc filter {self.handle}/{self.priority} "
                f"(ours was program id {self.prog_id})"
            )
        if cur != self.prog_id:
            raise NotAttached(
                f"{where}: tc filter {self.handle}/{self.priority} runs program id {cur}, "
                f"not ours ({self.prog_id}); left alone"
            )
        detach_tc(self.ifindex, ingress=self.ingress, handle=self.handle, priority=self.priority)


#: The name before links could detach themselves.
TcAttachment = TcLink


def query_xdp(iface: str | int) -> XdpLink | None:
    """What XDP program is attached to the interface, in which mode (None if none)."""
    idx = ifindex_of(iface)
    try:
        q = lib().xdp_query(idx)
    except OSError as exc:
        raise from_oserror(exc, f"query XDP on {iface}", Op.INTERFACE) from None
    for pid, mode in (
        (q.drv_prog_id, "native"),
        (q.skb_prog_id, "generic"),
        (q.hw_prog_id, "offload"),
    ):
        if pid:
            return XdpLink(idx, pid, mode)
    return None


def attach_xdp(
    prog: Program, iface: str | int, mode: XdpMode | str = XdpMode.AUTO, *, replace: bool = False
) -> XdpLink:
    """Attach through netlink, so the program stays after this process exits.

    ``auto`` tries native and falls back to generic where the driver has no XDP.
    Refuses to replace an attached program unless ``replace``.
    """
    mode = XdpMode(mode)
    idx = ifindex_of(iface)
    if not replace and (cur := query_xdp(idx)) is not None:
        raise AlreadyAttached(
            f"{iface} already has XDP program id {cur.prog_id} ({cur.mode}); unload it first"
        )
    tries = {
        XdpMode.NATIVE: [XDP_FLAGS_DRV_MODE],
        XdpMode.GENERIC: [XDP_FLAGS_SKB_MODE],
        XdpMode.AUTO: [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE],
    }[mode]
    last: OSError | None = None
    for flags in tries:
        f = flags | (0 if replace else XDP_FLAGS_UPDATE_IF_NOEXIST)
        with lib().capture():
            try:
                lib().bpf.bpf_xdp_attach(idx, prog.fd, f, None)
            except OSError as exc:
                last = exc
                if exc.errno == errno.EBUSY:
                    raise AlreadyAttached(
                        f"{iface}: an XDP program is already attached (in another mode?)"
                    ) from None
                continue
        got = query_xdp(idx)
        assert got is not None
        return got
    assert last is not None
    raise from_oserror(last, f"attach XDP program {prog.name} to {iface} ({mode.value})", Op.ATTACH)


def replace_xdp(prog: Program, iface: str | int, old: Program, mode: str) -> XdpLink:
    """Put ``prog`` where ``old`` runs, in one step: the kernel swaps the
    program on the hook (XDP_FLAGS_REPLACE) and refuses (AlreadyAttached)
    when ``old`` is no longer the one attached. No packet meets an empty hook.
    ``mode``: the attachment's ("native" or "generic"), which must not change.
    """
    idx = ifindex_of(iface)
    mode_flag = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}.get(mode)
    if mode_flag is None:
        raise BpfError(f"{iface}: cannot replace an XDP program attached in {mode} mode")
    L = lib()
    opts = XdpAttachOpts(sz=ctypes.sizeof(XdpAttachOpts), old_prog_fd=old.fd)
    with L.capture():
        try:
            flags = mode_flag | XDP_FLAGS_REPLACE
            L.bpf.bpf_xdp_attach(idx, prog.fd, flags, ctypes.addressof(opts))
        except OSError as exc:
            what = f"replace XDP program id {old.id} on {iface} by {prog.name} ({mode})"
            raise from_oserror(exc, what, Op.ATTACH) from None
    got = query_xdp(idx)
    assert got is not None
    return got


def detach_xdp(iface: str | int, prog_id: int | None = None) -> None:
    """Detach the XDP program (only if it is ``prog_id``, when given)."""
    cur = query_xdp(iface)
    if cur is None:
        raise NotAttached(f"no XDP program on {iface}")
    if prog_id is not None and cur.prog_id != prog_id:
        raise NotAttached(
            f"{iface} runs XDP program id {cur.prog_id}, not ours ({prog_id}); left alone"
        )
    flags = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}.get(cur.mode, 0)
    try:
        lib().bpf.bpf_xdp_detach(cur.ifindex, flags, None)
    except OSError as exc:
        raise from_oserror(exc, f"detach XDP from {iface}", Op.DETACH) from None


def attach_tc(
    prog: Program,
    iface: str | int,
    *,
    ingress: bool = True,
    handle: int = 1,
    priority: int = 1,
    replace: bool = False,
) -> TcLink:
    """Attach a direct-action classifier to clsact (created when absent).
    ``replace``: swap the program of the filter at ``handle``/``priority``
    in one netlink request (tc filter replace; created when absent)."""
    idx = ifindex_of(iface)
    L = lib()
    hook = L.tc_hook(idx, ingress)
    try:
        L.bpf.bpf_tc_hook_create(hook)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise from_oserror(exc, f"create clsact on {iface}", Op.INTERFACE) from None
    opts = L.tc_opts(
        prog_fd=prog.fd, handle=handle, priority=priority, flags=BPF_TC_F_REPLACE if replace else 0
    )
    try:
        L.bpf.bpf_tc_attach(hook, opts)
    except OSError as exc:
        what = f"{iface}: attach tc program {prog.name} as filter {handle}/{priority}"
        raise from_oserror(exc, what, Op.ATTACH) from None
    return TcLink(idx, opts.prog_id, handle, priority, ingress)


def detach_tc(
    iface: str | int, *, ingress: bool = True, handle: int = 1, priority: int = 1
) -> None:
    idx = ifindex_of(iface)
    L = lib()
    hook = L.tc_hook(idx, ingress)
    try:
        L.bpf.bpf_tc_detach(hook, L.tc_opts(handle=handle, priority=priority))
    except OSError as exc:
        what = f"{iface}: detach tc filter {handle}/{priority}"
        raise from_oserror(exc, what, Op.DETACH) from None


def query_tc(
    iface: str | int, *, ingress: bool = True, handle: int = 1, priority: int = 1
) -> int | None:
    """Program id of our tc filter, or None."""
    L = lib()
    hook = L.tc_hook(ifindex_of(iface), ingress)
    opts = L.tc_opts(handle=handle, priority=priority)
    try:
        L.bpf.bpf_tc_query(hook, opts)
    except OSError:
        return None
    return int(opts.prog_id)


# -- bpffs --------------------------------------------------------------------------
def _bpffs_mounted(mountinfo: Path, mountpoint: str) -> bool:
    try:
        for line in mountinfo.read_text().splitlines():
            pre, _, post = line.partition(" - ")
            if pre.split()[4] == mountpoint and post.split()[0] == "bpf":
                return True
    except OSError:
        return False
    return False


def _ancestors() -> Iterator[int]:
    pid = os.getppid()
    while pid > 1:
        yield pid
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return


def bpffs_root() -> Path:
    """The BPF filesystem, found or mounted.

    ``ip netns exec`` remounts /sys in a private mount namespace, hiding the
    host's bpffs; pins must still go to the host's so that the next command
    sees them. An ancestor (the shell that ran ``ip``) still has it, reachable
    through /proc/PID/root. Only when no bpffs is found is one mounted, and
    then pins live only as long as this mount namespace.
    """
    if _bpffs_mounted(Path("/proc/self/mountinfo"), str(BPFFS_ROOT)):
        return BPFFS_ROOT
    outer: int | None = None  # the nearest ancestor in another mount namespace
    own = _mount_ns("self")
    for pid in _ancestors():
        host = _host_path(pid)
        if _bpffs_mounted(Path(f"/proc/{pid}/mountinfo"), str(BPFFS_ROOT)) and os.access(
            host, os.W_OK
        ):
            return host
        if outer is None and _mount_ns(str(pid)) not in (None, own):
            outer = pid
    # None anywhere (a host whose init does not mount one). Under `ip netns
    # exec`, one mounted here would die with this process and its pins: it
    # goes into the namespace `ip` was run from, where the next command looks.
    if outer is not None and _mount(["nsenter", f"--mount=/proc/{outer}/ns/mnt", "--"]) is None:
        return _host_path(outer)
    BPFFS_ROOT.mkdir(parents=True, exist_ok=True)
    error = _mount([])
    if error is not None:
        raise BpfError(f"cannot mount bpffs at {BPFFS_ROOT}: {error}")
    return BPFFS_ROOT


def _host_path(pid: int) -> Path:
    """BPFFS_ROOT as process ``pid`` sees it."""
    return Path(f"/proc/{pid}/root") / BPFFS_ROOT.relative_to("/")


def _mount_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _mount(prefix: list[str]) -> str | None:
    """Mount a bpffs at BPFFS_ROOT (in the mount namespace ``prefix`` enters);
    the error, or None."""
    proc = subprocess.run(
        [*prefix, "mount", "-t", "bpf", "bpf", str(BPFFS_ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if proc.returncode == 0 else proc.stderr.strip() or f"exit {proc.returncode}"
