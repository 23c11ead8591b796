/* SPDX-License-Identifier: GPL-2.0 */
/* SipHash-2-4 (Aumasson and Bernstein), one 8-byte block at a time: the
 * keyed hash of the SYN cookies. What is hashed, and how, is cookie.h's.
 */
#ifndef XDPSHIELD_SIPHASH_H
#define XDPSHIELD_SIPHASH_H

#define XS_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

struct xs_sip {
	__u64 v0, v1, v2, v3;
};

static __always_inline void xs_sipround(struct xs_sip *s)
{
	s->v0 += s->v1;
	s->v1 = XS_ROTL(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = XS_ROTL(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = XS_ROTL(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = XS_ROTL(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = XS_ROTL(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = XS_ROTL(s->v2, 32);
}

static __always_inline void xs_sip_init(struct xs_sip *s, const __u64 *k)
{
	s->v0 = k[0] ^ 0x736f6d6570736575ULL;
	s->v1 = k[1] ^ 0x646f72616e646f6dULL;
	s->v2 = k[0] ^ 0x6c7967656e657261ULL;
	s->v3 = k[1] ^ 0x7465646279746573ULL;
}

/* One 8-byte block, two compression rounds (the "2" of 2-4). */
static __always_inline void xs_sip_block(struct xs_sip *s, __u64 m)
{
	s->v3 ^= m;
	xs_sipround(s);
	xs_sipround(s);
	s->v0 ^= m;
}

/* The last block (tail bytes and the length in the top byte), then the four
 * finalisation rounds.
 */
static __always_inline __u64 xs_sip_final(struct xs_sip *s, __u64 last)
{
	xs_sip_block(s, last);
	s->v2 ^= 0xff;
	xs_sipround(s);
	xs_sipround(s);
	xs_sipround(s);
	xs_sipround(s);
	return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

#endif
