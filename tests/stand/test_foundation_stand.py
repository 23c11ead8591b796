"""Attach for real on a veth in a namespace; drive the real CLI; check every error path.

Each test gets fresh, uniquely named namespaces (conftest ``veth``), removed even
on failure. The shield side is ``inner`` in ``ns_inner``; pings come from ``outer``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import VethPair
from xdpshield import netns
from xdpshield.ebpf import (
    ObjectSpec,
    TcLink,
    UInt,
    XdpLink,
    attach_tc,
    attach_xdp,
    bpffs_root,
    detach_tc,
    detach_xdp,
    query_tc,
    query_xdp,
    sum_percpu,
)
from xdpshield.errors import AlreadyAttached, NotAttached
from xdpshield.objects import obj_dir

OBJ = obj_dir()


def ping(pair: VethPair, count: int = 3, v6: bool = False) -> subprocess.CompletedProcess[str]:
    dst = pair.addr6_inner if v6 else pair.addr_inner
    with netns.enter(pair.ns_outer):
        return subprocess.run(
            ["ping", "-6" if v6 else "-4", "-c", str(count), "-i", "0.2", "-W", "2", dst],
            capture_output=True,
            text=True,
            check=False,
        )


def cli(
    pair: VethPair, *args: str, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed command, run the way a person would: ip netns exec."""
    argv = ["ip", "netns", "exec", pair.ns_inner]
    if user:
        argv += [
            "setpriv",
            f"--reuid={user}",
            f"--regid={user}",
            "--clear-groups",
            "--inh-caps=-all",
        ]
    argv += [sys.executable, "-m", "xdpshield", *args]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def pins_for(pair: VethPair) -> Path:
    return bpffs_root() / "xdpshield" / f"netns-{pair.ns_inner}"


def nothing_left(pair: VethPair) -> None:
    with netns.enter(pair.ns_inner):
        assert query_xdp(pair.inner) is None
    assert not (pins_for(pair) / pair.inner).exists()


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_attach_counts_real_pings(veth: VethPair, mode: str) -> None:
    with netns.enter(veth.ns_inner):
        coll = ObjectSpec(OBJ / "test_counter.o").load()
        att = attach_xdp(coll.program("xdp_count"), veth.inner, mode)
        assert att.mode == mode
        assert query_xdp(veth.inner) == att
    try:
        assert ping(veth, 3).returncode == 0
        hits = coll.map("hits").typed(UInt(4), UInt(8))
        # 3 echo requests, plus ARP (and maybe ND) frames: at least the pings counted
        assert sum_percpu(hits.lookup_percpu(0)) >= 3
    finally:
        with netns.enter(veth.ns_inner):
            detach_xdp(veth.inner)
            assert query_xdp(veth.inner) is None
        coll.close()


def test_second_attach_is_refused(veth: VethPair) -> None:
    with netns.enter(veth.ns_inner):
        coll = ObjectSpec(OBJ / "test_counter.o").load()
        try:
            attach_xdp(coll.program("xdp_pass"), veth.inner, "native")
            with pytest.raises(AlreadyAttached, match=veth.inner):
                attach_xdp(coll.program("xdp_count"), veth.inner, "generic")
        finally:
            detach_xdp(veth.inner)
            coll.close()


def test_a_link_detaches_only_its_own_program(veth: VethPair) -> None:
    # XDP: a program put in place of the link's (replace) is left alone.
    with netns.enter(veth.ns_inner):
        coll = ObjectSpec(OBJ / "test_counter.o").load()
        try:
            link = XdpLink.attach(coll.program("xdp_pass"), veth.inner, "native")
            assert link.attached() and link.mode == "native"
            other = attach_xdp(coll.program("xdp_count"), veth.inner, "native", replace=True)
            assert not link.attached()
            with pytest.raises(NotAttached, match=f"not ours \\({link.prog_id}\\)"):
                link.detach()
            assert query_xdp(veth.inner) == other
            other.detach()
            assert query_xdp(veth.inner) is None
            # tc: the link's filter goes; detached, it says so and touches nothing.
            tc = TcLink.attach(coll.program("tc_count"), veth.inner, handle=7, priority=3)
            assert tc.attached()
            tc.detach()
            assert not tc.attached() and query_tc(veth.inner, handle=7, priority=3) is None
            with pytest.raises(NotAttached, match="no tc filter 7/3"):
                tc.detach()
        finally:
            with contextlib.suppress(NotAttached):
                detach_xdp(veth.inner)
            with contextlib.suppress(NotAttached):
                detach_tc(veth.inner, handle=7, priority=3)
            coll.close()


def test_tc_ingress_program_sees_packets(veth: VethPair) -> None:
    with netns.enter(veth.ns_inner):
        coll = ObjectSpec(OBJ / "test_counter.o").load()
        att = attach_tc(coll.program("tc_count"), veth.inner)
        assert query_tc(veth.inner) == att.prog_id
    try:
        assert ping(veth, 2).returncode == 0
        hits = coll.map("hits").typed(UInt(4), UInt(8))
        assert sum_percpu(hits.lookup_percpu(0)) >= 2
    finally:
        with netns.enter(veth.ns_inner):
            detach_tc(veth.inner)
            assert query_tc(veth.inner) is None
        coll.close()


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_cli_load_status_stats_unload(veth: VethPair, mode: str) -> None:
    r = cli(veth, "load", veth.inner, "--mode", mode, "--protect", "22,80")
    assert r.returncode == 0, r.stderr
    assert f"{mode} XDP" in r.stdout
    try:
        st = json.loads(cli(veth, "status", "--json").stdout)
        assert [(s["iface"], s["attached"], s["xdp_mode"], s["ports"]) for s in st] == [
            (veth.inner, True, mode, [22, 80])
        ]
        assert ping(veth, 3).returncode == 0  # the shield passes ICMP and ARP
        stats = json.loads(cli(veth, "stats", veth.inner, "--json").stdout)
        assert stats["pass-unprotected"]["packets"] >= 3
        assert stats["pass-non-ip"]["packets"] >= 1  # ARP went through
        assert cli(veth, "ports", veth.inner, "add", "443").returncode == 0
        assert json.loads(cli(veth, "ports", veth.inner, "list", "--json").stdout) == [22, 80, 443]
    finally:
        r = cli(veth, "unload", veth.inner, "--purge")
    assert r.returncode == 0, r.stderr
    nothing_left(veth)
    assert "no xdpshield loaded" in cli(veth, "status").stdout


def test_loading_twice_is_a_clear_error(veth: VethPair) -> None:
    assert cli(veth, "load", veth.inner).returncode == 0
    try:
        r = cli(veth, "load", veth.inner)
        assert r.returncode != 0
        assert "already loaded" in r.stderr
    finally:
        cli(veth, "unload", veth.inner, "--purge")
    nothing_left(veth)


def test_a_host_without_bpffs_keeps_the_pins_of_ip_netns_exec(
    veth: VethPair, tmp_path: Path
) -> None:
    """On a host whose init mounts no bpffs, ``ip netns exec ... load`` mounts
    one where the next command finds it, not in the private mount namespace
    ``ip`` made (the pins would die with the command and the shield could not
    be seen or unloaded)."""
    xs = f"ip netns exec {veth.ns_inner} {sys.executable} -m xdpshield"
    out, rc = tmp_path / "out", tmp_path / "rc"
    # The "host": a private mount namespace with no bpffs at all, its shell
    # a child of init (no ancestor of it has a bpffs to find).
    script = f"""
        while umount /sys/fs/bpf 2>/dev/null; do :; done
        run() {{
            {xs} load {veth.inner} --protect 80 >/dev/null || return 11
            grep -c " /sys/fs/bpf .* - bpf " /proc/self/mountinfo
            {xs} status --json || return 12
            {xs} unload {veth.inner} --purge >/dev/null || return 13
        }}
        run >{out} 2>&1
        echo $? >{rc}.new && mv {rc}.new {rc}
    """
    subprocess.run(
        ["setsid", "-f", "unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        check=True,
        timeout=10,
    )
    end = time.monotonic() + 60
    while not rc.exists() and time.monotonic() < end:
        time.sleep(0.1)
    assert rc.read_text() == "0\n", out.read_text()
    mounted, _, status = out.read_text().partition("\n")
    assert mounted == "1"
    st = json.loads(status)
    assert [(s["iface"], s["attached"], s["ports"]) for s in st] == [(veth.inner, True, [80])]
    nothing_left(veth)


def test_foreign_xdp_program_is_not_replaced(veth: VethPair) -> None:
    with netns.enter(veth.ns_inner):
        coll = ObjectSpec(OBJ / "test_counter.o").load()
        att = attach_xdp(coll.program("xdp_pass"), veth.inner, "native")
    try:
        r = cli(veth, "load", veth.inner)
        assert r.returncode != 0 and f"program id {att.prog_id}" in r.stderr
        with netns.enter(veth.ns_inner):
            assert query_xdp(veth.inner) == att
        assert not (pins_for(veth) / veth.inner).exists()
    finally:
        with netns.enter(veth.ns_inner):
            detach_xdp(veth.inner)
        coll.close()


def test_missing_interface(veth: VethPair) -> None:
    r = cli(veth, "load", "nosuchif0")
    assert r.returncode != 0
    assert "no network interface named 'nosuchif0'" in r.stderr


def test_not_root(veth: VethPair) -> None:
    r = cli(veth, "load", veth.inner, user="65534")
    assert r.returncode != 0
    assert "needs root" in r.stderr
    nothing_left(veth)


def test_missing_object_file(veth: VethPair, tmp_path: Path) -> None:
    r = cli(veth, "load", veth.inner, env={"XDPSHIELD_OBJ_DIR": str(tmp_path)})
    assert r.returncode != 0
    assert "BPF object not found" in r.stderr and str(tmp_path) in r.stderr
    nothing_left(veth)


def test_verifier_rejection_leaves_nothing(veth: VethPair, tmp_path: Path) -> None:
    shutil.copy(OBJ / "test_bad_shield.o", tmp_path / "xdpshield.o")
    r = cli(veth, "load", veth.inner, env={"XDPSHIELD_OBJ_DIR": str(tmp_path)})
    assert r.returncode != 0
    assert "verifier rejected program 'xdp_bad'" in r.stderr
    assert "bad_shield.bpf.c:" in r.stderr
    nothing_left(veth)


def test_unload_when_not_loaded(veth: VethPair) -> None:
    r = cli(veth, "unload", veth.inner)
    assert r.returncode != 0 and "not loaded" in r.stderr
