"""The lists' filters as Python builds them (struct xs_acl_bits): IPv4, a
bit per /24, set exactly where some prefix of the list holds part of that
/24; IPv6, a bit per /32's hash, set for every /32 a prefix meets. And the
deny list's sure bits: a /24 only permanent /24-or-shorter entries touch.
The data path's reading of them is tested in tests/datapath/test_policy.py."""

from __future__ import annotations

import collections
import ipaddress
import re
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from xdpshield.policy.model import Prefix
from xdpshield.shield.policy import ACL_FILTER_BYTES, _Bits, _place, acl6_n, acl_bits, deny_sure


def prefix(text: str) -> Prefix:
    n = ipaddress.ip_network(text)
    return Prefix(n.version, n.network_address.packed, n.prefixlen)


def bit(bits: bytes | bytearray | None, n: int) -> bool:
    assert bits is not None
    return bool(bits[n >> 3] >> (n & 7) & 1)


def ones(bits: bytes | bytearray | None) -> set[int]:
    assert bits is not None
    # Only the bytes that are not zero (a C-level scan: 2 MiB per filter).
    nonzero = (m.start() for m in re.finditer(rb"[^\x00]", bits))
    return {i * 8 + j for i in nonzero for j in range(8) if bits[i] >> j & 1}


def test_ipv4_shapes() -> None:
    bits = acl_bits([prefix("10.0.0.0/23"), prefix("192.168.1.4/30"), prefix("2001:db8::/32")], 4)
    assert bits is not None and len(bits) == ACL_FILTER_BYTES
    assert ones(bits) == {0x0A0000, 0x0A0001, 0xC0A801}  # IPv6 takes no bit
    assert acl_bits([prefix("0.0.0.0/0")], 4) == bytearray(b"\xff" * ACL_FILTER_BYTES)
    assert len(ones(acl_bits([prefix("172.16.0.0/12")], 4))) == 1 << 12


def test_ipv6_shapes() -> None:
    db8 = ipaddress.ip_address("2001:db8::").packed
    bits = acl_bits([prefix("2001:db8:1::/48"), prefix("2001:db8::/32"), prefix("10.0.0.0/8")], 6)
    assert ones(bits) == {acl6_n(db8)}  # both in one /32; IPv4 takes no bit
    wide = acl_bits([prefix("2001:db8::/30")], 6)
    assert len(ones(wide)) <= 4 and bit(wide, acl6_n(ipaddress.ip_address("2001:dbb::").packed))
    assert acl_bits([prefix("2000::/15")], 6) is None  # too wide: no filter
    assert acl_bits([prefix("2001::/16")], 6) is not None


prefixes = st.builds(
    lambda a, n: ipaddress.IPv4Network((a, n), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@settings(deadline=None)
@given(st.lists(prefixes, max_size=6), st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_an_ipv4_bit_is_set_exactly_where_a_prefix_meets_the_24(
    nets: list[ipaddress.IPv4Network], addrs: list[int]
) -> None:
    bits = acl_bits((prefix(str(n)) for n in nets), 4)
    for n in nets:  # every address a prefix holds: its bit is set
        addrs += [int(n.network_address), int(n.broadcast_address)]
    for a in addrs:
        slash24 = ipaddress.ip_network((a & ~0xFF, 24))
        assert bit(bits, a >> 8) == any(n.overlaps(slash24) for n in nets), (a, nets)


prefixes6 = st.builds(
    lambda a, n: ipaddress.IPv6Network((a, n), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(20, 128),
)


@settings(deadline=None)
@given(st.lists(prefixes6, max_size=4), st.integers(0, 2**128 - 1))
def test_every_ipv6_address_a_prefix_holds_has_its_bit(
    nets: list[ipaddress.IPv6Network], other: int
) -> None:
    bits = acl_bits((prefix(str(n)) for n in nets), 6)
    for n in nets:
        for a in (n.network_address, n.broadcast_address):
            assert bit(bits, acl6_n(a.packed)), (a, nets)
    # A bit set is some prefix's /32 (or a hash collision with one).
    slash32s = {acl6_n(ipaddress.ip_address(a).packed) for n in nets
                for a in range(int(n.network_address) >> 96 << 96,
                               (int(n.broadcast_address) >> 96) + 1 << 96, 1 << 96)}  # fmt: skip
    assert ones(bits) == slash32s
    o = ipaddress.ip_address(other).packed
    assert bit(bits, acl6_n(o)) == (acl6_n(o) in slash32s)


class _OldPsel:
    """xs_psel as a shield loaded before the filter has it (88 bytes: no
    acl_filt), for what an upgrade reads of the running shield."""

    value_size = 88

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def typed(self, key: object, value: object) -> _OldPsel:
        return self

    def lookup(self, key: int) -> bytes:
        return self.raw


def test_an_older_selector_reads_with_no_filter() -> None:
    """The upgrade carries the running shield's live list entries over by
    reading its lists through its own (shorter) selector: it must decode,
    with no filter kept."""
    from xdpshield.shield import policy

    sel = policy.Selector(deny_gen=7, n_deny4=3, n_deny6=1, lim_on=1, acl_filt=15)
    full = policy._PSEL.encode(
        (sel.allow_gen, sel.deny_gen, sel.rules_gen, sel.hyg_gen, sel.n_allow4, sel.n_allow6,
         sel.n_deny4, sel.n_deny6, sel.n_rules, sel.n_ttl, sel.lpm_allow4, sel.lpm_allow6,
         sel.lpm_deny4, sel.lpm_deny6, sel.tiers, sel.rule_tiers, sel.lpm_rules, sel.lim_gen,
         sel.lim_on, sel.acl_filt)
    )  # fmt: skip
    old = full[: _OldPsel.value_size]
    got = policy.selector({"xs_psel": _OldPsel(old)})  # type: ignore[dict-item]
    assert got == policy.Selector(deny_gen=7, n_deny4=3, n_deny6=1, lim_on=1, acl_filt=0)


def test_sure_shapes() -> None:
    sure = deny_sure(
        {
            prefix("10.0.0.0/23"): None,  # two /24s, whole and for good
            prefix("10.1.0.0/24"): 60.0,  # an expiry: not sure
            prefix("10.2.0.0/16"): None,  # sure but where ...
            prefix("10.2.7.1/32"): None,  # ... a longer entry touches it
            prefix("10.3.0.0/25"): None,  # half a /24
            prefix("2001:db8::/32"): None,  # IPv6: no sure bits
        }
    )
    assert len(sure) == ACL_FILTER_BYTES
    assert ones(sure) == {0x0A0000, 0x0A0001} | set(range(0x0A0200, 0x0A0300)) - {0x0A0207}


@settings(deadline=None)
@given(
    st.lists(st.tuples(prefixes, st.sampled_from([None, 5.0])), max_size=6),
    st.lists(st.integers(0, 2**32 - 1), max_size=20),
)
def test_a_sure_bit_means_a_permanent_entry_holds_the_whole_24(
    entries: list[tuple[ipaddress.IPv4Network, float | None]], addrs: list[int]
) -> None:
    lst = {prefix(str(n)): ttl for n, ttl in entries}
    sure = deny_sure(lst)

    def net(p: Prefix) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int.from_bytes(p.addr, "big"), p.plen))

    held = [net(p) for p, ttl in lst.items() if ttl is None and p.plen <= 24]
    others = [net(p) for p, ttl in lst.items() if ttl is not None or p.plen > 24]
    for n, _ in entries:
        addrs += [int(n.network_address), int(n.broadcast_address)]
    for a in addrs:
        slash24 = ipaddress.IPv4Network((a & ~0xFF, 24))
        if bit(sure, a >> 8):
            assert any(slash24.subnet_of(n) for n in held), (a, lst)
        elif not any(n.overlaps(slash24) for n in others):
            # Touched by nothing else: a permanent entry holding it makes it sure.
            assert not any(slash24.subnet_of(n) for n in held), (a, lst)


class _Sink:
    """A list map that takes every batch: only the bits are compared here."""

    key_size = 0

    def typed(self, *_codecs: object) -> _Sink:
        return self

    def update_batch_bytes(self, keys: bytes, values: bytes, batch: int) -> None:
        pass


any_prefix = st.one_of(
    st.builds(lambda n: prefix(str(n)), prefixes),
    st.builds(
        lambda a, n: prefix(str(ipaddress.IPv6Network((a, n), strict=False))),
        st.integers(0, 2**128 - 1),
        st.sampled_from([12, 24, 30, 32, 48, 64, 128]),
    ),
)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(any_prefix, st.sampled_from([0, 5 * 10**9])), max_size=8))
@example(  # each side of the inline shapes' edges (IPv4 /24, IPv6 /32), either kind
    [
        (prefix("2001:db8::/48"), 0),
        (prefix("2001:db9::/32"), 0),
        (prefix("2001:dc0::/31"), 0),
        (prefix("10.0.0.0/25"), 0),
        (prefix("10.0.1.0/24"), 5 * 10**9),
        (prefix("10.0.2.0/24"), 0),
        (prefix("10.0.4.0/23"), 0),
        (prefix("10.0.8.0/23"), 5 * 10**9),
        (prefix("10.1.0.0/16"), 0),
    ]
)
def test_a_list_load_marks_the_bits_one_add_at_a_time_would(
    entries: list[tuple[Prefix, int]],
) -> None:
    """The million-prefix load (_place) marks the common shapes inline, for
    speed: its filters and sure bits must be what _Bits.add gives, entry by
    entry (which acl_bits and deny_sure use)."""
    lst = dict(entries)  # prefix -> expiry (0: permanent)
    placed = _Bits([4, 6], sure=True)
    sinks: Any = collections.defaultdict(_Sink)  # stands in for the list maps
    _place(sinks, "deny", lst, lambda exp: (exp, 0), 1, {4: [], 6: []}, placed)
    one = _Bits([4, 6], sure=True)
    for (version, addr, plen), exp in lst.items():
        one.add(version, addr, plen, not exp)
    assert placed.out == one.out
    assert placed.sure_bits() == one.sure_bits()
