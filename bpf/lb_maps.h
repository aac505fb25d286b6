/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The balancer's maps. Sizes given here are placeholders: the loader sets
 * the real ones (from the configuration) before the object is loaded.
 */
#ifndef LB_MAPS_H
#define LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_types.h"

/* The active configuration generation, flipped by one map update once the
 * other generation is completely written, beside the front of the VIP
 * filter (see struct lb_gen). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct lb_gen);
} lb_gen SEC(".maps");

/* Which build of this program runs: a hash of the compiled object, written
 * by the loader and never read here. User space compares it with the
 * program it would load, to know when the dataplane must be replaced. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lb_stamp SEC(".maps");

/* Control values, one per generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct lb_ctl);
} lb_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512); /* 2 generations x max VIPs */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct addr_key);
	__type(value, __u32);
} vip_addrs SEC(".maps");

/* See enum vip_cache_layout. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIP_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct vip_slot);
} vip_cache SEC(".maps");

/* See enum vip_filter_layout. Written by user space with every change of
 * `vip_addrs`. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIP_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} vip_filter SEC(".maps");

/* Maglev rings, `ring_size` slots each, two per VIP (one per generation
 * half); a slot holds an index into `reals`. Memory-mappable so user space
 * reads and writes rings without a system call per slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct real_def);
} reals SEC(".maps");

/* The running dataplane's rings while a replacement switches interfaces
 * (see enum prev_ring_layout): created by user space beside the new
 * program, placed in slot 0 for the few milliseconds of the switch, and
 * removed after it. Empty the rest of the time. */
struct prev_ring_slots {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct prev_ring_slots);
} prev_ring SEC(".maps");

/* Not read by the dataplane: each ring's reals and weights, for readback. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct backend_key);
	__type(value, struct backend);
} backends SEC(".maps");

/* Server id (QUIC connection id, TCP option) below SID_DENSE_IDS, times two
 * plus the generation -> real index (0: none). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * SID_DENSE_IDS);
	__type(key, __u32);
	__type(value, __u32);
} server_ids_dense SEC(".maps");

/* Larger server ids and generation -> real index. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sid_key);
	__type(value, __u32);
} server_ids SEC(".maps");

/* Which CPUs have a connection table of their own (1) in `conn_sets`. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* number of possible CPUs */
	__type(key, __u32);
	__type(value, __u32);
} conn_cpus SEC(".maps");

/* A plain array rather than a per-CPU one, whose lookup first reads the
 * element's pointer from a table of its own (for a new flow, a random set,
 * one more cold line and page), memory-mappable so user space reads and
 * writes sets without a system call each: CPU c's set i at
 * c * conn_nsets + i of the per-CPU connection tables (see enum
 * conn_layout)... */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* possible CPUs x conn_nsets */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct conn_set);
} conn_sets SEC(".maps");

/* Written once by the loader, never read by the program. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct conn_meta);
} conn_meta SEC(".maps");

/* ...and the table CPUs without one share (see enum conn_layout), also
 * memory-mappable: user space writes a way as the program does. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* sets */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct conn_set);
} conn_shared SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate_state);
} conn_rate SEC(".maps");

/* One row of global counters per CPU (key 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_counters);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1); /* max VIPs */
	__type(key, __u32);
	__type(value, struct traffic_counter);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1); /* max reals */
	__type(key, __u32);
	__type(value, struct traffic_counter);
} real_stats SEC(".maps");

/* Traffic per (VIP, real), at vip_num * vip_real_slots + real index, when
 * the file asks for it (vip_real_counters); otherwise one unused entry. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct traffic_counter);
} vip_real_stats SEC(".maps");

#endif /* LB_MAPS_H */
