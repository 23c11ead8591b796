/* SPDX-License-Identifier: GPL-2.0 */
/* Types and numbers read by both the BPF object and Python. Python reads the
 * reason numbers from the object's BTF (enum xs_reason), and a test checks
 * that xdpshield.stats.Reason agrees with it.
 */
#ifndef XDPSHIELD_SHARED_H
#define XDPSHIELD_SHARED_H

enum xs_reason {
	XS_R_PASS_NON_IP = 0,	/* ARP, LLDP, anything not IPv4/IPv6 */
	XS_R_MALFORMED,		/* truncated or inconsistent headers */
	XS_R_PASS_UNPROTECTED,	/* IP traffic the shield does not guard */
	XS_R_SYN_COOKIE_SENT,	/* SYN answered with a cookie SYN-ACK */
	XS_R_ACK_VALID,		/* handshake ACK with a valid cookie */
	XS_R_ACK_INVALID,	/* ACK whose cookie does not check out */
	XS_R_VERIFIED_PASS,	/* from a verified client */
	XS_R_NOT_VERIFIED,	/* non-SYN/ACK segment from an unverified source */
	XS_R__MAX,
};

struct xs_counter {
	__u64 packets;
	__u64 bytes;
};

#endif
