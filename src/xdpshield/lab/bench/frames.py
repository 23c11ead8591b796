"""The frames the test-run benchmarks send: a Linux client's SYN, its ACKs, and the rest.

Built with scapy, once, before anything is timed.
"""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

__all__ = [
    "ack_frame",
    "arp_frame",
    "loopback_data_frame",
    "malformed_frame",
    "parse_synack",
    "syn_frame",
    "udp_frame",
]

CLIENT_MAC, SERVER_MAC = "02:00:5e:10:00:01", "02:00:5e:10:00:02"
CLIENT4, SERVER4 = "198.18.1.1", "198.18.0.2"
CLIENT6, SERVER6 = "fd00:b::1", "fd00:b::2"
# A second client that completes a handshake (becomes verified) before timing:
# the SYN and forged-ACK paths are timed from CLIENT4/6, which never does.
VERIFIED4, VERIFIED6 = "198.18.1.3", "fd00:b::3"
PROTECTED_PORT, UNPROTECTED_PORT, CLIENT_PORT = 80, 9, 43210
CLIENT_ISN = 0x1F2E3D4C
# What a Linux client puts in its SYN, in its order: MSS, SACK-permitted,
# timestamps, NOP, window scale (20 bytes of options).
LINUX_SYN_OPTIONS: list[tuple[str, Any]] = [
    ("MSS", 1460),
    ("SAckOK", b""),
    ("Timestamp", (0x5A5A0001, 0)),
    ("NOP", None),
    ("WScale", 7),
]


def _eth(v6: bool = False) -> Any:
    return Ether(src=CLIENT_MAC, dst=SERVER_MAC, type=0x86DD if v6 else 0x0800)


def _ip(v6: bool = False, verified: bool = False) -> Any:
    if v6:
        return IPv6(src=VERIFIED6 if verified else CLIENT6, dst=SERVER6, hlim=64)
    src = VERIFIED4 if verified else CLIENT4
    return IP(src=src, dst=SERVER4, ttl=64, id=1, flags="DF")


def syn_frame(
    v6: bool = False,
    dport: int = PROTECTED_PORT,
    options: list[tuple[str, Any]] | None = None,
    verified: bool = False,
) -> bytes:
    opts = LINUX_SYN_OPTIONS if options is None else options
    return bytes(
        _eth(v6)
        / _ip(v6, verified)
        / TCP(sport=CLIENT_PORT, dport=dport, seq=CLIENT_ISN, flags="S", window=64240, options=opts)
    )


def ack_frame(
    ack: int,
    v6: bool = False,
    tsecr: int = 0,
    flags: str = "A",
    payload: bytes = b"",
    verified: bool = False,
) -> bytes:
    """The client's handshake ACK (timestamps echoed, as Linux sends it)."""
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (0x5A5A0002, tsecr))]
    return bytes(
        _eth(v6)
        / _ip(v6, verified)
        / TCP(
            sport=CLIENT_PORT,
            dport=PROTECTED_PORT,
            seq=CLIENT_ISN + 1,
            ack=ack,
            flags=flags,
            window=502,
            options=opts,
        )
        / payload
    )


def udp_frame(v6: bool = False) -> bytes:
    return bytes(_eth(v6) / _ip(v6) / UDP(sport=CLIENT_PORT, dport=PROTECTED_PORT) / (b"x" * 18))


def arp_frame() -> bytes:
    return bytes(
        Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT4, pdst=SERVER4)
    )


def malformed_frame() -> bytes:
    """IPv4/TCP cut in the middle of the TCP header (IP total length says more)."""
    return syn_frame()[: 14 + 20 + 10]


def parse_synack(frame: bytes) -> tuple[int, int] | None:
    """(cookie seq, TSval or 0) of a SYN-ACK the shield wrote, or None if it is not one."""
    pkt = Ether(frame)
    if TCP not in pkt:
        return None
    tcp = pkt[TCP]
    if (int(tcp.flags) & 0x12) != 0x12:
        return None
    tsval = next((v[0] for k, v in tcp.options if k == "Timestamp"), 0)
    return int(tcp.seq), int(tsval)


def loopback_data_frame(sport: int, dport: int) -> bytes:
    """A data segment of a loopback connection of this process (sockets the
    shield's lookup can find, since test run looks them up in the caller's
    namespace)."""
    return bytes(
        Ether(src=CLIENT_MAC, dst=SERVER_MAC)
        / IP(src="127.0.0.1", dst="127.0.0.1")
        / TCP(sport=sport, dport=dport, seq=1, ack=2, flags="PA")
        / b"GET / HTTP/1.1\r\n\r\n"
    )
