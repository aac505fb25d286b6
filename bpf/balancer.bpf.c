// SPDX-License-Identifier: GPL-2.0
/*
 * XDP entry of the load balancer. The work lives in the headers, one
 * concern each; this file only strings the steps together:
 * parse -> VIP lookup -> pick a real -> count -> encapsulate -> XDP_TX.
 */
#include "lb_common.h"
#include "lb_encap.h"
#include "lb_icmp.h"
#include "lb_parse.h"
#include "lb_select.h"

char LICENSE[] SEC("license") = "GPL";

/* The active generation, from the entry the VIP filter's front check read
 * when it did. */
INLINE __u32 active_gen(const struct pkt *p)
{
	__u32 zero = 0;
	struct lb_gen *g = p->lg ?: bpf_map_lookup_elem(&lb_gen, &zero);

	return g ? (g->gen & 1) : 0;
}

INLINE __u8 key_scope(const struct pkt *p, __u32 gen)
{
	return gen | (p->v6 ? SCOPE_V6 : 0);
}

INLINE int is_vip_addr(const struct pkt *p, __u32 gen)
{
	struct addr_key k = { .scope = key_scope(p, gen) };

	__builtin_memcpy(k.addr, p->flow.dst, sizeof(k.addr));
	return bpf_map_lookup_elem(&vip_addrs, &k) != NULL;
}

/* Sets a VIP key's last word (port, protocol, scope) with one store: written
 * field by field and then read as a word by vip_cache_slot(), it cost a
 * failed store-to-load forward on every packet (the CPU cannot merge
 * several narrower stores into one wider load). */
INLINE void set_key_tail(struct vip_key *vk, __be16 port, __u8 proto, __u8 scope)
{
	struct vip_key k = { .port = port, .proto = proto, .scope = scope };
	__u32 w;

	__builtin_memcpy(&w, &k.port, sizeof(w));
	__builtin_memcpy(&vk->port, &w, sizeof(w));
}

/* Whether two VIP keys are equal, compared as two 8-byte words and one
 * 4-byte word: both are 8-byte aligned (a slot starts its array value, and
 * the caller's key is declared so). */
INLINE int same_vip(const struct vip_key *a, const struct vip_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	_Static_assert(sizeof(*a) == 20, "a VIP key is an address and one word");
	return x[0] == y[0] && x[1] == y[1] && *(const __u32 *)(x + 2) == *(const __u32 *)(y + 2);
}

/* The VIP entry for `vk` (whose address is the packet's destination): from
 * its cache slot when that holds it, else from the `vips` hash when the
 * whole VIP filter lets the packet's address through. A slot taken from a
 * stale `dst_mix` only misses the cache. */
INLINE struct vip_meta *find_vip(const struct vip_key *vk, const struct pkt *p)
{
	__u32 slot = vip_cache_slot(vk, p->dst_mix);
	struct vip_slot *s = bpf_map_lookup_elem(&vip_cache, &slot);

	if (s && same_vip(vk, &s->key))
		return &s->meta;
	if (!in_vip_filter(p))
		return NULL;
	return bpf_map_lookup_elem(&vips, vk);
}

/*
 * A dport-hash VIP hashes on the destination port alone. As in Katran the
 * flow key changes only on the way to the ring (so the outer source of a
 * frame routed by a server id still names the client), and the result is not
 * stored: every packet of such a VIP is hashed, the ring alone decides.
 */
INLINE void dport_hash_key(struct pkt *p)
{
	p->flow.sport = p->flow.dport;
	__builtin_memset(p->flow.src, 0, sizeof(p->flow.src));
}

INLINE void count_miss(const struct pkt *p, int syn)
{
	if (p->flow.proto == IPPROTO_UDP)
		bump(p, STAT_CONN_MISS_UDP);
	else
		bump(p, syn ? STAT_CONN_MISS_TCP_SYN : STAT_CONN_MISS_TCP_NONSYN);
}

/* The real a connection-table entry names, or NULL when the entry is
 * stale: the active generation does not name the real, or the real is
 * marked down and the VIP migrates UDP flows. */
INLINE struct real_def *live_real(const struct pkt *p, __u32 idx, int migrate, __u32 gen)
{
	struct real_def *r = bpf_map_lookup_elem(&reals, &idx);

	if (!r || !(r->flags & (REAL_IN_GEN0 << gen)))
		return NULL;
	if (unlikely(migrate && (r->flags & (REAL_DOWN_GEN0 << gen)))) {
		bump(p, STAT_UDP_FLOW_MIGRATED);
		return NULL;
	}
	return r;
}

/* The real `idx` (0: none) as the packet leaves with it in `p->real`. */
INLINE struct real_def *chosen(struct pkt *p, __u32 idx)
{
	p->real = idx;
	return idx ? bpf_map_lookup_elem(&reals, &idx) : NULL;
}

/* The real a server id in the packet names, or 0: a QUIC connection id
 * (UDP), or the TCP server id option. Counted either way. */
INLINE __u32 id_routed(struct xdp_md *ctx, const struct pkt *p, int tcp, const struct lb_ctl *ctl,
                       __u32 gen)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 id, real;

	if (!tcp) {
		id = quic_server_id(data, data_end, p);
		real = server_id_real(id, gen);
		bump(p, real ? STAT_QUIC_CID_ROUTED
		        : id ? STAT_QUIC_CID_UNKNOWN
		             : STAT_QUIC_CH_ROUTED);
		return real;
	}
	real = server_id_real(tcp_server_id(data, data_end, p, ctl->tcp_sid_kind), gen);
	bump(p, real ? STAT_TCP_SID_ROUTED : STAT_TCP_SID_MISS);
	return real;
}

/* Real for a VIP flow (its index in p->real), or NULL when the VIP has
 * none. Each path looks the real up once. */
INLINE struct real_def *select_real(struct xdp_md *ctx, struct pkt *p, const struct vip_meta *vip,
                                    const struct lb_ctl *ctl, __u32 gen)
{
	int tcp = p->flow.proto == IPPROTO_TCP;
	int syn = tcp && (p->tcp_flags & TCPF_SYN_BIT);
	int table = !(vip->flags & VIP_NO_CONN_TABLE);
	/* a QUIC VIP's UDP packets, and with the option on TCP packets past
	 * the SYN, are routed by the server id they carry, when they do */
	int by_id = tcp ? !syn && (ctl->features & FEAT_TCP_SERVER_ID) : vip->flags & VIP_QUIC;
	struct conn_loc loc = {};
	__u32 real = 0;

	/* A SYN is never looked up; it is counted against the new-flow rate
	 * first, and one over it is not stored, so its set is not even
	 * located: a flood of them costs no more than it must. */
	if (table && syn && !may_store(p, ctl))
		table = 0;
	if (table)
		loc = conn_locate(p);

	if (by_id) {
		real = id_routed(ctx, p, tcp, ctl, gen);
		if (real) {
			if (table)
				conn_note(loc, p, real, ctl);
			return chosen(p, real);
		}
	}

	if (table && !syn) {
		real = conn_lookup(loc, p, ctl);
		if (real) {
			struct real_def *r = live_real(
			        p, real, !tcp && (vip->flags & VIP_UDP_FLOW_MIGRATION), gen);

			if (r) {
				bump(p, STAT_CONN_HIT);
				p->real = real;
				return r;
			}
		}
	}

	count_miss(p, syn);
	if (vip->flags & VIP_DPORT_HASH) {
		dport_hash_key(p);
		return chosen(p, ring_pick(p, vip));
	}
	real = 0;
	if (table && !syn) {
		real = prev_ring_pick(p, vip);
		if (real && live_real(p, real, !tcp && (vip->flags & VIP_UDP_FLOW_MIGRATION), gen))
			bump(p, STAT_PREV_RING);
		else
			real = 0;
	}
	if (!real)
		real = ring_pick(p, vip);
	/* a reset ends the flow: nothing to remember */
	if (real && table && !(tcp && (p->tcp_flags & TCPF_RST_BIT)) && (syn || may_store(p, ctl)))
		conn_store(loc, p, real, ctl);
	return chosen(p, real);
}

INLINE int process(struct xdp_md *ctx, struct lb_counters *cnt)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	enum parsed what = PARSED_OTHER;
	struct pkt p; /* started by the parsers, once the packet may be ours */
	/* every byte written before it is read: not zeroed on the way of
	 * packets that never get that far */
	struct vip_key vk __attribute__((aligned(8)));
	struct vip_meta *found, vip;
	struct lb_ctl *ctl;
	struct real_def *real;
	__u32 gen;
	int v;

	if (unlikely((void *)(eth + 1) > data_end))
		return drop(STAT_DROP_MALFORMED);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		v = parse_ipv4(data, data_end, &p, cnt, &what);
	else if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		v = parse_ipv6(data, data_end, &p, cnt, &what);
	else
		return XDP_PASS;
	if (v != NO_VERDICT)
		return v;
	if (what == PARSED_OTHER)
		return XDP_PASS;

	gen = active_gen(&p);
	if (unlikely(what == PARSED_REJECT))
		return is_vip_addr(&p, gen) ? drop(p.reject) : XDP_PASS;
	if (unlikely(what == PARSED_ECHO)) {
		if (!is_vip_addr(&p, gen))
			return XDP_PASS;
		return p.v6 ? echo_reply6(data, data_end) : echo_reply4(data, data_end);
	}

	__builtin_memcpy(vk.addr, p.flow.dst, sizeof(vk.addr));
	set_key_tail(&vk, p.flow.dport, p.flow.proto, key_scope(&p, gen));
	found = find_vip(&vk, &p);
	if (!found) {
		set_key_tail(&vk, 0, p.flow.proto, key_scope(&p, gen));
		found = find_vip(&vk, &p);
		if (!found)
			return XDP_PASS;
		if (!(found->flags & VIP_DPORT_HASH))
			p.flow.dport = 0;
	}
	vip = *found;

	ctl = bpf_map_lookup_elem(&lb_ctl, &gen);
	if (unlikely(!ctl))
		return drop(STAT_DROP_NO_CTL);
	/* max_frame_len && len > max_frame_len, in one compare: a limit of 0
	 * wraps to the largest value */
	if (unlikely((__u32)ctl->max_frame_len - 1 < (__u32)(data_end - data) - 1))
		return drop(STAT_DROP_TOO_BIG);

	p.orig_sport = p.flow.sport;
	if (vip.flags & VIP_NO_SRC_PORT)
		p.flow.sport = 0;
	real = select_real(ctx, &p, &vip, ctl, gen);
	if (unlikely(!real))
		return drop(STAT_DROP_NO_REAL);

	count_traffic(&vip_stats, vip.vip_num, p.ip_bytes);
	count_traffic(&real_stats, p.real, p.ip_bytes);
	if (vip_real_slots)
		count_traffic(&vip_real_stats, vip.vip_num * vip_real_slots + p.real, p.ip_bytes);
	return encap(ctx, &p, real, ctl);
}

/* The counter of each XDP action value (0-7), two bits each in one constant,
 * so the entry finds it with a shift rather than a chain of compares: XDP_PASS
 * and XDP_TX count as such, any other action as a drop. */
#define STAT_OF(action, stat) ((__u32)(stat) << (2 * (action)))
#define ACTION_STATS                                                                               \
	(STAT_OF(XDP_ABORTED, STAT_XDP_DROP) | STAT_OF(XDP_DROP, STAT_XDP_DROP) |                  \
	 STAT_OF(XDP_PASS, STAT_XDP_PASS) | STAT_OF(XDP_TX, STAT_XDP_TX) |                         \
	 STAT_OF(XDP_REDIRECT, STAT_XDP_DROP) | STAT_OF(5, STAT_XDP_DROP) |                        \
	 STAT_OF(6, STAT_XDP_DROP) | STAT_OF(7, STAT_XDP_DROP))
_Static_assert(STAT_XDP_PASS < 4 && STAT_XDP_TX < 4 && STAT_XDP_DROP < 4,
               "an action's counter fits in two bits");

SEC("xdp")
int balancer(struct xdp_md *ctx)
{
	struct lb_counters *cnt = counters();
	__u32 action, stat;

	if (!cnt)
		return XDP_PASS;
	action = process(ctx, cnt);
	stat = action >> 8;
	if (stat) {
		/* the bound is checked on `stat` itself, not folded into one
		 * on `action` the verifier could not carry over */
		barrier_var(stat);
		if (stat < STAT__COUNT)
			cnt->v[stat] += 1;
		action &= 0xff;
	}
	cnt->v[(ACTION_STATS >> (2 * (action & 7))) & 3] += 1;
	return action;
}

/* A program that only passes: the floor the benchmark compares against. */
SEC("xdp")
int pass_floor(struct xdp_md *ctx)
{
	return XDP_PASS;
}

#ifdef KATRAN_BUILD_TAG
/* Set only by test builds (KATRAN_BPF_CFLAGS=-DKATRAN_BUILD_TAG=N, see
 * build.rs): it makes the object, and so its stamp, differ from a build of
 * the same source, to test upgrades between builds. Never read. */
const volatile __u32 katran_build_tag = KATRAN_BUILD_TAG;
#endif
