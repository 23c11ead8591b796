"""BPF objects from Python: ObjectSpec -> Collection -> Map / Program, and attachment.

The shape follows cilium/ebpf: an ``ObjectSpec`` is an opened, not yet loaded ELF
object whose ``.rodata`` constants can still be set; ``load()`` gives a
``Collection`` (a context manager) of loaded ``Map`` and ``Program`` objects.
Maps and programs own a duplicate of their fd, so they outlive the collection.
"""

from __future__ import annotations

from .codec import Codec, Raw, StructCodec, UInt, possible_cpus, sum_percpu
from .link import (
    BPFFS_ROOT,
    Link,
    TcAttachment,
    TcLink,
    XdpAttachment,
    XdpLink,
    XdpMode,
    attach_tc,
    attach_xdp,
    bpffs_root,
    detach_tc,
    detach_xdp,
    ifindex_of,
    query_tc,
    query_xdp,
    replace_xdp,
)
from .map import Map, close_maps
from .program import Program, RunResult
from .spec import Collection, ObjectSpec

__all__ = [
    "BPFFS_ROOT",
    "Codec",
    "Collection",
    "Link",
    "Map",
    "ObjectSpec",
    "Program",
    "Raw",
    "RunResult",
    "StructCodec",
    "TcAttachment",
    "TcLink",
    "UInt",
    "XdpAttachment",
    "XdpLink",
    "XdpMode",
    "attach_tc",
    "attach_xdp",
    "bpffs_root",
    "close_maps",
    "detach_tc",
    "detach_xdp",
    "ifindex_of",
    "possible_cpus",
    "query_tc",
    "query_xdp",
    "replace_xdp",
    "sum_percpu",
]
