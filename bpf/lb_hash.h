/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The flow hash: Bob Jenkins' lookup3 in the Linux kernel's jhash variant,
 * with the seeds Katran uses, so a flow picks the same ring slot here and
 * in Katran. `crates/katran-core/src/hash.rs` computes the same values in user space.
 */
#ifndef LB_HASH_H
#define LB_HASH_H

#include "lb_common.h"

#define JHASH_INITVAL 0xdeadbeef
#define FLOW_SEED_V6 512u         /* first pass over an IPv6 source */
#define FLOW_SEED (512u * 65537u) /* final mix with the ports */

INLINE __u32 rol32(__u32 w, int s)
{
	return (w << s) | (w >> (32 - s));
}

#define JHASH_MIX(a, b, c)                                                                         \
	do {                                                                                       \
		a -= c;                                                                            \
		a ^= rol32(c, 4);                                                                  \
		c += b;                                                                            \
		b -= a;                                                                            \
		b ^= rol32(a, 6);                                                                  \
		a += c;                                                                            \
		c -= b;                                                                            \
		c ^= rol32(b, 8);                                                                  \
		b += a;                                                                            \
		a -= c;                                                                            \
		a ^= rol32(c, 16);                                                                 \
		c += b;                                                                            \
		b -= a;                                                                            \
		b ^= rol32(a, 19);                                                                 \
		a += c;                                                                            \
		c -= b;                                                                            \
		c ^= rol32(b, 4);                                                                  \
		b += a;                                                                            \
	} while (0)

#define JHASH_FINAL(a, b, c)                                                                       \
	do {                                                                                       \
		c ^= b;                                                                            \
		c -= rol32(b, 14);                                                                 \
		a ^= c;                                                                            \
		a -= rol32(c, 11);                                                                 \
		b ^= a;                                                                            \
		b -= rol32(a, 25);                                                                 \
		c ^= b;                                                                            \
		c -= rol32(b, 16);                                                                 \
		a ^= c;                                                                            \
		a -= rol32(c, 4);                                                                  \
		b ^= a;                                                                            \
		b -= rol32(a, 14);                                                                 \
		c ^= b;                                                                            \
		c -= rol32(b, 24);                                                                 \
	} while (0)

/* jhash over exactly four 32-bit words (an IPv6 address). */
INLINE __u32 jhash_16(const __u32 *k, __u32 seed)
{
	__u32 a, b, c;

	a = b = c = JHASH_INITVAL + 16 + seed;
	a += k[0];
	b += k[1];
	c += k[2];
	JHASH_MIX(a, b, c);
	a += k[3];
	JHASH_FINAL(a, b, c);
	return c;
}

INLINE __u32 jhash_2words(__u32 a, __u32 b, __u32 seed)
{
	__u32 c = 0;

	seed += JHASH_INITVAL + (2 << 2);
	a += seed;
	b += seed;
	c += seed;
	JHASH_FINAL(a, b, c);
	return c;
}

/* An address's four words (as stored: network order, IPv4 in the first)
 * folded by xor, times a constant: the VIP filter's bit and the VIP cache's
 * slot both start from it. */
INLINE __u32 vip_addr_mix(const __be32 a[4])
{
	return (a[0] ^ a[1] ^ a[2] ^ a[3]) * (__u32)VIP_FILTER_MULT;
}

/* Bit of an address in the VIP filter: the top bits of its mix
 * (vip_addr_mix). `src/kernel/bpf/abi.rs` computes the same. */
INLINE __u32 vip_filter_bit(__u32 addr_mix)
{
	return addr_mix >> (32 - VIP_FILTER_LOG2);
}

/* Bit of an address in the filter's front: the top bits of its filter bit. */
INLINE __u32 vip_front_bit(__u32 filter_bit)
{
	return filter_bit >> (VIP_FILTER_LOG2 - VIP_FRONT_LOG2);
}

/* Slot of a VIP key in the VIP cache: its address's mix (`addr_mix`, as
 * vip_addr_mix() computes it) with its last word, mixed by the same
 * multiplier. `src/kernel/bpf/abi.rs` computes the same. */
INLINE __u32 vip_cache_slot(const struct vip_key *k, __u32 addr_mix)
{
	const __u32 *w = (const __u32 *)k;

	return ((addr_mix ^ w[4]) * (__u32)VIP_FILTER_MULT) >> (32 - VIP_CACHE_LOG2);
}

/* The odd multiplier of conn_hash's final mix (katran-core's conn_hash::MIX). */
#define CONN_HASH_MIX 0x9e3779b97f4a7c15ull

/* A flow's hash in the connection tables: its top bits choose the set, all
 * of it is the entry's tag. Multiply-shift over the flow's nine words with
 * keys drawn at load, so nobody outside can aim flows at one set, then one
 * xor-shift and multiply, so flows whose ports step evenly do not fold onto
 * a few sets (katran-core's conn_hash.rs says why this hash; `abi::conn_hash`
 * computes the same). An IPv4 flow's other address words are zero, so their
 * terms are left out. */
INLINE __u32 conn_hash(const struct flow_key *f, int v6)
{
	__u64 ports = (__u32)f->sport | ((__u32)f->dport << 16);
	__u64 h = conn_keys[0] + conn_keys[1] * f->src[0] +
	          conn_keys[5] * (__u32)(f->dst[0] ^ f->proto) + conn_keys[9] * ports;

	if (v6)
		h += conn_keys[2] * f->src[1] + conn_keys[3] * f->src[2] +
		     conn_keys[4] * f->src[3] + conn_keys[6] * f->dst[1] +
		     conn_keys[7] * f->dst[2] + conn_keys[8] * f->dst[3];
	return ((h ^ (h >> 32)) * CONN_HASH_MIX) >> 32;
}

/* Words are the packet's bytes read as little-endian integers, as Katran
 * reads them on x86. */
INLINE __u32 flow_hash(const struct flow_key *f, int v6)
{
	__u32 ports = (__u32)f->sport | ((__u32)f->dport << 16);
	__u32 src = v6 ? jhash_16(f->src, FLOW_SEED_V6) : f->src[0];

	return jhash_2words(src, ports, FLOW_SEED);
}

#endif /* LB_HASH_H */
