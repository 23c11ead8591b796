/* SPDX-License-Identifier: GPL-2.0 */
/* Rules, compiled to lookups (src/xdpshield/policy/rules.py): the cost per
 * packet is the same for ten rules or ten thousand. The protocol's slot and
 * the destination port (ICMP type, protocol number) give a class, one array
 * read; (class, source address) gives at most XS_RULE_CANDS candidates, one
 * trie lookup; the first candidate whose source port, TCP flags and ICMP
 * code conditions hold decides, and counts.
 */
#ifndef XDPSHIELD_RULES_H
#define XDPSHIELD_RULES_H

#include "maps.h"
#include "parse.h"
#include "hygiene.h"

/* What the rules stage needs of the packet: the trie key (generation,
 * and the source; the class is filled in here) and the L4 fields.
 */
struct xs_rule_q {
	struct xs_rule_key k;
	__u32 len;		/* frame bytes, for the rule's counter */
	__u16 port;		/* host order: TCP/UDP dport, ICMP type, or the
				 * protocol number (other protocols) */
	__u16 sport;		/* host order; 0 without ports */
	__u8 slot;		/* protocol slot, 0..XS_RULE_SLOTS-1 */
	__u8 tcp_flags;
	__u8 icmp_code;
	__u8 pad;
	__u8 tiers[XS_ACL_TIERS];	/* struct xs_psel.rule_tiers */
	__u32 lpm;			/* struct xs_psel.lpm_rules */
};

/* The first matching rule's action (XS_RULE_DROP, XS_RULE_PASS,
 * XS_RULE_LIMIT) with its id + 1 above the low byte (counted in
 * xs_rule_stats), 0 when none matches.
 *
 * Verifier: a global function, checked once on its own. Inlined, the
 * candidate loop multiplied the caller's states (every parse path) past
 * the 1M-instruction budget.
 */
__attribute__((noinline)) __u32 xs_rules_match(struct xs_rule_q *q)
{
	const struct xs_rule_sport *sp = NULL;
	const struct xs_rule_ports *ports;
	const struct xs_rule_val *val;
	struct xs_rule_hkey hk = {};
	struct xs_counter *cnt;
	__u32 i, id, slot, half, mask = 0;
	__u16 cls;

	if (!q || q->slot >= XS_RULE_SLOTS)
		return 0;
	half = q->k.gen & 1;
	slot = half * XS_RULE_SLOTS + q->slot;
	ports = bpf_map_lookup_elem(&xs_rule_ports, &slot);
	if (!ports)
		return 0;
	cls = ports->cls[q->port];
	if (!cls)
		return 0;
	/* The longest (class, prefix) entry holding the source: the trie's,
	 * unless a hashed length longer than it holds one (tiers are longest
	 * first).
	 */
	q->k.prefixlen = 32 + 128;
	q->k.cls = cls;
	val = q->lpm ? bpf_map_lookup_elem(&xs_rules, &q->k) : NULL;
	hk.gen = q->k.gen;
	hk.cls = cls;
#pragma unroll
	for (i = 0; i < XS_ACL_TIERS; i++) {
		const struct xs_rule_val *hv;
		__u32 plen = q->tiers[i];

		if (plen > 128 || (val && plen <= val->plen))
			break;
		hk.plen = plen;
		xs_mask128(hk.addr, q->k.addr, plen);
		hv = bpf_map_lookup_elem(&xs_rules_h, &hk);
		if (hv) {
			val = hv;
			break;
		}
	}
	if (!val)
		return 0;
	for (i = 0; i < XS_RULE_CANDS; i++) {
		const struct xs_rule_cand *c = &val->c[i];

		if (i >= val->n)
			break;
		if (c->sportset != XS_RULE_ANY) {
			if (!sp) {
				sp = bpf_map_lookup_elem(&xs_rule_sport, &half);
				if (!sp)
					return 0;
				mask = sp->mask[q->sport];
			}
			if (!((mask >> (c->sportset & 31)) & 1))
				continue;
		}
		if ((q->tcp_flags & c->fmask) != c->fval)
			continue;
		if (c->has_code && c->icmp_code != q->icmp_code)
			continue;
		id = c->id;
		cnt = bpf_map_lookup_elem(&xs_rule_stats, &id);
		if (cnt) {
			cnt->packets++;
			cnt->bytes += q->len;
		}
		return (id + 1) << 8 | c->action;
	}
	return 0;
}

#endif
