/* SPDX-License-Identifier: GPL-2.0 */
/* Protocol hygiene: TCP flag nonsense, UDP reflection, fragments, ICMP
 * types and other IP protocols. Settings in xs_hyg (struct xs_hygiene);
 * the reflection table is filled by the tc egress program (xs_refl_note).
 */
#ifndef XDPSHIELD_HYGIENE_H
#define XDPSHIELD_HYGIENE_H

#include "maps.h"
#include "parse.h"
#include "clock.h"
#include "addr.h"

/* The live settings; NULL only if the map lookup fails (it cannot). */
static __always_inline const struct xs_hygiene *
xs_hyg_get(const struct xs_psel *sel)
{
	__u32 slot = sel->hyg_gen & 1;

	return bpf_map_lookup_elem(&xs_hyg, &slot);
}

/* No flags, SYN+FIN, SYN+RST, FIN+PSH+URG: no stack sends these; scanners
 * and floods that probe for stacks that mishandle them do.
 */
static __always_inline int xs_tcp_flags_bad(__u8 f)
{
	return !(f & (XS_TCP_FIN | XS_TCP_SYN | XS_TCP_RST | XS_TCP_PSH |
		      XS_TCP_ACK | XS_TCP_URG)) ||
	       (f & (XS_TCP_SYN | XS_TCP_FIN)) == (XS_TCP_SYN | XS_TCP_FIN) ||
	       (f & (XS_TCP_SYN | XS_TCP_RST)) == (XS_TCP_SYN | XS_TCP_RST) ||
	       (f & (XS_TCP_FIN | XS_TCP_PSH | XS_TCP_URG)) ==
		       (XS_TCP_FIN | XS_TCP_PSH | XS_TCP_URG);
}

/* The hint slot (xs_refl_hint, xs_frag_hint) of an address as struct
 * xs_vkey holds it, and @extra (a fragment's id): its words folded, then
 * mixed (MurmurHash3's finalizer). policy.hint_slot() mirrors it.
 */
static __always_inline __u32 xs_hint_slot(const __u32 *a, __u32 extra)
{
	__u64 h = ((__u64)(a[0] ^ a[2]) << 32 | (a[1] ^ a[3])) ^ extra;

	h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
	h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL;
	return (h ^ (h >> 33)) & (XS_HINT_SLOTS - 1);
}

/* 0 when no entry that hashes to @slot can be live now: nothing to look
 * up. The clock is read (into *@now) only for a slot once written: a
 * flood's random sources mostly meet slots never written (0), and those
 * then cost no clock.
 */
static __always_inline int xs_hint_live(void *hints, __u32 slot, __u64 *now)
{
	__u32 *t = bpf_map_lookup_elem(hints, &slot);

	if (t && !*t)
		return 0;
	*now = xs_now();
	return !t || (__s32)(*t - (__u32)(*now >> XS_HINT_SHIFT)) >= 0;
}

/* An entry at @slot lives until @exp: the slot keeps the latest expiry
 * (one tick more: rounding, and two CPUs writing at once).
 */
static __always_inline void xs_hint_mark(void *hints, __u32 slot, __u64 exp)
{
	__u32 *t = bpf_map_lookup_elem(hints, &slot);
	__u32 v = (__u32)(exp >> XS_HINT_SHIFT) + 1;

	if (t && (!*t || (__s32)(v - *t) > 0))
		*t = v;
}

/* UDP from a reflection port: 1 (drop) unless this host asked that peer,
 * from the datagram's destination port, within the window.
 */
static __always_inline int xs_reflected(const struct xs_hygiene *h,
					const struct xs_l3 *l3,
					const struct udphdr *uh)
{
	struct xs_refl_key k = {};
	__u64 *exp, now;

	if (!(h->flags & XS_HYG_REFLECTION) ||
	    !xs_portset_has(&h->refl, uh->source))
		return 0;
	xs_addr16(k.peer, xs_saddr(l3), l3->v6);
	if (!xs_hint_live(&xs_refl_hint, xs_hint_slot(k.peer, 0), &now))
		return 1;
	k.peer_port = uh->source;
	k.local_port = uh->dest;
	exp = bpf_map_lookup_elem(&xs_refl, &k);
	return !exp || *exp <= now;
}

/* ICMP types not in the allowed set (ICMPv6 neighbour discovery is always
 * allowed: IPv6 stops working without it). By protocol, not IP family, as
 * the rules stage judges it.
 */
static __always_inline int xs_icmp_denied(const struct xs_hygiene *h,
					  int proto, __u8 type)
{
	if (!(h->flags & XS_HYG_ICMP))
		return 0;
	if (proto == XS_IPPROTO_ICMPV6)
		return !(type >= 133 && type <= 137) &&
		       !xs_bit256(h->icmp6, type);
	return !xs_bit256(h->icmp4, type);
}

/* A datagram's key: the same for all its fragments (the protocol as the
 * Fragment header names it: a first fragment may carry more extension
 * headers before its upper layer, a later one none).
 */
static __always_inline void xs_frag_key_of(struct xs_frag_key *k,
					   const struct xs_l3 *l3)
{
	xs_addr16(k->src, xs_saddr(l3), l3->v6);
	xs_addr16(k->dst, xs_daddr(l3), l3->v6);
	k->id = l3->frag_id;
	k->proto = l3->frag_proto;
}

/* A non-first fragment: 1 when its datagram's first fragment passed within
 * the window (or fragment hygiene is off).
 */
static __always_inline int xs_frag_known(const struct xs_hygiene *h,
					 const struct xs_l3 *l3)
{
	struct xs_frag_key k = {};
	__u64 *exp, now;

	if (!(h->flags & XS_HYG_FRAGMENTS))
		return 1;
	xs_frag_key_of(&k, l3);
	if (!xs_hint_live(&xs_frag_hint, xs_hint_slot(k.src, k.id), &now))
		return 0;
	exp = bpf_map_lookup_elem(&xs_frag, &k);
	return exp && *exp > now;
}

/* A first fragment passed: open its datagram (@k, made before judging:
 * the TCP guard may rewrite the frame) to the other fragments.
 * XXX: fragments that arrive before their first are dropped (the kernel
 * would have queued them); real networks seldom reorder so, floods always.
 */
static __always_inline void xs_frag_note(const struct xs_hygiene *h,
					 const struct xs_frag_key *k)
{
	__u64 exp = xs_now() + h->frag_window_ns;

	xs_hint_mark(&xs_frag_hint, xs_hint_slot(k->src, k->id), exp);
	bpf_map_update_elem(&xs_frag, k, &exp, BPF_ANY);
}

/* tc egress: a UDP datagram this host sends to a reflection port opens the
 * way for its replies. The entry is rewritten only when half its window
 * has passed, so a busy resolver does not write the map per query.
 */
static __always_inline void xs_refl_note(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct xs_cursor c = { .pos = data, .end = data_end };
	const struct xs_hygiene *h;
	struct xs_refl_key k = {};
	struct xs_l3 l3 = {};
	struct udphdr *uh;
	struct xs_psel *sel;
	__u64 now, exp, *cur;
	__u32 zero = 0;
	int proto;

	sel = bpf_map_lookup_elem(&xs_psel, &zero);
	if (!sel)
		return;
	h = xs_hyg_get(sel);
	if (!h || !(h->flags & XS_HYG_REFLECTION))
		return;
	proto = xs_parse_l3(&c, &l3, data);
	if (proto != IPPROTO_UDP || l3.nonfirst || xs_parse_udp(&c, &l3) < 0)
		return;
	uh = c.pos - sizeof(*uh);
	if ((void *)(uh + 1) > data_end || !xs_portset_has(&h->refl, uh->dest))
		return;
	xs_addr16(k.peer, xs_daddr(&l3), l3.v6);
	k.peer_port = uh->dest;
	k.local_port = uh->source;
	now = xs_now();
	cur = bpf_map_lookup_elem(&xs_refl, &k);
	if (cur && *cur > now + h->refl_window_ns / 2)
		return;
	exp = now + h->refl_window_ns;
	xs_hint_mark(&xs_refl_hint, xs_hint_slot(k.peer, 0), exp);
	bpf_map_update_elem(&xs_refl, &k, &exp, BPF_ANY);
}

#endif
