"""The events ``xdpshield run`` keeps for ``xdpshield events``: every event a
JSON line in a bounded file, read back whole, since a time, and followed
across the file's move aside."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

from xdpshield.ops.events import EventFile, EventLog, follow, format_text, parse_ts, read_events


def test_every_event_is_kept_as_json_whatever_the_stream_format(tmp_path: Path) -> None:
    path = tmp_path / "run.events"
    stream = io.StringIO()
    now = [1_800_000_000.25]
    log = EventLog("text", stream, clock=lambda: now[0], file=EventFile(path))
    log("blocked", iface="eth0", prefix="198.18.5.5/32", ttl_s=600.0)
    now[0] += 60
    log("rotated", iface="eth0", epoch=7)
    # The stream has text; the file has the same events as JSON objects.
    assert (
        stream.getvalue()
        .splitlines()[0]
        .endswith("blocked iface=eth0 prefix=198.18.5.5/32 ttl_s=600.0")
    )
    recs = read_events(path)
    assert [r["event"] for r in recs] == ["blocked", "rotated"]
    assert recs[0]["prefix"] == "198.18.5.5/32" and recs[1]["epoch"] == 7
    assert parse_ts(recs[0]["ts"]) == 1_800_000_000.25
    # --since: only what came at or after the time.
    assert [r["event"] for r in read_events(path, since=1_800_000_030.0)] == ["rotated"]
    # The text form of a record read back is the stream's line.
    assert format_text(recs[1]) == stream.getvalue().splitlines()[1]


def test_the_file_is_bounded_and_the_older_half_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "run.events"
    log = EventLog("json", io.StringIO(), file=EventFile(path, max_bytes=2000))
    for n in range(200):
        log("aged", iface="eth0", removed=n)
    # Never more than the two generations, each within the bound.
    assert path.stat().st_size <= 2000
    assert (tmp_path / "run.events.1").stat().st_size <= 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.events", "run.events.1"]
    kept = [r["removed"] for r in read_events(path)]
    # The newest events, in order, none lost between the two files.
    assert kept == list(range(200 - len(kept), 200)) and len(kept) > 10


def test_a_file_that_cannot_be_written_never_stops_the_log(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    stream = io.StringIO()
    log = EventLog("json", stream, file=EventFile(blocker / "run.events"))
    log("ready", shields=1)
    assert json.loads(stream.getvalue())["event"] == "ready"


def test_follow_prints_the_kept_events_then_new_ones_across_the_move(tmp_path: Path) -> None:
    path = tmp_path / "run.events"
    log = EventLog("json", io.StringIO(), file=EventFile(path, max_bytes=600))
    log("ready", shields=1)
    stop = threading.Event()
    watchdog = threading.Timer(10, stop.set)  # a follower that waits forever fails, not hangs
    watchdog.start()
    events = follow(path, stop, poll_s=0.01)
    try:
        assert next(events)["event"] == "ready"
        seen = []
        for n in range(30):
            # Written between two reads of the follower, each batch of five
            # moves the file aside once: the rest of the old one must be read.
            log("blocked", iface="eth0", n=n)
            if n % 5 == 4:
                seen += [next(events)["n"] for _ in range(5)]
    finally:
        stop.set()
        watchdog.cancel()
    assert (tmp_path / "run.events.1").exists()
    # Every event, once, in order: none lost or doubled across a move.
    assert seen == list(range(30))
