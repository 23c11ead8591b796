/* SPDX-License-Identifier: GPL-2.0 */
/* Who is guarded and who is trusted: the protected ports and the table of
 * verified sources (reset mode).
 */
#ifndef XDPSHIELD_POLICY_H
#define XDPSHIELD_POLICY_H

#include "maps.h"
#include "parse.h"
#include "clock.h"

static __always_inline int xs_port_protected(__u16 dport_be)
{
	__u32 zero = 0, port = bpf_ntohs(dport_be) & 0xffff;
	struct xs_portset *ps = bpf_map_lookup_elem(&xs_ports, &zero);

	if (!ps)
		return 0;
	return (ps->bits[port >> 6] >> (port & 63)) & 1;
}

static __always_inline void xs_vkey_of(struct xs_vkey *vk,
				       const struct xs_l3 *l3)
{
	if (l3->v6) {
		struct ipv6hdr *ip6 = l3->iph;

		__builtin_memcpy(vk->addr, &ip6->saddr, 16);
	} else {
		struct iphdr *iph = l3->iph;

		vk->addr[0] = 0;
		vk->addr[1] = 0;
		vk->addr[2] = bpf_htonl(0xffff);
		vk->addr[3] = iph->saddr;
	}
}

/* The source's entry if it is verified and not expired. */
static __always_inline struct xs_verified *
xs_verified_get(const struct xs_vkey *vk, __u64 now)
{
	struct xs_verified *v = bpf_map_lookup_elem(&xs_verified, vk);

	if (v && v->expires_ns > now)
		return v;
	return NULL;
}

/* Expiry counts from the last activity, so a busy verified client keeps its
 * connections; the entry is rewritten only once half the ttl has passed, to
 * keep a store (and its cache-line bouncing) off most packets.
 */
static __always_inline void xs_verified_touch(struct xs_verified *v, __u64 now)
{
	if (v->expires_ns < now + xs_verified_ttl_ns / 2)
		v->expires_ns = now + xs_verified_ttl_ns;
}

static __always_inline void xs_verified_add(const struct xs_vkey *vk, __u64 now)
{
	struct xs_verified v = {
		.expires_ns = now + xs_verified_ttl_ns,
	};

	/* A failed insert (out of memory) only means the client is asked to
	 * verify again; nothing to undo.
	 */
	bpf_map_update_elem(&xs_verified, vk, &v, BPF_ANY);
}

#endif
