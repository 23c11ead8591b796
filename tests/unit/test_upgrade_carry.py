"""What an upgrade carries of the running shield's live list entries: all of
them, none from a shield that predates the lists, and a refusal (nothing
changed) when it cannot read them, rather than new tables without them."""

from __future__ import annotations

from typing import Any, cast

import pytest

from xdpshield.errors import UpgradeRefused
from xdpshield.policy.model import Prefix
from xdpshield.shield.core import Shield
from xdpshield.shield.policy import ListEntry
from xdpshield.shield.upgrade import _live_entries

NET = Prefix(4, bytes([203, 0, 113, 0]), 24)
CFG = Prefix(4, bytes([198, 51, 100, 0]), 24)


class Running:
    """The part of a running Shield that _live_entries reads."""

    def __init__(self, maps: dict[str, Any], entries: list[ListEntry] | Exception) -> None:
        self.maps, self.iface, self.entries = maps, "eth9", entries

    def list_entries(self, which: str) -> list[ListEntry]:
        if isinstance(self.entries, Exception):
            raise self.entries
        return self.entries if which == "deny" else []


def carried(r: Running) -> dict[str, dict[Any, float | None]]:
    return _live_entries(cast(Shield, r))


def test_only_live_entries_are_carried() -> None:
    got = carried(Running({"xs_psel": None}, [ListEntry(NET, 0, True), ListEntry(CFG, 0, False)]))
    assert got == {"allow": {}, "deny": {NET: None}}


def test_a_shield_from_before_the_lists_has_none() -> None:
    assert carried(Running({}, KeyError("xs_psel"))) == {}


def test_lists_it_cannot_read_refuse_the_upgrade() -> None:
    with pytest.raises(UpgradeRefused) as exc:
        carried(Running({"xs_psel": None}, ValueError("unpack requires a buffer of 16 bytes")))
    assert "eth9" in str(exc.value) and "allow list" in str(exc.value)
    assert "left as it is" in str(exc.value)
