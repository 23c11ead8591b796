/* SPDX-License-Identifier: GPL-2.0 */
/* The data path's clock: fixed in tests (xs_fixed_now_ns), the kernel's
 * coarse monotonic clock otherwise.
 */
#ifndef XDPSHIELD_CLOCK_H
#define XDPSHIELD_CLOCK_H

#include "maps.h"

static __always_inline __u64 xs_now(void)
{
	if (xs_fixed_now_ns) {
		__u32 zero = 0;
		__u64 *off = bpf_map_lookup_elem(&xs_test_clock, &zero);

		return xs_fixed_now_ns + (off ? *off : 0);
	}
	/* Coarse (jiffies) resolution is plenty for ms timestamps and second
	 * expiries, and much cheaper than reading the clocksource.
	 */
	return bpf_ktime_get_coarse_ns();
}

#endif
