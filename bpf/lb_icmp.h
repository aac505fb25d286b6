/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Answers ICMP and ICMPv6 echo requests sent to a VIP address, in place:
 * swap addresses and MACs, turn the request into a reply, and update the
 * checksums incrementally.
 */
#ifndef LB_ICMP_H
#define LB_ICMP_H

#include "lb_csum.h"
#include "lb_parse.h"

INLINE void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

INLINE int echo_reply4(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *iph = data + ETH_LEN;
	struct icmp_hdr *icmp = data + ETH_LEN + IP4_LEN;
	__be32 tmp;

	if (unlikely((void *)(icmp + 1) > data_end))
		return drop(STAT_DROP_MALFORMED);
	/* type 8 -> 0: the first word drops by 0x0800, the checksum rises by it */
	icmp->checksum = csum_add(icmp->checksum, (ICMP_ECHO - ICMP_ECHOREPLY) << 8);
	icmp->type = ICMP_ECHOREPLY;
	tmp = iph->daddr;
	iph->daddr = iph->saddr;
	iph->saddr = tmp;
	iph->ttl = DEFAULT_TTL;
	iph->check = 0;
	iph->check = ipv4_hdr_csum(iph);
	swap_macs(eth);
	return counted(XDP_TX, STAT_ICMP_ECHO_REPLY);
}

INLINE int echo_reply6(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6h = data + ETH_LEN;
	struct icmp_hdr *icmp = data + ETH_LEN + IP6_LEN;
	struct in6_addr tmp;

	if (unlikely((void *)(icmp + 1) > data_end))
		return drop(STAT_DROP_MALFORMED);
	/* 128 -> 129: the first word rises by 0x0100, so the checksum drops by
	 * it (adds its complement); the pseudo header sums the same swapped */
	icmp->checksum =
	        csum_add(icmp->checksum, (__u16) ~((ICMPV6_ECHO_REPLY - ICMPV6_ECHO_REQUEST) << 8));
	icmp->type = ICMPV6_ECHO_REPLY;
	tmp = ip6h->saddr;
	ip6h->saddr = ip6h->daddr;
	ip6h->daddr = tmp;
	ip6h->hop_limit = DEFAULT_TTL;
	swap_macs(eth);
	return counted(XDP_TX, STAT_ICMP_ECHO_REPLY);
}

#endif /* LB_ICMP_H */
