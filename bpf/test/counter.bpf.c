// SPDX-License-Identifier: GPL-2.0
/* Foundation test object: a per-CPU counter, a verdict from .rodata and an
 * optional MAC swap, so tests can prove run, verdict, output frame and maps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile __u32 verdict = XDP_PASS;
const volatile __u8 swap_macs = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

/* A plain hash so tests can exercise update/lookup/delete/batch/full. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&hits, &idx);

	if (v)
		*v += n;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	count(0, 1);
	count(1, data_end - data);
	if (swap_macs && (void *)(eth + 1) <= data_end) {
		unsigned char tmp[6];

		__builtin_memcpy(tmp, eth->h_dest, 6);
		__builtin_memcpy(eth->h_dest, eth->h_source, 6);
		__builtin_memcpy(eth->h_source, tmp, 6);
	}
	return verdict;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	count(0, 1);
	return 0; /* TC_ACT_OK */
}

char _license[] SEC("license") = "GPL";
