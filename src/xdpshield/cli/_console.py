"""Where the command prints, and how it writes numbers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Protocol

from rich.console import Console

__all__ = ["AddCommand", "err", "human", "out"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class AddCommand(Protocol):
    """Adds one subcommand and returns its parser."""

    def __call__(
        self, name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser: ...


def human(n: float) -> str:
    for unit in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"
