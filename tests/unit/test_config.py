"""The config file and prefix lists: the example loads as documented, every
error names its FILE:LINE and the bad value, all errors come at once, and a
million-line list parses to the right prefixes."""

from __future__ import annotations

import random
import socket
import textwrap
import time
from pathlib import Path

import pytest

from xdpshield.ebpf.link import XdpMode
from xdpshield.errors import ConfigError, ConfigErrors
from xdpshield.policy import cidr
from xdpshield.policy.cidr import parse_prefix, read_prefix_file
from xdpshield.policy.config import (
    HANDSHAKES,
    XDP_MODES,
    check_config,
    load_config,
    parse_duration,
    parse_tcp_flags,
)
from xdpshield.policy.model import (
    DEFAULT_REFLECTION_PORTS,
    Action,
    Hygiene,
    InterfaceConfig,
    MetricsConfig,
    Prefix,
    Rule,
)
from xdpshield.shield.record import HANDSHAKE_MODES

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "xdpshield.toml"


def P(text: str) -> Prefix:
    return parse_prefix(text)


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def where(errors: list[ConfigError]) -> list[tuple[str, int | None]]:
    return [(Path(e.file or "").name, e.line) for e in errors]


# -- the example ---------------------------------------------------------------------------


def test_example_loads_with_documented_values() -> None:
    config = load_config(EXAMPLE)
    assert config.path == str(EXAMPLE)
    ports = (22, 80, 443, *range(8000, 8011))
    assert config.interfaces == (
        InterfaceConfig(
            name="eth0",
            protect=ports,
            netns=None,
            handshake="auto",
            xdp_mode="auto",
            syn_flood_pps=5000,
            rst_pps=100,
        ),
    )
    policy = config.policy
    assert policy.allow == {P("198.51.100.0/24"): None, P("2001:db8:1::/48"): None}
    assert policy.deny == {P("203.0.113.0/24"): None, P("2001:db8:bad::/48"): 3600.0}
    # The example writes every hygiene key out at its default: they must agree.
    assert policy.hygiene == Hygiene()
    origin = f"{EXAMPLE}:"
    lines = EXAMPLE.read_text().splitlines()
    headers = [str(i) for i, line in enumerate(lines, 1) if line == "[[rule]]"]
    assert policy.rules == (
        Rule(
            name="monitoring-ping",
            action=Action.PASS,
            protocols=frozenset({1}),
            sources=(P("198.51.100.10/32"),),
            icmp_type=8,
            icmp_code=0,
            origin=origin + headers[0],
        ),
        Rule(
            name="no-telnet",
            action=Action.DROP,
            protocols=frozenset({6, 17}),
            dports=((23, 23), (2323, 2323)),
            origin=origin + headers[1],
        ),
        Rule(
            name="bare-syn-from-port-0",
            action=Action.DROP,
            protocols=frozenset({6}),
            sports=frozenset({0}),
            tcp_flags=(0x12, 0x02),
            origin=origin + headers[2],
        ),
    )
    assert config.metrics == MetricsConfig(enabled=True, host="127.0.0.1", port=9435)
    assert check_config(EXAMPLE) == []


def test_metrics_listen(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).metrics == MetricsConfig()
    config = load_config(write(tmp_path, '[metrics]\nlisten = "[::]:19435"\nenabled = false\n'))
    assert config.metrics == MetricsConfig(enabled=False, host="::", port=19435)
    assert config.metrics.listen == "[::]:19435"
    # Where an interface is written: what `run` names when it is missing.
    config = load_config(write(tmp_path, '[allow]\n\n[[interface]]\nname = "eth9"\n'))
    assert config.interfaces[0].origin == f"{tmp_path / 'x.toml'}:3"


def test_mode_and_handshake_values_are_the_shields() -> None:
    assert set(XDP_MODES) == {m.value for m in XdpMode}
    assert set(HANDSHAKES) == set(HANDSHAKE_MODES)


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.interfaces == ()
    assert config.policy.allow == {} and config.policy.deny == {}
    assert config.policy.hygiene == Hygiene()
    assert config.policy.rules == ()


# -- one error each: FILE:LINE and the bad value -----------------------------------------

# (config text, expected (line, substring of str(error)) for each error, in order)
ERRORS = {
    "syntax": (
        """
        [[interface]]
        name = "eth0
        """,
        [(2, "TOML syntax")],
    ),
    "syntax at end": (
        """
        [[interface]]
        protect = [
        """,
        [(2, "TOML syntax")],
    ),
    "unknown key in interface": (
        """
        [[interface]]
        name = "eth0"
        protects = ["22"]
        """,
        [(3, "interface.protects: unknown key in [[interface]]; did you mean 'protect'?")],
    ),
    "unknown table": (
        """
        [[interface]]
        name = "eth0"

        [limit]
        pps = 10
        """,
        [(4, "limit: unknown table; did you mean 'limits'?")],
    ),
    "unknown top key": (
        """
        verbose = true
        """,
        [(1, "verbose: unknown key")],
    ),
    "unknown key in hygiene": (
        """
        [hygiene]
        icmp = true
        icmp_typs = [8]
        """,
        [(3, "hygiene.icmp_typs: unknown key in [hygiene]; did you mean 'icmp_types'?")],
    ),
    "unknown key in inline entry": (
        """
        [deny]
        prefixes = [
            "203.0.113.0/24",
            { prefix = "203.0.113.7", tll = "10m" },
        ]
        """,
        [(4, "deny.prefixes.tll: unknown key in a prefix entry; did you mean 'ttl'?")],
    ),
    "unknown key in rule": (
        """
        [[rule]]
        name = "a"
        action = "drop"
        dst_port = 22
        """,
        [(4, "rule.dst_port: unknown key in [[rule]]")],
    ),
    "unknown sub-table of the second interface": (
        """
        [[interface]]
        name = "eth0"
        [[interface]]
        name = "eth1"
        [interface.extra]
        x = 1
        """,
        [(5, "interface.extra: unknown key in [[interface]]")],
    ),
    "interface as a table": (
        """
        [interface]
        name = "eth0"
        """,
        [(1, "interface: must be an array of tables: write each one as [[interface]]")],
    ),
    "wrong type name": (
        """
        [[interface]]
        name = 7
        """,
        [(2, "interface.name: must be a string, not the integer 7")],
    ),
    "wrong type bool": (
        """
        [hygiene]
        fragments = "yes"
        """,
        [(2, "hygiene.fragments: must be true or false, not the string 'yes'")],
    ),
    "wrong type pps": (
        """
        [[interface]]
        name = "eth0"
        rst_pps = 1.5
        """,
        [(3, "interface.rst_pps: must be an integer, not the number 1.5")],
    ),
    "pps out of range": (
        """
        [[interface]]
        name = "eth0"
        syn_flood_pps = -1
        """,
        [(3, "interface.syn_flood_pps: -1 is outside 0-1000000000")],
    ),
    "bad mode and handshake": (
        """
        [[interface]]
        name = "eth0"
        mode = "fast"
        handshake = "syn"
        """,
        [
            (3, "interface.mode: must be one of auto, native, generic, not the string 'fast'"),
            (
                4,
                "interface.handshake: must be one of auto, transparent, reset, not the string"
                " 'syn'",
            ),
        ],
    ),
    "missing interface name": (
        """
        # comment
        [[interface]]
        protect = ["22"]
        """,
        [(2, "interface.name: missing")],
    ),
    "bad interface name": (
        """
        [[interface]]
        name = "a-very-long-interface"
        """,
        [(2, "'a-very-long-interface' is not an interface name")],
    ),
    "bad netns": (
        """
        [[interface]]
        name = "eth0"
        netns = "../x"
        """,
        [(3, "interface.netns: '../x' is not a namespace name")],
    ),
    "invalid cidr": (
        """
        [allow]
        prefixes = ["198.51.100.0/24", "not-a-prefix", "198.51.100.0/33"]
        """,
        [
            (2, "allow.prefixes: 'not-a-prefix' is not an IPv4 or IPv6 address or prefix"),
            (2, "'198.51.100.0/33': prefix length 33 is more than IPv4's 32"),
        ],
    ),
    "host bits": (
        """
        [deny]
        prefixes = [
            "203.0.113.0/24",
            "198.51.100.1/24",
            "2001:db8::1/32",
        ]
        """,
        [
            (4, "198.51.100.1/24 has host bits set (did you mean 198.51.100.0/24?)"),
            (5, "2001:db8::1/32 has host bits set (did you mean 2001:db8::/32?)"),
        ],
    ),
    "protect port out of range": (
        """
        [[interface]]
        name = "eth0"
        protect = [
            "22",
            70000,
            "9000-8000",
            "http",
        ]
        """,
        [
            (5, "interface.protect: port 70000 is outside 1-65535"),
            (6, "range '9000-8000' runs backwards"),
            (7, "'http' is not a port or a range like 8000-8010"),
        ],
    ),
    "rule port out of range": (
        """
        [[rule]]
        name = "web"
        action = "drop"
        protocol = "tcp"
        dport = [80, "443", "65536"]
        sport = "1024-1000"
        """,
        [
            (5, "rule.dport: port 65536 is outside 0-65535"),
            (6, "rule.sport: range '1024-1000' runs backwards"),
        ],
    ),
    "duplicate interface": (
        """
        [[interface]]
        name = "eth0"

        [[interface]]
        name = "eth1"

        [[interface]]
        name = "eth0"
        """,
        [(8, "interface eth0 is already defined at FILE:1")],
    ),
    "same name in another netns": (
        """
        [[interface]]
        name = "eth0"

        [[interface]]
        name = "eth0"
        netns = "edge"

        [[interface]]
        netns = "edge"
        name = "eth0"
        """,
        [(10, "interface eth0 in netns edge is already defined at FILE:4")],
    ),
    "duplicate rule name": (
        """
        [[rule]]
        name = "ssh"
        action = "pass"

        [[rule]]
        name = "ssh"
        action = "drop"
        """,
        [(6, "rule.name: 'ssh' is already the name of the rule at FILE:1")],
    ),
    "bad rule name": (
        """
        [[rule]]
        name = "no spaces"
        action = "pass"
        """,
        [(2, "rule.name: 'no spaces': use 1-64 of A-Z a-z 0-9 _ . -")],
    ),
    "rule without name and action": (
        """
        [[rule]]
        comment = "forgot"
        """,
        [(1, "rule.name: missing"), (1, "rule.action: missing")],
    ),
    "allowed and denied": (
        """
        [allow]
        prefixes = ["198.51.100.0/24", "203.0.113.0/24"]

        [deny]
        prefixes = [
            "203.0.113.0/24",
        ]
        """,
        [(6, "203.0.113.0/24 is both allowed (FILE:2) and denied (FILE:6)")],
    ),
    "missing list file": (
        """
        [deny]
        files = [
            "lists/ok.txt",
            "lists/missing.txt",
        ]
        """,
        [(4, "deny.files: FILEDIR/lists/missing.txt: cannot read prefix list: No such file")],
    ),
    "bad duration": (
        """
        [hygiene]
        reflection_window = "10 parsecs"
        fragment_window = 0
        """,
        [
            (2, "hygiene.reflection_window: bad duration '10 parsecs'"),
            (3, "hygiene.fragment_window: must be more than 0 seconds, not 0"),
        ],
    ),
    "bad ttl": (
        """
        [allow]
        prefixes = [{ prefix = "198.51.100.0/24", ttl = "5 min" }]
        """,
        [(2, "allow.prefixes.ttl: bad duration '5 min'")],
    ),
    "ttl entry without prefix": (
        """
        [allow]
        prefixes = [
          { ttl = "5m" },
        ]
        """,
        [(3, "allow.prefixes.prefix: missing")],
    ),
    "unknown icmp name": (
        """
        [hygiene]
        icmp_types = ["echo-request", "echo-rqst"]
        icmpv6_types = ["packet-too-large"]
        """,
        [
            (2, "unknown ICMP type 'echo-rqst'; did you mean 'echo-request'?"),
            (3, "unknown ICMPv6 type 'packet-too-large'; did you mean 'packet-too-big'?"),
        ],
    ),
    "icmp number out of range": (
        """
        [hygiene]
        icmp_types = [8, 256]
        """,
        [(2, "hygiene.icmp_types: ICMP type 256 is outside 0-255")],
    ),
    "unknown protocol": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = ["gre", "gree"]
        """,
        [(4, "rule.protocol: unknown protocol 'gree'; did you mean 'gre'?")],
    ),
    "protocols_drop own checks": (
        """
        [hygiene]
        protocols_drop = ["gre", "udp", 58]
        """,
        [
            (2, "hygiene.protocols_drop: udp cannot be dropped as a whole here"),
            (2, "hygiene.protocols_drop: icmpv6 cannot be dropped as a whole here"),
        ],
    ),
    "dport with icmp": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = "icmp"
        dport = 22
        """,
        [(5, "rule.dport: dport matches TCP and UDP only, not icmp")],
    ),
    "sport without protocol": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        sport = 53
        """,
        [(4, "rule.sport: sport matches TCP and UDP only, but the rule has no protocol")],
    ),
    "dport with tcp and gre": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = ["tcp", "gre"]
        dport = 22
        """,
        [(5, "dport matches TCP and UDP only, not tcp, gre")],
    ),
    "tcp_flags without tcp": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = ["tcp", "udp"]
        tcp_flags = "SYN"
        """,
        [(5, 'rule.tcp_flags: needs protocol = "tcp" alone, not tcp, udp')],
    ),
    "bad tcp flag": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = "tcp"
        tcp_flags = "SYN,!AKC"
        """,
        [(5, "rule.tcp_flags: unknown TCP flag 'AKC' in 'SYN,!AKC'")],
    ),
    "icmp_type with tcp": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = "tcp"
        icmp_type = "echo-request"
        """,
        [(5, 'rule.icmp_type: needs protocol = "icmp" or "icmpv6" (exactly one), not tcp')],
    ),
    "icmp_type with both icmps": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = ["icmp", "icmpv6"]
        icmp_type = 8
        """,
        [(5, "needs protocol")],
    ),
    "icmpv6 name on icmp": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = "icmp"
        icmp_type = "packet-too-big"
        """,
        [
            (
                5,
                "'packet-too-big' is an ICMPv6 type, but the protocol is icmp"
                ' (protocol = "icmpv6"?)',
            )
        ],
    ),
    "icmp_code without type": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        protocol = "icmp"
        icmp_code = 4
        """,
        [(5, "rule.icmp_code: needs icmp_type")],
    ),
    "limit action without pps": (
        """
        [[rule]]
        name = "x"
        action = "limit"
        """,
        [(1, 'rule.pps: missing: a rule with action = "limit" needs pps')],
    ),
    "bad action": (
        """
        [[rule]]
        name = "x"
        action = "reject"
        """,
        [(3, "rule.action: must be one of drop, pass, limit, not the string 'reject'")],
    ),
    "bad source": (
        """
        [[rule]]
        name = "x"
        action = "drop"
        source = ["198.51.100.0/24", "198.51.100.300"]
        """,
        [(4, "rule.source: '198.51.100.300' is not an IPv4 or IPv6 address")],
    ),
    "metrics listen without a port": (
        """
        [metrics]
        listen = "127.0.0.1"
        """,
        [(2, "metrics.listen: '127.0.0.1' is not HOST:PORT (like \"127.0.0.1:9435\"")],
    ),
    "metrics listen on a name": (
        """
        [metrics]
        listen = "localhost:9435"
        """,
        [(2, "metrics.listen: 'localhost' in 'localhost:9435' is not an IP address")],
    ),
    "metrics listen on a bad port": (
        """
        [metrics]
        enabled = "yes"
        listen = "[::1]:70000"
        """,
        [
            (2, "metrics.enabled: must be true or false, not the string 'yes'"),
            (3, "metrics.listen: port '70000' in '[::1]:70000' is not a number 1-65535"),
        ],
    ),
    "metrics listen on bare IPv6": (
        """
        [metrics]
        listen = "::1:9435"
        """,
        [(2, "metrics.listen: '::1:9435': write an IPv6 address in brackets")],
    ),
    "metrics unknown key": (
        """
        [metrics]
        port = 9435
        """,
        [(2, "metrics.port: unknown key in [metrics]; valid keys: enabled, listen")],
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_error_names_line_and_value(tmp_path: Path, case: str) -> None:
    text, want = ERRORS[case]
    write(tmp_path, "198.51.100.0/24\n", "lists/ok.txt")
    path = write(tmp_path, text)
    errors = check_config(path)
    got = [(e.line, str(e)) for e in errors]
    assert len(errors) == len(want), got
    for (line, fragment), error in zip(want, errors, strict=True):
        assert error.file == str(path), got
        assert error.line == line, got
        assert str(error).startswith(f"{path}:{line}: "), got
        fragment = fragment.replace("FILEDIR", str(tmp_path)).replace("FILE", str(path))
        assert fragment in str(error), got
    with pytest.raises(ConfigErrors) as raised:
        load_config(path)
    assert [str(e) for e in raised.value.errors] == [str(e) for e in errors]


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "203.0.113.0/24\n# comment\nfoo\n203.0.113.1/24 # x\n", "deny.txt")
    path = write(
        tmp_path,
        """
        [[interface]]
        name = "eth0"
        mode = "fast"

        [deny]
        files = ["deny.txt"]

        [hygiene]
        reflection_window = "10x"

        [[rule]]
        name = "a"
        action = "limit"
        pps = 0
        """,
    )
    with pytest.raises(ConfigErrors) as raised:
        load_config(path)
    errors = raised.value.errors
    assert where(errors) == [
        ("x.toml", 3),
        ("x.toml", 9),
        ("x.toml", 14),
        ("deny.txt", 3),
        ("deny.txt", 4),
    ]
    text = str(raised.value)
    assert text.splitlines() == [str(e) for e in errors]
    assert text.splitlines()[3] == (
        f"{tmp_path / 'deny.txt'}:3: 'foo' is not an IPv4 or IPv6 address or prefix"
        " (like 198.51.100.0/24 or 2001:db8::/32)"
    )
    assert "203.0.113.1/24 has host bits set (did you mean 203.0.113.0/24?)" in text
    # The summary is a ConfigError pointing at the first problem.
    assert isinstance(raised.value, ConfigError)
    assert (raised.value.file, raised.value.line) == (str(path), 3)


def test_config_errors_str_is_one_line_each() -> None:
    errs = ConfigErrors(
        [
            ConfigError("bad", file="a.toml", line=3, key="rule.dport"),
            ConfigError("worse", file="l.txt", line=9),
        ]
    )
    assert str(errs) == "a.toml:3: rule.dport: bad\nl.txt:9: worse"
    assert errs.line == 3


def test_missing_config_file(tmp_path: Path) -> None:
    errors = check_config(tmp_path / "nope.toml")
    assert len(errors) == 1
    assert errors[0].file == str(tmp_path / "nope.toml")
    assert "cannot read config: No such file or directory" in str(errors[0])


def test_allowed_and_denied_in_a_list_file_names_its_line(tmp_path: Path) -> None:
    write(tmp_path, "# header\n198.51.100.0/24\n203.0.113.0/24\n", "lists/deny.txt")
    path = write(
        tmp_path,
        """
        [allow]
        prefixes = [
            "203.0.113.0/24",
        ]
        [deny]
        files = ["lists/deny.txt"]
        """,
    )
    (error,) = check_config(path)
    deny = tmp_path / "lists" / "deny.txt"
    assert (error.file, error.line) == (str(deny), 3)
    assert f"203.0.113.0/24 is both allowed ({path}:3) and denied ({deny}:3)" in str(error)


# -- where the locator puts things -----------------------------------------------------


def test_lines_survive_unusual_formatting(tmp_path: Path) -> None:
    """Multi-line strings, quoted and dotted keys, comments inside arrays,
    nested inline tables: each error still lands on its own line."""
    path = write(
        tmp_path,
        '''
        # a = "not a key"
        [[rule]]
        "name" = "one"
        comment = """
        dport = 99999 (inside a string: not a key)
        """
        action = "drop"

        [[rule]]  # the second
        name = "two"
        action = "drop"
        protocol = [
            "tcp",  # a comment, with = and [ ]
            'udp',
        ]
        dport = [ 22,
                  "8000-7000" ]
        [hygiene]
        icmp_types = [0, 3,
          8, "nope"]
        [allow]
        prefixes = [{ prefix = "198.51.100.0/24" }, { prefix = "198.51.100.9/24", ttl = "1m" },
        ]
        [deny]
        prefixes = [ "203.0.113.0/24" ,
        { ttl = '2h', prefix = "203.0.113.5/16" } ]
        ''',
    )
    assert [(e.line, e.key) for e in check_config(path)] == [
        (17, "rule.dport"),
        (20, "hygiene.icmp_types"),
        (22, "allow.prefixes.prefix"),
        (26, "deny.prefixes.prefix"),
    ]


def test_dotted_keys_and_root_tables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hygiene.icmp = "on"
        [allow]
        files.x = 1
        """,
    )
    assert [(e.line, e.key) for e in check_config(path)] == [
        (1, "hygiene.icmp"),
        (3, "allow.files"),
    ]


def test_inline_array_of_rules_gets_element_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rule = [
            { name = "a", action = "drop" },
            { name = "b", action = "drop", protocol = "udp", tcp_flags = "SYN" },
        ]
        """,
    )
    (error,) = check_config(path)
    assert (error.line, error.key) == (3, "rule.tcp_flags")
    config_rules = load_config(
        write(tmp_path, 'rule = [\n  { name = "a", action = "drop" },\n]\n', "y.toml")
    ).policy.rules
    assert config_rules[0].origin == f"{tmp_path / 'y.toml'}:2"


# -- values ------------------------------------------------------------------------------


def test_relative_list_files_and_ttls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "198.51.100.0/24\n203.0.113.7\n", "etc/lists/deny.txt")
    write(tmp_path, "2001:db8:5::/48  # partner\n", "etc/allow6.txt")
    path = write(
        tmp_path,
        """
        [allow]
        prefixes = [{ prefix = "2001:db8:7::1", ttl = 90 }]
        files = ["allow6.txt"]
        [deny]
        prefixes = [
            { prefix = "203.0.113.7", ttl = "10m" },
            { prefix = "203.0.113.8", ttl = "500ms" },
            { prefix = "203.0.113.8", ttl = "2d" },
        ]
        files = ["lists/deny.txt"]
        """,
        "etc/xdpshield.toml",
    )
    monkeypatch.chdir(tmp_path / "etc" / "lists")  # relative to the config, not to here
    policy = load_config(path).policy
    assert policy.allow == {P("2001:db8:7::1/128"): 90.0, P("2001:db8:5::/48"): None}
    assert policy.deny == {
        P("198.51.100.0/24"): None,
        P("203.0.113.7/32"): None,  # the file's entry never expires: it wins
        P("203.0.113.8/32"): 2 * 86400.0,  # the longer life wins
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (0.25, 0.25),
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        (" 7 s ", 7.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "5w", "-1s", "1e3s", "ten", True, float("inf"), -2])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "mask", "value"),
    [
        ("SYN", 0x02, 0x02),
        ("SYN,!ACK", 0x12, 0x02),
        ("syn, !ack, !rst", 0x16, 0x02),
        ("!FIN,!SYN,!RST,!PSH,!ACK,!URG,!ECE,!CWR", 0xFF, 0x00),
        ("FIN,PSH,URG", 0x29, 0x29),
        ("ECE,CWR", 0xC0, 0xC0),
    ],
)
def test_tcp_flags(text: str, mask: int, value: int) -> None:
    assert parse_tcp_flags(text) == (mask, value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("SYN,", "an empty flag"), ("SYN,!SYN", "SYN appears twice"), ("NS", "unknown TCP flag")],
)
def test_bad_tcp_flags(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_tcp_flags(text)


def test_names_and_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [hygiene]
        icmp_types = ["echo-request", "Time-Exceeded", 13, "14"]
        icmpv6_types = ["packet-too-big", "neighbor-solicitation", "mld2-report", 200]
        protocols_drop = ["gre", "esp", "AH", "sctp", "ipip", "ipv6", "ospf", "vrrp",
                          "l2tp", "udplite", "igmp", "pim", 253]
        reflection_ports = [53, "123", "1900-1901"]

        [[rule]]
        name = "v6-echo"
        action = "drop"
        protocol = "ipv6-icmp"
        icmp_type = "echo-request"
        icmp_code = 0

        [[rule]]
        name = "gre-from-peer"
        action = "pass"
        protocol = 47
        source = "2001:db8:4::/48"
        """,
    )
    config = load_config(path)
    h = config.policy.hygiene
    assert h.icmp_types == {8, 11, 13, 14}
    assert h.icmpv6_types == {2, 135, 143, 200}
    assert h.protocols_drop == {47, 50, 51, 132, 4, 41, 89, 112, 115, 136, 2, 103, 253}
    assert h.reflection_ports == {53, 123, 1900, 1901}
    assert h.reflection_ports != frozenset(DEFAULT_REFLECTION_PORTS)
    v6, gre = config.policy.rules
    assert (v6.protocols, v6.icmp_type, v6.icmp_code) == (frozenset({58}), 128, 0)
    assert (gre.protocols, gre.sources, gre.action) == (
        frozenset({47}),
        (P("2001:db8:4::/48"),),
        Action.PASS,
    )


def test_rule_ports_merge_and_protect_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[interface]]
        name = "eth0"
        protect = "22,443"

        [[rule]]
        name = "web"
        action = "drop"
        protocol = "tcp"
        dport = ["8000-8010", 8011, "80", "9000-9005", "9003-9100"]
        sport = ["1-3", 7]
        source = ["198.51.100.0/24", "198.51.100.0/24", "2001:db8::/32"]
        """,
    )
    config = load_config(path)
    assert config.interfaces[0].protect == (22, 443)
    (rule,) = config.policy.rules
    assert rule.dports == ((80, 80), (8000, 8011), (9000, 9100))
    assert rule.sports == {1, 2, 3, 7}
    assert rule.sources == (P("198.51.100.0/24"), P("2001:db8::/32"))


# -- prefixes and list files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version", "addr", "plen"),
    [
        ("198.51.100.0/24", 4, "198.51.100.0", 24),
        ("198.51.100.7", 4, "198.51.100.7", 32),
        ("0.0.0.0/0", 4, "0.0.0.0", 0),
        ("2001:db8::/32", 6, "2001:db8::", 32),
        ("2001:db8::7", 6, "2001:db8::7", 128),
        ("::ffff:198.51.100.1", 6, "::ffff:198.51.100.1", 128),
        ("203.0.113.0/024", 4, "203.0.113.0", 24),
    ],
)
def test_parse_prefix(text: str, version: int, addr: str, plen: int) -> None:
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    prefix = parse_prefix(text)
    assert prefix == Prefix(version, socket.inet_pton(family, addr), plen)
    assert type(prefix) is Prefix
    assert prefix.network.prefixlen == plen


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("198.51.100.1/24", "198.51.100.1/24 has host bits set (did you mean 198.51.100.0/24?)"),
        ("2001:db8::1/64", "2001:db8::1/64 has host bits set (did you mean 2001:db8::/64?)"),
        ("198.51.100.0/33", "prefix length 33 is more than IPv4's 32"),
        ("2001:db8::/129", "prefix length 129 is more than IPv6's 128"),
        ("198.51.100.0/", "prefix length missing"),
        ("198.51.100.0/x", "prefix length 'x' is not a number"),
        ("198.51.100.0/-1", "prefix length '-1' is not a number"),
        ("198.51.100", "'198.51.100' is not an IPv4 or IPv6 address"),
        ("010.0.0.0/8", "'010.0.0.0/8' is not an IPv4 or IPv6 address"),
        ("2001:db8::g/32", "'2001:db8::g/32' is not an IPv4 or IPv6 address"),
        ("example.com", "'example.com' is not an IPv4 or IPv6 address"),
        ("", "empty prefix"),
    ],
)
def test_bad_prefix(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_prefix(text)
    assert message in str(raised.value)
    assert raised.value.file is None and raised.value.line is None


LISTS = {
    "plain": "198.51.100.0/24\n203.0.113.0/24\n",
    "bare and cidr": "198.51.100.7\n203.0.113.0/24\n2001:db8::/32\n2001:db8:1::1\n",
    "comments and blanks": "# head\n\n  198.51.100.0/24   # office\n\t\n2001:db8::/32#x\n",
    "crlf": "198.51.100.0/24\r\n203.0.113.9\r\n",
    "no final newline": "198.51.100.0/24",
    "duplicates": "198.51.100.0/24\n198.51.100.0/24\n",
    "v6 only": "2001:db8::/32\n2001:db8:1::/48\n",
    "empty": "",
    "only comments": "# nothing\n\n",
}


@pytest.mark.parametrize("case", LISTS)
def test_list_file_agrees_with_line_by_line(tmp_path: Path, case: str) -> None:
    text = LISTS[case]
    path = tmp_path / "l.txt"
    path.write_text(text)
    want = {
        parse_prefix(line.partition("#")[0].strip()): None
        for line in text.split("\n")
        if line.partition("#")[0].strip()
    }
    got = read_prefix_file(path)
    assert got == want
    assert all(type(p) is Prefix for p in got)


# Each bad text: the lines that must be reported (the bulk path must not pair
# one line's address with another's length).
BAD_LISTS = {
    "split prefix": ("198.51.100.0/\n24\n", [1, 2]),
    "two slashes": ("198.51.100.0/24/5\n203.0.113.0/24\n", [1]),
    "two words": ("198.51.100.0 /24\n198.51.100.0/24 203.0.113.0/24\n", [1, 2]),
    "leading slash": ("/24\n198.51.100.0\n", [1]),
    "host bits late": ("198.51.100.0/24\n" * 5 + "203.0.113.1/24\n", [6]),
    "bad v6 among v4": ("198.51.100.0/24\n2001:db8::/129\n2001:db8::1/32\n", [2, 3]),
    "host bits in a mixed list": ("198.51.100.0/24\n2001:db8::1/32\n203.0.113.0/24\n", [2]),
    # Pairing pieces blindly would read 198.51.100.0/24 and 203.0.113.0/24 here.
    "slashes that pair up": ("198.51.100.0/24/203.0.113.0\n24\n", [1, 2]),
    # Beside a bare address, "ADDR/" must not pass as a bare address either.
    "slash without length": ("198.51.100.0/\n203.0.113.7\n", [1]),
    "not ascii": ("198.51.100.0/24\n\uff11.2.3.4\n", [2]),  # a fullwidth digit one
    "nul": ("198.51.100.0/24\n198.51.100.7\x00\n", [2]),
}


@pytest.mark.parametrize("case", BAD_LISTS)
def test_list_file_reports_every_bad_line(tmp_path: Path, case: str) -> None:
    text, lines = BAD_LISTS[case]
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as raised:
        read_prefix_file(path)
    assert [(e.file, e.line) for e in raised.value.errors] == [(str(path), n) for n in lines]


def test_bad_line_past_the_first_chunk(tmp_path: Path) -> None:
    """The bulk reader works in chunks; a bad line far in still gets its own number."""
    good = [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(200_000)]  # > 2 chunks
    assert len("\n".join(good)) > 2 * cidr._CHUNK
    lines = [*good[:150_000], "198.51.100.1/24", *good[150_000:], "2001:db8::/32", "x"]
    path = tmp_path / "long.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigErrors) as raised:
        read_prefix_file(path)
    assert [e.line for e in raised.value.errors] == [150_001, 200_003]
    del lines[150_000], lines[-1]
    path.write_text("\n".join(lines) + "\n")
    assert len(read_prefix_file(path)) == 200_001


def test_list_file_errors_name_the_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("# x\n198.51.100.1/24  # oops\nnope\n")
    with pytest.raises(ConfigErrors) as raised:
        read_prefix_file(path)
    assert str(raised.value).splitlines() == [
        f"{path}:2: 198.51.100.1/24 has host bits set (did you mean 198.51.100.0/24?)",
        f"{path}:3: 'nope' is not an IPv4 or IPv6 address or prefix"
        " (like 198.51.100.0/24 or 2001:db8::/32)",
    ]


def test_unreadable_list_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        read_prefix_file(tmp_path / "gone.txt")
    assert not isinstance(raised.value, ConfigErrors)
    assert raised.value.file == str(tmp_path / "gone.txt")
    assert (
        str(raised.value)
        == f"{tmp_path / 'gone.txt'}: cannot read prefix list: No such file or directory"
    )
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"198.51.100.0/24\n\xff\xfe\n")
    with pytest.raises(ConfigError) as raised:
        read_prefix_file(binary)
    assert (raised.value.file, raised.value.line) == (str(binary), 2)


def test_million_line_list(tmp_path: Path) -> None:
    """Counts and values of a generated list (the time is printed, not asserted)."""
    rng = random.Random(7)
    lines = ["# generated"]
    for i in range(1_000_000):
        if i % 4 == 3:
            lines.append(f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64")
        else:
            plen = (32, 24, 16)[i % 3]
            # Scattered over 10.0.0.0/8 (never near the host's own range).
            value = (10 << 24 | (i * 2654435761) & 0xFFFFFF) & ~((1 << (32 - plen)) - 1)
            lines.append(f"{socket.inet_ntoa(value.to_bytes(4, 'big'))}/{plen}")
    rng.shuffle(lines)
    path = tmp_path / "million.txt"
    path.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    prefixes = read_prefix_file(path)
    took = time.perf_counter() - start
    print(f"\nread_prefix_file: 1,000,000 lines in {took:.3f} s")
    expected = {parse_prefix(line) for line in lines if not line.startswith("#")}
    assert len(prefixes) == len(expected)
    assert prefixes.keys() == expected
    assert set(prefixes.values()) == {None}
    assert P("2001:db8:f:423f::/64") in prefixes  # i = 999999 = 0xf423f
    assert P("2001:db8:0:3::/64") in prefixes  # i = 3
    assert P("10.0.0.0/32") in prefixes  # i = 0
    assert all(type(p) is Prefix for p in list(prefixes)[:1000])


def test_million_line_config_loads(tmp_path: Path) -> None:
    (tmp_path / "deny.txt").write_text(
        "".join(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}\n" for i in range(1_000_000))
    )
    path = write(tmp_path, '[deny]\nfiles = ["deny.txt"]\n')
    start = time.perf_counter()
    config = load_config(path)
    print(f"\nload_config with a 1,000,000-prefix deny file: {time.perf_counter() - start:.3f} s")
    assert len(config.policy.deny) == 1_000_000
    assert P("10.15.66.63") in config.policy.deny  # i = 999999


def test_bulk_path_is_taken_for_clean_lists() -> None:
    """The fast path must not silently stop applying (the slow one gives the same
    answer, only 2-3 times slower)."""
    assert cidr._bulk("198.51.100.0/24\n203.0.113.7\n2001:db8::/32\n") is not None
    assert cidr._bulk(" 198.51.100.0/24 # c\n\n203.0.113.0/24\r\n") is not None
    assert cidr._bulk("198.51.100.1/24\n") is None  # host bits: the line path reports it
