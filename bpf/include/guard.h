/* SPDX-License-Identifier: GPL-2.0 */
/* The TCP guard. Both modes answer a SYN with a cookie SYN-ACK.
 * Reset mode: handshake ACK -> cookie check -> verified + RST, later
 * segments pass only from verified sources.
 * Transparent mode: a segment of a socket the kernel has passes; a handshake
 * ACK with a valid cookie passes with the decoded cookie as XDP metadata, and
 * the tc program (handoff.h) makes the kernel create the connection.
 * Each function returns a verdict: XDP action in the low byte, reason above.
 */
#ifndef XDPSHIELD_GUARD_H
#define XDPSHIELD_GUARD_H

#include "consts.h"
#include "maps.h"
#include "parse.h"
#include "sock.h"
#include "tcpopt.h"
#include "verdict.h"
#include "cookie.h"
#include "reply.h"
#include "policy.h"
#include "clock.h"
#include "flood.h"
#include "martian.h"

#define XS_TCP_FLAGS(th)	(((__u8 *)(th))[13])
#define XS_HANDSHAKE_MASK	(XS_TCP_SYN | XS_TCP_ACK | XS_TCP_RST | XS_TCP_FIN)

/* The SYN's options, less those the server's stack has turned off: the
 * kernel would refuse a handed-off connection with one (-EINVAL).
 */
static __always_inline __u64 xs_syn_offered(struct xdp_md *ctx,
					    struct tcphdr *th, void *data_end)
{
	__u64 opts = xs_syn_options(ctx, th, data_end);

	if (!(xs_server_opts & XS_SRV_TS))
		opts &= ~XS_OPT_TS;
	if (!(xs_server_opts & XS_SRV_SACK))
		opts &= ~XS_OPT_SACK;
	if (!(xs_server_opts & XS_SRV_WS))
		opts &= ~XS_OPT_HAS_WS;
	return opts;
}

/* The SYN-ACK's options after the MSS: timestamps, carrying in TSval's
 * low bits what the cookie cannot hold, and ECN.
 */
static __always_inline void xs_synack_options(struct xs_reply *r,
					      struct tcphdr *th, __u64 opts,
					      __u64 now)
{
	__u32 tsopt, now_ts, ts;

	r->sack = !!(opts & XS_OPT_SACK);
	r->tsval = 0;
	r->tsecr = 0;
	if (!(opts & XS_OPT_TS)) {
		/* No TSval to carry window scale and SACK-permitted in, so
		 * offer neither, as Linux does for a cookie SYN-ACK: a
		 * server that later rebuilds the connection from the cookie
		 * could not know the client's scale, and both ends would
		 * disagree on the window. (Transparent mode answers only
		 * under a SYN flood, as Linux resorts to cookies only then.)
		 */
		r->optlen = XS_OPTLEN_MSS;
		return;
	}
	/* Linux's cookie_init_timestamp(): the options the cookie cannot
	 * hold ride in the low bits of TSval, and TSval never runs ahead of
	 * the clock.
	 */
	tsopt = opts & XS_OPT_HAS_WS ? XS_OPT_WS(opts) : XS_TS_WSCALE_MASK;
	if (opts & XS_OPT_SACK)
		tsopt |= XS_TS_SACK;
	/* ECN: an ECN-setup SYN (ECE and CWR) gets an ECN-setup SYN-ACK
	 * (ECE) when the server's stack takes ECN; the TSval bit tells the
	 * handoff, so both ends agree (RFC 3168 6.1.1). Without timestamps
	 * nothing could carry it: not offered.
	 */
	if ((xs_server_opts & XS_SRV_ECN) &&
	    (XS_TCP_FLAGS(th) & (XS_TCP_ECE | XS_TCP_CWR)) ==
		    (XS_TCP_ECE | XS_TCP_CWR)) {
		tsopt |= XS_TS_ECN;
		r->flags |= XS_TCP_ECE;
	}
	now_ts = (__u32)(now >> XS_TS_SHIFT);
	ts = (now_ts & ~((1U << XS_TS_BITS) - 1)) | tsopt;
	if ((__s32)(ts - now_ts) > 0)
		ts -= 1U << XS_TS_BITS;
	r->tsval = bpf_htonl(ts);
	r->tsecr = XS_OPT_TSVAL(opts);
	r->optlen = opts & XS_OPT_HAS_WS ? XS_OPTLEN_TS_WS : XS_OPTLEN_TS;
}

/* A source address folded to 32 bits, for the filters indexed by a
 * Fibonacci hash of it (xs_seen, xs_offered, xs_kern_syn).
 */
static __always_inline __u32 xs_src_fold(const struct xs_l3 *l3)
{
	if (l3->v6) {
		const struct ipv6hdr *ip6 = l3->iph;

		return ip6->saddr.in6_u.u6_addr32[0] ^ ip6->saddr.in6_u.u6_addr32[1] ^
		       ip6->saddr.in6_u.u6_addr32[2] ^ ip6->saddr.in6_u.u6_addr32[3];
	}
	return ((const struct iphdr *)l3->iph)->saddr;
}

/* The tick byte of a segment's source address and ports (@th) in @map, an
 * array of 2^@bits bytes (8 to a u64 value): xs_offered, xs_kern_syn. By
 * the ports too: a client's connections (a NAT's) each have their own.
 */
static __always_inline __u8 *xs_tick_slot(void *map, __u32 bits,
					  const struct xs_l3 *l3,
					  const struct tcphdr *th)
{
	__u32 ports = (__u32)th->source | (__u32)th->dest << 16;
	__u32 h = ((xs_src_fold(l3) ^ ports) * 0x9E3779B1U) >> (32 - bits);
	__u32 idx = h >> 3;
	__u8 *w = bpf_map_lookup_elem(map, &idx);

	return w ? w + (h & 7) : NULL;
}

/* Note cookie tick @tick in a slot: the top bit set (a slot never written
 * is 0, no tick), the tick's low 7 bits. Written only when it changes:
 * under a flood, once a tick per slot, so the CPUs do not bounce its lines.
 */
static __always_inline void xs_tick_note(__u8 *o, __u32 tick)
{
	__u8 b = XS_TICK_SET | (tick & XS_TICK_MASK);

	if (o && *o != b)
		*o = b;
}

/* Does a slot hold cookie tick @now_tick, the one before, or the next (a
 * note by a clock a moment ahead: the CPUs' shared offset grew just after
 * this CPU read it, clock.h, or the daemon moved the cookie clock back)?
 */
static __always_inline int xs_tick_recent(const __u8 *o, __u32 now_tick)
{
	return o && (*o & XS_TICK_SET) &&
	       ((now_tick + 1 - *o) & XS_TICK_MASK) <= 2;
}

/* Could this shield have sent @l3's source a cookie that is still valid
 * under @key? Only a key no other shield mints with, once xs_offered holds
 * every cookie that can still be valid, says no (one byte read).
 */
static __always_inline int xs_offered_maybe(const struct xs_l3 *l3,
					    const struct tcphdr *th,
					    const struct xs_key *key,
					    __u32 now_tick)
{
	__u32 from_idx = XS_OFFERED_WORDS;
	__u64 *from;

	if (key->live != XS_KEY_RECORDED)
		return 1;
	from = bpf_map_lookup_elem(&xs_offered, &from_idx);
	if (!from || !*from || (__s32)(now_tick - (__u32)*from) < 0)
		return 1;
	return xs_tick_recent(xs_tick_slot(&xs_offered, XS_OFFERED_BITS, l3, th),
			      now_tick);
}

/* A SYN to a protected port: answer with a cookie SYN-ACK (XDP_TX). */
static __always_inline __u32 xs_syn_cookie(struct xdp_md *ctx,
					   const struct xs_l3 *l3,
					   struct tcphdr *th, void *data_end,
					   __u32 frame_len, __u64 now)
{
	const struct xs_key *key = xs_current_key();
	struct xs_reply r;
	__u32 mss, mss_idx, hash, ports, link, tick;
	__u64 opts;

	if (!key)
		return XS_V(XDP_DROP, XS_R_NO_KEY);
	opts = xs_syn_offered(ctx, th, data_end);
	/* Without an MSS option, RFC 9293's defaults. */
	if (opts & XS_OPT_HAS_MSS)
		mss = XS_OPT_MSS(opts);
	else
		mss = l3->v6 ? 1220 : 536;
	link = xs_link_mss_cached(ctx, l3->v6, now);
	mss_idx = xs_mss_index(mss, l3->v6, link);
	tick = xs_cookie_tick(now);
	ports = (__u32)th->source | (__u32)th->dest << 16;

	if (l3->v6) {
		struct ipv6hdr *ip6 = l3->iph;

		hash = xs_hash6(key, ip6->saddr.in6_u.u6_addr32,
				ip6->daddr.in6_u.u6_addr32, ports, th->seq,
				mss_idx, tick);
		__builtin_memcpy(r.saddr, &ip6->saddr, 16);
		__builtin_memcpy(r.daddr, &ip6->daddr, 16);
	} else {
		struct iphdr *iph = l3->iph;

		hash = xs_hash4(key, iph->saddr, iph->daddr, ports, th->seq,
				mss_idx, tick);
		r.saddr[0] = iph->saddr;
		r.daddr[0] = iph->daddr;
	}
	r.mss = link;
	r.sport = th->source;
	r.dport = th->dest;
	xs_tick_note(xs_tick_slot(&xs_offered, XS_OFFERED_BITS, l3, th), tick);
	r.seq = bpf_htonl(xs_cookie_pack(hash, key->epoch & 1, tick, mss_idx));
	r.ack = bpf_htonl(bpf_ntohl(th->seq) + 1);
	r.l3off = l3->l3off;
	r.v6 = l3->v6;
	r.flags = XS_TCP_SYN | XS_TCP_ACK;
	r.window = XS_SYNACK_WINDOW;
	r.wscale = xs_wscale;
	xs_synack_options(&r, th, opts, now);
	if (xs_reply_write(ctx, &r, frame_len))
		return XS_V(XDP_DROP, XS_R_REPLY_FAILED);
	return XS_V(XDP_TX, XS_R_SYN_COOKIE_SENT);
}

/* Is @cookie the one @key makes in cookie tick @tick for this ACK's SYN? */
static __always_inline int xs_ack_cookie_is(const struct xs_l3 *l3,
					    const struct tcphdr *th,
					    const struct xs_key *key,
					    __u32 cookie, __u32 tick)
{
	__u32 isn_be = bpf_htonl(bpf_ntohl(th->seq) - 1);
	__u32 ports = (__u32)th->source | (__u32)th->dest << 16;
	__u32 mss_idx = cookie & XS_COOKIE_MSS_MASK;
	__u32 hash;

	if (l3->v6) {
		struct ipv6hdr *ip6 = l3->iph;

		hash = xs_hash6(key, ip6->saddr.in6_u.u6_addr32,
				ip6->daddr.in6_u.u6_addr32, ports, isn_be,
				mss_idx, tick);
	} else {
		struct iphdr *iph = l3->iph;

		hash = xs_hash4(key, iph->saddr, iph->daddr, ports, isn_be,
				mss_idx, tick);
	}
	return ((hash ^ cookie) & XS_COOKIE_HASH_MASK) == 0;
}

/* Does this ACK acknowledge one of our cookies (ack - 1, under the key its
 * slot bit names, made in the cookie tick of @cns, cookie-clock ns, or the
 * one before)? One SipHash, unless xs_offered says no cookie went to its
 * source. In the tick's last XS_COOKIE_AHEAD_NS, a cookie with the next
 * tick's parity is tried as the next tick's too (a clock ahead minted it).
 */
static __always_inline int xs_ack_cookie_ok(const struct xs_l3 *l3,
					    struct tcphdr *th, __u64 cns)
{
	__u32 cookie = bpf_ntohl(th->ack_seq) - 1;
	const struct xs_key *key = xs_slot_key(cookie);
	__u32 now_tick = xs_tick_of(cns), tick;

	if (!key || !xs_offered_maybe(l3, th, key, now_tick))
		return 0;
	tick = xs_cookie_made_tick(cookie, now_tick);
	if (xs_ack_cookie_is(l3, th, key, cookie, tick))
		return 1;
	return tick != now_tick && xs_cookie_tick_ending(cns) &&
	       xs_ack_cookie_is(l3, th, key, cookie, now_tick + 1);
}

/* An RST in answer to a segment (RFC 9293 3.10.7.1): seq from its ACK
 * field when it has one, else an RST+ACK of what it occupied. @reason: what
 * it is counted as.
 */
static __always_inline __u32 xs_send_rst(struct xdp_md *ctx,
					 const struct xs_l3 *l3,
					 struct tcphdr *th, __u32 frame_len,
					 __u32 reason)
{
	__u32 seglen = l3->l4len - th->doff * 4;
	struct xs_reply r;

	if (l3->v6) {
		struct ipv6hdr *ip6 = l3->iph;

		__builtin_memcpy(r.saddr, &ip6->saddr, 16);
		__builtin_memcpy(r.daddr, &ip6->daddr, 16);
	} else {
		struct iphdr *iph = l3->iph;

		r.saddr[0] = iph->saddr;
		r.daddr[0] = iph->daddr;
	}
	r.sport = th->source;
	r.dport = th->dest;
	if (XS_TCP_FLAGS(th) & XS_TCP_ACK) {
		r.seq = th->ack_seq;
		r.ack = 0;
		r.flags = XS_TCP_RST;
	} else {
		seglen += !!(XS_TCP_FLAGS(th) & XS_TCP_SYN) +
			  !!(XS_TCP_FLAGS(th) & XS_TCP_FIN);
		r.seq = 0;
		r.ack = bpf_htonl(bpf_ntohl(th->seq) + seglen);
		r.flags = XS_TCP_RST | XS_TCP_ACK;
	}
	r.l3off = l3->l3off;
	r.v6 = l3->v6;
	r.window = 0;
	r.optlen = XS_OPTLEN_NONE;
	if (xs_reply_write(ctx, &r, frame_len))
		return XS_V(XDP_DROP, XS_R_REPLY_FAILED);
	return XS_V(XDP_TX, reason);
}

/* Transparent mode's handshake ACK, cookie already checked: decode what the
 * cookie and the echoed TSval carry, as Linux's cookie_timestamp_decode()
 * does, into XDP metadata for the tc program, and pass.
 */
static __always_inline __u32 xs_ack_pass_meta(struct xdp_md *ctx,
					      const struct xs_l3 *l3,
					      struct tcphdr *th, __u64 l4off)
{
	__u32 cookie = bpf_ntohl(th->ack_seq) - 1;
	struct xs_meta m = {
		.mss = xs_mss_class(cookie, l3->v6, xs_link_mss(ctx, l3->v6)),
		.magic = XS_META_MAGIC,
	};
	struct xs_meta *mp;

	/* Without timestamps the SYN-ACK offered neither window scale nor
	 * SACK, so there is nothing more to decode.
	 */
	if (xs_ack_timestamps(ctx, th, l4off, &m.tsval, &m.tsecr))
		xs_ts_decode(&m);
	if (xs_force_nometa || bpf_xdp_adjust_meta(ctx, -(int)sizeof(m))) {
		/* No metadata on this driver: tc re-checks the cookie. */
		if (!xs_nometa_seen)
			xs_nometa_seen = 1;
		return XS_V(XDP_PASS, XS_R_ACK_VALID);
	}
	mp = (void *)(long)ctx->data_meta;
	if ((void *)(mp + 1) > (void *)(long)ctx->data)
		return XS_V(XDP_PASS, XS_R_ACK_VALID);
	*mp = m;
	return XS_V(XDP_PASS, XS_R_ACK_VALID);
}

/* xs_seen's word and bit for the segment's source address. */
static __always_inline __u64 *xs_seen_word(const struct xs_l3 *l3, __u64 *bit)
{
	__u32 h, idx;

	h = (xs_src_fold(l3) * 0x9E3779B1U) >> (32 - XS_SEEN_BITS);
	idx = h >> 6;
	*bit = 1ULL << (h & 63);
	return bpf_map_lookup_elem(&xs_seen, &idx);
}

/* Mark the source of a segment that passes to a socket. Not atomic: a bit
 * lost to a race on the same word is set again by the source's next segment.
 * The peers of sockets that exist at load (a TIME_WAIT above all) are
 * marked by userspace (shield/core.py, socket_peers()).
 */
static __always_inline void xs_seen_mark(const struct xs_l3 *l3)
{
	__u64 bit, *w = xs_seen_word(l3, &bit);

	if (w && !(*w & bit))
		*w |= bit;
}

/* Has this source had a socket here (its xs_seen bit)? */
static __always_inline int xs_seen_test(const struct xs_l3 *l3)
{
	__u64 bit, *w = xs_seen_word(l3, &bit);

	return w && (*w & bit);
}

/* Transparent mode, a SYN: is there a socket (not the listener) for its
 * 4-tuple? Mostly a TIME_WAIT that the server's own close left behind, when
 * a busy client reuses the port. Only the kernel can retire it (the
 * connection a handed-off ACK creates is refused as a duplicate of the
 * TIME_WAIT): such a SYN goes to the kernel, which retires the TIME_WAIT
 * and answers itself, as Linux does (RFC 6191), with a request socket (never
 * a cookie for such a SYN) that the handshake ACK then finds. A spoofed SYN
 * cannot hit one without the exact 4-tuple of a connection that just closed.
 */
static __always_inline int xs_socket_exists(struct xdp_md *ctx,
					    const struct xs_l3 *l3,
					    struct tcphdr *th)
{
	struct bpf_sock_tuple t;
	__u32 tlen, state;

	if (!xs_seen_test(l3))
		return 0;
	tlen = xs_sock_tuple(&t, l3, th);
	state = xs_sock_state(ctx, &t, tlen);
	return state && state != BPF_TCP_LISTEN;
}

/* The port's listener, where the shield answers for the host's own
 * sockets: 0 when nothing listens on it (the kernel would answer RST),
 * BPF_TCP_LISTEN when something does, or the state of a socket that this
 * 4-tuple already has. xs_listen spares the lookup for ports known to
 * listen; a listener found marks its port.
 */
static __always_inline __u32 xs_listener(struct xdp_md *ctx,
					 const struct xs_l3 *l3,
					 struct tcphdr *th)
{
	__u32 zero = 0, port = bpf_ntohs(th->dest) & 0xffff, state, tlen;
	struct xs_portset *ls = bpf_map_lookup_elem(&xs_listen, &zero);
	struct bpf_sock_tuple t;
	__u64 bit = 1ULL << (port & 63);

	if (!ls || (ls->bits[port >> 6] & bit))
		return BPF_TCP_LISTEN;
	tlen = xs_sock_tuple(&t, l3, th);
	state = xs_sock_state(ctx, &t, tlen);
	if (state == BPF_TCP_LISTEN)
		ls->bits[port >> 6] |= bit;
	return state;
}

/* A SYN the shield would answer in the kernel's place: only if the kernel
 * would answer it at all (not a martian, checksums right, something
 * listens), then with a cookie. @host: the destination is one of this
 * host's own sockets (transparent mode, or a local address).
 */
static __always_inline __u32 xs_syn_answer(struct xdp_md *ctx,
					   struct xs_l3 *l3, struct tcphdr *th,
					   __u64 l4off, __u32 frame_len,
					   int host, __u64 now)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u32 state;

	if (xs_martian(ctx, l3, xs_transparent, now))
		return XS_V(XDP_DROP, XS_R_MARTIAN);
	if (xs_verify_csum &&
	    !xs_syn_csum_ok(ctx, l3->l3off, l4off, l3->v6))
		return XS_V(XDP_DROP, XS_R_BAD_CHECKSUM);
	if (host && xs_listener_check) {
		state = xs_listener(ctx, l3, th);
		if (!state) {
			if (!xs_rst_allowed(now))
				return XS_V(XDP_DROP, XS_R_RST_CAPPED);
			return xs_send_rst(ctx, l3, th, frame_len,
					   XS_R_SYN_NO_LISTENER);
		}
		if (state != BPF_TCP_LISTEN)
			return XS_V(XDP_PASS, XS_R_SYN_EXISTING_SOCKET);
	}
	return xs_syn_cookie(ctx, l3, th, data_end, frame_len, now);
}

/* Transparent mode, any non-SYN segment to a protected port.
 *
 * The socket lookup comes first: established traffic, the bulk of what a
 * guarded port sees, then costs one lookup and no hash. A segment that is
 * neither a socket's nor ours goes to the kernel while no flood is on (it
 * may carry the kernel's own cookie), and is dropped under one.
 *
 * Under a flood the lookup is only for a source marked in xs_seen (or a
 * segment with SYN set: the answer to a connection this host opened).
 * Every source with a socket here is marked: the peers of the sockets at
 * load and at each rebuild (userspace), every source whose segment a
 * lookup found a socket for (all of them while no flood is on), and every
 * handshake handed off. A forged-ACK flood's sources are not, and cost one
 * SipHash and no lookup (the lookup was a third of their cost).
 */
static __always_inline __u32 xs_transparent_segment(struct xdp_md *ctx,
						    const struct xs_l3 *l3,
						    struct tcphdr *th,
						    __u64 l4off, __u64 now)
{
	__u8 flags = XS_TCP_FLAGS(th);
	int ack = (flags & (XS_TCP_SYN | XS_TCP_ACK | XS_TCP_RST)) == XS_TCP_ACK;
	int looked = (flags & XS_TCP_SYN) || !xs_flood_is_on();
	int seen = !looked && xs_seen_test(l3);
	struct bpf_sock_tuple t;
	__u32 tlen, state;
	__u64 cns = 0;

	if (looked || seen) {
		tlen = xs_sock_tuple(&t, l3, th);
		state = xs_sock_state(ctx, &t, tlen);
		/* Established, closing, time-wait or a request socket: the
		 * kernel's own state machine judges it.
		 */
		if (state && state != BPF_TCP_LISTEN) {
			xs_seen_mark(l3);
			return XS_V(XDP_PASS, XS_R_ESTABLISHED_PASS);
		}
	}
	if (ack) {
		cns = xs_cookie_ns(now);
		if (xs_ack_cookie_ok(l3, th, cns)) {
			/* Its connection's later segments must find the
			 * lookup.
			 */
			xs_seen_mark(l3);
			return xs_ack_pass_meta(ctx, l3, th, l4off);
		}
	}
	if (!xs_flood_count(now))
		return XS_V(XDP_PASS, XS_R_STRAY_UNDER_THRESHOLD);
	if (!ack)
		return XS_V(XDP_DROP, XS_R_NOT_VERIFIED);
	/* A connection whose SYN the kernel answered lately (its source
	 * marked in xs_seen then too) may hold a cookie of the kernel's own
	 * (net.ipv4.tcp_syncookies=2, or its SYN queue overflowed): only the
	 * kernel can check it. By source and ports: a segment of a handshake
	 * the shield answered that overtook its ACK (a FIN, more data) is not
	 * sent on, where the kernel would answer it with an RST; dropped, it
	 * is sent again once the connection exists. A forged-ACK flood gets
	 * here only with such a connection's source and ports.
	 */
	if ((seen || (looked && xs_seen_test(l3))) &&
	    xs_tick_recent(xs_tick_slot(&xs_kern_syn, XS_KERN_SYN_BITS, l3, th),
			   xs_tick_of(cns)))
		return XS_V(XDP_PASS, XS_R_ACK_SEEN_PASS);
	return XS_V(XDP_DROP, XS_R_ACK_INVALID);
}

/* Reset mode, a non-SYN segment from a source not verified (or expired).
 * A socket of the host's own for it (a connection from before the shield,
 * or idle past the expiry) re-verifies the source; a valid handshake ACK
 * verifies it and is answered with an RST; anything else is dropped, and
 * answered with an RST (capped per CPU) so that no peer waits on a
 * connection that will not pass.
 */
static __always_inline __u32 xs_reset_unverified(struct xdp_md *ctx,
						 struct xs_l3 *l3,
						 struct tcphdr *th,
						 __u32 frame_len,
						 const struct xs_vkey *vk,
						 __u64 now)
{
	struct bpf_sock_tuple t;
	__u32 tlen, state;
	__u8 flags = XS_TCP_FLAGS(th);

	/* Only a source that had a socket here (xs_seen: the peers of the
	 * sockets at load, and every source verified since) can have one
	 * now: a forged-ACK flood's sources are not looked up.
	 */
	if (xs_seen_test(l3)) {
		tlen = xs_sock_tuple(&t, l3, th);
		state = xs_sock_state(ctx, &t, tlen);
		if (state && state != BPF_TCP_LISTEN) {
			xs_verified_add(vk, now);
			return XS_V(XDP_PASS, XS_R_ESTABLISHED_PASS);
		}
	}
	if ((flags & XS_HANDSHAKE_MASK) == XS_TCP_ACK &&
	    xs_ack_cookie_ok(l3, th, xs_cookie_ns(now))) {
		xs_verified_add(vk, now);
		xs_seen_mark(l3);
		return xs_send_rst(ctx, l3, th, frame_len, XS_R_ACK_VALID);
	}
	/* Never an RST to an RST, nor to what the kernel would not answer. */
	if ((flags & XS_TCP_RST) || xs_martian(ctx, l3, 0, now) ||
	    !xs_rst_allowed(now))
		return XS_V(XDP_DROP, (flags & XS_HANDSHAKE_MASK) == XS_TCP_ACK ?
					      XS_R_ACK_INVALID :
					      XS_R_NOT_VERIFIED);
	return xs_send_rst(ctx, l3, th, frame_len, XS_R_NOT_VERIFIED_RST);
}

/* A TCP segment to a protected port: @l3 and @th as the stages found them,
 * @l4off the header's offset in the frame.
 *
 * Verifier: the body of a program of its own (xdpshield_guard, tail-called),
 * so verified once. Inlined into the entry, the SipHash and reply code was
 * re-verified for every distinct way of reaching it, past a million
 * instructions.
 */
static __always_inline __u32 xs_guard_tcp(struct xdp_md *ctx, struct xs_l3 *l3,
					  struct tcphdr *th, __u64 l4off)
{
	__u32 frame_len = ctx->data_end - ctx->data;
	struct xs_verified *v;
	struct xs_vkey vk;
	__u64 now;
	__u8 flags;

	flags = XS_TCP_FLAGS(th) & XS_HANDSHAKE_MASK;
	now = xs_now();
	if (xs_transparent) {
		if (flags != XS_TCP_SYN)
			return xs_transparent_segment(ctx, l3, th, l4off, now);
		/* No flood on: the kernel answers, with every option it
		 * would give the client (window scale and SACK without
		 * timestamps above all), as if the shield were not here.
		 */
		if (!xs_flood_count(now)) {
			/* The kernel makes a request socket: the handshake's
			 * ACK and what follows must find it by a lookup even
			 * if a flood is on when they come (by then, or on the
			 * CPU they reach), and the daemon's rebuild may have
			 * cleared the source's bit since its last connection.
			 */
			xs_seen_mark(l3);
			/* Its ACK may carry the kernel's own cookie. */
			xs_tick_note(xs_tick_slot(&xs_kern_syn, XS_KERN_SYN_BITS,
						  l3, th), xs_cookie_tick(now));
			return XS_V(XDP_PASS, XS_R_SYN_UNDER_THRESHOLD);
		}
		if (xs_socket_exists(ctx, l3, th))
			return XS_V(XDP_PASS, XS_R_SYN_EXISTING_SOCKET);
		return xs_syn_answer(ctx, l3, th, l4off, frame_len, 1, now);
	}
	xs_vkey_of(&vk, l3);
	v = xs_verified_get(&vk, now);
	/* A verified source's segments pass, new connections included: its
	 * SYNs reach the kernel, which makes the connection itself.
	 */
	if (v && !(xs_bench_reverify && flags == XS_TCP_ACK)) {
		xs_verified_touch(v, now);
		return XS_V(XDP_PASS, XS_R_VERIFIED_PASS);
	}
	if (flags == XS_TCP_SYN)
		return xs_syn_answer(ctx, l3, th, l4off, frame_len,
				     xs_dst_local(l3, now), now);
	return xs_reset_unverified(ctx, l3, th, frame_len, &vk, now);
}

#endif
