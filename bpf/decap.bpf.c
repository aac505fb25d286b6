// SPDX-License-Identifier: GPL-2.0
/*
 * XDP decapsulation for real servers: the kernel of a real may have no
 * ipip/ip6tnl/fou devices, so the frames the balancer sends are unwrapped
 * here, in place, before the stack sees them.
 *
 * Recognised (anything else is passed untouched):
 *   IPv4 outer, protocol 4 (IPv4 inner) or 41 (IPv6 inner);
 *   IPv6 outer, next header 4 or 41 (no extension headers);
 *   GUE: UDP to `gue_port` over either family, the payload starting directly
 *   with an IP header whose version nibble (4 or 6) names the inner family.
 * The outer headers are removed with bpf_xdp_adjust_head, the Ethernet type
 * becomes the inner family's, the MAC addresses stay, and the inner packet
 * is passed up the stack. An encapsulated frame whose lengths or inner
 * header do not add up is dropped. Outer fragments and GUE payloads that do
 * not start with an IP version are passed untouched. Checksums of the outer
 * headers are not verified: they are removed, and the inner packet keeps
 * its own.
 *
 * This program shares no code with the balancer's parsers on purpose:
 * those pull in the balancer's maps and flow description, which a real
 * server has no use for.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define INLINE static __always_inline
#define ETH_LEN sizeof(struct ethhdr)
#define IP4_FRAG_MASK 0x3fff /* MF flag and fragment offset, host order */

/* GUE destination port in HOST byte order; the loader sets it before load. */
const volatile __u16 gue_port = 9886;

/* Counters of `decap_stats`, indexed by these names. */
enum decap_stat {
	DECAP_V4_IN_V4,
	DECAP_V6_IN_V6,
	DECAP_V4_IN_V6,
	DECAP_V6_IN_V4,
	DECAP_GUE_V4,         /* GUE carrying IPv4 (either outer family) */
	DECAP_GUE_V6,         /* GUE carrying IPv6 */
	DECAP_PASSED,         /* not encapsulated for us: passed untouched */
	DECAP_DROP_MALFORMED, /* encapsulated, but truncated or inconsistent */
	DECAP__COUNT,
};

/* Never read: names the enum so the object's BTF (and the Rust side) has it. */
const volatile enum decap_stat decap_stat_type;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DECAP__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} decap_stats SEC(".maps");

INLINE int verdict(__u32 stat, int action)
{
	__u64 *v = bpf_map_lookup_elem(&decap_stats, &stat);

	if (v)
		*v += 1;
	return action;
}

INLINE int passed(void)
{
	return verdict(DECAP_PASSED, XDP_PASS);
}

INLINE int malformed(void)
{
	return verdict(DECAP_DROP_MALFORMED, XDP_DROP);
}

/* Whether a whole inner header of family `v6` is at `inner`, and the length
 * it declares fits in the `room` bytes the outer headers leave for it. */
INLINE int inner_fits(void *inner, void *data_end, int v6, __u32 room)
{
	if (v6) {
		struct ipv6hdr *ip6 = inner;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return 0;
		return sizeof(*ip6) + bpf_ntohs(ip6->payload_len) <= room;
	}
	struct iphdr *ip = inner;
	__u32 len;

	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		return 0;
	len = bpf_ntohs(ip->tot_len);
	return len >= ip->ihl * 4u && len <= room;
}

/* Removes `outer` bytes after the Ethernet header, keeping the MACs. */
INLINE int strip(struct xdp_md *ctx, __u32 outer, int inner_v6, __u32 stat)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr eth, *e = data;

	if ((void *)(e + 1) > data_end)
		return malformed();
	__builtin_memcpy(&eth, e, ETH_LEN);
	if (bpf_xdp_adjust_head(ctx, outer))
		return malformed();
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	e = data;
	if ((void *)(e + 1) > data_end)
		return malformed();
	__builtin_memcpy(e->h_dest, eth.h_dest, ETH_ALEN);
	__builtin_memcpy(e->h_source, eth.h_source, ETH_ALEN);
	e->h_proto = bpf_htons(inner_v6 ? ETH_P_IPV6 : ETH_P_IP);
	return verdict(stat, XDP_PASS);
}

/* GUE: `uh` follows `ip_len` bytes of outer IP header, which leave `room`
 * bytes for the UDP datagram (0 when the outer lengths are inconsistent). */
INLINE int decap_gue(struct xdp_md *ctx, struct udphdr *uh, __u32 ip_len, __u32 room)
{
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *first = (void *)(uh + 1);
	__u32 udp_len;
	int v6;

	if ((void *)(uh + 1) > data_end || uh->dest != bpf_htons(gue_port))
		return passed();
	udp_len = bpf_ntohs(uh->len);
	if (udp_len > room || udp_len <= sizeof(*uh) || (void *)(first + 1) > data_end)
		return malformed();
	if ((*first >> 4) == 4)
		v6 = 0;
	else if ((*first >> 4) == 6)
		v6 = 1;
	else
		return passed(); /* a GUE header proper (version 0): not ours */
	if (!inner_fits(first, data_end, v6, udp_len - sizeof(*uh)))
		return malformed();
	return strip(ctx, ip_len + sizeof(*uh), v6, v6 ? DECAP_GUE_V6 : DECAP_GUE_V4);
}

INLINE int decap_v4(struct xdp_md *ctx, void *data, void *data_end)
{
	struct iphdr *ip = data + ETH_LEN;
	__u32 hlen, total, frame = data_end - data - ETH_LEN;
	int v6;

	if ((void *)(ip + 1) > data_end)
		return passed();
	if (ip->protocol != IPPROTO_IPIP && ip->protocol != IPPROTO_IPV6 &&
	    ip->protocol != IPPROTO_UDP)
		return passed();
	if (ip->frag_off & bpf_htons(IP4_FRAG_MASK))
		return passed();
	hlen = ip->ihl * 4;
	total = bpf_ntohs(ip->tot_len);
	if (hlen < sizeof(*ip))
		return malformed();
	/* GUE is recognised by its port first: lengths are checked after. */
	if (ip->protocol == IPPROTO_UDP)
		return decap_gue(ctx, (void *)ip + hlen, hlen,
		                 total >= hlen && total <= frame ? total - hlen : 0);
	if (total < hlen || total > frame)
		return malformed();
	v6 = ip->protocol == IPPROTO_IPV6;
	if (!inner_fits((void *)ip + hlen, data_end, v6, total - hlen))
		return malformed();
	return strip(ctx, hlen, v6, v6 ? DECAP_V6_IN_V4 : DECAP_V4_IN_V4);
}

INLINE int decap_v6(struct xdp_md *ctx, void *data, void *data_end)
{
	struct ipv6hdr *ip6 = data + ETH_LEN;
	__u32 payload, frame = data_end - data - ETH_LEN;
	int v6;

	if ((void *)(ip6 + 1) > data_end)
		return passed();
	if (ip6->nexthdr != IPPROTO_IPIP && ip6->nexthdr != IPPROTO_IPV6 &&
	    ip6->nexthdr != IPPROTO_UDP)
		return passed();
	payload = bpf_ntohs(ip6->payload_len);
	if (ip6->nexthdr == IPPROTO_UDP)
		return decap_gue(ctx, (void *)(ip6 + 1), sizeof(*ip6),
		                 sizeof(*ip6) + payload <= frame ? payload : 0);
	if (sizeof(*ip6) + payload > frame)
		return malformed();
	v6 = ip6->nexthdr == IPPROTO_IPV6;
	if (!inner_fits(ip6 + 1, data_end, v6, payload))
		return malformed();
	return strip(ctx, sizeof(*ip6), v6, v6 ? DECAP_V6_IN_V6 : DECAP_V4_IN_V6);
}

SEC("xdp")
int decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return passed();
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return decap_v4(ctx, data, data_end);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return decap_v6(ctx, data, data_end);
	return passed();
}
