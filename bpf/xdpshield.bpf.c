// SPDX-License-Identifier: GPL-2.0
/* xdpshield entry points. Logic lives in include/; this file only wires the
 * stages together and has the one exit that counts every verdict.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "shared.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XS_R__MAX);
	__type(key, __u32);
	__type(value, struct xs_counter);
} xs_stats SEC(".maps");

/* Protected TCP ports (host order); changed live from userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} xs_ports SEC(".maps");

/* Keeps enum xs_reason in the object's BTF for Python to read. */
enum xs_reason xs_reason_btf_anchor SEC(".rodata.btf") __attribute__((unused));

SEC("xdp")
int xdpshield_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 reason = XS_R_PASS_NON_IP;
	int action = XDP_PASS;
	struct xs_counter *c;

	if ((void *)(eth + 1) > data_end) {
		reason = XS_R_MALFORMED;
		action = XDP_DROP;
		goto out;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IP) ||
	    eth->h_proto == bpf_htons(ETH_P_IPV6))
		reason = XS_R_PASS_UNPROTECTED;
out:
	c = bpf_map_lookup_elem(&xs_stats, &reason);
	if (c) {
		c->packets++;
		c->bytes += data_end - data;
	}
	return action;
}

char _license[] SEC("license") = "GPL";
