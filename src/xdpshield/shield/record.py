"""The load record: how a shield was loaded, kept as JSON under /run/xdpshield.

bpffs holds only BPF objects, so what the next process (the CLI, the daemon)
must know of a load (its handshake mode, its options, when) lives here. A
record written by an earlier version lacks keys: they read as their defaults.
A record that is not one (not JSON, a wrong type) is refused with a
ConfigError that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from xdpshield.errors import ConfigError
from xdpshield.shield.datapath import GuardOptions

__all__ = ["HANDSHAKE_MODES", "Handshake", "LoadRecord"]


class Handshake(StrEnum):
    """What a verified handshake gets; the values are what the CLI takes
    (a StrEnum: it prints, compares and serialises as its value)."""

    #: transparent where the kernel can take the handoff, else reset
    AUTO = "auto"
    #: the kernel takes the connection (tc hands it over): the client connects at once
    TRANSPARENT = "transparent"
    #: the shield answers with an RST: the client retries
    RESET = "reset"


HANDSHAKE_MODES = tuple(h.value for h in Handshake)

# What a JSON value of each field's type may be (bool is an int to Python: refused).
_JSON_TYPES: dict[Any, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str | None": (str, type(None)),
}


def _check(value: Any, kind: str, key: str, source: str) -> Any:
    want = _JSON_TYPES[kind]
    # JSON true is a Python int too: a bool passes only where a bool is wanted.
    if not isinstance(value, want) or (isinstance(value, bool) and bool not in want):
        raise ConfigError(f"expected {kind}, got {value!r}", file=source, key=key)
    return float(cast(float, value)) if kind == "float" else value


def _options(raw: Any, source: str) -> GuardOptions:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected an object, got {raw!r}", file=source, key="options")
    known = {f.name: f for f in dataclasses.fields(GuardOptions)}
    # Keys a later version added are left out: this version has no use for them.
    values = {
        k: _check(v, str(known[k].type), f"options.{k}", source)
        for k, v in raw.items()
        if k in known
    }
    try:
        return GuardOptions(**values)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=source, key=f"options.{exc.key}") from None


@dataclass(frozen=True)
class LoadRecord:
    """How one shield was loaded (what ``Shield.load`` decided, for later readers)."""

    iface: str
    ifindex: int = 0
    prog_id: int = 0
    #: "native", "generic" or "offload" as attached; "unknown" in a record without it
    xdp_mode: str = "unknown"
    #: the mode resolved at load (never AUTO once loaded)
    handshake: Handshake = Handshake.RESET
    handshake_why: str = ""
    debug: bool = False
    #: time.time() of the load; 0.0: unknown
    loaded_at: float = 0.0
    options: GuardOptions = field(default_factory=GuardOptions)
    #: the ``ip netns`` name of the shield's namespace, None: the host's (or unnamed)
    netns: str | None = None
    #: SHA-256 of the object file loaded (hex; "": a record from before it was
    #: kept): a restarted service adopts a running shield only of the object
    #: it would load itself, and says so when they differ
    object_sha256: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the handshake as its string, the options as an object."""
        out = dataclasses.asdict(self)
        out["handshake"] = self.handshake.value
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    @classmethod
    def from_json(
        cls, text: str, *, iface: str | None = None, source: str = "load record"
    ) -> LoadRecord:
        """Read a record; missing keys are their defaults (an older version
        wrote it). ``iface`` stands in for a record without one; ``source``
        (the file) is named in every error."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not JSON ({exc})", file=source) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"not a JSON object but {type(raw).__name__}", file=source)
        if "iface" not in raw and iface is None:
            raise ConfigError("names no interface", file=source, key="iface")
        values: dict[str, Any] = {"iface": iface}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            if f.name == "options":
                values["options"] = _options(value, source)
            elif f.name == "handshake":
                values["handshake"] = _handshake(value, source)
            else:
                values[f.name] = _check(value, str(f.type), f.name, source)
        return cls(**values)


def _handshake(value: Any, source: str) -> Handshake:
    try:
        return Handshake(value)
    except ValueError:
        raise ConfigError(
            f"{value!r} is not a handshake mode ({', '.join(HANDSHAKE_MODES)})",
            file=source,
            key="handshake",
        ) from None
