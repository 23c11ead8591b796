"""``xdpshield run`` moving a running shield to a new object version.

The "installed" object is chosen through XDPSHIELD_OBJ_DIR: a folder of
links to the built objects in which ``xdpshield.o`` points at one of the
Makefile's test variants (``xdpshield_test_*.o``).

- an upgrade to a version with the same maps, under a SYN flood: the
  interface's XDP hook is never empty (polled, and the server's stack never
  answers a SYN of the flood), the cookie counter keeps
  moving (the counters were kept), and a SYN-ACK minted by the old object
  completes its handshake through the new one (the keys were kept);
- an upgrade whose object shrinks the verified table (a state map) is
  refused, the error names xs_verified, and the old program keeps running;
- an upgrade whose object grows it migrates the table: a verified source
  stays verified;
- an upgrade whose object changes the policy's tables refills them from
  the config and carries the entries added live: a block holds throughout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import threading
import time
from pathlib import Path

from xdpshield import netns
from xdpshield.ebpf import query_xdp
from xdpshield.errors import XdpShieldError
from xdpshield.lab.fleet import accepted
from xdpshield.lab.stand import Stand
from xdpshield.lab.traffic import flood
from xdpshield.objects import object_digest
from xdpshield.ops import service
from xdpshield.shield import datapath, policy
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

from .svc import PORT, HalfOpen, ObjectFarm, listener, wait_for
from .test_policy_stand import in_background, ping, xdpshield
from .test_service import cookies_sent, named, prog_id, running

CONFIG = """
[[interface]]
name = "{iface}"
protect = ["{port}"]
syn_flood_pps = 0

[metrics]
enabled = false
"""


def kernel_cookies(stand: Stand) -> int:
    """SYN cookies the server's own stack sent (TcpExt SyncookiesSent): with
    the shield attached and answering every SYN (syn_flood_pps = 0), none
    of the flood reaches the stack; a moment with no program lets some in."""
    text = stand.exec("server", ["cat", "/proc/net/netstat"], check=True).stdout
    head, values = (ln.split() for ln in text.splitlines() if ln.startswith("TcpExt:"))
    return int(dict(zip(head, values, strict=True))["SyncookiesSent"])


def record_sha(iface: str, ns: str) -> str | None:
    with Shield.open(iface, netns=ns) as s:
        return s.record.object_sha256


def stat(iface: str, ns: str, reason: Reason) -> int:
    with Shield.open(iface, netns=ns) as s:
        return s.stats()[reason][0]


class HookWatch:
    """Polls the interface's XDP program id until stopped: every id seen,
    and how often the hook was found empty."""

    def __init__(self, iface: str, ns: str) -> None:
        self.iface, self.ns = iface, ns
        self.seen: list[int] = []
        self.empty = 0
        self.polls = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        with netns.enter(self.ns):
            while not self.stop.is_set():
                cur = query_xdp(self.iface)
                self.polls += 1
                if cur is None:
                    self.empty += 1
                elif not self.seen or self.seen[-1] != cur.prog_id:
                    self.seen.append(cur.prog_id)
                time.sleep(0.0005)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)


def first_run(stand: Stand, cfg: Path, log: Path) -> int:
    """A run that loads the shield and ends (SIGTERM: the shield stays); its program id."""
    with running(stand, cfg, log) as run:
        assert named(log, "loaded")
        run.send_signal(signal.SIGTERM)
        assert run.wait(10) == 0
    return prog_id(stand.server_if, stand.ns("server"))


def cleanup(cfg: Path) -> None:
    with contextlib.suppress(XdpShieldError, OSError):
        service.stop_run(str(cfg), purge=True)
    for p in service.record_paths(str(cfg)):
        p.unlink(missing_ok=True)


def test_upgrade_under_flood_keeps_answering_and_keeps_the_keys(
    stand: Stand, tmp_path: Path, farm: ObjectFarm
) -> None:
    ns, iface = stand.ns("server"), stand.server_if
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(CONFIG.format(iface=iface, port=PORT))
    watch: HookWatch | None = None
    try:
        with listener(stand) as ls:
            old_id = first_run(stand, cfg, tmp_path / "run1.log")
            old_sha = record_sha(iface, ns)
            # A SYN answered by the old object; its ACK comes after the upgrade.
            half = HalfOpen(stand, sport=41_000)
            new_sha = farm.install("xdpshield_test_resha.o")
            assert new_sha != old_sha
            watch = HookWatch(iface, ns)
            syn, fl = in_background(
                lambda: flood(
                    "syn",
                    stand=stand,
                    rate_pps=50_000,
                    duration_s=8.0,
                    count=400_000,
                    dport=PORT,
                    tick_s=0.001,  # a burst every millisecond: no gap goes unseen
                )
            )
            wait_for(lambda: cookies_sent(iface, ns) > 1000, 10, "the flood answered")
            stack_before = kernel_cookies(stand)
            log = tmp_path / "run2.log"
            with running(stand, cfg, log) as run:
                (up,) = named(log, "upgraded")
                (adopted,) = named(log, "adopted")
                new_id = prog_id(iface, ns)
                # Counters kept: they go on from where they were, and move.
                before = cookies_sent(iface, ns)
                wait_for(lambda: cookies_sent(iface, ns) > before + 1000, 10, "cookies after")
                assert syn.is_alive(), "the flood ended before the upgrade was checked"
                half.ack()
                assert accepted(ls, 41_000, 5), "the old SYN-ACK's handshake did not complete"
                run.send_signal(signal.SIGTERM)
                assert run.wait(10) == 0
            syn.join(30)
            watch.finish()
            half.close()
            stack_after = kernel_cookies(stand)
        assert fl and fl[0].sent > 2_000
        # Not one flood SYN met an empty hook (the stack would have answered it).
        assert stack_after == stack_before, (stack_before, stack_after)
        assert adopted["object"] == "upgraded" and adopted["prog_id"] == new_id
        assert up["from_prog_id"] == old_id and up["prog_id"] == new_id != old_id
        assert {"xs_keys", "xs_verified", "xs_stats"} <= set(up["kept"]), up
        # Every pinned map kept (only maps nothing pins, e.g. a per-CPU cache, are
        # new), but the program table: it holds the new object's own programs.
        assert up["refilled"] == up["migrated"] == [], up
        assert set(up["recreated"]) & set(datapath.PIN_MAPS) == set(datapath.PROGRAM_MAPS), up
        assert up["to_object"] == new_sha[:12]
        assert record_sha(iface, ns) == new_sha
        # Never an empty hook; the old program, then the new one.
        assert watch.polls > 100 and watch.empty == 0, (watch.polls, watch.empty)
        assert watch.seen == [old_id, new_id], watch.seen
        assert stat(iface, ns, Reason.ACK_VALID) >= 1
        # A third run finds the installed object running: adopts, no upgrade.
        log = tmp_path / "run3.log"
        with running(stand, cfg, log):
            assert not named(log, "upgraded")
            assert named(log, "adopted")[0]["object"] == "same"
    finally:
        if watch is not None:
            watch.finish()
        cleanup(cfg)


def test_upgrade_that_would_lose_state_is_refused_and_the_old_shield_runs(
    stand: Stand, tmp_path: Path, farm: ObjectFarm
) -> None:
    ns, iface = stand.ns("server"), stand.server_if
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(CONFIG.format(iface=iface, port=PORT))
    try:
        old_id = first_run(stand, cfg, tmp_path / "run1.log")
        old_sha = record_sha(iface, ns)
        farm.install("xdpshield_test_verified_small.o")
        log = tmp_path / "run2.log"
        with listener(stand) as ls, running(stand, cfg, log):
            (refused,) = named(log, "upgrade-refused")
            assert refused["level"] == "error"
            assert (
                "map xs_verified: max_entries is 65536, this object wants 32768"
                in (refused["error"])
            ), refused
            assert not named(log, "upgraded")
            (adopted,) = named(log, "adopted")
            assert adopted["object"] == "differs"
            assert prog_id(iface, ns) == old_id and record_sha(iface, ns) == old_sha
            with netns.enter(ns):
                cur = query_xdp(iface)
            assert cur is not None and cur.prog_id == old_id
            # The old shield answers and completes handshakes as before.
            half = HalfOpen(stand, sport=41_001)
            half.ack()
            half.close()
            assert accepted(ls, 41_001, 5)
    finally:
        cleanup(cfg)


def test_upgrade_migrates_a_table_that_grew(stand: Stand, tmp_path: Path, farm: ObjectFarm) -> None:
    ns, iface = stand.ns("server"), stand.server_if
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(CONFIG.format(iface=iface, port=PORT))
    try:
        first_run(stand, cfg, tmp_path / "run1.log")
        expires = time.monotonic_ns() + 600 * 10**9
        with Shield.open(iface, netns=ns) as s:
            s.maps["xs_verified"].update(
                datapath.vkey("198.18.1.77"), struct.pack("=QII", expires, 0, 0)
            )
        farm.install("xdpshield_test_verified_big.o")
        log = tmp_path / "run2.log"
        with running(stand, cfg, log):
            (up,) = named(log, "upgraded")
            assert up["migrated"] == ["xs_verified"], up
            assert "xs_keys" in up["kept"]
            with Shield.open(iface, netns=ns) as s:
                assert s.maps["xs_verified"].max_entries == 131072
                assert any(str(a) == "198.18.1.77" for a in s.verified_sources())
    finally:
        cleanup(cfg)


def test_obj_dir_override_is_what_the_run_sees(farm: ObjectFarm) -> None:
    """The hook these tests use: the folder in XDPSHIELD_OBJ_DIR is the installed one."""
    assert os.environ["XDPSHIELD_OBJ_DIR"] == str(farm.path)
    sha = farm.install("xdpshield_test_resha.o")
    from xdpshield.objects import shield_object

    assert object_digest(shield_object()) == sha


def test_upgrade_refills_changed_policy_tables_and_keeps_live_blocks(
    stand: Stand, tmp_path: Path, farm: ObjectFarm
) -> None:
    ns, iface = stand.ns("server"), stand.server_if
    cfg = tmp_path / "xdpshield.toml"
    cfg.write_text(
        CONFIG.format(iface=iface, port=PORT) + '\n[deny]\nprefixes = ["203.0.113.0/24"]\n'
    )
    try:
        first_run(stand, cfg, tmp_path / "run1.log")
        assert ping(stand, 4)
        r = xdpshield(stand, "deny", iface, "add", "198.18.1.0/24")  # the client's network
        assert r.returncode == 0, r.stderr
        assert not ping(stand, 4)
        # A request the host just sent (as tc egress notes it): its reply
        # must still pass in the new tables.
        asked = policy.refl_key(stand.addr("client", 4), 53, 40000)
        with Shield.open(iface, netns=ns) as s:
            policy.note_request(s.maps, asked, time.monotonic_ns() + 600 * 10**9)
        farm.install("xdpshield_test_lists_small.o")
        log = tmp_path / "run2.log"
        with running(stand, cfg, log):
            (up,) = named(log, "upgraded")
            assert {"xs_deny4", "xs_allow4", "xs_psel"} <= set(up["refilled"]), up
            assert up["changed"]["xs_deny4"] == "max_entries is 2097152, this object wants 65536"
            assert "xs_keys" in up["kept"] and "xs_stats" in up["kept"]
            with Shield.open(iface, netns=ns) as s:
                assert s.maps["xs_deny4"].max_entries == 65536
                entries = {str(e.prefix): e.live for e in s.list_entries("deny")}
                assert asked in set(s.maps["xs_refl"].keys())
            assert entries == {"203.0.113.0/24": False, "198.18.1.0/24": True}, entries
            assert not ping(stand, 4)  # the live block holds through the upgrade
            assert stat(iface, ns, Reason.DENY) > 0
    finally:
        cleanup(cfg)
