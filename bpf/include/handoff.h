/* SPDX-License-Identifier: GPL-2.0 */
/* Transparent mode, tc ingress: hand a cookie-verified handshake to the
 * kernel. XDP passed the handshake ACK with the decoded cookie as metadata
 * (guard.h, xs_ack_pass_meta()); here the listener is found and the kfunc
 * bpf_sk_assign_tcp_reqsk() attaches a request socket built from it to the
 * skb, so the TCP stack creates the connection as if it had answered the SYN
 * itself, with the options the client offered.
 *
 * Every segment without our metadata leaves at once, uncounted, unless XDP
 * has found that this driver gives no metadata room (xs_nometa_seen): then
 * tc re-parses and re-checks the cookie of every handshake-like ACK itself.
 */
#ifndef XDPSHIELD_HANDOFF_H
#define XDPSHIELD_HANDOFF_H

#include "consts.h"
#include "maps.h"
#include "parse.h"
#include "sock.h"
#include "tcpopt.h"
#include "verdict.h"
#include "cookie.h"
#include "policy.h"
#include "guard.h"

/* Declared against this kernel's BTF types: the kfunc takes the UAPI
 * struct __sk_buff (struct sk_buff * is refused as "func_proto incompatible
 * with kernel"). Weak, so that on a kernel without it the object still loads
 * with the tc program switched off (reset mode).
 */
extern int bpf_sk_assign_tcp_reqsk(struct __sk_buff *skb, struct sock *sk,
				   struct bpf_tcp_req_attrs *attrs,
				   int attrs__sz) __ksym __weak;

/* tc's uncounted result for a segment it leaves alone: TC_ACT_UNSPEC, so
 * that other filters on the hook still see it.
 */
#define XS_TC_QUIET		XS_V_QUIET(XS_TC_ACT_UNSPEC)

/* No metadata (the driver gave none): decode the ACK's timestamps from the
 * common layouts only.
 * XXX: an ACK with any other option layout is dropped on such drivers (its
 * window scale cannot be known without the general walk, which exists for
 * XDP only); the client's retransmissions meet the same fate.
 */
static __always_inline int xs_tc_decode(struct __sk_buff *skb,
					struct tcphdr *th, void *data_end,
					const struct xs_l3 *l3,
					struct xs_meta *m)
{
	__u32 cookie = bpf_ntohl(th->ack_seq) - 1;
	int found;

	m->mss = xs_mss_class(cookie, l3->v6, xs_link_mss(skb, l3->v6));
	m->opts = 0;
	m->snd_wscale = 0;
	found = xs_ts_common(th, data_end, &m->tsval, &m->tsecr);
	if (found > 0)
		xs_ts_decode(m);
	return found < 0 ? -1 : 0;
}

/* No metadata (the driver gave none): check the ACK's cookie and decode
 * its options into @m; 0 when it is ours.
 *
 * Verifier: global, verified once, as xs_tc_assign() below; the caller
 * hands over plain offsets, and the pointers are re-derived and re-checked.
 */
__attribute__((noinline)) int xs_tc_recheck(struct __sk_buff *skb,
					    __u64 l3off, __u64 l4off,
					    __u64 v6, struct xs_meta *m)
{
	void *data, *data_end;
	struct xs_l3 l3 = {};
	struct tcphdr *th;

	if (!skb || !m)
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (l3off > XS_MAX_L3_OFF || l4off > XS_MAX_L4_OFF)
		return -1;
	l3.iph = data + l3off;
	barrier_var(l3.iph);
	l3.l3off = l3off;
	l3.v6 = !!v6;
	if (l3.iph + (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) >
	    data_end)
		return -1;
	th = data + l4off;
	barrier_var(th);
	if ((void *)(th + 1) > data_end)
		return -1;
	if (!xs_ack_cookie_ok(&l3, th, xs_cookie_ns(xs_now())) ||
	    xs_tc_decode(skb, th, data_end, &l3, m))
		return -1;
	return 0;
}

/* A segment of a connection whose handshake ACK was handed over moments
 * ago on this CPU (xs_tc_last, within XS_TC_INFLIGHT_NS). A client sends its
 * first data right behind that ACK, and both often reach tc in one receive
 * batch, before the stack has turned the ACK's request socket into a
 * connection: a second request socket for the same tuple would then be
 * refused as a duplicate and the data dropped (the client resends it after
 * its 200 ms RTO). Left to the stack, which handles the batch in order, the
 * data meets the new connection.
 */
static __always_inline int xs_tc_same_tuple(const struct bpf_sock_tuple *a,
					    const struct bpf_sock_tuple *b)
{
	const __u32 *x = (const void *)a, *y = (const void *)b;
	int i;

	for (i = 0; i < sizeof(*a) / 4; i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

/* Find the listener for tuple @t and hand it the connection: returns
 * XS_V(tc action, reason) or XS_TC_QUIET.
 *
 * Verifier: global, verified once, as xs_tc_recheck(); inlined, both were
 * verified again for every parse path of the caller (810k of the verifier's
 * million instructions; 160k so).
 */
__attribute__((noinline)) __u32 xs_tc_assign(struct __sk_buff *skb,
					      struct bpf_sock_tuple *t,
					      __u32 tlen, struct xs_meta *m)
{
	struct bpf_tcp_req_attrs attrs = {};
	struct xs_tc_last *last;
	struct bpf_sock *skc;
	struct tcp_sock *tp;
	__u32 zero = 0;
	__u64 now;
	int ret;

	if (!skb || !t || !m)
		return XS_TC_QUIET;
	last = bpf_map_lookup_elem(&xs_tc_last, &zero);
	now = bpf_ktime_get_ns();
	if (last && now - last->ns < XS_TC_INFLIGHT_NS &&
	    xs_tc_same_tuple(&last->t, t))
		return XS_TC_QUIET;
	if (tlen != sizeof(t->ipv4))
		tlen = sizeof(t->ipv6);
	skc = bpf_skc_lookup_tcp(skb, t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (!skc)
		/* Nothing listens: the kernel answers with an RST, as it
		 * would for any closed port.
		 */
		return XS_V(XS_TC_ACT_OK, XS_R_HANDOFF_NO_LISTENER);
	if (skc->state != BPF_TCP_LISTEN) {
		/* The connection exists already (a retransmitted third ACK
		 * raced the first): the kernel has it.
		 */
		bpf_sk_release(skc);
		return XS_TC_QUIET;
	}

	attrs.mss = m->mss;
	attrs.sack_ok = !!(m->opts & XS_META_SACK);
	attrs.ecn_ok = !!(m->opts & XS_META_ECN);
	if (m->opts & XS_META_TS) {
		attrs.tstamp_ok = 1;
		/* The kernel derives its timestamp offset from the TSval it
		 * "sent" (our SYN-ACK's, echoed in TSecr).
		 */
		attrs.rcv_tsval = m->tsval;
		attrs.rcv_tsecr = m->tsecr;
	}
	if (m->opts & XS_META_WS) {
		attrs.wscale_ok = 1;
		attrs.snd_wscale = m->snd_wscale;
		/* The scale our SYN-ACK advertised; the kernel does not
		 * recompute it for a BPF cookie.
		 */
		attrs.rcv_wscale = xs_wscale;
	}
	/* The kfunc wants the full socket, taken while skc's reference is
	 * still held.
	 * The kfunc refuses (-EINVAL) an option whose sysctl is off; the
	 * SYN-ACK offered only those on at load (xs_server_opts), so only a
	 * sysctl turned off since then fails here, until a reload.
	 */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp) {
		bpf_sk_release(skc);
		return XS_V(XS_TC_ACT_SHOT, XS_R_HANDOFF_FAILED);
	}
	ret = bpf_sk_assign_tcp_reqsk(skb, (struct sock *)tp, &attrs,
				      sizeof(attrs));
	bpf_sk_release(skc);
	/* Dropped on failure: passed on, the kernel would run its own cookie
	 * check on our cookie, fail it and answer with an RST.
	 */
	if (ret)
		return XS_V(XS_TC_ACT_SHOT, XS_R_HANDOFF_FAILED);
	if (last) {
		last->t = *t;
		last->ns = now;
	}
	return XS_V(XS_TC_ACT_OK, XS_R_HANDOFF);
}

/* Returns XS_V(tc action, reason), or XS_TC_QUIET. */
static __always_inline __u32 xs_tc_handoff(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct xs_meta *mp = (void *)(long)skb->data_meta;
	struct xs_cursor c = { .pos = data, .end = data_end };
	struct bpf_sock_tuple t = {};
	struct xs_l3 l3 = {};
	struct tcphdr *th;
	struct xs_meta m = {};
	int proto, have_meta;
	__u32 tlen, state;

	if ((void *)(mp + 1) <= data) {
		if (mp->magic != XS_META_MAGIC)
			return XS_TC_QUIET;
		m = *mp;
		have_meta = 1;
	} else {
		/* The common case, every segment but a handshake ACK. */
		if (!xs_nometa_seen)
			return XS_TC_QUIET;
		have_meta = 0;
	}

	/* Parse again rather than trust offsets from XDP: the stack may have
	 * moved the headers since (VLAN tags are pulled out of the frame
	 * before tc sees it).
	 */
	proto = xs_parse_l3(&c, &l3, data);
	if (proto != IPPROTO_TCP || l3.nonfirst)
		return XS_TC_QUIET;
	if (xs_parse_tcp(&c, &l3, &th) < 0)
		return XS_TC_QUIET;
	if (!have_meta) {
		if ((XS_TCP_FLAGS(th) & (XS_TCP_SYN | XS_TCP_ACK | XS_TCP_RST)) !=
			    XS_TCP_ACK ||
		    !xs_port_protected(th->dest))
			return XS_TC_QUIET;
	}

	tlen = xs_sock_tuple(&t, &l3, th);
	if (!have_meta) {
		/* Established traffic looks like this too: the kernel's. */
		state = xs_sock_state(skb, &t, tlen);
		if (state && state != BPF_TCP_LISTEN)
			return XS_TC_QUIET;
		if (xs_tc_recheck(skb, l3.iph - data, (void *)th - data, l3.v6,
				  &m))
			return XS_V(XS_TC_ACT_SHOT, XS_R_HANDOFF_BAD_COOKIE);
	}
	return xs_tc_assign(skb, &t, tlen, &m);
}

#endif
