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

/* Counted in jiffies where the tick's length is known: the verifier turns
 * bpf_jiffies64() into one load, where the coarse clock's helper is a call
 * (11 ns a packet on CPUs whose every return pays the SRSO mitigation).
 * jiffies * xs_jiffy_ns is CLOCK_MONOTONIC less a constant, which each CPU
 * learns from the coarse clock at its first read and again every
 * XS_JCLOCK_EVERY reads. It keeps the largest: jiffies move before the
 * timekeeper catches up, so a reading between the two is too small, and
 * none is ever too large. The result is at most one tick ahead of the
 * coarse clock.
 */
static __always_inline __u64 xs_now(void)
{
	struct xs_cpu_state *st;
	__s64 off;
	__u64 j;

	if (xs_fixed_now_ns) {
		__u32 zero = 0;
		__u64 *toff = bpf_map_lookup_elem(&xs_test_clock, &zero);

		return xs_fixed_now_ns + (toff ? *toff : 0);
	}
	if (!xs_jiffy_ns)
		return bpf_ktime_get_coarse_ns();
	st = xs_cpu_state();
	if (!st)
		return bpf_ktime_get_coarse_ns();
	j = bpf_jiffies64() * xs_jiffy_ns;
	if (!st->jvalid || !(st->jreads++ & (XS_JCLOCK_EVERY - 1))) {
		off = (__s64)(bpf_ktime_get_coarse_ns() - j);
		if (!st->jvalid || off > st->joff) {
			st->joff = off;
			st->jvalid = 1;
		}
	}
	return j + st->joff;
}

#endif
