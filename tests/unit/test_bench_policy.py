"""The policy benchmark's rows without the kernel: the lists and rules it
generates, the rows it makes of samples (units, baselines, goals), and the
flood frames it asks for. No speed is asserted."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from xdpshield.lab.bench import Goal, LiveConfig, Result
from xdpshield.lab.bench.policy import (
    DENIED_SOURCES,
    GOAL_APPLY,
    GOAL_DENY,
    GOAL_LIVE,
    GOAL_LOAD,
    GOAL_RULES,
    GROUP_APPLY,
    GROUP_LIVE,
    GROUP_LOAD,
    POLICY_FLOODS,
    PolicyConfig,
    PolicyLiveSamples,
    live_rows,
    live_skipped,
    load_rows,
    lookup_rows,
    random_prefixes,
    rules_toml,
    udp_rules,
)
from xdpshield.lab.traffic import FloodTarget, build_flood_frame
from xdpshield.policy.config import load_config
from xdpshield.policy.rules import compile_rules
from xdpshield.shield.datapath import Reason


@pytest.mark.parametrize(("version", "plen"), [(4, 24), (6, 48)])
def test_random_prefixes_are_distinct_clean_and_outside_the_bench_space(
    version: int, plen: int
) -> None:
    ps = random_prefixes(version, 5000, seed=1)
    assert len(ps) == len(set(ps)) == 5000
    assert ps == random_prefixes(version, 5000, seed=1)  # the same every run
    bench = ipaddress.ip_network("198.0.0.0/8" if version == 4 else "fd00::/8")
    for p in ps:
        assert p.version == version and p.plen == plen
        net = p.network  # raises if host bits are set
        assert not net.overlaps(bench), net
        if version == 4:  # unicast: a source a packet can carry
            assert p.addr[0] != 0, net
            assert not (net.is_loopback or net.is_multicast or net.is_reserved), net
    assert random_prefixes(version, 100, seed=1) == ps[:100]  # a start of the longer list


def test_rules_survive_the_config_file_and_compile(tmp_path: Path) -> None:
    rules = udp_rules(200, seed=3)
    assert rules[:10] == udp_rules(10, seed=3)  # the small set is the big one's start
    assert rules[0].dports == ((1024, 1024),) and rules[0].action.value == "drop"
    assert any(lo != hi for r in rules for lo, hi in r.dports)  # some ranges
    path = tmp_path / "rules.toml"
    path.write_text(rules_toml(rules))
    loaded = load_config(path).policy.rules
    assert [dataclasses.replace(r, origin="") for r in loaded] == list(rules)
    compile_rules(loaded)  # fits the tables


def _fake_testrun(cfg: PolicyConfig) -> list[Result]:
    names = [
        f"deny-{w}-ipv{v} ({n} prefixes)" for v in (4, 6) for w in ("hit", "miss")
        for n in ("10", "1M")
    ] + [f"rule-{w} ({n} rules)" for w in ("match", "miss") for n in ("10", "10k")]  # fmt: skip
    samples = {name: [50.0, 60.0] for name in names}
    samples["xdp-drop (policy)"] = [20.0, 21.0]
    return lookup_rows(cfg, [], samples, {}, {"rule-miss (10k rules)": "shield answered X"}, 4)


def test_lookup_rows_carry_units_baselines_and_goals() -> None:
    rows = {r.name: r for r in _fake_testrun(PolicyConfig())}
    assert all(r.unit == "ns/pkt" for r in rows.values())
    big = rows["deny-hit-ipv6 (1M prefixes)"]
    assert big.baseline == "deny-hit-ipv6 (10 prefixes)" and big.goal == GOAL_DENY
    assert big.ratio == pytest.approx(1.0) and big.goal_met is True
    small = rows["deny-hit-ipv6 (10 prefixes)"]
    assert small.baseline == "xdp-drop (policy)" and small.goal is None
    assert small.ratio == pytest.approx(55 / 20.5)
    assert rows["rule-match (10k rules)"].goal == GOAL_RULES
    assert rows["rule-miss (10k rules)"].skipped == "shield answered X"
    for r in rows.values():  # every baseline is a row of the same run
        assert r.baseline is None or r.baseline in rows
    assert rows["xdp-drop (policy)"].baseline is None and len(rows) == 13


def test_a_timed_run_that_took_other_paths_has_no_number() -> None:
    cfg = PolicyConfig()
    samples = {"deny-hit-ipv4 (10 prefixes)": [50.0], "xdp-drop (policy)": [20.0]}
    impure = {"deny-hit-ipv4 (10 prefixes)": {"PASS_UNPROTECTED": 10}}
    rows = {r.name: r for r in lookup_rows(cfg, [], samples, impure, {}, 100)}
    assert "10% of the timed iterations" in (rows["deny-hit-ipv4 (10 prefixes)"].skipped or "")
    # Its big-size row has no baseline left: it says so instead of a ratio.
    assert rows["deny-hit-ipv4 (1M prefixes)"].skipped == "no measurement"


def test_absolute_goal_is_met_by_the_value_not_the_ratio() -> None:
    g = Goal("<=", 3.0, "budget", unit="s")
    assert str(g) == "<= 3 s"
    r = Result("load", "g", "s", (2.5,), "write", (0.5,), g)
    assert r.ratio == pytest.approx(5.0) and r.goal_met is True
    assert dataclasses.replace(r, samples=(3.5,)).goal_met is False
    assert str(GOAL_APPLY) == "<= 200 ms" and str(GOAL_LIVE) == ">= 0.9x"


def test_load_rows_hold_the_budgets_at_the_issue_sizes_only() -> None:
    lists = {4: [(0.5, 2.0, 1.5), (0.6, 2.2, 1.6)], 6: [(0.7, 2.5, 1.8), (0.7, 2.4, 1.7)]}
    rules = [(900.0, 80.0, 150.0), (950.0, 90.0, 170.0)]
    rows = {r.name: r for r in load_rows(PolicyConfig(), lists, rules)}
    for r in rows.values():  # one unit per group: each group is one chart
        assert (r.group, r.unit) in ((GROUP_LOAD, "s"), (GROUP_APPLY, "ms")), r
    total = rows["load 1M IPv4 /24s: read_prefix_file + add_entries"]
    assert total.unit == "s" and total.samples == pytest.approx((2.5, 2.8))
    assert total.goal == GOAL_LOAD
    assert total.baseline == "load 1M IPv4 /24s: map write alone" and total.goal_met is True
    assert rows["load 1M IPv6 /48s: read_prefix_file + add_entries"].goal_met is False
    apply = rows["apply 10k rules: apply_policy"]
    assert apply.unit == "ms" and apply.goal == GOAL_APPLY and apply.value == 160.0
    assert apply.baseline == "apply 10k rules: compile_rules"
    assert rows["apply 10k rules: load_config"].value == 925.0
    for r in rows.values():
        assert r.baseline is None or r.baseline in rows
    quick = load_rows(PolicyConfig.quick(), lists, rules)
    assert all(r.goal is None for r in quick)  # 100k prefixes: a 1M budget means nothing
    skipped = load_rows(PolicyConfig(), {}, [], dict.fromkeys(("list4", "list6", "rules"), "x"))
    assert all(r.skipped == "x" and not r.samples for r in skipped)


def test_live_rows_hold_each_flood_against_its_bare_drop() -> None:
    data = PolicyLiveSamples()
    for fl in POLICY_FLOODS:
        data.drop[(fl.name, "xdpshield")] = [1.9e6, 2.0e6]
        data.drop[(fl.name, "xdp-drop")] = [2.0e6, 2.0e6]
        data.extra[f"{fl.name} xdpshield"] = {"reason_share": [0.999, 1.0]}
        data.prog_ns[f"{fl.name} xdpshield"] = [70.0]
    data.unavailable["tcp-flags-flood xdp-drop"] = "TrafficError: no"
    rows = {r.name: r for r in live_rows("1 queue", data)}
    assert len(rows) == 2 * len(POLICY_FLOODS)
    deny = rows["deny-flood xdpshield (1 queue)"]
    assert deny.group == GROUP_LIVE and deny.unit == "drops/s" and deny.higher_is_better
    assert deny.baseline == "deny-flood xdp-drop (1 queue)" and deny.goal == GOAL_LIVE
    assert deny.ratio == pytest.approx(0.975) and deny.goal_met is True
    assert "the shield counted 99.90%+ of its verdicts DENY" in deny.note
    assert "program's own cost 70 ns/pkt (bpf_stats)" in deny.note
    # No baseline, no ratio: the shield's row says why rather than stand alone.
    assert rows["tcp-flags-flood xdp-drop (1 queue)"].skipped == "TrafficError: no"
    assert "baseline did not run" in (rows["tcp-flags-flood xdpshield (1 queue)"].skipped or "")
    off = live_skipped(LiveConfig.quick(), "needs root")
    assert off and all(r.skipped == "needs root" for r in off)


def test_the_floods_ask_for_what_policy_drops() -> None:
    by_name = {fl.name: fl for fl in POLICY_FLOODS}
    assert by_name["deny-flood"].frame["sources"] == DENIED_SOURCES
    assert by_name["reflection-flood"].frame["sport"] == 53
    assert {fl.reason for fl in POLICY_FLOODS} == {
        Reason.DENY, Reason.REFLECTION, Reason.FRAGMENT_UNKNOWN, Reason.TCP_FLAGS,
    }  # fmt: skip
    # Only the deny flood comes from the denied network.
    denied = ipaddress.ip_network(DENIED_SOURCES)
    for fl in POLICY_FLOODS:
        if fl.name != "deny-flood":
            assert not ipaddress.ip_network(fl.frame["sources"]).overlaps(denied)


def test_flood_frame_with_tcp_flags() -> None:
    target = FloodTarget(None, "x", "02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.2")
    ff = build_flood_frame("syn", target, tcp_flags="SF")
    assert int(Ether(ff.frame)[TCP].flags) == 0x03
    assert int(Ether(build_flood_frame("syn", target).frame)[TCP].flags) == 0x02
    for kind, flags in (("udp", "SF"), ("syn", "SX")):
        with pytest.raises(Exception, match="tcp flags"):
            build_flood_frame(kind, target, tcp_flags=flags)  # type: ignore[arg-type]
