// SPDX-License-Identifier: GPL-2.0
/* xdpshield entry points. Logic lives in include/; this file only wires the
 * stages together, and each entry ends in the one exit that counts every
 * verdict (verdict.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "shared.h"
#include "maps.h"
#include "parse.h"
#include "verdict.h"
#include "acl.h"
#include "hygiene.h"
#include "rules.h"
#include "limits.h"
#include "guard.h"
#include "handoff.h"

#ifdef XDPSHIELD_DEBUG
#define xs_debug(fmt, ...) bpf_printk(fmt, ##__VA_ARGS__)
#else
#define xs_debug(fmt, ...) do { } while (0)
#endif

/* Keep enum xs_reason and enum xs_abi in the object's BTF for Python to
 * read (nothing else names them as a type).
 */
enum xs_reason xs_reason_btf_anchor SEC(".rodata.btf") __attribute__((unused));
enum xs_abi xs_abi_btf_anchor SEC(".rodata.btf") __attribute__((unused));
/* The ring's record type, likewise (a ring map has no value type). */
struct xs_sample xs_sample_btf_anchor SEC(".rodata.btf") __attribute__((unused));

/* Not a verdict: the TCP guard decides (a program of its own, tail-called,
 * so that its deep stack never adds to the policy stages').
 */
#define XS_V_GUARD	0xffffffffU

/* The protocol's slot (rules' port classes, the limits' ceilings). */
static __always_inline __u8 xs_proto_slot(int proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 0;
	case IPPROTO_UDP:
		return 1;
	case IPPROTO_ICMP:
		return 2;
	case XS_IPPROTO_ICMPV6:
		return 3;
	default:
		return 4;
	}
}

/* Hygiene and rules for a packet with an L4 header (@c points at it).
 * Returns XS_V(action, reason), or XS_V_GUARD; fills in what the limits
 * need (@lq: SYN, limit rule).
 */
static __always_inline __u32 xs_judge(struct xdp_md *ctx, struct xs_cursor *c,
				      const struct xs_l3 *l3, int proto,
				      const struct xs_psel *sel,
				      const struct xs_hygiene *h, __u32 len,
				      struct xs_lim_q *lq)
{
	struct tcphdr *th = NULL;
	struct xs_rule_q l4 = {};
	__u8 *icmp;
	__u32 r;

	switch (proto) {
	case IPPROTO_TCP:
		if (xs_parse_tcp(c, l3, &th) < 0)
			return XS_V(XDP_DROP, XS_R_MALFORMED);
		l4.tcp_flags = ((__u8 *)th)[13];
		if ((h->flags & XS_HYG_TCP_FLAGS) &&
		    xs_tcp_flags_bad(l4.tcp_flags))
			return XS_V(XDP_DROP, XS_R_TCP_FLAGS);
		l4.slot = 0;
		l4.port = bpf_ntohs(th->dest);
		l4.sport = bpf_ntohs(th->source);
		break;
	case IPPROTO_UDP: {
		struct udphdr *uh = c->pos;

		if (xs_parse_udp(c, l3) < 0 || (void *)(uh + 1) > c->end)
			return XS_V(XDP_DROP, XS_R_MALFORMED);
		if (xs_reflected(h, l3, uh))
			return XS_V(XDP_DROP, XS_R_REFLECTION);
		l4.slot = 1;
		l4.port = bpf_ntohs(uh->dest);
		l4.sport = bpf_ntohs(uh->source);
		break;
	}
	case IPPROTO_ICMP:
	case XS_IPPROTO_ICMPV6:
		icmp = c->pos;
		if (xs_parse_icmp(c, l3) < 0 || (void *)(icmp + 2) > c->end)
			return XS_V(XDP_DROP, XS_R_MALFORMED);
		if (xs_icmp_denied(h, proto, icmp[0]))
			return XS_V(XDP_DROP, XS_R_ICMP_TYPE);
		l4.slot = proto == IPPROTO_ICMP ? 2 : 3;
		l4.port = icmp[0];
		l4.icmp_code = icmp[1];
		break;
	default:
		/* XXX: tunnels (GRE, IPIP, ...) pass uninspected unless the
		 * protocol is dropped: the shield does not look inside.
		 */
		if (xs_bit256(h->proto_drop, proto & 0xff))
			return XS_V(XDP_DROP, XS_R_PROTOCOL);
		l4.slot = 4;
		l4.port = proto & 0xff;
		break;
	}
	if (sel->n_rules) {
		l4.k.gen = sel->rules_gen;
		__builtin_memcpy(l4.tiers, sel->rule_tiers, XS_ACL_TIERS);
		l4.lpm = sel->lpm_rules;
		xs_addr16(l4.k.addr, xs_saddr(l3), l3->v6);
		l4.len = len;
		r = xs_rules_match(&l4);
		if ((r & 0xff) == XS_RULE_DROP)
			return XS_V_RULE(XS_V(XDP_DROP, XS_R_RULE_DROP), r >> 8);
		if ((r & 0xff) == XS_RULE_PASS)
			return XS_V_RULE(XS_V(XDP_PASS, XS_R_RULE_PASS), r >> 8);
		if ((r & 0xff) == XS_RULE_LIMIT)
			lq->rule = r >> 8;
	}
	if (th && xs_port_protected(th->dest)) {
		lq->syn = (l4.tcp_flags & (XS_TCP_SYN | XS_TCP_ACK)) == XS_TCP_SYN;
		return XS_V_GUARD;
	}
	return XS_V(XDP_PASS, XS_R_PASS_UNPROTECTED);
}

/* What parsing found, as offsets, in a per-CPU map (xs_pkt): the stages
 * read it back from there, and the guard's program after its tail call.
 * The verifier knows nothing of a map value's content, so every parse path
 * (VLAN depths, IPv4 header lengths, IPv6 extension-header chains) meets
 * the stages in one state and they are verified once, not once per path.
 * One XDP run is one CPU's from entry to exit (softirq, no preemption), so
 * nothing else writes this CPU's copy meanwhile.
 */
struct xs_pkt {
	__u32 frag_id;
	__u32 l4len;
	__u32 len;		/* frame bytes */
	__u16 l3off;
	__u16 l4off;		/* TCP: the header the guard reads */
	__u8 v6;
	__u8 nonfirst;
	__u8 first_frag;
	__u8 proto;
	__u8 frag_proto;
	__u32 verdict;		/* the stages', laundered likewise (below) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_pkt);
} xs_pkt SEC(".maps");

/* Its one copy on this CPU (an inlined lookup: no call). */
static __always_inline struct xs_pkt *xs_pkt_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xs_pkt, &zero);
}

/* Make the compiler read back from memory what it wrote to xs_pkt: the
 * verifier then sees a map value it knows nothing of (see struct xs_pkt).
 */
#define xs_launder()	asm volatile("" ::: "memory")

_Static_assert(XS_MAX_L3_OFF <= 0x1f && XS_MAX_L4_OFF <= 0x7ff,
	       "xs_l3_of() masks the offsets to these bounds");

/* @p back to an xs_l3 and a cursor at L4; -1 when the offsets are bad. */
static __always_inline int xs_l3_of(struct xdp_md *ctx, const struct xs_pkt *p,
				    struct xs_l3 *l3, struct xs_cursor *c)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3off = p->l3off, l4off = p->l4off;

	if (l3off > XS_MAX_L3_OFF || l4off > XS_MAX_L4_OFF)
		return -1;
	/* Verifier: the masks change nothing after the checks, but they bound
	 * the offsets whichever register the compiler computes them in (the
	 * checks alone did not reach the pointer arithmetic).
	 */
	l3off &= 0x1f;
	l4off &= 0x7ff;
	barrier_var(l3off);
	barrier_var(l4off);
	l3->iph = data + l3off;
	barrier_var(l3->iph);
	if (l3->iph + (p->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) >
	    data_end)
		return -1;
	l3->l3off = l3off;
	l3->v6 = p->v6;
	l3->l4len = p->l4len;
	l3->nonfirst = p->nonfirst;
	l3->first_frag = p->first_frag;
	l3->frag_id = p->frag_id;
	l3->frag_proto = p->frag_proto;
	c->pos = data + l4off;
	c->end = data_end;
	return 0;
}

/* The policy stages in order: allow, blocks, deny, fragments, then
 * xs_judge(), then the limits. Returns XS_V(action, reason), or XS_V_GUARD.
 * Inlined: a call costs ~10 ns on CPUs with SRSO's safe return, and the
 * verifier sees them once (struct xs_pkt).
 */
static __always_inline __u32 xs_stages(struct xdp_md *ctx,
				       const struct xs_pkt *p)
{
	const struct xs_hygiene *h;
	const struct xs_psel *sel;
	const struct xs_limits *lim = NULL;
	struct xs_dc *dc = NULL;
	struct xs_lim_q lq = {};
	struct xs_l3 l3 = {};
	struct xs_cursor c;
	__u32 zero = 0, slot, v, r;

	if (!p || xs_l3_of(ctx, p, &l3, &c) < 0)
		return XS_V(XDP_DROP, XS_R_MALFORMED);
	/* Verifier: array lookups with a constant key cannot fail, but it
	 * wants the check.
	 */
	sel = bpf_map_lookup_elem(&xs_psel, &zero);
	if (!sel)
		return XS_V(XDP_PASS, XS_R_PASS_UNPROTECTED);
	if (xs_allowed(sel, &l3))
		return XS_V(XDP_PASS, XS_R_ALLOW_PASS);
	if (sel->lim_on) {
		slot = sel->lim_gen & 1;
		lim = bpf_map_lookup_elem(&xs_lim, &slot);
	}
	if (lim) {	/* read once, for the blocks and the buckets */
		xs_addr16(lq.src, xs_saddr(&l3), l3.v6);
		lq.v6 = l3.v6;
		lq.len = p->len;
		lq.now = xs_now();
		lq.gen = sel->lim_gen;
		dc = xs_dc_of(&lq);
		if (!dc)	/* cannot happen: a per-CPU array's slot */
			return XS_V(XDP_PASS, XS_R_PASS_UNPROTECTED);
		if (xs_blocked(&lq, lim, dc))
			return XS_V(XDP_DROP, XS_R_BLOCKED);
	}
	if (xs_denied(sel, &l3))
		return XS_V(XDP_DROP, XS_R_DENY);
	h = xs_hyg_get(sel);
	if (!h)
		return XS_V(XDP_PASS, XS_R_PASS_UNPROTECTED);
	/* A non-first fragment has no L4 header to judge: it passes when its
	 * datagram's first fragment did.
	 */
	if (l3.nonfirst) {
		if (!xs_frag_known(h, &l3))
			return XS_V(XDP_DROP, XS_R_FRAGMENT_UNKNOWN);
		v = XS_V(XDP_PASS, XS_R_PASS_FRAGMENT);
		lq.slot = xs_proto_slot(l3.frag_proto);
	} else {
		v = xs_judge(ctx, &c, &l3, p->proto, sel, h, p->len, &lq);
		lq.slot = xs_proto_slot(p->proto);
	}
	if (lim && XS_V_ACT(v) != XDP_DROP) {	/* XS_V_GUARD's is 0xff */
		r = xs_limit(&lq, lim, dc);
		if (r)
			return r;
	}
	return v;
}

/* A first fragment passed: its datagram's other fragments may follow. A
 * global function (verified once; the call is only a first fragment's).
 */
__attribute__((noinline)) int xs_frag_open(struct xdp_md *ctx,
					   const struct xs_pkt *p)
{
	const struct xs_hygiene *h;
	struct xs_frag_key k = {};
	const struct xs_psel *sel;
	struct xs_l3 l3 = {};
	struct xs_cursor c;
	__u32 zero = 0;

	if (!p || xs_l3_of(ctx, p, &l3, &c) < 0)
		return 0;
	sel = bpf_map_lookup_elem(&xs_psel, &zero);
	if (!sel)
		return 0;
	h = xs_hyg_get(sel);
	if (!h || !(h->flags & XS_HYG_FRAGMENTS))
		return 0;
	xs_frag_key_of(&k, &l3);
	xs_frag_note(h, &k);
	return 0;
}

SEC("xdp")
int xdpshield_guard(struct xdp_md *ctx);

/* The programs the entry tail-calls (a tail call is a jump: no return to
 * pay for). Filled by libbpf at load; Python pins it, as a program array
 * loses its entries when the last file or pin that holds it goes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, XS_PROG__MAX);
	__type(key, __u32);
	__array(values, int(struct xdp_md *));
} xs_progs SEC(".maps") = {
	.values = {
		[XS_PROG_GUARD] = (void *)&xdpshield_guard,
	},
};

/* The exit of both XDP programs. */
static __always_inline int xs_xdp_exit(struct xdp_md *ctx, __u32 verdict,
				       const struct xs_pkt *p)
{
	if (p->first_frag && XS_V_ACT(verdict) == XDP_PASS)
		xs_frag_open(ctx, p);
	xs_debug("xdpshield: len %u action %u reason %u", p->len,
		 XS_V_ACT(verdict), XS_V_REASON(verdict));
	return xs_verdict_exit(ctx, verdict, p->len, 0);
}

/* Parse to L4's start, into xs_pkt; then the stages; a TCP segment to a
 * protected port goes on to xdpshield_guard.
 */
SEC("xdp")
int xdpshield_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xs_cursor c = { .pos = data, .end = data_end };
	struct xs_pkt *p = xs_pkt_get();
	struct xs_l3 l3 = {};
	__u32 len = data_end - data, v;
	int proto;

#ifdef XS_TEST_VERIFIER_REJECT
	/* Test only (Makefile: _obj/xdpshield_test_reject.o, never a product
	 * build): a packet read with no bounds check, which the verifier must
	 * refuse, so a test can make a load fail verification.
	 */
	if (*(volatile __u8 *)(long)ctx->data == 0xff)
		len++;
#endif
	if (!p)		/* cannot happen: a per-CPU array's one entry */
		return XDP_PASS;
	p->len = len;
	p->first_frag = 0;
	proto = xs_parse_l3(&c, &l3, data);
	if (proto == XS_L3_VLAN_DEEP)
		return xs_xdp_exit(ctx, XS_V(XDP_DROP, XS_R_VLAN_TOO_DEEP), p);
	if (proto == XS_L3_NOT_IP)
		return xs_xdp_exit(ctx, XS_V(XDP_PASS, XS_R_PASS_NON_IP), p);
	if (proto < 0 || c.pos - data > XS_MAX_L4_OFF)
		return xs_xdp_exit(ctx, XS_V(XDP_DROP, XS_R_MALFORMED), p);
	p->l3off = l3.l3off;
	p->l4off = c.pos - data;
	p->v6 = l3.v6;
	p->nonfirst = l3.nonfirst;
	p->first_frag = l3.first_frag;
	p->frag_id = l3.frag_id;
	p->frag_proto = l3.frag_proto;
	p->l4len = l3.l4len;
	p->proto = proto;
	xs_launder();
	/* The verdict too: else each of the stages' verdicts, a constant the
	 * verifier tracks, would take the exit's paths on its own.
	 */
	p->verdict = xs_stages(ctx, p);
	xs_launder();
	v = p->verdict;
	if (v == XS_V_GUARD) {
		bpf_tail_call(ctx, &xs_progs, XS_PROG_GUARD);
		/* Only if the program array lost its entries (its pin
		 * removed while attached): counted, and passed.
		 */
		v = XS_V(XDP_PASS, XS_R_GUARD_MISSING);
	}
	return xs_xdp_exit(ctx, v, p);
}

/* A TCP segment to a protected port (guard.h), after the stages passed it.
 * A program of its own: the verifier checks it once, whatever path through
 * the stages led here, and its stack is its own.
 */
SEC("xdp")
int xdpshield_guard(struct xdp_md *ctx)
{
	struct xs_pkt *p = xs_pkt_get();
	struct xs_l3 l3 = {};
	struct xs_cursor c;
	struct tcphdr *th;

	if (!p)
		return XDP_PASS;
	if (xs_l3_of(ctx, p, &l3, &c) < 0)
		return xs_xdp_exit(ctx, XS_V(XDP_DROP, XS_R_MALFORMED), p);
	th = c.pos;
	/* Verifier: the stages checked it, but this program is verified on
	 * its own.
	 */
	if ((void *)(th + 1) > c.end)
		return xs_xdp_exit(ctx, XS_V(XDP_DROP, XS_R_MALFORMED), p);
	return xs_xdp_exit(ctx, xs_guard_tcp(ctx, &l3, th, p->l4off), p);
}

/* Transparent mode only (Python switches it off otherwise): the handoff of
 * verified handshakes to the kernel. Counts only what it acts on.
 */
SEC("tc")
int xdpshield_tc(struct __sk_buff *skb)
{
	__u32 verdict = xs_tc_handoff(skb);

	/* Back from a byte to the tc action: 0xff is TC_ACT_UNSPEC (-1). */
	if (XS_V_IS_QUIET(verdict))
		return (int)(__s8)XS_V_ACT(verdict);
	return (int)(__s8)xs_verdict_exit(skb, verdict, skb->len, 1);
}

/* Hygiene's reflection check: note the host's own requests to reflection
 * ports, so their replies pass XDP. Never changes the packet's fate.
 */
SEC("tc")
int xdpshield_tc_egress(struct __sk_buff *skb)
{
	xs_refl_note(skb);
	return -1;	/* TC_ACT_UNSPEC: on to the next filter */
}

char _license[] SEC("license") = "GPL";
