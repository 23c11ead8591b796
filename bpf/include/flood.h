/* SPDX-License-Identifier: GPL-2.0 */
/* Per-CPU rate state: is a SYN flood on (transparent mode answers SYNs with
 * cookies only then, and leaves them to the kernel otherwise, so that a
 * client keeps every option the kernel would give it), and the cap on the
 * RSTs the shield sends. Windows of 2^XS_WIN_SHIFT ns, counted per CPU: no
 * atomics and no division on the fast path.
 */
#ifndef XDPSHIELD_FLOOD_H
#define XDPSHIELD_FLOOD_H

#include "consts.h"
#include "maps.h"
#include "clock.h"

/* Start a new window when the current one is over; judge the one ending.
 * On: at once, when a window reaches xs_flood_on. Off: after
 * xs_flood_off_wins whole windows in a row below xs_flood_off.
 */
static __always_inline void xs_window_roll(struct xs_cpu_state *st, __u64 now)
{
	__u64 wins = (now - st->win_start) >> XS_WIN_SHIFT;

	if (!wins)
		return;
	if (wins > 0xffff)
		wins = 0xffff;
	if (st->flood) {
		/* The window that ended, then the idle ones since (calm). */
		st->calm_wins = st->count < xs_flood_off ?
					st->calm_wins + (__u32)wins :
					(__u32)wins - 1;
		if (st->calm_wins >= xs_flood_off_wins) {
			st->flood = 0;
			st->last_change_ns = now;
		}
	}
	st->win_start = now;
	st->count = 0;
	st->rst_count = 0;
}

/* Count one handshake packet (a SYN, or an ACK that is neither ours nor a
 * socket's) and say whether a flood is on. Always on when no threshold is
 * set (xs_flood_on == 0: the verifier prunes the rest).
 */
static __always_inline int xs_flood_count(__u64 now)
{
	struct xs_cpu_state *st;

	if (!xs_flood_on)
		return 1;
	st = xs_cpu_state();
	if (!st)
		return 1;
	xs_window_roll(st, now);
	st->count++;
	if (!st->flood && st->count >= xs_flood_on) {
		st->flood = 1;
		st->calm_wins = 0;
		st->floods++;
		st->last_change_ns = now;
	}
	return st->flood;
}

/* Is a flood on (this CPU's judgement as of its last count)? Counts
 * nothing: for the segments that do not count towards it.
 */
static __always_inline int xs_flood_is_on(void)
{
	struct xs_cpu_state *st;

	if (!xs_flood_on)
		return 1;
	st = xs_cpu_state();
	return !st || st->flood;
}

/* This CPU's caches, emptied when a window has passed since they were
 * filled: a change (the MTU, an address) is followed within 134 ms.
 */
static __always_inline struct xs_cpu_state *xs_cache(__u64 now)
{
	struct xs_cpu_state *st = xs_cpu_state();

	if (st && (now - st->cache_ns) >> XS_WIN_SHIFT) {
		st->cache_ns = now;
		st->mss4 = 0;
		st->mss6 = 0;
		st->dst_valid = 0;
	}
	return st;
}

/* May this CPU send one more RST in this window? Counts it if so. */
static __always_inline int xs_rst_allowed(__u64 now)
{
	struct xs_cpu_state *st;

	if (!xs_rst_per_win)
		return 0;
	st = xs_cpu_state();
	if (!st)
		return 0;
	xs_window_roll(st, now);
	if (st->rst_count >= xs_rst_per_win)
		return 0;
	st->rst_count++;
	return 1;
}

#endif
