"""Where the built BPF objects are: the one resolver that modules and tests use.

``make build`` puts them in the package's ``_obj/``; ``XDPSHIELD_OBJ_DIR``
points elsewhere (another build, a packaged install).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from xdpshield.errors import ObjectNotFound

__all__ = ["obj_dir", "object_digest", "object_path", "shield_object"]


def obj_dir() -> Path:
    """The folder of the built objects (XDPSHIELD_OBJ_DIR, else the package's _obj/)."""
    override = os.environ.get("XDPSHIELD_OBJ_DIR")
    return Path(override) if override else Path(__file__).resolve().parent / "_obj"


def object_path(name: str) -> Path:
    """A built object by file name, e.g. ``traffic.o``; names the missing file."""
    path = obj_dir() / name
    if not path.is_file():
        raise ObjectNotFound(f"BPF object not found: {path} (run 'make build')")
    return path


def shield_object(debug: bool = False) -> Path:
    """The shield's object (the tracing build when ``debug``)."""
    return object_path("xdpshield_debug.o" if debug else "xdpshield.o")


def object_digest(path: Path) -> str:
    """SHA-256 of an object file (hex): what a load record keeps, to tell
    whether a running shield runs the object installed now."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ObjectNotFound(f"BPF object {path}: {exc.strerror or exc}") from None
