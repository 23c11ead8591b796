"""errno becomes the exception that fits the operation, and the message names the thing."""

from __future__ import annotations

import errno
import os

import pytest

from xdpshield.errors import (
    AlreadyAttached,
    BpfError,
    InterfaceNotFound,
    KeyNotFound,
    MapFull,
    NotAttached,
    NotPermitted,
    ObjectNotFound,
    Op,
    XdpShieldError,
    from_oserror,
)


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@pytest.mark.parametrize(
    ("code", "op", "what", "cls"),
    [
        (errno.ENOENT, Op.MAP_LOOKUP, "map xs_keys: lookup of key 7", KeyNotFound),
        (errno.ENOENT, Op.MAP_DELETE, "map xs_local: delete of key 1", KeyNotFound),
        (errno.E2BIG, Op.MAP_UPDATE, "map xs_verified (8 entries): update", MapFull),
        (errno.ENOSPC, Op.MAP_UPDATE, "map xs_verified (8 entries): update", MapFull),
        (
            errno.ENOENT,
            Op.OBJ_GET,
            "pinned program at /sys/fs/bpf/xdpshield/v0/prog",
            ObjectNotFound,
        ),
        (errno.ENOENT, Op.OBJ_PIN, "pin map xs_stats at /sys/fs/bpf/gone/xs_stats", ObjectNotFound),
        (errno.ENOENT, Op.BY_ID, "open program id 4242", ObjectNotFound),
        (errno.ENODEV, Op.INTERFACE, "query XDP on veth9", InterfaceNotFound),
        (errno.ENOENT, Op.INTERFACE, "query XDP on veth9", InterfaceNotFound),
        (errno.ENODEV, Op.ATTACH, "attach XDP program p to veth9", InterfaceNotFound),
        (errno.EEXIST, Op.ATTACH, "veth9: attach tc program t as filter 1/1", AlreadyAttached),
        (errno.EBUSY, Op.ATTACH, "attach XDP program p to veth9", AlreadyAttached),
        (errno.ENOENT, Op.DETACH, "veth9: detach tc filter 1/1", NotAttached),
        (errno.EPERM, Op.MAP_LOOKUP, "map xs_keys: lookup of key 0", NotPermitted),
        (errno.EACCES, Op.ATTACH, "attach XDP program p to veth9", NotPermitted),
        (errno.EINVAL, Op.ATTACH, "attach XDP program p to veth9", BpfError),
    ],
)
def test_errno_maps_per_operation(code: int, op: Op, what: str, cls: type[Exception]) -> None:
    exc = from_oserror(_err(code), what, op)
    assert type(exc) is cls
    assert str(exc).startswith(f"{what}: ")  # names the map, pin, program or interface
    assert exc.errno == code


@pytest.mark.parametrize(
    "op", [Op.OBJ_GET, Op.OBJ_PIN, Op.BY_ID, Op.INTERFACE, Op.DETACH, Op.ATTACH, Op.OTHER]
)
def test_enoent_is_a_missing_key_only_for_map_operations(op: Op) -> None:
    # Before: every ENOENT became KeyNotFound, a gone pin or interface included.
    assert not isinstance(from_oserror(_err(errno.ENOENT), "x", op), KeyNotFound)


def test_the_reason_reads_for_the_class_not_strerror() -> None:
    # ENOENT's strerror ("No such file or directory") is wrong about a map key.
    exc = from_oserror(_err(errno.ENOENT), "map xs_keys: lookup of key 7", Op.MAP_LOOKUP)
    assert str(exc) == "map xs_keys: lookup of key 7: no such key"
    generic = from_oserror(_err(errno.EINVAL), "attach XDP program p to veth9", Op.ATTACH)
    assert str(generic) == f"attach XDP program p to veth9: {os.strerror(errno.EINVAL)}"


def test_every_mapped_error_is_in_the_tree() -> None:
    for code in (errno.ENOENT, errno.E2BIG, errno.EEXIST, errno.ENODEV, errno.EPERM):
        for op in Op:
            assert isinstance(from_oserror(_err(code), "x", op), XdpShieldError)
