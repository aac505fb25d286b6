/* SPDX-License-Identifier: GPL-2.0 */
/* Internet checksums: full IPv4 header sums and RFC 1624 updates. Needs
 * nothing of the balancer, so the health-check program includes it too. */
#ifndef LB_CSUM_H
#define LB_CSUM_H

#include <linux/types.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef INLINE
#define INLINE static __always_inline
#endif

INLINE __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Checksum of a 20-byte IPv4 header whose check field is zero. */
INLINE __u16 ipv4_hdr_csum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*iph) / 2); i++)
		sum += w[i];
	return csum_fold(sum);
}

/* Adds `delta` (host order, one's complement) to a checksum stored in
 * network order. Used when a header word changes by a known amount: unlike
 * the RFC 1624 form it never turns an all-ones checksum into zero. */
INLINE __u16 csum_add(__u16 check, __u16 delta)
{
	__u32 sum = (__u32)bpf_ntohs(check) + delta;

	sum = (sum & 0xffff) + (sum >> 16);
	return bpf_htons((__u16)sum);
}

#endif /* LB_CSUM_H */
