"""The one exception tree. Every error says what failed and what to do about it."""

from __future__ import annotations

import errno as _errno
import os
from enum import Enum

__all__ = [
    "AlreadyAttached",
    "AlreadyRunning",
    "BpfError",
    "ConfigError",
    "ConfigErrors",
    "InterfaceNotFound",
    "KeyNotFound",
    "MapFull",
    "NotAttached",
    "NotPermitted",
    "NotRunning",
    "ObjectMismatch",
    "ObjectNotFound",
    "Op",
    "StandError",
    "TrafficError",
    "Unavailable",
    "UpgradeRefused",
    "VerifierError",
    "XdpShieldError",
    "from_oserror",
]


class XdpShieldError(Exception):
    """Base of every error xdpshield raises on purpose."""

    #: The kernel's reason when a syscall failed (0: not from a syscall).
    errno: int | None = 0


class BpfError(XdpShieldError):
    """A BPF syscall or libbpf call failed; ``errno`` holds the kernel's reason."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class NotPermitted(BpfError):
    """The caller lacks the privileges BPF needs (run as root)."""


class KeyNotFound(BpfError, KeyError):
    """A map lookup or delete named a key the map does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "key not found"


class MapFull(BpfError):
    """A map has no room for another key (E2BIG from the kernel)."""


class ObjectNotFound(XdpShieldError, FileNotFoundError):
    """A BPF object file or a pinned object is missing."""


class ObjectMismatch(XdpShieldError, KeyError):
    """The object lacks a map, program or constant the caller asked for."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "object mismatch"


class InterfaceNotFound(XdpShieldError):
    """The named network interface does not exist in this namespace."""


class AlreadyAttached(XdpShieldError):
    """An XDP program (the shield or another) is already on the interface."""


class NotAttached(XdpShieldError):
    """There is nothing of ours to detach or read on the interface."""


class VerifierError(BpfError):
    """The kernel verifier rejected a program; ``log`` is its full output.

    ``str()`` shows the program, errno, and the tail of the log: the last source
    line (from BTF line info, the ``;`` lines) and the failing instruction.
    """

    def __init__(self, program: str, errno: int, log: str) -> None:
        self.program = program
        self.log = log
        super().__init__(self._summary(program, errno, log), errno)

    @staticmethod
    def _summary(program: str, errno: int, log: str) -> str:
        lines = [ln for ln in log.splitlines() if ln.strip()]
        # The verdict is the last line that is not the processed-insns tally.
        tail = [ln for ln in lines if not ln.startswith(("processed ", "verification time"))]
        reason = tail[-1] if tail else "(no verifier log)"
        source = next((ln for ln in reversed(lines) if ln.lstrip().startswith(";")), "")
        insn = next((ln for ln in reversed(tail[:-1]) if ln[:1].isdigit() and ": (" in ln), "")
        parts = [f"verifier rejected program '{program}' ({os.strerror(errno)}): {reason}"]
        if source:
            parts.append(f"  at source: {source.strip().lstrip('; ').strip()}")
        if insn:
            parts.append(f"  instruction: {insn.strip()}")
        parts.append(f"  ({len(lines)} log lines in VerifierError.log)")
        return "\n".join(parts)


class ConfigError(XdpShieldError, ValueError):
    """A configuration value is wrong; names the file, line and key where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.file, self.line, self.key = file, line, key
        #: What is wrong, without where (to say it again with more of where).
        self.message = message
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class ConfigErrors(ConfigError):
    """Every error found in a config file (and the list files it names), so a
    person fixes them all in one go; ``str()`` is one ``FILE:LINE: message``
    line per error. ``file``, ``line`` and ``key`` are the first error's."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "no errors")
        if self.errors:
            first = self.errors[0]
            self.file, self.line, self.key = first.file, first.line, first.key


class AlreadyRunning(XdpShieldError):
    """``xdpshield run`` is already running for this config; ``pid`` is its process."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


class UpgradeRefused(XdpShieldError):
    """A running shield cannot move to the installed object: a state map's
    layout changed and cannot be migrated (the message names it). The
    running shield is left as it was."""

    def __init__(self, message: str, maps: list[str]) -> None:
        super().__init__(message)
        self.maps = maps


class NotRunning(XdpShieldError):
    """No ``xdpshield run`` to signal (for this config)."""


class StandError(XdpShieldError):
    """The lab's stand cannot be brought up, inspected or used."""


class TrafficError(XdpShieldError):
    """The lab: a flood or a load cannot be built, started or completed."""


class Unavailable(XdpShieldError):
    """The lab: a receiver or baseline cannot run here; the message says why."""


class Op(Enum):
    """What a failed call was doing: the same errno means different things per operation
    (ENOENT is a missing key to a map lookup, a missing pin to obj_get)."""

    MAP_LOOKUP = "map lookup"
    MAP_DELETE = "map delete"
    MAP_UPDATE = "map update"
    OBJ_GET = "open pinned object"
    OBJ_PIN = "pin object"
    BY_ID = "open object by id"
    INTERFACE = "interface"
    ATTACH = "attach"
    DETACH = "detach"
    LOAD = "load"
    OTHER = "other"


_NO_IFACE = {
    _errno.ENODEV: InterfaceNotFound,
    _errno.ENXIO: InterfaceNotFound,
}
#: errno -> class per operation; EPERM/EACCES are NotPermitted everywhere, the rest BpfError.
_BY_OP: dict[Op, dict[int, type[XdpShieldError]]] = {
    Op.MAP_LOOKUP: {_errno.ENOENT: KeyNotFound},
    Op.MAP_DELETE: {_errno.ENOENT: KeyNotFound},
    Op.MAP_UPDATE: {_errno.E2BIG: MapFull, _errno.ENOSPC: MapFull, _errno.ENOENT: KeyNotFound},
    Op.OBJ_GET: {_errno.ENOENT: ObjectNotFound},
    Op.OBJ_PIN: {_errno.ENOENT: ObjectNotFound},
    Op.BY_ID: {_errno.ENOENT: ObjectNotFound},
    Op.INTERFACE: {_errno.ENOENT: InterfaceNotFound, **_NO_IFACE},
    Op.ATTACH: {_errno.EEXIST: AlreadyAttached, _errno.EBUSY: AlreadyAttached, **_NO_IFACE},
    Op.DETACH: {_errno.ENOENT: NotAttached, **_NO_IFACE},
    Op.LOAD: {_errno.ENOENT: ObjectNotFound},
    Op.OTHER: {},
}
#: What the errno means for the class it maps to (strerror's ENOENT,
#: "No such file or directory", misleads about a map key or an interface).
_REASONS: dict[type[XdpShieldError], str] = {
    NotPermitted: "not permitted (BPF needs root or CAP_BPF+CAP_NET_ADMIN)",
    KeyNotFound: "no such key",
    MapFull: "the map is full",
    ObjectNotFound: "not found",
    InterfaceNotFound: "no such network interface",
    AlreadyAttached: "a program is already attached",
    NotAttached: "nothing attached",
}


def from_oserror(exc: OSError, what: str, op: Op = Op.OTHER) -> XdpShieldError:
    """Turn an errno from libbpf into the exception a caller can act on.

    ``what`` names the thing (``lookup in map xs_keys``), ``op`` says which
    operation failed, so that an errno maps to the class that fits it.
    """
    err = exc.errno or 0
    if err in (_errno.EPERM, _errno.EACCES):
        cls: type[XdpShieldError] = NotPermitted
    else:
        cls = _BY_OP[op].get(err, BpfError)
    reason = _REASONS.get(cls) or (os.strerror(err) if err else str(exc))
    text = f"{what}: {reason}"
    if issubclass(cls, BpfError):
        return cls(text, err)
    made = cls(text)
    made.errno = err
    return made
