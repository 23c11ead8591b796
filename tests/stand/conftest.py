"""Stand fixtures of the service tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .svc import ObjectFarm


@pytest.fixture
def farm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ObjectFarm:
    """XDPSHIELD_OBJ_DIR points at a folder of links to the built objects
    (this process and the runs it starts): ``farm.install(NAME)`` makes
    NAME the installed shield object."""
    f = ObjectFarm(tmp_path / "obj")
    f.install("xdpshield.o")
    monkeypatch.setenv("XDPSHIELD_OBJ_DIR", str(f.path))
    return f
