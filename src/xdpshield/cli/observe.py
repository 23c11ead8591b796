"""Seeing what the shield drops: ``capture``, ``samples``, ``top``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import BinaryIO

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from xdpshield.ebpf.pcapfilter import PcapFilter
from xdpshield.errors import ConfigError, InterfaceNotFound, NotAttached, XdpShieldError
from xdpshield.ops import capture as cap
from xdpshield.ops.top import Snapshot, Watch
from xdpshield.shield import samples
from xdpshield.shield.core import Shield, list_shields
from xdpshield.shield.datapath import Reason

from ._console import AddCommand, err, human, out

__all__ = ["add_parsers"]


def _open(iface: str) -> Shield:
    """The shield on ``iface``; a wrong interface is bad input (exit 2)."""
    try:
        return Shield.open(iface)
    except (InterfaceNotFound, NotAttached) as exc:
        raise ConfigError(str(exc), key=iface) from None


def _reasons(texts: list[str] | None) -> frozenset[Reason] | None:
    if not texts:
        return None
    try:
        return cap.parse_reasons(texts)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--reason") from None


def _filter(expr: str | None) -> PcapFilter | None:
    if not expr:
        return None
    try:
        return PcapFilter(expr)
    except ValueError as exc:
        raise ConfigError(f"{expr!r}: {exc}", key="--filter") from None
    except OSError as exc:
        raise XdpShieldError(f"--filter needs libpcap: {exc}") from None


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO | None]:
    if path is None:
        yield None
    elif path == "-":
        yield sys.stdout.buffer
    else:
        try:
            f = open(path, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror}", key="-w") from None
        with f:
            yield f


def cmd_capture(a: argparse.Namespace) -> int:
    reasons = _reasons(a.reason)
    flt = _filter(a.filter)
    if a.count is not None and a.count < 1:
        raise ConfigError("must be at least 1", key="--count")
    if a.duration is not None and a.duration <= 0:
        raise ConfigError("must be more than 0 seconds", key="--duration")
    with _open(a.iface) as s:
        names = {int(r["id"]): str(r["name"]) for r in s.rules()}
        off = sorted(
            r.label for r, v in s.sample_rates().items() if not v and (r in (reasons or ()))
        )
        if off:
            err.print(
                f"xdpshield: note: sampling is off for {', '.join(off)} "
                f"(xdpshield samples {a.iface} set --rate N)"
            )
        with s.sampler(reasons) as sampler, _output(a.write) as f:
            if f is not None:
                w = cap.PcapngWriter(f, ifnames={s.ifindex: s.iface})

                def emit(smp: samples.Sample) -> None:
                    w.write_sample(smp, cap.comment(smp, names))
            else:

                def emit(smp: samples.Sample) -> None:
                    print(cap.line(smp, names), flush=True)

            try:
                res = cap.capture(
                    sampler,
                    emit,
                    pcap_filter=flt,
                    count=a.count,
                    duration=a.duration,
                    lost=lambda: samples.ring_full_total(s.maps),
                )
            except KeyboardInterrupt:
                res = None
    where = f" to {a.write}" if a.write and a.write != "-" else ""
    if res is not None:
        lost = f", {res.lost} lost to a full ring" if res.lost else ""
        err.print(f"xdpshield: {res.kept} samples{where} ({res.seen} read{lost})")
    return 0


def cmd_samples(a: argparse.Namespace) -> int:
    reasons = _reasons(a.reason)
    with _open(a.iface) as s:
        if a.action == "set":
            if a.rate is None:
                raise ConfigError("give --rate N (samples per second per reason; 0: off)")
            try:
                s.set_sample_rate(a.rate, reasons)
            except ConfigError as exc:
                raise ConfigError(exc.message, key="--rate") from None
            which = ", ".join(sorted(r.label for r in reasons)) if reasons else "every reason"
            out.print(
                f"{a.iface}: samples of {which} capped at {a.rate}/s"
                + (" (off)" if not a.rate else "")
            )
            return 0
        rates = s.sample_rates()
        counts = s.sample_counts()
    shown = {
        r.label: {"rate": rates[r], "sent": counts[r][0], "lost": counts[r][1]}
        for r in Reason
        if reasons is None or r in reasons
    }
    if a.json:
        print(json.dumps(shown, indent=2))
        return 0
    t = Table(
        "reason", "cap/s", "sent", "lost (ring full)", title=f"xdpshield samples on {a.iface}"
    )
    for label, v in shown.items():
        if reasons is None and not (v["sent"] or v["lost"]) and v["rate"] == samples.DEFAULT_RATE:
            continue  # the untouched, unsampled ones
        t.add_row(label, str(v["rate"]) if v["rate"] else "off", f"{v['sent']:,}", f"{v['lost']:,}")
    out.print(t)
    caps = {v["rate"] for v in shown.values()}
    if len(caps) == 1:
        out.print(f"cap: {caps.pop() or 'off'} per second per reason (each CPU refills its share)")
    return 0


# -- top --------------------------------------------------------------------------------
def _age(s: float | None) -> str:
    if s is None:
        return "no key"
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}m"


def render(snap: Snapshot) -> Group:
    """One screen of ``top``."""
    when = time.strftime("%H:%M:%S", time.localtime(snap.at))
    head = Text.assemble(
        (f"xdpshield top {snap.iface}", "bold"),
        f"  {when}  total {human(snap.totals.get('pps', 0))} pps "
        f"{human(snap.totals.get('bps', 0))}bps  verified sources {snap.verified:,}  "
        f"key age {_age(snap.key_age_s)}  blocks {len(snap.blocks)}",
    )
    rt = Table("reason", "pps", "bps", title=f"verdicts (rates over {snap.interval:.1f}s)")
    busy = sorted((r for r, v in snap.rates.items() if v.pps > 0), key=lambda r: -snap.rates[r].pps)
    for r in busy:
        rt.add_row(r.label, human(snap.rates[r].pps), human(snap.rates[r].bps))
    if not busy:
        rt.add_row("(no traffic)", "0", "0")
    st = Table("source", "~pps", "samples", "reason", title="top sources by drops (from samples)")
    for src in snap.sources:
        st.add_row(str(src.addr), human(src.est_pps), str(src.samples), src.reason.label)
    if not snap.sources:
        st.add_row(snap.samples_note or "(no samples)", "", "", "")
    bt = Table("blocked", "left", "drops", "by", title="blocks in force")
    now = time.monotonic_ns()
    for b in snap.blocks[:8]:
        bt.add_row(
            str(b.prefix),
            f"{b.remaining_s(now):.0f}s",
            f"{b.drops:,}",
            "hand" if b.manual else "limit",
        )
    if not snap.blocks:
        bt.add_row("(none)", "", "", "")
    return Group(head, rt, st, bt, Text("q or Ctrl-C quits", style="dim"))


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """stdin in cbreak mode when it is a terminal (True), so q quits at once."""
    if not sys.stdin.isatty():
        yield False
        return
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _quit_pressed() -> bool:
    while select.select([sys.stdin], [], [], 0)[0]:
        ch = os.read(sys.stdin.fileno(), 1)
        if ch in (b"q", b"Q", b""):
            return True
    return False


def _top_iface(iface: str | None) -> str:
    if iface:
        return iface
    found = list_shields()
    if len(found) != 1:
        raise ConfigError(
            "name the interface"
            + (f": shields on {', '.join(found)}" if found else ": no shield is loaded here")
        )
    return found[0]


def cmd_top(a: argparse.Namespace) -> int:
    if a.interval <= 0:
        raise ConfigError("must be more than 0 seconds", key="--interval")
    with _open(_top_iface(a.iface)) as s:
        watch = Watch(s)
        try:
            if a.once:
                end = time.monotonic() + a.interval
                while (left := end - time.monotonic()) > 0:
                    watch.poll(min(left, 0.2))
                out.print(render(watch.step()))
                return 0
            with (
                _keys() as keys,
                Live(render(watch.step()), console=out, screen=True, auto_refresh=False) as live,
            ):
                try:
                    while True:
                        end = time.monotonic() + a.interval
                        while (left := end - time.monotonic()) > 0:
                            watch.poll(min(left, 0.1))
                            if keys and _quit_pressed():
                                return 0
                        live.update(render(watch.step()), refresh=True)
                except KeyboardInterrupt:
                    return 0
        finally:
            watch.close()


def add_parsers(add: AddCommand) -> None:
    sp = add(
        "capture",
        cmd_capture,
        "sampled drops and replies to pcapng (-w) or one line each; "
        "reason and rule in each packet's comment",
    )
    sp.add_argument("iface")
    sp.add_argument(
        "--reason",
        action="append",
        metavar="R",
        help="only these reasons (label, e.g. rule-drop; repeat or comma list)",
    )
    sp.add_argument("--filter", metavar="EXPR", help="a tcpdump filter expression (libpcap's)")
    sp.add_argument("-w", "--write", metavar="FILE", help="write pcapng here (- : stdout)")
    sp.add_argument("--count", type=int, metavar="N", help="stop after N packets")
    sp.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")

    sp = add("samples", cmd_samples, "drop samples: the cap per reason, samples sent and lost")
    sp.add_argument("iface")
    sp.add_argument("action", nargs="?", choices=("show", "set"), default="show")
    sp.add_argument(
        "--rate", type=int, metavar="N", help="set: samples per second per reason (0: off)"
    )
    sp.add_argument("--reason", action="append", metavar="R", help="only these reasons")
    sp.add_argument("--json", action="store_true")

    sp = add("top", cmd_top, "live view: rates per reason, top sources, blocks (q quits)")
    sp.add_argument("iface", nargs="?", default=None)
    sp.add_argument("--once", action="store_true", help="print one snapshot and exit")
    sp.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="refresh every S seconds"
    )
