//! The dataplane's types as Rust sees them (generated from the BPF object's
//! BTF by libbpf-cargo, never hand-copied), their sizes checked against the
//! C layout, and conversions to and from the model's types.

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use super::skel::types;

use crate::model::{Encap, Globals, MacAddr, Proto, RingKind, VipFlags, VipKey};
use types::{backend_flag, key_scope, lb_ctl, lb_feature, real_def, real_flag, vip_flag};

use crate::store::RealRecord;

// The C side defines these sizes (bpf/lb_types.h); a mismatch fails the build.
const _: () = assert!(size_of::<types::vip_key>() == 20);
const _: () = assert!(size_of::<types::vip_meta>() == 16);
const _: () = assert!(size_of::<types::vip_slot>() == 36);
const _: () = assert!(size_of::<types::addr_key>() == 20);
const _: () = assert!(size_of::<types::real_def>() == 20);
const _: () = assert!(size_of::<types::backend_key>() == 8);
const _: () = assert!(size_of::<types::backend>() == 12);
const _: () = assert!(size_of::<types::sid_key>() == 8);
const _: () = assert!(size_of::<types::lb_ctl>() == 68);
const _: () = assert!(
    size_of::<types::lb_gen>() == 8 + 8 * types::vip_filter_layout::VIP_FRONT_WORDS.0 as usize
);
const _: () = assert!(size_of::<types::flow_key>() == 40);
const _: () = assert!(size_of::<types::conn_entry>() == 16);
const _: () = assert!(size_of::<types::conn_way>() == 56);
const _: () =
    assert!(size_of::<types::conn_set>() == 56 * types::conn_layout::CONN_WAYS.0 as usize);
// plan::host rounds per-CPU table sizes to whole sets without this layer.
const _: () = assert!(crate::plan::host::CONN_WAYS == types::conn_layout::CONN_WAYS.0);
const _: () = assert!(size_of::<types::traffic_counter>() == 16);
const _: () =
    assert!(size_of::<types::lb_counters>() == 8 * types::lb_stat::STAT__COUNT.0 as usize);

/// Marks the generated plain-data types: `repr(C)`, `Copy`, every byte
/// part of a field (padding is explicit in the C definitions).
///
/// # Safety
/// Only for types whose every bit pattern is valid and that have no
/// implicit padding.
pub unsafe trait Pod: Copy + Default {}

unsafe impl Pod for types::vip_key {}
unsafe impl Pod for types::vip_meta {}
unsafe impl Pod for types::vip_slot {}
unsafe impl Pod for types::addr_key {}
unsafe impl Pod for types::real_def {}
unsafe impl Pod for types::backend_key {}
unsafe impl Pod for types::backend {}
unsafe impl Pod for types::sid_key {}
unsafe impl Pod for types::lb_ctl {}
unsafe impl Pod for types::lb_gen {}
unsafe impl Pod for types::flow_key {}
unsafe impl Pod for types::conn_entry {}
unsafe impl Pod for types::conn_way {}
unsafe impl Pod for types::conn_set {}
unsafe impl Pod for types::conn_meta {}
unsafe impl Pod for types::traffic_counter {}
unsafe impl Pod for types::lb_counters {}
unsafe impl Pod for u32 {}
unsafe impl Pod for u64 {}

pub fn bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod: plain bytes without padding.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Reads a `T` from the start of `b`; `None` when `b` is too short.
pub fn from_bytes<T: Pod>(b: &[u8]) -> Option<T> {
    if b.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is Pod so any bytes are a valid T.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

/// The address's bit in the dataplane's VIP filter (`vip_filter_bit` in
/// bpf/lb_hash.h): the words folded by xor, times a constant, top bits.
pub fn vip_filter_bit(addr: IpAddr) -> u32 {
    use types::vip_filter_layout as L;
    let w = addr_words(addr);
    let x = w[0] ^ w[1] ^ w[2] ^ w[3];
    x.wrapping_mul(L::VIP_FILTER_MULT.0) >> (32 - L::VIP_FILTER_LOG2.0)
}

/// The bit of the filter's front that covers filter bit `bit`
/// (`vip_front_bit` in bpf/lb_hash.h): its top bits.
pub fn vip_front_bit(bit: u32) -> u32 {
    use types::vip_filter_layout as L;
    bit >> (L::VIP_FILTER_LOG2.0 - L::VIP_FRONT_LOG2.0)
}

/// The slot of a VIP key in the dataplane's VIP cache (`vip_cache_slot` in
/// bpf/lb_hash.h): the key's five words folded and mixed.
pub fn vip_cache_slot(k: &types::vip_key) -> u32 {
    use types::{vip_cache_layout as C, vip_filter_layout as L};
    let b = bytes(k);
    let w = |i: usize| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    let m = L::VIP_FILTER_MULT.0;
    let x = (w(0) ^ w(1) ^ w(2) ^ w(3)).wrapping_mul(m);
    (x ^ w(4)).wrapping_mul(m) >> (32 - C::VIP_CACHE_LOG2.0)
}

/// A flow's hash in the connection tables (`conn_hash` in bpf/lb_hash.h):
/// its top bits choose the set, all of it is the entry's tag.
pub fn conn_hash(f: &types::flow_key, seed: u32) -> u32 {
    let ports = u32::from(f.sport) | (u32::from(f.dport) << 16);
    let words = [
        f.src[0],
        f.src[1],
        f.src[2],
        f.src[3],
        f.dst[0] ^ u32::from(f.proto),
        f.dst[1],
        f.dst[2],
        f.dst[3],
        ports,
    ];
    katran_core::conn_hash::ConnKeys::from_seed(seed).hash(words)
}

/// The set a hash chooses in a table of `nsets` sets, as in bpf/lb_conn.h.
pub fn conn_set_of(hash: u32, nsets: u32) -> u32 {
    ((u64::from(hash) * u64::from(nsets)) >> 32) as u32
}

/// An address as four network-order words (IPv4 in the first).
pub fn addr_words(a: IpAddr) -> [u32; 4] {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b.copy_from_slice(&v6.octets()),
    }
    words(b)
}

fn words(b: [u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, c) in b.chunks_exact(4).enumerate() {
        w[i] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}

fn octets(w: [u32; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (i, x) in w.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&x.to_ne_bytes());
    }
    b
}

pub fn addr_from_words(w: [u32; 4], v6: bool) -> IpAddr {
    let b = octets(w);
    if v6 {
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

/// The `scope` byte of an address key: generation and family.
pub fn scope(addr: IpAddr, generation: u8) -> u8 {
    let v6 = if addr.is_ipv6() {
        key_scope::SCOPE_V6.0 as u8
    } else {
        0
    };
    (generation & key_scope::SCOPE_GEN.0 as u8) | v6
}

/// `(is IPv6, generation)` of a `scope` byte.
pub fn scope_from(scope: u8) -> (bool, u8) {
    (
        u32::from(scope) & key_scope::SCOPE_V6.0 != 0,
        scope & key_scope::SCOPE_GEN.0 as u8,
    )
}

pub fn vip_key(k: &VipKey, generation: u8) -> types::vip_key {
    types::vip_key {
        addr: addr_words(k.addr),
        port: k.port.to_be(),
        proto: k.proto.number(),
        scope: scope(k.addr, generation),
    }
}

/// The key's family is in its `scope` byte, never guessed from the words.
pub fn vip_key_from(k: &types::vip_key) -> Option<(VipKey, u8)> {
    let (v6, generation) = scope_from(k.scope);
    Some((
        VipKey {
            addr: addr_from_words(k.addr, v6),
            port: u16::from_be(k.port),
            proto: Proto::from_number(k.proto)?,
        },
        generation,
    ))
}

pub fn addr_key(addr: IpAddr, generation: u8) -> types::addr_key {
    types::addr_key {
        addr: addr_words(addr),
        scope: scope(addr, generation),
        ..Default::default()
    }
}

pub fn addr_key_from(k: &types::addr_key) -> (IpAddr, u8) {
    let (v6, generation) = scope_from(k.scope);
    (addr_from_words(k.addr, v6), generation)
}

pub fn backend_flags(drained: bool) -> u32 {
    if drained {
        backend_flag::BACKEND_HEALTH_DOWN.0
    } else {
        0
    }
}

pub fn backend_drained(flags: u32) -> bool {
    flags & backend_flag::BACKEND_HEALTH_DOWN.0 != 0
}

pub fn vip_flags(f: &VipFlags) -> u32 {
    let mut v = 0;
    for (on, bit) in [
        (f.no_src_port, vip_flag::VIP_NO_SRC_PORT),
        (f.dport_hash, vip_flag::VIP_DPORT_HASH),
        (f.no_conn_table, vip_flag::VIP_NO_CONN_TABLE),
        (f.quic, vip_flag::VIP_QUIC),
        (f.udp_flow_migration, vip_flag::VIP_UDP_FLOW_MIGRATION),
    ] {
        if on {
            v |= bit.0;
        }
    }
    v
}

pub fn vip_flags_from(v: u32) -> VipFlags {
    let has = |b: vip_flag| v & b.0 != 0;
    VipFlags {
        no_src_port: has(vip_flag::VIP_NO_SRC_PORT),
        dport_hash: has(vip_flag::VIP_DPORT_HASH),
        no_conn_table: has(vip_flag::VIP_NO_CONN_TABLE),
        quic: has(vip_flag::VIP_QUIC),
        udp_flow_migration: has(vip_flag::VIP_UDP_FLOW_MIGRATION),
    }
}

const IN_GEN: [real_flag; 2] = [real_flag::REAL_IN_GEN0, real_flag::REAL_IN_GEN1];
const DOWN_GEN: [real_flag; 2] = [real_flag::REAL_DOWN_GEN0, real_flag::REAL_DOWN_GEN1];

pub fn real(r: &RealRecord) -> real_def {
    let mut flags = 0u32;
    if r.addr.is_ipv6() {
        flags |= real_flag::REAL_V6.0;
    }
    for g in 0..2 {
        if r.in_gen[g] {
            flags |= IN_GEN[g].0;
        }
        if r.down[g] {
            flags |= DOWN_GEN[g].0;
        }
    }
    real_def {
        addr: addr_words(r.addr),
        flags: flags as u8,
        ..Default::default()
    }
}

/// `None` for an entry never written.
pub fn real_from(r: &real_def) -> Option<RealRecord> {
    let f = u32::from(r.flags);
    if f == 0 && r.addr == [0; 4] {
        return None;
    }
    Some(RealRecord {
        addr: addr_from_words(r.addr, f & real_flag::REAL_V6.0 != 0),
        in_gen: [f & IN_GEN[0].0 != 0, f & IN_GEN[1].0 != 0],
        down: [f & DOWN_GEN[0].0 != 0, f & DOWN_GEN[1].0 != 0],
    })
}

const RING_V1: u8 = 1;
const RING_V2: u8 = 2;

pub fn ctl(g: &Globals, ring: RingKind) -> lb_ctl {
    let mut c = lb_ctl {
        gw_mac: g.gateway_mac.0,
        src_v4_prefix: addr_words(IpAddr::V4(g.src_v4_prefix))[0],
        src_v6_prefix: addr_words(IpAddr::V6(g.src_v6_prefix)),
        max_conn_rate: g.max_conn_rate,
        udp_timeout_s: g.udp_timeout_s,
        max_frame_len: g.max_frame_len,
        ring_kind: match ring {
            RingKind::MaglevV1 => RING_V1,
            RingKind::MaglevV2 => RING_V2,
        },
        ..Default::default()
    };
    if let Encap::Gue {
        port,
        src_v4,
        src_v6,
    } = g.encap
    {
        c.features |= lb_feature::FEAT_GUE.0;
        c.gue_port = port.to_be();
        c.gue_src_v4 = addr_words(IpAddr::V4(src_v4))[0];
        c.gue_src_v6 = addr_words(IpAddr::V6(src_v6));
    }
    if let Some(kind) = g.tcp_server_id_kind {
        c.features |= lb_feature::FEAT_TCP_SERVER_ID.0;
        c.tcp_sid_kind = kind;
    }
    c
}

/// `None` for a generation never written (no ring kind recorded).
pub fn ctl_from(c: &lb_ctl) -> Option<(Globals, RingKind)> {
    let ring = match c.ring_kind {
        RING_V1 => RingKind::MaglevV1,
        RING_V2 => RingKind::MaglevV2,
        _ => return None,
    };
    let v4 = |w: u32| match addr_from_words([w, 0, 0, 0], false) {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("an IPv4 word reads back as IPv4"),
    };
    let v6 = |w: [u32; 4]| match addr_from_words(w, true) {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => unreachable!("four words read back as IPv6"),
    };
    let encap = if c.features & lb_feature::FEAT_GUE.0 != 0 {
        Encap::Gue {
            port: u16::from_be(c.gue_port),
            src_v4: v4(c.gue_src_v4),
            src_v6: v6(c.gue_src_v6),
        }
    } else {
        Encap::Ipip
    };
    let globals = Globals {
        gateway_mac: MacAddr(c.gw_mac),
        encap,
        tcp_server_id_kind: (c.features & lb_feature::FEAT_TCP_SERVER_ID.0 != 0)
            .then_some(c.tcp_sid_kind),
        src_v4_prefix: v4(c.src_v4_prefix),
        src_v6_prefix: v6(c.src_v6_prefix),
        max_conn_rate: c.max_conn_rate,
        udp_timeout_s: c.udp_timeout_s,
        max_frame_len: c.max_frame_len,
    };
    Some((globals, ring))
}
