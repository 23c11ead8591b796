/* SPDX-License-Identifier: GPL-2.0 */
/* Who is guarded and who is trusted: the protected ports and the table of
 * verified sources (reset mode).
 */
#ifndef XDPSHIELD_POLICY_H
#define XDPSHIELD_POLICY_H

#include "maps.h"
#include "parse.h"
#include "clock.h"
#include "addr.h"

static __always_inline int xs_port_protected(__u16 dport_be)
{
	__u32 zero = 0;
	struct xs_portset *ps = bpf_map_lookup_elem(&xs_ports, &zero);

	return ps && xs_portset_has(ps, dport_be);
}

static __always_inline void xs_vkey_of(struct xs_vkey *vk,
				       const struct xs_l3 *l3)
{
	xs_addr16(vk->addr, xs_saddr(l3), l3->v6);
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
