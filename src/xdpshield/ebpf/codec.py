"""Key and value codecs for maps, and per-CPU values."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


# -- codecs -----------------------------------------------------------------------
class Codec(Protocol[T]):
    """Turns a Python value into a map key/value of ``size`` bytes and back."""

    size: int

    def encode(self, value: T) -> bytes: ...
    def decode(self, data: bytes) -> T: ...


class Raw:
    """Bytes as they are; the default for maps whose layout the caller owns."""

    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, value: bytes) -> bytes:
        if len(value) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(value)}")
        return value

    def decode(self, data: bytes) -> bytes:
        return data


class UInt:
    """An unsigned little-endian (host order on x86/arm) integer of 1..8 bytes."""

    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, value: int) -> bytes:
        return value.to_bytes(self.size, "little")

    def decode(self, data: bytes) -> int:
        return int.from_bytes(data[: self.size], "little")


class StructCodec:
    """A C struct as a tuple, through ``struct`` (use '=' formats: native, no padding)."""

    def __init__(self, fmt: str) -> None:
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size

    def encode(self, value: tuple[Any, ...]) -> bytes:
        return self.struct.pack(*value)

    def decode(self, data: bytes) -> tuple[Any, ...]:
        return self.struct.unpack(data[: self.size])


def possible_cpus(path: str | Path = "/sys/devices/system/cpu/possible") -> int:
    """Number of possible CPUs: the length of every per-CPU value array.

    ``path``: the kernel's list of ranges ("0-3,6"), another only in tests.
    """
    text = Path(path).read_text().strip()
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


def sum_percpu(values: Sequence[T], add: Callable[[T, T], T] | None = None) -> T:
    """Sum a per-CPU value list: ints directly, tuples field by field."""
    if not values:
        raise ValueError("no per-CPU values")
    if add is None:

        def add(a: Any, b: Any) -> Any:
            if isinstance(a, tuple):
                return (
                    type(a)(*(x + y for x, y in zip(a, b, strict=True)))
                    if hasattr(a, "_fields")
                    else tuple(x + y for x, y in zip(a, b, strict=True))
                )
            return a + b

    acc = values[0]
    for v in values[1:]:
        acc = add(acc, v)
    return acc
