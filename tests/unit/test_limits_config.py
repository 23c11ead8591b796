"""``[limits]`` and ``action = "limit"`` rules (issue 14): every key parses in
both spellings, every bad value or combination is an error at its FILE:LINE
naming its key, and the flags of ``xdpshield limits IFACE set`` meet the very
same checks (limits_from_flags)."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdpshield.errors import ConfigError, ConfigErrors
from xdpshield.policy.config import LIMIT_KEYS, check_config, limits_from_flags, load_config
from xdpshield.policy.model import LIMIT_PROTOCOLS, Action, Limits, Rule

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "packaging" / "xdpshield.toml"
DOCS = ROOT / "docs" / "config.md"


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def limits_of(tmp_path: Path, text: str) -> Limits:
    return load_config(write(tmp_path, text)).policy.limits


# -- what parses -------------------------------------------------------------------------


def test_no_limits_table_is_all_off(tmp_path: Path) -> None:
    limits = limits_of(tmp_path, "")
    assert limits == Limits()
    assert not limits.enabled
    assert limits_of(tmp_path, "[limits]\n") == Limits()


def test_every_key_in_the_flags_spelling(tmp_path: Path) -> None:
    limits = limits_of(
        tmp_path,
        """
        [limits]
        pps = 20000
        burst = 40000
        bps = 25000000
        syn-pps = 200
        prefix4 = 24
        prefix6 = 48
        block-after = "2s"
        block-ttl = "10m"
        block-max-ttl = "1d"
        block-repeat = "1h"

        [limits.ceiling]
        icmp = 10000
        tcp = 1000000
        other = 5
        """,
    )
    assert limits == Limits(
        pps=20000,
        burst=40000,
        bps=25_000_000,
        syn_pps=200,
        prefix4=24,
        prefix6=48,
        block_after=2.0,
        block_ttl=600.0,
        block_max_ttl=86400.0,
        block_repeat=3600.0,
        # In the data path's slot order, whatever the file's order.
        ceilings=(("tcp", 1_000_000), ("icmp", 10000), ("other", 5)),
    )
    assert limits.enabled


def test_every_key_in_the_underscore_spelling(tmp_path: Path) -> None:
    limits = limits_of(
        tmp_path,
        """
        [limits]
        syn_pps = 300
        block_after = 1.5
        block_ttl = 60
        block_max_ttl = "2h"
        block_repeat = "30m"
        ceiling = { udp = 7, icmpv6 = 8 }
        """,
    )
    assert limits == Limits(
        syn_pps=300,
        block_after=1.5,
        block_ttl=60.0,
        block_max_ttl=7200.0,
        block_repeat=1800.0,
        ceilings=(("udp", 7), ("icmpv6", 8)),
    )


def test_ceilings_alone_switch_the_stage_on(tmp_path: Path) -> None:
    limits = limits_of(tmp_path, "[limits.ceiling]\nicmp = 10000\n")
    assert limits == Limits(ceilings=(("icmp", 10000),))
    assert limits.enabled
    assert limits.as_json()["ceilings"] == {"icmp": 10000}


def test_bounds_are_inclusive(tmp_path: Path) -> None:
    low = limits_of(
        tmp_path,
        "[limits]\npps = 1\nburst = 1\nbps = 1514\nprefix4 = 16\nprefix6 = 32\n",
    )
    assert (low.pps, low.burst, low.bps, low.prefix4, low.prefix6) == (1, 1, 1514, 16, 32)
    high = limits_of(
        tmp_path,
        "[limits]\npps = 1000000000\nsyn-pps = 1000000000\nbps = 1000000000000\n"
        'prefix4 = 32\nprefix6 = 128\nblock-ttl = "365d"\nblock-max-ttl = "365d"\n',
    )
    assert (high.pps, high.syn_pps, high.bps) == (10**9, 10**9, 10**12)
    assert (high.prefix4, high.prefix6, high.block_max_ttl) == (32, 128, 365 * 86400.0)


def test_block_after_may_rest_on_a_limit_rule(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
            [limits]
            block-after = "5s"

            [[rule]]
            name = "ping"
            action = "limit"
            protocol = "icmp"
            icmp_type = "echo-request"
            pps = 50
            """,
        )
    )
    assert config.policy.limits == Limits(block_after=5.0)
    (rule,) = config.policy.rules
    assert (rule.action, rule.pps, rule.burst) == (Action.LIMIT, 50, None)


def test_limit_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[rule]]
        name = "ping"
        action = "limit"
        protocol = "icmp"
        icmp_type = "echo-request"
        pps = 50

        [[rule]]
        name = "dns"
        action = "limit"
        protocol = "udp"
        dport = 53
        pps = 100
        burst = 400
        """,
    )
    ping, dns = load_config(path).policy.rules
    assert ping == Rule(
        name="ping",
        action=Action.LIMIT,
        protocols=frozenset({1}),
        icmp_type=8,
        pps=50,
        origin=f"{path}:1",
    )
    assert dns == Rule(
        name="dns",
        action=Action.LIMIT,
        protocols=frozenset({17}),
        dports=((53, 53),),
        pps=100,
        burst=400,
        origin=f"{path}:8",
    )
    assert dns.describe() == "limit udp dport 53 pps 100 burst 400"
    assert ping.describe() == "limit icmp type 8 pps 50"


# -- one error each: FILE:LINE, the key and what is wrong ---------------------------------

# (config text, [(line, substring of str(error))] in order)
ERRORS: dict[str, tuple[str, list[tuple[int, str]]]] = {
    "pps zero": (
        """
        [limits]
        pps = 0
        """,
        [
            (
                2,
                "limits.pps: a limit of 0 or negative (0) is not allowed: leave the key out to "
                "switch the limit off",
            )
        ],
    ),
    "negative syn-pps and bps": (
        """
        [limits]
        syn-pps = -5
        bps = -1
        """,
        [
            (2, "limits.syn-pps: a limit of 0 or negative (-5)"),
            (3, "limits.bps: a limit of 0 or negative (-1)"),
        ],
    ),
    "not integers": (
        """
        [limits]
        pps = 1.5
        bps = "10M"
        prefix4 = true
        """,
        [
            (2, "limits.pps: must be an integer, not the number 1.5"),
            (3, "limits.bps: must be an integer, not the string '10M'"),
            (4, "limits.prefix4: must be an integer, not the boolean true"),
        ],
    ),
    "burst below one packet": (
        """
        [limits]
        pps = 100
        burst = 0
        """,
        [(3, "limits.burst: a burst below one packet (0) is not allowed")],
    ),
    "burst without a rate": (
        """
        [limits]
        bps = 100000
        burst = 10
        """,
        [(3, "limits.burst: a burst without a rate: set pps or syn-pps")],
    ),
    "bps below one packet": (
        """
        [limits]
        bps = 1513
        """,
        [(2, "limits.bps: 1513 bytes per second holds less than one full-size packet")],
    ),
    "huge rates": (
        """
        [limits]
        pps = 1000000001
        bps = 1000000000001
        syn_pps = 99999999999999
        """,
        [
            (2, "limits.pps: 1000000001 is more than 1000000000 packets per second"),
            (3, "limits.bps: 1000000000001 is more than 1000000000000 bytes per second"),
            (4, "limits.syn_pps: 99999999999999 is more than 1000000000 packets per second"),
        ],
    ),
    "prefix lengths out of range": (
        """
        [limits]
        prefix4 = 8
        prefix6 = 129
        """,
        [
            (2, "limits.prefix4: prefix length 8 is outside 16-32"),
            (3, "limits.prefix6: prefix length 129 is outside 32-128"),
        ],
    ),
    "block-ttl above block-max-ttl": (
        """
        [limits]
        pps = 10
        block-after = 2
        block-ttl = "2d"
        block-max-ttl = "1d"
        """,
        [(4, "limits.block-ttl: block-ttl (172800 s) is more than block-max-ttl (86400 s)")],
    ),
    "block-max-ttl below the default block-ttl": (
        """
        [limits]
        block_max_ttl = "5m"
        """,
        [(2, "limits.block_max_ttl: block-ttl (600 s) is more than block-max-ttl (300 s)")],
    ),
    "block-after without a limit": (
        """
        [limits]
        prefix4 = 24
        block-after = "2s"

        [limits.ceiling]
        udp = 1000
        """,
        [(3, "limits.block-after: blocking needs a limit to exceed: set pps, bps or syn-pps")],
    ),
    "bad durations": (
        """
        [limits]
        pps = 10
        block-after = 0
        block-ttl = "10 min"
        block-repeat = "400d"
        """,
        [
            (3, "limits.block-after: must be more than 0 seconds, not 0"),
            (4, "limits.block-ttl: bad duration '10 min'"),
            (5, "limits.block-repeat: '400d' is more than a year"),
        ],
    ),
    "both spellings of one key": (
        """
        [limits]
        block-ttl = "10m"
        pps = 5
        block_ttl = "20m"
        """,
        [(4, "limits.block_ttl: block-ttl (line 2) and block_ttl are the same key")],
    ),
    "unknown key": (
        """
        [limits]
        pps = 5
        block_afer = 3
        """,
        [(3, "limits.block_afer: unknown key in [limits]; did you mean 'block_after'?")],
    ),
    "unknown ceiling": (
        """
        [limits.ceiling]
        icmp = 5
        sctp = 10
        """,
        [(3, "limits.ceiling.sctp: unknown key in [limits.ceiling]")],
    ),
    "bad ceilings": (
        """
        [limits]
        ceiling = { tcp = 0, udp = 2.5, icmp = 2000000000 }
        """,
        [
            (2, "limits.ceiling.tcp: a limit of 0 or negative (0)"),
            (2, "limits.ceiling.udp: must be an integer, not the number 2.5"),
            (2, "limits.ceiling.icmp: 2000000000 is more than 1000000000 packets per second"),
        ],
    ),
    "ceiling not a table": (
        """
        [limits]
        ceiling = 1000
        """,
        [(2, "limits.ceiling: must be a table ([limits.ceiling]), not the integer 1000")],
    ),
    "limits not a table": (
        """
        limits = 5
        """,
        [(1, "limits: must be a table ([limits]), not the integer 5")],
    ),
    "limit rule without pps": (
        """
        [[rule]]
        name = "ping"
        action = "limit"
        protocol = "icmp"
        burst = 10
        """,
        [(1, 'rule.pps: missing: a rule with action = "limit" needs pps')],
    ),
    "limit rule with bad rate": (
        """
        [[rule]]
        name = "ping"
        action = "limit"
        pps = 0
        burst = -1
        """,
        [
            (4, "rule.pps: a limit of 0 or negative (0) is not allowed: to let the packets"),
            (5, "rule.burst: a burst below one packet (-1)"),
        ],
    ),
    "pps on a drop rule": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        pps = 10
        burst = 20
        """,
        [
            (4, 'rule.pps: pps is for action = "limit" only, not "drop"'),
            (5, 'rule.burst: burst is for action = "limit" only, not "drop"'),
        ],
    ),
    "burst on a pass rule": (
        """
        [[rule]]
        name = "x"
        action = "pass"
        burst = 20
        """,
        [(4, 'rule.burst: burst is for action = "limit" only, not "pass"')],
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_error_names_line_and_key(tmp_path: Path, case: str) -> None:
    text, want = ERRORS[case]
    path = write(tmp_path, text)
    errors = check_config(path)
    got = [str(e) for e in errors]
    assert len(errors) == len(want), got
    for (line, fragment), error in zip(want, errors, strict=True):
        assert (error.file, error.line) == (str(path), line), got
        assert str(error).startswith(f"{path}:{line}: {error.key}: "), got
        assert fragment in str(error), got
    # Nothing applies: loading raises with the same errors.
    with pytest.raises(ConfigErrors) as raised:
        load_config(path)
    assert [str(e) for e in raised.value.errors] == got


def test_bad_value_does_not_hide_other_errors(tmp_path: Path) -> None:
    """A wrong value and a wrong combination of other keys: both reported at once."""
    path = write(
        tmp_path,
        """
        [limits]
        pps = 0
        block-ttl = "2h"
        block-max-ttl = "1h"
        """,
    )
    assert [(e.line, e.key) for e in check_config(path)] == [
        (2, "limits.pps"),
        (3, "limits.block-ttl"),
    ]


def test_block_after_with_a_bad_limit_names_only_the_limit(tmp_path: Path) -> None:
    # pps is wrong, so whether block-after has a limit to exceed is unknown: no guess.
    path = write(tmp_path, '[limits]\npps = -1\nblock-after = "1s"\n')
    assert [(e.line, e.key) for e in check_config(path)] == [(2, "limits.pps")]


def test_limit_rule_with_a_mistake_still_counts_for_block_after(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [limits]
        block-after = "1s"

        [[rule]]
        name = "ping"
        action = "limit"
        pps = 1.5
        """,
    )
    assert [(e.line, e.key) for e in check_config(path)] == [(7, "rule.pps")]


# -- the flags ---------------------------------------------------------------------------


def test_flags_set_what_they_name_and_keep_the_rest() -> None:
    base = Limits(pps=100, prefix4=24, ceilings=(("icmp", 10),))
    got = limits_from_flags(
        base,
        {
            "burst": "300",
            "bps": None,  # argparse's default for a flag not given
            "syn_pps": 20,
            "prefix6": "48",
            "block_after": "10",
            "block_ttl": "10m",
        },
    )
    assert got == Limits(
        pps=100,
        burst=300,
        syn_pps=20,
        prefix4=24,
        prefix6=48,
        block_after=10.0,
        block_ttl=600.0,
        ceilings=(("icmp", 10),),
    )
    # The flags' own spelling works too.
    assert limits_from_flags(Limits(), {"syn-pps": "5", "--block-max-ttl": "2d"}) == Limits(
        syn_pps=5, block_max_ttl=172800.0
    )
    assert limits_from_flags(base, {}) == base


def test_off_switches_a_limit_off() -> None:
    base = Limits(pps=100, burst=200, syn_pps=5, block_after=3.0)
    assert limits_from_flags(base, {"pps": "off", "burst": "OFF"}) == Limits(
        syn_pps=5, block_after=3.0
    )
    with pytest.raises(ConfigError) as raised:
        limits_from_flags(base, {"prefix4": "off"})
    assert str(raised.value) == '--prefix4: cannot be "off": give a value (the default is 32)'


# (flags, the error's key, substring of its message)
FLAG_ERRORS: dict[str, tuple[dict[str, Any], str, str]] = {
    "pps 0": (
        {"pps": "0"},
        "--pps",
        'a limit of 0 or negative (0) is not allowed: give "off" to switch the limit off',
    ),
    "negative syn-pps": ({"syn_pps": -1}, "--syn-pps", "a limit of 0 or negative (-1)"),
    "pps not a number": ({"pps": "lots"}, "--pps", "must be an integer, not the string 'lots'"),
    "pps fractional": ({"pps": "2.5"}, "--pps", "must be an integer, not the number 2.5"),
    "burst 0": ({"pps": 5, "burst": "0"}, "--burst", "a burst below one packet (0)"),
    "burst without rate": ({"burst": 10}, "--burst", "a burst without a rate"),
    "bps small": ({"bps": "1000"}, "--bps", "holds less than one full-size packet"),
    "bps huge": ({"bps": 10**13}, "--bps", "is more than 1000000000000 bytes per second"),
    "prefix4": ({"prefix4": "33"}, "--prefix4", "prefix length 33 is outside 16-32"),
    "prefix6": ({"prefix6": "16"}, "--prefix6", "prefix length 16 is outside 32-128"),
    "block-after alone": ({"block_after": "5"}, "--block-after", "blocking needs a limit"),
    "block-after 0": ({"pps": 1, "block_after": "0"}, "--block-after", "more than 0 seconds"),
    "block-ttl bad": ({"block_ttl": "soon"}, "--block-ttl", "bad duration 'soon'"),
    "block-ttl long": ({"block_ttl": "3d"}, "--block-ttl", "is more than block-max-ttl"),
}


@pytest.mark.parametrize("case", FLAG_ERRORS)
def test_flag_errors_name_the_flag(case: str) -> None:
    flags, key, fragment = FLAG_ERRORS[case]
    with pytest.raises(ConfigError) as raised:
        limits_from_flags(Limits(), flags)
    error = raised.value
    assert not isinstance(error, ConfigErrors)
    assert error.key == key
    assert error.file is None and error.line is None
    assert str(error).startswith(f"{key}: ")
    assert fragment in str(error)


def test_flags_check_the_result_not_just_the_flags() -> None:
    # Switching the only limit off leaves the base's block-after with nothing to exceed.
    base = Limits(pps=100, block_after=2.0)
    with pytest.raises(ConfigError, match=r"^--block-after: blocking needs a limit"):
        limits_from_flags(base, {"pps": "off"})
    # ... unless the shield has limit rules.
    assert limits_from_flags(base, {"pps": "off"}, limit_rules=True) == Limits(block_after=2.0)
    # A block-max-ttl below the base's block-ttl blames the flag given.
    with pytest.raises(ConfigError, match=r"^--block-max-ttl: block-ttl"):
        limits_from_flags(Limits(), {"block_max_ttl": "5m"})


def test_several_flag_errors_come_together() -> None:
    with pytest.raises(ConfigErrors) as raised:
        limits_from_flags(Limits(), {"pps": "0", "prefix4": "8", "block_ttl": "x"})
    assert [e.key for e in raised.value.errors] == ["--pps", "--prefix4", "--block-ttl"]
    assert len(str(raised.value).splitlines()) == 3


def test_unknown_flag_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="'iface' is not a limit flag"):
        limits_from_flags(Limits(), {"pps": 5, "iface": "eth0"})
    with pytest.raises(TypeError, match="twice"):
        limits_from_flags(Limits(), {"syn_pps": 1, "syn-pps": 2})


# -- file and flags are one set of rules ---------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(list(LIMIT_KEYS)),
    value=st.one_of(
        st.integers(min_value=-(10**13), max_value=10**13),
        st.sampled_from([0, 1, 15, 16, 32, 33, 128, 129, 1513, 1514, 10**9, 10**9 + 1]),
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e7, max_value=1e8),
        st.sampled_from(["10m", "1h", "500ms", "2d", "400d", "x", "10 min"]),
    ),
)
def test_file_and_flags_agree(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: object
) -> None:
    """Any one value: the file and the flag accept it alike, or refuse it with
    the same message. Alongside pps (so burst and block-after have a rate)."""
    field = LIMIT_KEYS[key]
    extra = "" if key == "pps" else "pps = 5\n"
    literal = f'"{value}"' if isinstance(value, str) else repr(value)
    path = tmp_path_factory.mktemp("agree") / "x.toml"
    path.write_text(f"[limits]\n{extra}{key} = {literal}\n")
    errors = check_config(path)
    flags: dict[str, object] = {field: value} if key == "pps" else {"pps": 5, field: value}
    try:
        flagged: Limits | None = limits_from_flags(Limits(), flags)
        flag_messages: list[str] = []
    except ConfigErrors as e:
        flagged, flag_messages = None, [x.message for x in e.errors]
    except ConfigError as e:
        flagged, flag_messages = None, [e.message]
    # A flag's "0 or negative" says to give "off", the file's to leave the key out.
    file_messages = [e.message.replace("leave the key out to", 'give "off" to') for e in errors]
    assert file_messages == flag_messages
    if flagged is not None:
        assert load_config(path).policy.limits == flagged


_durations = st.one_of(
    st.integers(min_value=1, max_value=365 * 86400),
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 300), st.sampled_from(["s", "m", "h"])),
)


@settings(max_examples=150, deadline=None)
@given(
    pps=st.none() | st.integers(1, 10**9),
    burst=st.none() | st.integers(1, 10**9),
    bps=st.none() | st.integers(1514, 10**12),
    syn_pps=st.none() | st.integers(1, 10**9),
    prefix4=st.none() | st.integers(16, 32),
    prefix6=st.none() | st.integers(32, 128),
    block_after=st.none() | _durations,
    ttls=st.tuples(st.none() | _durations, st.none() | _durations),
    block_repeat=st.none() | _durations,
    ceilings=st.dictionaries(st.sampled_from(LIMIT_PROTOCOLS), st.integers(1, 10**9)),
    underscores=st.booleans(),
)
def test_valid_values_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    underscores: bool,
    ttls: tuple[int | str | None, int | str | None],
    ceilings: dict[str, int],
    **values: int | str | None,
) -> None:
    """Any valid [limits], written in either spelling, loads to the Limits
    that limits_from_flags builds from the same values as flag text."""
    values["block_ttl"], values["block_max_ttl"] = ttls
    if values["burst"] is not None and values["pps"] is None and values["syn_pps"] is None:
        values["pps"] = 1
    if values["block_after"] is not None and not (
        values["pps"] or values["bps"] or values["syn_pps"]
    ):
        values["bps"] = 1514
    given_values = {k: v for k, v in values.items() if v is not None}
    lines = ["[limits]"]
    for field, value in given_values.items():
        key = field if underscores else field.replace("_", "-")
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    if ceilings:
        lines.append("[limits.ceiling]")
        lines += [f"{proto} = {pps}" for proto, pps in ceilings.items()]
    path = tmp_path_factory.mktemp("rt") / "x.toml"
    path.write_text("\n".join(lines) + "\n")
    try:
        flagged = limits_from_flags(Limits(), {k: str(v) for k, v in given_values.items()})
    except ConfigError as e:
        # Only the one combination left to chance: block-ttl above block-max-ttl.
        assert e.key in ("--block-ttl", "--block-max-ttl"), e
        assert [x.key for x in check_config(path)] == [
            "limits." + (e.key[2:] if not underscores else e.key[2:].replace("-", "_"))
        ]
        return
    loaded = load_config(path).policy.limits
    in_order = tuple((p, ceilings[p]) for p in LIMIT_PROTOCOLS if p in ceilings)
    assert loaded == dataclasses.replace(flagged, ceilings=in_order)
    for field, value in given_values.items():
        got = getattr(loaded, field)
        if isinstance(value, int):
            assert got == value
        else:
            assert got == float(re.sub(r"\D", "", value)) * {"s": 1, "m": 60, "h": 3600}[value[-1]]


# -- the example -------------------------------------------------------------------------


def uncommented(lines: list[str], header: str) -> str:
    """The commented block that starts at ``# HEADER``, as a person uncomments it."""
    start = lines.index(f"# {header}")
    block: list[str] = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line.removeprefix("#").removeprefix(" "))
    return "\n".join(block) + "\n"


def test_example_limits_are_commented_out_and_valid_when_not(tmp_path: Path) -> None:
    """The example config behaves as today (no limits, no limit rule); its
    commented [limits] block and limit rule, uncommented, load as documented."""
    example = load_config(EXAMPLE)
    assert example.policy.limits == Limits()
    assert all(rule.action is not Action.LIMIT for rule in example.policy.rules)
    lines = EXAMPLE.read_text().splitlines()
    text = uncommented(lines, "[limits]") + uncommented(lines, "[[rule]]")
    config = load_config(write(tmp_path, text))
    assert config.policy.limits == Limits(
        pps=20000,
        burst=40000,
        bps=25_000_000,
        syn_pps=200,
        block_after=2.0,
        ceilings=(("udp", 1_000_000), ("icmp", 10000)),
    )
    (rule,) = config.policy.rules
    assert (rule.name, rule.action, rule.pps, rule.burst) == (
        "ping-per-source",
        Action.LIMIT,
        50,
        100,
    )


def test_docs_examples_load(tmp_path: Path) -> None:
    """Every TOML example of docs/config.md is a valid config."""
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        load_config(write(tmp_path, block))
    limits = load_config(write(tmp_path, "".join(b for b in blocks if "[limits]" in b)))
    assert limits.policy.limits == Limits(
        pps=20000,
        burst=40000,
        bps=25_000_000,
        syn_pps=200,
        prefix6=48,
        block_after=2.0,
        ceilings=(("icmp", 10000),),
    )
