// SPDX-License-Identifier: GPL-2.0
/* The stand's traffic programs.
 *
 * xdp_flood: an in-kernel packet generator. Python runs it with
 * BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) on the
 * attacker's uplink; every XDP_TX really leaves on that link. Python builds
 * one correct frame (the template, with scapy) and says which 32-bit windows
 * of it to randomise; each run copies the template, randomises the windows
 * (spoofed source address, ports, sequence numbers, IP id, fragment offset)
 * and recomputes the checksums.
 *
 * xdp_mux (the stand's shared link, opt-in): legit frames and the flood share
 * one stream. On a real link a NIC's ring refuses legit frames as often as
 * flood frames; on the stand the clients share a CPU with the generator and
 * send only while it is off that CPU, when the server's ring has drained, so
 * they would never meet the overflow. xdp_mux, on the router's client-facing
 * link, queues client frames to the server while a generator runs; the
 * generator sends them in its own stream, a queued batch at a random run, so
 * they meet the ring nearly as a flood frame does (lab/stand.py says how near).
 *
 * xdp_upstream: the native program on every link that faces the server, so
 * that the server's XDP_TX replies are delivered at all (a veth drops them
 * unless its peer runs a native XDP program). It also blackholes replies to
 * spoofed sources, as the Internet would, instead of letting the attacker
 * namespace's stack route millions of them to nowhere.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IP4_HLEN 20
#define IP6_HLEN 40
#define UDP_PROTO 17

/* Largest frame the generator writes (bytes). Every byte of the frame comes
 * from the template on every run: live-frames pages are recycled and keep
 * whatever the receiver wrote into them.
 */
#define TMPL_MAX 256
/* Randomised 32-bit windows per frame: 4 for an IPv6 source, 4 for the rest. */
#define NFIELDS 8

const volatile __u32 tmpl[TMPL_MAX / 4];
const volatile __u32 frame_len;		/* bytes, a multiple of 4, <= TMPL_MAX */
const volatile __u32 ip_version;	/* 4 or 6 */
const volatile __u32 l4_off;		/* from the frame start, bytes */
const volatile __u32 l4_len;		/* bytes the L4 checksum covers, mult. of 4 */
const volatile __u32 l4_csum_off;	/* checksum field within L4; 0: none */
const volatile __u32 l4_pseudo;		/* L4 checksum includes a pseudo-header */
const volatile __u32 l4_proto;		/* protocol number for the pseudo-header */
/* A window at field_off[i] becomes (old & ~mask) | (random & mask); the mask
 * is in the frame's byte order, so 0 marks an unused slot.
 */
const volatile __u32 field_off[NFIELDS];
const volatile __u32 field_mask[NFIELDS];

/* -- the shared link (xdp_mux) ----------------------------------------------- */
#define MUX_FRAME_MAX 512
/* xdp_mux queues frames only while a generator ran within this long: longer
 * than a generator's pause between two live-frames calls (~25 ms), so frames
 * sent in a pause wait for the next call as they would in a busy link's queue.
 */
#define MUX_ACTIVE_NS (100ULL * 1000 * 1000)

struct mux_frame {
	__u32 len;
	__u8 data[MUX_FRAME_MAX];
};

/* Frames queued by xdp_mux for the generator, ready to send (MACs of the
 * server link, TTL already taken).
 */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4096);
	__type(value, struct mux_frame);
} mux_queue SEC(".maps");

/* Key 0: when a generator carrying the queue last ran (ns, monotonic). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} mux_clock SEC(".maps");

enum mux_stat {
	MUX_QUEUED,	/* taken off the router's path into the queue */
	MUX_IDLE,	/* passed: no generator running */
	MUX_FULL,	/* passed: queue full or frame too long */
	MUX_SENT,	/* sent by a generator in its stream */
	MUX_NSTATS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MUX_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} mux_stats SEC(".maps");

struct mux_scratch {
	__u32 draining;	/* generator: sending queued frames, one per run */
	struct mux_frame f;
};

/* Per-CPU room for a frame: too big for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mux_scratch);
} mux_scratch SEC(".maps");

/* Generator: carry queued frames (0: a plain flood). */
const volatile __u32 mux;
/* Generator: a drain of the queue starts at a run with probability
 * 1 / (mux_drain_mask + 1). A frame is queued while the clients run, i.e.
 * while the generator does not, and the server's ring drains meanwhile; sent
 * a random few thousand runs after the generator resumes, it mostly finds the
 * ring as full as the flood's frames do. A smaller mask waits less and
 * favours the clients more.
 */
const volatile __u32 mux_drain_mask = 4095;
/* xdp_mux: the server link's MACs (destination, source) and its addresses. */
const volatile __u8 mux_eth[12];
const volatile __u32 mux_dst4;
const volatile __u32 mux_dst6[4];

static __always_inline void mux_count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&mux_stats, &stat);

	if (n)
		*n += 1;
}

/* Generator side: replace this run's frame with a queued one, if a drain is
 * on. Returns 1 when the frame is a queued one.
 */
static __always_inline int mux_take(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *clock = bpf_map_lookup_elem(&mux_clock, &zero);
	struct mux_scratch *s = bpf_map_lookup_elem(&mux_scratch, &zero);
	__u32 len;
	int cur;

	if (!clock || !s)
		return 0;
	*clock = bpf_ktime_get_ns();
	if (!s->draining && !(bpf_get_prandom_u32() & mux_drain_mask))
		s->draining = 1;
	if (!s->draining)
		return 0;
	if (bpf_map_pop_elem(&mux_queue, &s->f)) {
		s->draining = 0;
		return 0;
	}
	len = s->f.len;
	if (len < ETH_HLEN || len > MUX_FRAME_MAX)
		return 0;
	cur = bpf_xdp_get_buff_len(ctx);
	if (bpf_xdp_adjust_tail(ctx, (int)len - cur))
		return 0;
	if (bpf_xdp_store_bytes(ctx, 0, s->f.data, len))
		return 0;
	mux_count(MUX_SENT);
	return 1;
}

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* The numbers Python mirrors (lab/traffic.py, lab/stand.py), kept in the
 * object's BTF with enum mux_stat; tests/unit/test_mirrors.py checks them.
 */
enum traffic_abi {
	TRAFFIC_ABI_TMPL_MAX = TMPL_MAX,
	TRAFFIC_ABI_NFIELDS = NFIELDS,
	TRAFFIC_ABI_MUX_FRAME_MAX = MUX_FRAME_MAX,
};
enum traffic_abi traffic_abi_btf_anchor SEC(".rodata.btf") __attribute__((unused));
enum mux_stat mux_stat_btf_anchor SEC(".rodata.btf") __attribute__((unused));

SEC("xdp")
int xdp_flood(struct xdp_md *ctx)
{
	void *data, *data_end;
	__u64 sum = 0;
	int i;

	if (mux && mux_take(ctx))
		return XDP_TX;
	/* Read after mux_take: a tail adjustment voids earlier packet pointers. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* frame_len is frozen .rodata, so the verifier knows it exactly and
	 * this one check covers every access below.
	 */
	if (frame_len > TMPL_MAX || data + frame_len > data_end)
		return XDP_ABORTED;

#pragma unroll
	for (i = 0; i < TMPL_MAX / 4; i++) {
		if (i * 4 >= frame_len)
			break;
		((__u32 *)data)[i] = tmpl[i];
	}

#pragma unroll
	for (i = 0; i < NFIELDS; i++) {
		__u32 mask = field_mask[i];
		__u32 off = field_off[i];
		__u32 *p;

		if (!mask)
			continue;
		if (off + 4 > frame_len)
			return XDP_ABORTED;
		p = data + off;
		*p = (*p & ~mask) | (bpf_get_prandom_u32() & mask);
	}

	if (ip_version == 4) {
		struct iphdr *iph = data + ETH_HLEN;

		if ((void *)(iph + 1) > data_end)
			return XDP_ABORTED;
		iph->check = 0;
		iph->check = csum_fold(bpf_csum_diff(0, 0, (void *)iph,
						     IP4_HLEN, 0));
	}

	if (l4_csum_off) {
		__u16 *check = data + l4_off + l4_csum_off;

		if ((void *)(check + 1) > data_end ||
		    data + l4_off + l4_len > data_end)
			return XDP_ABORTED;
		*check = 0;
		if (l4_pseudo) {
			/* The addresses are in the frame; length and protocol
			 * are added as the 16-bit words they would be there.
			 */
			if (ip_version == 4)
				sum = bpf_csum_diff(0, 0, data + ETH_HLEN + 12,
						    8, 0);
			else
				sum = bpf_csum_diff(0, 0, data + ETH_HLEN + 8,
						    32, 0);
			sum += bpf_htons(l4_len) + bpf_htons(l4_proto);
		}
		sum = bpf_csum_diff(0, 0, data + l4_off, l4_len, 0) + sum;
		*check = csum_fold(sum);
		/* UDP sends a computed 0 as 0xffff: 0 means "no checksum". */
		if (l4_proto == UDP_PROTO && !*check)
			*check = 0xffff;
	}
	return XDP_TX;
}

/* Destinations that xdp_upstream delivers. A zero mask passes everything,
 * which makes it a plain XDP_PASS. Both are in network byte order; for IPv6
 * only the first 32 bits of the destination are compared.
 */
const volatile __u32 pass_net4;
const volatile __u32 pass_mask4;
const volatile __u32 pass_net6;
const volatile __u32 pass_mask6;

/* Key 0: frames passed, key 1: frames blackholed (replies to spoofed hosts). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} upstream_stats SEC(".maps");

static __always_inline int upstream_verdict(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP) && pass_mask4) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return XDP_PASS;
		if ((iph->daddr & pass_mask4) != pass_net4)
			return XDP_DROP;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6) && pass_mask6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u32 first;

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		first = ip6->daddr.in6_u.u6_addr32[0];
		/* Link-local and multicast carry neighbour discovery. */
		if (ip6->daddr.in6_u.u6_addr8[0] == 0xff ||
		    (first & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
			return XDP_PASS;
		if ((first & pass_mask6) != pass_net6)
			return XDP_DROP;
	}
	return XDP_PASS;
}

SEC("xdp")
int xdp_upstream(struct xdp_md *ctx)
{
	int verdict = upstream_verdict(ctx);
	__u32 key = verdict == XDP_DROP;
	__u64 *n = bpf_map_lookup_elem(&upstream_stats, &key);

	if (n)
		*n += 1;
	return verdict;
}

/* The router's client-facing link: while a generator runs, frames to the
 * server go into mux_queue, forwarded as the router would (server link MACs,
 * TTL - 1), for the generator to send; otherwise the stack forwards them.
 */
SEC("xdp")
int xdp_mux(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0, len;
	__u64 *clock = bpf_map_lookup_elem(&mux_clock, &zero);
	struct mux_scratch *s;
	int i, v4;

	if ((void *)(eth + 1) > data_end || !clock)
		return XDP_PASS;
	v4 = eth->h_proto == bpf_htons(ETH_P_IP);
	if (v4) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end || iph->daddr != mux_dst4 ||
		    iph->ttl <= 1)
			return XDP_PASS;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end || ip6->hop_limit <= 1)
			return XDP_PASS;
		for (i = 0; i < 4; i++)
			if (ip6->daddr.in6_u.u6_addr32[i] != mux_dst6[i])
				return XDP_PASS;
	} else {
		return XDP_PASS;
	}
	if (bpf_ktime_get_ns() - *clock > MUX_ACTIVE_NS) {
		mux_count(MUX_IDLE);
		return XDP_PASS;
	}
	s = bpf_map_lookup_elem(&mux_scratch, &zero);
	if (!s)
		return XDP_PASS;
	/* Read back through memory: a u32 load is one the verifier knows is
	 * not negative (clang would pass the 64-bit pointer difference).
	 */
	s->f.len = data_end - data;
	len = *(volatile __u32 *)&s->f.len;
	if (len < ETH_HLEN || len > MUX_FRAME_MAX ||
	    bpf_xdp_load_bytes(ctx, 0, s->f.data, len)) {
		mux_count(MUX_FULL);
		return XDP_PASS;
	}
	for (i = 0; i < 12; i++)
		s->f.data[i] = mux_eth[i];
	/* TTL (IPv4) or hop limit (IPv6) */
	s->f.data[ETH_HLEN + (v4 ? 8 : 7)] -= 1;
	if (v4) {
		/* RFC 1624: the TTL is the high byte of its 16-bit word. */
		__u16 *check = (__u16 *)&s->f.data[ETH_HLEN + 10];
		__u32 sum = (__u16)~*check + (__u16)~bpf_htons(0x0100);

		sum = (sum & 0xffff) + (sum >> 16);
		*check = ~((sum & 0xffff) + (sum >> 16));
	}
	if (bpf_map_push_elem(&mux_queue, &s->f, 0)) {
		mux_count(MUX_FULL);
		return XDP_PASS;
	}
	mux_count(MUX_QUEUED);
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
