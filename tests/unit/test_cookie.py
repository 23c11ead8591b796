"""The reference cookie: SipHash-2-4 against the published vectors, and the layout."""

from __future__ import annotations

import pytest

from xdpshield.shield import cookie

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
NOW = 1000 << cookie.TICK_SHIFT  # an even tick
TICK_NS = 1 << cookie.TICK_SHIFT


def test_cookie_layout_carries_slot_tick_and_mss_index() -> None:
    for epoch in (6, 7):
        for now in (NOW, NOW + TICK_NS):
            for idx in range(4):
                c = cookie.make_cookie(
                    KEY, epoch, "198.18.0.1", "198.18.0.2", 1, 80, 42, idx, now_ns=now
                )
                assert cookie.split_cookie(c) == (epoch & 1, idx)
                assert c >> 3 & 1 == cookie.tick(now) & 1


def test_cookie_binds_every_input() -> None:
    base = ("198.18.0.1", "198.18.0.2", 1000, 80, 12345)
    ref = cookie.make_cookie(KEY, 5, *base, 3, now_ns=NOW)
    variants = [
        ("198.18.0.9", *base[1:]),
        (base[0], "198.18.0.9", *base[2:]),
        (*base[:2], 1001, *base[3:]),
        (*base[:3], 81, base[4]),
        (*base[:4], 12346),
    ]
    for v in variants:
        assert cookie.make_cookie(KEY, 5, *v, 3, now_ns=NOW) != ref
    assert cookie.make_cookie(bytes(16), 5, *base, 3, now_ns=NOW) != ref
    # the MSS index and the tick are hashed too, not only carried
    assert cookie.make_cookie(KEY, 5, *base, 2, now_ns=NOW) >> 4 != ref >> 4
    assert cookie.make_cookie(KEY, 5, *base, 3, now_ns=NOW + 2 * TICK_NS) >> 4 != ref >> 4


def test_cookie_message_layout() -> None:
    msg = cookie.cookie_message("198.18.0.1", "198.18.0.2", 0x1234, 80, 0xA0B0C0D0, 0x01020304, 2)
    assert msg == (
        bytes([198, 18, 0, 1, 198, 18, 0, 2, 0x12, 0x34, 0, 80, 0xA0, 0xB0, 0xC0, 0xD0])
        + bytes([4, 3, 2, 1, 2])
    )
    assert len(cookie.cookie_message("fd00::1", "fd00::2", 1, 2, 3, 4, 0)) == 45


def test_cookie_valid_checks_ack_minus_one_under_the_named_slot() -> None:
    c = cookie.make_cookie(KEY, 9, "fd00::1", "fd00::2", 5, 443, 0xFFFFFFFF, 1, now_ns=NOW)
    keys = {1: (KEY, 9), 0: (bytes(16), 8)}
    assert cookie.cookie_valid(keys, "fd00::1", "fd00::2", 5, 443, 0, c + 1, now_ns=NOW)
    assert not cookie.cookie_valid(keys, "fd00::1", "fd00::2", 5, 443, 0, c + 2, now_ns=NOW)
    assert not cookie.cookie_valid(
        {0: (bytes(16), 8)}, "fd00::1", "fd00::2", 5, 443, 0, c + 1, now_ns=NOW
    )


def test_cookie_lives_for_two_ticks_at_most() -> None:
    """Made anywhere in a tick, a cookie is good to the end of the next one:
    68.7 to 137 s, whether or not the keys rotate."""
    keys = {1: (KEY, 9)}
    args = ("198.18.0.1", "198.18.0.2", 40000, 80)
    for made in (NOW, NOW + TICK_NS - 1, NOW + TICK_NS):
        c = cookie.make_cookie(KEY, 9, *args, 999, 3, now_ns=made)
        start = made >> cookie.TICK_SHIFT << cookie.TICK_SHIFT
        for later, ok in (
            (made, True),
            (start + 2 * TICK_NS - 1, True),
            (start + 2 * TICK_NS, False),
        ):
            assert cookie.cookie_valid(keys, *args, 1000, c + 1, now_ns=later) is ok, (made, later)


def test_a_cookie_from_a_clock_a_little_ahead_is_taken_as_a_tick_ends() -> None:
    """Minted just after a tick began by a clock ahead (another node's),
    checked just before by one behind: taken within AHEAD_NS of the
    tick's end, not before (its parity then says two ticks old)."""
    keys = {1: (KEY, 9)}
    args = ("198.18.0.1", "198.18.0.2", 40000, 80)
    boundary = ((NOW >> cookie.TICK_SHIFT) + 1) << cookie.TICK_SHIFT
    c = cookie.make_cookie(KEY, 9, *args, 999, 3, now_ns=boundary + 10**6)
    for later, ok in (
        (boundary - 3 * 10**6, True),
        (boundary - cookie.AHEAD_NS, True),
        (boundary - cookie.AHEAD_NS - 1, False),
        (boundary - TICK_NS // 2, False),
    ):
        assert cookie.cookie_valid(keys, *args, 1000, c + 1, now_ns=later) is ok, later


@pytest.mark.parametrize(
    ("mss", "v6", "mtu", "idx"),
    [
        (None, False, 1500, 0),
        (0, False, 1500, 0),
        (100, False, 1500, 0),
        (1299, False, 1500, 0),
        (1300, False, 1500, 1),
        (1440, False, 1500, 2),
        (1460, False, 1500, 3),
        (9000, False, 1500, 3),
        (None, True, 1500, 0),
        (1420, True, 1500, 1),
        (1440, True, 1500, 3),
        (8940, True, 1500, 3),
        # a small link: nothing above its MSS; a jumbo one: its own top class
        (1460, False, 1400, 3),
        (1300, False, 1400, 1),
        (1460, False, 9000, 2),
        (8960, False, 9000, 3),
        (8940, True, 9000, 3),
        (1440, True, 9000, 2),
    ],
)
def test_mss_index(mss: int | None, v6: bool, mtu: int, idx: int) -> None:
    assert cookie.mss_index(mss, v6, cookie.link_mss(mtu, v6)) == idx


def test_mss_table_never_exceeds_the_link() -> None:
    assert cookie.mss_table(False, cookie.link_mss(1500, False)) == (536, 1300, 1440, 1460)
    assert cookie.mss_table(False, cookie.link_mss(1400, False)) == (536, 1300, 1360, 1360)
    assert cookie.mss_table(False, cookie.link_mss(9000, False)) == (536, 1300, 1460, 8960)
    assert cookie.mss_table(True, cookie.link_mss(1500, True)) == (1220, 1420, 1440, 1440)
    assert cookie.mss_table(True, cookie.link_mss(9000, True)) == (1220, 1420, 1440, 8940)


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
