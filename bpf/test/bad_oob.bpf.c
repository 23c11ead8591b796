// SPDX-License-Identifier: GPL-2.0
/* Deliberately rejected by the verifier: reads the packet without a bounds
 * check, so tests can prove VerifierError carries a readable log.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_bad(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[20] == 0x42 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
