/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Header parsing: Ethernet -> IPv4/IPv6 -> (quoted ICMP) -> TCP/UDP.
 *
 * Every header has a fixed position here. IPv4 options and fragments (and
 * IPv6 fragments) cannot be balanced: they are dropped when addressed to a
 * VIP and passed to the kernel otherwise. Other IPv6 extension headers are
 * not parsed (such packets go to the kernel). Length fields are checked
 * against the frame, so nothing is forwarded with a length that lies.
 * The result is a `struct pkt` describing the flow. A destination the VIP
 * filter rules out ends parsing there: the kernel gets the packet as it is.
 */
#ifndef LB_PARSE_H
#define LB_PARSE_H

#include <linux/tcp.h>
#include <linux/udp.h>
#include "lb_common.h"
#include "lb_hash.h"

#define ETH_LEN sizeof(struct ethhdr)
#define IP4_LEN sizeof(struct iphdr)
#define IP6_LEN sizeof(struct ipv6hdr)
#define ICMP_LEN 8           /* ICMP and ICMPv6 error headers */
#define IP4_FRAG_MASK 0x3fff /* MF flag and fragment offset, host order */

/* ICMP and ICMPv6 share this layout for the messages handled here (the
 * kernel's linux/icmp.h pulls in libc socket headers, so not used). */
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest; /* echo id/sequence, or unused/MTU in errors */
};

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMP_ECHO 8
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

/* Outcome of parsing when it does not end in a verdict of its own. */
enum parsed {
	PARSED_FLOW,   /* a TCP/UDP flow (maybe from a quoted ICMP error) */
	PARSED_ECHO,   /* an ICMP(v6) echo request */
	PARSED_OTHER,  /* not ours: pass to the kernel */
	PARSED_REJECT, /* IP options or a fragment: dropped if for a VIP (p->reject says why) */
};

/* Copies an IPv6 address from the frame in two 8-byte accesses: clang,
 * not knowing the frame's alignment, would otherwise build each word from
 * 4-byte loads and shifts (x86, where XDP runs here, reads unaligned words
 * at full speed, and the verifier allows it). */
INLINE void copy_addr6(__be32 dst[4], const struct in6_addr *src)
{
	const __u64 *s = (const __u64 *)src;
	__u64 *d = (__u64 *)dst;

	d[0] = s[0];
	d[1] = s[1];
}

INLINE __u8 ipv6_tos(const struct ipv6hdr *ip6h)
{
	return (ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4);
}

/* The generation's entry when the filter's front lets the address `dst`
 * through, NULL when it proves the address is no VIP's (see enum
 * vip_filter_layout); the address's mix in `*mix`. Each parser asks as soon
 * as it knows the address, so most traffic that is not ours passes before
 * the rest of its headers are read, and before its `struct pkt` is even
 * started. */
INLINE struct lb_gen *vip_front(const __be32 dst[4], __u32 *mix)
{
	__u32 zero = 0, bit;
	struct lb_gen *g;

	*mix = vip_addr_mix(dst);
	bit = vip_front_bit(vip_filter_bit(*mix));
	g = bpf_map_lookup_elem(&lb_gen, &zero);

	if (g && ((g->vip_front[(bit / 64) & (VIP_FRONT_WORDS - 1)] >> (bit % 64)) & 1))
		return g;
	return NULL;
}

/* Starts a packet's description, zero but for its counters' row and what
 * the front check read: the generation's entry (the rest of the packet's
 * way reads its generation there rather than looking the map up again)
 * and the address's mix, where the VIP cache's slot starts from it. */
INLINE void start_pkt(struct pkt *p, struct lb_counters *cnt, struct lb_gen *g, __u32 mix)
{
	*p = (struct pkt){ .cnt = cnt, .lg = g, .dst_mix = mix };
}

/* The front check for the flow in `p` (from a quoted ICMP error, or an
 * echo request's destination), kept in `p` as start_pkt() keeps it. */
INLINE int maybe_vip(struct pkt *p)
{
	p->lg = vip_front(p->flow.dst, &p->dst_mix);
	return p->lg != NULL;
}

/* The same question put to the whole filter: asked only by packets that
 * the front let through and that are not in the VIP cache. */
INLINE int in_vip_filter(const struct pkt *p)
{
	__u32 bit = vip_filter_bit(vip_addr_mix(p->flow.dst)), word = bit / 64;
	__u64 *w = bpf_map_lookup_elem(&vip_filter, &word);

	return w && ((*w >> (bit % 64)) & 1);
}

/* A transport header that does not add up: dropped when the filter says
 * the address may be a VIP's, passed otherwise (as before the front). */
INLINE int malformed_l4(const struct pkt *p)
{
	return in_vip_filter(p) ? drop(STAT_DROP_MALFORMED) : XDP_PASS;
}

/* Transport ports (and TCP flags) at `off`. A quoted header (from an ICMP
 * error) describes the reverse direction, so its ports are swapped; it may
 * be as short as the 8 bytes ICMP is required to quote. `quoted` is a
 * constant at each caller: read back from `p->icmp`, the verifier could
 * not always tell the two cases apart (and rejected a 20-byte read of an
 * 8-byte quote the code never makes). */
INLINE int parse_l4(void *data, void *data_end, struct pkt *p, __u32 off, int quoted)
{
	struct udphdr *uh = data + off;
	__u32 need;

	if (p->flow.proto == IPPROTO_TCP)
		need = quoted ? 8 : sizeof(struct tcphdr);
	else if (p->flow.proto == IPPROTO_UDP)
		need = sizeof(struct udphdr);
	else
		return XDP_PASS;

	/* the header must be in the frame and inside the IP packet */
	if (unlikely(off > 200 || data + off + need > data_end || off + need > p->ip_end))
		return malformed_l4(p);
	if (p->flow.proto == IPPROTO_TCP && !quoted) {
		struct tcphdr *th = data + off;
		__u32 len = th->doff * 4;

		if (unlikely(len < sizeof(*th) || off + len > p->ip_end))
			return malformed_l4(p);
	}

	/* TCP and UDP both start with source and destination port. */
	if (quoted) {
		p->flow.sport = uh->dest;
		p->flow.dport = uh->source;
	} else {
		p->flow.sport = uh->source;
		p->flow.dport = uh->dest;
	}
	if (p->flow.proto == IPPROTO_TCP) {
		__u8 *flags = data + off + 13;

		if ((void *)(flags + 1) <= data_end)
			p->tcp_flags = *flags;
	}
	p->l4_off = off;
	return NO_VERDICT;
}

/* Not ours: the kernel gets it. */
INLINE int not_ours(enum parsed *what)
{
	*what = PARSED_OTHER;
	return NO_VERDICT;
}

/* Not forwardable: dropped when addressed to a VIP, passed otherwise. */
INLINE int reject(struct pkt *p, enum parsed *what, __u32 reason)
{
	p->reject = reason;
	*what = PARSED_REJECT;
	return NO_VERDICT;
}

/* IPv4 ICMP: echo requests are answered by the caller; destination
 * unreachable (fragmentation needed among them) is forwarded to the real
 * owning the quoted flow; the rest goes to the kernel. */
INLINE int parse_icmp4(void *data, void *data_end, struct pkt *p, enum parsed *what)
{
	struct icmp_hdr *icmp = data + ETH_LEN + IP4_LEN;
	struct iphdr *inner = data + ETH_LEN + IP4_LEN + ICMP_LEN;

	if (unlikely((void *)(icmp + 1) > data_end || ETH_LEN + IP4_LEN + ICMP_LEN > p->ip_end))
		return drop(STAT_DROP_MALFORMED);
	if (icmp->type == ICMP_ECHO) {
		if (!maybe_vip(p))
			return not_ours(what);
		*what = PARSED_ECHO;
		return NO_VERDICT;
	}
	if (icmp->type != ICMP_DEST_UNREACH)
		return not_ours(what);
	if (unlikely((void *)(inner + 1) > data_end ||
	             ETH_LEN + IP4_LEN + ICMP_LEN + IP4_LEN > p->ip_end))
		return drop(STAT_DROP_MALFORMED);
	if (inner->ihl != 5)
		return reject(p, what, STAT_DROP_IPV4_OPTIONS);
	if (icmp->code == ICMP_FRAG_NEEDED)
		bump(p, STAT_ICMP_TOO_BIG_V4);
	p->icmp = 1;
	p->flow.proto = inner->protocol;
	p->flow.src[0] = inner->daddr;
	p->flow.dst[0] = inner->saddr;
	if (!maybe_vip(p))
		return not_ours(what);
	*what = PARSED_FLOW;
	return parse_l4(data, data_end, p, ETH_LEN + IP4_LEN + ICMP_LEN + IP4_LEN, 1);
}

INLINE int parse_icmp6(void *data, void *data_end, struct pkt *p, enum parsed *what)
{
	struct icmp_hdr *icmp = data + ETH_LEN + IP6_LEN;
	struct ipv6hdr *inner = data + ETH_LEN + IP6_LEN + ICMP_LEN;

	if (unlikely((void *)(icmp + 1) > data_end || ETH_LEN + IP6_LEN + ICMP_LEN > p->ip_end))
		return drop(STAT_DROP_MALFORMED);
	if (icmp->type == ICMPV6_ECHO_REQUEST) {
		if (!maybe_vip(p))
			return not_ours(what);
		*what = PARSED_ECHO;
		return NO_VERDICT;
	}
	if (icmp->type != ICMPV6_PKT_TOOBIG && icmp->type != ICMPV6_DEST_UNREACH)
		return not_ours(what);
	if (unlikely((void *)(inner + 1) > data_end ||
	             ETH_LEN + IP6_LEN + ICMP_LEN + IP6_LEN > p->ip_end))
		return drop(STAT_DROP_MALFORMED);
	if (icmp->type == ICMPV6_PKT_TOOBIG)
		bump(p, STAT_ICMP_TOO_BIG_V6);
	p->icmp = 1;
	p->flow.proto = inner->nexthdr;
	__builtin_memcpy(p->flow.src, &inner->daddr, 16);
	__builtin_memcpy(p->flow.dst, &inner->saddr, 16);
	if (!maybe_vip(p))
		return not_ours(what);
	*what = PARSED_FLOW;
	return parse_l4(data, data_end, p, ETH_LEN + IP6_LEN + ICMP_LEN + IP6_LEN, 1);
}

/* The parsers start `p` (start_pkt) once the packet may be ours, with the
 * counters' row `cnt`; they leave it unwritten when it is not (a verdict,
 * or PARSED_OTHER). */
INLINE int parse_ipv4(void *data, void *data_end, struct pkt *p, struct lb_counters *cnt,
                      enum parsed *what)
{
	struct iphdr *iph = data + ETH_LEN;
	struct lb_gen *g = NULL;
	__u32 total, mix = 0;

	if (unlikely((void *)(iph + 1) > data_end || iph->version != 4 || iph->ihl < 5))
		return drop(STAT_DROP_MALFORMED);
	total = bpf_ntohs(iph->tot_len);
	/* the length must cover the header and fit in the frame (the frame may
	 * be longer: Ethernet padding) */
	if (unlikely(total < iph->ihl * 4 || data + ETH_LEN + total > data_end))
		return drop(STAT_DROP_MALFORMED);
	if (iph->protocol != IPPROTO_ICMP) {
		__be32 dst[4] = { iph->daddr };

		g = vip_front(dst, &mix);
		if (!g)
			return not_ours(what);
	}
	start_pkt(p, cnt, g, mix);
	p->ip_end = ETH_LEN + total;
	p->tos = iph->tos;
	p->ip_bytes = total;
	p->flow.src[0] = iph->saddr;
	p->flow.dst[0] = iph->daddr;
	if (unlikely(iph->ihl != 5))
		return reject(p, what, STAT_DROP_IPV4_OPTIONS);
	if (unlikely(iph->frag_off & bpf_htons(IP4_FRAG_MASK)))
		return reject(p, what, STAT_DROP_FRAGMENT);
	if (unlikely(iph->protocol == IPPROTO_ICMP))
		return parse_icmp4(data, data_end, p, what);
	*what = PARSED_FLOW;
	p->flow.proto = iph->protocol;
	return parse_l4(data, data_end, p, ETH_LEN + IP4_LEN, 0);
}

INLINE int parse_ipv6(void *data, void *data_end, struct pkt *p, struct lb_counters *cnt,
                      enum parsed *what)
{
	struct ipv6hdr *ip6h = data + ETH_LEN;
	struct lb_gen *g = NULL;
	__u32 payload, mix = 0;
	__be32 dst[4];

	if (unlikely((void *)(ip6h + 1) > data_end || ip6h->version != 6))
		return drop(STAT_DROP_MALFORMED);
	payload = bpf_ntohs(ip6h->payload_len);
	if (unlikely(data + ETH_LEN + IP6_LEN + payload > data_end))
		return drop(STAT_DROP_MALFORMED);
	copy_addr6(dst, &ip6h->daddr);
	if (ip6h->nexthdr != IPPROTO_ICMPV6) {
		g = vip_front(dst, &mix);
		if (!g)
			return not_ours(what);
	}
	start_pkt(p, cnt, g, mix);
	p->ip_end = ETH_LEN + IP6_LEN + payload;
	p->v6 = 1;
	p->tos = ipv6_tos(ip6h);
	p->ip_bytes = payload;
	copy_addr6(p->flow.src, &ip6h->saddr);
	__builtin_memcpy(p->flow.dst, dst, sizeof(dst));
	if (unlikely(ip6h->nexthdr == IPPROTO_FRAGMENT))
		return reject(p, what, STAT_DROP_FRAGMENT);
	if (unlikely(ip6h->nexthdr == IPPROTO_ICMPV6))
		return parse_icmp6(data, data_end, p, what);
	*what = PARSED_FLOW;
	p->flow.proto = ip6h->nexthdr;
	return parse_l4(data, data_end, p, ETH_LEN + IP6_LEN, 0);
}

#endif /* LB_PARSE_H */
