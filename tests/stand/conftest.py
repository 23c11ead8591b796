"""Stand fixtures: the service tests' object farm, and no run records left."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdpshield.ops.service import RUNS_DIR

from .svc import ObjectFarm


@pytest.fixture(scope="session", autouse=True)
def _no_run_files_left() -> Iterator[None]:
    """Whatever records the tests' runs left under /run/xdpshield/run (pid
    and state files of runs they killed, their event files) go at the end
    of the session (not per test: a module's runs outlive its tests)."""
    before = set(RUNS_DIR.glob("*")) if RUNS_DIR.is_dir() else set()
    yield
    if RUNS_DIR.is_dir():
        for p in set(RUNS_DIR.glob("*")) - before:
            p.unlink(missing_ok=True)
        for d in (RUNS_DIR, RUNS_DIR.parent):  # only when nothing else is in them
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.fixture
def farm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ObjectFarm:
    """XDPSHIELD_OBJ_DIR points at a folder of links to the built objects
    (this process and the runs it starts): ``farm.install(NAME)`` makes
    NAME the installed shield object."""
    f = ObjectFarm(tmp_path / "obj")
    f.install("xdpshield.o")
    monkeypatch.setenv("XDPSHIELD_OBJ_DIR", str(f.path))
    return f
