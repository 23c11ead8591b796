/* SPDX-License-Identifier: GPL-2.0 */
/* Socket lookups: is there a kernel socket for a segment, and in what
 * state. Shared by XDP (established check, listener check) and tc (the
 * listener for the handoff).
 */
#ifndef XDPSHIELD_SOCK_H
#define XDPSHIELD_SOCK_H

#include "parse.h"

/* The socket lookup key of a segment as the kernel sees it arrive (source
 * is the peer); returns the tuple's length for bpf_skc_lookup_tcp().
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

#endif
