/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Choosing the real for a flow: server ids carried by the packet (QUIC
 * connection ids, a TCP option), the connection table (lb_conn.h), and the
 * Maglev ring.
 */
#ifndef LB_SELECT_H
#define LB_SELECT_H

#include "lb_conn.h"
#include "lb_hash.h"
#include "lb_parse.h"

#define QUIC_LONG_HEADER 0x80
#define QUIC_TYPE_MASK 0x30
#define QUIC_TYPE_HANDSHAKE 0x20 /* initial (0) and 0-RTT (1) carry a client-chosen id */
#define QUIC_MIN_CID_LEN 8
#define QUIC_LONG_MIN 14 /* flags, version, DCID length, 8 id bytes */

#define TCP_OPT_EOL 0
#define TCP_OPT_NOP 1
#define TCP_SID_OPT_LEN 6
#define TCP_MAX_OPT_STEPS 15

/* Offsets are below 256 by construction; the mask tells the verifier. */
INLINE __u32 l4_offset(const struct pkt *p)
{
	return p->l4_off & 0xff;
}

/* Server id from a QUIC destination connection id (Katran's id versions 1
 * and 2), or 0 when the packet carries none we can use. */
INLINE __u32 quic_server_id(void *data, void *data_end, const struct pkt *p)
{
	__u8 *q = data + l4_offset(p) + sizeof(struct udphdr);
	__u8 *cid;

	if ((void *)(q + 1) > data_end)
		return 0;
	if (q[0] & QUIC_LONG_HEADER) {
		if ((void *)(q + QUIC_LONG_MIN) > data_end)
			return 0;
		if ((q[0] & QUIC_TYPE_MASK) < QUIC_TYPE_HANDSHAKE)
			return 0;
		if (q[5] < QUIC_MIN_CID_LEN)
			return 0;
		cid = q + 6;
	} else {
		if ((void *)(q + 1 + QUIC_MIN_CID_LEN) > data_end)
			return 0;
		cid = q + 1;
	}
	switch (cid[0] >> 6) {
	case 1:
		return ((cid[0] & 0x3f) << 10) | (cid[1] << 2) | (cid[2] >> 6);
	case 2:
		return (cid[1] << 16) | (cid[2] << 8) | cid[3];
	default:
		return 0;
	}
}

/* Server id from the TCP option `kind` (length 6: kind, length, 4 bytes
 * read as the host reads them, as Katran does), or 0. */
INLINE __u32 tcp_server_id(void *data, void *data_end, const struct pkt *p, __u8 kind)
{
	struct tcphdr *th = data + l4_offset(p);
	__u32 opt_len, done = 0, id;
	__u8 *o;

	if ((void *)(th + 1) > data_end || th->doff < 5)
		return 0;
	opt_len = th->doff * 4 - sizeof(*th);
	if (opt_len < TCP_SID_OPT_LEN)
		return 0;
	for (int i = 0; i < TCP_MAX_OPT_STEPS; i++) {
		if (done >= opt_len || done > 40)
			return 0;
		o = (__u8 *)(th + 1) + done;
		if ((void *)(o + 2) > data_end)
			return 0;
		if (o[0] == TCP_OPT_EOL)
			return 0;
		if (o[0] == TCP_OPT_NOP) {
			done += 1;
			continue;
		}
		if (o[0] == kind) {
			if (o[1] != TCP_SID_OPT_LEN || (void *)(o + TCP_SID_OPT_LEN) > data_end)
				return 0;
			__builtin_memcpy(&id, o + 2, sizeof(id));
			return id;
		}
		if (o[1] < 2)
			return 0;
		done += o[1];
	}
	return 0;
}

/* Real index mapped to a server id in generation `gen`, or 0. */
INLINE __u32 server_id_real(__u32 id, __u32 gen)
{
	struct sid_key k = { .id = id, .gen = gen };
	__u32 *real;

	if (!id)
		return 0;
	if (id < SID_DENSE_IDS) {
		__u32 idx = id * 2 + gen;

		real = bpf_map_lookup_elem(&server_ids_dense, &idx);
		return real ? *real : 0;
	}
	real = bpf_map_lookup_elem(&server_ids, &k);
	return real ? *real : 0;
}

/* `hash % ring_size`: a multiply, shifts and a subtraction in place of a
 * division of tens of cycles, on every new flow (see ring_mod_mult). */
INLINE __u32 ring_slot(__u32 hash)
{
	__u32 t = ((__u64)ring_mod_mult * hash) >> 32;

	return hash - ((t + ((hash - t) >> 1)) >> ring_mod_shift) * ring_size;
}

/* The ring slot of this flow in the VIP's ring. */
INLINE __u32 ring_pick(const struct pkt *p, const struct vip_meta *vip)
{
	__u32 key = vip->ring_id * ring_size + ring_slot(flow_hash(&p->flow, p->v6));
	__u32 *real = bpf_map_lookup_elem(&rings, &key);

	return real ? *real : 0;
}

/* While a replacement switches interfaces: the real the replaced
 * dataplane's ring names for this flow (an index of this dataplane), or 0.
 * A flow the old program started in the last moments before the switch is
 * in neither connection table yet; this keeps it on its real when the ring
 * size changed. */
INLINE __u32 prev_ring_pick(const struct pkt *p, const struct vip_meta *vip)
{
	__u32 zero = 0, k = PREV_RING_SIZE, *size, *until, *real;
	void *slots = bpf_map_lookup_elem(&prev_ring, &zero);

	if (likely(!slots))
		return 0;
	size = bpf_map_lookup_elem(slots, &k);
	k = PREV_RING_UNTIL;
	until = bpf_map_lookup_elem(slots, &k);
	if (!size || !*size || !until || (__u32)(conn_clock() >> PREV_RING_CLOCK_SHIFT) > *until)
		return 0;
	k = PREV_RING_HEADER + vip->vip_num * *size + flow_hash(&p->flow, p->v6) % *size;
	real = bpf_map_lookup_elem(slots, &k);
	return real ? *real : 0;
}

#endif /* LB_SELECT_H */
