"""The TCP options the shield may offer follow the protected stack's sysctls."""

from __future__ import annotations

from pathlib import Path

from xdpshield.shield import datapath


def _sysctl(root: Path, name: str, value: str) -> None:
    path = root / "net" / "ipv4" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")


def test_options_follow_the_sysctls(tmp_path: Path) -> None:
    _sysctl(tmp_path, "tcp_timestamps", "2")  # on, without random offsets
    _sysctl(tmp_path, "tcp_sack", "0")
    _sysctl(tmp_path, "tcp_ecn", "2")  # the default: accept ECN when asked
    # tcp_window_scaling unreadable: the kernel's default, on.
    found = datapath.stack_options(str(tmp_path))
    assert found == {"timestamps": True, "sack": False, "window_scaling": True, "ecn": True}
    consts = datapath.constants(datapath.GuardOptions(**found))
    assert consts["xs_server_opts"] == datapath.SRV_TS | datapath.SRV_WS | datapath.SRV_ECN


def test_every_option_off(tmp_path: Path) -> None:
    for name in ("tcp_timestamps", "tcp_sack", "tcp_window_scaling", "tcp_ecn"):
        _sysctl(tmp_path, name, "0")
    found = datapath.stack_options(str(tmp_path))
    assert not any(found.values())
    assert datapath.constants(datapath.GuardOptions(**found))["xs_server_opts"] == 0
