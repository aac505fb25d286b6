/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The connection tables: which real each flow went to, so it stays there
 * when the ring changes. Both kinds, a CPU's own and the shared one, are
 * set-associative arrays of the same sets (see enum conn_layout in
 * lb_types.h): a flow is found with an inlined array lookup and a few
 * compares, and inserted without allocating. Inserts of new flows are
 * limited to `max_conn_rate` per second per CPU (`may_store`).
 */
#ifndef LB_CONN_H
#define LB_CONN_H

#include "lb_hash.h"

#define NSEC_PER_SEC 1000000000ull

/* The clock of the new-flow rate and of entry ages: CLOCK_MONOTONIC at tick
 * resolution (a few ms), plenty for one-second windows and UDP timeouts.
 * The coarse clock moves once a tick, when jiffies does, so this CPU keeps
 * its last reading with the jiffies it was taken at: reading jiffies is one
 * load (the verifier inlines it), the clock a helper call. */
INLINE __u64 clock_of(struct rate_state *r)
{
	__u64 j = bpf_jiffies64();

	if (r->clock_jiffies != j) {
		r->clock_jiffies = j;
		r->clock_ns = bpf_ktime_get_coarse_ns();
	}
	return r->clock_ns;
}

INLINE __u64 conn_clock(void)
{
	__u32 zero = 0;
	struct rate_state *r = bpf_map_lookup_elem(&conn_rate, &zero);

	return r ? clock_of(r) : bpf_ktime_get_coarse_ns();
}

/* The same clock in the units of entry ages (see enum conn_layout). */
INLINE __u32 conn_age_clock(void)
{
	return conn_clock() >> CONN_CLOCK_SHIFT;
}

/* Where a flow's entry lives: `set` of this CPU's table or of the shared
 * one (NULL only if a map lookup failed), and the flow's tag. Only
 * meaningful when the VIP uses a table at all. */
struct conn_loc {
	struct conn_set *set;
	__u32 tag;
};

/* Whether this CPU has a table of its own: every CPU has, or none has, or
 * `conn_cpus` says (both extremes are known at load time). */
INLINE int own_table(void)
{
	__u32 cpu, *own;

	if (every_cpu_own_table)
		return 1;
	cpu = bpf_get_smp_processor_id();
	own = bpf_map_lookup_elem(&conn_cpus, &cpu);
	return own && *own;
}

/* The set of the flow as it now stands in p->flow. A CPU left out of
 * `forwarding_cpus` uses the shared table and counts it; with the shared
 * table only nothing is tried or counted. */
INLINE struct conn_loc conn_locate(const struct pkt *p)
{
	struct conn_loc loc = { .tag = conn_hash(&p->flow, p->v6) };
	__u32 idx;

	if (!shared_table_only) {
		if (own_table()) {
			/* this CPU's table, then the flow's set in it:
			 * cpu * conn_nsets + (tag * conn_nsets >> 32), in one
			 * multiply */
			__u64 at = ((__u64)bpf_get_smp_processor_id() << 32) | loc.tag;

			idx = (at * conn_nsets) >> 32;
			loc.set = bpf_map_lookup_elem(&conn_sets, &idx);
			/* keeps the compiler from merging the two lookups into
			 * one call with the map in a register, which the
			 * verifier could not inline */
			asm volatile("" ::: "memory");
			return loc;
		}
		bump(p, STAT_FALLBACK_TABLE);
	}
	idx = ((__u64)loc.tag * conn_shared_nsets) >> 32;
	loc.set = bpf_map_lookup_elem(&conn_shared, &idx);
	return loc;
}

/* Compared in 8-byte words, half the loads and branches of 4-byte ones:
 * both keys sit at 8-byte aligned offsets (the start of `struct pkt`, and
 * after the 8-byte aligned `conn_entry` in a way), and the padding is
 * zero in both (the packet's key is zeroed whole, and stored whole). */
INLINE int same_flow(const struct flow_key *a, const struct flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	_Static_assert(sizeof(*a) % 8 == 0, "flow keys compare in 8-byte words");
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*a) / 8); i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

/* A way's {real, tag} word, in one load. */
INLINE struct conn_entry way_word(const struct conn_way *w)
{
	struct conn_entry e = {};
	__u64 v = *(volatile const __u64 *)&w->entry;

	__builtin_memcpy(&e, &v, sizeof(v));
	return e;
}

/* Writes a way's {real, tag} word in one store. */
INLINE void set_way_word(struct conn_way *w, __u32 real, __u32 tag)
{
	struct conn_entry e = { .real = real, .tag = tag };
	__u64 v;

	__builtin_memcpy(&v, &e, sizeof(v));
	*(volatile __u64 *)&w->entry = v;
}

/* The way of `set` holding the flow, or CONN_WAYS; its real in `*real`,
 * taken from the same word whose tag matched. */
INLINE __u32 way_of(struct conn_set *set, const struct pkt *p, __u32 tag, __u32 *real)
{
#pragma unroll
	for (__u32 i = 0; i < CONN_WAYS; i++) {
		struct conn_entry w = way_word(&set->way[i]);

		if (w.real && w.tag == tag && same_flow(&set->way[i].key, &p->flow)) {
			*real = w.real;
			return i;
		}
	}
	return CONN_WAYS;
}

/* Whether the UDP entry `e` is at or past udp_timeout_s at `now` (age
 * units): a coarse clock may not move between two packets, and a timeout
 * of 0 must still expire them. */
INLINE int udp_expired(const struct conn_entry *e, __u32 now, const struct lb_ctl *ctl)
{
	__u64 timeout = ((__u64)ctl->udp_timeout_s * NSEC_PER_SEC) >> CONN_CLOCK_SHIFT;

	return (__u32)(now - e->atime) >= timeout;
}

/* Real of the flow's entry, or 0. A UDP entry older than udp_timeout_s is
 * ignored; a UDP hit refreshes its time. */
INLINE __u32 conn_lookup(struct conn_loc loc, const struct pkt *p, const struct lb_ctl *ctl)
{
	struct conn_entry *e;
	__u32 i, real = 0, now;

	if (!loc.set)
		return 0;
	i = way_of(loc.set, p, loc.tag, &real);
	if (i >= CONN_WAYS)
		return 0;
	e = &loc.set->way[i].entry;
	/* written only when it changes: a shared table's line stays clean */
	if (!(e->flags & CONN_REF))
		e->flags |= CONN_REF;
	if (p->flow.proto == IPPROTO_UDP) {
		now = conn_age_clock();
		if (udp_expired(e, now, ctl))
			return 0;
		if (e->atime != now)
			e->atime = now;
	}
	return real;
}

/* Writes the flow's entry into its set: its own way, else a free (or
 * expired UDP) way, else it evicts (see enum conn_layout). */
INLINE void set_store(struct conn_loc loc, const struct pkt *p, __u32 real,
                      const struct lb_ctl *ctl)
{
	struct conn_set *set = loc.set;
	__u32 now = conn_age_clock(), found = 0;
	__u32 v = way_of(set, p, loc.tag, &found), free = CONN_WAYS, unused = CONN_WAYS;
	struct conn_way *w;

	if (v >= CONN_WAYS) {
#pragma unroll
		for (__u32 i = 0; i < CONN_WAYS; i++) {
			w = &set->way[i];
			if (free == CONN_WAYS &&
			    (!w->entry.real ||
			     (w->key.proto == IPPROTO_UDP && udp_expired(&w->entry, now, ctl))))
				free = i;
			if (unused == CONN_WAYS && !(w->entry.flags & CONN_REF))
				unused = i;
		}
		v = free;
	}
	if (unlikely(v >= CONN_WAYS)) {
		v = unused < CONN_WAYS ? unused : 0;
		bump(p, STAT_CONN_EVICTED);
#pragma unroll
		for (__u32 i = 0; i < CONN_WAYS; i++)
			set->way[i].entry.flags &= ~CONN_REF;
	}
	w = &set->way[v & (CONN_WAYS - 1)];
	set_way_word(w, 0, 0);
	asm volatile("" ::: "memory");
	w->key = p->flow;
	w->entry.atime = now;
	w->entry.flags = 0;
	asm volatile("" ::: "memory");
	set_way_word(w, real, loc.tag);
}

/* Whether this CPU has seen more new flows this second than allowed. */
INLINE int over_conn_rate(const struct lb_ctl *ctl)
{
	__u32 zero = 0;
	struct rate_state *r;
	__u64 now;

	if (!ctl->max_conn_rate)
		return 0;
	r = bpf_map_lookup_elem(&conn_rate, &zero);
	if (!r)
		return 1;
	now = clock_of(r);
	if (now - r->window_start > NSEC_PER_SEC) {
		r->window_start = now;
		r->count = 1;
		return 0;
	}
	r->count += 1;
	return r->count > ctl->max_conn_rate;
}

/* Whether a new flow may be stored: counts it against this CPU's
 * new-flow rate, and counts it as limited when it is over. */
INLINE int may_store(const struct pkt *p, const struct lb_ctl *ctl)
{
	if (!over_conn_rate(ctl))
		return 1;
	bump(p, STAT_CONN_RATE_LIMITED);
	return 0;
}

/* Remembers a flow in the set `loc` found for it. */
INLINE void conn_store(struct conn_loc loc, const struct pkt *p, __u32 real,
                       const struct lb_ctl *ctl)
{
	if (loc.set)
		set_store(loc, p, real, ctl);
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
	__u32 found = 0;

	if (!loc.set)
		return;
	if (way_of(loc.set, p, loc.tag, &found) < CONN_WAYS && found == real)
		return;
	conn_store(loc, p, real, ctl);
}

#endif /* LB_CONN_H */
