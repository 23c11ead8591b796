"""Shared fixtures: root/kernel probes, built objects, and throwaway namespaces.

Namespaces and links carry a random prefix so tests (and stands) can coexist,
and are removed in a ``finally`` even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xdpshield import netns
from xdpshield.lab.stand import Stand
from xdpshield.objects import obj_dir
from xdpshield.shield import core as shield

ROOT = Path(__file__).resolve().parent.parent
OBJ_DIR = obj_dir()


def obj_path(name: str) -> Path:
    path = OBJ_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run 'make build'")
    return path


@pytest.fixture(autouse=True)
def _needs_root(request: pytest.FixtureRequest) -> None:
    """Datapath and stand tests need root; say so instead of failing obscurely."""
    layer = Path(str(request.node.fspath)).parent.name
    if layer in ("datapath", "stand") and os.geteuid() != 0:
        pytest.skip(f"{layer} tests need root (BPF and namespaces)")


@dataclass
class VethPair:
    """Two namespaces joined by veth: ``outer`` in ``ns_outer``, ``inner`` in ``ns_inner``."""

    prefix: str
    ns_outer: str
    ns_inner: str
    outer: str
    inner: str
    addr_outer: str = "198.18.0.1"
    addr_inner: str = "198.18.0.2"
    addr6_outer: str = "fd00:5::1"
    addr6_inner: str = "fd00:5::2"


@pytest.fixture
def veth() -> Iterator[VethPair]:
    prefix = netns.unique_prefix("xt")
    pair = VethPair(prefix, f"{prefix}-out", f"{prefix}-in", f"{prefix}o", f"{prefix}i")
    try:
        for ns in (pair.ns_outer, pair.ns_inner):
            netns.create(ns)
        netns.veth_pair(pair.outer, pair.inner, pair.ns_outer, pair.ns_inner)
        netns.add_address(pair.outer, f"{pair.addr_outer}/24", pair.ns_outer)
        netns.add_address(pair.inner, f"{pair.addr_inner}/24", pair.ns_inner)
        netns.add_address(pair.outer, f"{pair.addr6_outer}/64", pair.ns_outer)
        netns.add_address(pair.inner, f"{pair.addr6_inner}/64", pair.ns_inner)
        yield pair
    finally:
        for ns in (pair.ns_outer, pair.ns_inner):
            netns.remove(ns)
            # Pins an unload kept (cookie keys, verified sources) outlive the namespace.
            shield.forget_namespace(ns)


@contextlib.contextmanager
def stand_up(prefix: str = "xs", **kw: Any) -> Iterator[Stand]:
    """A stand (client, attacker, server) that is up, with a unique prefix
    and ``kw`` (Stand's fields); always removed."""
    s = Stand(prefix=netns.unique_prefix(prefix), **kw)
    try:
        s.up()
        yield s
    finally:
        s.down()


@pytest.fixture
def stand() -> Iterator[Stand]:
    """The lab's stand, up; always removed."""
    with stand_up() as s:
        yield s
