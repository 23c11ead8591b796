"""``[fleet]`` in the config, and the fleet's key schedule (no store: the
stand test, tests/stand/test_fleet.py, runs a real one)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from xdpshield.ops.fleet import Entry, FleetNode
from xdpshield.policy.config import check_config, load_config
from xdpshield.policy.model import FleetConfig
from xdpshield.shield.core import Shield


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(tmp_path: Path, text: str) -> list[tuple[int | None, str, str]]:
    return [(e.line, e.key or "", e.message) for e in check_config(write(tmp_path, text))]


def test_fleet_keys_load(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "pass").write_text("secret\n")
    cfg = load_config(
        write(
            tmp_path,
            """
            [fleet]
            endpoints = ["rediss://store1.example:6380", "rediss://[fd00::7]:6380/2"]
            name = "edge-eu"
            node = "edge-eu-1"
            key_period = "2m"
            lease = "10s"
            tls_ca = "ca.pem"
            username = "shield"
            password_file = "pass"
            """,
        )
    )
    f = cfg.fleet
    assert f is not None
    assert f.endpoints == ("rediss://store1.example:6380", "rediss://[fd00::7]:6380/2")
    assert (f.name, f.node, f.key_period_s, f.lease_s) == ("edge-eu", "edge-eu-1", 120.0, 10.0)
    assert f.tls and f.tls_ca == str(tmp_path / "ca.pem")
    assert f.password_file == str(tmp_path / "pass")
    # The password itself is never part of the config object.
    assert "secret" not in repr(f)
    assert load_config(write(tmp_path, "")).fleet is None


def test_fleet_errors_name_file_line_and_key(tmp_path: Path) -> None:
    errs = errors_of(
        tmp_path,
        """
        [fleet]
        endpoints = ["http://store:6379", "redis://ok:6379"]
        key_period = "1s"
        lease = "soon"
        tls_ca = "nowhere.pem"
        colour = "blue"
        """,
    )
    by_line = {line: (key, msg) for line, key, msg in errs}
    assert by_line[2][0].startswith("fleet.endpoints") and "redis://" in by_line[2][1]
    assert by_line[3][0] == "fleet.key_period" and "outside" in by_line[3][1]
    assert by_line[4][0] == "fleet.lease"
    assert by_line[5][0] == "fleet.tls_ca" and "nowhere.pem" in by_line[5][1]
    assert by_line[6][0] == "fleet.colour" and "unknown key" in by_line[6][1]


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ('name = "x"', 1, "needs endpoints"),
        ("endpoints = []", 2, "at least one"),
        ('endpoints = ["redis://a:1", "rediss://b:2"]', 2, "all TLS or none"),
        ('endpoints = ["redis://a:1"]\ntls_ca = "ca.pem"', 3, "rediss://"),
        ('endpoints = ["redis://a:1"]\nkey_period = "10s"\nlease = "6s"', 4, "half"),
        ('endpoints = ["rediss://a:1"]\ntls_cert = "ca.pem"', 3, "go together"),
    ],
)
def test_fleet_refuses(tmp_path: Path, body: str, line: int, words: str) -> None:
    (tmp_path / "ca.pem").write_text("x")
    errs = errors_of(tmp_path, "[fleet]\n" + body + "\n")
    assert any(ln == line and words in msg for ln, _, msg in errs), errs


def _node(period: float = 10.0) -> FleetNode:
    def no_shields() -> list[Shield]:
        return []

    cfg = FleetConfig(endpoints=("redis://127.0.0.1:1",), key_period_s=period)
    return FleetNode(cfg, "n1", no_shields, lambda *a, **k: None)


def test_key_schedule_stages_the_next_key_under_an_older_epoch() -> None:
    node = _node()
    k = {e: bytes([e % 256]) * 16 for e in (99, 100, 101)}
    node.fleet_keys = dict(k)
    # Early in epoch 100: current in its slot, the previous in the other.
    e, want = node.wanted_keys(1002.0)
    assert e == 100 and want == {0: (k[100], 100), 1: (k[99], 99)}
    # Past half the period: the next key is checked (slot 1) but labelled
    # older than the current one, so nobody mints with it yet.
    e, want = node.wanted_keys(1006.0)
    assert want == {0: (k[100], 100), 1: (k[101], 99)}
    # At its epoch: relabelled, minted with.
    e, want = node.wanted_keys(1010.0)
    assert e == 101 and want[1] == (k[101], 101) and want[0] == (k[100], 100)


def test_without_a_fleet_key_a_node_rotates_alone_then_takes_the_fleets() -> None:
    node = _node()
    node.fleet_keys = {100: b"a" * 16}
    _, want = node.wanted_keys(1011.0)  # epoch 101: no fleet key
    alone = want[1]
    assert alone[1] == 101 and alone[0] != b"a" * 16 and node.alone_since == 101
    assert node.wanted_keys(1012.0)[1][1] == alone  # the same key for the epoch
    node.fleet_keys[101] = b"b" * 16  # back with the store
    assert node.wanted_keys(1013.0)[1][1] == (b"b" * 16, 101)


def test_entry_round_trip_and_expiry() -> None:
    e = Entry(True, 1000.5, 990.25, "n2")
    assert Entry.from_json(e.to_json()) == e
    assert e.live(1000.0) and not e.live(1000.5)
    assert not Entry(False, None, 1.0, "n1").live(0.0)
    with pytest.raises(ValueError):
        Entry.from_json("not json")
