"""The rule compiler: its tables, read the way the data path reads them,
pick the same rule as reading every rule in order."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Sequence
from typing import Any, TypedDict
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xdpshield.policy.rules as rules_module
from xdpshield.errors import ConfigError
from xdpshield.policy.model import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_FLAGS,
    Action,
    Prefix,
    Rule,
)
from xdpshield.policy.rules import (
    CANDS,
    RULES_MAX,
    SLOT_ICMP,
    SLOT_ICMPV6,
    SLOT_OTHER,
    SLOT_TCP,
    SLOT_UDP,
    SPORTSETS_MAX,
    Candidate,
    CompiledRules,
    compile_rules,
    fingerprint,
    first_match,
)

SYN, ACK = TCP_FLAGS["SYN"], TCP_FLAGS["ACK"]
GRE = 47


def pfx(text: str) -> Prefix:
    net = ipaddress.ip_network(text)
    return Prefix(net.version, net.network_address.packed, net.prefixlen)


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def rule(name: str, action: str = "drop", *, src: Sequence[str] = (), **kw: Any) -> Rule:
    return Rule(name, Action(action), sources=tuple(pfx(s) for s in src), **kw)


class Ports(TypedDict):
    protocols: frozenset[int]
    dports: tuple[tuple[int, int], ...]


def udp(*ports: int) -> Ports:
    return Ports(protocols=frozenset({PROTO_UDP}), dports=tuple((p, p) for p in ports))


def tcp(*ports: int) -> Ports:
    return Ports(protocols=frozenset({PROTO_TCP}), dports=tuple((p, p) for p in ports))


def named(compiled: CompiledRules, cand: Candidate | None) -> str | None:
    if cand is None:
        return None
    return {rid: name for name, (rid, _) in compiled.ids.items()}[cand.rule_id]


def who(
    compiled: CompiledRules,
    proto: int,
    src: str,
    port: int = 0,
    sport: int = 1024,
    flags: int = 0,
    code: int = 0,
) -> str | None:
    """The name of the rule the tables pick (None: no rule)."""
    return named(compiled, compiled.match(proto, ip(src), port, sport, flags, code))


Packet = tuple[int, bytes, int, int, int, int]


def agree(rules: Sequence[Rule], compiled: CompiledRules, packet: Packet) -> str | None:
    """Both evaluations of one packet; they must pick the same rule."""
    got = named(compiled, compiled.match(*packet))
    want = first_match(rules, *packet)
    assert got == (want.name if want else None), packet
    return got


# --- tables, case by case -------------------------------------------------


def test_overlapping_prefixes_longest_first_then_rule_order() -> None:
    rules = [
        rule("ntp-from-lab", "pass", src=["10.1.0.0/16"], sports=frozenset({123}), **udp(53)),
        rule("dns-from-ten", src=["10.0.0.0/8"], **udp(53)),
        rule("host", "pass", src=["10.1.2.3/32"], **udp(53)),
    ]
    c = compile_rules(rules)
    assert who(c, PROTO_UDP, "10.1.9.9", 53, sport=123) == "ntp-from-lab"
    assert who(c, PROTO_UDP, "10.1.9.9", 53, sport=5) == "dns-from-ten"
    assert who(c, PROTO_UDP, "10.2.0.1", 53, sport=123) == "dns-from-ten"
    # The /32 is longest, but the /8 rule comes first and needs no check.
    assert who(c, PROTO_UDP, "10.1.2.3", 53, sport=5) == "dns-from-ten"
    assert who(c, PROTO_UDP, "11.0.0.1", 53) is None
    assert who(c, PROTO_UDP, "10.1.9.9", 54) is None
    cls = c.port_classes[SLOT_UDP][53]
    by_prefix = {str(p): len(cands) for k, p, cands in c.entries if k == cls}
    # The /32's list ends at the /8 rule: "host" can never decide.
    assert by_prefix == {
        "::ffff:10.0.0.0/104": 1,
        "::ffff:10.1.0.0/112": 2,
        "::ffff:10.1.2.3/128": 2,
    }


def test_ipv4_and_ipv6_sources_stay_apart() -> None:
    rules = [
        rule("v6-doc", src=["2001:db8::/32"], **tcp(22)),
        rule("v4-ten", src=["10.0.0.0/8"], **tcp(22)),
        rule("v6-all", "pass", src=["::/0"], **tcp(22)),
        rule("v4-all", src=["0.0.0.0/0"], **tcp(80)),
        rule("anyone", "pass", **tcp(443)),
    ]
    c = compile_rules(rules)
    assert who(c, PROTO_TCP, "2001:db8::1", 22) == "v6-doc"
    assert who(c, PROTO_TCP, "10.0.0.1", 22) == "v4-ten"
    assert who(c, PROTO_TCP, "2001:db9::1", 22) == "v6-all"
    # ::/0 written as a source is every IPv6 address, no IPv4 one: the IPv4
    # block is stored as a hole under it.
    assert who(c, PROTO_TCP, "192.0.2.1", 22) is None
    assert who(c, PROTO_TCP, "192.0.2.1", 80) == "v4-all"
    assert who(c, PROTO_TCP, "2001:db8::1", 80) is None
    assert who(c, PROTO_TCP, "192.0.2.1", 443) == "anyone"
    assert who(c, PROTO_TCP, "2001:db8::1", 443) == "anyone"
    # An IPv4 address given as 16 mapped bytes is the same address.
    assert who(c, PROTO_TCP, "::ffff:10.0.0.1", 22) == "v4-ten"
    hole = [cands for _, p, cands in c.entries if str(p) == "::ffff:0.0.0.0/96"]
    assert () in hole


def test_ipv6_source_inside_the_mapped_block_matches_nothing() -> None:
    # IPv6 packets from ::ffff:0:0/96 are martians, dropped before the rules.
    rules = [rule("mapped", src=["::ffff:10.0.0.0/104"], **udp(53)), rule("later", **udp(53))]
    c = compile_rules(rules)
    assert who(c, PROTO_UDP, "10.0.0.1", 53) == "later"
    assert first_match(rules, PROTO_UDP, ip("10.0.0.1"), 53, 0, 0, 0) == rules[1]


def test_wildcard_rule_catches_what_the_prefixes_miss() -> None:
    rules = [
        rule("lab", "pass", src=["10.1.0.0/16", "2001:db8::/32"], **udp(5000)),
        rule("rest", **udp(5000)),
    ]
    c = compile_rules(rules)
    assert who(c, PROTO_UDP, "10.1.0.1", 5000) == "lab"
    assert who(c, PROTO_UDP, "2001:db8::7", 5000) == "lab"
    assert who(c, PROTO_UDP, "10.2.0.1", 5000) == "rest"
    assert who(c, PROTO_UDP, "2001:db9::7", 5000) == "rest"
    cls = c.port_classes[SLOT_UDP][5000]
    assert sorted(p.plen for k, p, _ in c.entries if k == cls) == [0, 32, 112]


def test_port_ranges_split_into_classes() -> None:
    rules = [
        rule("a", protocols=frozenset({PROTO_TCP}), dports=((1000, 2000),)),
        rule("b", protocols=frozenset({PROTO_TCP}), dports=((1500, 2500), (3000, 3000))),
    ]
    c = compile_rules(rules)
    tcp_cls = c.port_classes[SLOT_TCP]
    assert tcp_cls[999] == tcp_cls[2501] == tcp_cls[2999] == tcp_cls[3001] == 0
    assert tcp_cls[1000] == tcp_cls[1499] != 0
    assert tcp_cls[1500] == tcp_cls[2000] not in (0, tcp_cls[1000])
    assert tcp_cls[2001] == tcp_cls[2500] == tcp_cls[3000] not in (0, tcp_cls[1000], tcp_cls[1500])
    assert not any(c.port_classes[SLOT_UDP])
    assert who(c, PROTO_TCP, "10.0.0.1", 1700) == "a"
    assert who(c, PROTO_TCP, "10.0.0.1", 2200) == "b"
    assert who(c, PROTO_UDP, "10.0.0.1", 1700) is None
    assert len(c.port_classes) == 5
    assert all(a.typecode == "H" and len(a) == 65536 for a in c.port_classes)
    assert c.sport_masks.typecode == "I" and len(c.sport_masks) == 65536


def test_any_protocol_rule_reaches_every_slot_with_one_class() -> None:
    rules = [rule("block", src=["198.51.100.0/24"])]
    c = compile_rules(rules)
    ids = {c.port_classes[SLOT_TCP][80], c.port_classes[SLOT_UDP][0]}
    ids |= {c.port_classes[SLOT_ICMP][8], c.port_classes[SLOT_ICMPV6][128]}
    ids |= {c.port_classes[SLOT_OTHER][GRE]}
    assert len(ids) == 1 and 0 not in ids
    assert c.port_classes[SLOT_ICMP][256] == 0  # only 0..255 used
    for proto in (PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, GRE):
        assert who(c, proto, "198.51.100.7", 8) == "block"
        assert who(c, proto, "198.51.101.7", 8) is None
    assert len(c.entries) == 1


def test_other_protocols_by_number() -> None:
    rules = [rule("gre", protocols=frozenset({GRE, PROTO_UDP})), rule("rest", "pass")]
    c = compile_rules(rules)
    assert who(c, GRE, "10.0.0.1") == "gre"
    assert who(c, PROTO_UDP, "10.0.0.1", 9) == "gre"
    assert who(c, 50, "10.0.0.1") == "rest"
    assert who(c, PROTO_TCP, "10.0.0.1", 9) == "rest"


def test_sport_sets_share_bits() -> None:
    dns = frozenset({53, 5353})
    rules = [
        rule("a", sports=dns, **udp(1000)),
        rule("b", sports=dns, **udp(2000)),
        rule("c", sports=frozenset({123}), **udp(2000)),
    ]
    c = compile_rules(rules)
    (ca,) = next(cands for k, _, cands in c.entries if k == c.port_classes[SLOT_UDP][1000])
    assert ca.sportset is not None
    assert c.sport_masks[53] == c.sport_masks[5353] == 1 << ca.sportset
    assert c.sport_masks[123] and c.sport_masks[123] != c.sport_masks[53]
    assert c.sport_masks[54] == 0
    assert who(c, PROTO_UDP, "10.0.0.1", 2000, sport=5353) == "b"
    assert who(c, PROTO_UDP, "10.0.0.1", 2000, sport=123) == "c"
    assert who(c, PROTO_UDP, "10.0.0.1", 2000, sport=124) is None


def test_more_sport_sets_than_bits_is_an_error() -> None:
    rules = [rule(f"r{i}", sports=frozenset({i}), **udp(i)) for i in range(SPORTSETS_MAX + 1)]
    with pytest.raises(ConfigError, match=f"more than {SPORTSETS_MAX} distinct source port"):
        compile_rules(rules)
    compile_rules(rules[:-1])


def test_tcp_flags() -> None:
    rules = [
        rule("syn", tcp_flags=(SYN | ACK, SYN), **tcp(80)),
        rule("any-flags", "pass", tcp_flags=(0, 0), **tcp(80)),
    ]
    c = compile_rules(rules)
    assert who(c, PROTO_TCP, "10.0.0.1", 80, flags=SYN) == "syn"
    assert who(c, PROTO_TCP, "10.0.0.1", 80, flags=SYN | ACK) == "any-flags"
    # A zero mask always holds: no per-packet check.
    assert c.match(PROTO_TCP, ip("10.0.0.1"), 80, 0, ACK, 0) == next(
        cands[1] for _, _, cands in c.entries
    )
    assert next(cands[1] for _, _, cands in c.entries).tcp_flags is None


def test_flags_on_an_any_protocol_rule_mean_tcp() -> None:
    rules = [rule("syn-anywhere", tcp_flags=(SYN | ACK, SYN))]
    c = compile_rules(rules)
    assert who(c, PROTO_TCP, "10.0.0.1", 1, flags=SYN) == "syn-anywhere"
    assert who(c, PROTO_UDP, "10.0.0.1", 1, flags=SYN) is None
    assert not any(c.port_classes[SLOT_UDP])


def test_icmp_type_and_code() -> None:
    rules = [
        rule("frag-needed", "pass", icmp_type=3, icmp_code=4),
        rule("unreach", protocols=frozenset({PROTO_ICMP}), icmp_type=3),
        rule("echo6", protocols=frozenset({PROTO_ICMPV6}), icmp_type=128),
        rule("code1", icmp_code=1),
    ]
    c = compile_rules(rules)
    assert who(c, PROTO_ICMP, "10.0.0.1", 3, code=4) == "frag-needed"
    assert who(c, PROTO_ICMP, "10.0.0.1", 3, code=1) == "unreach"
    assert who(c, PROTO_ICMPV6, "2001:db8::1", 3, code=4) == "frag-needed"
    assert who(c, PROTO_ICMPV6, "2001:db8::1", 3, code=1) == "code1"
    assert who(c, PROTO_ICMPV6, "2001:db8::1", 128, code=0) == "echo6"
    assert who(c, PROTO_ICMP, "10.0.0.1", 128, code=0) is None
    assert who(c, PROTO_TCP, "10.0.0.1", 3, code=4) is None
    assert not any(c.port_classes[SLOT_TCP]) and not any(c.port_classes[SLOT_OTHER])


def test_first_match_wins() -> None:
    rules = [
        rule("pass-ten", "pass", src=["10.0.0.0/8"], **udp(53)),
        rule("drop-lab", src=["10.1.0.0/16"], **udp(53)),
    ]
    c = compile_rules(rules)
    assert who(c, PROTO_UDP, "10.1.0.1", 53) == "pass-ten"
    cand = c.match(PROTO_UDP, ip("10.1.0.1"), 53, 0, 0, 0)
    assert cand is not None and cand.action is Action.PASS
    assert all(len(cands) == 1 for _, _, cands in c.entries)


def test_rules_after_an_unconditional_one_are_cut() -> None:
    # Five conditional rules would overflow, but "all" decides first.
    rules = [rule("all", "pass", **udp(53))]
    rules += [
        rule(f"c{i}", src=["10.1.0.0/16"], sports=frozenset({i}), **udp(53)) for i in range(6)
    ]
    c = compile_rules(rules)
    assert {len(cands) for _, _, cands in c.entries} == {1}
    assert who(c, PROTO_UDP, "10.1.0.1", 53, sport=3) == "all"


def test_too_many_overlapping_conditional_rules_name_them() -> None:
    rules = [
        rule(name, src=["10.0.0.0/8"], sports=frozenset({i}), **udp(53))
        for i, name in enumerate("abcde")
    ]
    with pytest.raises(ConfigError) as err:
        compile_rules(rules)
    text = str(err.value)
    assert "rules a, b, c, d, e may all match udp dport 53 from 10.0.0.0/8" in text
    assert f"at most {CANDS} can overlap" in text
    compile_rules(rules[:CANDS])
    # Five are fine when one before the fifth needs no check: it ends the list.
    plain = rule("plain", src=["10.0.0.0/8"], **udp(53))
    compiled = compile_rules([*rules[: CANDS - 1], plain, rules[-1]])
    assert [len(cands) for _, _, cands in compiled.entries] == [CANDS]


def test_overlap_through_nested_prefixes_and_wildcards() -> None:
    rules = [
        rule("w1", sports=frozenset({1}), protocols=frozenset({PROTO_UDP})),
        rule("w2", sports=frozenset({2}), protocols=frozenset({PROTO_UDP})),
        rule("n8", src=["10.0.0.0/8"], sports=frozenset({3}), **udp(7)),
        rule("n16", src=["10.1.0.0/16"], sports=frozenset({4}), **udp(7)),
        rule("n24", src=["10.1.2.0/24"], sports=frozenset({5}), **udp(7)),
    ]
    with pytest.raises(
        ConfigError, match=r"rules w1, w2, n8, n16, n24 .* udp dport 7 from 10\.1\.2\.0/24"
    ):
        compile_rules(rules)


def test_overlap_among_wide_rules_is_found_beside_a_narrow_one() -> None:
    # Every UDP class holds the five wide rules and one of two narrow rules
    # (low ports, high ports) from elsewhere: the wide rules' shared entry
    # for 10.0.0.0/8 still overflows in each.
    udp_any = frozenset({PROTO_UDP})
    wide = [
        rule(f"w{i}", src=["10.0.0.0/8"], sports=frozenset({i}), protocols=udp_any)
        for i in range(5)
    ]
    low = rule("low", src=["192.0.2.0/24"], protocols=udp_any, dports=((0, 1023),))
    high = rule("high", src=["192.0.2.0/24"], protocols=udp_any, dports=((1024, 65535),))
    with pytest.raises(
        ConfigError, match="rules w0, w1, w2, w3, w4 may all match udp dport 0-1023"
    ):
        compile_rules([*wide, low, high])
    # An unconditional narrow rule before them cuts the list: no error.
    first = rule("first", src=["10.0.0.0/8"], protocols=udp_any, dports=((0, 1023),))
    then = rule("then", src=["10.0.0.0/8"], protocols=udp_any, dports=((1024, 65535),))
    c = compile_rules([first, then, *wide])
    assert who(c, PROTO_UDP, "10.9.9.9", 80, sport=1) == "first"
    assert who(c, PROTO_UDP, "10.9.9.9", 2000, sport=1) == "then"
    assert who(c, PROTO_UDP, "11.9.9.9", 2000, sport=1) is None


def test_contradictory_rules_are_refused() -> None:
    with pytest.raises(ConfigError, match="protocol 6 lacks a field"):
        compile_rules([rule("x", protocols=frozenset({PROTO_TCP}), icmp_type=8)])
    with pytest.raises(ConfigError, match="can match no packet"):
        compile_rules([rule("x", tcp_flags=(SYN, SYN), icmp_type=8)])
    with pytest.raises(ConfigError, match="two rules are named 'x'"):
        compile_rules([rule("x"), rule("x", "pass")])
    with pytest.raises(ConfigError, match="can never match"):
        compile_rules([rule("x", tcp_flags=(SYN, ACK))])
    with pytest.raises(ConfigError, match="port range"):
        compile_rules([rule("x", dports=((10, 5),))])


def test_too_many_rules() -> None:
    many = [rule(f"r{i}") for i in range(RULES_MAX + 1)]
    with pytest.raises(ConfigError, match=f"at most {RULES_MAX}"):
        compile_rules(many)


def test_too_many_classes() -> None:
    # Sixteen rules, each on the ports with one bit set: every port of the
    # slot its own class; one more rule for UDP alone makes one too many.
    def bit(k: int) -> tuple[tuple[int, int], ...]:
        step = 1 << k
        return tuple((lo, lo + step - 1) for lo in range(step, 65536, 2 * step))

    both = frozenset({PROTO_TCP, PROTO_UDP})
    rules = [rule(f"bit{k}", protocols=both, dports=bit(k)) for k in range(16)]
    c = compile_rules(rules)
    assert max(c.port_classes[SLOT_TCP]) == 65535
    assert c.port_classes[SLOT_UDP] == c.port_classes[SLOT_TCP]
    with pytest.raises(ConfigError, match="more than 65535 classes"):
        compile_rules([*rules, rule("zero", **udp(0))])


# --- counter ids ------------------------------------------------------------


def test_ids_survive_unchanged_rules_only() -> None:
    a, b, c = rule("a", **udp(1)), rule("b", **udp(2)), rule("c", **udp(3))
    first = compile_rules([a, b, c])
    assert [first.ids[n][0] for n in "abc"] == [0, 1, 2]
    assert first.ids["a"][1] == fingerprint(a)

    b2 = rule("b", "pass", **udp(2))  # changed
    d = rule("d", **udp(4))  # new
    moved = Rule("c", c.action, c.protocols, c.sources, c.dports, origin="other.toml:9")
    second = compile_rules([a, b2, moved, d], previous=first.ids)
    assert second.ids["a"] == first.ids["a"]
    assert second.ids["c"] == first.ids["c"]  # only the origin differs
    live = {rid for rid, _ in first.ids.values()}
    assert second.ids["b"][0] not in live and second.ids["d"][0] not in live
    assert (second.ids["b"][0], second.ids["d"][0]) == (3, 4)  # lowest free first

    # "b"'s old id 1 is free once the policy that used it is gone.
    third = compile_rules([a, b2, moved, d, rule("e", **udp(5))], previous=second.ids)
    assert third.ids["e"][0] == 1
    assert {n: third.ids[n] for n in "abcd"} == second.ids


def test_ids_run_out() -> None:
    live = {f"old{i}": (i, "x") for i in range(RULES_MAX - 1)}
    compile_rules([rule("new")], previous=live)
    with pytest.raises(ConfigError, match="smaller steps"):
        compile_rules([rule("new"), rule("newer")], previous=live)


def test_fingerprint_is_canonical() -> None:
    one = rule("x", src=["10.0.0.0/8", "2001:db8::/32"], dports=((5, 9), (1, 4)))
    two = rule("y", src=["2001:db8::/32", "10.0.0.0/8"], dports=((1, 9),))
    assert fingerprint(one) == fingerprint(two)
    assert fingerprint(one) != fingerprint(rule("x", src=["10.0.0.0/8"], dports=((1, 9),)))


# --- the property: tables and the linear reference agree ------------------

PREFIXES = [
    "0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "192.0.2.0/24",
    "::/0", "::/1", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::1/128", "::ffff:0:0/96",
    "::ffff:10.0.0.0/104", "64:ff9b::/96",
]  # fmt: skip
ADDRESSES = [ip(a) for a in (
    "10.1.2.3", "10.1.2.4", "10.1.3.1", "10.2.0.1", "192.0.2.9", "8.8.8.8",
    "2001:db8:1::1", "2001:db8:1::2", "2001:db8:2::1", "2001:db9::1", "64:ff9b::a01:203",
    "fe80::1", "::ffff:10.1.2.3",
)]  # fmt: skip
BOUNDS = [0, 1, 52, 53, 54, 80, 443, 1000, 65535]
SPORTS = [53, 123, 1000]
FLAGS = [(SYN | ACK, SYN), (ACK, ACK), (0x3F, SYN), (0, 0)]
PROTOS = [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, GRE]


@st.composite
def rules_strategy(draw: st.DrawFn) -> list[Rule]:
    out = []
    # A dense list: few protocols and prefixes and mostly conditions, so that
    # rules overlap (and sometimes overflow an entry).
    dense = draw(st.integers(0, 2)) == 0
    cond = st.integers(0, 3).map(bool) if dense else st.integers(0, 2).map(lambda v: v == 0)
    pool = [*PREFIXES[1:3], "::/0"] if dense else PREFIXES
    for n in range(draw(st.integers(6 if dense else 1, 10))):
        protocols = [PROTO_TCP, PROTO_UDP] if dense else PROTOS
        protos = frozenset(draw(st.lists(st.sampled_from(protocols), max_size=2)))
        # The fields the protocols allow; no protocol: one family of fields.
        if protos:
            ports = protos <= {PROTO_TCP, PROTO_UDP}
            flags = protos == {PROTO_TCP}
            icmp = protos <= {PROTO_ICMP, PROTO_ICMPV6}
        else:
            family = draw(st.sampled_from(["none", "ports", "tcp", "icmp"]))
            ports, flags, icmp = family in ("ports", "tcp"), family == "tcp", family == "icmp"
        maybe = st.booleans()
        dports: tuple[tuple[int, int], ...] = ()
        if ports and not dense and draw(maybe):
            pairs = draw(st.lists(st.tuples(st.sampled_from(BOUNDS), st.sampled_from(BOUNDS)),
                                  min_size=1, max_size=2))  # fmt: skip
            dports = tuple((min(p), max(p)) for p in pairs)
        sports: frozenset[int] = frozenset()
        if ports and draw(cond):
            sports = frozenset(draw(st.lists(st.sampled_from(SPORTS), min_size=1)))
        tcp_flags = draw(st.sampled_from(FLAGS)) if flags and draw(cond) else None
        icmp_type = draw(st.sampled_from([0, 3, 8, 128])) if icmp and draw(maybe) else None
        icmp_code = None
        if icmp and draw(cond):
            icmp_code = draw(st.sampled_from([0, 1, 4]))
        sources = draw(st.lists(st.sampled_from(pool), max_size=3))
        out.append(
            rule(
                f"r{n}",
                draw(st.sampled_from(["drop", "pass"])),
                src=sources,
                protocols=protos,
                dports=dports,
                sports=sports,
                tcp_flags=tcp_flags,
                icmp_type=icmp_type,
                icmp_code=icmp_code,
            )
        )
    return out


packets = st.tuples(
    st.sampled_from([*PROTOS, 50]),
    st.sampled_from(ADDRESSES),
    st.sampled_from([*BOUNDS, 2, 3, 8, 128, 444, 999, 1001]),
    st.sampled_from([*SPORTS, 7]),
    st.sampled_from([SYN, SYN | ACK, ACK, 0, 0x3F]),
    st.sampled_from([0, 1, 4]),
)


def test_tables_agree_with_the_linear_reference() -> None:
    seen = {"checked": 0, "overlap": 0}

    @settings(
        max_examples=400,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(rules_strategy(), st.lists(packets, min_size=20, max_size=40))
    def check(rules: list[Rule], pkts: list[Packet]) -> None:
        # Each class worked out whole, not from its wide rules' shared
        # entries plus its narrow ones: the same tables, or the same refusal.
        with mock.patch.object(rules_module, "_NARROW_MAX", -1):
            try:
                whole: CompiledRules | None = compile_rules(rules)
            except ConfigError:
                whole = None
        try:
            compiled = compile_rules(rules)
        except ConfigError as err:
            assert "can overlap" in str(err), err
            assert whole is None
            seen["overlap"] += 1
            return
        seen["checked"] += 1
        assert whole is not None
        assert set(whole.entries) == set(compiled.entries)
        keys = [(cid, prefix) for cid, prefix, _ in compiled.entries]
        assert len(keys) == len(set(keys)), "one LPM key written twice"
        assert all(len(cands) <= CANDS for _, _, cands in compiled.entries)
        used = {cid for arr in compiled.port_classes for cid in set(arr)} - {0}
        assert {cid for cid, _ in keys} <= used
        for proto, src, port, sport, flags, code in pkts:
            if proto in (PROTO_ICMP, PROTO_ICMPV6):
                port &= 0xFF  # an ICMP type is a byte
            agree(rules, compiled, (proto, src, port, sport, flags, code))
        # Every rule's own "home" packet too, so matches are not all misses.
        for r in rules:
            proto = min(r.protocols) if r.protocols else PROTO_UDP
            src = r.sources[0].addr if r.sources else ADDRESSES[0]
            port = r.dports[0][0] if r.dports else (r.icmp_type or 0)
            sport = min(r.sports) if r.sports else 7
            flags = r.tcp_flags[1] if r.tcp_flags else 0
            agree(rules, compiled, (proto, src, port, sport, flags, r.icmp_code or 0))

    check()
    assert seen["checked"] > 100, seen


# --- scale --------------------------------------------------------------------


def _many_rules(n: int, seed: int = 7) -> list[Rule]:
    """Mostly "drop udp dport P from a /24"; per thousand also ten TCP port
    ranges, ten GRE rules, and one block of a prefix on every protocol and
    port (which adds an entry to every class); three "pass udp from source
    port S" rules for every port."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if i % 100 == 1:
            lo = rnd.randrange(60000)
            ten = f"10.{rnd.randrange(256)}.0.0/16"
            tcp_range = Ports(protocols=frozenset({PROTO_TCP}), dports=((lo, lo + 999),))
            out.append(rule(f"range{i}", src=[ten], **tcp_range))
        elif i % 100 == 0 and i < 300:
            out.append(rule(f"dns{i}", "pass", sports=frozenset({53 + i}), **udp()))
        elif i % 100 == 0:
            out.append(rule(f"gre{i}", src=[f"172.16.{i // 100}.0/24"], protocols=frozenset({GRE})))
        elif i % 1000 == 50:
            out.append(rule(f"block{i}", src=[f"2001:db8:{i}::/48"]))
        elif i % 1000 == 550:
            out.append(rule(f"block{i}", src=[f"198.51.{i // 1000}.0/24"]))
        else:
            net = f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.0/24"
            out.append(rule(f"u{i}", src=[net], **udp(rnd.randrange(65536))))
    return out


def test_ten_thousand_rules_compile_fast_and_right(capsys: pytest.CaptureFixture[str]) -> None:
    for n in (10, 10_000):
        rules = _many_rules(n)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            compiled = compile_rules(rules)
            best = min(best, time.perf_counter() - start)
        with capsys.disabled():
            print(f"\ncompile_rules: {n} rules in {best * 1000:.1f} ms, "
                  f"{len(compiled.entries)} entries")  # fmt: skip
    rnd = random.Random(1)
    for r in rnd.sample(rules, 30):
        src = r.sources[0].addr if r.sources else ADDRESSES[0]
        proto = min(r.protocols) if r.protocols else PROTO_TCP
        port = r.dports[0][0] if r.dports else 0
        for sport in (7, 53, *r.sports):
            agree(rules, compiled, (proto, src, port, sport, 0, 0))
