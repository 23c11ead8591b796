"""The lab: the test stand, traffic generators, the demo and the benchmarks.
Needs the ``lab`` extra (scapy, matplotlib)."""

from __future__ import annotations

from typing import Literal

__all__ = ["KINDS", "ROLES", "FloodKind", "Role"]

Role = Literal["client", "attacker", "server"]
#: The stand's hosts, each a network namespace.
ROLES: tuple[Role, ...] = ("client", "attacker", "server")

FloodKind = Literal["syn", "ack", "udp", "icmp", "frag"]
#: What ``xdpshield flood`` can send.
KINDS: tuple[FloodKind, ...] = ("syn", "ack", "udp", "icmp", "frag")
