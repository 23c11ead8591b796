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
#include "cookie.h"
#include "reply.h"
#include "policy.h"

#define XS_V(act, reason)	((__u32)(reason) << 8 | (act))
#define XS_V_ACT(v)		((v) & 0xff)
#define XS_V_REASON(v)		((v) >> 8)

#define XS_TCP_FLAGS(th)	(((__u8 *)(th))[13])
#define XS_HANDSHAKE_MASK	(XS_TCP_SYN | XS_TCP_ACK | XS_TCP_RST | XS_TCP_FIN)

/* The client's SYN options. The layout every Linux client sends (MSS,
 * SACK-permitted, timestamps, NOP, window scale: 20 bytes) is recognised with
 * three compares; anything else goes through the general walk, a function
 * call of ~40 steps that would cost the SYN path about as much again.
 */
static __always_inline __u64 xs_syn_options(struct xdp_md *ctx,
					    struct tcphdr *th, void *data_end)
{
	__u32 optlen = th->doff * 4 - sizeof(*th);
	__u8 *o = (__u8 *)(th + 1);
	__u64 res, mss;
	__u32 ws;

	if (optlen == 20 && (void *)(o + 20) <= data_end &&
	    *(__u16 *)o == bpf_htons(XS_TCPOPT_MSS << 8 | 4) &&
	    *(__u32 *)(o + 4) == bpf_htonl(XS_TCPOPT_SACK_PERM << 24 |
					   2 << 16 |
					   XS_TCPOPT_TIMESTAMP << 8 | 10) &&
	    (*(__u32 *)(o + 16) & bpf_htonl(0xffffff00)) ==
		    bpf_htonl(XS_TCPOPT_NOP << 24 | XS_TCPOPT_WSCALE << 16 |
			      3 << 8)) {
		mss = (__u32)o[2] << 8 | o[3];
		ws = o[19] > XS_MAX_WSCALE ? XS_MAX_WSCALE : o[19];
		res = (__u64)*(__u32 *)(o + 8) << 32 | XS_OPT_SACK | XS_OPT_TS |
		      XS_OPT_HAS_WS | (__u64)ws << 16;
		if (mss)
			res |= mss | XS_OPT_HAS_MSS;
		return res;
	}
	if (!optlen)
		return 0;
	return xs_parse_tcpopts(ctx, (void *)o - (void *)(long)ctx->data,
				optlen);
}

/* A SYN to a protected port: answer with a cookie SYN-ACK (XDP_TX). */
static __always_inline __u32 xs_syn_cookie(struct xdp_md *ctx,
					   const struct xs_l3 *l3,
					   struct tcphdr *th, void *data_end,
					   __u32 frame_len)
{
	const struct xs_key *key = xs_current_key();
	struct xs_reply r;
	__u32 mss, mss_idx, hash, ports, tsopt, now_ts, ts;
	__u64 opts;

	if (!key)
		return XS_V(XDP_DROP, XS_R_NO_KEY);
	opts = xs_syn_options(ctx, th, data_end);
	/* An option the server's stack has turned off is not offered: the
	 * kernel would refuse the handed-off connection (-EINVAL).
	 */
	if (!(xs_server_opts & XS_SRV_TS))
		opts &= ~XS_OPT_TS;
	if (!(xs_server_opts & XS_SRV_SACK))
		opts &= ~XS_OPT_SACK;
	if (!(xs_server_opts & XS_SRV_WS))
		opts &= ~XS_OPT_HAS_WS;
	/* Without an MSS option, RFC 9293's defaults. */
	if (opts & XS_OPT_HAS_MSS)
		mss = XS_OPT_MSS(opts);
	else
		mss = l3->v6 ? 1220 : 536;
	mss_idx = xs_mss_index(mss, l3->v6);
	ports = (__u32)th->source | (__u32)th->dest << 16;

	if (l3->v6) {
		struct ipv6hdr *ip6 = l3->iph;

		hash = xs_hash6(key, ip6->saddr.in6_u.u6_addr32,
				ip6->daddr.in6_u.u6_addr32, ports, th->seq,
				mss_idx);
		__builtin_memcpy(r.saddr, &ip6->saddr, 16);
		__builtin_memcpy(r.daddr, &ip6->daddr, 16);
		r.mss = xs_mss6;
	} else {
		struct iphdr *iph = l3->iph;

		hash = xs_hash4(key, iph->saddr, iph->daddr, ports, th->seq,
				mss_idx);
		r.saddr[0] = iph->saddr;
		r.daddr[0] = iph->daddr;
		r.mss = xs_mss4;
	}
	r.sport = th->source;
	r.dport = th->dest;
	r.seq = bpf_htonl(xs_cookie_pack(hash, key->epoch & 1, mss_idx));
	r.ack = bpf_htonl(bpf_ntohl(th->seq) + 1);
	r.l3off = l3->l3off;
	r.v6 = l3->v6;
	r.flags = XS_TCP_SYN | XS_TCP_ACK;
	r.window = XS_SYNACK_WINDOW;
	r.wscale = xs_wscale;
	r.sack = !!(opts & XS_OPT_SACK);
	r.tsval = 0;
	r.tsecr = 0;
	if (opts & XS_OPT_TS) {
		/* Linux's cookie_init_timestamp(): the options the cookie
		 * cannot hold ride in the low bits of TSval, and TSval never
		 * runs ahead of the clock.
		 */
		tsopt = opts & XS_OPT_HAS_WS ? XS_OPT_WS(opts) :
					       XS_TS_WSCALE_MASK;
		if (opts & XS_OPT_SACK)
			tsopt |= XS_TS_SACK;
		if ((XS_TCP_FLAGS(th) & (XS_TCP_ECE | XS_TCP_CWR)) ==
		    (XS_TCP_ECE | XS_TCP_CWR))
			tsopt |= XS_TS_ECN;
		now_ts = (__u32)(xs_now() >> XS_TS_SHIFT);
		ts = (now_ts & ~((1U << XS_TS_BITS) - 1)) | tsopt;
		if ((__s32)(ts - now_ts) > 0)
			ts -= 1U << XS_TS_BITS;
		r.tsval = bpf_htonl(ts);
		r.tsecr = XS_OPT_TSVAL(opts);
		r.optlen = opts & XS_OPT_HAS_WS ? XS_OPTLEN_TS_WS :
						  XS_OPTLEN_TS;
	} else {
		/* No TSval to carry window scale and SACK-permitted in, so
		 * offer neither, as Linux does for a cookie SYN-ACK: a
		 * server that later rebuilds the connection from the cookie
		 * could not know the client's scale, and both ends would
		 * disagree on the window.
		 */
		r.optlen = XS_OPTLEN_MSS;
	}
	if (xs_reply_write(ctx, &r, frame_len))
		return XS_V(XDP_DROP, XS_R_REPLY_FAILED);
	return XS_V(XDP_TX, XS_R_SYN_COOKIE_SENT);
}

/* Does this ACK acknowledge one of our cookies (ack - 1, under the key its
 * slot bit names)? One SipHash.
 */
static __always_inline int xs_ack_cookie_ok(const struct xs_l3 *l3,
					    struct tcphdr *th)
{
	__u32 cookie = bpf_ntohl(th->ack_seq) - 1;
	const struct xs_key *key = xs_slot_key(cookie);
	__u32 isn_be = bpf_htonl(bpf_ntohl(th->seq) - 1);
	__u32 ports = (__u32)th->source | (__u32)th->dest << 16;
	__u32 mss_idx = cookie & XS_COOKIE_MSS_MASK;
	__u32 hash;

	if (!key)
		return 0;
	if (l3->v6) {
		struct ipv6hdr *ip6 = l3->iph;

		hash = xs_hash6(key, ip6->saddr.in6_u.u6_addr32,
				ip6->daddr.in6_u.u6_addr32, ports, isn_be,
				mss_idx);
	} else {
		struct iphdr *iph = l3->iph;

		hash = xs_hash4(key, iph->saddr, iph->daddr, ports, isn_be,
				mss_idx);
	}
	return ((hash ^ cookie) & XS_COOKIE_HASH_MASK) == 0;
}

/* Reset mode's answer to a valid handshake ACK: an RST that takes its
 * sequence number from the ACK (RFC 9293 3.10.7.1), so the client drops
 * the connection and, connecting again, finds itself verified.
 */
static __always_inline __u32 xs_ack_reset(struct xdp_md *ctx,
					  const struct xs_l3 *l3,
					  struct tcphdr *th, __u32 frame_len)
{
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
	r.seq = th->ack_seq;
	r.ack = 0;
	r.l3off = l3->l3off;
	r.v6 = l3->v6;
	r.flags = XS_TCP_RST;
	r.window = 0;
	r.optlen = XS_OPTLEN_NONE;
	if (xs_reply_write(ctx, &r, frame_len))
		return XS_V(XDP_DROP, XS_R_REPLY_FAILED);
	return XS_V(XDP_TX, XS_R_ACK_VALID);
}

/* The client's TSval and TSecr (host order) from a non-SYN segment; 0 when
 * it carries no timestamps option. The layout Linux, BSD and Windows send
 * (NOP NOP TS, 12 bytes) is two compares; anything else is the general walk.
 */
static __always_inline int xs_ack_timestamps(struct xdp_md *ctx,
					     struct tcphdr *th, __u64 l4off,
					     __u32 *tsval, __u32 *tsecr)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u32 optlen = th->doff * 4 - sizeof(*th);
	__u8 *o = (__u8 *)(th + 1);
	__u64 off;

	if (!optlen)
		return 0;
	if (optlen == 12 && (void *)(o + 12) <= data_end &&
	    *(__u32 *)o == bpf_htonl(XS_TCPOPT_NOP << 24 | XS_TCPOPT_NOP << 16 |
				     XS_TCPOPT_TIMESTAMP << 8 | 10)) {
		*tsval = bpf_ntohl(*(__u32 *)(o + 4));
		*tsecr = bpf_ntohl(*(__u32 *)(o + 8));
		return 1;
	}
	off = xs_find_tsopt(ctx, l4off + sizeof(*th), optlen);
	if (!off || off > XS_MAX_L4_OFF + 60)
		return 0;
	o = (void *)(long)ctx->data + off;
	/* Verifier: as for th in xs_guard_tcp(), keep clang from redoing
	 * data + off after the check.
	 */
	barrier_var(o);
	if ((void *)(o + 10) > data_end)
		return 0;
	*tsval = bpf_ntohl(*(__u32 *)(o + 2));
	*tsecr = bpf_ntohl(*(__u32 *)(o + 6));
	return 1;
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
		.mss = xs_mss_of_index(cookie & XS_COOKIE_MSS_MASK, l3->v6),
		.magic = XS_META_MAGIC,
	};
	struct xs_meta *mp;
	__u32 tsopt;

	if (xs_ack_timestamps(ctx, th, l4off, &m.tsval, &m.tsecr)) {
		/* Without timestamps the SYN-ACK offered neither window
		 * scale nor SACK, so there is nothing more to decode.
		 */
		tsopt = m.tsecr & ((1U << XS_TS_BITS) - 1);
		m.opts = XS_META_TS;
		if (tsopt & XS_TS_SACK)
			m.opts |= XS_META_SACK;
		if (tsopt & XS_TS_ECN)
			m.opts |= XS_META_ECN;
		if ((tsopt & XS_TS_WSCALE_MASK) != XS_TS_WSCALE_MASK) {
			m.opts |= XS_META_WS;
			m.snd_wscale = tsopt & XS_TS_WSCALE_MASK;
		}
	}
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
	__u32 a, h, idx;

	if (l3->v6) {
		const struct ipv6hdr *ip6 = l3->iph;

		a = ip6->saddr.in6_u.u6_addr32[0] ^ ip6->saddr.in6_u.u6_addr32[1] ^
		    ip6->saddr.in6_u.u6_addr32[2] ^ ip6->saddr.in6_u.u6_addr32[3];
	} else {
		a = ((const struct iphdr *)l3->iph)->saddr;
	}
	h = (a * 0x9E3779B1U) >> (32 - XS_SEEN_BITS);	/* Fibonacci hashing */
	idx = h >> 6;
	*bit = 1ULL << (h & 63);
	return bpf_map_lookup_elem(&xs_seen, &idx);
}

/* Mark the source of a segment that passes to a socket. Not atomic: a bit
 * lost to a race on the same word is set again by the source's next segment.
 * The peers of sockets that exist at load (a TIME_WAIT above all) are
 * marked by userspace (shield.py, socket_peers()).
 */
static __always_inline void xs_seen_mark(const struct xs_l3 *l3)
{
	__u64 bit, *w = xs_seen_word(l3, &bit);

	if (w && !(*w & bit))
		*w |= bit;
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
	__u64 bit, *w = xs_seen_word(l3, &bit);

	if (!w || !(*w & bit))
		return 0;
	tlen = xs_sock_tuple(&t, l3, th);
	state = xs_sock_state(ctx, &t, tlen);
	return state && state != BPF_TCP_LISTEN;
}

/* Transparent mode, any non-SYN segment to a protected port.
 *
 * The socket lookup comes first: established traffic, the bulk of what a
 * guarded port sees, then costs one lookup and no hash. A forged ACK costs
 * the lookup and one SipHash whatever the order (it must be tried against
 * both), and a genuine handshake ACK is rare.
 */
static __always_inline __u32 xs_transparent_segment(struct xdp_md *ctx,
						    const struct xs_l3 *l3,
						    struct tcphdr *th,
						    __u64 l4off)
{
	struct bpf_sock_tuple t;
	__u32 tlen, state;

	tlen = xs_sock_tuple(&t, l3, th);
	state = xs_sock_state(ctx, &t, tlen);
	/* Established, closing, time-wait or a request socket: the kernel's
	 * own state machine judges it.
	 */
	if (state && state != BPF_TCP_LISTEN) {
		xs_seen_mark(l3);
		return XS_V(XDP_PASS, XS_R_ESTABLISHED_PASS);
	}
	if ((XS_TCP_FLAGS(th) & (XS_TCP_SYN | XS_TCP_ACK | XS_TCP_RST)) !=
	    XS_TCP_ACK)
		return XS_V(XDP_DROP, XS_R_NOT_VERIFIED);
	if (!xs_ack_cookie_ok(l3, th))
		return XS_V(XDP_DROP, XS_R_ACK_INVALID);
	return xs_ack_pass_meta(ctx, l3, th, l4off);
}

/* A TCP segment to a protected port.
 *
 * Verifier: a global (non-static, noinline) function, verified once. Inlined,
 * the SipHash and reply code was re-verified for every distinct way of
 * reaching it (each VLAN depth, IPv4 header length and IPv6 extension-header
 * chain leaves a different packet-pointer state, so nothing prunes) and the
 * program passed a million instructions. The caller hands over plain
 * offsets; the pointers are re-derived and re-checked here.
 */
__attribute__((noinline)) __u32 xs_guard_tcp(struct xdp_md *ctx, __u64 l3off,
					      __u64 l4off, __u64 v6)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 frame_len = data_end - data;
	struct xs_verified *v;
	struct tcphdr *th;
	struct xs_vkey vk;
	struct xs_l3 l3;
	__u64 now;
	__u8 flags;

	/* The caller parsed all this; the bounds are restated for the
	 * verifier, which sees this function apart from its caller.
	 */
	if (l3off > 14 + 4 * XS_MAX_VLAN || l4off > XS_MAX_L4_OFF)
		return XS_V(XDP_DROP, XS_R_MALFORMED);
	l3.iph = data + l3off;
	barrier_var(l3.iph);
	l3.l3off = l3off;
	l3.v6 = !!v6;
	if (l3.v6) {
		if (l3.iph + sizeof(struct ipv6hdr) > data_end)
			return XS_V(XDP_DROP, XS_R_MALFORMED);
	} else {
		if (l3.iph + sizeof(struct iphdr) > data_end)
			return XS_V(XDP_DROP, XS_R_MALFORMED);
	}
	th = data + l4off;
	/* Verifier: without the barrier clang recomputes data + l4off at
	 * later uses, and the recomputed pointer has lost the bounds check.
	 */
	barrier_var(th);
	if ((void *)(th + 1) > data_end)
		return XS_V(XDP_DROP, XS_R_MALFORMED);

	flags = XS_TCP_FLAGS(th) & XS_HANDSHAKE_MASK;
	if (xs_transparent) {
		if (flags != XS_TCP_SYN)
			return xs_transparent_segment(ctx, &l3, th, l4off);
		if (xs_socket_exists(ctx, &l3, th))
			return XS_V(XDP_PASS, XS_R_SYN_EXISTING_SOCKET);
		return xs_syn_cookie(ctx, &l3, th, data_end, frame_len);
	}
	xs_vkey_of(&vk, &l3);
	now = xs_now();
	v = xs_verified_get(&vk, now);

	if (flags == XS_TCP_SYN) {
		/* A verified source opens connections until its budget is
		 * spent; then it is asked for a cookie again.
		 * XXX: the decrement is not atomic; SYNs racing on several
		 * CPUs may each spend the last unit (at most one extra
		 * connection per CPU), the price of no atomics here.
		 */
		if (v && v->budget) {
			v->budget--;
			xs_verified_touch(v, now);
			return XS_V(XDP_PASS, XS_R_VERIFIED_PASS);
		}
		return xs_syn_cookie(ctx, &l3, th, data_end, frame_len);
	}

	if (flags == XS_TCP_ACK) {
		if (v) {
			/* Verified: an ACK of an established connection.
			 * Only a source whose budget is spent can be
			 * finishing a cookie handshake; only then is a
			 * cookie check worth a hash.
			 */
			if (v->budget || !xs_ack_cookie_ok(&l3, th)) {
				xs_verified_touch(v, now);
				return XS_V(XDP_PASS, XS_R_VERIFIED_PASS);
			}
		} else if (!xs_ack_cookie_ok(&l3, th)) {
			return XS_V(XDP_DROP, XS_R_ACK_INVALID);
		}
		xs_verified_add(&vk, now);
		return xs_ack_reset(ctx, &l3, th, frame_len);
	}

	if (v) {
		xs_verified_touch(v, now);
		return XS_V(XDP_PASS, XS_R_VERIFIED_PASS);
	}
	return XS_V(XDP_DROP, XS_R_NOT_VERIFIED);
}

#endif
