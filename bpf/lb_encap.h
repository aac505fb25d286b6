/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Encapsulation toward a real: IP-in-IP (IPv4 or IPv6 outer, either inner)
 * or GUE (UDP, direct IP payload). Frames are byte-identical to Katran's:
 * outer sources derived from the client address and port (so the real's NIC
 * spreads flows over its queues), TTL 64, id 0, the inner TOS.
 */
#ifndef LB_ENCAP_H
#define LB_ENCAP_H

#include "lb_csum.h"
#include "lb_parse.h"

/* The last four bytes of the client address (its whole IPv4 address). */
INLINE __be32 client_tail(const struct pkt *p)
{
	return p->v6 ? p->flow.src[3] : p->flow.src[0];
}

/* IP-in-IPv4 outer source: prefix.(c2 ^ port_lo).(c3 ^ port_hi). */
INLINE __be32 ipip_src_v4(const struct pkt *p, const struct lb_ctl *ctl)
{
	__be32 c = client_tail(p), out = ctl->src_v4_prefix;
	__u8 *cb = (__u8 *)&c, *ob = (__u8 *)&out, *port = (__u8 *)&p->orig_sport;

	ob[2] = cb[2] ^ port[1];
	ob[3] = cb[3] ^ port[0];
	return out;
}

/* IP-in-IPv6 outer source: prefix, then (c0 ^ port_hi, c1 ^ port_lo, c2, c3). */
INLINE void ipip_src_v6(const struct pkt *p, const struct lb_ctl *ctl, __be32 out[4])
{
	__be32 c = client_tail(p);
	__u8 *cb = (__u8 *)&c, *port = (__u8 *)&p->orig_sport;

	out[0] = ctl->src_v6_prefix[0];
	out[1] = ctl->src_v6_prefix[1];
	out[2] = ctl->src_v6_prefix[2];
	cb[0] ^= port[0];
	cb[1] ^= port[1];
	out[3] = c;
}

/* GUE source port, as Katran derives it for each outer family. */
INLINE __be16 gue_sport(const struct pkt *p, int outer_v6)
{
	__be32 c = client_tail(p);
	__u8 *cb = (__u8 *)&c, *port = (__u8 *)&p->orig_sport;
	__be16 out;
	__u8 *o = (__u8 *)&out;

	if (outer_v6 && p->v6) {
		o[0] = cb[0] ^ port[0];
		o[1] = cb[1] ^ port[1];
	} else if (outer_v6) {
		o[0] = cb[2] ^ port[0];
		o[1] = cb[3] ^ port[1];
	} else {
		o[0] = cb[2] ^ port[1];
		o[1] = cb[3] ^ port[0];
	}
	return out;
}

INLINE __u64 sum16(const void *buf, int words)
{
	const __u16 *w = buf;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < words; i++)
		sum += w[i];
	return sum;
}

INLINE __u64 sub16(const void *buf, int words)
{
	const __u16 *w = buf;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < words; i++)
		sum += (__u16)~w[i];
	return sum;
}

/*
 * GUE UDP checksum, computed as Katran does without reading the payload:
 * a valid inner TCP/UDP segment sums to the negated inner pseudo header, so
 * the outer sum is outer pseudo header + UDP header + inner IP header minus
 * the inner pseudo header. (For a quoted ICMP error this is not the true sum;
 * Katran sends the same value, and receivers accept UDP checksums on GUE.)
 */
INLINE __u16 gue_csum(void *outer_ip, int outer_v6, struct udphdr *uh, void *inner, int inner_v6)
{
	__u64 sum = 0xffff;

	if (inner_v6) {
		struct ipv6hdr *ip6 = inner;

		sum += sub16(&ip6->saddr, 16);
		sum += (__u16)~ip6->payload_len;
		sum += (__u16)~bpf_htons(ip6->nexthdr);
		sum += sum16(ip6, IP6_LEN / 2);
	} else {
		struct iphdr *ip = inner;

		sum += sub16(&ip->saddr, 4);
		sum += (__u16)~bpf_htons(bpf_ntohs(ip->tot_len) - IP4_LEN);
		sum += (__u16)~bpf_htons(ip->protocol);
		sum += sum16(ip, IP4_LEN / 2);
	}
	sum += sum16(uh, sizeof(*uh) / 2);
	if (outer_v6) {
		struct ipv6hdr *ip6 = outer_ip;

		sum += sum16(&ip6->saddr, 16);
		sum += ip6->payload_len;
		sum += bpf_htons(ip6->nexthdr);
	} else {
		struct iphdr *ip = outer_ip;

		sum += sum16(&ip->saddr, 4);
		sum += bpf_htons(bpf_ntohs(ip->tot_len) - IP4_LEN);
		sum += bpf_htons(ip->protocol);
	}
	return csum_fold(sum);
}

/* The outer IPv4 header, written in five words. Its checksum is summed
 * from those words as they sit in registers: reading back bytes just
 * written in other widths defeats the CPU's store forwarding, and cost as
 * much as a map lookup. The sum of 32-bit words folds to the sum of their
 * 16-bit halves. */
INLINE void fill_ipv4(struct iphdr *ip, const struct pkt *p, __be32 src, __be32 dst, __u16 payload,
                      __u8 proto)
{
	/* version 4, header length 5, TOS, total length */
	__be32 w0 = bpf_htonl(0x45000000 | ((__u32)p->tos << 16) | (__u16)(payload + IP4_LEN));
	/* TTL, protocol, checksum 0 (id and fragment offset: the word of 0) */
	__be32 w2 = bpf_htonl(((__u32)DEFAULT_TTL << 24) | ((__u32)proto << 16));
	__u32 *w = (__u32 *)ip;

	w[0] = w0;
	w[1] = 0;
	w[2] = w2;
	w[3] = src;
	w[4] = dst;
	ip->check = csum_fold((__u64)w0 + w2 + src + dst);
}

INLINE void fill_ipv6(struct ipv6hdr *ip6, const struct pkt *p, const __be32 *src,
                      const __be32 *dst, __u16 payload, __u8 proto)
{
	/* version, traffic class (the inner TOS), flow label 0 */
	*(__be32 *)ip6 = bpf_htonl(0x60000000 | ((__u32)p->tos << 20));
	*((__be32 *)ip6 + 1) =
	        bpf_htonl(((__u32)payload << 16) | ((__u32)proto << 8) | DEFAULT_TTL);
	__builtin_memcpy(&ip6->saddr, src, 16);
	__builtin_memcpy(&ip6->daddr, dst, 16);
}

INLINE void fill_udp(struct udphdr *uh, const struct pkt *p, const struct lb_ctl *ctl,
                     __u16 inner_len, int outer_v6)
{
	uh->source = gue_sport(p, outer_v6);
	uh->dest = ctl->gue_port;
	uh->len = bpf_htons(inner_len + sizeof(*uh));
	uh->check = 0;
}

/* Sets the GUE checksum once the inner IP header is known to be there. */
INLINE int gue_checksum(void *outer_ip, int outer_v6, struct udphdr *uh, const struct pkt *p,
                        void *data_end)
{
	void *inner = (void *)(uh + 1);

	if (p->v6) {
		if (unlikely(inner + IP6_LEN > data_end))
			return drop(STAT_DROP_ENCAP);
		uh->check = gue_csum(outer_ip, outer_v6, uh, inner, 1);
		return XDP_TX;
	}
	if (unlikely(inner + IP4_LEN > data_end))
		return drop(STAT_DROP_ENCAP);
	/* An IPv4 UDP datagram sent without a checksum gives the shortcut
	 * nothing to build on: send the GUE datagram without one too (allowed
	 * for IPv4, and for tunnels over IPv6 by RFC 6935). */
	if (p->flow.proto == IPPROTO_UDP && !p->icmp) {
		struct udphdr *iuh = inner + IP4_LEN;

		if (unlikely((void *)(iuh + 1) > data_end))
			return drop(STAT_DROP_ENCAP);
		if (iuh->check == 0)
			return XDP_TX;
	}
	uh->check = gue_csum(outer_ip, outer_v6, uh, inner, 0);
	return XDP_TX;
}

/* Copies a MAC address in two accesses rather than six (`dst` and `src`
 * are at least 2-byte aligned: a frame's start and a struct field). */
INLINE void copy_mac(__u8 *dst, const __u8 *src)
{
	*(__u32 *)dst = *(const __u32 *)src;
	*(__u16 *)(dst + 4) = *(const __u16 *)(src + 4);
}

/* Grow the frame by `room` bytes at the front and write the new Ethernet
 * header; returns the new data pointer or NULL. */
INLINE void *grow(struct xdp_md *ctx, int room, const struct lb_ctl *ctl, __be16 eth_proto)
{
	void *data, *data_end;
	struct ethhdr *eth, *old;

	if (bpf_xdp_adjust_head(ctx, -room))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	old = data + room;
	if ((void *)(eth + 1) > data_end || (void *)(old + 1) > data_end)
		return NULL;
	copy_mac(eth->h_source, old->h_dest);
	copy_mac(eth->h_dest, ctl->gw_mac);
	/* struct ethhdr is packed: a field store would be two byte stores */
	*(__be16 *)((void *)eth + offsetof(struct ethhdr, h_proto)) = eth_proto;
	return data;
}

/* Bytes of the packet being encapsulated: its whole IP packet (for IPv6
 * the payload length leaves out the fixed header). */
INLINE __u16 inner_len(const struct pkt *p)
{
	return p->v6 ? p->ip_bytes + IP6_LEN : p->ip_bytes;
}

/* GUE: the outer IP header, then UDP. Out of line (see OUT_OF_LINE): its
 * checksum, unrolled for the four pairs of families, would otherwise sit
 * among the instructions of IP-in-IP. */
OUT_OF_LINE int encap_gue(struct xdp_md *ctx, const struct pkt *p, const struct real_def *real,
                          const struct lb_ctl *ctl)
{
	int outer_v6, room;
	__u16 len;
	void *data, *data_end;

	if (!p || !real || !ctl)
		return drop(STAT_DROP_ENCAP);
	outer_v6 = real->flags & REAL_V6;
	len = inner_len(p);
	room = (outer_v6 ? IP6_LEN : IP4_LEN) + sizeof(struct udphdr);
	data = grow(ctx, room, ctl, outer_v6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP));
	if (unlikely(!data))
		return drop(STAT_DROP_ENCAP);
	data_end = (void *)(long)ctx->data_end;

	if (outer_v6) {
		struct ipv6hdr *ip6 = data + ETH_LEN;
		struct udphdr *uh = (void *)(ip6 + 1);

		if (unlikely((void *)(uh + 1) > data_end))
			return drop(STAT_DROP_ENCAP);
		fill_ipv6(ip6, p, ctl->gue_src_v6, real->addr, len + sizeof(*uh), IPPROTO_UDP);
		fill_udp(uh, p, ctl, len, 1);
		return gue_checksum(ip6, 1, uh, p, data_end);
	}

	struct iphdr *ip = data + ETH_LEN;
	struct udphdr *uh = (void *)(ip + 1);

	if (unlikely((void *)(uh + 1) > data_end))
		return drop(STAT_DROP_ENCAP);
	fill_ipv4(ip, p, ctl->gue_src_v4, real->addr[0], len + sizeof(*uh), IPPROTO_UDP);
	fill_udp(uh, p, ctl, len, 0);
	return gue_checksum(ip, 0, uh, p, data_end);
}

/* IP-in-IP (IPv4 or IPv6 outer, either inner), or GUE when configured. */
INLINE int encap(struct xdp_md *ctx, const struct pkt *p, const struct real_def *real,
                 const struct lb_ctl *ctl)
{
	int outer_v6 = real->flags & REAL_V6;
	__u16 len = inner_len(p);
	__u8 inner_proto = p->v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	void *data, *data_end;

	if (unlikely(ctl->features & FEAT_GUE))
		return encap_gue(ctx, p, real, ctl);
	data = grow(ctx, outer_v6 ? IP6_LEN : IP4_LEN, ctl,
	            outer_v6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP));
	if (unlikely(!data))
		return drop(STAT_DROP_ENCAP);
	data_end = (void *)(long)ctx->data_end;

	if (outer_v6) {
		struct ipv6hdr *ip6 = data + ETH_LEN;
		__be32 src[4];

		if (unlikely((void *)(ip6 + 1) > data_end))
			return drop(STAT_DROP_ENCAP);
		ipip_src_v6(p, ctl, src);
		fill_ipv6(ip6, p, src, real->addr, len, inner_proto);
		return XDP_TX;
	}

	struct iphdr *ip = data + ETH_LEN;

	if (unlikely((void *)(ip + 1) > data_end))
		return drop(STAT_DROP_ENCAP);
	fill_ipv4(ip, p, ipip_src_v4(p, ctl), real->addr[0], len, inner_proto);
	return XDP_TX;
}

#endif /* LB_ENCAP_H */
