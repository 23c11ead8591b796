/* SPDX-License-Identifier: GPL-2.0 */
/* Per-source rate limits, automatic blocks and global ceilings.
 *
 * A source is its address cut to the limits' prefix (/32 and /64 unless
 * set). Its buckets are GCRA: one theoretical arrival time per bucket, no
 * division, the same verdicts as a token bucket of the same rate and depth
 * (tests/datapath/test_limits.py checks them against one). A packet over a
 * limit is dropped and costs the bucket nothing.
 *
 * Spoofed floods: a source gets state only when it sends a second packet
 * within ~1 s of its first (the admission filter, xs_admit): one packet
 * from each of millions of random sources never reaches xs_src (not even a
 * lookup), so the state of a real source is never evicted for them. A source without state
 * is not limited (it has sent one packet); the global ceilings still hold.
 */
#ifndef XDPSHIELD_LIMITS_H
#define XDPSHIELD_LIMITS_H

#include "maps.h"
#include "clock.h"
#include "addr.h"
#include "verdict.h"

/* What the limits stage needs of a packet. */
struct xs_lim_q {
	__u64 now;		/* xs_now(), read once (a helper call) */
	__u32 src[4];		/* as struct xs_vkey */
	__u32 gen;		/* xs_psel.lim_gen (for the drop cache) */
	__u32 len;		/* frame bytes */
	__u16 rule;		/* 0, or the matching limit rule's id + 1 */
	__u8 v6;
	__u8 syn;		/* a SYN to a protected port */
	__u8 slot;		/* protocol slot (XS_RULE_SLOTS) */
	__u8 pad[3];
};

/* The bucket's arrival time after paying @cost at @now, or 0: over. */
static __always_inline __u64 xs_gcra(__u64 tat, __u64 now, __u64 cost,
				     __u64 depth)
{
	if (tat < now)
		tat = now;
	tat += cost;
	return tat - now <= depth ? tat : 0;
}

static __always_inline void xs_src_key_of(struct xs_src_key *k,
					  const struct xs_lim_q *q,
					  const struct xs_limits *lim)
{
	__u32 plen = q->v6 ? lim->plen6 : 96 + lim->plen4;

	xs_mask128(k->addr, q->src, plen);
	k->plen = plen;
}

/* Whether the source (cut to the prefix) sent within XS_ADMIT_WIN before:
 * only then is it looked up in (or let into) xs_src. Otherwise it takes
 * the filter's slot. A source that keeps sending keeps its slot fresh
 * (rewritten only every XS_ADMIT_REFRESH ticks: one write per ~67 ms).
 *
 * First, before any xs_src lookup: a spoofed packet costs one read and
 * one write of this small array, never a miss in the big LRU. A source
 * with state whose slot another took loses its limit for one packet.
 */
static __always_inline int xs_admitted(const struct xs_src_key *k, __u64 now)
{
	__u64 h, *slot;
	__u32 idx, fp, t, age;

	h = ((__u64)k->addr[0] << 32 | k->addr[1]) ^ xs_admit_seed;
	h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
	h ^= (__u64)k->addr[2] << 32 | k->addr[3];
	h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	idx = h & (XS_ADMIT_SLOTS - 1);
	fp = (h >> 32) | 1;	/* never 0: an empty slot matches no one */
	t = now >> XS_ADMIT_SHIFT;
	slot = bpf_map_lookup_elem(&xs_admit, &idx);
	if (!slot)
		return 0;
	age = t - (__u32)*slot;
	if ((__u32)(*slot >> 32) == fp && age <= XS_ADMIT_WIN) {
		if (age > XS_ADMIT_REFRESH)
			*slot = (__u64)fp << 32 | t;
		return 1;
	}
	*slot = (__u64)fp << 32 | t;
	return 0;
}

/* This CPU's drop-cache slot for the source of @q. */
static __always_inline struct xs_dc *xs_dc_of(const struct xs_lim_q *q)
{
	__u32 idx = ((q->src[0] ^ q->src[1] ^ q->src[2] ^ q->src[3]) *
		     0x9e3779b1U) >> (32 - XS_DC_BITS);

	return bpf_map_lookup_elem(&xs_dcache, &idx);
}

/* 0 when the cache entry is the source's, for @reason; else not 0. */
static __always_inline __u64 xs_dc_diff(const struct xs_dc *dc,
					const struct xs_lim_q *q, __u32 reason)
{
	return (dc->reason ^ reason) | (dc->addr[0] ^ q->src[0]) |
	       (dc->addr[1] ^ q->src[1]) | (dc->addr[2] ^ q->src[2]) |
	       (dc->addr[3] ^ q->src[3]);
}

/* All ones when @d is 0, else 0 (branch-free: see xs_dc_hit()). */
static __always_inline __u64 xs_zero_mask(__u64 d)
{
	return ((d | -d) >> 63) - 1;
}

/* 1 when the cache says the source's packet is dropped for @reason: the
 * entry is the source's, made under these limits, until later than now.
 * Without a branch (BPF has no conditional move, so each compare of a
 * chain is one): the verifier then follows two paths on from here, not
 * one per way out of the chain (+100 k instructions verified, measured).
 */
static __always_inline __u64 xs_dc_hit(const struct xs_dc *dc,
				       const struct xs_lim_q *q,
				       const struct xs_limits *lim,
				       __u32 reason)
{
	__u64 d = xs_dc_diff(dc, q, reason) | (dc->gen ^ q->gen) |
		  (dc->epoch ^ lim->epoch);

	/* until > now: the sign of now - until (both ns, far below 2^63) */
	return xs_zero_mask(d) & ((q->now - dc->until) >> 63);
}

static __always_inline void xs_dc_fill(struct xs_dc *dc,
				       const struct xs_lim_q *q,
				       const struct xs_limits *lim,
				       __u32 reason, __u64 until)
{
	if (until > q->now + XS_DC_TTL_NS)
		until = q->now + XS_DC_TTL_NS;
	__builtin_memcpy(dc->addr, q->src, 16);
	dc->gen = q->gen;
	dc->epoch = lim->epoch;
	dc->until = until;
	dc->reason = reason;
	dc->pending = 0;
}

/* The state at @k (the filter let its source in), made if missing. */
static __always_inline struct xs_src *xs_src_get(const struct xs_src_key *k)
{
	struct xs_src *st = bpf_map_lookup_elem(&xs_src, k);
	struct xs_src zero = {};

	if (st)
		return st;
	bpf_map_update_elem(&xs_src, k, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&xs_src, k);
}

/* Whether the source is blocked.
 *
 * Inlined, as xs_limit() is: on this machine's CPUs every return goes
 * through the kernel's "safe RET" thunk (SRSO mitigation), so a call costs
 * ~10 ns whatever it does. They are verified as part of xs_stages(), which
 * is checked once.
 */
static __always_inline int xs_blocked(const struct xs_lim_q *q,
				      const struct xs_limits *lim,
				      struct xs_dc *dc)
{
	struct xs_block_lpm lk = {};
	struct xs_src_key k = {};
	struct xs_block *b = NULL;
	__u64 now;

	if (!(lim->flags & (XS_LIM_BLOCKS | XS_LIM_BLOCKS_LPM)))
		return 0;
	/* Blocked, as this CPU found a moment ago: counted at the next
	 * lookup (within XS_DC_TTL_NS), not here.
	 */
	if (xs_dc_hit(dc, q, lim, XS_R_BLOCKED)) {
		dc->pending++;
		return 1;
	}
	now = q->now;
	if (lim->flags & XS_LIM_BLOCKS) {
		xs_src_key_of(&k, q, lim);
		b = bpf_map_lookup_elem(&xs_blocks, &k);
	}
	if ((!b || b->expires_ns <= now) && (lim->flags & XS_LIM_BLOCKS_LPM)) {
		lk.prefixlen = 128;
		__builtin_memcpy(lk.addr, q->src, 16);
		b = bpf_map_lookup_elem(&xs_blocks_lpm, &lk);
	}
	if (!b || b->expires_ns <= now)
		return 0;
	/* This packet, and those the cache answered for this source. */
	b->drops += 1 + (dc->pending & xs_zero_mask(xs_dc_diff(dc, q,
							     XS_R_BLOCKED)));
	/* Either table's block covers the whole source address. */
	xs_dc_fill(dc, q, lim, XS_R_BLOCKED, b->expires_ns);
	return 1;
}

/* Block the source at @k: for the limits' block time, or, when its last
 * block ended within the repeat window, for twice that block's time (up
 * to the maximum).
 */
static __always_inline void xs_block(const struct xs_limits *lim,
				     const struct xs_src_key *k, __u64 now)
{
	struct xs_block nb = {}, *b;
	__u64 ttl = lim->block_ttl_ns;

	b = bpf_map_lookup_elem(&xs_blocks, k);
	if (b) {
		if (b->expires_ns > now)
			return;	/* blocked already (another CPU, just now) */
		if (now - b->expires_ns <= lim->block_repeat_ns &&
		    !(b->flags & XS_BLOCK_MANUAL)) {
			ttl = b->ttl_ns * 2;
			nb.count = b->count;
		}
	}
	if (ttl > lim->block_max_ns)
		ttl = lim->block_max_ns;
	nb.expires_ns = now + ttl;
	nb.ttl_ns = ttl;
	nb.since_ns = now;
	nb.count += 1;
	bpf_map_update_elem(&xs_blocks, k, &nb, BPF_ANY);
}

/* The source's buckets, then the protocol's ceiling. Returns 0 (pass on)
 * or XS_V(XDP_DROP, reason).
 */
static __always_inline __u32 xs_limit(const struct xs_lim_q *q,
				      const struct xs_limits *lim,
				      struct xs_dc *dc)
{
	__u64 tat_pps = 0, tat_bps = 0, tat_syn = 0, tat_rule = 0;
	const struct xs_rate *rr;
	struct xs_src *st, *rs = NULL;
	struct xs_src_key k = {};
	__u32 slot, reason = 0;
	__u64 now, cost, depth, *ceil;

	now = q->now;
	if (!(lim->flags & XS_LIM_SOURCES) && !q->rule)
		goto ceiling;	/* ceilings only: no source's state to keep */
	/* Over its pps limit, as this CPU found a moment ago (only where
	 * nothing else is decided by the drop: no limit rule, no excess to
	 * time for a block).
	 */
	if (!q->rule && !lim->block_after_ns &&
	    xs_dc_hit(dc, q, lim, XS_R_LIMIT_PPS))
		return XS_V(XDP_DROP, XS_R_LIMIT_PPS);
	xs_src_key_of(&k, q, lim);
	st = xs_admitted(&k, now) ? xs_src_get(&k) : NULL;
	if (!st)
		goto ceiling;
	/* Every bucket is checked before any is charged: a dropped packet
	 * costs none of them.
	 */
	if (q->rule) {
		slot = q->rule - 1;
		rr = bpf_map_lookup_elem(&xs_rule_rate, &slot);
		k.rule = q->rule;
		rs = rr && rr->cost ? xs_src_get(&k) : NULL;
		if (rs) {
			tat_rule = xs_gcra(rs->tat_pps, now, rr->cost, rr->depth);
			if (!tat_rule)
				reason = XS_R_RULE_LIMIT;
		}
		k.rule = 0;
	}
	if (!reason && lim->pps.cost) {
		tat_pps = xs_gcra(st->tat_pps, now, lim->pps.cost, lim->pps.depth);
		/* Dropped until the bucket has room (a dropped packet costs
		 * it nothing, and other CPUs only move its time later).
		 */
		if (!tat_pps) {
			reason = XS_R_LIMIT_PPS;
			if (!q->rule && !lim->block_after_ns)
				xs_dc_fill(dc, q, lim, reason, st->tat_pps +
					   lim->pps.cost - lim->pps.depth);
		}
	}
	if (!reason && lim->bps.cost) {
		tat_bps = xs_gcra(st->tat_bps, now,
				  ((__u64)q->len * lim->bps.cost) >> 8,
				  lim->bps.depth);
		if (!tat_bps)
			reason = XS_R_LIMIT_BPS;
	}
	if (!reason && q->syn && lim->syn.cost) {
		tat_syn = xs_gcra(st->tat_syn, now, lim->syn.cost, lim->syn.depth);
		if (!tat_syn)
			reason = XS_R_LIMIT_SYN;
	}
	if (reason) {
		if (lim->block_after_ns) {
			/* Signed: a time another CPU wrote may lie in this
			 * one's future (it read the clock just after the
			 * offset they share grew by up to a tick, clock.h).
			 */
			if (!st->over_since ||
			    (__s64)(now - st->over_last) >
				    (__s64)XS_EXCESS_GAP_NS)
				st->over_since = now;
			st->over_last = now;
			if ((__s64)(now - st->over_since) >=
			    (__s64)lim->block_after_ns) {
				xs_block(lim, &k, now);
				st->over_since = 0;
			}
		}
		/* The limit rule's id goes to the drop's sample. */
		return XS_V_RULE(XS_V(XDP_DROP, reason),
				 reason == XS_R_RULE_LIMIT ? q->rule : 0);
	}
	if (tat_rule && rs)
		rs->tat_pps = tat_rule;
	if (tat_pps)
		st->tat_pps = tat_pps;
	if (tat_bps)
		st->tat_bps = tat_bps;
	if (tat_syn)
		st->tat_syn = tat_syn;
ceiling:
	slot = q->slot;
	if (slot >= XS_RULE_SLOTS)
		return 0;
	/* Read before the lookup: the verifier forgets the slot's bound. */
	cost = lim->ceil[slot].cost;
	depth = lim->ceil[slot].depth;
	if (!cost)
		return 0;
	ceil = bpf_map_lookup_elem(&xs_ceil, &slot);
	if (!ceil)
		return 0;
	tat_pps = xs_gcra(*ceil, now, cost, depth);
	if (!tat_pps)
		return XS_V(XDP_DROP, XS_R_CEILING);
	*ceil = tat_pps;
	return 0;
}

#endif
