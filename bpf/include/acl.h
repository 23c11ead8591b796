/* SPDX-License-Identifier: GPL-2.0 */
/* The allow and deny lists: one LPM trie per family and list, keyed by
 * (generation, prefix), so a new generation is written beside the live one
 * (struct xs_psel says which is live).
 */
#ifndef XDPSHIELD_ACL_H
#define XDPSHIELD_ACL_H

#include "maps.h"
#include "parse.h"
#include "clock.h"

/* 1 when the source of @l3 is in the list of generation @gen whose tries
 * are @t4 and @t6 (holding @n4 and @n6 prefixes: an empty one is not
 * looked up).
 *
 * XXX: an expired entry still shadows a shorter live one that contains it
 * until the daemon deletes it (within a second): the trie gives only the
 * longest match.
 */
static __always_inline int xs_acl_match(void *t4, void *t6, __u32 gen,
					__u32 n4, __u32 n6,
					const struct xs_l3 *l3)
{
	struct xs_acl *a;

	if (l3->v6) {
		struct ipv6hdr *ip6 = l3->iph;
		struct xs_lpm6 k6 = { .prefixlen = 32 + 128, .gen = gen };

		if (!n6)
			return 0;
		__builtin_memcpy(k6.addr, &ip6->saddr, 16);
		a = bpf_map_lookup_elem(t6, &k6);
	} else {
		struct iphdr *iph = l3->iph;
		struct xs_lpm4 k4 = { .prefixlen = 32 + 32, .gen = gen };

		if (!n4)
			return 0;
		k4.addr = iph->saddr;
		a = bpf_map_lookup_elem(t4, &k4);
	}
	return a && (!a->expires_ns || a->expires_ns > xs_now());
}

static __always_inline int xs_allowed(const struct xs_psel *sel,
				      const struct xs_l3 *l3)
{
	return xs_acl_match(&xs_allow4, &xs_allow6, sel->allow_gen,
			    sel->n_allow4, sel->n_allow6, l3);
}

static __always_inline int xs_denied(const struct xs_psel *sel,
				     const struct xs_l3 *l3)
{
	return xs_acl_match(&xs_deny4, &xs_deny6, sel->deny_gen,
			    sel->n_deny4, sel->n_deny6, l3);
}

#endif
