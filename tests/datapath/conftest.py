"""Each datapath test runs on one CPU.

The data path keeps state per CPU (flood windows, caches, sample buckets,
the clock's learnt offset, the limits' drop cache), and a test run executes
on whichever CPU its thread is on: a test the scheduler moved between two
test runs would meet another CPU's state. Each xdist worker takes a CPU of
its own, so the workers still run side by side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_cpu() -> Iterator[None]:
    allowed = sorted(os.sched_getaffinity(0))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ... under xdist
    n = int(worker[2:]) if worker[2:].isdigit() else 0
    os.sched_setaffinity(0, {allowed[n % len(allowed)]})
    yield
    os.sched_setaffinity(0, set(allowed))
