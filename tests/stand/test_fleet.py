"""A fleet of shields on one stand: three (then four) nodes, each an
``xdpshield run`` with ``[fleet]``, and one real Redis server, started here
on loopback and stopped by its PID (lab/fleet.py has the topology).

One store and one set of nodes for the whole module (starting a node costs
seconds); the tests run in file order and each leaves the fleet whole for
the next:

- a SYN answered by node A whose ACK reaches node B: B accepts it at the
  first try, in both handshake modes (transparent: B's listener accepts the
  connection; reset: B answers RST and verifies the source);
- a deny added live on A drops traffic on C within 1 s (measured);
- an automatic block made by B's data path under a real UDP flood holds on
  A and C, with its expiry;
- the store killed: every node keeps its keys (cross-node handshakes still
  pass) and a deny made meanwhile is kept; the store restarted empty: the
  nodes give it back their keys, lists and blocks, and the deny reaches the
  others;
- the key leader killed: another node leads before the next rotation is due,
  and the keys of every node agree across that rotation;
- a fourth node started late holds the fleet's lists and blocks when it
  says it is ready.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from xdpshield.lab.fleet import MODES, FleetLab, Node, accepted, listener_in
from xdpshield.ops.fleet import FleetStore
from xdpshield.policy.cidr import parse_prefix
from xdpshield.policy.model import FleetConfig
from xdpshield.shield import datapath
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

from . import svc

PERIOD_S = 10.0
LIMITS = """
[limits]
pps = 200
block-after = "1s"
block-ttl = "40s"
"""


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> None:
    svc.wait_for(cond, timeout, what, poll_s=0.02)  # propagation is timed to ~20 ms


class Fleet:
    def __init__(self, lab: FleetLab) -> None:
        self.lab = lab
        self.listeners: dict[int, socket.socket] = {}  # node index -> listener
        self.sport = 41000

    def node(self, i: int) -> Node:
        return self.lab.nodes[i]

    def shield(self, n: Node, mode: str = "transparent") -> Shield:
        return Shield.open(n.links[mode][1], netns=n.ns)

    def next_sport(self) -> int:
        self.sport += 1
        return self.sport

    def handshake_across(self, a: Node, b: Node, mode: str) -> None:
        """SYN to ``a``, ACK to ``b``: ``b`` must take it at the first try."""
        sport = self.next_sport()
        # Reset mode: a fresh source each time (a verified one's SYN goes to
        # the kernel, whose SYN-ACK carries no cookie).
        src = None if mode == "transparent" else f"198.18.101.{sport % 200 + 20}"
        cookie = self.lab.syn(a, mode, sport, src=src)
        assert cookie is not None, f"{a.name} did not answer the SYN ({mode})"
        with self.shield(b, mode) as sh:
            stats0 = {r: v[0] for r, v in sh.stats().items()}
        flags = self.lab.ack(b, mode, sport, cookie, src=src)
        with self.shield(b, mode) as sh:
            moved = {r.name: v[0] - stats0[r] for r, v in sh.stats().items() if v[0] != stats0[r]}
        taken = "HANDOFF" if mode == "transparent" else "ACK_VALID"
        what = f"{b.name} on {a.name}'s cookie ({mode}), counters moved: {moved}"
        assert moved.get(taken) == 1, what
        if mode == "transparent":
            assert accepted(self.listeners[b.index], sport, 3.0), f"no connection: {what}"
        else:
            assert flags & 0x04, f"no RST (flags {flags}): {what}"
            with self.shield(b, mode) as sh:
                assert any(str(v) == src for v in sh.verified_sources()), f"unverified: {what}"

    def keys_of(self, n: Node) -> dict[int, tuple[bytes, int]]:
        with self.shield(n) as sh:
            return datapath.key_slots(sh.maps)

    def store(self) -> FleetStore:
        st = FleetStore(FleetConfig(endpoints=(self.lab.store.url,), name=self.lab.prefix))
        assert st.connect()
        return st

    def blocks(self, n: Node) -> dict[str, float]:
        now = time.monotonic_ns()
        with self.shield(n) as sh:
            return {str(b.prefix): b.remaining_s(now) for b in sh.blocks()}

    def denies(self, n: Node, mode: str = "transparent") -> set[str]:
        with self.shield(n, mode) as sh:
            return {str(e.prefix) for e in sh.list_entries("deny")}

    def dropped_as_denied(self, n: Node, src: str) -> bool:
        with self.shield(n) as sh:
            before = sh.stats()[Reason.DENY][0]
        self.lab.udp(n, src, 3, 100)
        with self.shield(n) as sh:
            return bool(sh.stats()[Reason.DENY][0] >= before + 3)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    lab = FleetLab(tmp_path_factory.mktemp("fleet"), key_period=f"{PERIOD_S:g}s", limits=LIMITS)
    with lab:
        f = Fleet(lab)
        try:
            for i in (1, 2, 3):
                lab.add_node(i)
                f.listeners[i] = listener_in(lab.nodes[i].ns)
            for i in (1, 2, 3):
                lab.start(lab.nodes[i])
            yield f
        finally:
            for ls in f.listeners.values():
                ls.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_cookie_from_one_node_is_taken_by_another(fleet: Fleet, mode: str) -> None:
    n1, n2, n3 = (fleet.node(i) for i in (1, 2, 3))
    fleet.handshake_across(n1, n2, mode)
    fleet.handshake_across(n3, n1, mode)
    # Every node holds the same keys in the same slots. Read one node after
    # the other (each read opens the node's pins): a staging or a
    # switch, every 5 s, may fall between two reads of one poll, so give it
    # a few polls (once, 1 s was not enough).
    wait_for(lambda: fleet.keys_of(n1) == fleet.keys_of(n2) == fleet.keys_of(n3), 3, "keys agree")


def test_a_deny_on_one_node_drops_on_another_within_a_second(fleet: Fleet) -> None:
    n1, n3 = fleet.node(1), fleet.node(3)
    src = "198.18.150.9"
    assert not fleet.dropped_as_denied(n3, src)
    t0 = time.monotonic()
    with fleet.shield(n1) as sh:
        sh.add_entries("deny", {parse_prefix(f"{src}/32"): None})
    wait_for(lambda: f"{src}/32" in fleet.denies(n3), 5, "the deny on node 3")
    took = time.monotonic() - t0
    assert fleet.dropped_as_denied(n3, src)
    # Both of node 3's shields, and node 2's, hold it.
    assert f"{src}/32" in fleet.denies(n3, "reset")
    wait_for(lambda: f"{src}/32" in fleet.denies(fleet.node(2)), 2, "the deny on node 2")
    # A deny removed by hand on one node is removed everywhere.
    other = parse_prefix("198.18.150.10/32")
    with fleet.shield(fleet.node(2)) as sh:
        sh.add_entries("deny", {other: 300.0})
    wait_for(lambda: str(other) in fleet.denies(n1), 2, "the second deny on node 1")
    with fleet.shield(n1) as sh:
        sh.del_entries("deny", [other])
    for n in (fleet.node(2), n3):
        wait_for(partial(lambda n: str(other) not in fleet.denies(n), n), 2, f"gone on {n.name}")
    assert f"{src}/32" in fleet.denies(n3)
    assert took <= 1.0, f"the deny took {took:.2f} s to reach node 3 (goal: 1 s)"


def test_an_automatic_block_on_one_node_holds_on_the_others(fleet: Fleet) -> None:
    n1, n2, n3 = (fleet.node(i) for i in (1, 2, 3))
    src = "198.18.151.7"
    # 10x the limit for up to 4 s: node 2's data path blocks the source.
    deadline = time.monotonic() + 4
    while f"{src}/32" not in fleet.blocks(n2) and time.monotonic() < deadline:
        fleet.lab.udp(n2, src, 200, 2000)
    assert f"{src}/32" in fleet.blocks(n2), "the flood was not blocked on node 2"
    left_b = fleet.blocks(n2)[f"{src}/32"]
    for n in (n1, n3):
        wait_for(partial(lambda n: f"{src}/32" in fleet.blocks(n), n), 2, f"the block on {n.name}")
        # The same expiry, give or take the time it took to get there.
        assert abs(fleet.blocks(n)[f"{src}/32"] - fleet.blocks(n2)[f"{src}/32"]) < 1.5
    assert 30 < left_b <= 40
    with fleet.shield(n1) as sh:
        before = sh.stats()[Reason.BLOCKED][0]
    fleet.lab.udp(n1, src, 5, 100)
    with fleet.shield(n1) as sh:
        assert sh.stats()[Reason.BLOCKED][0] >= before + 5


def test_the_store_killed_and_restarted_empty(fleet: Fleet) -> None:
    n1, n2, n3 = (fleet.node(i) for i in (1, 2, 3))
    lab = fleet.lab
    blocks_before = set(fleet.blocks(n1))
    assert blocks_before, "needs the block of the test before"
    with fleet.shield(n1) as sh:
        e0 = sh.current_epoch()
        assert e0 is not None
        key0 = datapath.key_slots(sh.maps)[e0 & 1]
    lab.store.stop()
    for n in (n1, n2, n3):
        wait_for(partial(n.named, "fleet-store-lost"), 5, f"{n.name} sees the store gone")
    # Still protecting, with the keys they had: cookies cross nodes.
    for mode in MODES:
        fleet.handshake_across(n2, n3, mode)
    # A deny made while the store is away.
    src = "198.18.150.33"
    with fleet.shield(n2) as sh:
        sh.add_entries("deny", {parse_prefix(f"{src}/32"): 600.0})
    time.sleep(0.5)
    assert f"{src}/32" not in fleet.denies(n1)
    lab.store.start()  # empty: no persistence
    for n in (n1, n2, n3):
        wait_for(partial(lambda n: len(n.named("fleet-joined")) >= 2, n), 10, f"{n.name} rejoins")
    # Each node takes it from the store on its own round: node 3 may come a
    # round after node 1 (CI once read it there right after node 1 had it).
    for n in (n1, n3):
        wait_for(partial(lambda n: f"{src}/32" in fleet.denies(n), n), 3,
                 f"the deny made while away, on {n.name}")  # fmt: skip
    st = fleet.store()
    try:
        entries = st.entries()
        keys = st.keys()
    finally:
        st.close()
    now = time.time()
    # Nothing lost: the block and both denies are back in the store, and the
    # keys the nodes run with are the fleet's.
    for p in blocks_before:
        assert entries[f"block|{p}"].live(now)
    assert entries["deny|198.18.150.9/32"].live(now)
    assert entries[f"deny|{src}/32"].live(now)
    e_now = int(now // PERIOD_S)
    wait_for(lambda: fleet.keys_of(n1) == fleet.keys_of(n2) == fleet.keys_of(n3), 3, "keys agree")
    assert fleet.keys_of(n1)[e_now & 1] == (keys[e_now], e_now)
    # The key in use before the store went is the fleet's key of its epoch still.
    assert key0[1] == e0 and keys.get(e0) == key0[0], "the key of the epoch before was lost"
    for mode in MODES:
        fleet.handshake_across(n1, n3, mode)


def test_the_key_leader_killed_another_takes_over_before_the_next_rotation(fleet: Fleet) -> None:
    lab = fleet.lab
    st = fleet.store()
    try:
        leader = st.leader()
        assert leader is not None
        old = next(n for n in lab.nodes.values() if n.name == leader)
        # Just after an epoch began: the next rotation is a period away.
        wait_for(lambda: time.time() % PERIOD_S < 0.5, PERIOD_S + 1, "an epoch's start")
        next_rotation = (int(time.time() // PERIOD_S) + 1) * PERIOD_S
        lab.kill(old)
        wait_for(lambda: st.leader() not in (None, leader), PERIOD_S, "a new leader")
        assert time.time() < next_rotation, "the new leader came after the rotation"
        new = st.leader()
        # The new leader keeps the keys ahead; across the rotation every
        # remaining node runs the same one, and cookies still cross.
        e = int(time.time() // PERIOD_S)
        wait_for(lambda: e + 2 in st.key_epochs(), 3, "the new leader publishes ahead")
        rest = [n for n in lab.nodes.values() if n is not old]
        wait_for(lambda: time.time() >= next_rotation + 1.0, PERIOD_S + 2, "the rotation")
        assert fleet.keys_of(rest[0]) == fleet.keys_of(rest[1])
        with fleet.shield(rest[0]) as sh:
            assert sh.current_epoch() == int(time.time() // PERIOD_S)
        for mode in MODES:
            fleet.handshake_across(rest[0], rest[1], mode)
        # The old leader comes back and joins cleanly, as a follower.
        lab.start(old)
        assert st.leader() == new
        assert fleet.keys_of(old) == fleet.keys_of(rest[0])
        fleet.handshake_across(old, rest[1], "transparent")
    finally:
        st.close()


def test_a_late_node_enforces_the_fleets_lists_and_blocks_when_ready(fleet: Fleet) -> None:
    lab = fleet.lab
    n4 = lab.add_node(4)
    fleet.listeners[4] = listener_in(n4.ns)
    lab.start(n4)  # returns at its "ready"
    # At once, without waiting: the deny and the block are in force.
    assert "198.18.150.9/32" in fleet.denies(n4)
    assert "198.18.151.7/32" in fleet.blocks(n4)
    assert fleet.dropped_as_denied(n4, "198.18.150.9")
    applied = [e["what"] for e in n4.named("fleet-applied")]
    assert "block|198.18.151.7/32" in applied
    for mode in MODES:
        fleet.handshake_across(n4, fleet.node(2), mode)
        fleet.handshake_across(fleet.node(1), n4, mode)
    # `xdpshield fleet status`: four live nodes on the current epoch, none behind.
    r = subprocess.run(
        [sys.executable, "-m", "xdpshield", "fleet", "status", "--json", "--config", str(n4.cfg)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["store"]["ok"] and st["entries"]["deny"] >= 2 and st["entries"]["block"] >= 1
    assert sorted(n["node"] for n in st["nodes"]) == ["n1", "n2", "n3", "n4"]
    assert st["leader"] in {"n1", "n2", "n3", "n4"}
    for n in st["nodes"]:
        assert n["alive"] and not n["alone"] and n["lag_s"] < 1.0, n
        assert n["epoch"] in (st["epoch"], st["epoch"] - 1), n  # a rotation may fall between
    # The store gone: status says so and fails.
    fleet.lab.store.stop()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "xdpshield", "fleet", "status", "--config", str(n4.cfg)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert r.returncode == 1 and "store down" in r.stdout
    finally:
        fleet.lab.store.start()
