/* SPDX-License-Identifier: GPL-2.0 */
/* SYN cookies: what is hashed (siphash.h) and the cookie layout.
 * src/xdpshield/shield/cookie.py is the reference this must agree with, bit
 * for bit.
 *
 * The hashed message is a byte string: saddr, daddr (as in the header),
 * sport, dport, the client's ISN (network order), the coarse clock tick the
 * cookie was made in (4 bytes little-endian) and the MSS index (1 byte): 21
 * bytes for IPv4, 45 for IPv6.
 * SipHash reads little-endian 64-bit words, and the BPF target here is
 * little-endian (bpfel), so header fields loaded as raw integers can be fed
 * in without byte swapping: that is why no bpf_ntohl appears below.
 *
 * The 32-bit cookie: hash bits 31..4, bit 3 = the tick's parity, bit 2 = the
 * key slot (epoch & 1), bits 1..0 = the MSS index. The slot and tick bits
 * let an ACK be checked with one hash instead of one per live key and tick:
 * a forged-ACK flood costs one SipHash each. The tick bounds a cookie's age
 * in the data path itself (consts.h), whether or not keys rotate.
 */
#ifndef XDPSHIELD_COOKIE_H
#define XDPSHIELD_COOKIE_H

#include "consts.h"
#include "maps.h"
#include "flood.h"
#include "siphash.h"

/* Tail block: tick (4 bytes), MSS index (1 byte), message length on top. */
static __always_inline __u64 xs_sip_tail(__u32 tick, __u32 mss_idx, __u64 len)
{
	return (__u64)tick | (__u64)mss_idx << 32 | len << 56;
}

/* The cookie clock at @now_ns (xs_now()): the wall clock (xs_now() +
 * xs_clock's offset), since machines do not share their monotonic clocks
 * and a fleet's nodes must agree on a cookie's tick. An array lookup:
 * inlined, no call.
 */
static __always_inline __u64 xs_cookie_ns(__u64 now_ns)
{
	__u32 zero = 0;
	__u64 *off = bpf_map_lookup_elem(&xs_clock, &zero);

	return off ? now_ns + *off : now_ns;
}

/* The tick of cookie-clock time @cns. */
static __always_inline __u32 xs_tick_of(__u64 cns)
{
	return (__u32)(cns >> XS_COOKIE_TICK_NS_SHIFT);
}

/* The cookie clock's tick at @now_ns (xs_now()). */
static __always_inline __u32 xs_cookie_tick(__u64 now_ns)
{
	return xs_tick_of(xs_cookie_ns(now_ns));
}

/* Is cookie-clock time @cns within XS_COOKIE_AHEAD_NS of the next tick? */
static __always_inline int xs_cookie_tick_ending(__u64 cns)
{
	__u64 in_tick = cns & ((1ULL << XS_COOKIE_TICK_NS_SHIFT) - 1);

	return in_tick >= (1ULL << XS_COOKIE_TICK_NS_SHIFT) - XS_COOKIE_AHEAD_NS;
}

/* The tick a cookie was made in, from its parity bit: this tick or the one
 * before, so no cookie is older than two ticks.
 */
static __always_inline __u32 xs_cookie_made_tick(__u32 cookie, __u32 now_tick)
{
	return now_tick - ((now_tick ^ (cookie >> XS_COOKIE_TICK_SHIFT)) & 1);
}

/* ports: the raw first 4 bytes of the TCP header (sport, dport);
 * isn_be: the client's ISN in network order.
 */
static __always_inline __u32 xs_hash4(const struct xs_key *key, __u32 saddr,
				      __u32 daddr, __u32 ports, __u32 isn_be,
				      __u32 mss_idx, __u32 tick)
{
	struct xs_sip s;

	xs_sip_init(&s, key->k);
	xs_sip_block(&s, (__u64)saddr | (__u64)daddr << 32);
	xs_sip_block(&s, (__u64)ports | (__u64)isn_be << 32);
	return (__u32)xs_sip_final(&s, xs_sip_tail(tick, mss_idx, 21));
}

static __always_inline __u32 xs_hash6(const struct xs_key *key,
				      const __u32 *saddr, const __u32 *daddr,
				      __u32 ports, __u32 isn_be, __u32 mss_idx,
				      __u32 tick)
{
	struct xs_sip s;

	xs_sip_init(&s, key->k);
	xs_sip_block(&s, (__u64)saddr[0] | (__u64)saddr[1] << 32);
	xs_sip_block(&s, (__u64)saddr[2] | (__u64)saddr[3] << 32);
	xs_sip_block(&s, (__u64)daddr[0] | (__u64)daddr[1] << 32);
	xs_sip_block(&s, (__u64)daddr[2] | (__u64)daddr[3] << 32);
	xs_sip_block(&s, (__u64)ports | (__u64)isn_be << 32);
	return (__u32)xs_sip_final(&s, xs_sip_tail(tick, mss_idx, 45));
}

/* The MSS this host can take on the link: the interface's MTU less the IP
 * and TCP headers (IPv4 40 bytes, IPv6 60), read per packet through
 * bpf_check_mtu() so that an MTU change is followed at once; or the
 * configured xs_mss4 / xs_mss6. @ctx: the XDP or tc context.
 */
static __always_inline __u32 xs_link_mss(void *ctx, int v6)
{
	__u32 fixed = v6 ? xs_mss6 : xs_mss4, mtu = 0, hdrs = v6 ? 60 : 40;

	if (fixed)
		return fixed;
	if (bpf_check_mtu(ctx, 0, &mtu, 0, 0) < 0 || mtu < hdrs + 88)
		mtu = 1500;	/* no device (cannot happen) or absurd */
	mtu -= hdrs;
	return mtu > 65535 ? 65535 : mtu;
}

/* xs_link_mss(), cached per CPU for a window: the helper costs as much as
 * a third of the SYN path.
 */
static __always_inline __u32 xs_link_mss_cached(struct xdp_md *ctx, int v6,
					       __u64 now)
{
	struct xs_cpu_state *st;
	__u32 mss;

	if (v6 ? xs_mss6 : xs_mss4)
		return v6 ? xs_mss6 : xs_mss4;
	st = xs_cache(now);
	mss = st ? (v6 ? st->mss6 : st->mss4) : 0;
	if (mss)
		return mss;
	mss = xs_link_mss(ctx, v6);
	if (st) {
		if (v6)
			st->mss6 = mss;
		else
			st->mss4 = mss;
	}
	return mss;
}

/* The MSS a cookie's class stands for: Linux's msstab, with the top class
 * the link's own MSS and every class clipped to it. A jumbo link keeps its
 * clients' large MSS (and IPv4 then keeps 1460 in place of 1440); a small
 * link never lets a class exceed what fits on it.
 */
static __always_inline __u32 xs_mss_class(__u32 idx, int v6, __u32 link)
{
	__u32 m;

	switch (idx & 3) {
	case 0:
		m = v6 ? 1220 : 536;
		break;
	case 1:
		m = v6 ? 1420 : 1300;
		break;
	case 2:
		m = !v6 && link > 1460 ? 1460 : 1440;
		break;
	default:
		m = link;
		break;
	}
	return m < link ? m : link;
}

/* The largest class not above the client's MSS. */
static __always_inline __u32 xs_mss_index(__u32 mss, int v6, __u32 link)
{
	if (mss >= xs_mss_class(3, v6, link))
		return 3;
	if (mss >= xs_mss_class(2, v6, link))
		return 2;
	if (mss >= xs_mss_class(1, v6, link))
		return 1;
	return 0;
}

static __always_inline __u32 xs_cookie_pack(__u32 hash, __u32 slot,
					    __u32 tick, __u32 mss_idx)
{
	return (hash & XS_COOKIE_HASH_MASK) |
	       (tick & 1) << XS_COOKIE_TICK_SHIFT |
	       slot << XS_COOKIE_SLOT_SHIFT | mss_idx;
}

/* What our SYN-ACK's TSval, echoed in an ACK's TSecr, carries in its low
 * bits (xs_syn_cookie() lays them out as Linux's cookie_init_timestamp()):
 * decoded into @m as Linux's cookie_timestamp_decode() does. @m has the
 * ACK's timestamps; its opts and snd_wscale are 0.
 */
static __always_inline void xs_ts_decode(struct xs_meta *m)
{
	__u32 tsopt = m->tsecr & ((1U << XS_TS_BITS) - 1);

	m->opts = XS_META_TS;
	if (tsopt & XS_TS_SACK)
		m->opts |= XS_META_SACK;
	if (tsopt & XS_TS_ECN)
		m->opts |= XS_META_ECN;
	if ((tsopt & XS_TS_WSCALE_MASK) != XS_TS_WSCALE_MASK) {
		m->opts |= XS_META_WS;
		m->snd_wscale = tsopt & XS_TS_WSCALE_MASK;
	}
}

/* The live key of the newest epoch, or NULL before userspace wrote one. */
static __always_inline const struct xs_key *xs_current_key(void)
{
	__u32 k0 = 0, k1 = 1;
	struct xs_key *a = bpf_map_lookup_elem(&xs_keys, &k0);
	struct xs_key *b = bpf_map_lookup_elem(&xs_keys, &k1);

	if (!a || !b)
		return NULL;
	if (!a->live)
		return b->live ? b : NULL;
	if (!b->live)
		return a;
	/* Serial-number compare, so a wrapping epoch keeps working. */
	return (__s32)(b->epoch - a->epoch) > 0 ? b : a;
}

/* The key an ACK's cookie names by its slot bit, or NULL. */
static __always_inline const struct xs_key *xs_slot_key(__u32 cookie)
{
	__u32 slot = (cookie >> XS_COOKIE_SLOT_SHIFT) & 1;
	struct xs_key *k = bpf_map_lookup_elem(&xs_keys, &slot);

	if (!k || !k->live)
		return NULL;
	return k;
}

#endif
