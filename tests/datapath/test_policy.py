"""The policy stages in the kernel (BPF_PROG_TEST_RUN): allow and deny lists,
hygiene (TCP flags, reflection, fragments, ICMP, other protocols) and rules,
over IPv4, IPv6 with extension headers, VLAN and QinQ; and the generation
switch of an apply. Each case asserts the verdict, the reason counter that
moved (``Guard.run`` checks exactly one moved) and, for rules, the rule's
own counter.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import GRE, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from xdpshield.ebpf import UInt
from xdpshield.errors import ConfigError
from xdpshield.policy.model import (
    Action,
    Hygiene,
    Policy,
    Prefix,
    PrefixList,
    Rule,
)
from xdpshield.shield import policy
from xdpshield.shield.datapath import Reason

from .model import XDP_DROP, XDP_PASS, XDP_TX
from .test_guard import CLIENT4, CLIENT6, CMAC, NOW, PORT, SERVER4, SERVER6, SMAC, Guard, load

OTHER4, OTHER6 = "198.19.7.9", "fd00:77::9"


def P(text: str) -> Prefix:
    n = ipaddress.ip_network(text)
    return Prefix(n.version, n.network_address.packed, n.prefixlen)


def plist(*texts: str, ttl: float | None = None) -> PrefixList:
    return {P(t): ttl for t in texts}


class PolicyGuard(Guard):
    """A loaded shield with the default policy (hygiene on), and apply()."""

    def __init__(self, coll: Any) -> None:
        super().__init__(coll)
        policy.init_policy(self.maps)
        self.previous: dict[str, Any] = {}

    def apply(self, now_ns: int = NOW, **kw: Any) -> policy.ApplyResult:
        res = policy.apply_policy(self.maps, Policy(**kw), previous=self.previous, now_ns=now_ns)
        self.previous = res.carry()
        return res

    def expect(self, frame: Packet, verdict: int, reason: Reason) -> None:
        ran = self.run(frame)
        assert (ran.verdict, ran.reason) == (verdict, reason), (ran.verdict, ran.reason)

    def rule_packets(self, name: str) -> int:
        ids = {n: rid for n, (rid, _) in self.previous["rule_ids"].items()}
        return policy.rule_stats(self.maps, {name: ids[name]})[name][0]


@pytest.fixture
def pg() -> Iterator[PolicyGuard]:
    with load() as coll:
        yield PolicyGuard(coll)


@pytest.fixture
def pg_tc() -> Iterator[PolicyGuard]:
    """Also the tc programs: for what the egress program notes."""
    with load(tc=True) as coll:
        yield PolicyGuard(coll)


def l2(kind: str) -> Packet:
    p: Packet = Ether(src=CMAC, dst=SMAC)
    if kind == "vlan":
        p = p / Dot1Q(vlan=10)
    elif kind == "qinq":
        p = p / Dot1AD(vlan=100) / Dot1Q(vlan=10)
    return p


#: (name, family, L2 tags, IPv6 extension headers)
SHAPES = {
    "ipv4": (4, "plain", False),
    "ipv6": (6, "plain", False),
    "vlan-ipv4": (4, "vlan", False),
    "qinq-ipv6": (6, "qinq", False),
    "ipv6-exthdrs": (6, "plain", True),
    "qinq-ipv6-exthdrs": (6, "qinq", True),
}


def ip(shape: str, src: str | None = None, dst: str | None = None, **kw: Any) -> Packet:
    v, tags, ext = SHAPES[shape]
    if v == 4:
        return l2(tags) / IP(src=src or CLIENT4, dst=dst or SERVER4, **kw)
    p = l2(tags) / IPv6(src=src or CLIENT6, dst=dst or SERVER6, **kw)
    if ext:
        p = p / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
    return p


def other(shape: str) -> str:
    return OTHER4 if SHAPES[shape][0] == 4 else OTHER6


def net_of(shape: str, plen4: int = 24, plen6: int = 48) -> str:
    v = SHAPES[shape][0]
    addr = CLIENT4 if v == 4 else CLIENT6
    return str(ipaddress.ip_network(f"{addr}/{plen4 if v == 4 else plen6}", strict=False))


shapes = pytest.mark.parametrize("shape", list(SHAPES))


# -- allow and deny -------------------------------------------------------------------
@shapes
def test_deny_drops_the_network_and_nothing_else(pg: PolicyGuard, shape: str) -> None:
    pg.apply(deny=plist(net_of(shape)))
    pg.expect(ip(shape) / UDP(sport=5000, dport=9999), XDP_DROP, Reason.DENY)
    pg.expect(ip(shape) / TCP(sport=5000, dport=PORT, flags="S"), XDP_DROP, Reason.DENY)
    pg.expect(ip(shape, src=other(shape)) / UDP(sport=5000, dport=9999), XDP_PASS,
              Reason.PASS_UNPROTECTED)  # fmt: skip


@shapes
def test_allow_skips_every_later_stage(pg: PolicyGuard, shape: str) -> None:
    """Allowed and denied (a longer deny inside): allow wins; its SYN to a
    protected port reaches the kernel, as does flag nonsense."""
    net = net_of(shape)
    pg.apply(allow=plist(net), deny=plist(net_of(shape, 28, 64)),
             hygiene=Hygiene(protocols_drop=frozenset({47})))  # fmt: skip
    pg.expect(ip(shape) / TCP(sport=5000, dport=PORT, flags="S"), XDP_PASS, Reason.ALLOW_PASS)
    pg.expect(ip(shape) / TCP(sport=5000, dport=22, flags="SF"), XDP_PASS, Reason.ALLOW_PASS)
    pg.expect(ip(shape) / UDP(sport=53, dport=9999), XDP_PASS, Reason.ALLOW_PASS)
    # Without the allow, the same SYN meets the guard.
    pg.expect(ip(shape, src=other(shape)) / TCP(sport=5000, dport=PORT, flags="S"), XDP_TX,
              Reason.SYN_COOKIE_SENT)  # fmt: skip


@pytest.mark.parametrize("v", [4, 6])
def test_list_entries_expire_in_the_data_path(pg: PolicyGuard, v: int) -> None:
    shape = "ipv4" if v == 4 else "ipv6"
    # Applied 20 s before the frozen clock with a 10 s ttl: expired.
    pg.apply(now_ns=NOW - 20 * 10**9, deny=plist(net_of(shape), ttl=10))
    pg.expect(ip(shape) / UDP(sport=5000, dport=9999), XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.apply(now_ns=NOW - 5 * 10**9, deny=plist(net_of(shape), ttl=10.5))
    pg.expect(ip(shape) / UDP(sport=5000, dport=9999), XDP_DROP, Reason.DENY)


HASH_TIER_CASES = {
    4: (
        ["198.18.0.9/32", "198.18.1.8/30", "198.18.2.0/28", "198.18.3.0/26",
         "198.18.16.0/20", "198.19.0.0/16"],
        "198.18.{k}.0",
        "198.18.200.1",
    ),
    6: (
        ["fd00:18::9/128", "fd00:18:0:1::/120", "fd00:18:0:2::/112", "fd00:18:0:3::/64",
         "fd00:18:10::/60", "fd00:19::/48"],
        "fd00:18:0:{k}::",
        "fd00:18:ff::1",
    ),
}  # fmt: skip


@pytest.mark.parametrize("v", [4, 6])
def test_lengths_past_the_hash_tier_go_to_the_trie(pg: PolicyGuard, v: int) -> None:
    """Six prefix lengths: the four most common hashed, the rest in the LPM
    trie; a source in each of them is denied, one outside all of them not."""
    nets, spare, outside = HASH_TIER_CASES[v]
    shape = "ipv4" if v == 4 else "ipv6"
    addrs = [str(ipaddress.ip_network(n).network_address + 1) for n in nets]
    addrs[0] = nets[0].split("/")[0]  # the host route's own address
    deny: PrefixList = {P(n): None for n in nets}
    for n in nets[:4]:  # the first four lengths are the most common
        plen = n.split("/")[1]
        for k in (101, 102):
            deny[P(f"{spare.format(k=k)}/{plen}")] = None
    pg.apply(deny=deny)
    sel = policy.selector(pg.maps)
    assert sorted(sel.tier_lens("deny", v)) == sorted(P(n).plen for n in nets[:4])
    assert sel.lpm("deny", v) == 2
    for a in addrs:
        pg.expect(ip(shape, src=a) / UDP(sport=1, dport=9), XDP_DROP, Reason.DENY)
    pg.expect(ip(shape, src=outside) / UDP(sport=1, dport=9), XDP_PASS, Reason.PASS_UNPROTECTED)
    # Live edits find each length where it is; the list reads back whole.
    assert {e.prefix for e in policy.list_entries(pg.maps, "deny")} == set(deny)
    assert policy.del_entries(pg.maps, "deny", [P(nets[0]), P(nets[5])]) == 2
    for gone in (addrs[0], addrs[5]):
        pg.expect(ip(shape, src=gone) / UDP(sport=1, dport=9), XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.expect(ip(shape, src=addrs[4]) / UDP(sport=1, dport=9), XDP_DROP, Reason.DENY)


def test_an_expired_hashed_entry_hides_nothing(pg: PolicyGuard) -> None:
    """An expired /32 does not shadow the live /24 that contains it (in the
    hash tier every held length is looked up)."""
    pg.apply(deny=plist("198.18.0.0/24"))
    policy.add_entries(pg.maps, "deny", plist(f"{CLIENT4}/32", ttl=1), now_ns=NOW - 5 * 10**9)
    pg.expect(ip("ipv4") / UDP(sport=1, dport=9), XDP_DROP, Reason.DENY)
    pg.apply(deny=plist("198.18.7.0/24"))  # the live /32 is carried, expired: not
    pg.expect(ip("ipv4") / UDP(sport=1, dport=9), XDP_PASS, Reason.PASS_UNPROTECTED)


def test_live_edits_change_the_live_generation(pg: PolicyGuard) -> None:
    pkt = ip("ipv4") / UDP(sport=5000, dport=9999)
    pg.apply(deny=plist("203.0.113.0/24"))
    assert policy.add_entries(pg.maps, "deny", plist(f"{CLIENT4}/32"), now_ns=NOW) == 1
    pg.expect(pkt, XDP_DROP, Reason.DENY)
    entries = {str(e.prefix): e.live for e in policy.list_entries(pg.maps, "deny")}
    assert entries == {"203.0.113.0/24": False, f"{CLIENT4}/32": True}
    # A config apply keeps what was added live.
    pg.apply(deny=plist("203.0.113.0/25"))
    pg.expect(pkt, XDP_DROP, Reason.DENY)
    assert policy.del_entries(pg.maps, "deny", [P(f"{CLIENT4}/32")]) == 1
    pg.expect(pkt, XDP_PASS, Reason.PASS_UNPROTECTED)
    # Deleting what is not there changes nothing, and says what.
    with pytest.raises(Exception, match=r"not in the deny list: 198\.51\.100\.0/24"):
        policy.del_entries(pg.maps, "deny", [P("203.0.113.0/25"), P("198.51.100.0/24")])
    assert [str(e.prefix) for e in policy.list_entries(pg.maps, "deny")] == ["203.0.113.0/25"]


def test_an_apply_switches_generations_and_removes_the_old(pg: PolicyGuard) -> None:
    pg.apply(deny=plist("203.0.113.0/24", "2001:db8::/32"))
    sel0 = policy.selector(pg.maps)
    pg.apply(deny=plist("198.51.100.0/24"))
    sel1 = policy.selector(pg.maps)
    assert sel1.deny_gen == sel0.deny_gen + 1
    assert (sel1.n_deny4, sel1.n_deny6) == (1, 0)
    # Only the new generation is left (in the hash tier: /24 is the common length).
    keys4 = list(pg.maps["xs_deny4h"].keys())
    assert len(keys4) == 1 and struct.unpack_from("=I", keys4[0])[0] == sel1.deny_gen
    assert sel1.tier_lens("deny", 4) == [24]
    for name in ("xs_deny4", "xs_deny6", "xs_deny6h"):
        assert list(pg.maps[name].keys()) == [], name
    # An unchanged table is not rewritten.
    res = pg.apply(deny=plist("198.51.100.0/24"))
    assert res.changed == () and policy.selector(pg.maps) == sel1
    # A record that is not of the live policy (an apply that died after its
    # switch): every table is rewritten.
    pg.previous["gens"] = {**pg.previous["gens"], "deny": sel1.deny_gen - 1}
    res = pg.apply(deny=plist("198.51.100.0/24"))
    assert set(res.changed) == {"allow", "deny", "hygiene", "rules", "limits"}
    assert [str(e.prefix) for e in policy.list_entries(pg.maps, "deny")] == ["198.51.100.0/24"]


def filter_bit(pg: PolicyGuard, which: str, addr: str) -> bool:
    """The filter's bit for ``addr`` (its /24, or its /32's hash), as the data path reads it."""
    a = ipaddress.ip_address(addr)
    n = int(a) >> 8 if a.version == 4 else policy.acl6_n(a.packed)
    return bool(policy.read_acl_filter(pg.maps, which, a.version)[n >> 3] >> (n & 7) & 1)


#: Per family: the client's own prefix, finer than the filter's grain (its
#: bit is set, the lookup decides), two more elsewhere and a wide one; the
#: client's neighbour inside the grain, an address of the wide prefix, one
#: outside all, and the address the last apply keeps.
FILTER_CASES = {
    4: ("198.18.0.0/28", "203.0.113.4/30", "198.51.100.64/26", "10.16.0.0/12",
        "198.18.0.17", "10.20.30.40", "10.32.0.1", "203.0.113.6"),
    6: ("fd00:3::/64", "2001:db8:5::/48", "2001:db8:7:10::/60", "2001:db8::/30",
        "fd00:3:0:1::1", "2001:dbb:ffff::1", "2001:dbc::1", "2001:db8:5::9"),
}  # fmt: skip


@pytest.mark.parametrize("v", [4, 6])
@pytest.mark.parametrize("which", ["allow", "deny"])
def test_the_filter_spares_lookups_and_hides_no_entry(pg: PolicyGuard, which: str, v: int) -> None:
    own, hashed, trie1, wide, neighbour, in_wide, outside, kept = FILTER_CASES[v]
    client = CLIENT4 if v == 4 else CLIENT6
    shape = "ipv4" if v == 4 else "ipv6"

    def pkt(src: str | None = None) -> Packet:
        return ip(shape, src=src) / UDP(sport=5000, dport=9999)

    hit = (XDP_PASS, Reason.ALLOW_PASS) if which == "allow" else (XDP_DROP, Reason.DENY)
    miss = (XDP_PASS, Reason.PASS_UNPROTECTED)
    lists = plist(own, hashed, trie1, wide)
    kw: dict[str, Any] = {which: lists}
    pg.apply(**kw)
    assert policy.selector(pg.maps).acl_filt & policy.acl_filt(which, v)
    assert policy.read_acl_filter(pg.maps, which, v) == bytes(policy.acl_bits(lists, v) or b"")
    assert filter_bit(pg, which, client) and filter_bit(pg, which, in_wide)
    assert not filter_bit(pg, which, outside)
    pg.expect(pkt(), *hit)
    pg.expect(pkt(neighbour), *miss)
    pg.expect(pkt(in_wide), *hit)
    pg.expect(pkt(outside), *miss)
    # The data path reads it: with the bit clear, the entry is not looked up.
    policy._write_acl_filter(pg.maps, which, v, bytes(policy.ACL_FILTER_BYTES))
    pg.expect(pkt(), *miss)
    # A live add sets its bits before its entry is written.
    host = f"{client}/{32 if v == 4 else 128}"
    policy.add_entries(pg.maps, which, plist(host), now_ns=NOW)
    assert filter_bit(pg, which, client)
    pg.expect(pkt(), *hit)
    # A delete leaves the bit (a superset is only a lookup more): still right.
    policy.del_entries(pg.maps, which, [P(host)])
    assert filter_bit(pg, which, client)
    pg.expect(pkt(), *hit)  # the own prefix, whose bit the write above cleared
    # The next apply makes it exact again, without what the list lost.
    kw = {which: plist(kept)}
    pg.apply(**kw)
    assert policy.read_acl_filter(pg.maps, which, v) == bytes(
        policy.acl_bits(plist(kept), v) or b""
    )
    pg.expect(pkt(), *miss)
    pg.expect(pkt(FILTER_CASES[v][7]), *hit)


def sure_bit(pg: PolicyGuard, addr: str) -> bool:
    n = int(ipaddress.ip_address(addr)) >> 8
    return bool(policy.read_deny_sure(pg.maps)[n >> 3] >> (n & 7) & 1)


def test_the_deny_lists_sure_bits_never_outlive_what_they_say(pg: PolicyGuard) -> None:
    """A /24 that permanent deny entries hold whole is denied on its sure
    bit, without a tier lookup; whatever could make that untrue clears the
    bit before it is made: a denied source never passes, an undenied one
    is never dropped."""

    def pkt(src: str) -> Packet:
        return ip("ipv4", src=src) / UDP(sport=5000, dport=9999)

    own = "198.18.0.0/24"  # CLIENT4's
    denied, passed = (XDP_DROP, Reason.DENY), (XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.apply(deny=plist(own, "203.0.113.0/26", "10.0.0.0/16"))
    assert sure_bit(pg, CLIENT4) and sure_bit(pg, "10.0.200.1")
    assert not sure_bit(pg, "203.0.113.9")  # a /26 is not its whole /24
    pg.expect(pkt(CLIENT4), *denied)
    pg.expect(pkt("203.0.113.9"), *denied)
    # The data path reads it: a sure bit denies with no entry to look up.
    filt = bytearray(policy.read_acl_filter(pg.maps, "deny", 4))
    sure = bytearray(policy.read_deny_sure(pg.maps))
    n = int(ipaddress.ip_address(OTHER4)) >> 8
    for b in (filt, sure):
        b[n >> 3] |= 1 << (n & 7)
    policy._write_acl_filter(pg.maps, "deny", 4, filt)
    policy._write_deny_sure(pg.maps, bytes(sure))
    pg.expect(pkt(OTHER4), *denied)
    pg.apply(deny=plist(own, "203.0.113.0/27", "10.0.0.0/16"))  # exact again
    pg.expect(pkt(OTHER4), *passed)
    # A live add with an expiry (it replaces the permanent entry): not sure,
    # still denied by its entry; permanent again: sure again.
    policy.add_entries(pg.maps, "deny", plist(own, ttl=60), now_ns=NOW)
    assert not sure_bit(pg, CLIENT4)
    pg.expect(pkt(CLIENT4), *denied)
    policy.add_entries(pg.maps, "deny", plist(own), now_ns=NOW)
    assert sure_bit(pg, CLIENT4)
    # A longer entry inside a sure /24 leaves it sure only where it was.
    policy.add_entries(pg.maps, "deny", plist("10.0.7.1/32"), now_ns=NOW)
    assert not sure_bit(pg, "10.0.7.9") and sure_bit(pg, "10.0.8.9")
    pg.expect(pkt("10.0.7.9"), *denied)
    # A delete that fails changes nothing; one that succeeds clears first.
    with pytest.raises(ConfigError):
        policy.del_entries(pg.maps, "deny", [P(own), P("198.51.100.0/24")])
    assert sure_bit(pg, CLIENT4)
    policy.del_entries(pg.maps, "deny", [P(own), P("10.0.0.0/16")])
    assert not sure_bit(pg, CLIENT4) and not sure_bit(pg, "10.0.8.9")
    pg.expect(pkt(CLIENT4), *passed)
    pg.expect(pkt("10.0.8.9"), *passed)
    pg.expect(pkt("10.0.7.1"), *denied)
    # An apply that drops a /24 of the config: not sure after it, passed.
    pg.apply(deny=plist(own, "10.1.0.0/24"))
    assert sure_bit(pg, CLIENT4) and sure_bit(pg, "10.1.0.1")
    pg.apply(deny=plist("10.1.0.0/24"))
    assert not sure_bit(pg, CLIENT4)
    pg.expect(pkt(CLIENT4), *passed)
    assert policy.read_deny_sure(pg.maps) == policy.deny_sure(plist("10.1.0.0/24"))


def test_a_wide_ipv6_prefix_turns_its_filter_off(pg: PolicyGuard) -> None:
    """An IPv6 prefix shorter than /16 has too many /32s for the filter:
    that list keeps none (every packet is looked up), the other family
    and list keep theirs; the next apply without it keeps one again."""
    pkt = ip("ipv6") / UDP(sport=5000, dport=9999)
    pg.apply(deny=plist("2001:db8::/32", "198.51.100.0/24"))
    policy.add_entries(pg.maps, "deny", plist("fd00::/8"), now_ns=NOW)
    filt = policy.selector(pg.maps).acl_filt
    assert not filt & policy.acl_filt("deny", 6)
    assert filt & policy.acl_filt("deny", 4) and filt & policy.acl_filt("allow", 6)
    pg.expect(pkt, XDP_DROP, Reason.DENY)  # CLIENT6 is in fd00::/8
    # An apply keeps what was added live: still no filter.
    pg.apply(deny=plist("2001:db8::/32"))
    assert not policy.selector(pg.maps).acl_filt & policy.acl_filt("deny", 6)
    pg.expect(pkt, XDP_DROP, Reason.DENY)
    policy.del_entries(pg.maps, "deny", [P("fd00::/8")])
    pg.apply(deny=plist("2001:db8::/33"))
    assert policy.selector(pg.maps).acl_filt & policy.acl_filt("deny", 6)
    pg.expect(pkt, XDP_PASS, Reason.PASS_UNPROTECTED)
    # A config's own wide prefix: none either.
    pg.apply(deny=plist("fd00::/9"))
    assert not policy.selector(pg.maps).acl_filt & policy.acl_filt("deny", 6)
    pg.expect(pkt, XDP_DROP, Reason.DENY)


def test_the_filter_is_off_until_an_apply_keeps_it(pg: PolicyGuard) -> None:
    """A selector without the filter's bit (what a shield from before it
    has): every entry is looked up, whatever the filter holds."""
    pg.apply(deny=plist(f"{CLIENT4}/32"))
    policy._write_acl_filter(pg.maps, "deny", 4, bytes(policy.ACL_FILTER_BYTES))
    sel = policy.selector(pg.maps)
    policy._write_selector(pg.maps, dataclasses.replace(sel, acl_filt=0))
    pg.expect(ip("ipv4") / UDP(sport=5000, dport=9999), XDP_DROP, Reason.DENY)


# -- hygiene ----------------------------------------------------------------------------
NONSENSE = {"none": "", "syn-fin": "SF", "syn-rst": "SR", "fin-psh-urg": "FPU", "xmas": "FSRPAUEC"}


@shapes
@pytest.mark.parametrize("flags", list(NONSENSE))
def test_tcp_flag_nonsense_is_dropped_on_every_port(
    pg: PolicyGuard, shape: str, flags: str
) -> None:
    for dport in (PORT, 9999):
        pg.expect(ip(shape) / TCP(sport=5000, dport=dport, flags=NONSENSE[flags]), XDP_DROP,
                  Reason.TCP_FLAGS)  # fmt: skip


def test_tcp_flag_hygiene_off_passes_them(pg: PolicyGuard) -> None:
    pg.expect(ip("ipv4") / TCP(sport=5000, dport=9999, flags="A"), XDP_PASS,
              Reason.PASS_UNPROTECTED)  # fmt: skip
    pg.apply(hygiene=Hygiene(tcp_flags=False))
    pg.expect(ip("ipv4") / TCP(sport=5000, dport=9999, flags="SF"), XDP_PASS,
              Reason.PASS_UNPROTECTED)  # fmt: skip


def egress(pg: PolicyGuard, frame: Packet) -> int:
    """One frame through the tc egress program; its tc verdict."""
    return pg.coll.program("xdpshield_tc_egress").run(bytes(frame)).verdict


@shapes
@pytest.mark.parametrize("sport", [53, 123, 11211, 1900])
def test_reflection_passes_only_replies_to_our_requests(
    pg_tc: PolicyGuard, shape: str, sport: int
) -> None:
    pg = pg_tc
    reply = ip(shape) / UDP(sport=sport, dport=40000) / Raw(b"x" * 64)
    pg.expect(reply, XDP_DROP, Reason.REFLECTION)
    # The host asks the peer (egress: from the server to the client's port).
    v = SHAPES[shape][0]
    src, dst = (SERVER4, CLIENT4) if v == 4 else (SERVER6, CLIENT6)
    query = ip(shape, src=src, dst=dst) / UDP(sport=40000, dport=sport) / Raw(b"q")
    assert egress(pg, query) == 0xFFFFFFFF  # TC_ACT_UNSPEC: nothing changed
    pg.expect(reply, XDP_PASS, Reason.PASS_UNPROTECTED)
    # Only that peer, to that local port.
    pg.expect(ip(shape) / UDP(sport=sport, dport=40001), XDP_DROP, Reason.REFLECTION)
    pg.expect(ip(shape, src=other(shape)) / UDP(sport=sport, dport=40000), XDP_DROP,
              Reason.REFLECTION)  # fmt: skip


def test_reflection_hint_is_read_before_the_table(pg_tc: PolicyGuard) -> None:
    """The egress program marks its peer's hint slot (the one Python's
    hint_slot() names); with the slot cleared, a reply the table would
    pass is dropped without a lookup: the hint is read first."""
    pg = pg_tc
    reply = ip("ipv4") / UDP(sport=53, dport=40000)
    query = ip("ipv4", src=SERVER4, dst=CLIENT4) / UDP(sport=40000, dport=53) / Raw(b"q")
    egress(pg, query)
    pg.expect(reply, XDP_PASS, Reason.PASS_UNPROTECTED)
    hints = pg.maps["xs_refl_hint"].typed(UInt(4), UInt(4))
    slot = policy.hint_slot(policy.refl_key(CLIENT4, 53, 40000)[:16])
    live = hints.lookup(slot)
    assert live != 0
    hints.update(slot, 0)
    pg.expect(reply, XDP_DROP, Reason.REFLECTION)
    # A slot once written is held against the clock: past its tick, the
    # reply is dropped without a lookup; back within it, the table passes it.
    hints.update(slot, ((NOW >> policy._HINT_SHIFT) - 2) & 0xFFFFFFFF)
    pg.expect(reply, XDP_DROP, Reason.REFLECTION)
    hints.update(slot, live)
    pg.expect(reply, XDP_PASS, Reason.PASS_UNPROTECTED)


def test_reflection_window_and_switch(pg: PolicyGuard) -> None:
    reply = ip("ipv4") / UDP(sport=53, dport=40000)
    key = policy.refl_key(CLIENT4, 53, 40000)
    policy.note_request(pg.maps, key, NOW)  # expired just now
    pg.expect(reply, XDP_DROP, Reason.REFLECTION)
    policy.note_request(pg.maps, key, NOW + 1)
    pg.expect(reply, XDP_PASS, Reason.PASS_UNPROTECTED)
    # A port not in the list, and the check switched off.
    pg.expect(ip("ipv4") / UDP(sport=5353, dport=1), XDP_DROP, Reason.REFLECTION)
    pg.apply(hygiene=Hygiene(reflection_ports=frozenset({53})))
    pg.expect(ip("ipv4") / UDP(sport=5353, dport=1), XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.apply(hygiene=Hygiene(reflection=False))
    pg.expect(ip("ipv4") / UDP(sport=53, dport=1), XDP_PASS, Reason.PASS_UNPROTECTED)


def frag4(first: bool, ident: int, src: str = CLIENT4, proto: Packet | None = None) -> Packet:
    if first:
        return (
            l2("plain")
            / IP(src=src, dst=SERVER4, id=ident, flags="MF")
            / (proto or UDP(sport=5000, dport=9999) / Raw(b"a" * 32))
        )
    return l2("plain") / IP(src=src, dst=SERVER4, id=ident, frag=5, proto=17) / Raw(b"b" * 32)


def frag6(first: bool, ident: int, tags: str = "plain") -> Packet:
    base = l2(tags) / IPv6(src=CLIENT6, dst=SERVER6)
    if first:
        return base / IPv6ExtHdrFragment(id=ident, m=1, offset=0) / UDP(sport=5000, dport=9999)
    return base / IPv6ExtHdrFragment(id=ident, m=0, offset=5, nh=17) / Raw(b"b" * 32)


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "qinq-ipv6"])
def test_fragments_pass_only_after_their_first(pg: PolicyGuard, family: str) -> None:
    def f(first: bool, ident: int) -> Packet:
        if family == "ipv4":
            return frag4(first, ident)
        return frag6(first, ident, "qinq" if family.startswith("qinq") else "plain")

    pg.expect(f(False, 77), XDP_DROP, Reason.FRAGMENT_UNKNOWN)
    pg.expect(f(True, 77), XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.expect(f(False, 77), XDP_PASS, Reason.PASS_FRAGMENT)
    pg.expect(f(False, 78), XDP_DROP, Reason.FRAGMENT_UNKNOWN)


def test_fragment_hint_is_read_before_the_table(pg: PolicyGuard) -> None:
    hints = pg.maps["xs_frag_hint"].typed(UInt(4), UInt(4))
    before = dict(hints.items())
    pg.expect(frag4(True, 41), XDP_PASS, Reason.PASS_UNPROTECTED)
    marked = [s for s, t in hints.items() if t != before.get(s)]
    assert len(marked) == 1
    pg.expect(frag4(False, 41), XDP_PASS, Reason.PASS_FRAGMENT)
    hints.update(marked[0], 0)
    pg.expect(frag4(False, 41), XDP_DROP, Reason.FRAGMENT_UNKNOWN)


def test_what_the_host_asked_is_carried_into_new_tables(pg: PolicyGuard) -> None:
    """An upgrade that makes new policy tables carries the requests and first
    fragments the running shield remembers (entries and hints): the replies
    and the rest of the datagram still pass in the new ones; nothing else does."""
    reply = ip("ipv4") / UDP(sport=53, dport=40000)
    policy.note_request(pg.maps, policy.refl_key(CLIENT4, 53, 40000), NOW + 10**9)
    policy.note_request(pg.maps, policy.refl_key(OTHER4, 53, 40000), NOW)  # expired
    pg.expect(frag4(True, 41), XDP_PASS, Reason.PASS_UNPROTECTED)
    with load() as coll:
        new = PolicyGuard(coll)
        new.expect(reply, XDP_DROP, Reason.REFLECTION)
        assert policy.carry_remembered(pg.maps, new.maps, now_ns=NOW) == 2
        new.expect(reply, XDP_PASS, Reason.PASS_UNPROTECTED)
        new.expect(frag4(False, 41), XDP_PASS, Reason.PASS_FRAGMENT)
        new.expect(ip("ipv4", src=OTHER4) / UDP(sport=53, dport=40000), XDP_DROP, Reason.REFLECTION)
        new.expect(frag4(False, 42), XDP_DROP, Reason.FRAGMENT_UNKNOWN)


def test_a_dropped_first_fragment_opens_nothing(pg: PolicyGuard) -> None:
    pg.apply(
        rules=(Rule("no-9999", Action.DROP, protocols=frozenset({17}), dports=((9999, 9999),)),)
    )
    pg.expect(frag4(True, 5), XDP_DROP, Reason.RULE_DROP)
    pg.expect(frag4(False, 5), XDP_DROP, Reason.FRAGMENT_UNKNOWN)
    # Fragment hygiene off: non-first fragments pass unjudged, as before it.
    pg.apply(hygiene=Hygiene(fragments=False))
    pg.expect(frag4(False, 6), XDP_PASS, Reason.PASS_FRAGMENT)


def test_the_frag_window_ends(pg: PolicyGuard) -> None:
    pg.expect(frag4(True, 9), XDP_PASS, Reason.PASS_UNPROTECTED)
    frag = pg.maps["xs_frag"]
    (key,) = list(frag.keys())
    frag.update(key, NOW.to_bytes(8, "little"))  # the window closed
    pg.expect(frag4(False, 9), XDP_DROP, Reason.FRAGMENT_UNKNOWN)


@pytest.mark.parametrize(
    ("shape", "pkt", "want"),
    [
        ("ipv4", ICMP(type=8), Reason.PASS_UNPROTECTED),
        ("ipv4", ICMP(type=0), Reason.PASS_UNPROTECTED),
        ("ipv4", ICMP(type=3, code=4), Reason.PASS_UNPROTECTED),  # fragmentation needed
        ("ipv4", ICMP(type=13), Reason.ICMP_TYPE),  # timestamp
        ("ipv4", ICMP(type=5), Reason.ICMP_TYPE),  # redirect
        ("vlan-ipv4", ICMP(type=9), Reason.ICMP_TYPE),  # router advertisement
        ("ipv6", ICMPv6EchoRequest(), Reason.PASS_UNPROTECTED),
        ("ipv6", ICMPv6PacketTooBig(), Reason.PASS_UNPROTECTED),
        ("ipv6-exthdrs", ICMPv6ND_NS(tgt=SERVER6), Reason.PASS_UNPROTECTED),
        ("qinq-ipv6", ICMPv6DestUnreach(), Reason.PASS_UNPROTECTED),
        ("ipv6", Raw(bytes([139, 0, 0, 0, 0, 0, 0, 0])), Reason.ICMP_TYPE),  # node info
    ],
)
def test_icmp_types(pg: PolicyGuard, shape: str, pkt: Packet, want: Reason) -> None:
    frame = ip(shape, nh=58) / pkt if isinstance(pkt, Raw) else ip(shape) / pkt
    pg.expect(frame, XDP_DROP if want == Reason.ICMP_TYPE else XDP_PASS, want)


def test_pmtu_and_neighbour_discovery_pass_whatever_the_lists_say(pg: PolicyGuard) -> None:
    pg.apply(hygiene=Hygiene(icmp_types=frozenset(), icmpv6_types=frozenset()))
    pg.expect(ip("ipv4") / ICMP(type=8), XDP_DROP, Reason.ICMP_TYPE)
    pg.expect(ip("ipv4") / ICMP(type=3, code=4), XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.expect(ip("ipv6") / ICMPv6PacketTooBig(), XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.expect(ip("ipv6") / ICMPv6ND_NS(tgt=SERVER6), XDP_PASS, Reason.PASS_UNPROTECTED)
    # Said explicitly: path MTU messages may be dropped too; ND never.
    pg.apply(hygiene=Hygiene(icmp_types=frozenset(), icmpv6_types=frozenset(), icmp_pmtu=False))
    pg.expect(ip("ipv4") / ICMP(type=3, code=4), XDP_DROP, Reason.ICMP_TYPE)
    pg.expect(ip("ipv6") / ICMPv6PacketTooBig(), XDP_DROP, Reason.ICMP_TYPE)
    pg.expect(ip("ipv6") / ICMPv6ND_NS(tgt=SERVER6), XDP_PASS, Reason.PASS_UNPROTECTED)


@shapes
def test_other_protocols_pass_or_drop_by_number(pg: PolicyGuard, shape: str) -> None:
    gre = ip(shape) / GRE() / Raw(b"z" * 20)
    pg.expect(gre, XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.apply(hygiene=Hygiene(protocols_drop=frozenset({47, 132})))
    pg.expect(gre, XDP_DROP, Reason.PROTOCOL)
    pg.expect(ip(shape) / UDP(sport=5000, dport=9999), XDP_PASS, Reason.PASS_UNPROTECTED)


# -- rules ------------------------------------------------------------------------------
def R(name: str, action: str = "drop", **kw: Any) -> Rule:
    if "sources" in kw:
        kw["sources"] = tuple(P(s) for s in kw["sources"])
    for k in ("protocols", "sports"):
        if k in kw:
            kw[k] = frozenset(kw[k])
    return Rule(name, Action(action), **kw)


@shapes
def test_rules_first_match_decides_and_counts(pg: PolicyGuard, shape: str) -> None:
    pg.apply(
        rules=(
            R("ssh-office", "pass", protocols={6}, dports=((22, 22),), sources=(net_of(shape),)),
            R("no-ssh", protocols={6}, dports=((22, 22),)),
            R("no-memcached", protocols={17}, dports=((11211, 11211),)),
            R("games", "pass", protocols={17}, dports=((27000, 27015),)),
            R("no-high-udp", protocols={17}, dports=((20000, 65535),)),
        )
    )
    pg.expect(ip(shape) / TCP(sport=5000, dport=22, flags="S"), XDP_PASS, Reason.RULE_PASS)
    pg.expect(ip(shape, src=other(shape)) / TCP(sport=5000, dport=22, flags="S"), XDP_DROP,
              Reason.RULE_DROP)  # fmt: skip
    pg.expect(ip(shape) / UDP(sport=5000, dport=11211), XDP_DROP, Reason.RULE_DROP)
    pg.expect(ip(shape) / UDP(sport=5000, dport=27005), XDP_PASS, Reason.RULE_PASS)
    pg.expect(ip(shape) / UDP(sport=5000, dport=30000), XDP_DROP, Reason.RULE_DROP)
    pg.expect(ip(shape) / UDP(sport=5000, dport=19999), XDP_PASS, Reason.PASS_UNPROTECTED)
    assert [pg.rule_packets(n) for n in ("ssh-office", "no-ssh", "no-memcached", "games",
                                         "no-high-udp")] == [1, 1, 1, 1, 1]  # fmt: skip


def test_a_pass_rule_skips_the_guard(pg: PolicyGuard) -> None:
    syn = ip("ipv4") / TCP(sport=5000, dport=PORT, flags="S")
    pg.expect(syn, XDP_TX, Reason.SYN_COOKIE_SENT)
    pg.apply(rules=(R("web-monitor", "pass", protocols={6}, sources=(f"{CLIENT4}/32",)),))
    pg.expect(syn, XDP_PASS, Reason.RULE_PASS)


@pytest.mark.parametrize(
    ("rule", "hits", "misses"),
    [
        (
            R("dns-src", protocols={17}, sports={53, 123}),
            [UDP(sport=53, dport=9), UDP(sport=123, dport=9)],
            [UDP(sport=54, dport=9)],
        ),
        (
            R("syn-only", protocols={6}, dports=((8080, 8080),), tcp_flags=(0x12, 0x02)),
            [TCP(sport=1, dport=8080, flags="S")],
            [TCP(sport=1, dport=8080, flags="A"), TCP(sport=1, dport=8081, flags="S")],
        ),
        (
            R("unreach-port", protocols={1}, icmp_type=3, icmp_code=3),
            [ICMP(type=3, code=3)],
            [ICMP(type=3, code=4), ICMP(type=8)],
        ),
        (
            R("echo", protocols={1}, icmp_type=8),
            [ICMP(type=8, code=0)],
            [ICMP(type=0)],
        ),
    ],
)
def test_rule_fields(pg: PolicyGuard, rule: Rule, hits: list[Packet], misses: list[Packet]) -> None:
    pg.apply(hygiene=Hygiene(reflection=False), rules=(rule,))
    for h in hits:
        pg.expect(ip("vlan-ipv4") / h, XDP_DROP, Reason.RULE_DROP)
    for m in misses:
        ran = pg.run(ip("vlan-ipv4") / m)
        assert ran.reason != Reason.RULE_DROP, m.summary()
    assert pg.rule_packets(rule.name) == len(hits)


def test_rules_on_other_protocols_and_icmpv6(pg: PolicyGuard) -> None:
    pg.apply(
        rules=(
            R("no-gre", protocols={47}),
            R("no-v6-echo", protocols={58}, icmp_type=128),
        )
    )
    pg.expect(ip("ipv4") / GRE(), XDP_DROP, Reason.RULE_DROP)
    pg.expect(ip("ipv6-exthdrs") / ICMPv6EchoRequest(), XDP_DROP, Reason.RULE_DROP)
    pg.expect(ip("ipv6") / ICMPv6PacketTooBig(), XDP_PASS, Reason.PASS_UNPROTECTED)


def test_counters_of_unchanged_rules_survive_an_apply(pg: PolicyGuard) -> None:
    keep = R("keep", protocols={17}, dports=((1000, 1000),))
    change = R("change", protocols={17}, dports=((2000, 2000),))
    pg.apply(rules=(keep, change))
    pg.expect(ip("ipv4") / UDP(sport=9, dport=1000), XDP_DROP, Reason.RULE_DROP)
    pg.expect(ip("ipv4") / UDP(sport=9, dport=2000), XDP_DROP, Reason.RULE_DROP)
    pg.apply(
        rules=(keep, R("change", protocols={17}, dports=((2001, 2001),)), R("new", protocols={6}))
    )
    assert pg.rule_packets("keep") == 1
    assert pg.rule_packets("change") == 0 and pg.rule_packets("new") == 0
    pg.expect(ip("ipv4") / UDP(sport=9, dport=2000), XDP_PASS, Reason.PASS_UNPROTECTED)
    pg.expect(ip("ipv4") / UDP(sport=9, dport=2001), XDP_DROP, Reason.RULE_DROP)
    # No rule left: the stage is skipped, and the old entries are gone.
    pg.apply(rules=())
    pg.expect(ip("ipv4") / UDP(sport=9, dport=1000), XDP_PASS, Reason.PASS_UNPROTECTED)
    assert list(pg.maps["xs_rules"].keys()) == list(pg.maps["xs_rules_h"].keys()) == []
    # A new rule on a used id starts from zero: its counter was reset.
    pg.apply(rules=(R("again", protocols={17}, dports=((3000, 3000),)),))
    assert pg.previous["rule_ids"]["again"][0] in {0, 1, 2}
    assert pg.rule_packets("again") == 0


def test_ten_thousand_rules(pg: PolicyGuard) -> None:
    rules = tuple(
        R(f"r{i}", protocols={17}, dports=((10000 + i, 10000 + i),),
          sources=(f"198.18.{i % 250}.0/24",))
        for i in range(10_000)
    )  # fmt: skip
    res = pg.apply(rules=rules)
    assert "rules" in res.changed
    pg.expect(ip("ipv4", src="198.18.17.5") / UDP(sport=1, dport=10017), XDP_DROP, Reason.RULE_DROP)
    pg.expect(ip("ipv4", src="198.18.18.5") / UDP(sport=1, dport=10017), XDP_PASS,
              Reason.PASS_UNPROTECTED)  # fmt: skip
    assert pg.rule_packets("r17") == 1


def test_expired_entries_are_aged_out(pg: PolicyGuard) -> None:
    """The daemon's duty: entries whose ttl ran out leave the trie (an expired
    prefix would hide a shorter live one containing it)."""
    pg.apply(deny=plist("198.18.0.0/16"))
    policy.add_entries(pg.maps, "deny", plist(f"{CLIENT4}/32", ttl=5), now_ns=NOW - 10 * 10**9)
    policy.add_entries(pg.maps, "deny", plist("203.0.113.0/24", ttl=60), now_ns=NOW)
    assert policy.selector(pg.maps).n_ttl == 2
    assert policy.age_lists(pg.maps, now_ns=NOW) == 1
    assert [str(e.prefix) for e in policy.list_entries(pg.maps, "deny")] == [
        "198.18.0.0/16",
        "203.0.113.0/24",
    ]
    sel = policy.selector(pg.maps)
    assert (sel.n_deny4, sel.n_ttl) == (2, 1)
    pg.expect(ip("ipv4") / UDP(sport=5000, dport=9999), XDP_DROP, Reason.DENY)
    # Nothing with a ttl left: ageing reads nothing.
    assert policy.age_lists(pg.maps, now_ns=NOW + 61 * 10**9) == 1
    assert policy.selector(pg.maps).n_ttl == 0


def test_rules_nested_sources_across_the_hash_tier_and_the_trie(pg: PolicyGuard) -> None:
    """Eight source lengths in one class: the four most common are hashed,
    the others in the trie, and the longest entry holding the source wins
    wherever it is (the compiler gave it every rule of its ancestors)."""
    udp9: dict[str, Any] = {"protocols": {17}, "dports": ((9, 9),)}
    pg.apply(
        rules=(
            R("a", "pass", sources=("198.18.5.0/28",), **udp9),
            R("b", sources=("198.18.5.0/24",), **udp9),
            R("c", "pass", sources=("198.18.0.0/20",), **udp9),
            R("d", sources=("198.18.0.0/16",), **udp9),
            R("e", "pass", sources=("198.16.0.0/12",), **udp9),
            R("f", sources=("198.0.0.0/8",), **udp9),
            R("g", "pass", sources=("10.0.0.0/8",), **udp9),
            R("h", **udp9),
        )
    )
    sel = policy.selector(pg.maps)
    assert sel.lpm_rules > 0 and _rule_tiers_full(sel)
    for src, rule in [
        ("198.18.5.1", "a"),
        ("198.18.5.100", "b"),
        ("198.18.3.1", "c"),
        ("198.18.100.1", "d"),  # the trie's /16 beats the hashed /8
        ("198.17.1.1", "e"),
        ("198.100.1.1", "f"),
        ("10.1.1.1", "g"),
        ("11.1.1.1", "h"),
    ]:
        before = pg.rule_packets(rule)
        ran = pg.run(ip("ipv4", src=src) / UDP(sport=1, dport=9))
        want = Reason.RULE_PASS if rule in "aceg" else Reason.RULE_DROP
        assert ran.reason == want, (src, rule, ran.reason)
        assert pg.rule_packets(rule) == before + 1, (src, rule)


def _rule_tiers_full(sel: policy.Selector) -> bool:
    """Every hash-tier slot of the rules is taken."""
    return 0xFF not in sel.rule_tiers
