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
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

__all__ = ["LEVELS", "LOG_FORMATS", "EventLog"]

LOG_FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
LogFormat = Literal["text", "json"]


def _ts(t: float) -> str:
    whole = int(t)
    ms = int((t - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


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
    ) -> None:
        if fmt not in LOG_FORMATS:
            raise ValueError(f"log format {fmt!r}: choose from {', '.join(LOG_FORMATS)}")
        self.fmt = fmt
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._lock = threading.Lock()

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
        if self.fmt == "json":
            line = json.dumps(record, default=str)
        else:
            head = f"{record.pop('ts')} {record.pop('level')} {record.pop('event')}"
            line = " ".join([head, *(f"{k}={_text_value(v)}" for k, v in record.items())])
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
