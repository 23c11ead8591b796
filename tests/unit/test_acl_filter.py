"""The IPv4 lists' filter as Python builds it (struct xs_acl4_bits): a bit
per /24, set exactly where some prefix of the list holds part of that /24.
The data path's reading of it is tested in tests/datapath/test_policy.py."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from xdpshield.policy.model import Prefix
from xdpshield.shield.policy import ACL4_FILTER_BYTES, acl4_bits


def prefix(text: str) -> Prefix:
    n = ipaddress.ip_network(text)
    return Prefix(n.version, n.network_address.packed, n.prefixlen)


def bit(bits: bytes | bytearray, addr: int) -> bool:
    n = addr >> 8
    return bool(bits[n >> 3] >> (n & 7) & 1)


def test_shapes() -> None:
    bits = acl4_bits([prefix("10.0.0.0/23"), prefix("192.168.1.4/30"), prefix("2001:db8::/32")])
    assert len(bits) == ACL4_FILTER_BYTES
    set_ = {i for i in range(len(bits) * 8) if bits[i >> 3] >> (i & 7) & 1}
    assert set_ == {0x0A0000, 0x0A0001, 0xC0A801}  # IPv6 takes no bit
    assert acl4_bits([prefix("0.0.0.0/0")]) == b"\xff" * ACL4_FILTER_BYTES
    assert sum(map(int.bit_count, acl4_bits([prefix("172.16.0.0/12")]))) == 1 << 12


prefixes = st.builds(
    lambda a, n: ipaddress.ip_network((a, n), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@given(st.lists(prefixes, max_size=6), st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_a_bit_is_set_exactly_where_a_prefix_meets_the_24(
    nets: list[ipaddress.IPv4Network], addrs: list[int]
) -> None:
    bits = acl4_bits(prefix(str(n)) for n in nets)
    for n in nets:  # every address a prefix holds: its bit is set
        addrs += [int(n.network_address), int(n.broadcast_address)]
    for a in addrs:
        slash24 = ipaddress.ip_network((a & ~0xFF, 24))
        assert bit(bits, a) == any(n.overlaps(slash24) for n in nets), (a, nets)
