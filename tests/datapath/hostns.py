"""A scratch namespace for datapath tests that need the host's own view:
sockets to look up, local addresses, an interface whose MTU the data path
reads. Test-run frames meet the namespace the test thread is in (its
loopback, or the device named by ``ingress_ifindex``).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from xdpshield import netns

SERVER4, CLIENT4 = "198.18.0.2", "198.18.0.1"
SERVER6, CLIENT6 = "fd00:3::2", "fd00:3::1"


@dataclass(frozen=True)
class ScratchHost:
    ns: str
    dev: str  # a link holding the addresses below
    ifindex: int


@contextlib.contextmanager
def scratch_host(mtu: int = 1500) -> Iterator[ScratchHost]:
    """Enter a fresh namespace whose link has the client's and the
    server's addresses (both local, so real sockets connect between them);
    removed afterwards, even when the test fails."""
    prefix = netns.unique_prefix("xd")
    name, dev = f"{prefix}-dp", f"{prefix}a"
    netns.create(name)
    try:
        # Addresses usable at once: no duplicate address detection.
        for conf in ("all", "default"):
            netns.set_sysctl(name, f"net.ipv6.conf.{conf}.accept_dad", 0)
        # This kernel has no dummy links: a veth pair with both ends inside.
        netns.veth_pair(dev, f"{prefix}b", name, name)
        with netns.ipr(name) as nl:
            idx = nl.link_lookup(ifname=dev)[0]
            nl.link("set", index=idx, mtu=mtu)
        for cidr in (f"{SERVER4}/24", f"{CLIENT4}/32", f"{SERVER6}/64", f"{CLIENT6}/128"):
            netns.add_address(dev, cidr, name)
        with netns.enter(name):
            _wait_bindable((SERVER4, CLIENT4, SERVER6, CLIENT6))
            yield ScratchHost(name, dev, idx)
    finally:
        netns.remove(name)


def _wait_bindable(addrs: tuple[str, ...], timeout_s: float = 5.0) -> None:
    """Until every address can be bound (an IPv6 address is briefly
    unusable after it is added, even without duplicate address detection)."""
    deadline = time.monotonic() + timeout_s
    for addr in addrs:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        while True:
            with socket.socket(family) as s:
                try:
                    s.bind((addr, 0))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.01)


def set_mtu(host: ScratchHost, mtu: int) -> None:
    with netns.ipr(host.ns) as nl:
        nl.link("set", index=host.ifindex, mtu=mtu)
