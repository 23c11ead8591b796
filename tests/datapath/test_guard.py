"""The SYN-cookie guard in the kernel (BPF_PROG_TEST_RUN), reset mode.

Expected replies are built independently (scapy + xdpshield.cookie, see
model.py) and compared byte for byte. The data path's clock is frozen through
the ``xs_fixed_now_ns`` knob and the keys are installed with ``set_keys``, so
every cookie and TSval is reproducible.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from xdpshield.ebpf import Collection, Map, ObjectSpec, StructCodec
from xdpshield.ebpf import Raw as Raw16
from xdpshield.shield import cookie, datapath
from xdpshield.shield.datapath import GuardOptions, Reason

from .model import (
    OBJ,
    TEST_OPTIONS,
    XDP_DROP,
    XDP_PASS,
    XDP_TX,
    SynOptions,
    rst,
    synack,
    xdp_only,
)

NOW = 0x1234_5678_9ABC_DEF0  # the frozen data-path clock, ns
K1 = bytes(range(16))
K2 = bytes(range(100, 116))
K3 = bytes(range(200, 216))
EPOCH = 7
CLIENT4, SERVER4 = "198.18.0.1", "198.18.0.2"
CLIENT6, SERVER6 = "fd00:3::1", "fd00:3::2"
CMAC, SMAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
PORT = 80
TTL_S = 10.0


@dataclass
class Ran:
    verdict: int
    frame: bytes
    reason: Reason


class Guard:
    """A loaded shield with known keys and a frozen clock."""

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        self.maps: dict[str, Map[Any, Any]] = dict(coll.maps)
        self.prog = coll.program("xdpshield_xdp")

    def run(self, frame: bytes | Packet, ifindex: int = 0) -> Ran:
        """One frame through the program; ``ifindex``: the device it arrives
        on (default: the loopback of the current namespace)."""
        raw = bytes(frame)
        before = datapath.read_stats(self.maps)
        r = self.prog.run(raw, ifindex=ifindex)
        after = datapath.read_stats(self.maps)
        moved = [reason for reason in Reason if after[reason] != before[reason]]
        assert len(moved) == 1, f"one counter should move, moved: {moved}"
        (reason,) = moved
        pk0, by0 = before[reason]
        assert after[reason] == (pk0 + 1, by0 + len(raw)), "counted once, with the frame's bytes"
        return Ran(r.verdict, r.frame, reason)


def load(keys: bool = True, tc: bool = False, **opts: Any) -> Collection:
    """``tc``: load the tc programs too (else the XDP ones alone)."""
    spec = ObjectSpec(OBJ) if tc else xdp_only(ObjectSpec(OBJ))
    spec.set_constants(
        **datapath.constants(
            GuardOptions(**({"fixed_now_ns": NOW, "verified_ttl_s": TTL_S} | TEST_OPTIONS | opts))
        )
    )
    coll = spec.load()
    datapath.set_ports(coll.maps, [PORT, 443])
    if keys:
        datapath.set_keys(coll.maps, K2, K1, epoch=EPOCH)
    return coll


@pytest.fixture
def guard() -> Iterator[Guard]:
    with load() as coll:
        yield Guard(coll)


def eth(*tags: Packet) -> Packet:
    p: Packet = Ether(src=CMAC, dst=SMAC)
    for t in tags:
        p = p / t
    return p


def l2_bytes(pkt: Packet) -> bytes:
    """Ethernet + tags of a built frame (everything before the IP header)."""
    raw = bytes(pkt)
    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    assert ip is not None
    return raw[: len(raw) - len(bytes(ip))]


# -- SYN -> SYN-ACK -------------------------------------------------------------------
OPTION_SETS: dict[str, list[tuple[str, Any]]] = {
    "none": [],
    "mss": [("MSS", 1460)],
    "linux": [
        ("MSS", 1460),
        ("SAckOK", b""),
        ("Timestamp", (0xDEADBEEF, 0)),
        ("NOP", None),
        ("WScale", 7),
    ],
}
#: The other fixed layouts the data path reads without the general walk (each
#: answered as the walk would: checked on both families, not every L3 layout).
FIXED_LAYOUTS: dict[str, list[tuple[str, Any]]] = {
    "mss0": [("MSS", 0)],
    "windows": [
        ("MSS", 1460),
        ("NOP", None),
        ("WScale", 8),
        ("NOP", None),
        ("NOP", None),
        ("SAckOK", b""),
    ],
    "windows-ws15-mss0": [
        ("MSS", 0),
        ("NOP", None),
        ("WScale", 15),
        ("NOP", None),
        ("NOP", None),
        ("SAckOK", b""),
    ],
}
# Every subset of {MSS, SACK, TS, WS}, in an order other than Linux's so
# that the general option walk (not the fast path) reads them.
for mss, sack, ts, ws in itertools.product([False, True], repeat=4):
    opts: list[tuple[str, Any]] = []
    if ws:
        opts += [("WScale", 14)]
    if ts:
        opts += [("NOP", None), ("NOP", None), ("Timestamp", (12345, 99))]
    if sack:
        opts += [("NOP", None), ("NOP", None), ("SAckOK", b"")]
    if mss:
        opts += [("MSS", 1400)]
    OPTION_SETS[f"mss{int(mss)}-sack{int(sack)}-ts{int(ts)}-ws{int(ws)}"] = opts


def syn(
    l3: Packet, options: list[tuple[str, Any]], sport: int = 40000, seq: int = 1000, **kw: Any
) -> Packet:
    return l3 / TCP(
        sport=sport, dport=PORT, flags=kw.pop("flags", "S"), seq=seq, options=options, **kw
    )


def expected_synack(frame: Packet, ecn: bool = False) -> bytes:
    v6 = bool(frame.haslayer(IPv6))
    ip = frame[IPv6] if v6 else frame[IP]
    tcp = frame[TCP]
    opts = SynOptions()
    for name, val in tcp.options:  # scapy's reading, not model.parse_tcp_options
        if name == "MSS":
            opts.mss = val
        elif name == "WScale":
            opts.wscale = min(val, 14)
        elif name == "SAckOK":
            opts.sack = True
        elif name == "Timestamp":
            opts.ts = val[0]
    return synack(
        l2_bytes(frame),
        v6,
        ip.src,
        ip.dst,
        tcp.sport,
        tcp.dport,
        tcp.seq,
        opts,
        ecn,
        K2,
        EPOCH,
        NOW,
    )


IP4 = IP(src=CLIENT4, dst=SERVER4)
IP6 = IPv6(src=CLIENT6, dst=SERVER6)
L3_CASES = {
    "ipv4": eth() / IP4,
    "ipv6": eth() / IP6,
    "vlan-ipv4": eth(Dot1Q(vlan=10)) / IP4,
    "qinq-ipv6": eth(Dot1AD(vlan=100), Dot1Q(vlan=10)) / IP6,
    "qinq-ipv4": eth(Dot1AD(vlan=100), Dot1Q(vlan=10)) / IP4,
    "ipv4-options": eth()
    / IP(src=CLIENT4, dst=SERVER4, options=[IPOption_NOP(), IPOption_RR(routers=["198.18.1.1"])]),
    "ipv6-exthdrs": eth() / IP6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(),
    "vlan-ipv6-frag0": eth(Dot1Q(vlan=7)) / IP6 / IPv6ExtHdrFragment(m=1, offset=0),
}


#: (L3 layout, option set): every option set on every L3 layout; the other
#: fixed layouts on both families.
SYN_CASES = [(l3, opts) for opts in OPTION_SETS for l3 in L3_CASES] + [
    (l3, opts) for opts in FIXED_LAYOUTS for l3 in ("ipv4", "ipv6")
]


@pytest.mark.parametrize(("l3name", "optname"), SYN_CASES, ids=[f"{o}-{l3}" for l3, o in SYN_CASES])
def test_syn_gets_cookie_synack_byte_for_byte(guard: Guard, l3name: str, optname: str) -> None:
    frame = syn(L3_CASES[l3name], (OPTION_SETS | FIXED_LAYOUTS)[optname])
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
    assert ran.frame == expected_synack(frame)


@pytest.mark.parametrize(
    ("name", "frame", "ecn"),
    [
        ("ecn-setup-syn", syn(eth() / IP4, OPTION_SETS["linux"], flags="SEC"), True),
        ("ece-alone-is-not-ecn", syn(eth() / IP4, OPTION_SETS["linux"], flags="SE"), False),
        ("payload-trimmed", syn(eth() / IP4, OPTION_SETS["mss"]) / Raw(b"x" * 100), False),
        ("ethernet-padding", syn(eth() / IP4, []) / Raw(b"\0" * 6), False),
        ("mss-536", syn(eth() / IP4, [("MSS", 536)]), False),
        ("mss-1300", syn(eth() / IP4, [("MSS", 1399)]), False),
        ("mss-1440-v6", syn(eth() / IP6, [("MSS", 1500)]), False),
        ("mss-9000-v6", syn(eth() / IP6, [("MSS", 9000)]), False),
        ("mss-zero-ignored", syn(eth() / IP4, [("MSS", 0)]), False),
        ("wscale-capped", syn(eth() / IP4, [("Timestamp", (1, 0)), ("WScale", 15)]), False),
        (
            "eol-stops-parsing",
            syn(eth() / IP4, [("MSS", 1460), ("EOL", None), ("WScale", 3)]),
            False,
        ),
        ("urg-psh-syn", syn(eth() / IP4, OPTION_SETS["linux"], flags="SPU"), False),
    ],
)
def test_syn_variants(guard: Guard, name: str, frame: Packet, ecn: bool) -> None:
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
    want = expected_synack(frame[Ether].copy(), ecn=ecn)
    if name == "eol-stops-parsing":  # scapy reads past EOL; Linux and we do not
        want = expected_synack(syn(eth() / IP4, [("MSS", 1460)]), ecn=ecn)
    assert ran.frame == want


def test_synack_checksums_verify_in_scapy(guard: Guard) -> None:
    """Belt and braces: scapy recomputes both checksums and agrees."""
    for l3 in (eth() / IP4, eth() / IP6):
        out = Ether(guard.run(syn(l3, OPTION_SETS["linux"])).frame)
        ip = out[IPv6] if out.haslayer(IPv6) else out[IP]
        got_tcp = out[TCP].chksum
        del out[TCP].chksum
        if not out.haslayer(IPv6):
            got_ip = out[IP].chksum
            del out[IP].chksum
            assert Ether(bytes(out))[IP].chksum == got_ip
        assert Ether(bytes(out))[TCP].chksum == got_tcp, ip.summary()


def test_tsval_carries_client_options(guard: Guard) -> None:
    ran = guard.run(syn(eth() / IP4, OPTION_SETS["linux"], flags="SEC"))
    ts = dict(Ether(ran.frame)[TCP].options)["Timestamp"]
    assert ts[1] == 0xDEADBEEF  # TSecr echoes the client's TSval
    assert cookie.decode_tsval(ts[0]) == cookie.TsOptions(wscale=7, sack=True, ecn=True)
    assert ts[0] <= NOW >> cookie.TS_SHIFT & 0xFFFFFFFF  # never ahead of the clock


@pytest.mark.parametrize(
    ("off", "dropped"),
    [
        # No timestamps: nowhere to keep scale and SACK, so MSS only.
        ("timestamps", ("Timestamp",)),
        ("sack", ("SAckOK",)),
        ("window_scaling", ("WScale",)),
    ],
)
def test_synack_offers_only_what_the_server_stack_accepts(
    off: str, dropped: tuple[str, ...]
) -> None:
    # The server's sysctl is off: the SYN-ACK is the one the client would get
    # had it not offered that option.
    frame = syn(L3_CASES["ipv4"], OPTION_SETS["linux"])
    without = syn(L3_CASES["ipv4"], [o for o in OPTION_SETS["linux"] if o[0] not in dropped])
    with load(**{off: False}) as coll:
        ran = Guard(coll).run(frame)
    assert (ran.verdict, ran.reason) == (XDP_TX, Reason.SYN_COOKIE_SENT)
    assert ran.frame == expected_synack(without)
    assert ran.frame != expected_synack(frame)


def test_no_key_drops_guarded_syn() -> None:
    with load(keys=False) as coll:
        ran = Guard(coll).run(syn(eth() / IP4, []))
    assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.NO_KEY)


def test_guard_program_unreachable_passes_and_is_counted(guard: Guard) -> None:
    """The guard is a program the entry tail-calls through xs_progs: with its
    slot emptied (the kernel empties a program array no pin holds) a guarded
    segment passes as the kernel alone would take it, counted as such; other
    traffic is judged as before."""
    frame = syn(eth() / IP4, [])
    assert guard.run(frame).reason == Reason.SYN_COOKIE_SENT
    guard.maps["xs_progs"].delete((0).to_bytes(4, "little"))
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason, ran.frame) == (XDP_PASS, Reason.GUARD_MISSING, bytes(frame))
    udp = eth() / IP4 / UDP(sport=1, dport=53)
    assert guard.run(udp).reason == Reason.PASS_UNPROTECTED


# -- the handshake ACK --------------------------------------------------------------
def ack_for(
    l3: Packet,
    key: bytes,
    epoch: int,
    *,
    sport: int = 40000,
    isn: int = 1000,
    mss_idx: int = 3,
    flags: str = "A",
    **over: int,
) -> Packet:
    ip = l3[IPv6] if l3.haslayer(IPv6) else l3[IP]
    ck = cookie.make_cookie(key, epoch, ip.src, ip.dst, sport, PORT, isn, mss_idx, now_ns=NOW)
    fields: dict[str, Any] = {
        "sport": over.pop("pkt_sport", sport),
        "dport": PORT,
        "seq": isn + 1,
        "ack": ck + 1,
    } | over
    return l3 / TCP(flags=flags, **fields)


def expected_rst(frame: Packet) -> bytes:
    v6 = bool(frame.haslayer(IPv6))
    ip, tcp = (frame[IPv6] if v6 else frame[IP]), frame[TCP]
    return rst(l2_bytes(frame), v6, ip.src, ip.dst, tcp.sport, tcp.dport, tcp.ack)


@pytest.mark.parametrize("l3name", ["ipv4", "ipv6", "qinq-ipv4", "ipv4-options", "ipv6-exthdrs"])
@pytest.mark.parametrize(
    ("key", "epoch"), [(K2, EPOCH), (K1, EPOCH - 1)], ids=["current", "previous"]
)
def test_valid_ack_verifies_and_is_reset(guard: Guard, l3name: str, key: bytes, epoch: int) -> None:
    frame = ack_for(L3_CASES[l3name], key, epoch)
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason) == (XDP_TX, Reason.ACK_VALID)
    assert ran.frame == expected_rst(frame)
    src = (frame[IPv6] if frame.haslayer(IPv6) else frame[IP]).src
    entry = datapath.verified_sources(guard.maps)
    assert entry == {ipaddress.ip_address(src): datapath.VerifiedEntry(NOW + int(TTL_S * 1e9))}


def test_ack_to_the_kernels_own_synack_verifies(guard: Guard) -> None:
    """Close the loop: answer the SYN-ACK the data path made, as a client would."""
    out = Ether(guard.run(syn(eth() / IP6, OPTION_SETS["linux"], seq=0xFFFFFFFF)).frame)
    ack = eth() / IP6 / TCP(sport=40000, dport=PORT, flags="A", seq=0, ack=out[TCP].seq + 1)
    assert guard.run(ack).reason == Reason.ACK_VALID


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("two-rotations-old", ack_for(eth() / IP4, K3, EPOCH - 2)),
        ("unknown-key", ack_for(eth() / IP4, K3, EPOCH)),
        ("wrong-sport", ack_for(eth() / IP4, K2, EPOCH, pkt_sport=40001)),
        ("wrong-dport", ack_for(eth() / IP4, K2, EPOCH, dport=443)),
        (
            "ack-plus-one",
            ack_for(
                eth() / IP4,
                K2,
                EPOCH,
                ack=cookie.make_cookie(
                    K2, EPOCH, CLIENT4, SERVER4, 40000, PORT, 1000, 3, now_ns=NOW
                )
                + 2,
            ),
        ),
        (
            "ack-minus-one",
            ack_for(
                eth() / IP4,
                K2,
                EPOCH,
                ack=cookie.make_cookie(
                    K2, EPOCH, CLIENT4, SERVER4, 40000, PORT, 1000, 3, now_ns=NOW
                ),
            ),
        ),
        ("seq-off-by-one", ack_for(eth() / IP4, K2, EPOCH, seq=1002)),
        (
            "mss-bits-forged",
            ack_for(
                eth() / IP4,
                K2,
                EPOCH,
                ack=(
                    cookie.make_cookie(
                        K2, EPOCH, CLIENT4, SERVER4, 40000, PORT, 1000, 3, now_ns=NOW
                    )
                    ^ 1
                )
                + 1,
            ),
        ),
        (
            "slot-bit-flipped",
            ack_for(
                eth() / IP4,
                K2,
                EPOCH,
                ack=(
                    cookie.make_cookie(
                        K2, EPOCH, CLIENT4, SERVER4, 40000, PORT, 1000, 3, now_ns=NOW
                    )
                    ^ 4
                )
                + 1,
            ),
        ),
        (
            "other-source",
            ack_for(
                eth() / IP(src="198.18.0.9", dst=SERVER4),
                K2,
                EPOCH,
                ack=cookie.make_cookie(
                    K2, EPOCH, CLIENT4, SERVER4, 40000, PORT, 1000, 3, now_ns=NOW
                )
                + 1,
            ),
        ),
        ("zero-ack", eth() / IP4 / TCP(sport=40000, dport=PORT, flags="A", seq=1, ack=0)),
    ],
)
def test_invalid_ack_is_dropped(guard: Guard, name: str, frame: Packet) -> None:
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.ACK_INVALID)
    assert datapath.verified_sources(guard.maps) == {}


def test_valid_cookie_with_fin_or_rst_is_not_a_handshake(guard: Guard) -> None:
    for flags in ("FA", "RA", "SA"):
        ran = guard.run(ack_for(eth() / IP4, K2, EPOCH, flags=flags))
        assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.NOT_VERIFIED)


# -- key rotation ----------------------------------------------------------------------
def test_rotation_keeps_one_previous_key() -> None:
    with load(keys=False) as coll:
        g = Guard(coll)
        datapath.init_maps(coll.maps, [PORT])
        assert datapath.current_epoch(coll.maps) == 0
        frames = []
        for i in range(3):
            # Each client SYNs under the current key, then the keys rotate.
            l3 = eth() / IP(src=f"198.18.0.{10 + i}", dst=SERVER4)
            out = Ether(g.run(syn(l3, [])).frame)
            frames.append(
                l3 / TCP(sport=40000, dport=PORT, flags="A", seq=1001, ack=out[TCP].seq + 1)
            )
        # the three cookies all came from epoch 0
        datapath.rotate_keys(coll.maps)
        assert datapath.current_epoch(coll.maps) == 1
        assert g.run(frames[0]).reason == Reason.ACK_VALID  # epoch 0 is the previous key
        datapath.rotate_keys(coll.maps)
        assert datapath.current_epoch(coll.maps) == 2
        assert g.run(frames[1]).reason == Reason.ACK_INVALID  # two rotations old
        assert g.run(frames[2]).reason == Reason.ACK_INVALID


def test_rotation_makes_a_new_random_key() -> None:
    with load(keys=False) as coll:
        g = Guard(coll)
        datapath.init_maps(coll.maps, [PORT])
        seqs = set()
        for _ in range(3):
            seqs.add(Ether(g.run(syn(eth() / IP4, [])).frame)[TCP].seq)
            datapath.rotate_keys(coll.maps)
        assert len(seqs) == 3


# -- verified sources: later packets, budget, expiry -----------------------------------
def verify(g: Guard, l3: Packet) -> None:
    assert g.run(ack_for(l3, K2, EPOCH)).reason == Reason.ACK_VALID


def data_seg(l3: Packet, flags: str = "PA") -> Packet:
    return l3 / TCP(sport=40000, dport=PORT, flags=flags, seq=5000, ack=6000) / b"GET /"


def test_unverified_data_is_dropped_verified_passes(guard: Guard) -> None:
    ran = guard.run(data_seg(eth() / IP4))
    assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.ACK_INVALID)
    for flags in ("F", "R", "", "FPU"):
        ran = guard.run(data_seg(eth() / IP4, flags))
        assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.NOT_VERIFIED)
    verify(guard, eth() / IP4)
    for flags in ("PA", "A", "FA", "R", "RA"):
        frame = data_seg(eth() / IP4, flags)
        ran = guard.run(frame)
        assert (ran.verdict, ran.reason) == (XDP_PASS, Reason.VERIFIED_PASS)
        assert ran.frame == bytes(frame)
    # another address (same /24, and the IPv6 family) is not verified
    assert guard.run(data_seg(eth() / IP(src="198.18.0.3", dst=SERVER4))).verdict == XDP_DROP
    assert guard.run(data_seg(eth() / IP6)).verdict == XDP_DROP


def test_verified_source_opens_every_connection_itself(guard: Guard) -> None:
    """No budget: a verified client's SYNs all reach the kernel, so none of
    its connections is ever reset for re-verification."""
    verify(guard, eth() / IP6)
    for _ in range(100):
        ran = guard.run(syn(eth() / IP6, OPTION_SETS["linux"]))
        assert (ran.verdict, ran.reason) == (XDP_PASS, Reason.VERIFIED_PASS)
    # its ACKs pass, a cookie handshake's included: nothing is reset
    assert guard.run(ack_for(eth() / IP6, K2, EPOCH)).reason == Reason.VERIFIED_PASS
    assert guard.run(data_seg(eth() / IP6)).reason == Reason.VERIFIED_PASS


def put_verified(g: Guard, addr: str, expires: int) -> None:
    m = g.maps["xs_verified"].typed(Raw16(16), StructCodec("=QII"))
    m.update(datapath.vkey(addr), (expires, 0, 0))


def test_expired_source_must_verify_again(guard: Guard) -> None:
    put_verified(guard, CLIENT4, NOW)  # expires exactly now: expired
    assert guard.run(data_seg(eth() / IP4)).reason == Reason.ACK_INVALID
    assert guard.run(syn(eth() / IP4, [])).reason == Reason.SYN_COOKIE_SENT
    put_verified(guard, CLIENT4, NOW + 1)
    assert guard.run(data_seg(eth() / IP4)).reason == Reason.VERIFIED_PASS


def test_activity_refreshes_expiry_lazily(guard: Guard) -> None:
    ttl = int(TTL_S * 1e9)
    put_verified(guard, CLIENT4, NOW + ttl - 1)  # most of the ttl left
    guard.run(data_seg(eth() / IP4))
    assert (
        datapath.verified_sources(guard.maps)[ipaddress.ip_address(CLIENT4)].expires_ns
        == NOW + ttl - 1
    )
    put_verified(guard, CLIENT4, NOW + ttl // 2 - 1)  # under half left
    guard.run(data_seg(eth() / IP4))
    assert (
        datapath.verified_sources(guard.maps)[ipaddress.ip_address(CLIENT4)].expires_ns == NOW + ttl
    )


def test_age_verified_removes_only_expired(guard: Guard) -> None:
    for i in range(5):
        put_verified(guard, f"198.18.0.{i + 10}", NOW + i * 1000)
    put_verified(guard, CLIENT6, NOW + 10_000)
    assert datapath.age_verified(guard.maps, NOW + 2000) == 3
    left = {str(a) for a in datapath.verified_sources(guard.maps)}
    assert left == {"198.18.0.13", "198.18.0.14", CLIENT6}
    assert datapath.age_verified(guard.maps, NOW + 2000) == 0


# -- what passes untouched -------------------------------------------------------------
PASS_CASES = {
    "arp": (eth() / ARP(psrc=CLIENT4, pdst=SERVER4), Reason.PASS_NON_IP),
    "lldp": (
        Ether(src=CMAC, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\0" * 46),
        Reason.PASS_NON_IP,
    ),
    "vlan-arp": (eth(Dot1Q(vlan=3)) / ARP(psrc=CLIENT4, pdst=SERVER4), Reason.PASS_NON_IP),
    "nd-ns": (
        eth() / IPv6(src=CLIENT6, dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt=SERVER6),
        Reason.PASS_UNPROTECTED,
    ),
    "icmp-echo": (eth() / IP4 / ICMP(), Reason.PASS_UNPROTECTED),
    "udp": (eth() / IP4 / UDP(sport=53, dport=80) / b"q", Reason.PASS_UNPROTECTED),
    "tcp-unprotected-syn": (
        eth() / IP4 / TCP(sport=1, dport=8080, flags="S"),
        Reason.PASS_UNPROTECTED,
    ),
    "tcp-unprotected-ack-v6": (
        eth() / IP6 / TCP(sport=1, dport=22, flags="A"),
        Reason.PASS_UNPROTECTED,
    ),
    "gre": (eth() / IP(src=CLIENT4, dst=SERVER4, proto=47) / (b"\0" * 8), Reason.PASS_UNPROTECTED),
    "ipv4-nonfirst-fragment": (
        eth() / IP(src=CLIENT4, dst=SERVER4, proto=6, frag=100) / (b"\0" * 8),
        Reason.PASS_FRAGMENT,
    ),
    "ipv6-nonfirst-fragment": (
        eth() / IP6 / IPv6ExtHdrFragment(offset=10, nh=6) / (b"\0" * 8),
        Reason.PASS_FRAGMENT,
    ),
    "udp-first-fragment": (
        eth()
        / IP(src=CLIENT4, dst=SERVER4, flags="MF")
        / UDP(sport=1, dport=2, len=3000)
        / (b"x" * 8),
        Reason.PASS_UNPROTECTED,
    ),
}


@pytest.mark.parametrize("name", PASS_CASES)
def test_passes_untouched(guard: Guard, name: str) -> None:
    frame, reason = PASS_CASES[name]
    ran = guard.run(frame)
    assert (ran.verdict, ran.reason) == (XDP_PASS, reason)
    assert ran.frame == bytes(frame)


def test_ports_change_live(guard: Guard) -> None:
    frame = eth() / IP4 / TCP(sport=1, dport=8080, flags="S")
    assert guard.run(frame).reason == Reason.PASS_UNPROTECTED
    datapath.set_ports(guard.maps, [PORT, 8080])
    assert datapath.get_ports(guard.maps) == {PORT, 8080}
    assert guard.run(frame).reason == Reason.SYN_COOKIE_SENT
    datapath.set_ports(guard.maps, [])
    assert guard.run(syn(eth() / IP4, [])).reason == Reason.PASS_UNPROTECTED


# -- malformed ------------------------------------------------------------------------
TRUNCATE_CASES = {
    "ipv4-options-tcp": syn(L3_CASES["ipv4-options"], OPTION_SETS["linux"]),
    "qinq-ipv6-exthdrs-tcp": syn(
        eth(Dot1AD(vlan=1), Dot1Q(vlan=2)) / IP6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(),
        OPTION_SETS["linux"],
    ),
    "vlan-udp": eth(Dot1Q(vlan=5)) / IP4 / UDP(sport=1, dport=2) / b"abcd",
    "icmp": eth() / IP4 / ICMP() / b"ping",
    "icmpv6": eth() / IP6 / ICMPv6ND_NS(tgt=SERVER6),
}


@pytest.mark.parametrize("name", TRUNCATE_CASES)
def test_truncated_anywhere_is_malformed(guard: Guard, name: str) -> None:
    full = bytes(TRUNCATE_CASES[name])
    # From 14: the kernel hands XDP no frame shorter than an Ethernet header
    # (test-run refuses one with EINVAL).
    for cut in range(14, len(full)):
        ran = guard.run(full[:cut])
        assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.MALFORMED), f"cut at {cut}"


MALFORMED_CASES = {
    "ihl-4": eth() / IP(src=CLIENT4, dst=SERVER4, ihl=4) / TCP(dport=PORT, flags="S"),
    "ip-version-5": eth() / IP(src=CLIENT4, dst=SERVER4, version=5) / TCP(dport=PORT),
    "ipv4-totlen-beyond-frame": eth() / IP(src=CLIENT4, dst=SERVER4, len=200) / TCP(dport=PORT),
    "ipv4-totlen-below-ihl": eth() / IP(src=CLIENT4, dst=SERVER4, len=19) / TCP(dport=PORT),
    "doff-4": eth() / IP4 / TCP(dport=PORT, flags="S", dataofs=4),
    "doff-beyond-ip": eth() / IP4 / TCP(dport=PORT, flags="S", dataofs=15),
    "doff-beyond-ip-unprotected": eth() / IP4 / TCP(dport=9, flags="A", dataofs=6),
    "ipv6-plen-beyond-frame": eth() / IPv6(src=CLIENT6, dst=SERVER6, plen=100) / TCP(dport=PORT),
    "ipv6-version-4": eth() / IPv6(src=CLIENT6, dst=SERVER6, version=4) / TCP(dport=PORT),
    "ipv6-exthdr-beyond-payload": eth() / IP6 / IPv6ExtHdrDestOpt(len=20) / TCP(dport=PORT),
    "ipv6-too-many-exthdrs": eth()
    / IP6
    / IPv6ExtHdrDestOpt()
    / IPv6ExtHdrDestOpt()
    / IPv6ExtHdrDestOpt()
    / IPv6ExtHdrDestOpt()
    / IPv6ExtHdrDestOpt()
    / IPv6ExtHdrDestOpt()
    / IPv6ExtHdrDestOpt()
    / TCP(dport=PORT, flags="S"),
    "udp-len-7": eth() / IP4 / UDP(len=7),
    "udp-len-beyond-ip": eth() / IP4 / UDP(len=100),
    "tcp-first-fragment-too-short": eth()
    / IP(src=CLIENT4, dst=SERVER4, proto=6, flags="MF")
    / (b"\x00\x50" * 4),
    "icmp-4-bytes": eth() / IP(src=CLIENT4, dst=SERVER4, proto=1) / b"\x08\0\0\0",
    "vlan-tag-cut": Raw(bytes(eth())[:12] + b"\x81\x00\x00"),
}


@pytest.mark.parametrize("name", MALFORMED_CASES)
def test_malformed_is_dropped(guard: Guard, name: str) -> None:
    ran = guard.run(MALFORMED_CASES[name])
    assert (ran.verdict, ran.reason) == (XDP_DROP, Reason.MALFORMED)


@pytest.mark.parametrize("n", [5, 6])
def test_up_to_six_exthdrs_parse(guard: Guard, n: int) -> None:
    """consts.h: more than XS_MAX_EXTHDR (6) is malformed; six is not."""
    l3: Packet = eth() / IP6 / IPv6ExtHdrHopByHop()
    for _ in range(n - 1):
        l3 = l3 / IPv6ExtHdrDestOpt()
    frame = syn(l3, [])
    ran = guard.run(frame)
    assert ran.reason == Reason.SYN_COOKIE_SENT
    assert ran.frame == expected_synack(frame)
