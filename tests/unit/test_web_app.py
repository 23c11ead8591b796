"""The metrics server's routes, over a real socket on loopback: Prometheus
at /metrics (and at / for a client that does not ask for HTML), the page
for a browser, the JSON, nothing that writes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from xdpshield.errors import XdpShieldError
from xdpshield.ops import web
from xdpshield.ops.metrics import METRICS


@pytest.fixture
def server() -> Iterator[web.WebServer]:
    s = web.serve("127.0.0.1", 0, lambda: [])
    try:
        yield s
    finally:
        s.close()


def get(url: str, **headers: str) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_routes(server: web.WebServer) -> None:
    code, ctype, body = get(f"{server.url}/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    # With no shield: the build info alone, and the help of every metric.
    assert 'xdpshield_build_info{object_sha256="' in body
    for name in METRICS:
        assert f"# HELP {name} " in body, name
    # A scraper or curl at / gets the metrics, as before the page; a browser the page.
    assert get(f"{server.url}/")[2] == body
    code, ctype, page = get(f"{server.url}/", Accept="text/html,application/xhtml+xml")
    assert code == 200 and ctype.startswith("text/html")
    assert 'fetch("/api/status"' in page and "setInterval(poll, 1000)" in page
    # Self-contained: nothing loaded from elsewhere.
    assert "src=" not in page and "http://" not in page and "https://" not in page
    code, ctype, status = get(f"{server.url}/api/status")
    assert code == 200 and ctype == "application/json"
    assert json.loads(status)["shields"] == []
    assert get(f"{server.url}/nothing")[0] == 404


def test_read_only(server: web.WebServer) -> None:
    req = urllib.request.Request(f"{server.url}/api/status", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    assert exc.value.code == 405


def test_a_taken_port_is_a_clear_error(server: web.WebServer) -> None:
    with pytest.raises(XdpShieldError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        web.serve("127.0.0.1", server.port, lambda: [])


def test_every_reason_is_classified_on_purpose() -> None:
    """A new reason in shared.h must be put among the drops, the answers or
    the passes by hand: the dashboard's drop panels sum verdict="drop"."""
    from xdpshield.ops.metrics import ANSWER_REASONS, DROP_REASONS, PASS_REASONS
    from xdpshield.shield.datapath import Reason

    passing = (
        "pass-non-ip", "pass-unprotected", "ack-valid", "verified-pass", "pass-fragment",
        "established-pass", "handoff", "handoff-no-listener", "syn-existing-socket",
        "syn-under-threshold", "stray-under-threshold", "allow-pass", "rule-pass",
        "guard-missing", "ack-seen-pass",
    )  # fmt: skip
    assert sorted(r.label for r in PASS_REASONS) == sorted(passing)
    assert not (DROP_REASONS & ANSWER_REASONS)
    assert set(Reason) == DROP_REASONS | ANSWER_REASONS | PASS_REASONS
