"""tcpdump filter expressions on bytes, compiled and run by libpcap.

The expression is compiled by libpcap's own compiler (``pcap_compile`` on a
dead handle, as tcpdump does) and the classic BPF program it makes is run by
libpcap's interpreter (``pcap_offline_filter``): the filter means exactly
what it means to tcpdump.
"""

from __future__ import annotations

from ._libbpf import BpfProgram, pcap

__all__ = ["LINKTYPE_ETHERNET", "PcapFilter"]

LINKTYPE_ETHERNET = 1


class PcapFilter:
    """A compiled filter; ``matches(frame)`` runs it. ValueError (libpcap's
    message) when the expression does not compile."""

    def __init__(self, expr: str, *, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 65535):
        self.expr = expr
        self._prog: BpfProgram | None = None
        self._prog = pcap().compile(expr, linktype, snaplen)

    def matches(self, data: bytes, wirelen: int | None = None) -> bool:
        """Whether the frame passes; ``data`` may be the head of a longer
        frame of ``wirelen`` bytes (a test past the head fails, as in tcpdump)."""
        if self._prog is None:
            raise ValueError(f"filter {self.expr!r} is closed")
        return pcap().matches(self._prog, data, len(data) if wirelen is None else wirelen)

    def close(self) -> None:
        if self._prog is not None:
            pcap().free(self._prog)
            self._prog = None

    def __del__(self) -> None:
        self.close()
