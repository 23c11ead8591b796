/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the shield, and the load-time knobs. Python's view of these
 * (names, key and value layouts) is src/xdpshield/datapath.py.
 */
#ifndef XDPSHIELD_MAPS_H
#define XDPSHIELD_MAPS_H

#include "consts.h"
#include "shared.h"

/* Verdict counters by reason: per CPU, so the hot path never needs an atomic. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XS_R__MAX);
	__type(key, __u32);
	__type(value, struct xs_counter);
} xs_stats SEC(".maps");

/* Protected TCP ports: one bitmap in a one-element array. An array lookup is
 * inlined by the verifier (a hash lookup is a call and a hash per segment),
 * and one 8 KiB value lets userspace read or replace the whole set in one
 * syscall.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_portset);
} xs_ports SEC(".maps");

/* Cookie keys: slot epoch & 1. Written only by userspace (rotate_keys). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XS_KEY_SLOTS);
	__type(key, __u32);
	__type(value, struct xs_key);
} xs_keys SEC(".maps");

/* Sources that completed a cookie handshake (reset mode). LRU so that a
 * flood of valid handshakes from many real hosts evicts the idle ones
 * instead of failing inserts.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XS_VERIFIED_MAX);
	__type(key, struct xs_vkey);
	__type(value, struct xs_verified);
} xs_verified SEC(".maps");

/* Transparent mode: one bit per hash of a source address, set once a
 * segment of that source passes to a socket here; only the daemon clears
 * bits, cutting the filter back to the peers of live sockets. Only such
 * a source can hit a TIME_WAIT with its SYN, so only its SYNs pay for a
 * socket lookup; a spoofed flood's sources almost never have their bit set.
 * An array lookup is inlined.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XS_SEEN_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} xs_seen SEC(".maps");

/* Cookies offered: per hash of a source address and ports, the low 7 bits
 * of the cookie tick in which this shield last sent them a cookie, and a
 * top bit set (8 to a word). A forged ACK whose source and ports got none
 * in the last two ticks is not ours, with no SipHash: a pure ACK flood
 * meets an empty filter. Entry XS_OFFERED_WORDS holds the tick from
 * which the filter holds every cookie that can still be valid (0: not
 * yet; userspace writes it at load, past every cookie an earlier object
 * minted); only keys marked XS_KEY_RECORDED (never a fleet's) are checked
 * against it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XS_OFFERED_WORDS + 1);
	__type(key, __u32);
	__type(value, __u64);
} xs_offered SEC(".maps");

/* SYNs passed to the kernel to answer (no flood on): per hash of a source
 * address and ports, the tick byte (as xs_offered's) of the last. Under a
 * flood an ACK that is neither a socket's nor ours goes to the kernel only
 * for such a connection: the kernel may have answered with a cookie of its
 * own.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XS_KERN_SYN_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} xs_kern_syn SEC(".maps");

/* Ports something listens on in this namespace (transparent mode, or a
 * local destination): userspace marks them at load, XDP marks a port when a
 * socket lookup finds its listener, the daemon cuts back to what listens.
 * A SYN to a port without its bit pays one lookup; none found: RST.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_portset);
} xs_listen SEC(".maps");

/* This namespace's addresses (enum xs_local_kind), IPv4 as ::ffff:a.b.c.d:
 * written by userspace at load and kept current by the daemon.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XS_LOCAL_MAX);
	__type(key, struct xs_vkey);
	__type(value, __u32);
} xs_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_ifinfo);
} xs_ifinfo SEC(".maps");

/* Flood state and the RST cap, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_cpu_state);
} xs_cpu SEC(".maps");

/* xs_now()'s offset, CLOCK_MONOTONIC less jiffies * xs_jiffy_ns: the
 * largest any CPU has read (clock.h), one for all CPUs, so that they keep
 * one clock. Stored with its sign bit flipped (signed order becomes the
 * unsigned one; 0: nothing read yet).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} xs_jclock SEC(".maps");

/* Transparent mode, tc: the tuple this CPU last handed to the kernel, and
 * when (handoff.h, xs_tc_same_tuple()).
 */
struct xs_tc_last {
	struct bpf_sock_tuple t;
	__u64 ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_tc_last);
} xs_tc_last SEC(".maps");

/* Policy (acl.h, hygiene.h, rules.h). The selector: which generation of
 * each table is live (struct xs_psel).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_psel);
} xs_psel SEC(".maps");

/* Allow and deny lists: LPM tries keyed by (generation, prefix). LPM tries
 * allocate per entry (BPF_F_NO_PREALLOC is required): memory follows what
 * is stored, up to max_entries.
 */
#define XS_LPM_MAP(name, keytype)					\
	struct {							\
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);			\
		__uint(max_entries, XS_LIST_MAX);			\
		__uint(map_flags, BPF_F_NO_PREALLOC);			\
		__type(key, keytype);					\
		__type(value, struct xs_acl);				\
	} name SEC(".maps")

XS_LPM_MAP(xs_allow4, struct xs_lpm4);
XS_LPM_MAP(xs_allow6, struct xs_lpm6);
XS_LPM_MAP(xs_deny4, struct xs_lpm4);
XS_LPM_MAP(xs_deny6, struct xs_lpm6);

/* The hash tier of the same lists (struct xs_psel.tiers): one exact lookup
 * per prefix length held there. Not preallocated: memory follows what is
 * stored.
 */
#define XS_HASH_MAP(name, keytype)					\
	struct {							\
		__uint(type, BPF_MAP_TYPE_HASH);			\
		__uint(max_entries, XS_LIST_MAX);			\
		__uint(map_flags, BPF_F_NO_PREALLOC);			\
		__type(key, keytype);					\
		__type(value, struct xs_acl);				\
	} name SEC(".maps")

XS_HASH_MAP(xs_allow4h, struct xs_hkey4);
XS_HASH_MAP(xs_allow6h, struct xs_hkey6);
XS_HASH_MAP(xs_deny4h, struct xs_hkey4);
XS_HASH_MAP(xs_deny6h, struct xs_hkey6);

/* The lists' filters (struct xs_acl_bits), at XS_ACL_SLOT(which, v6). One
 * 2 MiB value each: an array lookup is inlined, the word read is one load,
 * and Python writes a filter in one syscall.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct xs_acl_bits);
} xs_acl_bits SEC(".maps");

/* The deny list's sure bits: a bit per IPv4 /24 that a permanent entry of
 * the live generation holds whole (a /24 or shorter). Set, the source is
 * denied without its tier lookup. Always a subset (shield/policy.py): an
 * apply writes the intersection of both generations' before its switch, a
 * live add clears the bits of what it adds with an expiry first and sets
 * its permanent entries' after, a delete clears before.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_acl_bits);
} xs_acl_sure SEC(".maps");

/* Hygiene settings, two slots (one live, one being written). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct xs_hygiene);
} xs_hyg SEC(".maps");

/* Requests this host sent to reflection ports (tc egress writes, XDP
 * reads). LRU: a busy host's oldest requests go first; a flood cannot add
 * to it (only the host's own egress does).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XS_REFL_MAX);
	__type(key, struct xs_refl_key);
	__type(value, __u64);	/* expires, ns */
} xs_refl SEC(".maps");

/* In front of xs_refl and xs_frag: a slot per hash of the peer (of the
 * fragment's source and id) holds the latest expiry, in XS_HINT_SHIFT
 * ticks, of any entry that hashes there. A slot long past is an entry that
 * cannot exist: a flood's random sources are dropped on one array read,
 * without the hash lookup. Made and emptied with the tables (both are
 * policy maps), so a hint is never younger than its entries.
 */
#define XS_HINT_MAP(name)						\
	struct {							\
		__uint(type, BPF_MAP_TYPE_ARRAY);			\
		__uint(max_entries, XS_HINT_SLOTS);			\
		__type(key, __u32);					\
		__type(value, __u32);					\
	} name SEC(".maps")

XS_HINT_MAP(xs_refl_hint);

/* Datagrams whose first fragment passed: their other fragments may pass.
 * LRU: a flood of first fragments evicts the oldest (and those fragments
 * were passed to the kernel, whose own reassembly limits apply).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XS_FRAG_MAX);
	__type(key, struct xs_frag_key);
	__type(value, __u64);	/* expires, ns */
} xs_frag SEC(".maps");

XS_HINT_MAP(xs_frag_hint);

/* Rules: port classes, slot (rules_gen & 1) * XS_RULE_SLOTS + protocol
 * slot; an array lookup is inlined, and one 128 KiB value is written in one
 * syscall.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * XS_RULE_SLOTS);
	__type(key, __u32);
	__type(value, struct xs_rule_ports);
} xs_rule_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct xs_rule_sport);
} xs_rule_sport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XS_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct xs_rule_key);
	__type(value, struct xs_rule_val);
} xs_rules SEC(".maps");

/* The hash tier of the same entries (struct xs_psel.rule_tiers). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XS_RULE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct xs_rule_hkey);
	__type(value, struct xs_rule_val);
} xs_rules_h SEC(".maps");

/* Packets and bytes per rule id (Python keeps the names). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XS_RULES_MAX);
	__type(key, __u32);
	__type(value, struct xs_counter);
} xs_rule_stats SEC(".maps");

/* Limits (limits.h): the settings, two slots (xs_psel.lim_gen & 1). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct xs_limits);
} xs_lim SEC(".maps");

/* A limit rule's rate, by rule id (written before its generation is live). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XS_RULES_MAX);
	__type(key, __u32);
	__type(value, struct xs_rate);
} xs_rule_rate SEC(".maps");

/* Sources' buckets. LRU: the idle go first; only sources the admission
 * filter let in are here, so a spoofed flood does not churn it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XS_SRC_MAX);
	__type(key, struct xs_src_key);
	__type(value, struct xs_src);
} xs_src SEC(".maps");

/* The admission filter: slot hash(source) holds the last source seen
 * there (a 32-bit fingerprint) and when (ns >> XS_ADMIT_SHIFT).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XS_ADMIT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} xs_admit SEC(".maps");

/* The drop cache (struct xs_dc), per CPU: a slot per hash of the source.
 * A one-source flood over its limit, or blocked, is dropped on one
 * inlined read instead of hash lookups.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1U << XS_DC_BITS);
	__type(key, __u32);
	__type(value, struct xs_dc);
} xs_dcache SEC(".maps");

/* Blocked sources at the limits' prefix (excess, or by hand). A plain
 * hash: a block is never evicted; the daemon removes it once expired and
 * past its repeat window. Inserts fail when full (never an eviction).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XS_BLOCK_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct xs_src_key);
	__type(value, struct xs_block);
} xs_blocks SEC(".maps");

/* Blocks by hand at other prefix lengths. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, XS_BLOCK_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct xs_block_lpm);
	__type(value, struct xs_block);
} xs_blocks_lpm SEC(".maps");

/* The global ceilings' buckets: per protocol slot, per CPU (no atomics). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XS_RULE_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} xs_ceil SEC(".maps");

/* Drop samples (sample.h): the ring userspace reads, each reason's per-CPU
 * bucket (its cap), and per-CPU counts of samples sent and lost.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, XS_SAMPLE_RING);
} xs_samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XS_R__MAX);
	__type(key, __u32);
	__type(value, struct xs_sample_bkt);
} xs_sample_bkt SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XS_R__MAX);
	__type(key, __u32);
	__type(value, struct xs_sample_stat);
} xs_sample_stat SEC(".maps");

/* CLOCK_TAI - CLOCK_MONOTONIC (ns), written by userspace at load and by
 * the daemon: the cookie's clock is the wall clock (cookie.h), the same on
 * every machine NTP keeps, so a fleet's nodes agree on a cookie's tick.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} xs_clock SEC(".maps");

/* Tests only: added to xs_fixed_now_ns (clock.h), so a test moves time
 * without a reload. Never read when the clock is the kernel's.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} xs_test_clock SEC(".maps");

/* Load-time knobs (const volatile: the verifier sees the values and prunes
 * what they switch off). datapath.constants() fills them.
 */
const volatile __u64 xs_verified_ttl_ns = 300ULL * 1000000000ULL;
const volatile __u32 xs_wscale = 7;	/* window scale our SYN-ACK offers */
/* The MSS our SYN-ACK offers and the top of the cookie's MSS classes. 0
 * (the default): the interface's MTU - 40 (IPv6: - 60), read per packet, so
 * an MTU change is followed at once.
 */
const volatile __u32 xs_mss4 = 0;
const volatile __u32 xs_mss6 = 0;
/* Transparent mode answers SYNs with cookies only while a SYN flood is on:
 * from xs_flood_on handshake packets (SYNs, stray ACKs) in a window of one
 * CPU, until xs_flood_off_wins windows in a row see fewer than
 * xs_flood_off. 0: always (every SYN gets a cookie).
 */
const volatile __u32 xs_flood_on = 0;
const volatile __u32 xs_flood_off = 0;
const volatile __u32 xs_flood_off_wins = 8;
/* RSTs the shield may send per CPU and window (reset mode's answer to an
 * unverified segment, a SYN to a closed port); 0: none.
 */
const volatile __u32 xs_rst_per_win = 16;
/* 1 once userspace has filled xs_local: destinations must then be local
 * (transparent mode) and local broadcast addresses are martians.
 */
const volatile __u32 xs_local_known = 0;
/* 1: answer SYNs only for ports something listens on (see xs_listen);
 * applies where the destination is the host's own (transparent mode, or a
 * local address).
 */
const volatile __u32 xs_listener_check = 1;
/* 1: verify the IPv4 header and TCP checksums of a SYN before answering. */
const volatile __u32 xs_verify_csum = 1;
/* The TCP options the protected stack accepts (XS_SRV_*, from its
 * net.ipv4.tcp_{timestamps,sack,window_scaling,ecn}): the SYN-ACK offers no
 * other, as the kernel's own would not.
 */
const volatile __u32 xs_server_opts = XS_SRV_TS | XS_SRV_SACK | XS_SRV_WS |
				      XS_SRV_ECN;
/* Transparent handshake: a valid handshake ACK passes to the kernel (with
 * its decoded cookie as XDP metadata, for the tc program) instead of being
 * answered with an RST; the verified table is not used.
 */
const volatile __u32 xs_transparent = 0;
/* Benchmarks only: a verified source's handshake ACK goes through the
 * unverified path again (cookie check, insert, RST) on every run.
 */
const volatile __u32 xs_bench_reverify = 0;
/* Tests only: behave as on a driver without XDP metadata support. */
const volatile __u32 xs_force_nometa = 0;
/* Set by XDP when the driver gave no room for metadata: from then on tc
 * re-checks cookies itself. A plain global: one writer value, no race that
 * matters (it only ever goes from 0 to 1).
 */
__u32 xs_nometa_seen = 0;
/* Tests only: a fixed clock (ns), so cookies' TSval and expiry are
 * reproducible. 0 (always, in production) reads the kernel's clock.
 */
const volatile __u64 xs_fixed_now_ns = 0;
/* ns per kernel tick (1e9 / CONFIG_HZ), for xs_now() to count in jiffies;
 * 0 (not known) reads the coarse clock through its helper.
 */
const volatile __u64 xs_jiffy_ns = 0;
/* The admission filter's hash key (random per load: no one can aim at a
 * legit source's slot).
 */
const volatile __u64 xs_admit_seed = 0;

#endif
