"""ObjectSpec (an opened ELF object, constants still settable) and the
Collection that loading it gives."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import (
    BpfError,
    ObjectMismatch,
    ObjectNotFound,
    VerifierError,
    XdpShieldError,
    from_oserror,
)
from ._libbpf import lib
from .map import Map, close_maps
from .program import Program


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

    def map_type(self, name: str) -> int:
        """The map's BPF_MAP_TYPE_* number, as the object declares it."""
        return int(lib().bpf.bpf_map__type(self._map_ptr(name)))

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
