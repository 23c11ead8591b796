/* SPDX-License-Identifier: GPL-2.0 */
/* Verdicts and the one exit that counts them. A verdict is the program's
 * action (XDP action, or tc action in a byte) with its reason above it;
 * every stage returns one, and each entry point ends in xs_verdict_exit().
 */
#ifndef XDPSHIELD_VERDICT_H
#define XDPSHIELD_VERDICT_H

#include "shared.h"
#include "maps.h"

#define XS_V(act, reason)	((__u32)(reason) << 8 | (act))
#define XS_V_ACT(v)		((v) & 0xff)
#define XS_V_REASON(v)		((v) >> 8)

/* A verdict that is not counted: tc's for the ordinary segment it leaves
 * alone (counting it would add a map write to every packet the server
 * receives).
 */
#define XS_V_QUIET(act)		XS_V(act, XS_R__MAX)
#define XS_V_IS_QUIET(v)	(XS_V_REASON(v) >= XS_R__MAX)

/* The one exit of both programs: count the verdict under its reason, with
 * the frame's @len bytes, and return its action. A quiet verdict must not
 * get here (the XDP side has none, so it pays no compare for them).
 */
static __always_inline __u32 xs_verdict_exit(__u32 verdict, __u32 len)
{
	__u32 reason = XS_V_REASON(verdict);
	struct xs_counter *cnt;

	cnt = bpf_map_lookup_elem(&xs_stats, &reason);
	if (cnt) {
		cnt->packets++;
		cnt->bytes += len;
	}
	return XS_V_ACT(verdict);
}

#endif
