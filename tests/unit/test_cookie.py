"""The reference cookie: SipHash-2-4 against the published vectors, and the layout."""

from __future__ import annotations

import pytest

from xdpshield import cookie

# SipHash-2-4 reference vectors (vectors.h of the reference implementation):
# key 00 01 .. 0f, message i bytes 00 01 .. (i-1), output as little-endian bytes.
_VECTOR_TEXT = """
310e0edd47db6f72 fd67dc93c539f874 5a4fa9d909806c0d 2d7efbd796666785
b7877127e09427cf 8da699cd64557618 cee3fe586e46c9cb 37d1018bf50002ab
6224939a79f5f593 b0e4a90bdf82009e f3b9dd94c5bb5d7a a7ad6b22462fb3f4
fbe50e86bc8f1e75 903d84c02756ea14 eef27a8e90ca23f7 e545be4961ca29a1
db9bc2577fcc2a3f 9447be2cf5e99a69 9cd38d96f0b3c14b bd6179a71dc96dbb
98eea21af25cd6be c7673b2eb0cbf2d0 883ea3e395675393 c8ce5ccd8c030ca8
94af49f6c650adb8 eab8858ade92e1bc f315bb5bb835d817 adcf6b0763612e2f
a5c91da7acaa4dde 716595876650a2a6 28ef495c53a387ad 42c341d8fa92d832
ce7cf2722f512771 e37859f94623f3a7 381205bb1ab0e012 ae97a10fd434e015
b4a31508beff4d31 81396229f0907902 4d0cf49ee5d4dcca 5c73336a76d8bf9a
d0a704536ba93e0e 925958fcd6420cad a915c29bc8067318 952b79f3bc0aa6d4
f21df2e41d4535f9 87577519048f53a9 10a56cf5dfcd9adb eb75095ccd986cd0
51a9cb9ecba312e6 96afadfc2ce666c7 72fe52975a4364ee 5a1645b276d592a1
b274cb8ebf87870a 6f9bb4203de7b381 eaecb2a30b22a87f 9924a43cc1315724
bd838d3aafbf8db7 0b1a2a3265d51aea 135079a3231ce660 932b2846e4d70666
e1915f5cb1eca46c f325965ca16d629f 575ff28e60381be5 724506eb4c328a95
"""
VECTORS = _VECTOR_TEXT.split()


@pytest.mark.parametrize("length", range(64))
def test_siphash_reference_vectors(length: int) -> None:
    assert len(VECTORS) == 64
    got = cookie.siphash24(bytes(range(16)), bytes(range(length)))
    assert got.to_bytes(8, "little") == bytes.fromhex(VECTORS[length])


def test_siphash_rejects_short_key() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        cookie.siphash24(b"short", b"")


KEY = bytes(range(16))


def test_cookie_layout_carries_slot_and_mss_index() -> None:
    for epoch in (6, 7):
        for idx in range(4):
            c = cookie.make_cookie(KEY, epoch, "198.18.0.1", "198.18.0.2", 1, 80, 42, idx)
            assert cookie.split_cookie(c) == (epoch & 1, idx)


def test_cookie_binds_every_input() -> None:
    base = ("198.18.0.1", "198.18.0.2", 1000, 80, 12345)
    ref = cookie.make_cookie(KEY, 5, *base, 3)
    variants = [
        ("198.18.0.9", *base[1:]),
        (base[0], "198.18.0.9", *base[2:]),
        (*base[:2], 1001, *base[3:]),
        (*base[:3], 81, base[4]),
        (*base[:4], 12346),
    ]
    for v in variants:
        assert cookie.make_cookie(KEY, 5, *v, 3) != ref
    assert cookie.make_cookie(KEY, 7, *base, 3) != ref  # same slot, other epoch
    assert cookie.make_cookie(bytes(16), 5, *base, 3) != ref
    # the MSS index is hashed too, not only carried
    assert cookie.make_cookie(KEY, 5, *base, 2) >> 3 != ref >> 3


def test_cookie_message_layout() -> None:
    msg = cookie.cookie_message("198.18.0.1", "198.18.0.2", 0x1234, 80, 0xA0B0C0D0, 0x01020304, 2)
    assert msg == (
        bytes([198, 18, 0, 1, 198, 18, 0, 2, 0x12, 0x34, 0, 80, 0xA0, 0xB0, 0xC0, 0xD0])
        + bytes([4, 3, 2, 1, 2])
    )
    assert len(cookie.cookie_message("fd00::1", "fd00::2", 1, 2, 3, 4, 0)) == 45


def test_cookie_valid_checks_ack_minus_one_under_the_named_slot() -> None:
    c = cookie.make_cookie(KEY, 9, "fd00::1", "fd00::2", 5, 443, 0xFFFFFFFF, 1)
    keys = {1: (KEY, 9), 0: (bytes(16), 8)}
    assert cookie.cookie_valid(keys, "fd00::1", "fd00::2", 5, 443, 0, c + 1)
    assert not cookie.cookie_valid(keys, "fd00::1", "fd00::2", 5, 443, 0, c + 2)
    assert not cookie.cookie_valid({0: (bytes(16), 8)}, "fd00::1", "fd00::2", 5, 443, 0, c + 1)


@pytest.mark.parametrize(
    ("mss", "v6", "idx"),
    [
        (None, False, 0),
        (0, False, 0),
        (100, False, 0),
        (1299, False, 0),
        (1300, False, 1),
        (1460, False, 3),
        (9000, False, 3),
        (None, True, 0),
        (1420, True, 1),
        (1500, True, 2),
        (8940, True, 3),
    ],
)
def test_mss_index(mss: int | None, v6: bool, idx: int) -> None:
    assert cookie.mss_index(mss, v6) == idx


def test_tsval_low_bits_and_clock() -> None:
    opts = cookie.ts_options(7, True, False)
    assert cookie.decode_tsval(opts) == cookie.TsOptions(7, True, False)
    assert cookie.decode_tsval(cookie.ts_options(None, False, True)) == cookie.TsOptions(
        None, False, True
    )
    assert cookie.ts_options(20, False, False) == 14  # capped, as Linux does
    for now_ns in (0x40 << 20, (0x40 << 20) + (5 << 20), 0xFFFFFFFF << 20, 123 << 20):
        now = now_ns >> cookie.TS_SHIFT & 0xFFFFFFFF
        ts = cookie.tsval(now_ns, opts)
        assert ts & 0x3F == opts
        assert 0 <= (now - ts) & 0xFFFFFFFF < 64  # at most one 64-tick step behind
