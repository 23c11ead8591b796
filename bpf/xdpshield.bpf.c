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

/* Parse down to L4 and decide. Returns XS_V(action, reason). */
static __always_inline __u32 xs_classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xs_cursor c = { .pos = data, .end = data_end };
	struct xs_l3 l3 = {};
	struct tcphdr *th;
	int proto;

	proto = xs_parse_eth(&c);
	if (proto < 0)
		return XS_V(XDP_DROP, XS_R_MALFORMED);
	l3.l3off = c.pos - data;
	if (proto == bpf_htons(XS_ETH_P_IP))
		proto = xs_parse_ipv4(&c, &l3);
	else if (proto == bpf_htons(XS_ETH_P_IPV6))
		proto = xs_parse_ipv6(&c, &l3);
	else if (proto == bpf_htons(XS_ETH_P_8021Q) ||
		 proto == bpf_htons(XS_ETH_P_8021AD))
		return XS_V(XDP_DROP, XS_R_VLAN_TOO_DEEP);
	else
		return XS_V(XDP_PASS, XS_R_PASS_NON_IP);
	if (proto < 0)
		return XS_V(XDP_DROP, XS_R_MALFORMED);
	/* XXX: non-first fragments pass unjudged (no ports to look at); the
	 * kernel reassembles them, so a fragmented segment reaches the stack
	 * unguarded. The first fragment, which carries the TCP header, is
	 * judged like any segment.
	 */
	if (l3.nonfirst)
		return XS_V(XDP_PASS, XS_R_PASS_FRAGMENT);

	switch (proto) {
	case IPPROTO_TCP:
		if (xs_parse_tcp(&c, &l3, &th) < 0 ||
		    (void *)th - data > XS_MAX_L4_OFF)
			return XS_V(XDP_DROP, XS_R_MALFORMED);
		if (!xs_port_protected(th->dest))
			return XS_V(XDP_PASS, XS_R_PASS_UNPROTECTED);
		return xs_guard_tcp(ctx, l3.l3off, (void *)th - data, l3.v6);
	case IPPROTO_UDP:
		if (xs_parse_udp(&c, &l3) < 0)
			return XS_V(XDP_DROP, XS_R_MALFORMED);
		break;
	case IPPROTO_ICMP:
	case XS_IPPROTO_ICMPV6:
		/* ICMPv6 includes neighbour discovery, which must pass. */
		if (xs_parse_icmp(&c, &l3) < 0)
			return XS_V(XDP_DROP, XS_R_MALFORMED);
		break;
	default:
		/* XXX: other protocols (tunnels included) pass uninspected. */
		break;
	}
	return XS_V(XDP_PASS, XS_R_PASS_UNPROTECTED);
}

SEC("xdp")
int xdpshield_xdp(struct xdp_md *ctx)
{
	__u32 frame_len = ctx->data_end - ctx->data;
	__u32 verdict = xs_classify(ctx);

	xs_debug("xdpshield: len %u action %u reason %u", frame_len,
		 XS_V_ACT(verdict), XS_V_REASON(verdict));
	return xs_verdict_exit(verdict, frame_len);
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
	return (int)(__s8)xs_verdict_exit(verdict, skb->len);
}

char _license[] SEC("license") = "GPL";
