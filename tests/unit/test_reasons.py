"""datapath.Reason mirrors enum xs_reason in the built object's BTF."""

from __future__ import annotations

import pytest

from xdpshield.ebpf import ObjectSpec
from xdpshield.objects import obj_dir
from xdpshield.shield.datapath import Reason

OBJ_DIR = obj_dir()


@pytest.mark.parametrize("name", ["xdpshield.o", "xdpshield_debug.o"])
def test_reason_matches_btf(name: str) -> None:
    spec = ObjectSpec(OBJ_DIR / name)
    try:
        btf = spec.btf_enum("xs_reason")
    finally:
        spec.close()
    want = {f"XS_R_{r.name}": int(r) for r in Reason}
    assert {k: v for k, v in btf.items() if k != "XS_R__MAX"} == want
    assert btf["XS_R__MAX"] == len(Reason)


def test_labels_are_stable() -> None:
    assert Reason.SYN_COOKIE_SENT.label == "syn-cookie-sent"
    assert [r.value for r in Reason] == list(range(len(Reason)))
