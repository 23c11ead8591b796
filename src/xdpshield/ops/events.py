"""The service's event log: one line per event on stderr, structured.

Two formats of the same record (a timestamp, a level, an event name, the
interface it concerns, and the event's own fields):

- ``text``: ``2026-12-05T13:01:56.123Z info rotated iface=eth0 epoch=5``;
  a value with spaces, quotes or ``=`` is quoted as JSON quotes it, so a
  line never breaks (a multi-line error stays one line);
- ``json``: one object per line, ``{"ts": ..., "level": ..., "event": ...,
  "iface": ..., ...}``: what journald, Loki or jq take as is.

Not the logging module: its records carry a message to format, these carry
fields, and a line must be written whole from any thread (duties run in
their own threads).

Besides the stream, an :class:`EventFile` keeps every event as a JSON line
in a file (``xdpshield run``: ``/run/xdpshield/run/STEM-HASH.events`` beside
its run record) for ``xdpshield events``: bounded, the file is moved to
``.1`` (the one older generation kept) when it passes ``max_bytes``, so the
events of a run take at most twice that. :func:`read_events` and
:func:`follow` read them back, across that move.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

__all__ = [
    "EVENTS_MAX_BYTES",
    "LEVELS",
    "LOG_FORMATS",
    "EventFile",
    "EventLog",
    "follow",
    "format_text",
    "parse_ts",
    "read_events",
]

#: An events file is moved aside past this size (1 MiB: some 5,000 events).
EVENTS_MAX_BYTES = 1 << 20

LOG_FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
LogFormat = Literal["text", "json"]


def _ts(t: float) -> str:
    whole = int(t)
    ms = int((t - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def parse_ts(ts: str) -> float:
    """The Unix time of a record's ``ts`` (as :func:`_ts` writes it)."""
    whole, _, frac = ts.rstrip("Z").partition(".")
    t = time.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) + (float(f"0.{frac}") if frac else 0.0)


def _text_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)
    if s and not any(c.isspace() or c in '"=\\' for c in s):
        return s
    return json.dumps(s)


class EventLog:
    """Writes events to ``stream`` (default: stderr) in ``fmt``."""

    def __init__(
        self,
        fmt: LogFormat | str = "text",
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.time,
        file: EventFile | None = None,
    ) -> None:
        """``file``: also keep every event there (JSON lines, whatever ``fmt``)."""
        if fmt not in LOG_FORMATS:
            raise ValueError(f"log format {fmt!r}: choose from {', '.join(LOG_FORMATS)}")
        self.fmt = fmt
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._lock = threading.Lock()
        self.file = file

    def __call__(
        self, event: str, *, level: str = "info", iface: str | None = None, **fields: Any
    ) -> None:
        """Log ``event``; fields that are None are left out."""
        if level not in LEVELS:
            raise ValueError(f"log level {level!r}: choose from {', '.join(LEVELS)}")
        record: dict[str, Any] = {"ts": _ts(self._clock()), "level": level, "event": event}
        if iface is not None:
            record["iface"] = iface
        record.update((k, v) for k, v in fields.items() if v is not None)
        as_json = json.dumps(record, default=str)
        line = as_json if self.fmt == "json" else format_text(record)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
            if self.file is not None:
                self.file.write(as_json)


def format_text(record: dict[str, Any]) -> str:
    """A record as one text line: ``TS LEVEL EVENT key=value ...``."""
    rest = {k: v for k, v in record.items() if k not in ("ts", "level", "event")}
    head = f"{record.get('ts', '?')} {record.get('level', '?')} {record.get('event', '?')}"
    return " ".join([head, *(f"{k}={_text_value(v)}" for k, v in rest.items())])


class EventFile:
    """Appends JSON lines to ``path``; past ``max_bytes`` the file becomes
    ``path.1`` (replacing the one before) and a new one begins.

    A failure to write (a full /run, the directory removed) never stops the
    service: the event is on the stream anyway; the file is tried again at
    the next event.
    """

    def __init__(self, path: Path | str, *, max_bytes: int = EVENTS_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._fd: int | None = None

    @property
    def old_path(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def write(self, line: str) -> None:
        """One event (a JSON object, no newline); callers serialise (EventLog's lock)."""
        data = (line + "\n").encode()
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
                )
            if os.fstat(self._fd).st_size + len(data) > self.max_bytes:
                os.replace(self.path, self.old_path)
                self.close()
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
                )
            os.write(self._fd, data)  # O_APPEND, one write: a reader never sees half a line
        except OSError:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _records(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # not ours, or cut by a crash mid-line: skip it
        if isinstance(rec, dict):
            yield rec


def _since_ok(rec: dict[str, Any], since: float | None) -> bool:
    if since is None:
        return True
    try:
        return parse_ts(str(rec["ts"])) >= since
    except (KeyError, ValueError):
        return False


def read_events(path: Path | str, *, since: float | None = None) -> list[dict[str, Any]]:
    """The events kept at ``path`` (its ``.1`` first), oldest first;
    ``since``: only those at or after this Unix time."""
    path = Path(path)
    out: list[dict[str, Any]] = []
    for p in (path.with_name(path.name + ".1"), path):
        with contextlib.suppress(FileNotFoundError):
            out.extend(r for r in _records(p.read_text(errors="replace")) if _since_ok(r, since))
    return out


def follow(
    path: Path | str,
    stop: threading.Event,
    *,
    since: float | None = None,
    poll_s: float = 0.2,
) -> Iterator[dict[str, Any]]:
    """The events kept at ``path`` (as :func:`read_events`), then each new
    one as it is written, until ``stop`` is set. A file moved aside
    (``.1``) or not there yet is followed to the new one."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        old = path.with_name(path.name + ".1").read_text(errors="replace")
        yield from (r for r in _records(old) if _since_ok(r, since))
    ino: int | None = None
    pos = 0
    buf = b""
    while not stop.is_set():
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, after the checks
        except FileNotFoundError:
            stop.wait(poll_s)
            continue
        with f:
            st = os.fstat(f.fileno())
            if st.st_ino != ino:  # moved aside: the rest of the old one, then the new one
                if ino is not None:
                    yield from _rest_of(path.with_name(path.name + ".1"), ino, pos, buf, since)
                ino, pos, buf = st.st_ino, 0, b""
            if st.st_size < pos:  # truncated by hand
                pos, buf = 0, b""
            if st.st_size > pos:
                f.seek(pos)
                chunk = f.read()
                pos += len(chunk)
                head, sep, buf = (buf + chunk).rpartition(b"\n")
                if sep:
                    yield from _complete(head + sep, since)
                continue
        stop.wait(poll_s)


def _rest_of(
    old: Path, ino: int, pos: int, buf: bytes, since: float | None
) -> Iterator[dict[str, Any]]:
    """What was written to a file after ``pos`` before it was moved to ``old``."""
    with contextlib.suppress(OSError), open(old, "rb") as f:
        if os.fstat(f.fileno()).st_ino == ino:
            f.seek(pos)
            yield from _complete(buf + f.read(), since)


def _complete(data: bytes, since: float | None) -> Iterator[dict[str, Any]]:
    for rec in _records(data.decode(errors="replace")):
        if _since_ok(rec, since):
            yield rec
