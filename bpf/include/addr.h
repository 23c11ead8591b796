/* SPDX-License-Identifier: GPL-2.0 */
/* Addresses and bitsets as every table keys them: IPv4 as ::ffff:a.b.c.d,
 * prefixes masked word by word, one bit per port, type or protocol.
 */
#ifndef XDPSHIELD_ADDR_H
#define XDPSHIELD_ADDR_H

#include "shared.h"
#include "parse.h"

static __always_inline int xs_bit256(const __u64 *bits, __u32 n)
{
	return (bits[(n >> 6) & 3] >> (n & 63)) & 1;
}

static __always_inline int xs_portset_has(const struct xs_portset *ps,
					  __u16 port_be)
{
	__u32 port = bpf_ntohs(port_be) & 0xffff;

	return (ps->bits[port >> 6] >> (port & 63)) & 1;
}

/* An address as 16 bytes, IPv4 as ::ffff:a.b.c.d (the key form of every
 * table that holds both families).
 */
static __always_inline void xs_addr16(__u32 out[4], const void *addr, int v6)
{
	if (v6) {
		__builtin_memcpy(out, addr, 16);
	} else {
		out[0] = 0;
		out[1] = 0;
		out[2] = bpf_htonl(0xffff);
		out[3] = *(const __u32 *)addr;
	}
}

/* Network-order mask of the @plen leading bits of a 32-bit word. */
static __always_inline __u32 xs_mask32(__u32 plen)
{
	if (plen >= 32)
		return 0xffffffff;
	if (!plen)
		return 0;
	return bpf_htonl(0xffffffffU << (32 - plen));
}

/* @a (16 bytes, as xs_addr16) with all but its @plen leading bits clear. */
static __always_inline void xs_mask128(__u32 out[4], const __u32 a[4],
				       __u32 plen)
{
	__u32 w;

#pragma unroll
	for (w = 0; w < 4; w++)
		out[w] = a[w] & xs_mask32(plen > w * 32 ? plen - w * 32 : 0);
}

static __always_inline const void *xs_saddr(const struct xs_l3 *l3)
{
	if (l3->v6)
		return &((struct ipv6hdr *)l3->iph)->saddr;
	return &((struct iphdr *)l3->iph)->saddr;
}

static __always_inline const void *xs_daddr(const struct xs_l3 *l3)
{
	if (l3->v6)
		return &((struct ipv6hdr *)l3->iph)->daddr;
	return &((struct iphdr *)l3->iph)->daddr;
}

#endif
