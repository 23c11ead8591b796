"""What receives the live floods on the stand's server: the shield, and each baseline.

Every receiver is a context manager that sets itself up on the server's link
(or in its namespace) and removes itself afterwards; one that cannot run here
raises ``Unavailable`` with the reason, which the row then reports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from xdpshield import netns
from xdpshield.ebpf import ObjectSpec, attach_xdp, detach_xdp, query_xdp
from xdpshield.errors import Unavailable
from xdpshield.lab.bench.harness import BASELINE_OBJ, OBJ_DIR
from xdpshield.lab.stand import Stand
from xdpshield.shield import datapath
from xdpshield.shield.core import Shield

__all__ = ["DROP_RECEIVERS", "LEGIT_PORT", "SYN_RECEIVERS", "receiver"]

SYN_RECEIVERS = ("xdpshield", "xdp-reflect", "linux-syncookies", "nftables-synproxy")
DROP_RECEIVERS = ("xdpshield", "xdp-drop", "xdp-parse-drop", "xdp-filter")
LEGIT_PORT = 80


@contextlib.contextmanager
def _rx_xdp(stand: Stand, program: str) -> Iterator[None]:
    """A bare program from baseline.o, native, on the server's link."""
    with netns.enter(stand.ns("server")):
        coll = ObjectSpec(OBJ_DIR / BASELINE_OBJ).load()
        try:
            att = attach_xdp(coll.program(program), stand.server_if, "native")
        except BaseException:
            coll.close()
            raise
    try:
        yield
    finally:
        with netns.enter(stand.ns("server")):
            detach_xdp(stand.server_if, att.prog_id)
        coll.close()


@contextlib.contextmanager
def _rx_shield(stand: Stand) -> Iterator[None]:
    with netns.enter(stand.ns("server")):
        # The default handshake, as a user gets it (transparent where the kernel can).
        shield = Shield.load(stand.server_if, ports=[LEGIT_PORT], xdp_mode="native")
    try:
        # As a shield runs past its first minutes: its daemon rotated the
        # keys (both slots live, so a forged ACK always names a live key),
        # and the filter of cookies offered is trusted (three cookie ticks
        # after the load).
        datapath.rotate_keys(shield.maps)
        datapath.trust_offered(shield.maps, 1)
        yield
    finally:
        with netns.enter(stand.ns("server")):
            shield.unload()


NFT_TABLE = "xdpshield_bench"
_SYNPROXY = "synproxy mss 1460 wscale 7 timestamp sack-perm"
NFT_SYNPROXY = f"""
table inet {NFT_TABLE} {{
    chain pre {{
        type filter hook prerouting priority raw; policy accept;
        tcp dport {LEGIT_PORT} tcp flags syn notrack
    }}
    chain in {{
        type filter hook input priority filter; policy accept;
        tcp dport {LEGIT_PORT} ct state invalid,untracked {_SYNPROXY}
        ct state invalid drop
    }}
}}
"""


@contextlib.contextmanager
def _rx_nft_synproxy(stand: Stand) -> Iterator[None]:
    """The kernel's netfilter SYNPROXY in front of the listener, as its docs set it up."""
    proc = stand.exec("server", ["nft", "-f", "-"], input=NFT_SYNPROXY, timeout=20)
    if proc.returncode != 0:
        raise Unavailable(f"nft -f (synproxy ruleset): {proc.stderr.strip()[:200]}")
    stand.exec("server", ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"])
    try:
        yield
    finally:
        stand.exec("server", ["nft", "delete", "table", "inet", NFT_TABLE])
        stand.exec("server", ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=1"])


@contextlib.contextmanager
def _rx_xdp_filter(stand: Stand, kind: str) -> Iterator[None]:
    """Debian's xdp-filter, native, denying the flood's destination port.

    It cannot tell a forged ACK from a real one: this measures the cost of its
    per-packet lookups with a rule that matches the flood. ``ip netns exec``
    remounts /sys, so bpffs is mounted in the same shell that loads and
    configures it; it is detached by netlink afterwards.
    """
    proto = "tcp" if kind == "ack" else "udp"
    script = (
        "mount -t bpf bpf /sys/fs/bpf && "
        f"xdp-filter load -m native -p allow {stand.server_if} && "
        f"xdp-filter port -m dst -p {proto} {LEGIT_PORT}"
    )
    proc = stand.exec("server", ["sh", "-c", script], timeout=30)

    def detach() -> None:
        with netns.enter(stand.ns("server")):
            cur = query_xdp(stand.server_if)
            if cur is not None:
                detach_xdp(stand.server_if, cur.prog_id)

    if proc.returncode != 0:
        detach()
        raise Unavailable(f"xdp-filter: {(proc.stderr or proc.stdout).strip()[:200]}")
    try:
        yield
    finally:
        detach()


@contextlib.contextmanager
def _rx_none() -> Iterator[None]:
    yield


def receiver(name: str, stand: Stand, kind: str) -> contextlib.AbstractContextManager[None]:
    if name == "xdpshield":
        return _rx_shield(stand)
    if name == "xdp-reflect":
        return _rx_xdp(stand, "bench_reflect")
    if name == "xdp-drop":
        return _rx_xdp(stand, "bench_drop")
    if name == "xdp-parse-drop":
        return _rx_xdp(stand, "bench_parse_drop")
    if name == "xdp-filter":
        return _rx_xdp_filter(stand, kind)
    if name == "nftables-synproxy":
        return _rx_nft_synproxy(stand)
    if name == "linux-syncookies":
        return _rx_none()
    raise Unavailable(f"unknown receiver {name!r}")
