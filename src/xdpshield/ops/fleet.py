"""A fleet of shields: cookie keys, lists and blocks shared through Redis.

Behind ECMP or anycast a client's SYN can reach one node and its ACK
another; a deny or a block decided on one node must hold on all of them. A
run whose config has ``[fleet]`` runs one :class:`FleetNode` (a thread
beside the shields' daemons) that keeps this node's shields in step with
the fleet's state in the store. The store is Redis (README: why): TTL'd
keys for the leader's lease, a hash per kind of state, a stream for change
notices, and Lua scripts for the two compare-and-set steps.

Keys in the store (``P`` = ``xdpshield:NAME:``)::

    P leader    this key leader's node name, SET NX PX lease (renewed each second)
    P keys      hash: epoch -> {"k": hex key, "by", "t"}    (the cookie keys: secrets)
    P entries   hash: "deny|PREFIX" / "allow|PREFIX" / "block|PREFIX"
                      -> {"on", "exp" (unix s or null), "t" (unix s of the change), "by"}
    P log       stream of changes to ``entries`` (capped): what nodes follow
    P nodes     hash: node -> heartbeat {"epoch", "seen" (stream id), "hb", ...}

Cookie keys. Epochs are fleet-wide and follow the wall clock: epoch E is
current from ``E * key_period`` on. The leader (one node at a time, elected
through ``P leader`` with a lease) publishes each key two epochs ahead, so
every node holds the next key long before it is needed. Each node stages
the next key in the data path's second slot half a period before its epoch
begins, under an *older* epoch number (datapath.write_key_slot): every node
then checks cookies made with it, while all still mint with the current one;
at the epoch's start each node relabels it and mints with it. So a cookie
minted on any node, a moment after any node switched, validates on every
other: no window where nodes disagree. A node that loses the store keeps
installing the keys it already has (two epochs ahead), and after those makes
its own ("rotated alone", logged); back with the store, it takes the fleet's
keys again. Keys are never logged; with rediss:// endpoints they travel
only inside TLS.

The cookie's tick (about 69 s, cookie.h) is counted on the wall clock:
the data path adds CLOCK_TAI - CLOCK_MONOTONIC (``datapath.set_clock``,
written at load and refreshed by the daemon) to its monotonic clock, so
nodes that NTP keeps in step agree on a cookie's tick whatever their boot
times (tests/datapath/test_cookie_clock.py: two loads with monotonic
clocks a tick and a half apart).

Lists and blocks. Each node reads its shields' live allow/deny entries (the
ones edited live, not the config file's) and its blocks (automatic or by
hand) every ``SCAN_S``; what changed is published with its expiry as a
last-writer-wins entry (a Lua script keeps the newer ``t``) and a notice on
the stream. Every node follows the stream and applies what others
published: lists with the time left, a block as a block by hand with the
time left. A start or a reconnect loads the whole ``entries`` hash first
(and publishes what it changed meanwhile, when newer), then follows the
stream from where the hash was read: nothing between is missed. A start does
this before the run says it is ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xdpshield import __version__
from xdpshield.errors import ConfigError, XdpShieldError
from xdpshield.policy.cidr import parse_prefix
from xdpshield.policy.model import Config, FleetConfig
from xdpshield.shield import datapath
from xdpshield.shield import policy as shield_policy

if TYPE_CHECKING:
    import redis

    from xdpshield.shield.core import Shield

__all__ = ["Entry", "FleetNode", "FleetStore", "fleet_status", "node_name"]

#: How often a node reads its shields' lists and blocks for changes (and the
#: longest a stream read blocks): a change reaches the other nodes within
#: about this, plus the store's round trip and the apply.
SCAN_S = 0.2
#: Keys, election, heartbeat: once a second.
TICK_S = 1.0
#: How many epochs ahead the leader publishes keys.
AHEAD = 2
#: The stream keeps about this many notices (a node further behind reloads).
LOG_MAX = 10000
#: Tombstones and expired entries are dropped from the store this long after.
FORGET_S = 3600.0
#: A shield's lists are read again only when their selector (generations,
#: counts) changed since the last read, and at least this often (an add and a
#: delete between two scans can leave the counts as they were).
FULL_READ_S = 5.0
#: An expiry that differs by less than this is the same one (ms rounding,
#: the time between reading the clocks).
SAME_EXP_S = 1.0
KINDS = ("allow", "deny", "block")

Log = Callable[..., None]

# KEYS[1] entries hash, KEYS[2] stream; ARGV: field, value, t, maxlen.
# Last writer wins: an older change than the stored one is dropped.
_PUBLISH = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ot = cjson.decode(old)['t']
  if ot and tonumber(ot) > tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'f', ARGV[1], 'v', ARGV[2])
return 1
"""
# KEYS[1] leader; ARGV: node, lease ms. Take the lease or renew our own.
_ELECT = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def node_name(cfg: Config) -> str:
    """This node's name: ``[fleet] node``, else the host name and the first
    interface (``host:netns/iface``)."""
    assert cfg.fleet is not None
    if cfg.fleet.node:
        return cfg.fleet.node
    host = socket.gethostname()
    if not cfg.interfaces:
        return host
    ic = cfg.interfaces[0]
    return f"{host}:{ic.netns}/{ic.name}" if ic.netns else f"{host}:{ic.name}"


@dataclass(frozen=True)
class Entry:
    """A list entry or a block as the fleet knows it."""

    on: bool  # False: removed (a tombstone, so a late node does not bring it back)
    exp: float | None  # unix seconds; None: no expiry (lists only)
    t: float  # unix seconds of the change: the newer change wins
    by: str

    def live(self, now: float) -> bool:
        return self.on and (self.exp is None or self.exp > now)

    def to_json(self) -> str:
        return json.dumps(
            {"on": self.on, "exp": self.exp, "t": self.t, "by": self.by}, separators=(",", ":")
        )

    @classmethod
    def from_json(cls, raw: str) -> Entry:
        d = json.loads(raw)
        exp = d.get("exp")
        return cls(bool(d["on"]), None if exp is None else float(exp), float(d["t"]), str(d["by"]))


ShieldId = tuple[str | None, str]  # (netns, iface)


def _takes(sh: Shield, f: str) -> bool:
    """Whether a shield has the tables for entry ``f`` (an older one may not)."""
    return ("xs_blocks" if f.startswith("block|") else "xs_psel") in sh.maps


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) < SAME_EXP_S


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError(
            "[fleet] needs the redis client: pip install 'xdpshield[fleet]'", key="fleet"
        ) from None
    return redis


class StoreDown(XdpShieldError):
    """The store did not answer."""


class FleetStore:
    """The fleet's keys in Redis: one connection, every call raising
    :class:`StoreDown` when the store does not answer."""

    def __init__(self, cfg: FleetConfig, *, timeout_s: float = 1.0) -> None:
        self.cfg = cfg
        self.timeout_s = timeout_s
        p = f"xdpshield:{cfg.name}:"
        self.k_leader, self.k_keys, self.k_entries = p + "leader", p + "keys", p + "entries"
        self.k_log, self.k_nodes = p + "log", p + "nodes"
        self._mod = _redis_module()
        self.client: redis.Redis | None = None
        self.endpoint: str | None = None

    def _password(self) -> str | None:
        if self.cfg.password_file is None:
            return None
        with open(self.cfg.password_file) as f:
            return f.read().strip()

    def connect(self) -> bool:
        """Connect to the first endpoint that answers; False when none does."""
        self.close()
        for ep in self.cfg.endpoints:
            kw: dict[str, Any] = {
                "socket_timeout": self.timeout_s,
                "socket_connect_timeout": self.timeout_s,
                "decode_responses": True,
                "username": self.cfg.username,
                "password": self._password(),
            }
            if ep.startswith("rediss://"):
                kw.update(
                    ssl_ca_certs=self.cfg.tls_ca,
                    ssl_certfile=self.cfg.tls_cert,
                    ssl_keyfile=self.cfg.tls_key,
                )
            client = self._mod.Redis.from_url(ep, **kw)
            try:
                client.ping()
            except self._mod.RedisError:
                client.close()
                continue
            self.client, self.endpoint = client, ep
            return True
        return False

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        self.client = None

    def _do(self, fn: Callable[[redis.Redis], Any]) -> Any:
        if self.client is None:
            raise StoreDown("not connected")
        try:
            return fn(self.client)
        except self._mod.RedisError as exc:
            self.close()
            raise StoreDown(str(exc)) from None

    # -- keys
    def keys(self) -> dict[int, bytes]:
        raw: dict[str, str] = self._do(lambda c: c.hgetall(self.k_keys))
        out: dict[int, bytes] = {}
        for e, v in raw.items():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                key = bytes.fromhex(json.loads(v)["k"])
                if len(key) == 16:
                    out[int(e)] = key
        return out

    def offer_key(self, epoch: int, key: bytes, by: str) -> bool:
        """Publish ``key`` for ``epoch`` unless the fleet has one (first wins)."""
        v = json.dumps({"k": key.hex(), "by": by, "t": time.time()})
        return bool(self._do(lambda c: c.hsetnx(self.k_keys, str(epoch), v)))

    def forget_keys(self, before: int) -> None:
        old = [e for e in self._do(lambda c: c.hkeys(self.k_keys)) if int(e) < before]
        if old:
            self._do(lambda c: c.hdel(self.k_keys, *old))

    def key_epochs(self) -> list[int]:
        return sorted(int(e) for e in self._do(lambda c: c.hkeys(self.k_keys)))

    # -- leader
    def elect(self, node: str, lease_s: float) -> bool:
        ms = str(max(1, round(lease_s * 1000)))
        return bool(self._do(lambda c: c.eval(_ELECT, 1, self.k_leader, node, ms)))

    def leader(self) -> str | None:
        v = self._do(lambda c: c.get(self.k_leader))
        return None if v is None else str(v)

    def resign(self, node: str) -> None:
        script = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"
        self._do(lambda c: c.eval(script, 1, self.k_leader, node))

    # -- entries
    def publish(self, field: str, e: Entry) -> bool:
        args = (field, e.to_json(), repr(e.t), str(LOG_MAX))
        return bool(self._do(lambda c: c.eval(_PUBLISH, 2, self.k_entries, self.k_log, *args)))

    def entries(self) -> dict[str, Entry]:
        raw: dict[str, str] = self._do(lambda c: c.hgetall(self.k_entries))
        out: dict[str, Entry] = {}
        for f, v in raw.items():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                out[f] = Entry.from_json(v)
        return out

    def forget_entries(self, fields: Iterable[str]) -> None:
        fs = list(fields)
        if fs:
            self._do(lambda c: c.hdel(self.k_entries, *fs))

    def head(self) -> str:
        """The id of the stream's newest notice ("0-0": none)."""
        last = self._do(lambda c: c.xrevrange(self.k_log, count=1))
        return str(last[0][0]) if last else "0-0"

    def follow(self, last_id: str, block_s: float) -> list[tuple[str, str, Entry]]:
        """Notices after ``last_id``, waiting up to ``block_s`` for one."""
        got = self._do(
            lambda c: c.xread({self.k_log: last_id}, count=1000, block=round(block_s * 1000))
        )
        out: list[tuple[str, str, Entry]] = []
        for _, items in got or []:
            for nid, fields in items:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    out.append((str(nid), str(fields["f"]), Entry.from_json(fields["v"])))
        return out

    # -- nodes
    def heartbeat(self, node: str, state: dict[str, Any]) -> None:
        self._do(lambda c: c.hset(self.k_nodes, node, json.dumps(state)))

    def nodes(self) -> dict[str, dict[str, Any]]:
        raw: dict[str, str] = self._do(lambda c: c.hgetall(self.k_nodes))
        out: dict[str, dict[str, Any]] = {}
        for n, v in raw.items():
            with contextlib.suppress(ValueError):
                out[n] = json.loads(v)
        return out

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = self._do(lambda c: c.info("server"))
        return d


def _stream_ms(sid: str) -> int:
    return int(sid.split("-", 1)[0])


class FleetNode:
    """This run's place in the fleet: a thread that keeps its shields'
    keys, lists and blocks in step with the store."""

    def __init__(
        self,
        cfg: FleetConfig,
        node: str,
        shields: Callable[[], list[Shield]],
        log: Log,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.node = node
        self.shields = shields
        self.log = log
        self.clock = clock
        self.store = FleetStore(cfg)
        self.period = cfg.key_period_s
        #: The fleet's keys (epoch -> key) and those this node made alone.
        self.fleet_keys: dict[int, bytes] = {}
        self.local_keys: dict[int, bytes] = {}
        self.epoch: int | None = None  # the epoch installed last
        self.alone_since: int | None = None  # the first epoch made alone
        #: The fleet's entries as this node knows them; those changed here
        #: and not yet in the store; what the shields held at the last scan.
        self.known: dict[str, Entry] = {}
        self.dirty: set[str] = set()
        self.last_local: dict[str, float | None] = {}
        self.last_holders: dict[str, set[ShieldId]] = {}
        #: shield -> (its selector, when read, its live list entries): a
        #: config list of a million prefixes is not read every scan.
        self._lists: dict[ShieldId, tuple[Any, float, list[tuple[str, Any]]]] = {}
        self.last_id = "0-0"
        self.connected = False
        self.leader = False
        self.applied = 0  # entries applied from others
        self.published = 0
        self._failing: set[str] = set()  # entries whose apply failed (logged once)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_tick = 0.0
        self._next_scan = 0.0
        self._next_clean = 0.0

    # -- start and stop

    def start(self) -> None:
        """Join: connect (waiting up to ``start_timeout``), load the fleet's
        keys and entries into every shield, then follow in a thread. A store
        that does not answer: the node serves alone with its own keys, and
        joins when the store answers (logged)."""
        if not self.cfg.tls:
            self.log(
                "fleet-insecure", level="warning",
                why="redis:// endpoints: cookie keys travel in the clear; use rediss:// and TLS",
            )  # fmt: skip
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while True:
            if self._connect():
                break
            if time.monotonic() >= deadline:
                self.log(
                    "fleet-alone", level="error", endpoints=list(self.cfg.endpoints),
                    why="no store answered: serving alone, joining when one does",
                )  # fmt: skip
                break
            time.sleep(0.2)
        now = self.clock()
        self._tick(now)
        self._scan(now)
        self._thread = threading.Thread(target=self._run, name="xdpshield-fleet", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.connected and self.leader:
            with contextlib.suppress(StoreDown):
                self.store.resign(self.node)  # the next leader need not wait for the lease
        self.store.close()

    # -- the loop

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except XdpShieldError as exc:  # a shield mid-reload, ...: next round
                self.log("fleet-error", level="error", error=str(exc))
                self._stop.wait(SCAN_S)

    def step(self) -> None:
        """One round: follow the stream (blocking up to SCAN_S), scan, tick."""
        # Wait for notices only until the next scan is due: a change made
        # here is published within SCAN_S, whatever the stream does.
        wait = min(SCAN_S, max(0.01, self._next_scan - self.clock()))
        if self.connected:
            try:
                for nid, f, e in self.store.follow(self.last_id, wait):
                    self.last_id = nid
                    self._merge(f, e)
            except StoreDown as exc:
                self._lost(str(exc))
        else:
            self._stop.wait(wait)
        now = self.clock()
        if now >= self._next_scan:
            self._scan(now)
        if now >= self._next_tick:
            self._tick(now)

    def _connect(self) -> bool:
        try:
            if not self.store.connect():
                return False
            self._sync()
        except StoreDown:
            return False
        self.connected = True
        self.log(
            "fleet-joined", node=self.node, fleet=self.cfg.name, store=self.store.endpoint,
            entries=sum(e.live(self.clock()) for e in self.known.values()),
            epochs=sorted(self.fleet_keys),
        )  # fmt: skip
        if self.alone_since is not None:
            self.log("fleet-rejoined", alone_since_epoch=self.alone_since)
            self.alone_since = None
        return True

    def _lost(self, why: str) -> None:
        self.connected = False
        self.leader = False
        self.log(
            "fleet-store-lost", level="error", error=why,
            kept=f"the keys it has (to epoch {max(self.fleet_keys, default=None)}), lists "
            "and blocks; rotates alone after those",
        )  # fmt: skip

    def _sync(self) -> None:
        """After (re)connecting: offer the keys we hold (a store that lost its
        data gets them back), read the fleet's; read every entry, take what
        is newer, publish what we changed since (when newer)."""
        now = self.clock()
        e_now = int(now // self.period)
        for epoch, key in self.fleet_keys.items():
            if epoch >= e_now - 1:
                self.store.offer_key(epoch, key, self.node)
        self._read_keys(e_now)
        head = self.store.head()  # read before the hash: nothing after it is missed
        remote = self.store.entries()
        for f, r in remote.items():
            self._merge(f, r)
        for f, k in self.known.items():
            s = remote.get(f)
            if (s is None or k.t > s.t) and (k.live(now) or not k.on):
                self.dirty.add(f)
        self.last_id = head
        self._flush()

    # -- keys

    def _read_keys(self, e_now: int) -> None:
        got = self.store.keys()
        for e, k in got.items():
            if e >= e_now - 1:
                self.fleet_keys[e] = k
        for e in [e for e in self.fleet_keys if e < e_now - 1]:
            del self.fleet_keys[e]

    def _tick(self, now: float) -> None:
        e_now = int(now // self.period)
        # Each second, and at once when a key is due to be staged or to
        # become current: nodes switch within a round (SCAN_S) of each other.
        due = [(e_now + 1) * self.period - self.period / 2, (e_now + 1) * self.period]
        self._next_tick = min([now + TICK_S, *(t for t in due if t > now)])
        if not self.connected:
            self._connect()
        if self.connected:
            try:
                was = self.leader
                self.leader = self.store.elect(self.node, self.cfg.lease_s)
                if self.leader and not was:
                    self.log("fleet-leader", node=self.node, epoch=e_now)
                if self.leader:
                    for e in range(e_now, e_now + AHEAD + 1):
                        if e not in self.fleet_keys:
                            self.store.offer_key(e, os.urandom(16), self.node)
                    if now >= self._next_clean:
                        self._clean(now, e_now)
                self._read_keys(e_now)
            except StoreDown as exc:
                self._lost(str(exc))
        self._install_keys(now)
        if self.connected:
            try:
                self.store.heartbeat(self.node, self.heartbeat(now))
            except StoreDown as exc:
                self._lost(str(exc))

    def _clean(self, now: float, e_now: int) -> None:
        self._next_clean = now + 10.0
        self.store.forget_keys(e_now - 2)
        old = [
            f
            for f, e in self.store.entries().items()
            if (not e.on and e.t < now - FORGET_S) or (e.exp is not None and e.exp < now - 60)
        ]
        self.store.forget_entries(old)

    def wanted_keys(self, now: float) -> tuple[int, dict[int, tuple[bytes, int]]]:
        """The current epoch and slot -> (key, label) the data path should hold."""
        p = self.period
        e = int(now // p)
        for old in [x for x in self.local_keys if x < e - 1]:
            del self.local_keys[old]
        ring = {**self.local_keys, **self.fleet_keys}
        cur = ring.get(e)
        if cur is None:  # no fleet key for this epoch: rotate alone
            cur = self.local_keys[e] = os.urandom(16)
            if self.alone_since is None:
                self.alone_since = e
            self.log(
                "fleet-rotated-alone", level="warning", epoch=e,
                why="no fleet key for this epoch (the store is out of reach)",
            )  # fmt: skip
        want = {e & 1: (cur, e)}
        nxt, prev = ring.get(e + 1), ring.get(e - 1)
        if nxt is not None and now >= (e + 1) * p - p / 2:
            # Staged: checked from now on, minted with from its epoch on.
            want[(e + 1) & 1] = (nxt, (e - 1) & 0xFFFFFFFF)
        elif prev is not None:
            want[(e - 1) & 1] = (prev, (e - 1) & 0xFFFFFFFF)
        return e, want

    def _install_keys(self, now: float) -> None:
        e, want = self.wanted_keys(now)
        for sh in self.shields():
            try:
                have = datapath.key_slots(sh.maps)
                # The other slot first: the current key is relabelled last.
                for slot in sorted(want, key=lambda s: s == e & 1):
                    if have.get(slot) != want[slot]:
                        datapath.write_key_slot(sh.maps, slot, *want[slot])
            except XdpShieldError as exc:
                self.log("fleet-key-failed", level="error", iface=sh.iface, error=str(exc))
        if self.epoch != e:
            self.log(
                "fleet-rotated", epoch=e,
                by="fleet" if e in self.fleet_keys else "alone",
            )  # fmt: skip
            self.epoch = e

    # -- lists and blocks

    def _read_local(self) -> tuple[dict[str, float | None], dict[str, set[ShieldId]]]:
        """What the shields hold that the fleet shares (live list entries and
        blocks in force): field -> expiry (unix s), and which shields hold it."""
        now, mono = self.clock(), time.monotonic_ns()
        out: dict[str, float | None] = {}
        holders: dict[str, set[ShieldId]] = {}

        def put(sh: Shield, f: str, exp: float | None) -> None:
            if f not in out or exp is None or (out[f] or 0) < exp:
                out[f] = exp
            holders.setdefault(f, set()).add((sh.netns, sh.iface))

        for sh in self.shields():
            if "xs_psel" in sh.maps:
                for which, le in self._live_entries(sh):
                    if le.expires_ns and le.expires_ns <= mono:
                        continue
                    exp = now + (le.expires_ns - mono) / 1e9 if le.expires_ns else None
                    put(sh, f"{which}|{le.prefix}", exp)
            if "xs_blocks" in sh.maps:
                for b in sh.blocks():
                    put(sh, f"block|{b.prefix}", now + (b.expires_ns - mono) / 1e9)
        return out, holders

    def _live_entries(self, sh: Shield) -> list[tuple[str, Any]]:
        """The shield's list entries added live (not the config file's)."""
        sid = (sh.netns, sh.iface)
        sel = shield_policy.selector(sh.maps)
        t = time.monotonic()
        cached = self._lists.get(sid)
        if cached is not None and cached[0] == sel and t - cached[1] < FULL_READ_S:
            return cached[2]
        got = [(w, le) for w in ("allow", "deny") for le in sh.list_entries(w) if le.live]
        self._lists[sid] = (sel, t, got)
        return got

    def _scan(self, now: float) -> None:
        self._next_scan = now + SCAN_S
        local, holders = self._read_local()
        for f, exp in local.items():
            k = self.known.get(f)
            if k is not None and k.on and _same(k.exp, exp):
                continue
            self.known[f] = Entry(True, exp, now, self.node)
            self.dirty.add(f)
            self.log("fleet-publish", what=f, ttl_s=None if exp is None else round(exp - now, 1))
        # Gone from a shield that held it, before its time: removed by hand
        # (on one interface or all): removed in the whole fleet.
        present = {(sh.netns, sh.iface) for sh in self.shields()}
        removed: list[str] = []
        for f, was in self.last_holders.items():
            k = self.known.get(f)
            if k is None or not k.on or (k.exp is not None and k.exp <= now + SAME_EXP_S):
                continue  # not the fleet's, or it ran out
            if any(sid in present and sid not in holders.get(f, ()) for sid in was):
                self.known[f] = Entry(False, None, now, self.node)
                self.dirty.add(f)
                removed.append(f)
                self.log("fleet-publish", what=f, removed=True)
        self.last_holders = holders
        for f in removed:
            self._apply(f, self.known[f])  # from this node's other shields too
            local.pop(f, None)
        self.last_local = local
        self._flush()
        # What the fleet has and a shield lacks (another shield of this run
        # decided it, a shield loaded again, an apply that failed): apply it.
        shields = self.shields()
        for f, k in list(self.known.items()):
            if not k.live(now) or f in self._failing:
                continue
            held = holders.get(f, set())
            lacking = [sh for sh in shields if (sh.netns, sh.iface) not in held and _takes(sh, f)]
            if lacking:
                self._apply(f, k, lacking)

    def _flush(self) -> None:
        if not self.connected:
            return
        try:
            for f in sorted(self.dirty):
                self.store.publish(f, self.known[f])
                self.published += 1
                self.dirty.discard(f)
        except StoreDown as exc:
            self._lost(str(exc))

    def _merge(self, f: str, e: Entry) -> None:
        k = self.known.get(f)
        if k is not None and k.t >= e.t:
            return
        self.known[f] = e
        self.dirty.discard(f)
        now = self.clock()
        held = f in self.last_local
        if e.live(now):
            if held and _same(self.last_local[f], e.exp):
                return  # the shields hold it already (ours, or applied before)
        elif not e.on:
            if not held:
                return  # nothing here to remove
        else:
            return  # ran out on its way
        self._apply(f, e)

    def _apply(self, f: str, e: Entry, shields: list[Shield] | None = None) -> None:
        kind, _, text = f.partition("|")
        if kind not in KINDS:
            return
        try:
            prefix = parse_prefix(text)
        except ConfigError:
            return
        now = self.clock()
        live = e.live(now)
        try:
            for sh in self.shields() if shields is None else shields:
                if kind in ("allow", "deny") and "xs_psel" in sh.maps:
                    if live:
                        ttl = None if e.exp is None else max(0.001, e.exp - now)
                        sh.add_entries(kind, {prefix: ttl})
                    else:
                        with contextlib.suppress(ConfigError):  # not there: nothing to do
                            sh.del_entries(kind, [prefix])
                elif kind == "block" and "xs_blocks" in sh.maps:
                    if live and e.exp is not None:
                        sh.add_blocks({prefix: max(0.001, e.exp - now)})
                    elif not live:
                        sh.del_blocks([prefix])
        except XdpShieldError as exc:
            self._failing.add(f)
            self.log("fleet-apply-failed", level="error", what=f, error=str(exc))
            return
        self._failing.discard(f)
        if live:
            self.last_local[f] = e.exp
            took = [sh for sh in (self.shields() if shields is None else shields) if _takes(sh, f)]
            self.last_holders.setdefault(f, set()).update((sh.netns, sh.iface) for sh in took)
        else:
            self.last_local.pop(f, None)
            self.last_holders.pop(f, None)
        self.applied += 1
        self.log(
            "fleet-applied", what=f, by=e.by, removed=None if e.on else True,
            ttl_s=None if e.exp is None or not live else round(e.exp - now, 1),
        )  # fmt: skip

    # -- what status shows

    def heartbeat(self, now: float) -> dict[str, Any]:
        epochs: list[int] = []
        for sh in self.shields():
            with contextlib.suppress(XdpShieldError):
                ep = sh.current_epoch()
                if ep is not None:
                    epochs.append(ep)
        return {
            "hb": now,
            "epoch": min(epochs) if epochs else None,
            "epochs_agree": len(set(epochs)) <= 1,
            "seen": self.last_id,
            "leader": self.leader,
            "alone": self.epoch is not None and self.epoch not in self.fleet_keys,
            "period_s": self.period,
            "shields": len(epochs),
            "pending": len(self.dirty),
            "applied": self.applied,
            "published": self.published,
            "pid": os.getpid(),
            "version": __version__,
        }


def fleet_status(cfg: FleetConfig, *, timeout_s: float = 2.0) -> dict[str, Any]:
    """The fleet as the store sees it: its health, the leader, the key
    epochs held (never the keys), and each node's epoch, heartbeat age and
    lag (how far behind the newest change it has applied, in seconds of the
    store's clock). ``store.ok`` False: the store did not answer."""
    store = FleetStore(cfg, timeout_s=timeout_s)
    out: dict[str, Any] = {"fleet": cfg.name, "endpoints": list(cfg.endpoints)}
    t0 = time.monotonic()
    if not store.connect():
        out["store"] = {"ok": False, "error": "no endpoint answered"}
        out["nodes"] = []
        return out
    try:
        info = store.info()
        rtt_ms = round((time.monotonic() - t0) * 1000, 1)
        now = time.time()
        head = store.head()
        nodes = store.nodes()
        leader = store.leader()
        epochs = store.key_epochs()
        entries = store.entries()
    except StoreDown as exc:
        out["store"] = {"ok": False, "error": str(exc)}
        out["nodes"] = []
        return out
    finally:
        store.close()
    e_now = int(now // cfg.key_period_s)
    out["store"] = {
        "ok": True, "endpoint": store.endpoint, "version": info.get("redis_version"),
        "connect_ms": rtt_ms, "tls": cfg.tls,
    }  # fmt: skip
    out["leader"] = leader
    out["epoch"] = e_now
    out["key_epochs"] = epochs
    live = [e for e in entries.values() if e.live(now)]
    out["entries"] = {k: sum(1 for f, e in entries.items() if e.live(now) and f.startswith(k + "|"))
                      for k in KINDS}  # fmt: skip
    out["entries"]["total"] = len(live)
    rows = []
    for name, hb in sorted(nodes.items()):
        seen = str(hb.get("seen") or "0-0")
        lag = 0.0 if seen == head or head == "0-0" else max(
            0.0, (_stream_ms(head) - _stream_ms(seen)) / 1000
        )  # fmt: skip
        age = max(0.0, now - float(hb.get("hb", 0)))
        rows.append({
            "node": name, "epoch": hb.get("epoch"), "leader": name == leader,
            "heartbeat_age_s": round(age, 1), "lag_s": round(lag, 3),
            "alive": age < 3 * TICK_S + 2, "alone": bool(hb.get("alone")),
            "pending": hb.get("pending", 0), "period_s": hb.get("period_s"),
            "version": hb.get("version"),
        })  # fmt: skip
    out["nodes"] = rows
    return out
