/* SPDX-License-Identifier: GPL-2.0 */
/* Types and numbers read by both the BPF object and Python. Python reads the
 * reason numbers from the object's BTF (enum xs_reason), and a test checks
 * that xdpshield.shield.datapath.Reason agrees with it. Every other number
 * Python mirrors is in enum xs_abi below, and the map value layouts here are
 * mirrored by the StructCodec formats in shield/datapath.py: tests/unit/
 * test_mirrors.py checks both against the object's BTF.
 */
#ifndef XDPSHIELD_SHARED_H
#define XDPSHIELD_SHARED_H

#include "consts.h"

/* Why a frame got its verdict. Append only: the numbers are an ABI with
 * pinned maps and with Python.
 */
enum xs_reason {
	XS_R_PASS_NON_IP = 0,	/* ARP, LLDP, anything not IPv4/IPv6 */
	XS_R_MALFORMED,		/* truncated or inconsistent headers */
	XS_R_PASS_UNPROTECTED,	/* IP traffic the shield does not guard */
	XS_R_SYN_COOKIE_SENT,	/* SYN answered with a cookie SYN-ACK */
	XS_R_ACK_VALID,		/* handshake ACK with a valid cookie */
	XS_R_ACK_INVALID,	/* ACK whose cookie does not check out */
	XS_R_VERIFIED_PASS,	/* from a verified client */
	XS_R_NOT_VERIFIED,	/* non-SYN/ACK segment from an unverified source */
	XS_R_PASS_FRAGMENT,	/* non-first IP fragment: no L4 header to judge */
	XS_R_NO_KEY,		/* no live cookie key yet: guarded SYN/ACK dropped */
	XS_R_REPLY_FAILED,	/* the frame could not be resized for a reply */
	/* Transparent mode (the ACK_VALID reason counts the handshake ACKs
	 * passed on to tc; ACK_INVALID the ACKs with neither socket nor cookie).
	 */
	XS_R_ESTABLISHED_PASS,	/* segment of a socket the kernel already has */
	XS_R_HANDOFF,		/* tc: connection handed to the kernel (kfunc) */
	XS_R_HANDOFF_FAILED,	/* tc: the kfunc refused; segment dropped */
	XS_R_HANDOFF_NO_LISTENER, /* tc: nothing listens; the kernel answers */
	XS_R_HANDOFF_BAD_COOKIE, /* tc, no XDP metadata: cookie re-check failed */
	XS_R_SYN_EXISTING_SOCKET, /* SYN whose 4-tuple has a socket (a TIME_WAIT):
				   * the kernel answers it */
	XS_R_MARTIAN,		/* SYN the kernel would drop unanswered: martian
				 * or LAND source, broadcast, multicast or
				 * non-local destination, frame not to our MAC */
	XS_R_BAD_CHECKSUM,	/* SYN with a bad IPv4 or TCP checksum */
	XS_R_SYN_NO_LISTENER,	/* SYN to a port nothing listens on: RST, as the
				 * kernel answers */
	XS_R_SYN_UNDER_THRESHOLD, /* transparent, no SYN flood on: the kernel
				   * answers the SYN itself */
	XS_R_STRAY_UNDER_THRESHOLD, /* transparent, no flood on: a segment that
				     * is neither ours nor a socket's goes to
				     * the kernel (its own cookie, or its RST) */
	XS_R_NOT_VERIFIED_RST,	/* reset mode: a segment dropped for want of
				 * verification, answered with an RST */
	XS_R_RST_CAPPED,	/* an RST not sent: over the per-CPU cap */
	XS_R_VLAN_TOO_DEEP,	/* more VLAN tags than XS_MAX_VLAN */
	/* Policy stages (acl.h, hygiene.h, rules.h). */
	XS_R_ALLOW_PASS,	/* source in the allow list: passes unjudged */
	XS_R_DENY,		/* source in the deny list */
	XS_R_TCP_FLAGS,		/* TCP flag nonsense (none, SYN+FIN, SYN+RST,
				 * FIN+PSH+URG) */
	XS_R_REFLECTION,	/* UDP from an amplification port answering no
				 * request of this host */
	XS_R_FRAGMENT_UNKNOWN,	/* non-first fragment of no datagram whose first
				 * fragment passed */
	XS_R_ICMP_TYPE,		/* ICMP / ICMPv6 type not allowed */
	XS_R_PROTOCOL,		/* IP protocol dropped by policy */
	XS_R_RULE_DROP,		/* a rule said drop */
	XS_R_RULE_PASS,		/* a rule said pass: to the kernel unguarded */
	XS_R_BLOCKED,		/* source in the block table */
	XS_R_LIMIT_PPS,		/* source over its packets per second */
	XS_R_LIMIT_BPS,		/* source over its bytes per second */
	XS_R_LIMIT_SYN,		/* source over its SYNs per second */
	XS_R_RULE_LIMIT,	/* source over a limit rule's rate */
	XS_R_CEILING,		/* the protocol's global ceiling reached */
	XS_R_GUARD_MISSING,	/* the guard's program could not be reached
				 * (its program array emptied): passed */
	XS_R_ACK_SEEN_PASS,	/* transparent, flood on: an ACK neither a
				 * socket's nor ours, from a source whose SYN
				 * the kernel answered lately, goes to the
				 * kernel (its own cookie, or its RST) */
	XS_R__MAX,
};

struct xs_counter {
	__u64 packets;
	__u64 bytes;
};

/* The protected TCP ports: bit (port & 63) of bits[port >> 6]. */
struct xs_portset {
	__u64 bits[1024];
};

/* One cookie key slot of xs_keys. The slot index is epoch & 1, so a rotation
 * overwrites only the slot of the key that is two epochs old. The epoch is
 * the cookie's time counter: userspace bumps it on every rotation.
 */
#define XS_KEY_RECORDED	2

struct xs_key {
	__u64 k[2];		/* SipHash-2-4 key: bytes 0..7 and 8..15 */
	__u32 epoch;		/* rotation counter this key was made for */
	__u32 live;		/* 0 until userspace has written a key; 1 live;
				 * XS_KEY_RECORDED: live, and no shield but
				 * this one mints with it (xs_offered) */
	__u64 born_s;		/* CLOCK_REALTIME seconds it was written (for
				 * status: the key's age); unused by BPF */
};

/* Key of xs_verified: the source address, IPv4 as ::ffff:a.b.c.d. */
struct xs_vkey {
	__u32 addr[4];		/* network order */
};

struct xs_verified {
	__u64 expires_ns;	/* CLOCK_MONOTONIC; refreshed while active */
	__u32 pad[2];		/* was a budget of new connections (removed:
				 * it reset a verified client's connection) */
};

/* Per CPU: is a SYN flood on, and the cap on the RSTs the shield sends.
 * Windows of 2^XS_WIN_SHIFT ns; no atomics, no division.
 */
struct xs_cpu_state {
	__u64 win_start;	/* start of the current rate window, ns */
	__u32 count;		/* handshake packets in it (SYNs, stray ACKs) */
	__u32 flood;		/* 1: answer SYNs with cookies */
	__u32 calm_wins;	/* windows in a row below the off threshold */
	__u32 rst_count;	/* RSTs sent in the current window */
	__u64 floods;		/* how many times flood mode was entered */
	__u64 last_change_ns;	/* when flood mode last turned on or off */
	/* What the SYN path would otherwise ask the kernel or a hash map per
	 * packet, cached for one window (a flood hits one destination, one
	 * link): the link's MSS, the last destination and its xs_local kind.
	 */
	__u64 cache_ns;		/* when the caches were last emptied */
	__u32 mss4, mss6;	/* 0: not read yet */
	__u32 dst[4];		/* as struct xs_vkey */
	__u32 dst_kind;		/* enum xs_local_kind, or 0 */
	__u32 dst_valid;	/* dst and dst_kind are filled */
	__u32 jreads;		/* xs_now() calls: it reads the coarse clock
				 * every XS_JCLOCK_EVERY of them
				 */
	__u32 pad;
};

/* Where the shield's own interface stands (userspace keeps it current). */
struct xs_ifinfo {
	__u8 mac[6];		/* the interface's MAC */
	__u16 has_mac;		/* 0: not known, no MAC check */
};

/* The live policy: which generation of each policy table packets use, and
 * how full the lists are (0: skip the lookup). Python writes a whole new
 * generation beside the live one, then switches every table at once with
 * one update of this one-element array: no packet sees half a policy.
 */
struct xs_psel {
	__u32 allow_gen;	/* generation in the allow lists' keys */
	__u32 deny_gen;		/* in the deny lists' keys */
	__u32 rules_gen;	/* in xs_rules keys (low 16 bits); & 1: the slot
				 * of xs_rule_ports and xs_rule_sport */
	__u32 hyg_gen;		/* & 1: the slot of xs_hyg */
	__u32 n_allow4, n_allow6;	/* entries (upper bounds; for status) */
	__u32 n_deny4, n_deny6;
	__u32 n_rules;		/* 0: no rule, skip the stage */
	__u32 n_ttl;		/* list entries with an expiry: the daemon ages
				 * the lists only while some are (unused by BPF) */
	__u32 lpm_allow4, lpm_allow6;	/* of them in the LPM tries (upper */
	__u32 lpm_deny4, lpm_deny6;	/* bounds): 0, the trie is not read */
	/* The prefix lengths whose entries sit in the hash tier, per list and
	 * family (allow4, allow6, deny4, deny6), 0xff: unused. A lookup there
	 * costs the same for ten prefixes or a million; an LPM trie's grows
	 * with its depth (~5 ns per doubling here).
	 */
	__u8 tiers[4][XS_ACL_TIERS];
	/* The same for the rules' (class, source) entries: the prefix lengths
	 * (IPv4 mapped: 96 + n) held in xs_rules_h, longest first; the rest
	 * are in the xs_rules trie (lpm_rules of them).
	 */
	__u8 rule_tiers[XS_ACL_TIERS];
	__u32 lpm_rules;
	__u32 lim_gen;		/* & 1: the slot of xs_lim */
	__u32 lim_on;		/* 0: no limit, block or ceiling: skip them */
	__u32 acl_filt;		/* XS_ACL_FILT(): whose filter is kept */
};

/* xs_acl_bits: a list's filter, per family. Bit n (of word n >> 6, bit
 * n & 63) is set when some entry of the list, live or being written, may
 * hold an address of n's: for IPv4, n is the /24 (the address >> 8); for
 * IPv6, a hash of the /32 (xs_acl6_n()), a list with a prefix shorter than
 * /16 keeping no IPv6 filter. A clear bit: no entry can hold the address,
 * nothing is looked up. A superset, never less: bits are set before their
 * entries are written, cleared only when the list is applied anew.
 */
struct xs_acl_bits {
	__u64 w[XS_ACL_WORDS];
};

/* Keys of the allow and deny tries: the generation comes first, so one trie
 * holds the live generation and the one being built; prefixlen counts its
 * 32 bits too.
 */
struct xs_lpm4 {
	__u32 prefixlen;
	__u32 gen;
	__u32 addr;		/* network order */
};

struct xs_lpm6 {
	__u32 prefixlen;
	__u32 gen;
	__u32 addr[4];
};

/* Keys of the hash tier (xs_allow4h, ...): the prefix, host bits clear. */
struct xs_hkey4 {
	__u32 gen;
	__u32 plen;
	__u32 addr;		/* network order */
};

struct xs_hkey6 {
	__u32 gen;
	__u32 plen;
	__u32 addr[4];
};

/* An allow or deny entry. */
struct xs_acl {
	__u64 expires_ns;	/* CLOCK_MONOTONIC; 0: never */
	__u32 flags;		/* XS_ACL_*: unused by BPF */
	__u32 pad;
};

/* Hygiene settings, one per slot (xs_psel.hyg_gen & 1). */
struct xs_hygiene {
	__u32 flags;		/* XS_HYG_* */
	__u32 pad;
	__u64 frag_window_ns;	/* a passed first fragment opens its datagram
				 * for this long */
	__u64 refl_window_ns;	/* a request we sent lets replies in this long */
	__u64 icmp4[4];		/* bit per ICMP type: allowed */
	__u64 icmp6[4];		/* bit per ICMPv6 type: allowed */
	__u64 proto_drop[4];	/* bit per IP protocol: dropped */
	struct xs_portset refl;	/* UDP source ports of reflection attacks */
};

/* xs_refl: a request this host sent to a reflection port (tc egress). */
struct xs_refl_key {
	__u32 peer[4];		/* as struct xs_vkey */
	__u16 peer_port;	/* network order */
	__u16 local_port;	/* network order */
};

/* xs_frag: a datagram whose first fragment passed. */
struct xs_frag_key {
	__u32 src[4];		/* as struct xs_vkey */
	__u32 dst[4];
	__u32 id;		/* IPv4 id or IPv6 fragment identification */
	__u32 proto;
};

/* Rules, compiled (src/xdpshield/policy/rules.py): the protocol's slot and
 * the port (ICMP type, protocol number) give a class; (class, source) is
 * looked up in xs_rules; its candidates are checked in order.
 */
struct xs_rule_ports {
	__u16 cls[65536];	/* 0: no rule can match */
};

struct xs_rule_sport {
	__u32 mask[65536];	/* bit n: the source port is in sport set n */
};

struct xs_rule_key {
	__u32 prefixlen;	/* 32 + prefix length (IPv4 mapped: 96 + n) */
	__u16 gen;
	__u16 cls;
	__u32 addr[4];		/* as struct xs_vkey */
};

struct xs_rule_cand {
	__u16 id;		/* xs_rule_stats index */
	__u8 action;		/* XS_RULE_DROP, XS_RULE_PASS */
	__u8 sportset;		/* bit of xs_rule_sport's mask; XS_RULE_ANY */
	__u8 fmask, fval;	/* TCP flags: flags & fmask == fval */
	__u8 has_code;		/* 1: the ICMP code must be icmp_code */
	__u8 icmp_code;
};

struct xs_rule_val {
	__u32 n;		/* candidates used */
	__u32 plen;		/* the entry's prefix length (IPv4 mapped) */
	struct xs_rule_cand c[XS_RULE_CANDS];
};

/* Key of xs_rules_h: the entry's prefix, host bits clear. */
struct xs_rule_hkey {
	__u16 gen;
	__u16 cls;
	__u32 plen;
	__u32 addr[4];		/* as struct xs_vkey */
};

/* A token bucket, as GCRA keeps it: a packet costs @cost ns of the
 * bucket's time and passes while the bucket is at most @depth ns in debt
 * (depth = burst * cost: a full bucket holds burst packets).
 */
struct xs_rate {
	__u64 cost;		/* ns per packet; bps: ns per byte << 8; 0: off */
	__u64 depth;		/* ns */
};

/* [limits], one per slot (xs_psel.lim_gen & 1). */
struct xs_limits {
	__u32 flags;		/* XS_LIM_* */
	__u32 plen4;		/* source aggregation: IPv4 prefix length */
	__u32 plen6;		/* IPv6 */
	__u32 epoch;		/* bumped in both slots when a block is removed
				 * by hand: the drop caches forget it */
	struct xs_rate pps, bps, syn;
	__u64 block_after_ns;	/* sustained excess before a block; 0: never */
	__u64 block_ttl_ns;	/* a first block's time */
	__u64 block_max_ns;	/* repeat offences double it up to this */
	__u64 block_repeat_ns;	/* within this long after the last block */
	struct xs_rate ceil[XS_RULE_SLOTS];	/* per protocol slot and CPU */
};

/* xs_dcache: what the last drop of a source by its block or its pps
 * limit says of its next packets, per CPU (limits.h). Valid while the
 * limits' generation and epoch are those it was made under, and until
 * @until.
 */
struct xs_dc {
	__u32 addr[4];		/* the source, whole, as struct xs_vkey */
	__u32 gen;		/* xs_psel.lim_gen */
	__u32 epoch;		/* xs_limits.epoch */
	__u64 until;		/* xs_now() ns */
	__u32 reason;		/* XS_R_BLOCKED or XS_R_LIMIT_PPS; 0: empty */
	__u32 pending;		/* drops by a block not yet in its count */
};

/* Key of xs_src and xs_blocks: a source cut to the limits' prefix. */
struct xs_src_key {
	__u32 addr[4];		/* as struct xs_vkey, host bits clear */
	__u16 rule;		/* 0: the source; id + 1: a limit rule's bucket */
	__u8 plen;		/* 128-bit (IPv4 mapped: 96 + n) */
	__u8 pad;
};

/* A source's buckets (theoretical arrival times, ns) and its excess. */
struct xs_src {
	__u64 tat_pps;
	__u64 tat_bps;
	__u64 tat_syn;
	__u64 over_since;	/* start of the current excess; 0: none */
	__u64 over_last;	/* the last packet over a limit */
};

struct xs_block {
	__u64 expires_ns;	/* CLOCK_MONOTONIC */
	__u64 ttl_ns;		/* this block's time (doubled on a repeat) */
	__u64 since_ns;		/* when it began */
	__u64 drops;		/* packets dropped for it (racy: a count) */
	__u32 count;		/* blocks in a row (repeat offences + 1) */
	__u32 flags;		/* XS_BLOCK_* */
};

/* Key of xs_blocks_lpm: blocks added by hand at any prefix length. */
struct xs_block_lpm {
	__u32 prefixlen;	/* 128-bit (IPv4 mapped: 96 + n) */
	__u32 addr[4];
};

/* xs_local values: what a local address is. */
enum xs_local_kind {
	XS_LOCAL_UNICAST = 1,	/* an address of this namespace */
	XS_LOCAL_BROADCAST = 2,	/* a local subnet's broadcast address */
};

/* What XDP tells tc about a handshake ACK whose cookie checked out, in the
 * 16 bytes of XDP metadata in front of the frame (skb->data_meta in tc).
 * Only what the cookie and the ACK's timestamps decode to: tc re-parses the
 * headers itself, because the stack may have moved them (VLAN untagging).
 */
struct xs_meta {
	__u32 tsval;		/* the client's TSval, host order */
	__u32 tsecr;		/* the ACK's TSecr: our SYN-ACK's TSval */
	__u16 mss;		/* from the cookie's MSS index */
	__u8 opts;		/* XS_META_* */
	__u8 snd_wscale;	/* the client's window scale */
	__u32 magic;		/* XS_META_MAGIC */
};

/* Drop samples (sample.h). One per-CPU bucket per reason, written whole by
 * userspace (samples.py set_rate): a sample costs @cost_ns of the bucket's
 * time and is taken while the bucket is at most @depth_ns in debt (GCRA, as
 * struct xs_rate). 0 cost: this reason is not sampled. Once the bucket is
 * empty, the next XS_SAMPLE_SKIP packets of the reason on this CPU do not
 * even read the clock (a flood pays a decrement, not a helper call); the
 * tokens keep accruing meanwhile, so this delays samples, never loses them.
 */
struct xs_sample_bkt {
	__u64 cost_ns;		/* ns per sample on this CPU; 0: off */
	__u64 depth_ns;		/* burst * cost_ns */
	__u64 tat;		/* theoretical arrival time, ns (xs_now) */
	__u32 rate;		/* the cap asked for, per second (for status) */
	__u32 skip;		/* packets left to pass by unsampled, unclocked */
};

/* Per CPU and reason: samples sent, and samples lost to a full ring. */
struct xs_sample_stat {
	__u64 sent;
	__u64 full;
};

/* One ring record: the head of a dropped or answered frame and why. */
struct xs_sample {
	__u64 ts_ns;		/* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 ifindex;		/* the device the frame came in on */
	__u32 len;		/* the frame's whole length */
	__u16 reason;		/* enum xs_reason */
	__u16 rule;		/* rule id + 1 (rule-drop, rule-limit); 0: none */
	__u8 action;		/* XDP action, or tc's (tc set) */
	__u8 tc;		/* 1: from the tc program */
	__u16 caplen;		/* bytes of data[] that are the frame's */
	__u8 data[XS_SAMPLE_BYTES];
};

/* The numbers Python mirrors, as one enum that the object's BTF keeps (see
 * xs_abi_btf_anchor): the #defines stay the ones the code uses, and a test
 * compares each member with its Python twin, named beside it.
 */
enum xs_abi {
	/* datapath.SRV_*: xs_server_opts bits */
	XS_ABI_SRV_TS = XS_SRV_TS,
	XS_ABI_SRV_SACK = XS_SRV_SACK,
	XS_ABI_SRV_WS = XS_SRV_WS,
	XS_ABI_SRV_ECN = XS_SRV_ECN,
	/* datapath.META_*: struct xs_meta's opts bits and magic */
	XS_ABI_META_TS = XS_META_TS,
	XS_ABI_META_SACK = XS_META_SACK,
	XS_ABI_META_WS = XS_META_WS,
	XS_ABI_META_ECN = XS_META_ECN,
	XS_ABI_META_MAGIC = XS_META_MAGIC,
	/* datapath.SEEN_BITS, datapath.WIN_NS (1 << XS_WIN_SHIFT) */
	XS_ABI_SEEN_BITS = XS_SEEN_BITS,
	XS_ABI_WIN_SHIFT = XS_WIN_SHIFT,
	/* datapath.OFFERED_BITS, TICK_SET, KERN_SYN_BITS, KEY_RECORDED */
	XS_ABI_OFFERED_BITS = XS_OFFERED_BITS,
	XS_ABI_TICK_SET = XS_TICK_SET,
	XS_ABI_KERN_SYN_BITS = XS_KERN_SYN_BITS,
	XS_ABI_KEY_RECORDED = XS_KEY_RECORDED,
	/* datapath.LOCAL_*: xs_local values */
	XS_ABI_LOCAL_UNICAST = XS_LOCAL_UNICAST,
	XS_ABI_LOCAL_BROADCAST = XS_LOCAL_BROADCAST,
	/* cookie.py: the cookie layout and its clock */
	XS_ABI_COOKIE_MSS_MASK = XS_COOKIE_MSS_MASK,
	XS_ABI_COOKIE_SLOT_SHIFT = XS_COOKIE_SLOT_SHIFT,
	XS_ABI_COOKIE_TICK_SHIFT = XS_COOKIE_TICK_SHIFT,
	XS_ABI_COOKIE_HASH_MASK = XS_COOKIE_HASH_MASK,
	XS_ABI_COOKIE_TICK_NS_SHIFT = XS_COOKIE_TICK_NS_SHIFT,
	XS_ABI_COOKIE_AHEAD_NS = XS_COOKIE_AHEAD_NS,
	/* cookie.py: the TSval low bits and clock */
	XS_ABI_TS_BITS = XS_TS_BITS,
	XS_ABI_TS_WSCALE_MASK = XS_TS_WSCALE_MASK,
	XS_ABI_TS_SACK = XS_TS_SACK,
	XS_ABI_TS_ECN = XS_TS_ECN,
	XS_ABI_MAX_WSCALE = XS_MAX_WSCALE,
	XS_ABI_TS_SHIFT = XS_TS_SHIFT,
	/* policy: hygiene flags, rule layout */
	XS_ABI_HYG_TCP_FLAGS = XS_HYG_TCP_FLAGS,
	XS_ABI_HYG_REFLECTION = XS_HYG_REFLECTION,
	XS_ABI_HYG_FRAGMENTS = XS_HYG_FRAGMENTS,
	XS_ABI_HYG_ICMP = XS_HYG_ICMP,
	XS_ABI_RULE_CANDS = XS_RULE_CANDS,
	XS_ABI_RULE_ANY = XS_RULE_ANY,
	XS_ABI_RULE_DROP = XS_RULE_DROP,
	XS_ABI_RULE_PASS = XS_RULE_PASS,
	XS_ABI_RULE_LIMIT = XS_RULE_LIMIT,
	/* limits */
	XS_ABI_LIM_BLOCKS = XS_LIM_BLOCKS,
	XS_ABI_LIM_BLOCKS_LPM = XS_LIM_BLOCKS_LPM,
	XS_ABI_LIM_SOURCES = XS_LIM_SOURCES,
	XS_ABI_BLOCK_MANUAL = XS_BLOCK_MANUAL,
	XS_ABI_ADMIT_SLOTS = XS_ADMIT_SLOTS,
	XS_ABI_ADMIT_SHIFT = XS_ADMIT_SHIFT,
	XS_ABI_ADMIT_WIN = XS_ADMIT_WIN,
	XS_ABI_ADMIT_REFRESH = XS_ADMIT_REFRESH,
	XS_ABI_RULE_SLOTS = XS_RULE_SLOTS,
	XS_ABI_RULES_MAX = XS_RULES_MAX,
	XS_ABI_ACL_LIVE = XS_ACL_LIVE,
	XS_ABI_ACL_TIERS = XS_ACL_TIERS,
	/* tests/datapath/model.py: what a reply carries */
	XS_ABI_REPLY_TTL = XS_REPLY_TTL,
	XS_ABI_SYNACK_WINDOW = XS_SYNACK_WINDOW,
	/* samples.py: what a sample carries */
	XS_ABI_SAMPLE_BYTES = XS_SAMPLE_BYTES,
	XS_ABI_V_RULE_SHIFT = XS_V_RULE_SHIFT,
	XS_ABI_SAMPLE_SKIP = XS_SAMPLE_SKIP,
};

#endif
