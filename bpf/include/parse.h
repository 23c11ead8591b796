/* SPDX-License-Identifier: GPL-2.0 */
/* Header parsing through a cursor. Each xs_parse_*() bounds-checks what it
 * reads against data_end, advances the cursor past the header, and returns
 * the next protocol, or -1 when the frame is malformed (truncated, or a
 * length field that points past the frame). Ethernet gives the ethertype
 * (network order), IP the L4 protocol; an L4 parser, with nothing after it
 * that it knows, gives its own protocol number (IPPROTO_*), and the header
 * through an out-parameter when the caller reads it.
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
	__u32 frag_id;		/* fragments: IPv4 id or IPv6 identification
				 * (as read, network order) */
	__u8 frag_proto;	/* fragments: the protocol as every fragment
				 * names it (IPv6: the Fragment header's next
				 * header, whatever headers follow it) */
};

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
	l3->frag_id = iph->id;
	l3->frag_proto = iph->protocol;
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
			l3->frag_id = fh->identification;
			l3->frag_proto = nexthdr;
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

/* xs_parse_l3()'s answers that are not a protocol. */
#define XS_L3_NOT_IP		(-2)	/* ARP, LLDP, anything not IPv4/IPv6 */
#define XS_L3_VLAN_DEEP		(-3)	/* more VLAN tags than XS_MAX_VLAN */

/* Ethernet, its VLAN tags and IP from the frame's start @data: the L4
 * protocol (@l3 filled, l3off included), XS_L3_NOT_IP, XS_L3_VLAN_DEEP, or
 * -1 when malformed. The one parse of XDP and both tc programs.
 */
static __always_inline int xs_parse_l3(struct xs_cursor *c, struct xs_l3 *l3,
				       void *data)
{
	int proto = xs_parse_eth(c);

	if (proto < 0)
		return -1;
	l3->l3off = c->pos - data;
	if (proto == bpf_htons(XS_ETH_P_IP))
		return xs_parse_ipv4(c, l3);
	if (proto == bpf_htons(XS_ETH_P_IPV6))
		return xs_parse_ipv6(c, l3);
	if (proto == bpf_htons(XS_ETH_P_8021Q) ||
	    proto == bpf_htons(XS_ETH_P_8021AD))
		return XS_L3_VLAN_DEEP;
	return XS_L3_NOT_IP;
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
	return IPPROTO_UDP;
}

/* ICMP and ICMPv6: type, code, checksum and the 4-byte rest of header. */
static __always_inline int xs_parse_icmp(struct xs_cursor *c,
					 const struct xs_l3 *l3)
{
	if (c->pos + 8 > c->end || l3->l4len < 8)
		return -1;
	c->pos += 8;
	return l3->v6 ? XS_IPPROTO_ICMPV6 : IPPROTO_ICMP;
}

/* TCP: the fixed header and its options fit inside what IP claims. The
 * cursor stops after the fixed header (the options are tcpopt.h's); *@thp
 * is the header.
 */
static __always_inline int xs_parse_tcp(struct xs_cursor *c,
					const struct xs_l3 *l3,
					struct tcphdr **thp)
{
	struct tcphdr *th = c->pos;

	if ((void *)(th + 1) > c->end || l3->l4len < sizeof(*th))
		return -1;
	if (th->doff < 5 || th->doff * 4U > l3->l4len)
		return -1;
	c->pos = th + 1;
	*thp = th;
	return IPPROTO_TCP;
}

#endif
