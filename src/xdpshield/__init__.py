"""xdpshield: an XDP DDoS shield for Linux, driven from Python."""

from .errors import (
    AlreadyAttached,
    BpfError,
    ConfigError,
    InterfaceNotFound,
    KeyNotFound,
    MapFull,
    NotAttached,
    NotPermitted,
    ObjectNotFound,
    VerifierError,
    XdpShieldError,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyAttached",
    "BpfError",
    "ConfigError",
    "InterfaceNotFound",
    "KeyNotFound",
    "MapFull",
    "NotAttached",
    "NotPermitted",
    "ObjectNotFound",
    "VerifierError",
    "XdpShieldError",
    "__version__",
]
