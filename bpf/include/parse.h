/* SPDX-License-Identifier: GPL-2.0 */
/* Header parsing through a cursor. Each xs_parse_*() bounds-checks what it
 * reads against data_end, advances the cursor past the header, and returns
 * the next protocol, or -1 when the frame is malformed (truncated, or a
 * length field that points past the frame).
 */
#ifndef XDPSHIELD_PARSE_H
#define XDPSHIELD_PARSE_H

#include "consts.h"

struct xs_cursor {
	void *pos;
	void *end;
};

/* What the IP layer tells the L4 parsers. */
struct xs_l3 {
	void *iph;		/* struct iphdr or struct ipv6hdr */
	__u32 l4len;		/* bytes of L4 header + payload the IP header claims */
	__u16 l3off;		/* offset of the IP header in the frame */
	__u8 v6;
	__u8 nonfirst;		/* a non-first fragment: no L4 header here */
	__u8 first_frag;	/* first fragment of several (more follow) */
};

/* The socket lookup key of a segment as the kernel sees it arrive (source
 * is the peer); returns the tuple's length for bpf_skc_lookup_tcp(). Shared
 * by XDP (established check) and tc (listener for the handoff).
 */
static __always_inline __u32 xs_sock_tuple(struct bpf_sock_tuple *t,
					    const struct xs_l3 *l3,
					    const struct tcphdr *th)
{
	if (l3->v6) {
		const struct ipv6hdr *ip6 = l3->iph;

		__builtin_memcpy(t->ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(t->ipv6.daddr, &ip6->daddr, 16);
		t->ipv6.sport = th->source;
		t->ipv6.dport = th->dest;
		return sizeof(t->ipv6);
	} else {
		const struct iphdr *iph = l3->iph;

		t->ipv4.saddr = iph->saddr;
		t->ipv4.daddr = iph->daddr;
		t->ipv4.sport = th->source;
		t->ipv4.dport = th->dest;
		return sizeof(t->ipv4);
	}
}

/* The state of the socket tuple @t names (the listener when only one
 * matches), or 0 when none. Only the state is wanted, so the reference is
 * dropped at once. @ctx: the XDP or tc context.
 */
static __always_inline __u32 xs_sock_state(void *ctx, struct bpf_sock_tuple *t,
					   __u32 tlen)
{
	struct bpf_sock *sk;
	__u32 state;

	sk = bpf_skc_lookup_tcp(ctx, t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	state = sk->state;
	bpf_sk_release(sk);
	return state;
}

/* Ethernet and up to XS_MAX_VLAN tags; returns the ethertype (network order).
 * A deeper tag comes back as its ethertype (the caller drops it: an IP
 * packet could hide behind it).
 */
static __always_inline int xs_parse_eth(struct xs_cursor *c)
{
	struct ethhdr *eth = c->pos;
	struct vlan_hdr *vh;
	__u16 proto;
	int i;

	if ((void *)(eth + 1) > c->end)
		return -1;
	c->pos = eth + 1;
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < XS_MAX_VLAN; i++) {
		if (proto != bpf_htons(XS_ETH_P_8021Q) &&
		    proto != bpf_htons(XS_ETH_P_8021AD))
			break;
		vh = c->pos;
		if ((void *)(vh + 1) > c->end)
			return -1;
		proto = vh->h_vlan_encapsulated_proto;
		c->pos = vh + 1;
	}
	return proto;
}

/* IPv4 with options; returns the L4 protocol. tot_len may be shorter than
 * the frame (Ethernet pads to 60 bytes): only longer is malformed.
 */
static __always_inline int xs_parse_ipv4(struct xs_cursor *c, struct xs_l3 *l3)
{
	struct iphdr *iph = c->pos;
	__u32 hlen, tot;
	__u16 frag;

	if ((void *)(iph + 1) > c->end)
		return -1;
	if (iph->version != 4 || iph->ihl < 5)
		return -1;
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen || (void *)iph + tot > c->end)
		return -1;
	frag = bpf_ntohs(iph->frag_off);
	l3->iph = iph;
	l3->v6 = 0;
	l3->l4len = tot - hlen;
	l3->nonfirst = (frag & XS_IP_OFFMASK) != 0;
	l3->first_frag = !l3->nonfirst && (frag & XS_IP_MF);
	c->pos = (void *)iph + hlen;
	return iph->protocol;
}

/* IPv6 and a bounded walk of its extension headers; returns the upper-layer
 * protocol. A chain longer than XS_MAX_EXTHDR is malformed for us: no real
 * stack sends one, and passing it unparsed would let a SYN hide behind it.
 */
static __always_inline int xs_parse_ipv6(struct xs_cursor *c, struct xs_l3 *l3)
{
	struct ipv6hdr *ip6 = c->pos;
	struct ipv6_opt_hdr *oh;
	struct frag_hdr *fh;
	__u32 plen, hlen;
	int nexthdr, i;

	if ((void *)(ip6 + 1) > c->end)
		return -1;
	if (ip6->version != 6)
		return -1;
	plen = bpf_ntohs(ip6->payload_len);
	if ((void *)(ip6 + 1) + plen > c->end)
		return -1;
	l3->iph = ip6;
	l3->v6 = 1;
	l3->nonfirst = 0;
	l3->first_frag = 0;
	nexthdr = ip6->nexthdr;
	c->pos = ip6 + 1;
	/* One step per extension header and one for the upper layer. */
#pragma unroll
	for (i = 0; i < XS_MAX_EXTHDR + 1; i++) {
		switch (nexthdr) {
		case XS_IPPROTO_HOPOPTS:
		case XS_IPPROTO_ROUTING:
		case XS_IPPROTO_DSTOPTS:
		case XS_IPPROTO_AH:
			oh = c->pos;
			/* Every extension header is at least 8 bytes. */
			if (c->pos + 8 > c->end || plen < 8)
				return -1;
			if (nexthdr == XS_IPPROTO_AH)
				hlen = (oh->hdrlen + 2) * 4;
			else
				hlen = (oh->hdrlen + 1) * 8;
			if (hlen > plen)
				return -1;
			nexthdr = oh->nexthdr;
			c->pos += hlen;
			plen -= hlen;
			break;
		case XS_IPPROTO_FRAGMENT:
			fh = c->pos;
			if ((void *)(fh + 1) > c->end || plen < sizeof(*fh))
				return -1;
			nexthdr = fh->nexthdr;
			c->pos = fh + 1;
			plen -= sizeof(*fh);
			/* frag_off: offset in the top 13 bits, M in bit 0. */
			if (fh->frag_off & bpf_htons(0xfff8)) {
				l3->nonfirst = 1;
				l3->l4len = plen;
				return nexthdr;
			}
			if (fh->frag_off & bpf_htons(1))
				l3->first_frag = 1;
			break;
		default:
			l3->l4len = plen;
			return nexthdr;
		}
	}
	return -1;
}

/* UDP: the header fits, and its length is sane. A first fragment carries
 * only part of the datagram, so its length may exceed what is here.
 */
static __always_inline int xs_parse_udp(struct xs_cursor *c,
					const struct xs_l3 *l3)
{
	struct udphdr *uh = c->pos;
	__u32 ulen;

	if ((void *)(uh + 1) > c->end || l3->l4len < sizeof(*uh))
		return -1;
	ulen = bpf_ntohs(uh->len);
	if (ulen < sizeof(*uh))
		return -1;
	if (ulen > l3->l4len && !l3->first_frag)
		return -1;
	c->pos = uh + 1;
	return 0;
}

/* ICMP and ICMPv6: type, code, checksum and the 4-byte rest of header. */
static __always_inline int xs_parse_icmp(struct xs_cursor *c,
					 const struct xs_l3 *l3)
{
	if (c->pos + 8 > c->end || l3->l4len < 8)
		return -1;
	c->pos += 8;
	return 0;
}

/* TCP: the fixed header and its options fit inside what IP claims. */
static __always_inline struct tcphdr *xs_parse_tcp(struct xs_cursor *c,
						   const struct xs_l3 *l3)
{
	struct tcphdr *th = c->pos;

	if ((void *)(th + 1) > c->end || l3->l4len < sizeof(*th))
		return NULL;
	if (th->doff < 5 || th->doff * 4U > l3->l4len)
		return NULL;
	c->pos = th + 1;
	return th;
}

#endif

#ifndef XDPSHIELD_TCPOPTS
#define XDPSHIELD_TCPOPTS
/* What xs_parse_tcpopts() found, packed in one __u64 so the global function
 * below needs no pointer argument (a global subprogram's pointer arguments
 * are verified as maybe-NULL memory; a scalar return is simpler and free).
 */
#define XS_OPT_MSS(o)		((__u32)((o) & 0xffff))
#define XS_OPT_WS(o)		((__u32)(((o) >> 16) & 0xff))
#define XS_OPT_HAS_MSS		(1ULL << 24)
#define XS_OPT_HAS_WS		(1ULL << 25)
#define XS_OPT_SACK		(1ULL << 26)
#define XS_OPT_TS		(1ULL << 27)
#define XS_OPT_TSVAL(o)		((__u32)((o) >> 32))	/* network order */

/* The general TCP option walk, for SYNs whose options are not in the layout
 * the fast path in guard.h recognises. It follows Linux's
 * tcp_parse_options(): stop at EOL, at an option shorter than 2 bytes or
 * running past the header; a later duplicate wins; MSS 0 is ignored; window
 * scale is capped at 14.
 *
 * Verifier: inlined into every caller, this loop of up to 40 steps was
 * re-verified for every path reaching it and blew the instruction budget. As
 * a global (non-static, noinline) function it is verified once, on its own.
 * The option offset is a __u64 bounded on entry (so packet pointer arithmetic
 * stays within the verifier's limits), every read is compared with
 * data_end, and the step count is bounded by the 40 bytes options can take.
 */
__attribute__((noinline)) __u64 xs_parse_tcpopts(struct xdp_md *ctx,
						   __u64 off, __u64 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 stop, res = 0;
	__u32 kind, olen;
	__u8 *p;
	int i;

	if (off > 0x3fff || len > XS_TCPOPT_MAXLEN)
		return 0;
	stop = off + len;
	for (i = 0; i < XS_TCPOPT_MAXLEN; i++) {
		/* Verifier: each way through the previous step (NOP, MSS,
		 * window scale, ...) leaves off with a different lower bound,
		 * so the states never prune and the steps multiply (about a
		 * million instructions, most of a second to load). Masking
		 * off in asm, where clang cannot drop the no-op, leaves every
		 * path with the same [0, 0x7fff] and one state per step.
		 */
		asm volatile("%[off] &= 0x7fff" : [off] "+r"(off));
		if (off >= stop)
			break;
		p = data + off;
		if ((void *)(p + 1) > data_end)
			break;
		kind = p[0];
		if (kind == XS_TCPOPT_EOL)
			break;
		if (kind == XS_TCPOPT_NOP) {
			off++;
			continue;
		}
		if (off + 2 > stop || (void *)(p + 2) > data_end)
			break;
		olen = p[1];
		if (olen < 2 || off + olen > stop)
			break;
		if (kind == XS_TCPOPT_MSS && olen == 4) {
			if ((void *)(p + 4) > data_end)
				break;
			kind = (__u32)p[2] << 8 | p[3];
			if (kind) {
				res &= ~0xffffULL;
				res |= kind | XS_OPT_HAS_MSS;
			}
		} else if (kind == XS_TCPOPT_WSCALE && olen == 3) {
			if ((void *)(p + 3) > data_end)
				break;
			kind = p[2] > XS_MAX_WSCALE ? XS_MAX_WSCALE : p[2];
			res &= ~0xff0000ULL;
			res |= (__u64)kind << 16 | XS_OPT_HAS_WS;
		} else if (kind == XS_TCPOPT_SACK_PERM && olen == 2) {
			res |= XS_OPT_SACK;
		} else if (kind == XS_TCPOPT_TIMESTAMP && olen == 10) {
			if ((void *)(p + 10) > data_end)
				break;
			res &= 0xffffffffULL;
			res |= (__u64)*(__u32 *)(p + 2) << 32 | XS_OPT_TS;
		}
		off += olen;
	}
	return res;
}

/* Where the timestamps option of a non-SYN segment starts (frame offset), or
 * 0. For the ACKs whose options are not the NOP NOP TS layout every common
 * stack sends; the walk and its verifier notes are xs_parse_tcpopts()'s.
 * Like Linux, a later duplicate wins.
 */
__attribute__((noinline)) __u64 xs_find_tsopt(struct xdp_md *ctx, __u64 off,
					      __u64 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 stop, found = 0;
	__u32 kind, olen;
	__u8 *p;
	int i;

	if (off > 0x3fff || len > XS_TCPOPT_MAXLEN)
		return 0;
	stop = off + len;
	for (i = 0; i < XS_TCPOPT_MAXLEN; i++) {
		asm volatile("%[off] &= 0x7fff" : [off] "+r"(off));
		if (off >= stop)
			break;
		p = data + off;
		if ((void *)(p + 1) > data_end)
			break;
		kind = p[0];
		if (kind == XS_TCPOPT_EOL)
			break;
		if (kind == XS_TCPOPT_NOP) {
			off++;
			continue;
		}
		if (off + 2 > stop || (void *)(p + 2) > data_end)
			break;
		olen = p[1];
		if (olen < 2 || off + olen > stop)
			break;
		if (kind == XS_TCPOPT_TIMESTAMP && olen == 10)
			found = off;
		off += olen;
	}
	return found;
}
#endif
