"""The one module that touches ctypes: libbpf.so.1, the few libc calls it needs,
and libpcap's filter compiler and interpreter (``Pcap``, loaded only when used).

Every foreign function gets its argtypes/restype here; the rest of the package only
calls the thin Python wrappers below, which turn negative returns into ``OSError``
carrying errno (``errors.from_errno`` then maps them onto the exception tree).
Struct layouts follow libbpf 1.1's headers; each opts struct starts with ``sz``
so newer libbpf versions stay compatible.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any

__all__ = [
    "BTF_KIND_DATASEC",
    "BTF_KIND_ENUM",
    "BTF_KIND_ENUM64",
    "BTF_KIND_VAR",
    "TEST_RUN_XDP_LIVE_FRAMES",
    "Buffer",
    "Lib",
    "Pcap",
    "lib",
    "pcap",
]

BTF_KIND_ENUM = 6
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_KIND_ENUM64 = 19
TEST_RUN_XDP_LIVE_FRAMES = 1 << 1  # BPF_F_TEST_XDP_LIVE_FRAMES
BPF_TC_INGRESS = 1 << 0
BPF_TC_EGRESS = 1 << 1
LIBBPF_STRICT_ALL = 0xFFFFFFFF

Buffer = ctypes.Array[c_char]


class TestRunOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class XdpMd(Structure):
    """struct xdp_md, the XDP context passed to test runs."""

    _fields_ = [
        ("data", c_uint32),
        ("data_end", c_uint32),
        ("data_meta", c_uint32),
        ("ingress_ifindex", c_uint32),
        ("rx_queue_index", c_uint32),
        ("egress_ifindex", c_uint32),
    ]


class XdpQueryOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_id", c_uint32),
        ("drv_prog_id", c_uint32),
        ("hw_prog_id", c_uint32),
        ("skb_prog_id", c_uint32),
        ("attach_mode", c_uint8),
    ]


class XdpAttachOpts(Structure):
    """struct bpf_xdp_attach_opts: the program expected on the hook (XDP_FLAGS_REPLACE)."""

    _fields_ = [("sz", c_size_t), ("old_prog_fd", c_int)]


class MapBatchOpts(Structure):
    _fields_ = [("sz", c_size_t), ("elem_flags", c_uint64), ("flags", c_uint64)]


class TcHook(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
    ]


class TcOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
    ]


class MapInfo(Structure):
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", c_char * 16),
        ("ifindex", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("btf_id", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("pad", c_uint32),
        ("map_extra", c_uint64),
    ]


class ProgInfo(Structure):
    """The head of struct bpf_prog_info: the kernel fills only what fits."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * 8),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", c_char * 16),
    ]


class BtfType(Structure):
    """struct btf_type; kind-specific records follow it in memory."""

    _fields_ = [("name_off", c_uint32), ("info", c_uint32), ("size_or_type", c_uint32)]


class BtfEnum(Structure):
    _fields_ = [("name_off", c_uint32), ("val", c_int32)]


class BtfEnum64(Structure):
    _fields_ = [("name_off", c_uint32), ("val_lo32", c_uint32), ("val_hi32", c_uint32)]


class BtfVarSecinfo(Structure):
    _fields_ = [("type", c_uint32), ("offset", c_uint32), ("size", c_uint32)]


PrintFn = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
# ring_buffer_sample_fn: int (*)(void *ctx, void *data, size_t size)
RingSampleFn = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


def _load(name: str) -> ctypes.CDLL:
    path = ctypes.util.find_library(name)
    candidates = [path] if path else []
    candidates.append(f"lib{name}.so.1" if name == "bpf" else f"lib{name}.so.6")
    last: OSError | None = None
    for cand in candidates:
        try:
            return ctypes.CDLL(cand, use_errno=True)
        except OSError as exc:
            last = exc
    raise OSError(f"cannot load lib{name}: {last} (install libbpf1 / libbpf-dev)")


def _errcheck_int(result: int, func: Any, args: Any) -> int:
    """libbpf 1.x returns -errno directly (and sets errno)."""
    if result < 0:
        err = -result
        raise OSError(err, os.strerror(err))
    return result


def _errcheck_ptr(result: int | None, func: Any, args: Any) -> int:
    if not result:
        err = ctypes.get_errno() or 22
        raise OSError(err, os.strerror(err))
    return result


class Lib:
    """Typed access to libbpf. One instance per process (``lib``)."""

    def __init__(self) -> None:
        self.bpf = _load("bpf")
        self.c = _load("c")
        self._log_lock = threading.Lock()
        self._captured: list[str] | None = None
        self._declare()
        # Strict mode is the default in libbpf 1.x; set it anyway for clarity.
        self.bpf.libbpf_set_strict_mode(LIBBPF_STRICT_ALL)
        self._print_cb = PrintFn(self._on_print)  # keep a reference: C holds it
        self.bpf.libbpf_set_print(self._print_cb)

    # -- libbpf's own messages ------------------------------------------------
    def _on_print(self, level: int, fmt: bytes | None, args: int | None) -> int:
        """Format libbpf's message with vsnprintf (va_list is a pointer on x86-64/arm64)."""
        if self._captured is None or fmt is None:
            return 0
        buf = ctypes.create_string_buffer(4096)
        self.c.vsnprintf(buf, len(buf), fmt, args)
        self._captured.append(buf.value.decode(errors="replace"))
        return 0

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Collect libbpf's messages issued inside the block (otherwise silent)."""
        with self._log_lock:
            lines: list[str] = []
            self._captured = lines
            try:
                yield lines
            finally:
                self._captured = None

    # -- declarations -----------------------------------------------------------
    def _fn(self, name: str, restype: Any, argtypes: list[Any], check: str = "int") -> None:
        f = getattr(self.bpf, name)
        f.restype = restype
        f.argtypes = argtypes
        if check == "int":
            f.errcheck = _errcheck_int
        elif check == "ptr":
            f.errcheck = _errcheck_ptr

    def _declare(self) -> None:
        vp, ci, cu = c_void_p, c_int, c_uint32
        self.c.vsnprintf.restype = c_int
        self.c.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
        fn = self._fn
        fn("libbpf_set_print", vp, [PrintFn], check="none")
        fn("libbpf_set_strict_mode", ci, [ci], check="none")
        # objects
        fn("bpf_object__open_file", vp, [c_char_p, vp], check="ptr")
        fn("bpf_object__load", ci, [vp])
        fn("bpf_object__close", None, [vp], check="none")
        fn("bpf_object__next_map", vp, [vp, vp], check="none")
        fn("bpf_object__next_program", vp, [vp, vp], check="none")
        fn("bpf_object__btf", vp, [vp], check="none")
        # maps in an object
        fn("bpf_map__name", c_char_p, [vp], check="none")
        fn("bpf_map__type", ci, [vp], check="none")
        fn("bpf_map__key_size", cu, [vp], check="none")
        fn("bpf_map__value_size", cu, [vp], check="none")
        fn("bpf_map__max_entries", cu, [vp], check="none")
        fn("bpf_map__map_flags", cu, [vp], check="none")
        fn("bpf_map__set_max_entries", ci, [vp, cu])
        fn("bpf_map__fd", ci, [vp])
        fn("bpf_map__is_internal", ctypes.c_bool, [vp], check="none")
        fn("bpf_map__initial_value", vp, [vp, POINTER(c_size_t)], check="none")
        fn("bpf_map__set_initial_value", ci, [vp, vp, c_size_t])
        fn("bpf_map__reuse_fd", ci, [vp, ci])
        # programs in an object
        fn("bpf_program__name", c_char_p, [vp], check="none")
        fn("bpf_program__section_name", c_char_p, [vp], check="none")
        fn("bpf_program__fd", ci, [vp])
        fn("bpf_program__type", ci, [vp], check="none")
        fn("bpf_program__set_autoload", ci, [vp, ctypes.c_bool])
        fn("bpf_program__set_log_buf", ci, [vp, vp, c_size_t])
        fn("bpf_program__set_log_level", ci, [vp, cu])
        # BTF
        fn("btf__find_by_name_kind", c_int32, [vp, c_char_p, cu], check="none")
        fn("btf__type_by_id", POINTER(BtfType), [vp, cu], check="none")
        fn("btf__name_by_offset", c_char_p, [vp, cu], check="none")
        fn("btf__type_cnt", cu, [vp], check="none")
        # fd-level syscalls
        fn("bpf_map_lookup_elem", ci, [ci, vp, vp])
        fn("bpf_map_update_elem", ci, [ci, vp, vp, c_uint64])
        fn("bpf_map_delete_elem", ci, [ci, vp])
        fn("bpf_map_lookup_and_delete_elem", ci, [ci, vp, vp])
        fn("bpf_map_get_next_key", ci, [ci, vp, vp])
        fn("bpf_map_lookup_batch", ci, [ci, vp, vp, vp, vp, POINTER(cu), POINTER(MapBatchOpts)])
        fn("bpf_map_update_batch", ci, [ci, vp, vp, POINTER(cu), POINTER(MapBatchOpts)])
        fn("bpf_map_delete_batch", ci, [ci, vp, POINTER(cu), POINTER(MapBatchOpts)])
        fn("bpf_obj_pin", ci, [ci, c_char_p])
        fn("bpf_obj_get", ci, [c_char_p])
        fn("bpf_obj_get_info_by_fd", ci, [ci, vp, POINTER(cu)])
        fn("bpf_prog_get_fd_by_id", ci, [cu])
        fn("bpf_map_get_fd_by_id", ci, [cu])
        fn("bpf_prog_test_run_opts", ci, [ci, POINTER(TestRunOpts)])
        # attach
        fn("bpf_xdp_attach", ci, [ci, ci, cu, vp])
        fn("bpf_xdp_detach", ci, [ci, cu, vp])
        fn("bpf_xdp_query", ci, [ci, ci, POINTER(XdpQueryOpts)])
        fn("bpf_tc_hook_create", ci, [POINTER(TcHook)])
        fn("bpf_tc_hook_destroy", ci, [POINTER(TcHook)])
        fn("bpf_tc_attach", ci, [POINTER(TcHook), POINTER(TcOpts)])
        fn("bpf_tc_detach", ci, [POINTER(TcHook), POINTER(TcOpts)])
        fn("bpf_tc_query", ci, [POINTER(TcHook), POINTER(TcOpts)])
        # ring buffers (BPF_MAP_TYPE_RINGBUF)
        fn("ring_buffer__new", vp, [ci, RingSampleFn, vp, vp], check="ptr")
        fn("ring_buffer__poll", ci, [vp, ci])
        fn("ring_buffer__consume", ci, [vp])
        fn("ring_buffer__free", None, [vp], check="none")

    # -- small helpers the higher layers share ------------------------------------
    @staticmethod
    def buffer(data: bytes | int) -> Buffer:
        return (
            ctypes.create_string_buffer(data, len(data))
            if isinstance(data, bytes)
            else (ctypes.create_string_buffer(data))
        )

    @staticmethod
    def addr(buf: Any) -> int:
        return ctypes.addressof(buf)

    @staticmethod
    def read(ptr: int, size: int) -> bytes:
        return ctypes.string_at(ptr, size)

    @staticmethod
    def write(ptr: int, data: bytes) -> None:
        ctypes.memmove(ptr, data, len(data))

    def map_info(self, fd: int) -> MapInfo:
        info = MapInfo()
        size = c_uint32(ctypes.sizeof(info))
        self.bpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
        return info

    def prog_info(self, fd: int) -> ProgInfo:
        info = ProgInfo()
        size = c_uint32(ctypes.sizeof(info))
        self.bpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
        return info

    def prog_map_ids(self, fd: int) -> list[int]:
        """IDs of the maps a loaded program uses."""
        n = int(self.prog_info(fd).nr_map_ids)
        ids = (c_uint32 * max(n, 1))()
        info = ProgInfo(nr_map_ids=n, map_ids=ctypes.addressof(ids))
        size = c_uint32(ctypes.sizeof(info))
        self.bpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
        return list(ids[: min(n, int(info.nr_map_ids))])

    def test_run(
        self,
        prog_fd: int,
        data: bytes,
        *,
        repeat: int = 1,
        out_size: int | None = None,
        ctx: XdpMd | None = None,
        flags: int = 0,
        batch_size: int = 0,
    ) -> tuple[int, bytes | None, int]:
        """BPF_PROG_TEST_RUN: (retval, output bytes or None, ns per run)."""
        din = self.buffer(data)
        opts = TestRunOpts(sz=ctypes.sizeof(TestRunOpts))
        opts.data_in = ctypes.addressof(din)
        opts.data_size_in = len(data)
        dout = None
        if out_size:
            dout = ctypes.create_string_buffer(out_size)
            opts.data_out = ctypes.addressof(dout)
            opts.data_size_out = out_size
        if ctx is not None:
            opts.ctx_in = ctypes.addressof(ctx)
            opts.ctx_size_in = ctypes.sizeof(ctx)
        opts.repeat = repeat
        opts.flags = flags
        opts.batch_size = batch_size
        self.bpf.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
        out = dout.raw[: opts.data_size_out] if dout is not None else None
        return opts.retval, out, opts.duration

    def ring_buffer(self, fd: int, on_record: Callable[[bytes], None]) -> tuple[int, Any]:
        """ring_buffer__new on a ring map's fd: (the ring_buffer pointer, the
        callback object, which the caller must keep alive until freed).
        ``on_record`` gets a copy of each record while ``ring_buffer__poll`` runs."""

        def cb(_ctx: int | None, data: int | None, size: int) -> int:
            if data:
                on_record(ctypes.string_at(data, size))
            return 0

        keep = RingSampleFn(cb)
        return int(self.bpf.ring_buffer__new(fd, keep, None, None)), keep

    def xdp_query(self, ifindex: int) -> XdpQueryOpts:
        q = XdpQueryOpts(sz=ctypes.sizeof(XdpQueryOpts))
        self.bpf.bpf_xdp_query(ifindex, 0, ctypes.byref(q))
        return q

    @staticmethod
    def tc_hook(ifindex: int, ingress: bool = True) -> TcHook:
        hook = TcHook(sz=ctypes.sizeof(TcHook), ifindex=ifindex)
        hook.attach_point = BPF_TC_INGRESS if ingress else BPF_TC_EGRESS
        return hook

    @staticmethod
    def tc_opts(**fields: int) -> TcOpts:
        return TcOpts(sz=ctypes.sizeof(TcOpts), **fields)

    @staticmethod
    def batch_opts() -> MapBatchOpts:
        return MapBatchOpts(sz=ctypes.sizeof(MapBatchOpts))

    @staticmethod
    def u32(value: int = 0) -> c_uint32:
        return c_uint32(value)

    @staticmethod
    def size_t(value: int = 0) -> c_size_t:
        return c_size_t(value)

    def btf_enum(self, btf: int, name: str) -> dict[str, int] | None:
        """Members of ``enum name`` in a BTF object, or None when absent."""
        for kind, rec in ((BTF_KIND_ENUM, BtfEnum), (BTF_KIND_ENUM64, BtfEnum64)):
            tid = self.bpf.btf__find_by_name_kind(btf, name.encode(), kind)
            if tid <= 0:
                continue
            t = self.bpf.btf__type_by_id(btf, tid)
            vlen = t.contents.info & 0xFFFF
            base = ctypes.addressof(t.contents) + ctypes.sizeof(BtfType)
            out: dict[str, int] = {}
            for i in range(vlen):
                e = rec.from_address(base + i * ctypes.sizeof(rec))
                member = self.bpf.btf__name_by_offset(btf, e.name_off).decode()
                if rec is BtfEnum:
                    out[member] = e.val
                else:
                    out[member] = e.val_lo32 | (e.val_hi32 << 32)
            return out
        return None

    def btf_datasec_vars(self, btf: int, section: str) -> dict[str, tuple[int, int]]:
        """Variables of a DATASEC (e.g. '.rodata'): name -> (offset, size)."""
        tid = self.bpf.btf__find_by_name_kind(btf, section.encode(), BTF_KIND_DATASEC)
        if tid <= 0:
            return {}
        t = self.bpf.btf__type_by_id(btf, tid)
        vlen = t.contents.info & 0xFFFF
        base = ctypes.addressof(t.contents) + ctypes.sizeof(BtfType)
        out: dict[str, tuple[int, int]] = {}
        for i in range(vlen):
            s = BtfVarSecinfo.from_address(base + i * ctypes.sizeof(BtfVarSecinfo))
            var = self.bpf.btf__type_by_id(btf, s.type)
            name = self.bpf.btf__name_by_offset(btf, var.contents.name_off).decode()
            out[name] = (s.offset, s.size)
        return out


class BpfProgram(Structure):
    """libpcap's struct bpf_program: a compiled classic BPF filter."""

    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", c_void_p)]


class PcapPkthdr(Structure):
    _fields_ = [
        ("tv_sec", ctypes.c_long),
        ("tv_usec", ctypes.c_long),
        ("caplen", c_uint32),
        ("len", c_uint32),
    ]


PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class Pcap:
    """libpcap's filter compiler and its interpreter, the ones tcpdump uses:
    a filter expression is compiled on a dead handle (no device, no capture)
    and run on bytes with ``pcap_offline_filter``."""

    def __init__(self) -> None:
        self.pcap = _load_pcap()
        vp, ci = c_void_p, c_int
        for name, restype, argtypes in (
            ("pcap_open_dead", vp, [ci, ci]),
            ("pcap_compile", ci, [vp, POINTER(BpfProgram), c_char_p, ci, c_uint32]),
            ("pcap_geterr", c_char_p, [vp]),
            ("pcap_offline_filter", ci, [POINTER(BpfProgram), POINTER(PcapPkthdr), c_char_p]),
            ("pcap_freecode", None, [POINTER(BpfProgram)]),
            ("pcap_close", None, [vp]),
        ):
            f = getattr(self.pcap, name)
            f.restype, f.argtypes = restype, argtypes

    def compile(self, expr: str, linktype: int, snaplen: int) -> BpfProgram:
        """The classic BPF program of a filter expression; ValueError with
        libpcap's message when it does not compile."""
        handle = self.pcap.pcap_open_dead(linktype, snaplen)
        if not handle:
            raise OSError(f"pcap_open_dead({linktype}) failed")
        try:
            prog = BpfProgram()
            rc = self.pcap.pcap_compile(
                handle, ctypes.byref(prog), expr.encode(), 1, PCAP_NETMASK_UNKNOWN
            )
            if rc < 0:
                err = self.pcap.pcap_geterr(handle) or b"cannot compile"
                raise ValueError(err.decode(errors="replace"))
            return prog
        finally:
            self.pcap.pcap_close(handle)

    def matches(self, prog: BpfProgram, data: bytes, wirelen: int) -> bool:
        hdr = PcapPkthdr(0, 0, len(data), wirelen)
        return bool(self.pcap.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), data))

    def free(self, prog: BpfProgram) -> None:
        self.pcap.pcap_freecode(ctypes.byref(prog))


def _load_pcap() -> ctypes.CDLL:
    names = [n for n in (ctypes.util.find_library("pcap"),) if n]
    names += ["libpcap.so.0.8", "libpcap.so.1"]
    for cand in names:
        try:
            return ctypes.CDLL(cand)
        except OSError:
            continue
    raise OSError("cannot load libpcap (install libpcap0.8, which tcpdump brings)")


_lib: Lib | None = None
_pcap: Pcap | None = None


def pcap() -> Pcap:
    """The process-wide libpcap handle, loaded on first use."""
    global _pcap
    if _pcap is None:
        _pcap = Pcap()
    return _pcap


def lib() -> Lib:
    """The process-wide libbpf handle, loaded on first use."""
    global _lib
    if _lib is None:
        _lib = Lib()
    return _lib
