"""The metrics server: Prometheus at ``/metrics``, a live local page at ``/``.

One small WSGI app, served by wsgiref in a thread (one thread per request),
used by ``xdpshield run`` and ``xdpshield daemon --metrics``:

- ``/metrics``: the Prometheus text of :mod:`xdpshield.ops.metrics`;
- ``/``: a read-only HTML page (everything inline, no CDN) that polls
  ``/api/status`` each second: rates per reason (pps, bit/s), the top
  sources (the blocks, by their drops), blocks, verified sources, key age.
  A client that does not ask for HTML (Prometheus, curl) gets the metrics
  at ``/`` too, as the server before it answered every path;
- ``/api/status``: the same as JSON (:meth:`StatusSource.status`).

Rates are the counters' differences over the last second or more: the
server keeps a few snapshots per shield (taken when a client asks, nothing
when nobody looks), so a rate never depends on how often a page polls.
Read-only: no route changes anything; it listens on 127.0.0.1 unless told.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import make_wsgi_app

from xdpshield import __version__
from xdpshield.errors import XdpShieldError
from xdpshield.ops.metrics import registry_for, verdict_of
from xdpshield.shield.core import Shield
from xdpshield.shield.datapath import Reason

__all__ = ["StatusSource", "WebServer", "make_app", "serve"]

#: Rates are over at least this long (the page polls once a second).
WINDOW_S = 1.0
#: Snapshots kept per shield (many clients polling fast: a shorter window).
KEEP = 32
#: Blocks shown on the page (the most drops first); the count says how many there are.
TOP_N = 20

_Totals = dict[Reason, tuple[int, int]]


@dataclass
class _History:
    prog_id: int
    snaps: deque[tuple[float, _Totals]]


class StatusSource:
    """What ``/api/status`` answers, read from the shields at each call."""

    def __init__(
        self,
        shields: Callable[[], Iterable[Shield]],
        *,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = WINDOW_S,
    ) -> None:
        self._shields = shields
        self._clock = clock
        self.window_s = window_s
        self._history: dict[tuple[str | None, str], _History] = {}
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        out = []
        for s in list(self._shields()):
            try:
                out.append(self._shield(s))
            except (XdpShieldError, OSError):
                continue  # unloaded or reloaded under us: the next poll sees the new one
        return {"version": __version__, "time": time.time(), "shields": out}

    def _rates(self, s: Shield, totals: _Totals) -> tuple[float | None, _Totals | None]:
        """(seconds, totals then) of the snapshot the rates are over (None, None: first look)."""
        now = self._clock()
        key = (s.netns, s.iface)
        with self._lock:
            h = self._history.get(key)
            if h is None or h.prog_id != s.program.id:  # a new shield: counters from 0
                h = self._history[key] = _History(s.program.id, deque(maxlen=KEEP))
            old = [snap for snap in h.snaps if snap[0] <= now - self.window_s]
            base = old[-1] if old else (h.snaps[0] if h.snaps else None)
            h.snaps.append((now, totals))
            while len(h.snaps) > 1 and h.snaps[1][0] <= now - self.window_s:
                h.snaps.popleft()  # keep one snapshot older than the window, no more
        if base is None or now <= base[0]:
            return None, None
        return now - base[0], base[1]

    def _shield(self, s: Shield) -> dict[str, Any]:
        totals = s.stats()
        dt, then = self._rates(s, totals)
        reasons: list[dict[str, Any]] = []
        drop_pps = drop_bits = all_pps = all_bits = 0.0
        for reason, (p, b) in totals.items():
            pps: float | None = None
            bits: float | None = None
            if dt is not None and then is not None:
                p0, b0 = then.get(reason, (0, 0))
                rp, rb = max(0, p - p0) / dt, 8 * max(0, b - b0) / dt
                pps, bits = rp, rb
                all_pps, all_bits = all_pps + rp, all_bits + rb
                if verdict_of(reason) == "drop":
                    drop_pps, drop_bits = drop_pps + rp, drop_bits + rb
            if p or pps:
                reasons.append(
                    {
                        "reason": reason.label,
                        "verdict": verdict_of(reason),
                        "packets": p,
                        "bytes": b,
                        "pps": pps,
                        "bits_per_s": bits,
                    }
                )
        reasons.sort(key=lambda r: (-(r["pps"] or 0), -r["packets"]))
        now_ns = time.monotonic_ns()
        blocks = sorted(s.blocks(), key=lambda b: -b.drops)
        with s.in_netns():
            attached = s.xdp_link is not None and s.xdp_link.attached()
        age = s.key_age_s()
        return {
            "iface": s.iface,
            "netns": s.netns,
            "attached": attached,
            "mode": s.xdp_link.mode if attached and s.xdp_link else "detached",
            "prog_id": s.program.id,
            "key_epoch": s.current_epoch(),
            "key_age_s": None if age is None else round(age, 1),
            "verified_sources": len(s.verified_sources()),
            "protected_ports": s.ports,
            "window_s": dt,
            "rates": (
                None
                if dt is None
                else {
                    "pps": all_pps,
                    "bits_per_s": all_bits,
                    "drop_pps": drop_pps,
                    "drop_bits_per_s": drop_bits,
                }
            ),
            "reasons": reasons,
            "blocks_total": len(blocks),
            "blocks": [b.as_json(now_ns) for b in blocks[:TOP_N]],
            # The sources dropped most: the blocks for now. SAMPLES: add the
            # sampled sources (shield/samples.py, another branch) once on main.
            "top_sources": [
                {"source": str(b.prefix), "drops": b.drops, "from": "block"}
                for b in blocks[:TOP_N]
                if b.drops
            ],
            "rules": [
                {"name": r["name"], "packets": r["packets"], "bytes": r["bytes"]} for r in s.rules()
            ],
        }


def make_app(
    shields: Callable[[], Iterable[Shield]], *, status: StatusSource | None = None
) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """The WSGI app: ``/metrics``, ``/api/status``, ``/`` (see the module)."""
    metrics = make_wsgi_app(registry_for(shields))
    source = status or StatusSource(shields)

    def app(environ: WSGIEnvironment, start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start, "405 Method Not Allowed", "text/plain", b"read-only\n")
        if path == "/metrics" or (path == "/" and not _wants_html(environ)):
            result: Iterable[bytes] = metrics(environ, start)
            return result
        if path == "/":
            return _reply(start, "200 OK", "text/html; charset=utf-8", PAGE.encode())
        if path == "/api/status":
            body = json.dumps(source.status()).encode()
            return _reply(start, "200 OK", "application/json", body)
        return _reply(start, "404 Not Found", "text/plain", b"not found\n")

    return app


def _wants_html(environ: WSGIEnvironment) -> bool:
    return "text/html" in str(environ.get("HTTP_ACCEPT", ""))


def _reply(start: StartResponse, status: str, ctype: str, body: bytes) -> list[bytes]:
    start(
        status,
        [
            ("Content-Type", ctype),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client never holds up close()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Nothing on stderr per request (the event log is the service's)."""


class WebServer:
    """The app, listening in a thread; :meth:`close` stops it."""

    def __init__(self, host: str, port: int, shields: Callable[[], Iterable[Shield]]) -> None:
        cls = _Server6 if ":" in host else _Server
        self.server = make_server(
            host, port, make_app(shields), server_class=cls, handler_class=_QuietHandler
        )
        self.host = host
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="xdpshield-web", daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(host: str, port: int, shields: Callable[[], Iterable[Shield]]) -> WebServer:
    """Listen on ``host:port`` (0: any free port) in the current network
    namespace. XdpShieldError when it cannot (the port is taken, ...)."""
    host = host or "127.0.0.1"
    try:
        return WebServer(host, port, shields)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise XdpShieldError(f"metrics: cannot listen on {where}: {exc.strerror or exc}") from None


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xdpshield</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .3em} h2{font-size:1.1em;margin:1.2em 0 .3em}
table{border-collapse:collapse;margin:.3em 0} td,th{padding:2px 10px;text-align:right}
th{background:#eee} td:first-child,th:first-child{text-align:left}
.drop{color:#b00} .answer{color:#06c} .pass{color:#070} .muted{color:#888}
.shield{border:1px solid #ddd;background:#fff;padding:.6em 1em;margin:1em 0}
.big{font-size:1.4em;font-weight:600}
</style></head>
<body>
<h1>xdpshield</h1>
<div id="state" class="muted">loading…</div>
<div id="shields"></div>
<script>
"use strict";
function fmt(n, unit) {
  if (n === null || n === undefined) return "…";
  const k = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [v, p] of k) if (Math.abs(n) >= v) return (n / v).toFixed(2) + " " + p + unit;
  return (Math.round(n * 10) / 10) + " " + unit;
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"}[c]));
}
function shield(s) {
  const r = s.rates;
  let h = '<div class="shield" data-iface="' + esc(s.iface) + '">';
  h += "<h2>" + esc(s.iface) + (s.netns ? " (netns " + esc(s.netns) + ")" : "") + "</h2>";
  h += "<div>" + (s.attached ? "attached, " + esc(s.mode) : '<b class="drop">not attached</b>');
  h += " · program " + s.prog_id + " · ports " + esc(s.protected_ports.join(",") || "none");
  h += '</div><div>key age <span id="key-age">' +
    (s.key_age_s === null ? "no key" : s.key_age_s + " s") + "</span> (epoch " + s.key_epoch +
    ') · verified sources <span class="verified">' + s.verified_sources + "</span>" +
    ' · blocks <span class="blocks-total">' + s.blocks_total + "</span></div>";
  h += '<div class="big">' + (r ? fmt(r.pps, "pps") + " · " + fmt(r.bits_per_s, "bit/s") +
    ' <span class="drop">(dropping ' + fmt(r.drop_pps, "pps") + ")</span>" : "…") + "</div>";
  h += "<h2>By reason</h2><table class=\\"reasons\\"><tr><th>reason</th><th>verdict</th>" +
    "<th>pps</th><th>bit/s</th><th>packets</th></tr>";
  for (const x of s.reasons) {
    h += '<tr data-reason="' + esc(x.reason) + '" data-pps="' + (x.pps ?? "") + '"><td>' +
      esc(x.reason) + '</td><td class="' + esc(x.verdict) + '">' + esc(x.verdict) +
      '</td><td class="pps">' + fmt(x.pps, "pps") + '</td><td class="bps">' +
      fmt(x.bits_per_s, "bit/s") + "</td><td>" + x.packets.toLocaleString("en") + "</td></tr>";
  }
  h += "</table><h2>Top sources</h2>";
  if (!s.top_sources.length) h += '<div class="muted">none dropped by a block</div>';
  else {
    h += '<table class="top"><tr><th>source</th><th>drops</th><th>from</th></tr>';
    for (const t of s.top_sources)
      h += '<tr data-source="' + esc(t.source) + '"><td>' + esc(t.source) + "</td><td>" +
        t.drops.toLocaleString("en") + "</td><td>" + esc(t.from) + "</td></tr>";
    h += "</table>";
  }
  h += "<h2>Blocks</h2>";
  if (!s.blocks.length) h += '<div class="muted">none</div>';
  else {
    h += '<table class="blocks"><tr><th>prefix</th><th>by</th><th>drops</th>' +
      "<th>expires in</th><th>count</th></tr>";
    for (const b of s.blocks)
      h += "<tr><td>" + esc(b.prefix) + "</td><td>" + esc(b.by) + "</td><td>" +
        b.drops.toLocaleString("en") + "</td><td>" + b.expires_in_s + " s</td><td>" +
        b.count + "</td></tr>";
    h += "</table>";
  }
  if (s.rules.length) {
    h += '<h2>Rules</h2><table class="rules"><tr><th>rule</th><th>packets</th>' +
      "<th>bytes</th></tr>";
    for (const x of s.rules)
      h += "<tr><td>" + esc(x.name) + "</td><td>" + x.packets.toLocaleString("en") +
        "</td><td>" + x.bytes.toLocaleString("en") + "</td></tr>";
    h += "</table>";
  }
  return h + "</div>";
}
async function poll() {
  try {
    const res = await fetch("/api/status", {cache: "no-store"});
    const st = await res.json();
    document.getElementById("shields").innerHTML = st.shields.map(shield).join("") ||
      '<div class="muted">no shield is served</div>';
    document.getElementById("state").textContent = "xdpshield " + st.version +
      " · updated " + new Date(st.time * 1000).toLocaleTimeString();
  } catch (e) {
    document.getElementById("state").textContent = "cannot reach the server: " + e;
  }
}
poll();
setInterval(poll, 1000);
</script>
</body></html>
"""
