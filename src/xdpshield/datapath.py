"""The shield object's maps, constants and reasons, as Python sees them.

This module is the one contract between the BPF object (bpf/) and the rest of
the package: map names, key/value layouts, ``.rodata`` constants and the
verdict reasons. ``shield.py`` and ``cli.py`` call only what is here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .bpf import Map, StructCodec, UInt, sum_percpu

__all__ = [
    "PIN_MAPS",
    "GuardOptions",
    "Reason",
    "constants",
    "get_ports",
    "init_maps",
    "read_stats",
    "set_ports",
]

Maps = Mapping[str, Map[Any, Any]]


class Reason(IntEnum):
    """Mirrors ``enum xs_reason`` in bpf/include/shared.h (a test checks the BTF)."""

    PASS_NON_IP = 0
    MALFORMED = 1
    PASS_UNPROTECTED = 2
    SYN_COOKIE_SENT = 3
    ACK_VALID = 4
    ACK_INVALID = 5
    VERIFIED_PASS = 6
    NOT_VERIFIED = 7

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


#: Maps pinned under the shield's directory, so other processes can reopen them.
PIN_MAPS = ("xs_stats", "xs_ports")


@dataclass(frozen=True)
class GuardOptions:
    """Settings fixed at load time (become ``.rodata`` constants)."""

    debug: bool = False


def constants(opts: GuardOptions) -> dict[str, int]:
    """``.rodata`` values for ObjectSpec.set_constants()."""
    return {}


def _ports(maps: Maps) -> Map[int, int]:
    return maps["xs_ports"].typed(UInt(2), UInt(1))


def get_ports(maps: Maps) -> set[int]:
    return set(_ports(maps).keys())


def set_ports(maps: Maps, ports: Iterable[int]) -> None:
    """Make the protected set exactly ``ports`` (adds first, so nothing is unguarded)."""
    m, want = _ports(maps), set(ports)
    for port in want:
        m.update(port, 1)
    for port in set(m.keys()) - want:
        m.delete(port)


def init_maps(maps: Maps, ports: Iterable[int]) -> None:
    """Fill a freshly loaded shield's maps."""
    set_ports(maps, ports)


def read_stats(maps: Maps) -> dict[Reason, tuple[int, int]]:
    """(packets, bytes) per reason, summed over CPUs."""
    stats = maps["xs_stats"].typed(UInt(4), StructCodec("=QQ"))
    out: dict[Reason, tuple[int, int]] = {}
    for reason in Reason:
        pk, by = sum_percpu(stats.lookup_percpu(int(reason)))
        out[reason] = (pk, by)
    return out
