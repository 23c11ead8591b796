"""Protected ports: the one parser of a port list (the CLI, the library and,
later, the config file all go through it)."""

from __future__ import annotations

from collections.abc import Iterable

from xdpshield.errors import ConfigError

__all__ = ["parse_ports"]


def parse_ports(text: str | Iterable[int]) -> list[int]:
    """'22,80,8000-8010' -> sorted ports; names the bad token on error."""
    if not isinstance(text, str):
        ports = list(text)
    else:
        ports = []
        for token in (t.strip() for t in text.split(",")):
            if not token:
                continue
            lo, sep, hi = token.partition("-")
            try:
                a = int(lo)
                b = int(hi) if sep else a
            except ValueError:
                raise ConfigError(
                    f"{token!r} is not a port or a range like 8000-8010", key="ports"
                ) from None
            if a > b:
                raise ConfigError(f"range {token!r} runs backwards", key="ports")
            ports.extend(range(a, b + 1))
    for p in ports:
        if not 1 <= p <= 65535:
            raise ConfigError(f"port {p} is outside 1-65535", key="ports")
    return sorted(set(ports))
