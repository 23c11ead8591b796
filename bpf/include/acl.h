/* SPDX-License-Identifier: GPL-2.0 */
/* The allow and deny lists. Each list and family has two tiers: a hash of
 * exact prefixes for up to XS_ACL_TIERS prefix lengths (struct xs_psel
 * says which; Python puts the most common lengths there), and an LPM trie
 * for the rest. Keys carry the generation, so a new one is written beside
 * the live one.
 */
#ifndef XDPSHIELD_ACL_H
#define XDPSHIELD_ACL_H

#include "maps.h"
#include "parse.h"
#include "clock.h"
#include "addr.h"

static __always_inline int xs_acl_live(const struct xs_acl *a)
{
	return a && (!a->expires_ns || a->expires_ns > xs_now());
}

/* The IPv6 filter's bit of an address whose first 32 bits are @a0 (network
 * order): a multiplicative hash of that /32. policy.acl6_n() mirrors it.
 */
static __always_inline __u32 xs_acl6_n(__u32 a0)
{
	return (bpf_ntohl(a0) * 0x9e3779b1U) >> 8;
}

/* Bit @n of a filter (or of the sure bits). */
static __always_inline int xs_acl_bit(const struct xs_acl_bits *f, __u32 n)
{
	return (f->w[(n >> 6) & (XS_ACL_WORDS - 1)] >> (n & 63)) & 1;
}

/* 1 when the filter of list @which and family @v6 says no entry holds an
 * address of bit @n: one inlined array read where the tiers cost a hash
 * lookup each (a call, and a cache miss for random sources).
 */
static __always_inline int xs_acl_filtered_out(const struct xs_psel *sel,
					       __u32 which, __u32 v6, __u32 n)
{
	const struct xs_acl_bits *f;
	__u32 slot = XS_ACL_SLOT(which, v6);

	if (!(sel->acl_filt & (1U << slot)))
		return 0;
	f = bpf_map_lookup_elem(&xs_acl_bits, &slot);
	return f && !xs_acl_bit(f, n);
}

/* 1 when the deny list surely holds the IPv4 /24 of bit @n (xs_acl_sure). */
static __always_inline int xs_deny_sure(__u32 n)
{
	const struct xs_acl_bits *f;
	__u32 zero = 0;

	f = bpf_map_lookup_elem(&xs_acl_sure, &zero);
	return f && xs_acl_bit(f, n);
}

/* 1 when a live entry of the list contains the source of @l3. @which: 0
 * allow, 1 deny; @h4/@h6 and @t4/@t6 its hash tiers and tries.
 *
 * XXX: in the trie an expired entry still shadows a shorter live one that
 * contains it until the daemon deletes it (within a second): the trie
 * gives only the longest match. The hash tier has no such shadow.
 */
static __always_inline int xs_acl_match(const struct xs_psel *sel, int which,
					void *h4, void *h6, void *t4, void *t6,
					__u32 gen, const struct xs_l3 *l3)
{
	const __u8 *tiers;
	__u32 i, n_lpm;

	/* An empty list costs no lookup, whatever its tiers say (a shield
	 * no policy was ever applied to has them all zero: /0 each).
	 */
	if (!(l3->v6 ? (which ? sel->n_deny6 : sel->n_allow6) :
		       (which ? sel->n_deny4 : sel->n_allow4)))
		return 0;
	if (l3->v6) {
		struct ipv6hdr *ip6 = l3->iph;
		struct xs_hkey6 hk = { .gen = gen };
		struct xs_lpm6 k6 = { .prefixlen = 32 + 128, .gen = gen };
		__u32 a[4];

		__builtin_memcpy(a, &ip6->saddr, 16);
		if (xs_acl_filtered_out(sel, which, 1, xs_acl6_n(a[0])))
			return 0;
		tiers = sel->tiers[which * 2 + 1];
#pragma unroll
		for (i = 0; i < XS_ACL_TIERS; i++) {
			__u32 plen = tiers[i];

			if (plen > 128)
				break;
			hk.plen = plen;
			xs_mask128(hk.addr, a, plen);
			if (xs_acl_live(bpf_map_lookup_elem(h6, &hk)))
				return 1;
		}
		n_lpm = which ? sel->lpm_deny6 : sel->lpm_allow6;
		if (!n_lpm)
			return 0;
		__builtin_memcpy(k6.addr, a, 16);
		return xs_acl_live(bpf_map_lookup_elem(t6, &k6));
	} else {
		struct iphdr *iph = l3->iph;
		struct xs_hkey4 hk = { .gen = gen };
		struct xs_lpm4 k4 = { .prefixlen = 32 + 32, .gen = gen };
		__u32 a = iph->saddr;

		if (xs_acl_filtered_out(sel, which, 0, bpf_ntohl(a) >> 8))
			return 0;
		if (which && xs_deny_sure(bpf_ntohl(a) >> 8))
			return 1;
		tiers = sel->tiers[which * 2];
#pragma unroll
		for (i = 0; i < XS_ACL_TIERS; i++) {
			__u32 plen = tiers[i];

			if (plen > 32)
				break;
			hk.plen = plen;
			hk.addr = a & xs_mask32(plen);
			if (xs_acl_live(bpf_map_lookup_elem(h4, &hk)))
				return 1;
		}
		n_lpm = which ? sel->lpm_deny4 : sel->lpm_allow4;
		if (!n_lpm)
			return 0;
		k4.addr = a;
		return xs_acl_live(bpf_map_lookup_elem(t4, &k4));
	}
}

static __always_inline int xs_allowed(const struct xs_psel *sel,
				      const struct xs_l3 *l3)
{
	return xs_acl_match(sel, 0, &xs_allow4h, &xs_allow6h, &xs_allow4,
			    &xs_allow6, sel->allow_gen, l3);
}

static __always_inline int xs_denied(const struct xs_psel *sel,
				     const struct xs_l3 *l3)
{
	return xs_acl_match(sel, 1, &xs_deny4h, &xs_deny6h, &xs_deny4,
			    &xs_deny6, sel->deny_gen, l3);
}

#endif
