/* SPDX-License-Identifier: GPL-2.0 */
/* Types and numbers read by both the BPF object and Python. Python reads the
 * reason numbers from the object's BTF (enum xs_reason), and a test checks
 * that xdpshield.shield.datapath.Reason agrees with it. Every other number
 * Python mirrors is in enum xs_abi below, and the map value layouts here are
 * mirrored by the StructCodec formats in shield/datapath.py: tests/unit/
 * test_mirrors.py checks both against the object's BTF.
 */
#ifndef XDPSHIELD_SHARED_H
#define XDPSHIELD_SHARED_H

#include "consts.h"

/* Why a frame got its verdict. Append only: the numbers are an ABI with
 * pinned maps and with Python.
 */
enum xs_reason {
	XS_R_PASS_NON_IP = 0,	/* ARP, LLDP, anything not IPv4/IPv6 */
	XS_R_MALFORMED,		/* truncated or inconsistent headers */
	XS_R_PASS_UNPROTECTED,	/* IP traffic the shield does not guard */
	XS_R_SYN_COOKIE_SENT,	/* SYN answered with a cookie SYN-ACK */
	XS_R_ACK_VALID,		/* handshake ACK with a valid cookie */
	XS_R_ACK_INVALID,	/* ACK whose cookie does not check out */
	XS_R_VERIFIED_PASS,	/* from a verified client */
	XS_R_NOT_VERIFIED,	/* non-SYN/ACK segment from an unverified source */
	XS_R_PASS_FRAGMENT,	/* non-first IP fragment: no L4 header to judge */
	XS_R_NO_KEY,		/* no live cookie key yet: guarded SYN/ACK dropped */
	XS_R_REPLY_FAILED,	/* the frame could not be resized for a reply */
	/* Transparent mode (the ACK_VALID reason counts the handshake ACKs
	 * passed on to tc; ACK_INVALID the ACKs with neither socket nor cookie).
	 */
	XS_R_ESTABLISHED_PASS,	/* segment of a socket the kernel already has */
	XS_R_HANDOFF,		/* tc: connection handed to the kernel (kfunc) */
	XS_R_HANDOFF_FAILED,	/* tc: the kfunc refused; segment dropped */
	XS_R_HANDOFF_NO_LISTENER, /* tc: nothing listens; the kernel answers */
	XS_R_HANDOFF_BAD_COOKIE, /* tc, no XDP metadata: cookie re-check failed */
	XS_R_SYN_EXISTING_SOCKET, /* SYN whose 4-tuple has a socket (a TIME_WAIT):
				   * the kernel answers it */
	XS_R_MARTIAN,		/* SYN the kernel would drop unanswered: martian
				 * or LAND source, broadcast, multicast or
				 * non-local destination, frame not to our MAC */
	XS_R_BAD_CHECKSUM,	/* SYN with a bad IPv4 or TCP checksum */
	XS_R_SYN_NO_LISTENER,	/* SYN to a port nothing listens on: RST, as the
				 * kernel answers */
	XS_R_SYN_UNDER_THRESHOLD, /* transparent, no SYN flood on: the kernel
				   * answers the SYN itself */
	XS_R_STRAY_UNDER_THRESHOLD, /* transparent, no flood on: a segment that
				     * is neither ours nor a socket's goes to
				     * the kernel (its own cookie, or its RST) */
	XS_R_NOT_VERIFIED_RST,	/* reset mode: a segment dropped for want of
				 * verification, answered with an RST */
	XS_R_RST_CAPPED,	/* an RST not sent: over the per-CPU cap */
	XS_R_VLAN_TOO_DEEP,	/* more VLAN tags than XS_MAX_VLAN */
	XS_R__MAX,
};

struct xs_counter {
	__u64 packets;
	__u64 bytes;
};

/* The protected TCP ports: bit (port & 63) of bits[port >> 6]. */
struct xs_portset {
	__u64 bits[1024];
};

/* One cookie key slot of xs_keys. The slot index is epoch & 1, so a rotation
 * overwrites only the slot of the key that is two epochs old. The epoch is
 * the cookie's time counter: userspace bumps it on every rotation.
 */
struct xs_key {
	__u64 k[2];		/* SipHash-2-4 key: bytes 0..7 and 8..15 */
	__u32 epoch;		/* rotation counter this key was made for */
	__u32 live;		/* 0 until userspace has written a key */
	__u64 born_s;		/* CLOCK_REALTIME seconds it was written (for
				 * status: the key's age); unused by BPF */
};

/* Key of xs_verified: the source address, IPv4 as ::ffff:a.b.c.d. */
struct xs_vkey {
	__u32 addr[4];		/* network order */
};

struct xs_verified {
	__u64 expires_ns;	/* CLOCK_MONOTONIC; refreshed while active */
	__u32 pad[2];		/* was a budget of new connections (removed:
				 * it reset a verified client's connection) */
};

/* Per CPU: is a SYN flood on, and the cap on the RSTs the shield sends.
 * Windows of 2^XS_WIN_SHIFT ns; no atomics, no division.
 */
struct xs_cpu_state {
	__u64 win_start;	/* start of the current rate window, ns */
	__u32 count;		/* handshake packets in it (SYNs, stray ACKs) */
	__u32 flood;		/* 1: answer SYNs with cookies */
	__u32 calm_wins;	/* windows in a row below the off threshold */
	__u32 rst_count;	/* RSTs sent in the current window */
	__u64 floods;		/* how many times flood mode was entered */
	__u64 last_change_ns;	/* when flood mode last turned on or off */
	/* What the SYN path would otherwise ask the kernel or a hash map per
	 * packet, cached for one window (a flood hits one destination, one
	 * link): the link's MSS, the last destination and its xs_local kind.
	 */
	__u64 cache_ns;		/* when the caches were last emptied */
	__u32 mss4, mss6;	/* 0: not read yet */
	__u32 dst[4];		/* as struct xs_vkey */
	__u32 dst_kind;		/* enum xs_local_kind, or 0 */
	__u32 dst_valid;	/* dst and dst_kind are filled */
};

/* Where the shield's own interface stands (userspace keeps it current). */
struct xs_ifinfo {
	__u8 mac[6];		/* the interface's MAC */
	__u16 has_mac;		/* 0: not known, no MAC check */
};

/* xs_local values: what a local address is. */
enum xs_local_kind {
	XS_LOCAL_UNICAST = 1,	/* an address of this namespace */
	XS_LOCAL_BROADCAST = 2,	/* a local subnet's broadcast address */
};

/* What XDP tells tc about a handshake ACK whose cookie checked out, in the
 * 16 bytes of XDP metadata in front of the frame (skb->data_meta in tc).
 * Only what the cookie and the ACK's timestamps decode to: tc re-parses the
 * headers itself, because the stack may have moved them (VLAN untagging).
 */
struct xs_meta {
	__u32 tsval;		/* the client's TSval, host order */
	__u32 tsecr;		/* the ACK's TSecr: our SYN-ACK's TSval */
	__u16 mss;		/* from the cookie's MSS index */
	__u8 opts;		/* XS_META_* */
	__u8 snd_wscale;	/* the client's window scale */
	__u32 magic;		/* XS_META_MAGIC */
};

/* The numbers Python mirrors, as one enum that the object's BTF keeps (see
 * xs_abi_btf_anchor): the #defines stay the ones the code uses, and a test
 * compares each member with its Python twin, named beside it.
 */
enum xs_abi {
	/* datapath.SRV_*: xs_server_opts bits */
	XS_ABI_SRV_TS = XS_SRV_TS,
	XS_ABI_SRV_SACK = XS_SRV_SACK,
	XS_ABI_SRV_WS = XS_SRV_WS,
	XS_ABI_SRV_ECN = XS_SRV_ECN,
	/* datapath.META_*: struct xs_meta's opts bits and magic */
	XS_ABI_META_TS = XS_META_TS,
	XS_ABI_META_SACK = XS_META_SACK,
	XS_ABI_META_WS = XS_META_WS,
	XS_ABI_META_ECN = XS_META_ECN,
	XS_ABI_META_MAGIC = XS_META_MAGIC,
	/* datapath.SEEN_BITS, datapath.WIN_NS (1 << XS_WIN_SHIFT) */
	XS_ABI_SEEN_BITS = XS_SEEN_BITS,
	XS_ABI_WIN_SHIFT = XS_WIN_SHIFT,
	/* datapath.LOCAL_*: xs_local values */
	XS_ABI_LOCAL_UNICAST = XS_LOCAL_UNICAST,
	XS_ABI_LOCAL_BROADCAST = XS_LOCAL_BROADCAST,
	/* cookie.py: the cookie layout and its clock */
	XS_ABI_COOKIE_MSS_MASK = XS_COOKIE_MSS_MASK,
	XS_ABI_COOKIE_SLOT_SHIFT = XS_COOKIE_SLOT_SHIFT,
	XS_ABI_COOKIE_TICK_SHIFT = XS_COOKIE_TICK_SHIFT,
	XS_ABI_COOKIE_HASH_MASK = XS_COOKIE_HASH_MASK,
	XS_ABI_COOKIE_TICK_NS_SHIFT = XS_COOKIE_TICK_NS_SHIFT,
	/* cookie.py: the TSval low bits and clock */
	XS_ABI_TS_BITS = XS_TS_BITS,
	XS_ABI_TS_WSCALE_MASK = XS_TS_WSCALE_MASK,
	XS_ABI_TS_SACK = XS_TS_SACK,
	XS_ABI_TS_ECN = XS_TS_ECN,
	XS_ABI_MAX_WSCALE = XS_MAX_WSCALE,
	XS_ABI_TS_SHIFT = XS_TS_SHIFT,
	/* tests/datapath/model.py: what a reply carries */
	XS_ABI_REPLY_TTL = XS_REPLY_TTL,
	XS_ABI_SYNACK_WINDOW = XS_SYNACK_WINDOW,
};

#endif
