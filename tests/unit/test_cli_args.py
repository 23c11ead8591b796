"""The command's argument checks, in process: a conflict or an empty list is an
error that names it, before anything is loaded (Shield is replaced by a fake
that records what it was asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from xdpshield import cli
from xdpshield.cli import shield as cli_shield
from xdpshield.errors import ConfigError
from xdpshield.ops.daemon import Daemon
from xdpshield.shield.core import LoadRecord, host_path
from xdpshield.shield.datapath import GuardOptions


class FakeShield:
    """Stands in for Shield in cli: records load()'s arguments."""

    loads: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.warnings: list[str] = []

    @classmethod
    def load(cls, iface: str, **kw: Any) -> FakeShield:
        cls.loads.append({"iface": iface, **kw})
        return cls(list(kw["ports"]))

    def status(self) -> Any:
        class St:
            iface, xdp_mode, prog_id, handshake, handshake_why = "x0", "native", 1, "reset", ""
            ports = self.ports

        return St()

    def __enter__(self) -> FakeShield:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    FakeShield.loads = []
    monkeypatch.setattr(cli_shield, "Shield", FakeShield)
    return FakeShield.loads


def test_mode_and_handshake_that_disagree_are_refused(
    loads: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["load", "x0", "--mode", "reset", "--handshake", "transparent", "--protect", "80"]
    assert cli.main(argv) == 1
    assert "--mode reset and --handshake transparent disagree" in capsys.readouterr().err
    assert loads == []


@pytest.mark.parametrize(
    ("argv", "handshake", "xdp_mode"),
    [
        (["--mode", "reset"], "reset", "auto"),
        (["--mode", "transparent", "--handshake", "transparent"], "transparent", "auto"),
        (["--mode", "native", "--handshake", "reset"], "reset", "native"),
        ([], "auto", "auto"),
    ],
)
def test_mode_shorthand_still_accepted(
    loads: list[dict[str, Any]], argv: list[str], handshake: str, xdp_mode: str
) -> None:
    assert cli.main(["load", "x0", "--protect", "80", *argv]) == 0
    assert [(ld["handshake"], ld["xdp_mode"]) for ld in loads] == [(handshake, xdp_mode)]


@pytest.mark.parametrize("empty", ["", ",", " , "])
def test_explicitly_empty_protect_is_an_error(
    loads: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], empty: str
) -> None:
    assert cli.main(["load", "x0", "--protect", empty]) == 1
    err = capsys.readouterr().err
    assert f"--protect {empty!r} names no port" in err and "nothing would be protected" in err
    assert loads == []


def test_no_protect_loads_with_a_warning_that_says_how(
    loads: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["load", "x0"]) == 0
    err = capsys.readouterr().err
    assert "no TCP port is protected on x0" in err
    assert "xdpshield ports x0 add" in err
    assert [ld["ports"] for ld in loads] == [[]]


def test_protect_given_has_no_warning(
    loads: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["load", "x0", "--protect", "22,80"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert [ld["ports"] for ld in loads] == [[22, 80]]


@pytest.mark.parametrize("period", ["0", "-5", "0.5", "100000"])
def test_daemon_rotation_period_out_of_range_is_an_error(
    capsys: pytest.CaptureFixture[str], period: str
) -> None:
    # Checked before the shield is opened: no root or shield needed to be told.
    assert cli.main(["daemon", "nosuchif0", "--rotate-keys", period]) == 1
    err = capsys.readouterr().err
    assert f"--rotate-keys {float(period):g}: the period must be 1 to 86400 seconds" in err


def test_daemon_rotation_zero_is_not_the_default() -> None:
    class Fake:
        def __init__(self) -> None:
            self.record = LoadRecord("x0", options=GuardOptions(key_rotation_s=45.0))
            self.tracks_seen = False

    with pytest.raises(ConfigError, match=r"rotate_s: key rotation period 0\.0 s"):
        Daemon(Fake(), rotate_s=0)  # type: ignore[arg-type]
    # None: the period the shield was loaded with.
    assert Daemon(Fake(), rotate_s=None).rotate_s == 45.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seen", "host"),
    [
        ("/proc/4242/root/sys/fs/bpf/xdpshield/netns-a/v0", "/sys/fs/bpf/xdpshield/netns-a/v0"),
        ("/sys/fs/bpf/xdpshield/v0", "/sys/fs/bpf/xdpshield/v0"),
        ("/proc/self/root/sys/fs/bpf", "/proc/self/root/sys/fs/bpf"),
    ],
)
def test_host_path_strips_the_proc_root_detour(seen: str, host: str) -> None:
    assert host_path(Path(seen)) == host
