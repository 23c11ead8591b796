/* SPDX-License-Identifier: GPL-2.0 */
/* Replies built in place: the cookie SYN-ACK and the RST of reset mode.
 *
 * Everything a reply needs is first copied out of the frame into struct
 * xs_reply; then the frame is resized to exactly the reply's length (this
 * also drops any payload and Ethernet padding), and the IP and TCP headers
 * are written afresh after the untouched VLAN tags. Writing fresh headers
 * instead of editing the received ones is what drops IPv4 options and IPv6
 * extension headers, and lets the checksums be computed over known bytes.
 */
#ifndef XDPSHIELD_REPLY_H
#define XDPSHIELD_REPLY_H

#include "consts.h"
#include "csum.h"

/* Layouts of the reply's TCP options (bytes): none, MSS, MSS + SACK-permitted
 * or NOP NOP + timestamps, and that + NOP + window scale. The order is
 * Linux's, so a reply looks like the kernel's own SYN-ACK.
 */
#define XS_OPTLEN_NONE		0
#define XS_OPTLEN_MSS		4
#define XS_OPTLEN_TS		16
#define XS_OPTLEN_TS_WS		20

struct xs_reply {
	__u32 saddr[4];		/* as received; the reply swaps them */
	__u32 daddr[4];
	__u16 sport;		/* as received, network order */
	__u16 dport;
	__u32 seq;		/* the reply's, network order */
	__u32 ack;
	__u32 tsval;		/* network order */
	__u32 tsecr;
	__u16 l3off;
	__u16 mss;		/* host order */
	__u8 v6;
	__u8 flags;
	__u8 optlen;
	__u8 sack;
	__u8 wscale;
	__u8 pad[3];
	__u16 window;		/* host order */
};

/* Swap the MACs; VLAN tags and ethertypes stay as they are. Word loads and
 * stores: __builtin_memcpy on a packet pointer of unknown alignment becomes
 * 48 byte-wide instructions.
 */
static __always_inline int xs_reply_macs(void *data, void *data_end)
{
	__u32 mac[3];

	if (data + 14 > data_end)
		return -1;
	mac[0] = *(__u32 *)data;
	mac[1] = *(__u32 *)(data + 4);
	mac[2] = *(__u32 *)(data + 8);
	/* bytes 0..5 = dst, 6..11 = src (little-endian words) */
	*(__u32 *)data = mac[1] >> 16 | mac[2] << 16;
	*(__u16 *)(data + 4) = mac[2] >> 16;
	*(__u16 *)(data + 6) = mac[0];
	*(__u32 *)(data + 8) = mac[0] >> 16 | mac[1] << 16;
	return 0;
}

/* The reply's IPv6 header at @l3, addresses swapped. Returns where the TCP
 * header goes, with the pseudo-header's sum in *@sum; NULL when the header
 * does not fit.
 */
static __always_inline struct tcphdr *
xs_reply_ipv6(void *l3, void *data_end, const struct xs_reply *r,
	      __u32 tcplen, __u64 *sum)
{
	struct ipv6hdr *ip6 = l3;
	__u64 s;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return NULL;
	*(__u32 *)ip6 = bpf_htonl(0x60000000);
	ip6->payload_len = bpf_htons(tcplen);
	ip6->nexthdr = IPPROTO_TCP;
	ip6->hop_limit = XS_REPLY_TTL;
	__builtin_memcpy(&ip6->saddr, r->daddr, 16);
	__builtin_memcpy(&ip6->daddr, r->saddr, 16);
	s = bpf_htonl(tcplen) + bpf_htonl(IPPROTO_TCP);
#pragma unroll
	for (i = 0; i < 4; i++)
		s += (__u64)r->saddr[i] + r->daddr[i];
	*sum = s;
	return (void *)(ip6 + 1);
}

/* The reply's IPv4 header at @l3 (no options, DF, checksummed), addresses
 * swapped: as xs_reply_ipv6().
 */
static __always_inline struct tcphdr *
xs_reply_ipv4(void *l3, void *data_end, const struct xs_reply *r,
	      __u32 tcplen, __u64 *sum)
{
	__u32 iphlen = sizeof(struct iphdr);
	struct iphdr *iph = l3;

	if ((void *)(iph + 1) > data_end)
		return NULL;
	*(__u16 *)iph = bpf_htons(0x4500);
	iph->tot_len = bpf_htons(iphlen + tcplen);
	iph->id = 0;
	iph->frag_off = bpf_htons(XS_IP_DF);
	iph->ttl = XS_REPLY_TTL;
	iph->protocol = IPPROTO_TCP;
	iph->check = 0;
	iph->saddr = r->daddr[0];
	iph->daddr = r->saddr[0];
	/* Summed from the values written, not read back: the read-back
	 * words span narrower stores, which the CPU cannot forward, so each
	 * load waited for the stores to retire. Little-endian words, as a
	 * load of the header would give.
	 */
	iph->check = xs_csum_fold(
		(__u64)(bpf_htons(0x4500) |
			(__u32)bpf_htons(iphlen + tcplen) << 16) +
		((__u32)bpf_htons(XS_IP_DF) << 16) +
		(XS_REPLY_TTL | IPPROTO_TCP << 8) + r->saddr[0] + r->daddr[0]);
	*sum = (__u64)r->saddr[0] + r->daddr[0] +
	       bpf_htonl(IPPROTO_TCP << 16 | tcplen);
	return (void *)(iph + 1);
}

/* The reply's TCP header (checksum still 0) at @th, which the caller has
 * checked fits; returns the sum of its words.
 */
static __always_inline __u64 xs_reply_tcphdr(struct tcphdr *th,
					     const struct xs_reply *r,
					     __u32 tcplen)
{
	__u32 hw;

	th->source = r->dport;
	th->dest = r->sport;
	th->seq = r->seq;
	th->ack_seq = r->ack;
	/* Data offset and flags are one 16-bit word; bitfields would cost a
	 * read-modify-write per field.
	 */
	hw = bpf_htons((tcplen / 4) << 12 | r->flags) |
	     (__u32)bpf_htons(r->window) << 16;
	*((__u32 *)th + 3) = hw;
	th->check = 0;
	th->urg_ptr = 0;
	/* As for the IP header: every word summed from its value. */
	return (__u64)(r->dport | (__u32)r->sport << 16) + r->seq + r->ack + hw;
}

/* The reply's TCP options (r->optlen bytes at @o, a XS_OPTLEN_* layout),
 * their words added to *@sum. Returns 0, or -1 when they do not fit.
 */
static __always_inline int xs_reply_tcpopts(__u8 *o, void *data_end,
					    const struct xs_reply *r,
					    __u64 *sum)
{
	__u32 ow;

	if (r->optlen >= XS_OPTLEN_MSS) {
		if ((void *)(o + XS_OPTLEN_MSS) > data_end)
			return -1;
		ow = bpf_htonl(XS_TCPOPT_MSS << 24 | 4 << 16 | r->mss);
		*(__u32 *)o = ow;
		*sum += ow;
	}
	if (r->optlen >= XS_OPTLEN_TS) {
		if ((void *)(o + XS_OPTLEN_TS) > data_end)
			return -1;
		ow = r->sack ?
			bpf_htonl(XS_TCPOPT_SACK_PERM << 24 | 2 << 16 |
				  XS_TCPOPT_TIMESTAMP << 8 | 10) :
			bpf_htonl(XS_TCPOPT_NOP << 24 | XS_TCPOPT_NOP << 16 |
				  XS_TCPOPT_TIMESTAMP << 8 | 10);
		*(__u32 *)(o + 4) = ow;
		*(__u32 *)(o + 8) = r->tsval;
		*(__u32 *)(o + 12) = r->tsecr;
		*sum += (__u64)ow + r->tsval + r->tsecr;
	}
	if (r->optlen >= XS_OPTLEN_TS_WS) {
		if ((void *)(o + XS_OPTLEN_TS_WS) > data_end)
			return -1;
		ow = bpf_htonl(XS_TCPOPT_NOP << 24 | XS_TCPOPT_WSCALE << 16 |
			       3 << 8 | r->wscale);
		*(__u32 *)(o + 16) = ow;
		*sum += ow;
	}
	return 0;
}

/* Resize the frame to the reply and write it. Returns 0, or -1 when the
 * frame cannot be resized (the caller drops it).
 */
static __always_inline int xs_reply_write(struct xdp_md *ctx,
					  const struct xs_reply *r,
					  __u32 old_len)
{
	__u32 iphlen = r->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	__u32 tcplen = sizeof(struct tcphdr) + r->optlen;
	__u32 new_len = r->l3off + iphlen + tcplen;
	void *data, *data_end, *l3;
	struct tcphdr *th;
	__u64 sum;

	if (new_len != old_len &&
	    bpf_xdp_adjust_tail(ctx, (int)new_len - (int)old_len))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (xs_reply_macs(data, data_end))
		return -1;
	/* l3off is at most 22 (Ethernet + two tags); saying so keeps the
	 * verifier's view of the packet offsets below small and exact.
	 */
	if (r->l3off > XS_MAX_L3_OFF)
		return -1;
	l3 = data + r->l3off;
	if (r->v6)
		th = xs_reply_ipv6(l3, data_end, r, tcplen, &sum);
	else
		th = xs_reply_ipv4(l3, data_end, r, tcplen, &sum);
	if (!th || (void *)(th + 1) > data_end)
		return -1;
	sum += xs_reply_tcphdr(th, r, tcplen);
	if (xs_reply_tcpopts((__u8 *)(th + 1), data_end, r, &sum))
		return -1;
	th->check = xs_csum_fold(sum);
	return 0;
}

#endif
