/* SPDX-License-Identifier: GPL-2.0 */
/* The data path's clock: CLOCK_MONOTONIC ns at the kernel tick's
 * resolution, what ktime_get_coarse_ns() gives; fixed in tests
 * (xs_fixed_now_ns).
 */
#ifndef XDPSHIELD_CLOCK_H
#define XDPSHIELD_CLOCK_H

#include "consts.h"
#include "maps.h"

/* This CPU's state (flood.h's rate windows and caches, the clock's offset). */
static __always_inline struct xs_cpu_state *xs_cpu_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xs_cpu, &zero);
}

/* xs_jclock's flip of the sign bit. */
#define XS_JOFF_FLIP	(1ULL << 63)

/* Counted in jiffies where the tick's length is known: the verifier turns
 * bpf_jiffies64() into one load, where the coarse clock's helper is a call
 * (11 ns a packet on CPUs whose every return pays the SRSO mitigation).
 * jiffies * xs_jiffy_ns is CLOCK_MONOTONIC less a constant, read from the
 * coarse clock by each CPU at its first call and every XS_JCLOCK_EVERY
 * calls. The largest reading is kept: jiffies move before the timekeeper
 * catches up, so a reading between the two is too small, and none is ever
 * too large. The result is at most one tick ahead of the coarse clock.
 * One offset for all CPUs (xs_jclock): a CPU whose reading was too small
 * would else run up to a tick behind the others until its next reading,
 * and times that CPUs compare (a source's excess, a cookie's tick) would
 * disagree. Written only when larger, so its line stays in every CPU's
 * cache; two CPUs writing at once may lose the larger, which the next
 * reading puts back.
 */
static __always_inline __u64 xs_now(void)
{
	struct xs_cpu_state *st;
	__u64 j, w, r, *shared;
	__u32 zero = 0;

	if (xs_fixed_now_ns) {
		__u64 *toff = bpf_map_lookup_elem(&xs_test_clock, &zero);

		return xs_fixed_now_ns + (toff ? *toff : 0);
	}
	if (!xs_jiffy_ns)
		return bpf_ktime_get_coarse_ns();
	st = xs_cpu_state();
	shared = bpf_map_lookup_elem(&xs_jclock, &zero);
	if (!st || !shared)
		return bpf_ktime_get_coarse_ns();
	j = bpf_jiffies64() * xs_jiffy_ns;
	w = *shared;
	if (!w || !(st->jreads++ & (XS_JCLOCK_EVERY - 1))) {
		r = (bpf_ktime_get_coarse_ns() - j) ^ XS_JOFF_FLIP;
		if (r > w) {
			*shared = r;
			w = r;
		}
	}
	return j + (w ^ XS_JOFF_FLIP);
}

#endif
