"""The ``xdpshield`` command: parses arguments and prints; the library does the work.

One module per command group (shield, ops, lab); this one assembles the parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rich.markup import escape

from xdpshield import __version__
from xdpshield.errors import ConfigError, XdpShieldError

from . import fleet, lab, limits, observe, ops, policy, shield
from ._console import err

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xdpshield",
        description="XDP DDoS shield: SYN cookies and filtering before the kernel stack.",
    )
    p.add_argument("--version", action="version", version=f"xdpshield {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=fn)
        return sp

    for group in (shield, policy, limits, observe, ops, fleet, lab):
        group.add_parsers(add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        rc: int = a.func(a)
        return rc
    except XdpShieldError as exc:
        # escape: an error names what is wrong verbatim, brackets included
        err.print(f"[red]xdpshield: error:[/] {escape(str(exc))}")
        # Bad input exits 2, as argparse's own usage errors; a failure, 1.
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        err.print("xdpshield: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
