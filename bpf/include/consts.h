/* SPDX-License-Identifier: GPL-2.0 */
/* Every limit and protocol number the data path uses. vmlinux.h carries the
 * kernel's types and enums but none of its #defines, so the few we need are
 * spelled out here. Limits are #ifndef so a build can override them.
 */
#ifndef XDPSHIELD_CONSTS_H
#define XDPSHIELD_CONSTS_H

/* Ethertypes (host order; compare against bpf_htons()). */
#define XS_ETH_P_IP		0x0800
#define XS_ETH_P_IPV6		0x86DD
#define XS_ETH_P_8021Q		0x8100
#define XS_ETH_P_8021AD		0x88A8

/* IP protocol / IPv6 next-header numbers that vmlinux.h lacks as enums. */
#define XS_IPPROTO_HOPOPTS	0
#define XS_IPPROTO_ROUTING	43
#define XS_IPPROTO_FRAGMENT	44
#define XS_IPPROTO_AH		51
#define XS_IPPROTO_ICMPV6	58
#define XS_IPPROTO_DSTOPTS	60

/* IPv4 frag_off bits (host order). */
#define XS_IP_MF		0x2000
#define XS_IP_DF		0x4000
#define XS_IP_OFFMASK		0x1fff

/* TCP flag bits, as in byte 13 of the header. */
#define XS_TCP_FIN		0x01
#define XS_TCP_SYN		0x02
#define XS_TCP_RST		0x04
#define XS_TCP_PSH		0x08
#define XS_TCP_ACK		0x10
#define XS_TCP_URG		0x20
#define XS_TCP_ECE		0x40
#define XS_TCP_CWR		0x80

/* TCP option kinds. */
#define XS_TCPOPT_EOL		0
#define XS_TCPOPT_NOP		1
#define XS_TCPOPT_MSS		2
#define XS_TCPOPT_WSCALE	3
#define XS_TCPOPT_SACK_PERM	4
#define XS_TCPOPT_TIMESTAMP	8

/* VLAN tags walked before giving up (802.1ad outer + 802.1Q inner). */
#ifndef XS_MAX_VLAN
#define XS_MAX_VLAN		2
#endif

/* The IP header starts within this many bytes of the frame: Ethernet and
 * XS_MAX_VLAN tags.
 */
#define XS_MAX_L3_OFF		(14 + 4 * XS_MAX_VLAN)

/* IPv6 extension headers walked; more than this is dropped as malformed
 * (real traffic carries one or two; a long chain only hides the L4 header).
 */
#ifndef XS_MAX_EXTHDR
#define XS_MAX_EXTHDR		6
#endif

/* The TCP header must start within this many bytes of the frame; deeper is
 * dropped as malformed (only an absurd IPv6 extension chain gets there).
 */
#define XS_MAX_L4_OFF		1024

/* xs_progs' slots: the programs the XDP entry tail-calls. */
enum xs_prog {
	XS_PROG_GUARD = 0,	/* xdpshield_guard */
	XS_PROG__MAX,
};

/* Bytes of TCP options the general parser walks: the most a header holds. */
#define XS_TCPOPT_MAXLEN	40

/* Verified sources kept (LRU: the least recently seen is evicted). */
#ifndef XS_VERIFIED_MAX
#define XS_VERIFIED_MAX		65536
#endif

/* xs_now() reads the coarse clock for its jiffies offset every this many
 * calls per CPU (a power of two).
 */
#define XS_JCLOCK_EVERY		1024

/* Transparent mode's seen-sources filter (maps.h xs_seen): 2^20 bits. */
#define XS_SEEN_BITS		20
#define XS_SEEN_WORDS		(1U << (XS_SEEN_BITS - 6))

/* The cookies-offered filter (maps.h xs_offered): 2^19 tick bytes, 8 a word. */
#define XS_OFFERED_BITS		19
#define XS_OFFERED_WORDS	(1U << (XS_OFFERED_BITS - 3))
/* SYNs the kernel answered (maps.h xs_kern_syn): 2^16 tick bytes, 8 a word. */
#define XS_KERN_SYN_BITS	16
#define XS_KERN_SYN_WORDS	(1U << (XS_KERN_SYN_BITS - 3))
/* A tick byte of either: written (a slot never written is 0), and the
 * cookie tick's low bits.
 */
#define XS_TICK_SET		0x80
#define XS_TICK_MASK		0x7f

/* Cookie key slots: the current and the previous key. */
#define XS_KEY_SLOTS		2

/* Cookie layout: bits 1..0 MSS index, bit 2 the key slot, bit 3 the parity
 * of the coarse clock tick it was made in, bits 31..4 the hash (28 bits: a
 * forged ACK passes with a chance of 2^-28 per try).
 */
#define XS_COOKIE_MSS_MASK	0x3
#define XS_COOKIE_SLOT_SHIFT	2
#define XS_COOKIE_TICK_SHIFT	3
#define XS_COOKIE_HASH_MASK	(~(__u32)0xf)
/* The cookie's clock: ns >> 36, a tick of 68.7 s. A cookie is accepted in
 * the tick it was made in and the next one: 68.7 to 137 s, however rarely
 * (or never) userspace rotates the keys (Linux: up to about 2 minutes).
 */
#define XS_COOKIE_TICK_NS_SHIFT	36
/* A cookie minted by a clock a little ahead of the checker's (another node's
 * wall clock; another CPU's, just after the offset they share grew) can
 * carry the next tick's parity while the checker is still in the tick
 * before: within this much of the next tick, such a cookie is also tried as
 * the next tick's (268 ms: NTP keeps a fleet's clocks far closer).
 */
#define XS_COOKIE_AHEAD_NS	(1U << 28)

/* TSval low bits, as Linux's cookie_init_timestamp() lays them out. */
#define XS_TS_BITS		6
#define XS_TS_WSCALE_MASK	0xf	/* 0xf: the client sent no wscale */
#define XS_TS_SACK		0x10
#define XS_TS_ECN		0x20
#define XS_MAX_WSCALE		14	/* RFC 7323 2.3 */

/* xs_server_opts bits: options the protected stack has turned on. */
#define XS_SRV_TS		0x1
#define XS_SRV_SACK		0x2
#define XS_SRV_WS		0x4
#define XS_SRV_ECN		0x8	/* net.ipv4.tcp_ecn != 0 */

/* Per-CPU rate windows (flood detection, the RST cap): 2^27 ns = 134 ms. */
#define XS_WIN_SHIFT		27

/* Local addresses kept in xs_local. */
#ifndef XS_LOCAL_MAX
#define XS_LOCAL_MAX		1024
#endif

/* TCP bytes (header and payload) whose checksum a SYN is checked over;
 * a longer SYN (TCP Fast Open data) is left to the kernel.
 */
#define XS_CSUM_MAX		1500

/* TSval clock: ns >> 20, a tick of 1.05 ms (RFC 7323 asks for 1 ms..1 s);
 * a shift instead of a division by 10^6 keeps a 64-bit div off the SYN path.
 */
#define XS_TS_SHIFT		20

/* Replies: hop limit, and the window a cookie SYN-ACK offers (unscaled, as
 * in any SYN-ACK).
 */
#define XS_REPLY_TTL		64
#define XS_SYNACK_WINDOW	65535

/* Transparent mode: struct xs_meta's opts bits and magic. The magic tells
 * our metadata from another XDP program's (and from none at all).
 */
#define XS_META_TS		0x01
#define XS_META_SACK		0x02
#define XS_META_WS		0x04
#define XS_META_ECN		0x08
#define XS_META_MAGIC		0x78736d31	/* "xsm1" */

/* Transparent mode, tc: a segment of the tuple this CPU handed to the
 * kernel less than this long ago is left to the stack (handoff.h).
 */
#define XS_TC_INFLIGHT_NS	(10ULL * 1000 * 1000)

/* tc verdicts (linux/pkt_cls.h: #defines, so not in vmlinux.h). */
#define XS_TC_ACT_OK		0
#define XS_TC_ACT_SHOT		2
/* TC_ACT_UNSPEC is -1; verdicts keep the action in a byte, so 0xff stands
 * for it until the exit converts it back.
 */
#define XS_TC_ACT_UNSPEC	0xff

/* Policy. Allow and deny tries hold two generations while one replaces
 * the other: room for XS_LIST_MAX prefixes per family in each.
 */
#ifndef XS_LIST_MAX
#define XS_LIST_MAX		(1U << 21)
#endif
/* Requests to reflection ports remembered (LRU), and datagrams whose
 * first fragment passed (LRU).
 */
#ifndef XS_REFL_MAX
#define XS_REFL_MAX		65536
#endif
#ifndef XS_FRAG_MAX
#define XS_FRAG_MAX		16384
#endif
/* Hints in front of those two tables (hygiene.h): a slot per hash of the
 * peer (of the datagram's source and id) holding when its latest entry
 * expires, in ticks of ns >> XS_HINT_SHIFT (~1.05 ms). A power of 2, and
 * small enough to stay in cache: a flood's random sources read random
 * slots (2^16 slots, 256 KiB, cost a reflection drop ~20-35 ns more live
 * than 2^12, measured); more slots only spare lookups to a host that
 * talks to many peers at once.
 */
#ifndef XS_HINT_SLOTS
#define XS_HINT_SLOTS		(1U << 14)
#endif
#define XS_HINT_SHIFT		20
/* struct xs_hygiene flags */
#define XS_HYG_TCP_FLAGS	0x1
#define XS_HYG_REFLECTION	0x2
#define XS_HYG_FRAGMENTS	0x4
#define XS_HYG_ICMP		0x8
/* Prefix lengths per list and family held in the hash tier. */
#define XS_ACL_TIERS		4
/* The lists' filters (acl.h): 2^24 bits each, in 64-bit words. */
#define XS_ACL_WORDS		(1U << 18)
/* struct xs_psel.acl_filt: the filter of a list and family is kept, bit
 * XS_ACL_FILT(which, v6) (which: allow 0, deny 1); also its slot in
 * xs_acl_bits.
 */
#define XS_ACL_SLOT(which, v6)	((which) + 2 * (v6))
#define XS_ACL_FILT(which, v6)	(1U << XS_ACL_SLOT(which, v6))
/* struct xs_acl flags: added live (kept across config applies) */
#define XS_ACL_LIVE		0x1
/* Rules: candidates per (class, prefix), protocol slots (TCP, UDP, ICMP,
 * ICMPv6, other), rule counters, (class, prefix) entries (two generations).
 */
#define XS_RULE_CANDS		4
#define XS_RULE_SLOTS		5
#define XS_RULE_ANY		0xff
#define XS_RULE_DROP		1
#define XS_RULE_PASS		2
#define XS_RULE_LIMIT		3	/* over the rule's own rate: drop */
#ifndef XS_RULES_MAX
#define XS_RULES_MAX		16384
#endif
#ifndef XS_RULE_ENTRIES
#define XS_RULE_ENTRIES		(1U << 19)
#endif

/* Limits (limits.h). Per-source state: an LRU of sources that sent twice
 * within XS_ADMIT_WIN (xs_admit's filter keeps single packets of spoofed
 * floods out of it); blocks; the admission filter's slots (a power of 2).
 */
#ifndef XS_SRC_MAX
#define XS_SRC_MAX		(1U << 17)
#endif
#ifndef XS_BLOCK_MAX
#define XS_BLOCK_MAX		65536
#endif
/* 512 KiB: small enough to stay in cache under a flood. A slot taken by
 * spoofed packets costs a slow source only its admission (a source not
 * admitted is not limited), never state it has.
 */
#ifndef XS_ADMIT_SLOTS
#define XS_ADMIT_SLOTS		(1U << 16)
#endif
/* The admission filter's clock: ns >> XS_ADMIT_SHIFT (~1.05 ms); how many
 * of its ticks a second packet may come after the first (~1 s); how stale
 * a slot may get before its source's packet refreshes it (~67 ms).
 */
#define XS_ADMIT_SHIFT		20
#define XS_ADMIT_WIN		954
#define XS_ADMIT_REFRESH	64
/* The per-CPU drop cache (limits.h): 2^XS_DC_BITS slots; an entry is
 * trusted for at most XS_DC_TTL_NS (~16.8 ms): a block's drops reach its
 * count, and a source's admission slot stays fresh, at least that often.
 */
#define XS_DC_BITS		8
#define XS_DC_TTL_NS		(1ULL << 24)
/* Excess is sustained while over-limit packets come less than this apart. */
#define XS_EXCESS_GAP_NS	1000000000ULL
/* struct xs_limits flags */
#define XS_LIM_BLOCKS		0x1	/* look sources up in xs_blocks */
#define XS_LIM_BLOCKS_LPM	0x2	/* ... and in xs_blocks_lpm */
#define XS_LIM_SOURCES		0x4	/* a per-source limit is set (else
					 * only limit rules need a source's
					 * state) */
/* struct xs_block flags */
#define XS_BLOCK_MANUAL		0x1	/* added by hand, not for excess */

/* Drop samples (sample.h): bytes of a frame's head copied, and the ring's
 * size (a power of 2 of pages: ~3400 samples of 152 bytes and their 8-byte
 * headers; at the default cap every reason's second of samples fits).
 */
#define XS_SAMPLE_BYTES		128
#ifndef XS_SAMPLE_RING
#define XS_SAMPLE_RING		(512U * 1024)
#endif
/* Packets of a reason a CPU lets by without reading the clock once its
 * sample bucket is empty (sample.h): at 1 Mpps per CPU, 64 us.
 */
#ifndef XS_SAMPLE_SKIP
#define XS_SAMPLE_SKIP		63
#endif
/* A verdict's rule: id + 1 above the reason (verdict.h XS_V_RULE). */
#define XS_V_RULE_SHIFT		16

#endif
