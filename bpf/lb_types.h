/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every type the dataplane shares with user space, defined once.
 *
 * Rust never keeps a hand-written copy of these: it uses the types that
 * libbpf-cargo generates from this file's BTF and asserts their sizes.
 * All multi-byte addresses and ports are in network byte order.
 */
#ifndef LB_TYPES_H
#define LB_TYPES_H

#include <linux/types.h>

/* ---- VIP table ---------------------------------------------------------- */

/* The `scope` byte of address keys: which configuration generation the
 * entry belongs to (bit 0) and whether the address is IPv6. The dataplane
 * only looks up keys of the active generation, so user space can write a
 * whole new generation beside the live one and flip once; the family bit
 * keeps the IPv4 VIP 32.1.13.184 apart from the IPv6 VIP 2001:db8::, whose
 * address words are otherwise the same. */
enum key_scope {
	SCOPE_GEN = 1 << 0, /* the generation: 0 or 1 */
	SCOPE_V6 = 1 << 1,  /* an IPv6 address */
};

/* Key of the `vips` hash. */
struct vip_key {
	__be32 addr[4]; /* IPv4 in addr[0], the rest zero */
	__be16 port;    /* 0: every port of the address ("any port" VIP) */
	__u8 proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 scope;     /* enum key_scope */
};

/* VIP flags. Each has its own bit; none share values. */
enum vip_flag {
	VIP_NO_SRC_PORT = 1 << 0,        /* hash without the source port */
	VIP_NO_CONN_TABLE = 1 << 1,      /* never look up or insert flows */
	VIP_QUIC = 1 << 2,               /* route by QUIC connection id */
	VIP_DPORT_HASH = 1 << 3,         /* hash on the destination port alone */
	VIP_UDP_FLOW_MIGRATION = 1 << 4, /* rehash UDP flows of reals marked down */
};

struct vip_meta {
	__u32 flags;   /* enum vip_flag */
	__u32 vip_num; /* stable per VIP across generations: index of its stats */
	__u32 ring_id; /* which ring in `rings` this generation uses */
	__u32 _pad;
};

/* Key of `vip_addrs`: which addresses belong to some VIP (ICMP echo). */
struct addr_key {
	__be32 addr[4];
	__u8 scope; /* enum key_scope */
	__u8 _pad[3];
};

/* A slot of `vip_cache`: a copy of one `vips` entry, or all zeros (an
 * all-zero key never matches: no packet has protocol 0). */
struct vip_slot {
	struct vip_key key;
	struct vip_meta meta;
};

/* `vip_cache`: 2^VIP_CACHE_LOG2 slots, a `vips` entry in slot
 * vip_cache_slot(key) when that slot was free. A packet whose key matches its
 * slot takes the meta from there (an inlined array lookup); any other falls
 * back to the `vips` hash, which stays the truth. User space writes a slot
 * only for keys of the inactive generation (whose keys no packet looks for)
 * and never takes a slot from a key of the active one. */
enum vip_cache_layout {
	VIP_CACHE_LOG2 = 12,
	VIP_CACHE_SLOTS = 1 << VIP_CACHE_LOG2,
};

/* The VIP address filter, in two levels. `vip_filter` is a bitmap of
 * 2^VIP_FILTER_LOG2 bits in u64 words, bit vip_filter_bit(vip_addr_mix(addr)) set for
 * every address of `vip_addrs` (both generations). Its front is a bitmap of
 * 2^VIP_FRONT_LOG2 bits in `struct lb_gen`, the cache line every packet
 * reads for the generation anyway: front bit i is set when any bit of the
 * i-th block of the filter is (the bit's top VIP_FRONT_LOG2 bits name its
 * block). A clear front bit proves a packet is for no VIP, so most traffic
 * that is not ours passes after one line is read, before its transport
 * header is; a packet found in `vip_cache` needs nothing more; any other
 * asks `vip_filter` before the hash lookups. A set bit only means "look it
 * up": stale bits cost time, never correctness. */
enum vip_filter_layout {
	VIP_FILTER_LOG2 = 16,
	VIP_FILTER_WORDS = (1 << VIP_FILTER_LOG2) / 64,
	VIP_FILTER_MULT = 0x9e3779b1, /* vip_addr_mix: golden-ratio multiplier */
	VIP_FRONT_LOG2 = 8,
	VIP_FRONT_WORDS = (1 << VIP_FRONT_LOG2) / 64,
};

/* `lb_gen`'s one value: what every packet reads first, in one cache line
 * (the map is memory-mappable, so its value starts a page). */
struct lb_gen {
	__u32 gen; /* the active configuration generation, 0 or 1 */
	__u32 _pad;
	__u64 vip_front[VIP_FRONT_WORDS]; /* see enum vip_filter_layout */
};

/* ---- reals -------------------------------------------------------------- */

/* Everything but REAL_V6 is per generation, so a real's state changes for
 * packets only when the generation flips: bit `REAL_IN_GEN0 << gen` says the
 * generation names the real (a connection-table entry naming a real its
 * generation does not name is stale), `REAL_DOWN_GEN0 << gen` that UDP flow
 * migration moves flows away from it in that generation. */
enum real_flag {
	REAL_V6 = 1 << 0,
	REAL_IN_GEN0 = 1 << 1,
	REAL_IN_GEN1 = 1 << 2,
	REAL_DOWN_GEN0 = 1 << 3,
	REAL_DOWN_GEN1 = 1 << 4,
};

/* Index 0 of `reals` is never used: 0 means "no real". */
struct real_def {
	__be32 addr[4];
	__u8 flags; /* enum real_flag */
	__u8 _pad[3];
};

/* ---- control (per generation) ------------------------------------------- */

enum lb_feature {
	FEAT_GUE = 1 << 0,           /* GUE (UDP) encapsulation instead of IP-in-IP */
	FEAT_TCP_SERVER_ID = 1 << 1, /* route by TCP option carrying a server id */
};

struct lb_ctl {
	__u8 gw_mac[6];          /* Ethernet destination of every forwarded frame */
	__be16 gue_port;         /* GUE destination port */
	__u32 features;          /* enum lb_feature */
	__be32 src_v4_prefix;    /* IP-in-IP outer source: first two bytes used */
	__be32 src_v6_prefix[4]; /* IP-in-IP outer source: first twelve bytes used */
	__be32 gue_src_v4;       /* GUE outer source addresses */
	__be32 gue_src_v6[4];
	__u32 max_conn_rate; /* new flows per second per CPU before inserts stop; 0: no limit */
	__u32 udp_timeout_s; /* a UDP flow entry older than this is ignored */
	__u8 tcp_sid_kind;   /* TCP option kind carrying the server id */
	__u8 ring_kind;      /* not read here: lets user space read the configuration back */
	__u16 max_frame_len; /* longer frames to a VIP are dropped; 0: no limit */
	__u32 _pad2;
};

/* One entry per real of a VIP's ring, in file order: what user space needs
 * to read the configuration back (weights cannot be recovered from a ring). */
struct backend_key {
	__u32 ring_id;
	__u32 pos;
};

enum backend_flag {
	/* drained by a failing health check: the ring was built with weight 0,
	 * `weight` keeps the file's value */
	BACKEND_HEALTH_DOWN = 1 << 0,
};

struct backend {
	__u32 real;
	__u32 weight;
	__u32 flags; /* enum backend_flag */
};

/* Key of `server_ids`: one mapping per generation. */
struct sid_key {
	__u32 id;
	__u32 gen;
};

/* Server ids below SID_DENSE_IDS (every QUIC id of Katran's version 1,
 * which carries 16 bits) live in the array `server_ids_dense` at index
 * id * 2 + generation, value the real index (0: none), so the common case
 * is an array lookup; larger ids (QUIC version 2, TCP) stay in the hash
 * `server_ids`. */
enum sid_layout {
	SID_DENSE_IDS = 65536,
};

/* ---- connection tables -------------------------------------------------- */

struct flow_key {
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 _pad[3];
};

enum conn_flag {
	/* the entry was used since its set last evicted one */
	CONN_REF = 1 << 0,
};

/* A connection-table entry. `real` and `tag` form one aligned 8-byte word,
 * always written and read in one access: a reader takes a real only from a
 * word whose tag is its own flow's hash and whose key is its own flow, so a
 * way another CPU is rewriting at that moment reads as a miss, never as
 * another flow's real (see enum conn_layout). */
struct conn_entry {
	__u32 real;  /* index into `reals`; 0: a free way */
	__u32 tag;   /* conn_hash of the flow */
	__u32 atime; /* coarse clock >> CONN_CLOCK_SHIFT, refreshed for UDP */
	__u32 flags; /* enum conn_flag */
} __attribute__((aligned(8)));
/* 8-byte aligned, or the compiler splits each access to the word in two
 * 4-byte ones (seen in the program the verifier loads), and a reader could
 * pair one write's real with another's tag. */
_Static_assert(_Alignof(struct conn_entry) == 8, "conn_entry's word must be one access");

/*
 * The connection tables are set-associative arrays: a flow lives in set
 * (conn_hash(flow) * sets) >> 32, in any of the set's CONN_WAYS ways. Each
 * CPU marked in `conn_cpus` has its own table (its stretch of `conn_sets`,
 * which holds one table per possible CPU); other CPUs, and every CPU with
 * conn_table = "shared", share one (`conn_shared`, a plain array of the
 * same sets). Inserting into a full set evicts a way not used since the
 * set last evicted one (else way 0), counts STAT_CONN_EVICTED and marks
 * every way of the set unused again; an expired UDP entry counts as free. A table of N entries holds
 * (N / CONN_WAYS) * CONN_WAYS flows.
 *
 * Writing a way: clear its word, write the key and the rest, then write the
 * word. In the shared table two CPUs may insert into one way at once; the
 * way then holds at most one of the two flows (the other's next packet
 * inserts it again), and no reader takes a real from a half-written way.
 */
enum conn_layout {
	CONN_WAYS = 8,
	CONN_CLOCK_SHIFT = 20, /* entry ages count units of 2^20 ns (about 1 ms) */
};

struct conn_way {
	struct conn_entry entry;
	struct flow_key key;
};

struct conn_set {
	struct conn_way way[CONN_WAYS];
};

/* What user space needs to place a flow in its set (the program itself
 * reads the same values from rodata): the single value of `conn_meta`. The
 * shared table's set count is its number of entries. */
struct conn_meta {
	__u32 seed;  /* conn_hash's seed */
	__u32 nsets; /* sets per per-CPU table */
};

/* Per-CPU state of the new-connection rate limit, and of the clock the
 * connection tables read (see conn_clock in lb_conn.h). */
struct rate_state {
	__u64 window_start;
	__u64 count;
	__u64 clock_jiffies; /* jiffies when clock_ns was read */
	__u64 clock_ns;      /* the coarse monotonic clock, read at clock_jiffies */
};

/* ---- statistics --------------------------------------------------------- */

struct traffic_counter {
	__u64 packets;
	__u64 bytes;
};

/* The map in `prev_ring` slot 0: a header, then one ring of `ring_size`
 * slots per VIP, indexed by `vip_num` (stable across generations, unlike
 * `ring_id`), each slot a real index of this dataplane. */
enum prev_ring_layout {
	PREV_RING_SIZE = 0,   /* slots per ring */
	PREV_RING_UNTIL = 1,  /* ignored once the clock, in units of 2^30 ns, passes this */
	PREV_RING_HEADER = 2, /* the first ring starts here */
	PREV_RING_CLOCK_SHIFT = 30,
};

/* Global counters: `struct lb_counters` is indexed by these names, never by
 * arithmetic. */
enum lb_stat {
	STAT_XDP_PASS,
	STAT_XDP_TX,
	STAT_XDP_DROP,
	STAT_CONN_HIT,             /* flow found in the connection table */
	STAT_CONN_MISS_TCP_SYN,    /* new TCP flow */
	STAT_CONN_MISS_TCP_NONSYN, /* TCP flow not in the table (eviction, restart) */
	STAT_CONN_MISS_UDP,
	STAT_FALLBACK_TABLE,    /* a CPU without a per-CPU table used the shared one
				   * (never counted when all CPUs share it) */
	STAT_CONN_RATE_LIMITED, /* insert skipped: over the new-flow rate */
	STAT_ICMP_ECHO_REPLY,
	STAT_ICMP_TOO_BIG_V4, /* "fragmentation needed" forwarded to a real */
	STAT_ICMP_TOO_BIG_V6, /* "packet too big" forwarded to a real */
	STAT_QUIC_CID_ROUTED,
	STAT_QUIC_CID_UNKNOWN, /* server id with no mapping: ring used */
	STAT_QUIC_CH_ROUTED,   /* no usable connection id: ring used */
	STAT_TCP_SID_ROUTED,
	STAT_TCP_SID_MISS,
	STAT_UDP_FLOW_MIGRATED,
	STAT_DROP_MALFORMED, /* truncated or inconsistent headers */
	STAT_DROP_IPV4_OPTIONS,
	STAT_DROP_FRAGMENT,
	STAT_DROP_NO_REAL, /* VIP with no reals, or a bad real index */
	STAT_DROP_TOO_BIG, /* frame above the MTU the encapsulation allows */
	STAT_DROP_ENCAP,   /* could not grow the frame */
	STAT_DROP_NO_CTL,
	STAT_CONN_EVICTED, /* a per-CPU set was full: its least recent way was replaced */
	STAT_PREV_RING,    /* during a replacement: a flow the table did not know
				   * went where the replaced dataplane sends it */
	STAT__COUNT,
};

/* Every global counter of one CPU: the single value of the per-CPU `stats`
 * array, so a packet finds all its counters with one lookup. */
struct lb_counters {
	__u64 v[STAT__COUNT];
};

/*
 * BTF only describes types that a global names by value. This read-only,
 * never-read variable names every shared type, so the object's BTF carries
 * full definitions: libbpf needs them for map keys and values, and
 * libbpf-cargo turns them into the Rust types user space uses.
 */
struct lb_abi {
	struct lb_gen lb_gen;
	struct vip_key vip_key;
	struct vip_meta vip_meta;
	struct vip_slot vip_slot;
	struct addr_key addr_key;
	struct real_def real_def;
	struct backend_key backend_key;
	struct backend backend;
	struct sid_key sid_key;
	struct lb_ctl ctl;
	struct flow_key flow_key;
	struct conn_entry conn_entry;
	struct conn_way conn_way;
	struct conn_set conn_set;
	struct conn_meta conn_meta;
	struct rate_state rate_state;
	struct traffic_counter traffic_counter;
	struct lb_counters counters;
	enum lb_stat stat;
	enum vip_flag vip_flag;
	enum real_flag real_flag;
	enum key_scope key_scope;
	enum backend_flag backend_flag;
	enum lb_feature feature;
	enum sid_layout sid_layout;
	enum vip_filter_layout vip_filter_layout;
	enum vip_cache_layout vip_cache_layout;
	enum conn_layout conn_layout;
	enum conn_flag conn_flag;
	enum prev_ring_layout prev_ring_layout;
};

#endif /* LB_TYPES_H */
