/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the shield, and the load-time knobs. Python's view of these
 * (names, key and value layouts) is src/xdpshield/datapath.py.
 */
#ifndef XDPSHIELD_MAPS_H
#define XDPSHIELD_MAPS_H

#include "consts.h"
#include "shared.h"

/* Verdict counters by reason: per CPU, so the hot path never needs an atomic. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XS_R__MAX);
	__type(key, __u32);
	__type(value, struct xs_counter);
} xs_stats SEC(".maps");

/* Protected TCP ports: one bitmap in a one-element array. An array lookup is
 * inlined by the verifier (a hash lookup is a call and a hash per segment),
 * and one 8 KiB value lets userspace read or replace the whole set in one
 * syscall.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_portset);
} xs_ports SEC(".maps");

/* Cookie keys: slot epoch & 1. Written only by userspace (rotate_keys). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XS_KEY_SLOTS);
	__type(key, __u32);
	__type(value, struct xs_key);
} xs_keys SEC(".maps");

/* Sources that completed a cookie handshake (reset mode). LRU so that a
 * flood of valid handshakes from many real hosts evicts the idle ones
 * instead of failing inserts.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, XS_VERIFIED_MAX);
	__type(key, struct xs_vkey);
	__type(value, struct xs_verified);
} xs_verified SEC(".maps");

/* Transparent mode: one bit per hash of a source address, set once a
 * segment of that source passes to a socket here; only the daemon clears
 * bits, cutting the filter back to the peers of live sockets. Only such
 * a source can hit a TIME_WAIT with its SYN, so only its SYNs pay for a
 * socket lookup; a spoofed flood's sources almost never have their bit set.
 * An array lookup is inlined.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XS_SEEN_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} xs_seen SEC(".maps");

/* Load-time knobs (const volatile: the verifier sees the values and prunes
 * what they switch off). datapath.constants() fills them.
 */
const volatile __u64 xs_verified_ttl_ns = 300ULL * 1000000000ULL;
const volatile __u32 xs_verified_budget = 32;
const volatile __u32 xs_wscale = 7;	/* window scale our SYN-ACK offers */
const volatile __u32 xs_mss4 = 1460;	/* MSS our SYN-ACK offers, IPv4 */
const volatile __u32 xs_mss6 = 1440;	/* and IPv6 */
/* The TCP options the protected stack accepts (XS_SRV_*, from its
 * net.ipv4.tcp_{timestamps,sack,window_scaling}): the SYN-ACK offers no
 * other, as the kernel's own would not.
 */
const volatile __u32 xs_server_opts = XS_SRV_TS | XS_SRV_SACK | XS_SRV_WS;
/* Transparent handshake: a valid handshake ACK passes to the kernel (with
 * its decoded cookie as XDP metadata, for the tc program) instead of being
 * answered with an RST; the verified table is not used.
 */
const volatile __u32 xs_transparent = 0;
/* Tests only: behave as on a driver without XDP metadata support. */
const volatile __u32 xs_force_nometa = 0;
/* Set by XDP when the driver gave no room for metadata: from then on tc
 * re-checks cookies itself. A plain global: one writer value, no race that
 * matters (it only ever goes from 0 to 1).
 */
__u32 xs_nometa_seen = 0;
/* Tests only: a fixed clock (ns), so cookies' TSval and expiry are
 * reproducible. 0 (always, in production) reads the kernel's clock.
 */
const volatile __u64 xs_fixed_now_ns = 0;

#endif
