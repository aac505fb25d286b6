/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The connection tables: which real each flow went to, so it stays there
 * when the ring changes. A CPU with a table of its own uses a set of its
 * per-CPU set-associative array (`conn_sets`, see enum conn_layout in
 * lb_types.h): found with an inlined array lookup and a few compares, and
 * inserted into without allocating. Other CPUs, and every CPU with
 * conn_table = "shared", use the shared LRU hashes `conn_fallback4` (IPv4
 * flows, 16-byte keys) and `conn_fallback` (IPv6). Inserts of new
 * flows are limited to `max_conn_rate` per second per CPU.
 */
#ifndef LB_CONN_H
#define LB_CONN_H

#include "lb_hash.h"

#define NSEC_PER_SEC 1000000000ull

/* The clock of connection entries and the new-flow rate: CLOCK_MONOTONIC
 * at tick resolution (a few ms), plenty for seconds-long windows and UDP
 * timeouts, and cheaper to read than the precise clock. */
INLINE __u64 conn_clock(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* Where a flow's entry lives: `set` in this CPU's table, or (NULL) the
 * shared table. Only meaningful when the VIP uses a table at all. */
struct conn_loc {
	struct conn_set *set;
};

/* This CPU's table for the flow as it now stands in p->flow. A CPU left out
 * of `forwarding_cpus` uses the shared table and counts it; with the shared
 * table only (known at load time) nothing is tried or counted. */
INLINE struct conn_loc conn_locate(const struct pkt *p)
{
	struct conn_loc loc = {};
	__u32 cpu, idx, *own;

	if (shared_table_only)
		return loc;
	cpu = bpf_get_smp_processor_id();
	own = bpf_map_lookup_elem(&conn_cpus, &cpu);
	if (!own || !*own) {
		bump(p, STAT_FALLBACK_TABLE);
		return loc;
	}
	idx = ((__u64)conn_hash(&p->flow) * conn_nsets) >> 32;
	loc.set = bpf_map_lookup_elem(&conn_sets, &idx);
	return loc;
}

/* The shared table's IPv4 key of the flow. */
INLINE struct flow_key4 flow4(const struct pkt *p)
{
	struct flow_key4 k = {
		.src = p->flow.src[0],
		.dst = p->flow.dst[0],
		.sport = p->flow.sport,
		.dport = p->flow.dport,
		.proto = p->flow.proto,
	};

	return k;
}

/* The flow's entry in the shared table, or NULL. */
INLINE struct conn_entry *shared_lookup(const struct pkt *p)
{
	struct flow_key4 k;

	if (p->v6)
		return bpf_map_lookup_elem(&conn_fallback, &p->flow);
	k = flow4(p);
	return bpf_map_lookup_elem(&conn_fallback4, &k);
}

INLINE int same_flow(const struct flow_key *a, const struct flow_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*a) / 4); i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

INLINE int udp_expired(const struct conn_way *w, __u64 now, const struct lb_ctl *ctl)
{
	return w->key.proto == IPPROTO_UDP &&
	       now - w->entry.atime > (__u64)ctl->udp_timeout_s * NSEC_PER_SEC;
}

/* The way of `set` holding the flow, or CONN_WAYS. */
INLINE __u32 way_of(struct conn_set *set, const struct pkt *p)
{
#pragma unroll
	for (__u32 i = 0; i < CONN_WAYS; i++)
		if (set->way[i].entry.real && same_flow(&set->way[i].key, &p->flow))
			return i;
	return CONN_WAYS;
}

/* Real of the flow's entry, or 0. A UDP entry older than udp_timeout_s is
 * ignored; a UDP hit refreshes its time. */
INLINE __u32 conn_lookup(struct conn_loc loc, const struct pkt *p, const struct lb_ctl *ctl)
{
	struct conn_entry *e;
	__u32 i;
	__u64 now;

	if (loc.set) {
		i = way_of(loc.set, p);
		if (i >= CONN_WAYS)
			return 0;
		e = &loc.set->way[i].entry;
		if (!(e->flags & CONN_REF))
			e->flags |= CONN_REF;
	} else {
		e = shared_lookup(p);
		if (!e)
			return 0;
	}
	if (p->flow.proto == IPPROTO_UDP) {
		now = conn_clock();
		/* at or past the timeout: a coarse clock may not move between
		 * two packets, and a timeout of 0 must still expire them */
		if (now - e->atime >= (__u64)ctl->udp_timeout_s * NSEC_PER_SEC)
			return 0;
		e->atime = now;
	}
	return e->real;
}

/* Writes the flow's entry into its set: its own way, else a free (or
 * expired UDP) way, else it evicts (see enum conn_layout). */
INLINE void set_store(struct conn_set *set, const struct pkt *p, __u32 real, __u64 now,
                      const struct lb_ctl *ctl)
{
	__u32 v = way_of(set, p), free = CONN_WAYS, unused = CONN_WAYS;
	struct conn_way *w;

	if (v >= CONN_WAYS) {
#pragma unroll
		for (__u32 i = 0; i < CONN_WAYS; i++) {
			w = &set->way[i];
			if (free == CONN_WAYS && (!w->entry.real || udp_expired(w, now, ctl)))
				free = i;
			if (unused == CONN_WAYS && !(w->entry.flags & CONN_REF))
				unused = i;
		}
		v = free;
	}
	if (v >= CONN_WAYS) {
		v = unused < CONN_WAYS ? unused : 0;
		bump(p, STAT_CONN_EVICTED);
#pragma unroll
		for (__u32 i = 0; i < CONN_WAYS; i++)
			set->way[i].entry.flags &= ~CONN_REF;
	}
	w = &set->way[v & (CONN_WAYS - 1)];
	w->key = p->flow;
	w->entry.real = real;
	w->entry.flags = 0;
	w->entry.atime = now;
}

INLINE void shared_update(const struct pkt *p, const struct conn_entry *e)
{
	struct flow_key4 k;

	if (p->v6) {
		bpf_map_update_elem(&conn_fallback, &p->flow, e, BPF_ANY);
		return;
	}
	k = flow4(p);
	bpf_map_update_elem(&conn_fallback4, &k, e, BPF_ANY);
}

INLINE void conn_write(struct conn_loc loc, const struct pkt *p, __u32 real, __u64 now,
                       const struct lb_ctl *ctl)
{
	struct conn_entry e = { .real = real, .atime = now };

	if (loc.set)
		set_store(loc.set, p, real, now, ctl);
	else
		shared_update(p, &e);
}

/* Whether this CPU has seen more new flows this second than allowed. */
INLINE int over_conn_rate(const struct lb_ctl *ctl, __u64 now)
{
	__u32 zero = 0;
	struct rate_state *r;

	if (!ctl->max_conn_rate)
		return 0;
	r = bpf_map_lookup_elem(&conn_rate, &zero);
	if (!r)
		return 1;
	if (now - r->window_start > NSEC_PER_SEC) {
		r->window_start = now;
		r->count = 1;
		return 0;
	}
	r->count += 1;
	return r->count > ctl->max_conn_rate;
}

/* Remembers a new flow, unless this CPU is over the new-flow rate. */
INLINE void conn_store(struct conn_loc loc, const struct pkt *p, __u32 real,
                       const struct lb_ctl *ctl)
{
	__u64 now = conn_clock();

	if (over_conn_rate(ctl, now)) {
		bump(p, STAT_CONN_RATE_LIMITED);
		return;
	}
	conn_write(loc, p, real, now, ctl);
}

/*
 * Remembers that a flow routed by a server id goes to `real`: the packet
 * belongs to an established connection, so this is a lookup, and a write
 * only when the entry is missing or names another real. It never counts
 * against the new-flow rate (busy QUIC traffic would otherwise stop new TCP
 * and UDP flows from being stored) and reads no clock unless it writes; an
 * entry that already names the real is left as it is, its age included.
 */
INLINE void conn_note(struct conn_loc loc, const struct pkt *p, __u32 real,
                      const struct lb_ctl *ctl)
{
	struct conn_entry *e;
	__u32 i;

	if (loc.set) {
		i = way_of(loc.set, p);
		if (i < CONN_WAYS && loc.set->way[i].entry.real == real)
			return;
	} else {
		e = shared_lookup(p);
		if (e && e->real == real)
			return;
	}
	conn_write(loc, p, real, conn_clock(), ctl);
}

#endif /* LB_CONN_H */
