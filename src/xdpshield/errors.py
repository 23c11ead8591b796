"""The one exception tree. Every error says what failed and what to do about it."""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "AlreadyAttached",
    "BpfError",
    "ConfigError",
    "InterfaceNotFound",
    "KeyNotFound",
    "MapFull",
    "NotAttached",
    "NotPermitted",
    "ObjectMismatch",
    "ObjectNotFound",
    "StandError",
    "TrafficError",
    "Unavailable",
    "VerifierError",
    "XdpShieldError",
    "from_oserror",
]


class XdpShieldError(Exception):
    """Base of every error xdpshield raises on purpose."""


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
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class StandError(XdpShieldError):
    """The lab's stand cannot be brought up, inspected or used."""


class TrafficError(XdpShieldError):
    """The lab: a flood or a load cannot be built, started or completed."""


class Unavailable(XdpShieldError):
    """The lab: a receiver or baseline cannot run here; the message says why."""


def from_oserror(exc: OSError, what: str) -> XdpShieldError:
    """Turn an errno from libbpf into the exception a caller can act on."""
    err = exc.errno or 0
    text = f"{what}: {os.strerror(err) if err else exc}"
    if err in (_errno.EPERM, _errno.EACCES):
        return NotPermitted(f"{text} (BPF needs root or CAP_BPF+CAP_NET_ADMIN)", err)
    if err == _errno.ENOENT:
        return KeyNotFound(text, err)
    if err == _errno.E2BIG:
        return MapFull(text, err)
    return BpfError(text, err)
