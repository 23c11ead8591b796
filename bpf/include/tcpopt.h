/* SPDX-License-Identifier: GPL-2.0 */
/* TCP options: the one general walk, and the fixed layouts that common
 * stacks send, recognised with a few compares before any walk is paid for.
 * A SYN's options become the cookie SYN-ACK's; a non-SYN segment's
 * timestamps carry what the cookie could not (cookie.h).
 */
#ifndef XDPSHIELD_TCPOPT_H
#define XDPSHIELD_TCPOPT_H

#include "consts.h"

/* What the walk found, packed in one __u64 so the global function below
 * needs no pointer argument (a global subprogram's pointer arguments are
 * verified as maybe-NULL memory; a scalar return is simpler and free).
 */
#define XS_OPT_MSS(o)		((__u32)((o) & 0xffff))
#define XS_OPT_WS(o)		((__u32)(((o) >> 16) & 0xff))
#define XS_OPT_HAS_MSS		(1ULL << 24)
#define XS_OPT_HAS_WS		(1ULL << 25)
#define XS_OPT_SACK		(1ULL << 26)
#define XS_OPT_TS		(1ULL << 27)
/* The top 32 bits: from the walk, the frame offset of the timestamps
 * option; from xs_syn_options(), the client's TSval (network order).
 */
#define XS_OPT_TSOFF(o)		((__u32)((o) >> 32))
#define XS_OPT_TSVAL(o)		((__u32)((o) >> 32))

/* The one general TCP option walk, for options not in a layout recognised
 * below (either direction: a SYN's options, a later segment's timestamps).
 * It follows Linux's tcp_parse_options(): stop at EOL, at an option shorter
 * than 2 bytes or running past the header; a later duplicate wins; MSS 0 is
 * ignored; window scale is capped at 14.
 *
 * Verifier: inlined into every caller, this loop of up to 40 steps was
 * re-verified for every path reaching it and blew the instruction budget. As
 * a global (non-static, noinline) function it is verified once, on its own.
 * The option offset is a __u64 bounded on entry (so packet pointer arithmetic
 * stays within the verifier's limits), every read is compared with
 * data_end, and the step count is bounded by the 40 bytes options can take.
 */
__attribute__((noinline)) __u64 xs_tcpopt_walk(struct xdp_md *ctx, __u64 off,
					       __u64 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 stop, res = 0;
	__u32 kind, olen;
	__u8 *p;
	int i;

	if (off > 0x3fff || len > XS_TCPOPT_MAXLEN)
		return 0;
	stop = off + len;
	for (i = 0; i < XS_TCPOPT_MAXLEN; i++) {
		/* Verifier: each way through the previous step (NOP, MSS,
		 * window scale, ...) leaves off with a different lower bound,
		 * so the states never prune and the steps multiply (about a
		 * million instructions, most of a second to load). Masking
		 * off in asm, where clang cannot drop the no-op, leaves every
		 * path with the same [0, 0x7fff] and one state per step.
		 */
		asm volatile("%[off] &= 0x7fff" : [off] "+r"(off));
		if (off >= stop)
			break;
		p = data + off;
		if ((void *)(p + 1) > data_end)
			break;
		kind = p[0];
		if (kind == XS_TCPOPT_EOL)
			break;
		if (kind == XS_TCPOPT_NOP) {
			off++;
			continue;
		}
		if (off + 2 > stop || (void *)(p + 2) > data_end)
			break;
		olen = p[1];
		if (olen < 2 || off + olen > stop)
			break;
		if (kind == XS_TCPOPT_MSS && olen == 4) {
			if ((void *)(p + 4) > data_end)
				break;
			kind = (__u32)p[2] << 8 | p[3];
			if (kind) {
				res &= ~0xffffULL;
				res |= kind | XS_OPT_HAS_MSS;
			}
		} else if (kind == XS_TCPOPT_WSCALE && olen == 3) {
			if ((void *)(p + 3) > data_end)
				break;
			kind = p[2] > XS_MAX_WSCALE ? XS_MAX_WSCALE : p[2];
			res &= ~0xff0000ULL;
			res |= (__u64)kind << 16 | XS_OPT_HAS_WS;
		} else if (kind == XS_TCPOPT_SACK_PERM && olen == 2) {
			res |= XS_OPT_SACK;
		} else if (kind == XS_TCPOPT_TIMESTAMP && olen == 10) {
			if ((void *)(p + 10) > data_end)
				break;
			res &= 0xffffffffULL;
			res |= off << 32 | XS_OPT_TS;
		}
		off += olen;
	}
	return res;
}

/* The timestamps option the walk found at frame offset @off (its 10 bytes
 * in the frame), or NULL.
 */
static __always_inline __u8 *xs_tsopt_at(struct xdp_md *ctx, __u64 off)
{
	__u8 *o;

	if (!off || off > XS_MAX_L4_OFF + 60)
		return NULL;
	o = (void *)(long)ctx->data + off;
	/* Verifier: as for th in xs_guard_tcp(), keep clang from redoing
	 * data + off after the check.
	 */
	barrier_var(o);
	if ((void *)(o + 10) > (void *)(long)ctx->data_end)
		return NULL;
	return o;
}

/* The fixed layouts' words, as loaded: an MSS option's kind and length, and
 * NOP + window scale's kind and length (its shift in the low byte).
 */
#define XS_OPTW_MSS		bpf_htons(XS_TCPOPT_MSS << 8 | 4)
#define XS_OPTW_NOP_WS		bpf_htonl(XS_TCPOPT_NOP << 24 |		\
					  XS_TCPOPT_WSCALE << 16 | 3 << 8)

/* A fixed layout's MSS option at @o (checked present) and window scale
 * shift @ws, as the walk would report them (MSS 0 ignored, shift capped).
 */
static __always_inline __u64 xs_opt_mss(const __u8 *o)
{
	__u64 mss = (__u32)o[2] << 8 | o[3];

	return mss ? mss | XS_OPT_HAS_MSS : 0;
}

static __always_inline __u64 xs_opt_ws(__u8 ws)
{
	return XS_OPT_HAS_WS |
	       (__u64)(ws > XS_MAX_WSCALE ? XS_MAX_WSCALE : ws) << 16;
}

/* The client's SYN options. The layout every Linux client sends (MSS,
 * SACK-permitted, timestamps, NOP, window scale: 20 bytes) is recognised with
 * three compares, MSS alone and Windows' layout with as few; anything else
 * goes through the general walk, a function call of ~40 steps.
 */
static __always_inline __u64 xs_syn_options(struct xdp_md *ctx,
					    struct tcphdr *th, void *data_end)
{
	__u32 optlen = th->doff * 4 - sizeof(*th);
	__u8 *o = (__u8 *)(th + 1);
	__u64 res;

	if (optlen == 20 && (void *)(o + 20) <= data_end &&
	    *(__u16 *)o == XS_OPTW_MSS &&
	    *(__u32 *)(o + 4) == bpf_htonl(XS_TCPOPT_SACK_PERM << 24 |
					   2 << 16 |
					   XS_TCPOPT_TIMESTAMP << 8 | 10) &&
	    (*(__u32 *)(o + 16) & bpf_htonl(0xffffff00)) == XS_OPTW_NOP_WS)
		return (__u64)*(__u32 *)(o + 8) << 32 | XS_OPT_SACK |
		       XS_OPT_TS | xs_opt_ws(o[19]) | xs_opt_mss(o);
	if (!optlen)
		return 0;
	/* MSS alone, what many flood tools and some middleboxes send. */
	if (optlen == 4 && (void *)(o + 4) <= data_end &&
	    *(__u16 *)o == XS_OPTW_MSS)
		return xs_opt_mss(o);
	/* Windows' (MSS, NOP, window scale, NOP, NOP, SACK-permitted). */
	if (optlen == 12 && (void *)(o + 12) <= data_end &&
	    *(__u16 *)o == XS_OPTW_MSS &&
	    (*(__u32 *)(o + 4) & bpf_htonl(0xffffff00)) == XS_OPTW_NOP_WS &&
	    *(__u32 *)(o + 8) == bpf_htonl(XS_TCPOPT_NOP << 24 |
					   XS_TCPOPT_NOP << 16 |
					   XS_TCPOPT_SACK_PERM << 8 | 2))
		return XS_OPT_SACK | xs_opt_ws(o[7]) | xs_opt_mss(o);
	res = xs_tcpopt_walk(ctx, (void *)o - (void *)(long)ctx->data, optlen);
	if (!(res & XS_OPT_TS))
		return res;
	/* The walk says where the timestamps are; the SYN-ACK echoes TSval. */
	o = xs_tsopt_at(ctx, XS_OPT_TSOFF(res));
	if (!o)
		return res & 0xffffffffULL & ~XS_OPT_TS;
	return (res & 0xffffffffULL) | (__u64)*(__u32 *)(o + 2) << 32;
}

/* The timestamps of a non-SYN segment in the layout Linux, BSD and Windows
 * send (NOP NOP TS, 12 bytes): 1 and TSval, TSecr (host order) when it is
 * that, 0 when the segment has no options, -1 for any other layout.
 */
static __always_inline int xs_ts_common(struct tcphdr *th, void *data_end,
					__u32 *tsval, __u32 *tsecr)
{
	__u32 optlen = th->doff * 4 - sizeof(*th);
	__u8 *o = (__u8 *)(th + 1);

	if (!optlen)
		return 0;
	if (optlen != 12 || (void *)(o + 12) > data_end ||
	    *(__u32 *)o != bpf_htonl(XS_TCPOPT_NOP << 24 | XS_TCPOPT_NOP << 16 |
				     XS_TCPOPT_TIMESTAMP << 8 | 10))
		return -1;
	*tsval = bpf_ntohl(*(__u32 *)(o + 4));
	*tsecr = bpf_ntohl(*(__u32 *)(o + 8));
	return 1;
}

/* The client's TSval and TSecr (host order) from a non-SYN segment; 0 when
 * it carries no timestamps option. The common layout is two compares;
 * anything else is the general walk. Like Linux, a later duplicate wins.
 */
static __always_inline int xs_ack_timestamps(struct xdp_md *ctx,
					     struct tcphdr *th, __u64 l4off,
					     __u32 *tsval, __u32 *tsecr)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u32 optlen = th->doff * 4 - sizeof(*th);
	__u64 res;
	__u8 *o;
	int found;

	found = xs_ts_common(th, data_end, tsval, tsecr);
	if (found >= 0)
		return found;
	res = xs_tcpopt_walk(ctx, l4off + sizeof(*th), optlen);
	if (!(res & XS_OPT_TS))
		return 0;
	o = xs_tsopt_at(ctx, XS_OPT_TSOFF(res));
	if (!o)
		return 0;
	*tsval = bpf_ntohl(*(__u32 *)(o + 2));
	*tsecr = bpf_ntohl(*(__u32 *)(o + 6));
	return 1;
}

#endif
