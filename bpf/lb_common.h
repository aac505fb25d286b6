/* SPDX-License-Identifier: GPL-2.0 */
/* Load-time settings, the packet description, and small shared helpers. */
#ifndef LB_COMMON_H
#define LB_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_types.h"
#include "lb_maps.h"

#define INLINE static __always_inline
/* unlikely() (bpf_helpers.h) marks a branch few packets take (bad
 * headers, ICMP, features off the forwarding path): the compiler places
 * its code after the forwarding path's, which then runs through fewer
 * instruction-cache lines. */
/* A function called rather than inlined, for code few packets run: kept
 * out of the forwarding path's instruction-cache lines. A global function,
 * so the verifier checks it once, on its own, rather than at every state
 * that calls it. To it every pointer argument may be NULL; to the caller,
 * memory it passed is as good as overwritten, so a pointer kept there
 * (such as `struct pkt`'s `cnt`) cannot be used after the call. */
#define OUT_OF_LINE __attribute__((noinline))

/* Set by the loader before load (read-only afterwards). */
const volatile __u32 ring_size = 65537;
/* `hash % ring_size` without a division (katran-core's fastmod.rs says how
 * and proves it exact): set by the loader with ring_size. */
const volatile __u32 ring_mod_mult = 1;
const volatile __u32 ring_mod_shift = 0;
/* 1: no CPU has a table of its own (conn_table = "shared"), so the shared
 * table is used without trying a per-CPU one first. */
const volatile __u8 shared_table_only = 0;
/* 1: every CPU has a table of its own, so `conn_cpus` need not be read. */
const volatile __u8 every_cpu_own_table = 0;
/* Sets in each per-CPU connection table and in the shared one, and the
 * secret keys of conn_hash (katran-core's conn_hash.rs draws them). */
const volatile __u32 conn_nsets = 1;
const volatile __u32 conn_shared_nsets = 1;
const volatile __u64 conn_keys[10];
/* Entries per VIP in `vip_real_stats` (max_reals + 1); 0: not counted, and
 * the verifier drops the code that would. */
const volatile __u32 vip_real_slots = 0;
const volatile struct lb_abi lb_abi_types;

#define DEFAULT_TTL 64
#define NO_VERDICT -1 /* keep processing */

/* Everything later stages need to know about one packet. */
struct pkt {
	struct flow_key flow; /* as hashed and as stored in connection tables */
	__u16 orig_sport;     /* source port before hashing flags changed it */
	__u16 ip_bytes;       /* IPv4 total length, or IPv6 payload length */
	__u32 real;           /* chosen real index; 0 = none yet */
	__u8 tos;
	__u8 v6;                 /* the (outer) packet is IPv6 */
	__u8 icmp;               /* the flow was taken from a quoted ICMP error */
	__u8 tcp_flags;          /* byte 13 of the TCP header, 0 for UDP */
	__u16 l4_off;            /* frame offset of the (quoted) transport header */
	__u16 ip_end;            /* frame offset where the (outer) IP packet ends */
	__u8 reject;             /* enum lb_stat: not forwardable (options, fragment) */
	__u32 dst_mix;           /* vip_addr_mix(flow.dst), kept by the front check (or 0) */
	struct lb_counters *cnt; /* this CPU's counters, looked up once per packet */
	struct lb_gen *lg;       /* the generation, kept by the front check (or NULL) */
};

#define TCPF_RST_BIT 0x04
#define TCPF_SYN_BIT 0x02

/* This CPU's counters; NULL only if the map were empty. */
INLINE struct lb_counters *counters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&stats, &zero);
}

/* Counts on the forwarding path, through the row the packet looked up. */
INLINE void bump(const struct pkt *p, __u32 stat)
{
	if (stat < STAT__COUNT)
		p->cnt->v[stat] += 1;
}

INLINE void count_traffic(void *map, __u32 idx, __u16 bytes)
{
	struct traffic_counter *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* An XDP action that carries the counter it is counted under, above the
 * action's byte: the entry point counts it once, through the row it looked
 * up, so a drop or reply deep in the code costs a constant rather than a
 * map lookup of its own. */
INLINE int counted(__u32 action, __u32 stat)
{
	return (int)((stat << 8) | action);
}

INLINE int drop(__u32 reason)
{
	return counted(XDP_DROP, reason);
}

#endif /* LB_COMMON_H */
