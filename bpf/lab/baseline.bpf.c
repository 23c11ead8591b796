// SPDX-License-Identifier: GPL-2.0
/* Benchmark baselines and harness programs (used only by xdpshield.bench).
 *
 * bench_drop      bare XDP_DROP: the floor of BPF_PROG_TEST_RUN and of a live
 *                 receiver (what every drop path is compared with).
 * bench_tx        bare XDP_TX: the frame goes back out unchanged.
 * bench_reflect   XDP_TX after swapping MACs, addresses and ports: the
 *                 cheapest reply a live receiver can make, and one that goes
 *                 back to the (spoofed) sender (the SYN-flood baseline).
 * bench_restore   test-run harness: BPF_PROG_TEST_RUN with repeat > 1 runs
 *                 every iteration on the frame the previous one left behind,
 *                 so a program that rewrites (SYN -> SYN-ACK) would see its
 *                 own reply from the 2nd run on. This program writes the
 *                 original frame back (bench_frame) and tail-calls the
 *                 program under test (bench_target[0]). Its own cost is
 *                 measured in the same run by tail-calling bench_drop and
 *                 subtracted by the Python side.
 * bench_forge     test-run harness for a random forged-ACK flood: every
 *                 iteration gives the IPv4 TCP frame (no IP options) a
 *                 random source address, source port and acknowledgment
 *                 number, then tail-calls bench_target[0]: the forge rate,
 *                 and the ACK path as a flood's cache misses make it. Its
 *                 own cost is measured into bench_drop, as bench_restore's.
 * bench_synforge  test-run harness for a random SYN flood: bench_restore's
 *                 frame (an IPv4 TCP SYN, no IP options), then a random
 *                 source address (its first byte kept) and source port,
 *                 checksums mended, then bench_target[0]: the SYN path as a
 *                 flood's cache misses make it.
 * bench_mark      test-run semantics probe: counts the frame's kind like
 *                 bench_sink, then turns a SYN into a SYN-ACK (sets ACK) and
 *                 drops it; the counts tell whether a run saw a fresh copy
 *                 of the input or what an earlier run left behind.
 * bench_parse_drop  live floor of a verdict that reads the headers: the
 *                 shield's own parse (parse.h: Ethernet, VLAN, IPv4 or IPv6
 *                 and its extension headers, TCP), a per-CPU count of the
 *                 packets and bytes by what the parse found, XDP_DROP. What
 *                 any check of a flood's packet pays before it decides.
 * bench_sink      live receiver at the attacker side: counts frames by kind
 *                 (bench_sink_stats) and drops them; a native XDP program on
 *                 the peer is also what makes XDP_TX on veth deliver at all.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_ALEN 6
#define BENCH_FRAME_MAX 256	/* bytes; larger than any benchmark frame */

/* Frame restored before every run of bench_restore. */
struct bench_frame {
	__u32 len;		/* bytes of data[] in use, 1..BENCH_FRAME_MAX */
	__u32 pad;
	__u8 data[BENCH_FRAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_frame);
} bench_frame SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_target SEC(".maps");

/* Kinds counted by bench_sink; mirrored by SinkKind in lab/bench/harness.py. */
enum bench_sink_kind {
	BENCH_SINK_OTHER = 0,
	BENCH_SINK_SYNACK,	/* TCP SYN+ACK */
	BENCH_SINK_RST,		/* TCP RST */
	BENCH_SINK_TCP,		/* any other TCP */
	BENCH_SINK_SYN,		/* bare SYN: a reflected, unchanged SYN */
	BENCH_SINK__MAX,
};

/* Keeps enum bench_sink_kind in the object's BTF (tests/unit/
 * test_mirrors.py compares it with SinkKind).
 */
enum bench_sink_kind bench_sink_btf_anchor SEC(".rodata.btf")
	__attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BENCH_SINK__MAX);
	__type(key, __u32);
	__type(value, __u64);
} bench_sink_stats SEC(".maps");

/* 1: bench_sink only counts and passes everything (legit clients share the
 * interface); 0: TCP SYN, SYN-ACK and RST are dropped after counting.
 */
const volatile __u8 sink_pass_all = 0;

/* bench_parse_drop's counts: by what the parse found (0 not TCP, 1 TCP,
 * 2 malformed), so that the parse is not compiled away.
 */
struct bench_count {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, struct bench_count);
} bench_parse_stats SEC(".maps");

SEC("xdp")
int bench_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int bench_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

SEC("xdp")
int bench_parse_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xs_cursor c = { .pos = data, .end = data_end };
	struct xs_l3 l3 = {};
	struct bench_count *n;
	struct tcphdr *th;
	__u32 kind = 0;
	int proto;

	proto = xs_parse_l3(&c, &l3, data);
	if (proto == IPPROTO_TCP && !l3.nonfirst)
		proto = xs_parse_tcp(&c, &l3, &th);
	if (proto < 0 && proto != XS_L3_NOT_IP)
		kind = 2;
	else if (proto == IPPROTO_TCP)
		kind = 1;
	n = bpf_map_lookup_elem(&bench_parse_stats, &kind);
	if (n) {
		n->packets++;
		n->bytes += data_end - data;
	}
	return XDP_DROP;
}

static __always_inline void swap_bytes(__u8 *a, __u8 *b, int n)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		__u8 t;

		if (i >= n)
			break;
		t = a[i];
		a[i] = b[i];
		b[i] = t;
	}
}

/* Swaps MACs, addresses and TCP/UDP ports: the reply goes back where the
 * frame came from, and no checksum changes (each sum is order-independent).
 */
SEC("xdp")
int bench_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u16 *ports;
	__u8 proto;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return XDP_DROP;
		swap_bytes((void *)&ip->saddr, (void *)&ip->daddr, 4);
		proto = ip->protocol;
		ports = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return XDP_DROP;
		swap_bytes((void *)&ip6->saddr, (void *)&ip6->daddr, 16);
		proto = ip6->nexthdr;
		ports = (void *)(ip6 + 1);
	} else {
		return XDP_PASS;
	}
	if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP) &&
	    (void *)(ports + 2) <= data_end)
		swap_bytes((void *)&ports[0], (void *)&ports[1], 2);
	swap_bytes(eth->h_dest, eth->h_source, ETH_ALEN);
	return XDP_TX;
}

/* Plain XDP_PASS, for the peer of a veth whose XDP_TX must be delivered. */
SEC("xdp")
int bench_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Write bench_frame back over the frame. Returns 0, or -1 (XDP_ABORTED). */
static __always_inline int restore_frame(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct bench_frame *f;
	__u32 n;
	int len;

	f = bpf_map_lookup_elem(&bench_frame, &key);
	if (!f)
		return -1;
	/* Undo a length change of the previous run (e.g. options rewritten). */
	len = (long)ctx->data_end - (long)ctx->data;
	if (len != f->len && bpf_xdp_adjust_tail(ctx, (int)f->len - len))
		return -1;
	/* The helper needs a length in [1, MAX]. Computed, not branched on:
	 * clang 14 range-checks a sign-extended copy and passes the unchecked
	 * register on. Python guarantees 1 <= len <= MAX, so this is len.
	 */
	n = ((f->len - 1) & (BENCH_FRAME_MAX - 1)) + 1;
	return bpf_xdp_store_bytes(ctx, 0, f->data, n) ? -1 : 0;
}

SEC("xdp")
int bench_restore(struct xdp_md *ctx)
{
	if (restore_frame(ctx))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &bench_target, 0);
	return XDP_ABORTED;	/* no target installed */
}

/* A TCP header's first word (@ports, as stored) with a random source port.
 * Whole words written, each a word the program under test loads: a load
 * that spans narrower stores cannot be forwarded from them, and would wait
 * for them to retire as no frame off a link makes it.
 */
static __always_inline __u32 random_sport(__u32 ports)
{
	return (ports & bpf_htonl(0x0000ffff)) |
	       (bpf_get_prandom_u32() & bpf_htonl(0xffff0000));
}

SEC("xdp")
int bench_forge(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct tcphdr *th = (void *)(ip + 1);

	if ((void *)(th + 1) > data_end)
		return XDP_ABORTED;
	ip->saddr = bpf_get_prandom_u32();
	*(__u32 *)th = random_sport(*(__u32 *)th);
	th->ack_seq = bpf_get_prandom_u32();
	bpf_tail_call(ctx, &bench_target, 0);
	return XDP_ABORTED;	/* no target installed */
}

/* RFC 1624: a ones' complement checksum (as stored) after a 32-bit word it
 * covers changed from @from to @to (both as stored in the frame).
 */
static __always_inline __u16 csum_replace4(__u16 check, __u32 from, __u32 to)
{
	__u32 s = (__u16)~check;

	s += (__u16)~from + (__u16)~(from >> 16) + (to & 0xffff) + (to >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

SEC("xdp")
int bench_synforge(struct xdp_md *ctx)
{
	void *data, *data_end;
	struct iphdr *ip;
	struct tcphdr *th;
	__u32 saddr, ports, nports, r, *w;

	if (restore_frame(ctx))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ip = data + sizeof(struct ethhdr);
	th = (void *)(ip + 1);
	if ((void *)(th + 1) > data_end)
		return XDP_ABORTED;
	/* The low 24 bits of the source and the source port: the first byte
	 * stays what the frame had, so no source is a martian. Whole words
	 * written (see random_sport()).
	 */
	r = bpf_get_prandom_u32();
	saddr = (ip->saddr & bpf_htonl(0xff000000)) | (r & bpf_htonl(0x00ffffff));
	ports = *(__u32 *)th;
	nports = random_sport(ports);
	w = (__u32 *)ip + 2;	/* ttl, protocol, check */
	*w = (*w & 0xffff) |
	     (__u32)csum_replace4(*w >> 16, ip->saddr, saddr) << 16;
	w = (__u32 *)th + 4;	/* check, urg_ptr */
	*w = (*w & 0xffff0000) |
	     csum_replace4(csum_replace4(*w & 0xffff, ip->saddr, saddr), ports, nports);
	ip->saddr = saddr;
	*(__u32 *)th = nports;
	bpf_tail_call(ctx, &bench_target, 0);
	return XDP_ABORTED;	/* no target installed */
}

static __always_inline __u32 sink_kind(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct tcphdr *tcp;
	__u8 proto;

	if ((void *)(eth + 1) > data_end)
		return BENCH_SINK_OTHER;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return BENCH_SINK_OTHER;
		proto = ip->protocol;
		tcp = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return BENCH_SINK_OTHER;
		proto = ip6->nexthdr;
		tcp = (void *)(ip6 + 1);
	} else {
		return BENCH_SINK_OTHER;
	}
	if (proto != IPPROTO_TCP || (void *)(tcp + 1) > data_end)
		return BENCH_SINK_OTHER;
	if (tcp->rst)
		return BENCH_SINK_RST;
	if (tcp->syn)
		return tcp->ack ? BENCH_SINK_SYNACK : BENCH_SINK_SYN;
	return BENCH_SINK_TCP;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 kind = sink_kind(data, data_end);
	__u64 *n;

	n = bpf_map_lookup_elem(&bench_sink_stats, &kind);
	if (n)
		*n += 1;
	/* ARP/ND and the legit clients' traffic must reach the stack. */
	if (sink_pass_all || kind == BENCH_SINK_OTHER || kind == BENCH_SINK_TCP)
		return XDP_PASS;
	return XDP_DROP;
}

SEC("xdp")
int bench_mark(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 kind = sink_kind(data, data_end);
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr *tcp;
	__u64 *n;

	n = bpf_map_lookup_elem(&bench_sink_stats, &kind);
	if (n)
		*n += 1;
	/* Only plain Eth/IPv4 (no options)/TCP frames are marked. */
	ip = (void *)(eth + 1);
	tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end)
		return XDP_DROP;
	tcp->ack = 1;
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
