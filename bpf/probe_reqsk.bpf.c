// SPDX-License-Identifier: GPL-2.0
/* Probe: does this kernel let a tc program call bpf_sk_assign_tcp_reqsk()?
 * The shield loads this (never attaches it) to choose its handshake mode:
 * helper and kfunc lists over-report, so the verifier is asked directly.
 * The kfunc is not weak here: a missing one must fail the load.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern int bpf_sk_assign_tcp_reqsk(struct __sk_buff *skb, struct sock *sk,
				   struct bpf_tcp_req_attrs *attrs,
				   int attrs__sz) __ksym;

SEC("tc")
int probe_reqsk(struct __sk_buff *skb)
{
	struct bpf_tcp_req_attrs attrs = {};
	struct bpf_sock_tuple t = {};
	struct bpf_sock *skc;
	struct tcp_sock *tp;
	int ret = 0;

	skc = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), -1, 0);
	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (tp)
		ret = bpf_sk_assign_tcp_reqsk(skb, (struct sock *)tp, &attrs,
					      sizeof(attrs));
	bpf_sk_release(skc);
	return ret ? 2 : 0;
}

char _license[] SEC("license") = "GPL";
