"""BPF objects from Python: ObjectSpec -> Collection -> Map / Program, and attachment.

The shape follows cilium/ebpf: an ``ObjectSpec`` is an opened, not yet loaded ELF
object whose ``.rodata`` constants can still be set; ``load()`` gives a
``Collection`` (a context manager) of loaded ``Map`` and ``Program`` objects.
Maps and programs own a duplicate of their fd, so they outlive the collection.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import subprocess
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ._libbpf import TEST_RUN_XDP_LIVE_FRAMES, XdpMd, lib
from .errors import (
    AlreadyAttached,
    BpfError,
    InterfaceNotFound,
    KeyNotFound,
    NotAttached,
    ObjectMismatch,
    ObjectNotFound,
    VerifierError,
    XdpShieldError,
    from_oserror,
)

__all__ = [
    "BPFFS_ROOT",
    "Codec",
    "Collection",
    "Map",
    "ObjectSpec",
    "Program",
    "Raw",
    "RunResult",
    "StructCodec",
    "TcAttachment",
    "UInt",
    "XdpAttachment",
    "XdpMode",
    "attach_tc",
    "attach_xdp",
    "bpffs_root",
    "detach_tc",
    "detach_xdp",
    "ifindex_of",
    "possible_cpus",
    "query_xdp",
    "sum_percpu",
]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

BPFFS_ROOT = Path("/sys/fs/bpf")
_PERCPU_TYPES = {5, 6, 10, 21}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP
_ARRAY_TYPES = {2, 6}  # ARRAY, PERCPU_ARRAY: keys always exist, cannot be deleted
MAP_TYPE_NAMES = {
    1: "hash",
    2: "array",
    3: "prog_array",
    4: "perf_event_array",
    5: "percpu_hash",
    6: "percpu_array",
    9: "lru_hash",
    10: "lru_percpu_hash",
    11: "lpm_trie",
    27: "ringbuf",
}
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


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


def possible_cpus() -> int:
    """Number of possible CPUs: the length of every per-CPU value array."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
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


def close_maps(maps: Mapping[str, Map[Any, Any]] | None) -> None:
    """Close every map of a name -> map collection (None: nothing)."""
    for m in (maps or {}).values():
        m.close()


def _obj_pin(fd: int, path: str | Path, what: str) -> None:
    try:
        lib().bpf.bpf_obj_pin(fd, str(path).encode())
    except OSError as exc:
        raise from_oserror(exc, f"pin {what} at {path}") from None


def _obj_get(path: str | Path, what: str) -> int:
    """A new fd for the object pinned at ``path``."""
    try:
        return int(lib().bpf.bpf_obj_get(str(path).encode()))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ObjectNotFound(f"no pinned {what} at {path}") from None
        raise from_oserror(exc, f"open pinned {what} {path}") from None


# -- maps ---------------------------------------------------------------------------
class Map(Generic[K, V]):
    """A loaded (or pinned) map, typed by its key and value codecs."""

    def __init__(
        self,
        fd: int,
        name: str,
        map_type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        key: Codec[K],
        value: Codec[V],
    ) -> None:
        self.fd = fd
        self.name = name
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.key = key
        self.value = value
        self.percpu = map_type in _PERCPU_TYPES
        self.ncpus = possible_cpus() if self.percpu else 1
        # Per-CPU values are laid out at an 8-byte stride, one per possible CPU.
        self._stride = (value_size + 7) & ~7 if self.percpu else value_size
        self._finalizer = weakref.finalize(self, os.close, fd)

    @classmethod
    def from_fd(cls, fd: int, name: str | None = None) -> Map[bytes, bytes]:
        info = lib().map_info(fd)
        return Map(
            fd,
            name or info.name.decode(),
            info.type,
            info.key_size,
            info.value_size,
            info.max_entries,
            Raw(info.key_size),
            Raw(info.value_size),
        )

    @classmethod
    def open_pinned(cls, path: str | Path) -> Map[bytes, bytes]:
        return cls.from_fd(_obj_get(path, "map"), Path(path).name)

    @classmethod
    def from_id(cls, map_id: int) -> Map[bytes, bytes]:
        try:
            fd = int(lib().bpf.bpf_map_get_fd_by_id(map_id))
        except OSError as exc:
            raise from_oserror(exc, f"open map id {map_id}") from None
        return cls.from_fd(fd)

    def typed(self, key: Codec[T], value: Codec[Any]) -> Map[T, Any]:
        """A view of this map with other codecs (shares the fd)."""
        for what, codec, size in (("key", key, self.key_size), ("value", value, self.value_size)):
            if codec.size != size:
                raise ValueError(f"map {self.name}: {what} is {size} bytes, codec {codec.size}")
        view: Map[T, Any] = Map.__new__(Map)
        view.__dict__.update(self.__dict__)
        view.key, view.value = key, value
        view.fd = os.dup(self.fd)
        view._finalizer = weakref.finalize(view, os.close, view.fd)
        return view

    def close(self) -> None:
        self._finalizer()

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES.get(self.type, str(self.type))

    def _vbuf(self) -> Any:
        return lib().buffer(self._stride * self.ncpus)

    def _decode_value(self, raw: bytes) -> V | list[V]:
        if not self.percpu:
            return self.value.decode(raw[: self.value_size])
        return [
            self.value.decode(raw[i * self._stride : i * self._stride + self.value_size])
            for i in range(self.ncpus)
        ]

    def _encode_value(self, value: V | list[V]) -> bytes:
        """A per-CPU map takes a list (one value per CPU) or one value for all CPUs."""
        if not self.percpu:
            return self.value.encode(value)  # type: ignore[arg-type]
        values: list[V] = value if isinstance(value, list) else [value] * self.ncpus
        if len(values) != self.ncpus:
            raise ValueError(f"map {self.name}: {len(values)} values for {self.ncpus} CPUs")
        pad = b"\0" * (self._stride - self.value_size)
        return b"".join(self.value.encode(v) + pad for v in values)

    def lookup(self, key: K) -> V:
        """The value (for a per-CPU map, use ``lookup_percpu``)."""
        if self.percpu:
            raise TypeError(f"map {self.name} is per-CPU: use lookup_percpu() or sum")
        return self._lookup(key)  # type: ignore[return-value]

    def lookup_percpu(self, key: K) -> list[V]:
        if not self.percpu:
            raise TypeError(f"map {self.name} is not per-CPU")
        return self._lookup(key)  # type: ignore[return-value]

    def _lookup(self, key: K) -> V | list[V]:
        k = lib().buffer(self.key.encode(key))
        v = self._vbuf()
        try:
            lib().bpf.bpf_map_lookup_elem(self.fd, k, v)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise KeyNotFound(f"map {self.name}: no key {key!r}", exc.errno) from None
            raise from_oserror(exc, f"lookup in map {self.name}") from None
        return self._decode_value(v.raw)

    def pop(self) -> V | None:
        """Take the head of a queue or stack map (None when it is empty)."""
        v = self._vbuf()
        try:
            lib().bpf.bpf_map_lookup_and_delete_elem(self.fd, None, v)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise from_oserror(exc, f"pop from map {self.name}") from None
        return self.value.decode(v.raw[: self.value_size])

    def push(self, value: V) -> None:
        """Add to a queue or stack map."""
        v = lib().buffer(self.value.encode(value))
        try:
            lib().bpf.bpf_map_update_elem(self.fd, None, v, BPF_ANY)
        except OSError as exc:
            raise from_oserror(exc, f"push to map {self.name}") from None

    def get(self, key: K, default: T | None = None) -> V | list[V] | T | None:
        try:
            return self._lookup(key)
        except KeyNotFound:
            return default

    def update(self, key: K, value: V | list[V], flags: int = BPF_ANY) -> None:
        k = lib().buffer(self.key.encode(key))
        v = lib().buffer(self._encode_value(value))
        try:
            lib().bpf.bpf_map_update_elem(self.fd, k, v, flags)
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                raise from_oserror(
                    exc, f"map {self.name} is full ({self.max_entries} entries)"
                ) from None
            if exc.errno == errno.EEXIST:
                raise BpfError(f"map {self.name}: key {key!r} exists", exc.errno) from None
            if exc.errno == errno.ENOENT:
                raise KeyNotFound(f"map {self.name}: no key {key!r}", exc.errno) from None
            raise from_oserror(exc, f"update map {self.name}") from None

    def delete(self, key: K) -> None:
        k = lib().buffer(self.key.encode(key))
        try:
            lib().bpf.bpf_map_delete_elem(self.fd, k)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise KeyNotFound(f"map {self.name}: no key {key!r}", exc.errno) from None
            raise from_oserror(exc, f"delete from map {self.name}") from None

    def keys(self) -> Iterator[K]:
        cur: Any = None
        nxt = lib().buffer(self.key_size)
        while True:
            try:
                lib().bpf.bpf_map_get_next_key(self.fd, cur, nxt)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise from_oserror(exc, f"iterate map {self.name}") from None
            yield self.key.decode(nxt.raw)
            cur = lib().buffer(nxt.raw)

    def items(self) -> Iterator[tuple[K, V | list[V]]]:
        for k in self.keys():
            try:
                yield k, self._lookup(k)
            except KeyNotFound:  # deleted between the two calls: skip, as the kernel would
                continue

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def __contains__(self, key: K) -> bool:
        try:
            self._lookup(key)
        except KeyNotFound:
            return False
        return True

    # batch operations: one syscall for many elements (hash-like maps)
    def lookup_batch(self, chunk: int = 256) -> list[tuple[K, V | list[V]]]:
        L = lib()
        opts = L.batch_opts()
        keys, vals = L.buffer(self.key_size * chunk), L.buffer(self._stride * self.ncpus * chunk)
        out_batch = L.buffer(max(self.key_size, 8))
        in_batch: Any = None
        result: list[tuple[K, V | list[V]]] = []
        while True:
            count = L.u32(chunk)
            done = False
            try:
                L.bpf.bpf_map_lookup_batch(self.fd, in_batch, out_batch, keys, vals, count, opts)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise from_oserror(exc, f"batch lookup in map {self.name}") from None
                done = True
            vsz = self._stride * self.ncpus
            for i in range(count.value):
                kraw = keys.raw[i * self.key_size : (i + 1) * self.key_size]
                result.append(
                    (self.key.decode(kraw), self._decode_value(vals.raw[i * vsz : (i + 1) * vsz]))
                )
            if done:
                return result
            in_batch = L.buffer(out_batch.raw)

    def update_batch(self, items: Sequence[tuple[K, V | list[V]]]) -> None:
        if not items:
            return
        L = lib()
        keys = L.buffer(b"".join(self.key.encode(k) for k, _ in items))
        vals = L.buffer(b"".join(self._encode_value(v) for _, v in items))
        count = L.u32(len(items))
        try:
            L.bpf.bpf_map_update_batch(self.fd, keys, vals, count, L.batch_opts())
        except OSError as exc:
            raise from_oserror(
                exc, f"batch update of map {self.name} ({count.value} of {len(items)} written)"
            ) from None

    def delete_batch(self, keys: Sequence[K]) -> None:
        if not keys:
            return
        L = lib()
        kbuf = L.buffer(b"".join(self.key.encode(k) for k in keys))
        count = L.u32(len(keys))
        try:
            L.bpf.bpf_map_delete_batch(self.fd, kbuf, count, L.batch_opts())
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise KeyNotFound(
                    f"map {self.name}: a key of the batch is absent ({count.value} deleted)",
                    exc.errno,
                ) from None
            raise from_oserror(exc, f"batch delete from map {self.name}") from None

    def clear(self) -> None:
        if self.type in _ARRAY_TYPES:
            zero = self.value.decode(bytes(self.value_size))
            for k in list(self.keys()):
                self.update(k, zero)
            return
        for k in list(self.keys()):
            with contextlib.suppress(KeyNotFound):
                self.delete(k)

    def pin(self, path: str | Path) -> None:
        _obj_pin(self.fd, path, f"map {self.name}")


# -- programs ---------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    """One BPF_PROG_TEST_RUN: the verdict, the frame as the program left it, ns per run."""

    verdict: int
    frame: bytes
    ns: int


class Program:
    """A loaded program; owns a duplicate of its fd."""

    def __init__(self, fd: int, name: str, section: str, prog_type: int) -> None:
        self.fd = fd
        self.name = name
        self.section = section
        self.type = prog_type
        self._finalizer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._finalizer()

    @property
    def id(self) -> int:
        return int(lib().prog_info(self.fd).id)

    def pin(self, path: str | Path) -> None:
        _obj_pin(self.fd, path, f"program {self.name}")

    @classmethod
    def open_pinned(cls, path: str | Path) -> Program:
        return cls._from_fd(_obj_get(path, "program"))

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        """The loaded program with this ID (e.g. the one an interface runs)."""
        try:
            fd = int(lib().bpf.bpf_prog_get_fd_by_id(prog_id))
        except OSError as exc:
            raise from_oserror(exc, f"open program id {prog_id}") from None
        return cls._from_fd(fd)

    @classmethod
    def _from_fd(cls, fd: int) -> Program:
        info = lib().prog_info(fd)
        return cls(fd, info.name.decode(), "", info.type)

    def maps(self) -> dict[str, Map[bytes, bytes]]:
        """The maps the program uses, by name (each with its own fd)."""
        found = (Map.from_id(i) for i in lib().prog_map_ids(self.fd))
        return {m.name: m for m in found}

    def run(
        self, frame: bytes, repeat: int = 1, *, ifindex: int = 0, headroom: int = 256
    ) -> RunResult:
        """Run the program on ``frame`` in the kernel (BPF_PROG_TEST_RUN).

        With ``repeat`` > 1 the kernel feeds the output back as the next input,
        so only idempotent programs give a meaningful output frame; ``ns`` is
        the kernel's average per run.
        """
        if repeat < 1:
            raise ValueError("repeat must be >= 1")
        ctx = None
        if ifindex and self.section.startswith("xdp"):
            ctx = XdpMd(data=0, data_end=len(frame), ingress_ifindex=ifindex)
        try:
            verdict, out, ns = lib().test_run(
                self.fd, frame, repeat=repeat, out_size=len(frame) + headroom, ctx=ctx
            )
        except OSError as exc:
            raise from_oserror(exc, f"test run of {self.name}") from None
        return RunResult(verdict, out or b"", ns)

    def run_live(self, frame: bytes, repeat: int, *, ifindex: int, batch_size: int = 64) -> int:
        """Live-frames mode: XDP_TX/REDIRECT really transmit (an in-kernel generator).

        The frame is handed to the program ``repeat`` times on ``ifindex``; pages
        are recycled, so the program must rewrite every byte it depends on.
        Returns the kernel's ns per run.
        """
        ctx = XdpMd(data=0, data_end=len(frame), ingress_ifindex=ifindex)
        try:
            _, _, ns = lib().test_run(
                self.fd,
                frame,
                repeat=repeat,
                ctx=ctx,
                flags=TEST_RUN_XDP_LIVE_FRAMES,
                batch_size=batch_size,
            )
        except OSError as exc:
            raise from_oserror(exc, f"live test run of {self.name}") from None
        return ns


# -- objects ----------------------------------------------------------------------
class ObjectSpec:
    """An opened BPF ELF object: inspect it and set ``.rodata`` constants, then load."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ObjectNotFound(f"BPF object not found: {self.path} (run 'make build')")
        L = lib()
        with L.capture() as msgs:
            try:
                self._obj: int | None = L.bpf.bpf_object__open_file(str(self.path).encode(), None)
            except OSError as exc:
                detail = "; ".join(m.strip() for m in msgs[-3:])
                raise BpfError(
                    f"cannot open BPF object {self.path}: "
                    f"{os.strerror(exc.errno or 0)} {detail}".strip(),
                    exc.errno or 0,
                ) from None
        self._rodata_vars: dict[str, tuple[int, int]] | None = None
        self._loaded = False

    def _require_open(self) -> int:
        if self._obj is None:
            raise XdpShieldError(f"object {self.path} was closed")
        return self._obj

    def _maps(self) -> Iterator[int]:
        obj, m = self._require_open(), None
        while True:
            m = lib().bpf.bpf_object__next_map(obj, m)
            if not m:
                return
            yield m

    def _programs(self) -> Iterator[int]:
        obj, p = self._require_open(), None
        while True:
            p = lib().bpf.bpf_object__next_program(obj, p)
            if not p:
                return
            yield p

    @property
    def map_names(self) -> list[str]:
        """User-defined maps (internal .rodata/.bss maps are left out)."""
        L = lib().bpf
        return [L.bpf_map__name(m).decode() for m in self._maps() if not L.bpf_map__is_internal(m)]

    @property
    def program_names(self) -> list[str]:
        return [lib().bpf.bpf_program__name(p).decode() for p in self._programs()]

    def _map_ptr(self, name: str) -> int:
        for m in self._maps():
            if lib().bpf.bpf_map__name(m).decode() == name:
                return m
        raise ObjectMismatch(f"{self.path.name} has no map {name!r}")

    def _rodata(self) -> tuple[int, dict[str, tuple[int, int]]]:
        L = lib()
        ptr = next(
            (
                m
                for m in self._maps()
                if L.bpf.bpf_map__is_internal(m)
                and L.bpf.bpf_map__name(m).decode().endswith(".rodata")
            ),
            None,
        )
        if ptr is None:
            raise ObjectMismatch(f"{self.path.name} has no .rodata constants")
        if self._rodata_vars is None:
            btf = L.bpf.bpf_object__btf(self._require_open())
            self._rodata_vars = L.btf_datasec_vars(btf, ".rodata") if btf else {}
        return ptr, self._rodata_vars

    @property
    def constants(self) -> dict[str, bytes]:
        """Current raw values of every ``const volatile`` global, by name."""
        ptr, vars_ = self._rodata()
        data = self._initial_value(ptr)
        return {n: data[off : off + size] for n, (off, size) in vars_.items()}

    def _initial_value(self, ptr: int) -> bytes:
        L = lib()
        size = L.size_t()
        addr = L.bpf.bpf_map__initial_value(ptr, size)
        return L.read(addr, size.value) if addr else b""

    def set_constants(self, **values: int | bytes) -> ObjectSpec:
        """Set ``const volatile`` globals before load; ints are encoded to the var's size."""
        if self._loaded:
            raise XdpShieldError("constants must be set before load()")
        ptr, vars_ = self._rodata()
        data = bytearray(self._initial_value(ptr))
        for name, value in values.items():
            if name not in vars_:
                known = ", ".join(sorted(vars_)) or "none"
                raise ObjectMismatch(f"{self.path.name} has no constant {name!r} (known: {known})")
            off, size = vars_[name]
            raw = (
                value
                if isinstance(value, bytes)
                else value.to_bytes(size, "little", signed=value < 0)
            )
            if len(raw) != size:
                raise ValueError(f"constant {name} is {size} bytes, got {len(raw)}")
            data[off : off + size] = raw
        buf = lib().buffer(bytes(data))
        lib().bpf.bpf_map__set_initial_value(ptr, buf, len(data))
        return self

    def set_max_entries(self, name: str, n: int) -> ObjectSpec:
        lib().bpf.bpf_map__set_max_entries(self._map_ptr(name), n)
        return self

    def reuse_mismatch(self, name: str, existing: Map[Any, Any]) -> str | None:
        """Why ``existing`` cannot stand in for map ``name`` (None: it can).

        Compares what the kernel checks nothing of when a reused map meets new
        code: type, key and value size, max_entries and flags.
        """
        L = lib().bpf
        ptr = self._map_ptr(name)
        have = lib().map_info(existing.fd)
        for what, want, got in (
            ("type", L.bpf_map__type(ptr), have.type),
            ("key size", L.bpf_map__key_size(ptr), have.key_size),
            ("value size", L.bpf_map__value_size(ptr), have.value_size),
            ("max_entries", L.bpf_map__max_entries(ptr), have.max_entries),
            ("flags", L.bpf_map__map_flags(ptr), have.map_flags),
        ):
            if want != got:
                return f"{what} is {got}, this object wants {want}"
        return None

    def reuse_map(self, name: str, existing: Map[Any, Any]) -> ObjectSpec:
        """Load with an existing map (e.g. pinned state) instead of creating a new one."""
        try:
            lib().bpf.bpf_map__reuse_fd(self._map_ptr(name), existing.fd)
        except OSError as exc:
            raise from_oserror(exc, f"reuse map {name}") from None
        return self

    def set_autoload(self, program: str, autoload: bool) -> ObjectSpec:
        for p in self._programs():
            if lib().bpf.bpf_program__name(p).decode() == program:
                lib().bpf.bpf_program__set_autoload(p, autoload)
                return self
        raise ObjectMismatch(f"{self.path.name} has no program {program!r}")

    def btf_enum(self, name: str) -> dict[str, int]:
        """Members of an enum in the object's BTF (e.g. the verdict reasons)."""
        btf = lib().bpf.bpf_object__btf(self._require_open())
        found = lib().btf_enum(btf, name) if btf else None
        if found is None:
            raise ObjectMismatch(f"{self.path.name} has no enum {name!r} in its BTF")
        return found

    def load(self, log_size: int = 1 << 22) -> Collection:
        """Load every program and map; a verifier rejection raises VerifierError."""
        L = lib()
        obj = self._require_open()
        logs: dict[str, Any] = {}
        for p in self._programs():
            buf = L.buffer(log_size)
            L.bpf.bpf_program__set_log_buf(p, buf, log_size)
            logs[L.bpf.bpf_program__name(p).decode()] = buf
        with L.capture() as msgs:
            try:
                L.bpf.bpf_object__load(obj)
            except OSError as exc:
                err = exc.errno or 0
                for name, buf in logs.items():
                    text = buf.value.decode(errors="replace")
                    if text.strip():
                        raise VerifierError(name, err, text) from None
                if err in (errno.EPERM, errno.EACCES):
                    raise from_oserror(exc, f"load {self.path.name}") from None
                detail = "\n  ".join(m.rstrip() for m in msgs if m.strip())
                raise BpfError(
                    f"cannot load {self.path.name}: {os.strerror(err)}"
                    + (f"\n  {detail}" if detail else ""),
                    err,
                ) from None
        self._loaded = True
        maps: dict[str, Map[bytes, bytes]] = {}
        for m in self._maps():
            name = L.bpf.bpf_map__name(m).decode()
            maps[name] = Map.from_fd(os.dup(L.bpf.bpf_map__fd(m)), name)
        progs: dict[str, Program] = {}
        for p in self._programs():
            try:
                fd = L.bpf.bpf_program__fd(p)
            except OSError:  # autoload disabled
                continue
            name = L.bpf.bpf_program__name(p).decode()
            progs[name] = Program(
                os.dup(fd),
                name,
                L.bpf.bpf_program__section_name(p).decode(),
                L.bpf.bpf_program__type(p),
            )
        return Collection(self, maps, progs)

    def close(self) -> None:
        if self._obj is not None:
            lib().bpf.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> ObjectSpec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class Collection:
    """Loaded maps and programs of one object; closing it closes them all."""

    def __init__(
        self,
        spec: ObjectSpec,
        maps: Mapping[str, Map[bytes, bytes]],
        programs: Mapping[str, Program],
    ) -> None:
        self.spec = spec
        self.maps = dict(maps)
        self.programs = dict(programs)

    def map(self, name: str) -> Map[bytes, bytes]:
        try:
            return self.maps[name]
        except KeyError:
            raise ObjectMismatch(f"no map {name!r}; maps: {', '.join(self.maps)}") from None

    def program(self, name: str) -> Program:
        try:
            return self.programs[name]
        except KeyError:
            raise ObjectMismatch(
                f"no program {name!r}; programs: {', '.join(self.programs)}"
            ) from None

    def close(self) -> None:
        close_maps(self.maps)
        for p in self.programs.values():
            p.close()
        self.spec.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- interfaces and attachment ----------------------------------------------------
def ifindex_of(iface: str | int) -> int:
    if isinstance(iface, int):
        return iface
    # Not /sys/class/net: sysfs shows the namespace it was mounted in, not ours.
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise InterfaceNotFound(f"no network interface named {iface!r} in this namespace") from None


class XdpMode(Enum):
    NATIVE = "native"
    GENERIC = "generic"
    AUTO = "auto"


@dataclass(frozen=True)
class XdpAttachment:
    ifindex: int
    prog_id: int
    mode: str  # "native", "generic" or "offload"


def query_xdp(iface: str | int) -> XdpAttachment | None:
    """What XDP program is attached to the interface, in which mode (None if none)."""
    idx = ifindex_of(iface)
    try:
        q = lib().xdp_query(idx)
    except OSError as exc:
        raise from_oserror(exc, f"query XDP on {iface}") from None
    for pid, mode in (
        (q.drv_prog_id, "native"),
        (q.skb_prog_id, "generic"),
        (q.hw_prog_id, "offload"),
    ):
        if pid:
            return XdpAttachment(idx, pid, mode)
    return None


def attach_xdp(
    prog: Program, iface: str | int, mode: XdpMode | str = XdpMode.AUTO, *, replace: bool = False
) -> XdpAttachment:
    """Attach through netlink, so the program stays after this process exits.

    ``auto`` tries native and falls back to generic where the driver has no XDP.
    Refuses to replace an attached program unless ``replace``.
    """
    mode = XdpMode(mode)
    idx = ifindex_of(iface)
    if not replace and (cur := query_xdp(idx)) is not None:
        raise AlreadyAttached(
            f"{iface} already has XDP program id {cur.prog_id} ({cur.mode}); unload it first"
        )
    tries = {
        XdpMode.NATIVE: [XDP_FLAGS_DRV_MODE],
        XdpMode.GENERIC: [XDP_FLAGS_SKB_MODE],
        XdpMode.AUTO: [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE],
    }[mode]
    last: OSError | None = None
    for flags in tries:
        f = flags | (0 if replace else XDP_FLAGS_UPDATE_IF_NOEXIST)
        with lib().capture():
            try:
                lib().bpf.bpf_xdp_attach(idx, prog.fd, f, None)
            except OSError as exc:
                last = exc
                if exc.errno == errno.EBUSY:
                    raise AlreadyAttached(
                        f"{iface}: an XDP program is already attached (in another mode?)"
                    ) from None
                continue
        got = query_xdp(idx)
        assert got is not None
        return got
    assert last is not None
    raise from_oserror(last, f"attach XDP program {prog.name} to {iface} ({mode.value})")


def detach_xdp(iface: str | int, prog_id: int | None = None) -> None:
    """Detach the XDP program (only if it is ``prog_id``, when given)."""
    cur = query_xdp(iface)
    if cur is None:
        raise NotAttached(f"no XDP program on {iface}")
    if prog_id is not None and cur.prog_id != prog_id:
        raise NotAttached(
            f"{iface} runs XDP program id {cur.prog_id}, not ours ({prog_id}); left alone"
        )
    flags = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}.get(cur.mode, 0)
    try:
        lib().bpf.bpf_xdp_detach(cur.ifindex, flags, None)
    except OSError as exc:
        raise from_oserror(exc, f"detach XDP from {iface}") from None


@dataclass(frozen=True)
class TcAttachment:
    ifindex: int
    prog_id: int
    handle: int
    priority: int
    ingress: bool


def attach_tc(
    prog: Program, iface: str | int, *, ingress: bool = True, handle: int = 1, priority: int = 1
) -> TcAttachment:
    """Attach a direct-action classifier to clsact (created when absent)."""
    idx = ifindex_of(iface)
    L = lib()
    hook = L.tc_hook(idx, ingress)
    try:
        L.bpf.bpf_tc_hook_create(hook)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise from_oserror(exc, f"create clsact on {iface}") from None
    opts = L.tc_opts(prog_fd=prog.fd, handle=handle, priority=priority)
    try:
        L.bpf.bpf_tc_attach(hook, opts)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise AlreadyAttached(
                f"{iface}: a tc filter with handle {handle} priority {priority} exists"
            ) from None
        raise from_oserror(exc, f"attach tc program {prog.name} to {iface}") from None
    return TcAttachment(idx, opts.prog_id, handle, priority, ingress)


def detach_tc(
    iface: str | int, *, ingress: bool = True, handle: int = 1, priority: int = 1
) -> None:
    idx = ifindex_of(iface)
    L = lib()
    hook = L.tc_hook(idx, ingress)
    try:
        L.bpf.bpf_tc_detach(hook, L.tc_opts(handle=handle, priority=priority))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise NotAttached(f"no tc filter {handle}/{priority} on {iface}") from None
        raise from_oserror(exc, f"detach tc from {iface}") from None


def query_tc(
    iface: str | int, *, ingress: bool = True, handle: int = 1, priority: int = 1
) -> int | None:
    """Program id of our tc filter, or None."""
    L = lib()
    hook = L.tc_hook(ifindex_of(iface), ingress)
    opts = L.tc_opts(handle=handle, priority=priority)
    try:
        L.bpf.bpf_tc_query(hook, opts)
    except OSError:
        return None
    return int(opts.prog_id)


# -- bpffs --------------------------------------------------------------------------
def _bpffs_mounted(mountinfo: Path, mountpoint: str) -> bool:
    try:
        for line in mountinfo.read_text().splitlines():
            pre, _, post = line.partition(" - ")
            if pre.split()[4] == mountpoint and post.split()[0] == "bpf":
                return True
    except OSError:
        return False
    return False


def _ancestors() -> Iterator[int]:
    pid = os.getppid()
    while pid > 1:
        yield pid
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return


def bpffs_root() -> Path:
    """The BPF filesystem, found or mounted.

    ``ip netns exec`` remounts /sys in a private mount namespace, hiding the
    host's bpffs; pins must still go to the host's so that the next command
    sees them. An ancestor (the shell that ran ``ip``) still has it, reachable
    through /proc/PID/root. Only when no bpffs is found is one mounted, and
    then pins live only as long as this mount namespace.
    """
    if _bpffs_mounted(Path("/proc/self/mountinfo"), str(BPFFS_ROOT)):
        return BPFFS_ROOT
    for pid in _ancestors():
        host = Path(f"/proc/{pid}/root") / BPFFS_ROOT.relative_to("/")
        if _bpffs_mounted(Path(f"/proc/{pid}/mountinfo"), str(BPFFS_ROOT)) and os.access(
            host, os.W_OK
        ):
            return host
    BPFFS_ROOT.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "bpf", "bpf", str(BPFFS_ROOT)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BpfError(f"cannot mount bpffs at {BPFFS_ROOT}: {proc.stderr.strip()}")
    return BPFFS_ROOT
