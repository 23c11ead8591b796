/* SPDX-License-Identifier: GPL-2.0 */
/* Drop samples: a copy of the head of a dropped or answered frame, with its
 * reason and rule, to the xs_samples ring that `xdpshield capture` and `top`
 * read. Capped per reason by a token bucket per CPU (xs_sample_bkt, written
 * by userspace: each CPU refills at its share of the cap), so a flood can
 * never make the data path pay for more than the cap's copies; a full ring
 * costs one failed reserve and a count, never a wait.
 */
#ifndef XDPSHIELD_SAMPLE_H
#define XDPSHIELD_SAMPLE_H

#include "shared.h"
#include "maps.h"
#include "clock.h"

/* Take a sample of the frame in @ctx (XDP, or tc's skb of @len bytes when
 * @tc) if the reason's bucket allows. Not sampling costs the bucket's
 * per-CPU read and a compare (off), or that and a decrement (over the cap;
 * the clock once every XS_SAMPLE_SKIP + 1 packets).
 */
static __always_inline void xs_sample(void *ctx, __u32 verdict, __u32 len,
				      const int tc)
{
	__u32 reason = (verdict >> 8) & 0xff;
	struct xs_sample_stat *st;
	struct xs_sample_bkt *b;
	struct xs_sample *s;
	__u64 now, tat, n;
	long err;

	b = bpf_map_lookup_elem(&xs_sample_bkt, &reason);
	if (!b || !b->cost_ns)
		return;
	if (b->skip) {
		b->skip--;
		return;
	}
	now = xs_now();
	tat = b->tat > now ? b->tat : now;
	if (tat + b->cost_ns - now > b->depth_ns) {
		b->skip = XS_SAMPLE_SKIP;
		return;
	}
	/* Charged before the reserve: a full ring does not make every later
	 * packet of the flood try again.
	 */
	b->tat = tat + b->cost_ns;
	st = bpf_map_lookup_elem(&xs_sample_stat, &reason);
	if (!st)
		return;
	s = bpf_ringbuf_reserve(&xs_samples, sizeof(*s), 0);
	if (!s) {
		st->full++;
		return;
	}
	/* The frame as it is now: an answered one was rewritten into the
	 * reply, whose length may differ from the one received.
	 */
	if (!tc)
		len = ((struct xdp_md *)ctx)->data_end -
		      ((struct xdp_md *)ctx)->data;
	n = len < XS_SAMPLE_BYTES ? len : XS_SAMPLE_BYTES;
	/* Verifier: the helper's size must be provably in 1..sizeof(data);
	 * a 64-bit n, so the checks and the call use the same register (a
	 * __u32 was checked zero-extended but passed as is).
	 */
	barrier_var(n);
	if (n < 1 || n > XS_SAMPLE_BYTES) {
		bpf_ringbuf_discard(s, BPF_RB_NO_WAKEUP);
		return;
	}
	if (tc)
		err = bpf_skb_load_bytes(ctx, 0, s->data, n);
	else
		err = bpf_xdp_load_bytes(ctx, 0, s->data, n);
	if (err) {
		bpf_ringbuf_discard(s, BPF_RB_NO_WAKEUP);
		return;
	}
	s->ts_ns = bpf_ktime_get_ns();
	s->ifindex = tc ? ((struct __sk_buff *)ctx)->ifindex :
			  ((struct xdp_md *)ctx)->ingress_ifindex;
	s->len = len;
	s->reason = reason;
	s->rule = verdict >> XS_V_RULE_SHIFT;
	s->action = verdict & 0xff;
	s->tc = tc;
	s->caplen = n;
	st->sent++;
	bpf_ringbuf_submit(s, 0);
}

#endif
