/* SPDX-License-Identifier: GPL-2.0 */
/* Internet checksum folding (RFC 1071). */
#ifndef XDPSHIELD_CSUM_H
#define XDPSHIELD_CSUM_H

/* A 64-bit one's-complement sum folded to 16 bits and inverted: the value a
 * checksum field holds, or 0 when the summed bytes include a right one.
 */
static __always_inline __u16 xs_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif
