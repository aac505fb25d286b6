/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Types the health-check forwarding program (healthcheck.bpf.c) shares with
 * user space, defined once. As for lb_types.h, Rust uses the types
 * libbpf-cargo generates from the object's BTF and asserts their sizes.
 * Addresses are in network byte order; everything else in host order.
 */
#ifndef HC_TYPES_H
#define HC_TYPES_H

#include <linux/types.h>

/* An enum, not a #define, so that it reaches the BTF (and Rust). */
enum hc_limit {
	HC_MAX_MAPPINGS = 4096, /* entries of `hc_reals` and `hc_real_stats` */
};

enum hc_real_flag {
	HC_REAL_V6 = 1 << 0, /* the real's address is IPv6: outer header IPv6 */
};

/* Value of `hc_reals`, keyed by the socket mark (__u32, never 0). */
struct hc_real {
	__be32 addr[4]; /* IPv4 in addr[0], the rest zero */
	__u32 stat_idx; /* slot in `hc_real_stats`, < HC_MAX_MAPPINGS */
	__u8 flags;     /* enum hc_real_flag */
	__u8 _pad[3];
};

enum hc_ctl_flag {
	HC_CTL_SRC_V4 = 1 << 0, /* src_v4 is set: IPv4 reals can be reached */
	HC_CTL_SRC_V6 = 1 << 1, /* src_v6 is set: IPv6 reals can be reached */
	HC_CTL_GW_MAC = 1 << 2, /* rewrite the Ethernet destination to gw_mac */
};

/* The one entry of `hc_ctl`. All zero (never written): marked packets are
 * dropped, since no outer source is known for either family. */
struct hc_ctl {
	__u8 gw_mac[6];
	__u16 _pad;
	__u32 flags;      /* enum hc_ctl_flag */
	__be32 src_v4;    /* outer source toward IPv4 reals */
	__be32 src_v6[4]; /* outer source toward IPv6 reals */
};

/* Per-mapping traffic, per CPU: frames as sent (after encapsulation). */
struct hc_counter {
	__u64 packets;
	__u64 bytes;
};

/* Global counters: `hc_stats` is indexed by these names. */
enum hc_stat {
	HC_STAT_ENCAP_V4,        /* encapsulated toward an IPv4 real */
	HC_STAT_ENCAP_V6,        /* encapsulated toward an IPv6 real */
	HC_STAT_PASS_NO_MAPPING, /* marked, but the mark maps to no real */
	HC_STAT_PASS_NOT_IP,     /* mapped mark on a frame that is not IP */
	HC_STAT_DROP_NO_SOURCE,  /* no outer source for the real's family */
	HC_STAT_DROP_TOO_BIG,    /* frame (or GSO segment) over the MTU once grown */
	HC_STAT_DROP_ENCAP,      /* the frame could not be grown or written */
	HC_STAT__COUNT,
};

/* Never read: names every shared type so the object's BTF (and from it the
 * generated Rust) carries full definitions. */
struct hc_abi {
	struct hc_real real;
	struct hc_ctl ctl;
	struct hc_counter counter;
	enum hc_stat stat;
	enum hc_real_flag real_flag;
	enum hc_ctl_flag ctl_flag;
	enum hc_limit limit;
};

#endif /* HC_TYPES_H */
