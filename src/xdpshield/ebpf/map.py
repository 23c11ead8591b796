"""Maps: typed views, lookups and updates, batches, pins."""

from __future__ import annotations

import contextlib
import errno
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..errors import (
    BpfError,
    KeyNotFound,
    Op,
    from_oserror,
)
from ._libbpf import lib
from .codec import Codec, Raw, possible_cpus

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

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
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


def close_maps(maps: Mapping[str, Map[Any, Any]] | None) -> None:
    """Close every map of a name -> map collection (None: nothing)."""
    for m in (maps or {}).values():
        m.close()


def _obj_pin(fd: int, path: str | Path, what: str) -> None:
    try:
        lib().bpf.bpf_obj_pin(fd, str(path).encode())
    except OSError as exc:
        raise from_oserror(exc, f"pin {what} at {path}", Op.OBJ_PIN) from None


def _obj_get(path: str | Path, what: str) -> int:
    """A new fd for the object pinned at ``path``."""
    try:
        return int(lib().bpf.bpf_obj_get(str(path).encode()))
    except OSError as exc:
        raise from_oserror(exc, f"pinned {what} at {path}", Op.OBJ_GET) from None


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
            raise from_oserror(exc, f"open map id {map_id}", Op.BY_ID) from None
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
            raise from_oserror(
                exc, f"map {self.name}: lookup of key {key!r}", Op.MAP_LOOKUP
            ) from None
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
            if exc.errno == errno.EEXIST:  # BPF_NOEXIST
                raise BpfError(f"map {self.name}: key {key!r} exists", exc.errno) from None
            raise from_oserror(
                exc,
                f"map {self.name} ({self.max_entries} entries): update of key {key!r}",
                Op.MAP_UPDATE,
            ) from None

    def delete(self, key: K) -> None:
        k = lib().buffer(self.key.encode(key))
        try:
            lib().bpf.bpf_map_delete_elem(self.fd, k)
        except OSError as exc:
            raise from_oserror(
                exc, f"map {self.name}: delete of key {key!r}", Op.MAP_DELETE
            ) from None

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
        self.update_batch_bytes(
            b"".join(self.key.encode(k) for k, _ in items),
            b"".join(self._encode_value(v) for _, v in items),
            chunk=len(items),
        )

    def update_batch_bytes(self, keys: bytes, values: bytes, chunk: int = 65536) -> None:
        """Like :meth:`update_batch` for elements already encoded: ``keys`` and
        ``values`` are the keys' and the values' bytes end to end. A million
        prefixes skip a million codec calls (a second of Python here)."""
        n = len(keys) // self.key_size
        if len(keys) != n * self.key_size or len(values) != n * self._stride * self.ncpus:
            raise ValueError(
                f"map {self.name}: {len(keys)} key bytes and {len(values)} value bytes "
                f"are not whole elements of {self.key_size} and {self._stride * self.ncpus}"
            )
        L = lib()
        vsz = self._stride * self.ncpus
        for i in range(0, n, chunk):
            m = min(chunk, n - i)
            kbuf = L.buffer(keys[i * self.key_size : (i + m) * self.key_size])
            vbuf = L.buffer(values[i * vsz : (i + m) * vsz])
            count = L.u32(m)
            try:
                L.bpf.bpf_map_update_batch(self.fd, kbuf, vbuf, count, L.batch_opts())
            except OSError as exc:
                raise from_oserror(
                    exc,
                    f"map {self.name} ({self.max_entries} entries): batch update "
                    f"({i + count.value} of {n} written)",
                    Op.MAP_UPDATE,
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
            raise from_oserror(
                exc,
                f"map {self.name}: batch delete, a key is absent ({count.value} deleted)"
                if exc.errno == errno.ENOENT
                else f"map {self.name}: batch delete",
                Op.MAP_DELETE,
            ) from None

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
