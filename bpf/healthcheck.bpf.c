// SPDX-License-Identifier: GPL-2.0
/*
 * Health-check forwarding, on the balancer host's egress (tc clsact).
 *
 * A health checker marks its sockets (SO_MARK) and sends to a VIP; this
 * program wraps every frame whose mark is a key of `hc_reals` in an IP-in-IP
 * header toward the real the mark names, so the check travels the path
 * client traffic takes from the balancer, and the real answers as it
 * answers clients. No tunnel device is involved: the frame is grown in
 * place with bpf_skb_adjust_room.
 *
 * The outer header: IPv4 (protocol 4 for an IPv4 inner packet, 41 for
 * IPv6) or IPv6 (next header 4 or 41) by the real's family; TTL / hop limit
 * 64; the inner TOS / traffic class; IPv4 id 0, no DF; IPv6 flow label 0;
 * the length fields as the whole (GSO) frame has them: segmentation
 * rewrites them per segment.
 * The outer source is the host's address of the real's family from
 * `hc_ctl` (not derived from the client as the balancer does: there is no
 * client). The Ethernet destination becomes `hc_ctl.gw_mac` when set; the
 * Ethernet source stays.
 *
 * Frames with mark 0 or a mark without mapping go on untouched
 * (TC_ACT_UNSPEC: later tc filters still run). A mapped frame that cannot
 * be encapsulated (no outer source for the family, frame or GSO segment
 * larger than the egress MTU once grown) is dropped: sent unencapsulated
 * it would reach the VIP through the balancer and test some other real.
 * Encapsulated frames return TC_ACT_OK.
 * The interface must be Ethernet.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "hc_types.h"
#include "lb_csum.h"

char LICENSE[] SEC("license") = "GPL";

#define INLINE static __always_inline
#define HC_TTL 64

const volatile struct hc_abi hc_abi_types;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HC_MAX_MAPPINGS);
	__type(key, __u32);
	__type(value, struct hc_real);
} hc_reals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hc_ctl);
} hc_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HC_STAT__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} hc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HC_MAX_MAPPINGS);
	__type(key, __u32);
	__type(value, struct hc_counter);
} hc_real_stats SEC(".maps");

INLINE int verdict(__u32 stat, int action)
{
	__u64 *v = bpf_map_lookup_elem(&hc_stats, &stat);

	if (v)
		*v += 1;
	return action;
}

/* The inner packet's TOS (IPv4) or traffic class (IPv6). */
INLINE int inner_tos(struct __sk_buff *skb, int inner_v6, __u8 *tos)
{
	__u8 b[2];

	if (bpf_skb_load_bytes(skb, ETH_HLEN, b, sizeof(b)))
		return -1;
	*tos = inner_v6 ? (__u8)((b[0] << 4) | (b[1] >> 4)) : b[1];
	return 0;
}

INLINE int write_v4(struct __sk_buff *skb, const struct hc_real *real, const struct hc_ctl *ctl,
                    __u32 payload, __u8 tos, __u8 proto)
{
	struct iphdr ip = {
		.version = 4,
		.ihl = 5,
		.tos = tos,
		.tot_len = bpf_htons(payload + sizeof(ip)),
		.ttl = HC_TTL,
		.protocol = proto,
		.saddr = ctl->src_v4,
		.daddr = real->addr[0],
	};

	ip.check = ipv4_hdr_csum(&ip);
	return bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM);
}

INLINE int write_v6(struct __sk_buff *skb, const struct hc_real *real, const struct hc_ctl *ctl,
                    __u32 payload, __u8 tos, __u8 proto)
{
	struct ipv6hdr ip6 = {
		.version = 6,
		.priority = tos >> 4,
		.flow_lbl = { (__u8)((tos & 0x0f) << 4), 0, 0 },
		.payload_len = bpf_htons(payload),
		.nexthdr = proto,
		.hop_limit = HC_TTL,
	};

	__builtin_memcpy(&ip6.saddr, ctl->src_v6, sizeof(ip6.saddr));
	__builtin_memcpy(&ip6.daddr, real->addr, sizeof(ip6.daddr));
	return bpf_skb_store_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6), BPF_F_RECOMPUTE_CSUM);
}

/* Inserts `room` bytes after the Ethernet header, marking the frame as
 * encapsulated. A UDP GSO frame (its gso_size delimits datagrams) is only
 * grown by the kernel with a fixed gso_size; TCP's shrinks to make room. */
INLINE int grow(struct __sk_buff *skb, __u32 room, __u64 flags)
{
	if (!bpf_skb_adjust_room(skb, room, BPF_ADJ_ROOM_MAC, flags))
		return 0;
	if (!skb->gso_size)
		return -1;
	return bpf_skb_adjust_room(skb, room, BPF_ADJ_ROOM_MAC, flags | BPF_F_ADJ_ROOM_FIXED_GSO);
}

/* Whether the frame fits the egress MTU once `room` bytes longer. A GSO
 * frame is checked per segment, once grown (`room` 0); before, it passes. */
INLINE int fits(struct __sk_buff *skb, __u32 room)
{
	__u32 mtu_len = 0;

	if (!skb->gso_size)
		return bpf_check_mtu(skb, 0, &mtu_len, room, 0) == BPF_MTU_CHK_RET_SUCCESS;
	if (room)
		return 1;
	return bpf_check_mtu(skb, 0, &mtu_len, 0, BPF_MTU_CHK_SEGS) == BPF_MTU_CHK_RET_SUCCESS;
}

/* Grows the frame after the Ethernet header and writes the outer headers;
 * returns the counter of the failure, or -1 on success. */
INLINE int encap(struct __sk_buff *skb, const struct hc_real *real, const struct hc_ctl *ctl,
                 int inner_v6)
{
	int outer_v6 = real->flags & HC_REAL_V6;
	__u8 proto = inner_v6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	__u32 payload = skb->len - ETH_HLEN;
	__u32 room = outer_v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	__be16 eth_proto = bpf_htons(outer_v6 ? ETH_P_IPV6 : ETH_P_IP);
	__u8 tos;

	if (skb->len < ETH_HLEN || inner_tos(skb, inner_v6, &tos))
		return HC_STAT_DROP_ENCAP;
	if (!fits(skb, room))
		return HC_STAT_DROP_TOO_BIG;
	if (grow(skb, room, outer_v6 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 : BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
		return HC_STAT_DROP_ENCAP;
	if (outer_v6 ? write_v6(skb, real, ctl, payload, tos, proto)
	             : write_v4(skb, real, ctl, payload, tos, proto))
		return HC_STAT_DROP_ENCAP;
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &eth_proto,
	                        sizeof(eth_proto), BPF_F_RECOMPUTE_CSUM))
		return HC_STAT_DROP_ENCAP;
	if ((ctl->flags & HC_CTL_GW_MAC) &&
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), ctl->gw_mac, ETH_ALEN,
	                        BPF_F_RECOMPUTE_CSUM))
		return HC_STAT_DROP_ENCAP;
	if (skb->gso_size && !fits(skb, 0))
		return HC_STAT_DROP_TOO_BIG;
	return -1;
}

SEC("tc")
int healthcheck(struct __sk_buff *skb)
{
	__u32 mark = skb->mark, zero = 0, idx;
	struct hc_real *real;
	struct hc_ctl *ctl;
	struct hc_counter *c;
	int inner_v6, outer_v6, failed;

	if (!mark)
		return TC_ACT_UNSPEC;
	real = bpf_map_lookup_elem(&hc_reals, &mark);
	if (!real)
		return verdict(HC_STAT_PASS_NO_MAPPING, TC_ACT_UNSPEC);
	if (skb->protocol == bpf_htons(ETH_P_IP))
		inner_v6 = 0;
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		inner_v6 = 1;
	else
		return verdict(HC_STAT_PASS_NOT_IP, TC_ACT_UNSPEC);
	ctl = bpf_map_lookup_elem(&hc_ctl, &zero);
	outer_v6 = real->flags & HC_REAL_V6;
	if (!ctl || !(ctl->flags & (outer_v6 ? HC_CTL_SRC_V6 : HC_CTL_SRC_V4)))
		return verdict(HC_STAT_DROP_NO_SOURCE, TC_ACT_SHOT);
	idx = real->stat_idx;
	failed = encap(skb, real, ctl, inner_v6);
	if (failed >= 0)
		return verdict(failed, TC_ACT_SHOT);
	c = bpf_map_lookup_elem(&hc_real_stats, &idx);
	if (c) {
		c->packets += 1;
		c->bytes += skb->len;
	}
	return verdict(outer_v6 ? HC_STAT_ENCAP_V6 : HC_STAT_ENCAP_V4, TC_ACT_OK);
}
