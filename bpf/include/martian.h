/* SPDX-License-Identifier: GPL-2.0 */
/* What the kernel would drop unanswered, checked before the shield answers
 * a SYN in its place: martian addresses (as Linux's ip_route_input_slow()
 * and ipv6_rcv() judge them), LAND, frames not addressed to the interface,
 * and bad checksums. Every check returns 1 when the frame must be dropped.
 */
#ifndef XDPSHIELD_MARTIAN_H
#define XDPSHIELD_MARTIAN_H

#include "consts.h"
#include "maps.h"
#include "parse.h"
#include "csum.h"
#include "clock.h"
#include "flood.h"

/* The frame's destination MAC: a group address (broadcast, multicast) or,
 * once userspace told us the interface's, another host's (promiscuous
 * mode, a bridge's flooding).
 */
static __always_inline int xs_mac_not_ours(struct xdp_md *ctx)
{
	const __u8 *dst = (void *)(long)ctx->data;
	const struct xs_ifinfo *ifi;
	__u32 zero = 0;

	if ((void *)(dst + 6) > (void *)(long)ctx->data_end)
		return 1;
	if (dst[0] & 1)
		return 1;
	ifi = bpf_map_lookup_elem(&xs_ifinfo, &zero);
	if (!ifi || !ifi->has_mac)
		return 0;
	return *(const __u32 *)dst != *(const __u32 *)ifi->mac ||
	       *(const __u16 *)(dst + 4) != *(const __u16 *)(ifi->mac + 4);
}

/* What xs_local says of an address (0: not local). */
static __always_inline __u32 xs_local_lookup(const struct xs_vkey *k)
{
	__u32 *kind = bpf_map_lookup_elem(&xs_local, k);

	return kind ? *kind : 0;
}

/* xs_local_lookup() of a destination through this CPU's one-entry cache: a
 * flood aims at one address, and a hash lookup of 16 bytes costs a sixth of
 * the SYN path.
 */
static __always_inline __u32 xs_local_kind(const struct xs_vkey *k, __u64 now)
{
	struct xs_cpu_state *st = xs_cache(now);
	__u32 kind;

	if (st && st->dst_valid && st->dst[0] == k->addr[0] &&
	    st->dst[1] == k->addr[1] && st->dst[2] == k->addr[2] &&
	    st->dst[3] == k->addr[3])
		return st->dst_kind;
	kind = xs_local_lookup(k);
	if (st) {
		__builtin_memcpy(st->dst, k->addr, 16);
		st->dst_kind = kind;
		st->dst_valid = 1;
	}
	return kind;
}

static __always_inline int xs_martian4(__u32 saddr_be, __u32 daddr_be,
				       int need_local, __u64 now)
{
	__u32 s = bpf_ntohl(saddr_be), d = bpf_ntohl(daddr_be);
	struct xs_vkey k = { .addr = { 0, 0, bpf_htonl(0xffff) } };
	__u32 kind;

	/* 0/8, 127/8, 224/4 (multicast) and 255.255.255.255 as a source;
	 * as a destination the same and 240/4 (the kernel has no route).
	 */
	if ((s >> 24) == 0 || (s >> 24) == 127 || (s >> 28) == 0xe ||
	    s == 0xffffffff)
		return 1;
	if ((d >> 24) == 0 || (d >> 24) == 127 || d >= 0xe0000000)
		return 1;
	if (s == d)	/* LAND */
		return 1;
	if (!xs_local_known)
		return 0;
	/* A local subnet's broadcast as the source: every broadcast address
	 * of a prefix up to /30 ends in binary 11, so only those sources pay
	 * a lookup (uncached: a flood's sources vary).
	 * XXX: a source that is another of our own addresses is not looked
	 * up (LAND, the same address both ways, is caught above).
	 */
	if ((s & 3) == 3) {
		k.addr[3] = saddr_be;
		if (xs_local_lookup(&k) == XS_LOCAL_BROADCAST)
			return 1;
	}
	k.addr[3] = daddr_be;
	kind = xs_local_kind(&k, now);
	return kind == XS_LOCAL_BROADCAST || (need_local && !kind);
}

/* ::, ::1 and ::ffff:0:0/96 (IPv4-mapped: RFC 4291 2.5.5.2, never on the
 * wire).
 */
static __always_inline int xs_v6_special(const __u32 *a)
{
	if (a[0] || a[1])
		return 0;
	if (a[2] == bpf_htonl(0xffff))
		return 1;
	return !a[2] && (!a[3] || a[3] == bpf_htonl(1));
}

static __always_inline int xs_martian6(const struct ipv6hdr *ip6,
				       int need_local, __u64 now)
{
	const __u32 *s = ip6->saddr.in6_u.u6_addr32;
	const __u32 *d = ip6->daddr.in6_u.u6_addr32;
	struct xs_vkey k;
	__u32 kind;

	/* Multicast (ff00::/8) either way. */
	if ((s[0] & bpf_htonl(0xff000000)) == bpf_htonl(0xff000000) ||
	    (d[0] & bpf_htonl(0xff000000)) == bpf_htonl(0xff000000))
		return 1;
	if (xs_v6_special(s) || xs_v6_special(d))
		return 1;
	if (s[0] == d[0] && s[1] == d[1] && s[2] == d[2] && s[3] == d[3])
		return 1;	/* LAND */
	if (!xs_local_known)
		return 0;
	__builtin_memcpy(k.addr, d, 16);
	kind = xs_local_kind(&k, now);
	return need_local && kind != XS_LOCAL_UNICAST;
}

/* A SYN the kernel would drop without an answer. @need_local: the shield
 * stands for the host's own sockets (transparent mode), so a destination
 * that is not one of its addresses is not ours to answer.
 */
static __always_inline int xs_martian(struct xdp_md *ctx,
				      const struct xs_l3 *l3, int need_local,
				      __u64 now)
{
	if (xs_mac_not_ours(ctx))
		return 1;
	if (l3->v6)
		return xs_martian6(l3->iph, need_local, now);
	return xs_martian4(((const struct iphdr *)l3->iph)->saddr,
			   ((const struct iphdr *)l3->iph)->daddr, need_local,
			   now);
}

/* Is the destination one of this namespace's unicast addresses? Only
 * meaningful once xs_local is filled (xs_local_known).
 */
static __always_inline int xs_dst_local(const struct xs_l3 *l3, __u64 now)
{
	struct xs_vkey k = { .addr = { 0, 0, bpf_htonl(0xffff) } };

	if (!xs_local_known)
		return 0;
	if (l3->v6)
		__builtin_memcpy(k.addr,
				 &((const struct ipv6hdr *)l3->iph)->daddr, 16);
	else
		k.addr[3] = ((const struct iphdr *)l3->iph)->daddr;
	return xs_local_kind(&k, now) == XS_LOCAL_UNICAST;
}

/* The one's-complement sum of @n bytes at p on top of @sum, folded: 0 when
 * the checksum in them is right.
 */
#define XS_CSUM_CASE(n)							\
	case n:								\
		if ((void *)(p + n) > data_end)				\
			return 0;					\
		/* Verifier: keep clang from merging the cases' checks */ \
		barrier_var(p);						\
		return xs_csum_fold(sum + xs_sum_words(p, n / 4)) == 0;

/* The sum of @n (a constant, at most 15) 32-bit words at @p, the caller
 * having checked they are in the packet: loads at constant offsets, cheaper
 * here than both a loop and the bpf_csum_diff() helper (measured). Spelled
 * out, where clang kept a "#pragma unroll" loop a loop (10 ns of a SYN's
 * cost), and added in pairs, so that the adds do not wait on one another.
 */
static __always_inline __u64 xs_sum_words(const __u8 *p, const int n)
{
	const __u32 *w = (const __u32 *)p;

#define XS_W(i) ((i) < n ? (__u64)w[i] : 0)
	return ((XS_W(0) + XS_W(1)) + (XS_W(2) + XS_W(3))) +
	       ((XS_W(4) + XS_W(5)) + (XS_W(6) + XS_W(7))) +
	       ((XS_W(8) + XS_W(9)) + (XS_W(10) + XS_W(11))) +
	       (XS_W(12) + XS_W(13) + XS_W(14));
#undef XS_W
}

/* Does an IPv4 header of @words 32-bit words (at most 15) sum right? */
static __always_inline int xs_ip4_header_ok(__u8 *p, void *data_end,
					    __u32 words)
{
	__u64 sum = 0;
	__u32 i;

	/* Without options (the usual case) at constant offsets. */
	if (words == 5) {
		if ((void *)(p + 20) > data_end)
			return 0;
		barrier_var(p);
		sum = xs_sum_words(p, 5);
	}
	for (i = 0; i < 15 && words != 5; i++) {
		/* Verifier: an opaque index keeps clang from turning the
		 * bound checks into arithmetic on data_end.
		 */
		asm volatile("%[i] &= 0xf" : [i] "+r"(i));
		if (i >= words)
			break;
		if ((void *)(p + i * 4 + 4) > data_end)
			return 0;
		sum += *(__u32 *)(p + i * 4);
	}
	return xs_csum_fold(sum) == 0;
}

/* Does the segment of @len bytes at @l4off sum right on top of @sum (the
 * pseudo-header)? Any length: a word loop, then the last 1 to 3 bytes
 * zero-padded to a word. The loop masks its offset (see xs_tcpopt_walk())
 * so its states stay few.
 */
static __always_inline int xs_sum_segment(struct xdp_md *ctx, __u64 l4off,
					  __u64 len, __u64 sum)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 off = l4off, stop = l4off + (len & ~3ULL);
	__u8 *p;
	__u32 i;

	for (i = 0; i < XS_CSUM_MAX / 4; i++) {
		asm volatile("%[off] &= 0xfff" : [off] "+r"(off));
		if (off >= stop)
			break;
		p = data + off;
		if ((void *)(p + 4) > data_end)
			return 0;
		sum += *(__u32 *)p;
		off += 4;
	}
	asm volatile("%[off] &= 0xfff" : [off] "+r"(off));
	p = data + off;
	switch (len & 3) {
	case 3:
		if ((void *)(p + 3) > data_end)
			return 0;
		sum += (__u32)p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16;
		break;
	case 2:
		if ((void *)(p + 2) > data_end)
			return 0;
		sum += (__u32)p[0] | (__u32)p[1] << 8;
		break;
	case 1:
		if ((void *)(p + 1) > data_end)
			return 0;
		sum += p[0];
		break;
	}
	return xs_csum_fold(sum) == 0;
}

/* Do the IPv4 header (if any) and the TCP segment of a SYN sum right?
 * Words are summed as loaded (network order read little-endian); a
 * one's-complement sum is the same in either byte order, so a correct
 * checksum folds to zero here too.
 *
 * A TCP checksum field that holds just the pseudo-header's sum is a segment
 * whose checksum was left to offload (CHECKSUM_PARTIAL): what a local stack
 * sends over veth, which XDP sees before anything completes it. The kernel
 * takes those as good, and so do we.
 * XXX: so a crafted SYN with that field is answered; the odds that a
 * corrupted one has it are 2^-16.
 *
 * Inlined into the guard (a global function was a call, 12 ns of a SYN's
 * cost with every return paying the CPU's SRSO mitigation): the offsets
 * are re-bounded here, and the word loop masks its offset (see
 * xs_tcpopt_walk()) so its states stay few.
 */
static __always_inline int xs_syn_csum_ok(struct xdp_md *ctx, __u64 l3off,
					  __u64 l4off, __u64 v6)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 sum = 0, pseudo, len;
	__u32 i, words;
	__u16 check;
	__u8 *p;

	if (l3off > XS_MAX_L3_OFF || l4off > XS_MAX_L4_OFF)
		return 0;
	p = data + l3off;
	if (v6) {
		struct ipv6hdr *ip6 = (void *)p;

		if ((void *)(ip6 + 1) > data_end)
			return 0;
		/* The payload length less any extension headers. */
		len = bpf_ntohs(ip6->payload_len) + l3off + sizeof(*ip6);
		if (len < l4off)
			return 0;
		len -= l4off;
#pragma unroll
		for (i = 0; i < 4; i++)
			sum += (__u64)ip6->saddr.in6_u.u6_addr32[i] +
			       ip6->daddr.in6_u.u6_addr32[i];
	} else {
		struct iphdr *iph = (void *)p;

		if ((void *)(iph + 1) > data_end)
			return 0;
		len = bpf_ntohs(iph->tot_len);
		words = iph->ihl;
		if (len < words * 4)
			return 0;
		len -= words * 4;
		if (!xs_ip4_header_ok(p, data_end, words))
			return 0;
		sum = (__u64)iph->saddr + iph->daddr;
	}
	/* XXX: a SYN longer than XS_CSUM_MAX (jumbo TCP Fast Open data) is
	 * answered unchecked, as before.
	 */
	if (len > XS_CSUM_MAX)
		return 1;
	pseudo = sum + bpf_htonl(IPPROTO_TCP << 16 | (__u32)len);
	sum = pseudo;
	p = data + l4off;
	if ((void *)(p + sizeof(struct tcphdr)) > data_end)
		return 0;
	check = ((struct tcphdr *)p)->check;
	if (check == (__u16)~xs_csum_fold(pseudo))
		return 1;	/* left to offload */
	/* A SYN without data, the usual case: one case per header length,
	 * each summed at constant offsets after one bounds check.
	 */
	switch (len) {
	XS_CSUM_CASE(20)
	XS_CSUM_CASE(24)
	XS_CSUM_CASE(28)
	XS_CSUM_CASE(32)
	XS_CSUM_CASE(36)
	XS_CSUM_CASE(40)
	XS_CSUM_CASE(44)
	XS_CSUM_CASE(48)
	XS_CSUM_CASE(52)
	XS_CSUM_CASE(56)
	XS_CSUM_CASE(60)
	default:
		break;
	}
	return xs_sum_segment(ctx, l4off, len, sum);
}

#endif
