/* SPDX-License-Identifier: GPL-2.0 */
/* Verdicts and the one exit that counts (and samples) them. A verdict is
 * the program's action (XDP action, or tc action in a byte), its reason in
 * the byte above, and the rule that decided it (id + 1, 0: none) in the top
 * 16 bits; every stage returns one, and each entry point ends in
 * xs_verdict_exit().
 */
#ifndef XDPSHIELD_VERDICT_H
#define XDPSHIELD_VERDICT_H

#include "shared.h"
#include "maps.h"
#include "sample.h"

#define XS_V(act, reason)	((__u32)(reason) << 8 | (act))
#define XS_V_ACT(v)		((v) & 0xff)
#define XS_V_REASON(v)		(((v) >> 8) & 0xff)
/* A verdict a rule decided: @id1 is its id + 1 (carried to drop samples). */
#define XS_V_RULE(v, id1)	((v) | (__u32)(id1) << XS_V_RULE_SHIFT)

/* A verdict that is not counted: tc's for the ordinary segment it leaves
 * alone (counting it would add a map write to every packet the server
 * receives).
 */
#define XS_V_QUIET(act)		XS_V(act, XS_R__MAX)
#define XS_V_IS_QUIET(v)	(XS_V_REASON(v) >= XS_R__MAX)

/* The one exit of both programs: count the verdict under its reason, with
 * the frame's @len bytes, sample it if dropped or answered, and return its
 * action. @ctx is the XDP context, or the skb when @tc (a constant: the
 * other program's branch is compiled out). A quiet verdict must not get
 * here (the XDP side has none, so it pays no compare for them).
 */
static __always_inline __u32 xs_verdict_exit(void *ctx, __u32 verdict,
					     __u32 len, const int tc)
{
	__u32 reason = XS_V_REASON(verdict), act = XS_V_ACT(verdict);
	struct xs_counter *cnt;

	cnt = bpf_map_lookup_elem(&xs_stats, &reason);
	if (cnt) {
		cnt->packets++;
		cnt->bytes += len;
	}
	/* XDP_DROP (1) and XDP_TX (3) are the odd actions: one test. */
	if (tc ? act == XS_TC_ACT_SHOT : act & 1)
		xs_sample(ctx, verdict, len, tc);
	return act;
}

#endif
