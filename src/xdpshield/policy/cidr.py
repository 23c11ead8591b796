"""Prefixes and prefix-list files: strict (host bits set is an error) and
fast (a million lines in well under a second).

``ipaddress.ip_network`` costs 2-3 µs a prefix, too slow for a million-line
deny list; here an address is checked by ``inet_pton`` and its host bits by
integer arithmetic, and :class:`Prefix` tuples are built directly.

A list file holds one prefix (or bare address) a line; ``#`` starts a comment
anywhere on a line; blank lines are skipped. :func:`read_prefix_file` first
tries a bulk path that hands the columns of each chunk of lines to
C-implemented builtins (no Python code runs per line); any doubt (odd
whitespace, a bad line) sends the file to the line-by-line path, which gives
the same result or every bad line with its number.
"""

from __future__ import annotations

import gc
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from itertools import chain, repeat

from xdpshield.errors import ConfigError, ConfigErrors
from xdpshield.policy.model import Prefix, PrefixList

__all__ = ["gc_paused", "parse_prefix", "read_prefix_file"]

_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_BITS = {4: 32, 6: 128}
#: Canonical prefix lengths as text ("": a bare address); anything else goes
#: to the careful path.
_PLEN = {v: {"": bits} | {str(n): n for n in range(bits + 1)} for v, bits in _BITS.items()}
#: Byte k of the host mask of each prefix length, as bytes.translate tables
#: (the bulk check builds every mask of a column with a few C-level passes).
_MASK_BYTE = {
    v: [
        bytes((((1 << (bits - n)) - 1) >> (bits - 8 - 8 * k)) & 0xFF if n <= bits else 0
              for n in range(256))
        for k in range(bits // 8)
    ]
    for v, bits in _BITS.items()
}  # fmt: skip
# The mixed-family column's tables, indexed by "is IPv6" (False: 0, True: 1).
_BY6_VERSION = (4, 6)
_BY6_FAMILY = (socket.AF_INET, socket.AF_INET6)
_BY6_BITS = (32, 128)
_BY6_PLEN = (_PLEN[4], _PLEN[6])
_BY6_MASKS = tuple(
    [((1 << (bits - n)) - 1).to_bytes(bits // 8, "big") for n in range(bits + 1)]
    for bits in _BY6_BITS
)
_new_prefix = partial(tuple.__new__, Prefix)  # skips NamedTuple's Python-level __new__
#: Whitespace other than a newline: its presence means lines need stripping.
_BLANKS = " \t\r\v\f\x1c\x1d\x1e\x1f"
_COMMENT = re.compile(r"#[^\n]*")
#: Characters of text per bulk chunk (about 16k lines of IPv4 prefixes; measured:
#: 128 KiB to 1 MiB are alike, 4 MiB is 10% slower).
_CHUNK = 1 << 18
#: bytes.translate deletes all but "/" and newline: what is left of a text
#: whose every line is "ADDR/LEN" is "/\n/\n.../".
_NOT_SEPARATOR = bytes(c for c in range(256) if chr(c) not in "/\n")


def parse_prefix(text: str) -> Prefix:
    """'198.51.100.0/24', '2001:db8::/32' or a bare address (a /32 or /128).

    Raises ConfigError naming the text (without file or line: the caller
    knows them). Host bits set is an error that suggests the network.
    """
    addr_s, sep, len_s = text.partition("/")
    version = 6 if ":" in addr_s else 4
    bits = _BITS[version]
    try:
        addr = socket.inet_pton(_AF[version], addr_s)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        if not text:
            raise ConfigError("empty prefix (want an address or a CIDR prefix)") from None
        raise ConfigError(
            f"{text!r} is not an IPv4 or IPv6 address or prefix"
            " (like 198.51.100.0/24 or 2001:db8::/32)"
        ) from None
    if not sep:
        plen = bits
    elif not (len_s.isascii() and len_s.isdigit()):
        what = "missing" if not len_s else f"{len_s!r} is not a number"
        raise ConfigError(f"{text!r}: prefix length {what}")
    elif (plen := int(len_s)) > bits:
        raise ConfigError(f"{text!r}: prefix length {plen} is more than IPv{version}'s {bits}")
    value = int.from_bytes(addr, "big")
    host = (1 << (bits - plen)) - 1
    if value & host:
        net = (value & ~host).to_bytes(bits // 8, "big")
        suggestion = socket.inet_ntop(_AF[version], net)
        raise ConfigError(f"{text} has host bits set (did you mean {suggestion}/{plen}?)")
    return _new_prefix((version, addr, plen))


def read_prefix_file(path: str | os.PathLike[str]) -> PrefixList:
    """A list file as {prefix: None} (None: no expiry).

    Raises ConfigErrors holding every bad line (each with this file and its
    line), or ConfigError (file set, no line) when the file cannot be read.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read prefix list: {e.strerror or e}", file=name) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            "not a text file (invalid UTF-8); want one prefix a line", file=name, line=line
        ) from None
    del data
    with gc_paused():
        fast = _bulk(text)
        if fast is not None:
            return fast
        prefixes, errors = _by_line(text, name)
    if errors:
        raise ConfigErrors(errors)
    return prefixes


@contextmanager
def gc_paused() -> Iterator[None]:
    """A million new tuples would trigger many collections, each walking every
    object of the process: about 1 s more for a big list in a big process."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _by_line(text: str, name: str) -> tuple[PrefixList, list[ConfigError]]:
    """The careful path: every line on its own, every bad one reported."""
    prefixes: PrefixList = {}
    errors: list[ConfigError] = []
    # Lines end at "\n" only (as editors and `wc -l` count them); strip() takes the "\r".
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.partition("#")[0].strip()
        if not line:
            continue
        try:
            prefixes[parse_prefix(line)] = None
        except ConfigError as e:
            words = line.split()
            message = (
                f"{len(words)} words on one line ({line!r}): want one prefix a line"
                if len(words) > 1
                else e.message
            )
            errors.append(ConfigError(message, file=name, line=lineno))
    return prefixes, errors


class _NotSure(Exception):
    """The bulk path cannot vouch for a chunk: read the file line by line."""


def _bulk(text: str) -> PrefixList | None:
    """The same result as :func:`_by_line`, or None when unsure.

    Every step is one C-level pass over a chunk of text or a column, so the
    cost is a few allocations a line. Chunks of about 16k lines keep the
    temporaries (a string per address and length) small and in cache, and
    reuse their memory from chunk to chunk: whole-file columns of a million
    lines touched 250 MB of fresh pages, a third of the time in a new
    process. One dict is built over all chunks' prefixes.
    """
    if not text.isascii():
        return None
    try:
        return dict.fromkeys(chain.from_iterable(map(_chunk, _chunks(text))))
    except (_NotSure, OSError, KeyError, ValueError):
        return None


def _chunks(text: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _chunk(text: str) -> Iterator[Prefix]:
    """A chunk's prefixes, every one checked before the first is given out.
    Line structure is proven before columns are paired up (an address must
    never meet another line's length)."""
    if "#" in text:
        text = _COMMENT.sub("", text)
    if any(c in text for c in _BLANKS):
        text = "\n".join(map(str.strip, text.split("\n")))
        if any(c in text for c in _BLANKS):
            raise _NotSure  # whitespace inside a line: not one prefix
    # Now a line is empty or one token; drop the empty ones.
    while "\n\n" in text:
        text = text.replace("\n\n", "\n")
    text = text.strip("\n")
    slashes = text.count("/")
    lens: list[str] | None = None
    if not slashes:
        addrs = text.split()
    elif "/\n" in text or "\n/" in text or text.startswith("/") or text.endswith("/"):
        raise _NotSure  # a slash with nothing on one side
    elif text.encode().translate(None, _NOT_SEPARATOR) == (b"/\n" * slashes)[:-1]:
        # One slash a line with text on both sides: pieces pair up in order.
        pieces = text.replace("/", "\n").split()
        addrs, lens = pieces[0::2], pieces[1::2]
    else:
        # Bare addresses too (their length is "", see _PLEN); a token with
        # two slashes keeps one in its length and fails the lookup.
        a, _, b = zip(*map(str.partition, text.split(), repeat("/")), strict=True)
        addrs, lens = list(a), list(b)
    if "." not in text:
        return _column(6, addrs, lens)
    if ":" not in text:
        return _column(4, addrs, lens)
    return _mixed(addrs, lens)


def _column(version: int, addrs: list[str], lens: list[str] | None) -> Iterator[Prefix]:
    """One family's addresses and lengths (None: all full length)."""
    bits = _BITS[version]
    packed = list(map(socket.inet_pton, repeat(_AF[version]), addrs))
    if lens is None or lens.count(str(bits)) == len(lens):  # no host bits to check
        return map(_new_prefix, zip(repeat(version), packed, repeat(bits)))
    plens = list(map(_PLEN[version].__getitem__, lens))
    if not _host_bits_clear(version, packed, plens):
        raise _NotSure
    return map(_new_prefix, zip(repeat(version), packed, plens))


def _mixed(addrs: list[str], lens: list[str] | None) -> Iterator[Prefix]:
    """IPv4 and IPv6 in one column: each element picks its family's tables by
    its "is IPv6" flag (a bool indexes a pair), still without Python per line."""
    is6 = list(map(str.__contains__, addrs, repeat(":")))
    packed = list(map(socket.inet_pton, map(_BY6_FAMILY.__getitem__, is6), addrs))
    if lens is None:
        plens = list(map(_BY6_BITS.__getitem__, is6))
    else:
        plens = list(map(dict.__getitem__, map(_BY6_PLEN.__getitem__, is6), lens))
        # Masks as wide as their addresses, so the two joins line up.
        masks = b"".join(map(list.__getitem__, map(_BY6_MASKS.__getitem__, is6), plens))
        if int.from_bytes(b"".join(packed), "big") & int.from_bytes(masks, "big"):
            raise _NotSure
    versions = map(_BY6_VERSION.__getitem__, is6)
    return map(_new_prefix, zip(versions, packed, plens, strict=True))


def _host_bits_clear(version: int, packed: list[bytes], plens: list[int]) -> bool:
    """Every address and every host mask of a column as one big integer each:
    a single AND checks them all."""
    width = _BITS[version] // 8
    by_len = bytes(plens)
    masks = bytearray(width * len(plens))
    for k, table in enumerate(_MASK_BYTE[version]):
        masks[k::width] = by_len.translate(table)
    return not int.from_bytes(b"".join(packed), "big") & int.from_bytes(masks, "big")
