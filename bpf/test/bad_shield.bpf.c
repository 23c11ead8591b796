// SPDX-License-Identifier: GPL-2.0
/* The real shield plus one program the verifier must reject: proves that a
 * rejected shield load through the command reports the C line and leaves
 * nothing attached or pinned.
 */
#include "../xdpshield.bpf.c"

SEC("xdp")
int xdp_bad(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[20] == 0x42 ? XDP_DROP : XDP_PASS;
}
