"""The load record: written by one process, read by the next (the CLI, the daemon),
possibly of an earlier version."""

from __future__ import annotations

import json

import pytest

from xdpshield.errors import ConfigError
from xdpshield.shield.core import HANDSHAKE_MODES, Handshake, LoadRecord
from xdpshield.shield.datapath import GuardOptions

SOURCE = "/run/xdpshield/netns-xs1a2b/v0.json"

# What the version before LoadRecord wrote (Shield.load's dict): no ifindex.
PREVIOUS = {
    "iface": "v0",
    "prog_id": 812,
    "xdp_mode": "native",
    "handshake": "transparent",
    "handshake_why": "auto: the kernel has bpf_sk_assign_tcp_reqsk",
    "debug": False,
    "loaded_at": 1700000000.5,
    "options": {"debug": False, "key_rotation_s": 30.0, "syn_flood_pps": 0, "rst_pps": 7},
    "netns": "xs1a2b",
}


def test_round_trip_keeps_every_field() -> None:
    rec = LoadRecord(
        iface="v0",
        ifindex=7,
        prog_id=812,
        xdp_mode="generic",
        handshake=Handshake.RESET,
        handshake_why="requested",
        debug=True,
        loaded_at=12.5,
        options=GuardOptions(key_rotation_s=90.0, wscale=3, transparent=False),
        netns="xs1a2b",
    )
    assert LoadRecord.from_json(rec.to_json()) == rec
    assert json.loads(rec.to_json())["handshake"] == "reset"  # the CLI's spelling


def test_a_record_of_the_previous_version_reads_with_defaults() -> None:
    rec = LoadRecord.from_json(json.dumps(PREVIOUS), source=SOURCE)
    assert rec.handshake is Handshake.TRANSPARENT
    assert rec.options.key_rotation_s == 30.0 and rec.options.rst_pps == 7
    assert rec.options.wscale == GuardOptions().wscale  # absent: the default
    assert rec.ifindex == 0 and rec.netns == "xs1a2b" and rec.prog_id == 812


def test_a_bare_record_is_all_defaults_but_the_interface() -> None:
    assert LoadRecord.from_json("{}", iface="v0") == LoadRecord("v0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", f"{SOURCE}: not JSON"),
        ("[1, 2]", f"{SOURCE}: not a JSON object but list"),
        ('{"iface": "v0", "prog_id": "812"}', f"{SOURCE}: prog_id: expected int, got '812'"),
        ('{"iface": "v0", "debug": 1}', f"{SOURCE}: debug: expected bool, got 1"),
        ('{"iface": "v0", "prog_id": true}', f"{SOURCE}: prog_id: expected int, got True"),
        ('{"iface": "v0", "handshake": "fast"}', f"{SOURCE}: handshake: 'fast' is not"),
        ('{"iface": "v0", "options": 5}', f"{SOURCE}: options: expected an object, got 5"),
        (
            '{"iface": "v0", "options": {"wscale": "7"}}',
            f"{SOURCE}: options.wscale: expected int, got '7'",
        ),
        (
            '{"iface": "v0", "options": {"wscale": 99}}',
            f"{SOURCE}: options.wscale: must be in [0, 14]",
        ),
        ("{}", f"{SOURCE}: iface: names no interface"),
    ],
)
def test_garbage_is_refused_naming_the_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as got:
        LoadRecord.from_json(text, source=SOURCE)
    assert str(got.value).startswith(message)


def test_handshake_modes_are_the_cli_spellings() -> None:
    assert HANDSHAKE_MODES == ("auto", "transparent", "reset")
    assert Handshake("transparent") is Handshake.TRANSPARENT
    assert f"{Handshake.RESET}" == "reset"  # printed as the user typed it


def test_the_record_is_frozen() -> None:
    rec = LoadRecord("v0")
    with pytest.raises(AttributeError):
        rec.prog_id = 5  # type: ignore[misc]
