//! Our own packet vectors: hand-built frames of every class the dataplane can
//! meet (truncated, odd IPv4/IPv6 headers, VLAN, non-IP, empty payloads,
//! oversized, not for a VIP, ICMP echo, TCP RST), run through the XDP program
//! with BPF_PROG_TEST_RUN under both encapsulations. Each class has one exact
//! verdict (documented in docs/dataplane.md, "Verdicts"), and every frame the
//! program transmits is checked field by field, checksums recomputed from
//! scratch.

use crate::common;
use crate::common::frames::{csum, csum_ok, l4_csum, pseudo_header};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use katran::apply::apply;
use katran::kernel::bpf::abi::types::lb_stat;
use katran::kernel::bpf::loader::{Dataplane, LoadOptions};
use katran::kernel::testrun::{run_once, verdict_name, XDP_DROP, XDP_PASS, XDP_TX};
use katran::model::{Backend, Encap, MacAddr, Proto, RingKind, State, Vip, VipFlags, VipKey};
use libbpf_rs::MapHandle;

// ---- the setup ---------------------------------------------------------------

const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The balancer host's own MAC: destination of every input frame.
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 55);
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x55);

const GUE_PORT: u16 = 9886;
const GUE_SRC_V4: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 1);
const GUE_SRC_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x202, 0, 0, 0, 0, 0, 1);

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const fn v6(a: u16, b: u16, last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(a, b, 0, 0, 0, 0, 0, last))
}

/// VIP addresses by (inner family, outer family). Each has a TCP VIP on
/// port 80 and a UDP VIP on port 53.
const VIP4_REALS4: IpAddr = v4(10, 200, 0, 10);
const VIP6_REALS6: IpAddr = v6(0xfd00, 0x200, 0x10);
const VIP6_REALS4: IpAddr = v6(0xfd00, 0x200, 0x20);
const VIP4_REALS6: IpAddr = v4(10, 200, 0, 20);
/// A TCP "any port" VIP (port 0).
const VIP_ANY_PORT: IpAddr = v4(10, 200, 0, 30);

/// One VIP address per family combination, named for messages.
const FAMILIES: [(&str, IpAddr); 4] = [
    ("v4 vip/v4 reals", VIP4_REALS4),
    ("v6 vip/v6 reals", VIP6_REALS6),
    ("v6 vip/v4 reals", VIP6_REALS4),
    ("v4 vip/v6 reals", VIP4_REALS6),
];

const NOT_VIP_V4: IpAddr = v4(10, 200, 0, 99);
const NOT_VIP_V6: IpAddr = v6(0xfd00, 0x200, 0x99);

fn reals_of(vip: IpAddr) -> Vec<IpAddr> {
    match vip {
        VIP4_REALS4 => (11..=13).map(|d| v4(10, 201, 0, d)).collect(),
        VIP6_REALS6 => (0x11..=0x13).map(|d| v6(0xfd00, 0x201, d)).collect(),
        VIP6_REALS4 => (21..=22).map(|d| v4(10, 201, 0, d)).collect(),
        VIP4_REALS6 => (0x21..=0x22).map(|d| v6(0xfd00, 0x201, d)).collect(),
        VIP_ANY_PORT => vec![v4(10, 201, 0, 31)],
        _ => Vec::new(),
    }
}

fn state(encap: Encap) -> State {
    let mut state = State {
        ring: RingKind::MaglevV2,
        ..State::default()
    };
    state.globals.gateway_mac = MacAddr(GW_MAC);
    state.globals.encap = encap;
    let vip = |addr: IpAddr, port: u16, proto: Proto| Vip {
        key: VipKey { addr, port, proto },
        flags: VipFlags::default(),
        reals: reals_of(addr)
            .into_iter()
            .map(|addr| Backend { addr, weight: 1 })
            .collect(),
    };
    for (_, addr) in FAMILIES {
        state.vips.push(vip(addr, 80, Proto::Tcp));
        state.vips.push(vip(addr, 53, Proto::Udp));
    }
    state.vips.push(vip(VIP_ANY_PORT, 0, Proto::Tcp));
    state
}

fn gue() -> Encap {
    Encap::Gue {
        port: GUE_PORT,
        src_v4: GUE_SRC_V4,
        src_v6: GUE_SRC_V6,
    }
}

/// One loaded dataplane with the setup applied.
struct Lb {
    dp: Dataplane,
    stats: MapHandle,
    state: State,
    mode: &'static str,
}

impl Lb {
    fn load(encap: Encap) -> Lb {
        let options = LoadOptions {
            // Ring contents are not what these vectors test: a small prime
            // keeps the two loads per test quick.
            ring_size: 4099,
            max_vips: 16,
            max_reals: 64,
            fallback_table_size: 4096,
            forwarding_cpus: Some(Vec::new()), // the shared table only
            ..LoadOptions::default()
        };
        let dp = Dataplane::load(&options).expect("loading the balancer");
        let state = state(encap);
        let mut store = dp.store().expect("map store");
        apply(&mut store, &state).expect("applying the setup");
        let stats = dp.maps().expect("map handles").stats;
        let mode = match encap {
            Encap::Ipip => "ipip",
            Encap::Gue { .. } => "gue",
        };
        Lb {
            dp,
            stats,
            state,
            mode,
        }
    }

    /// A fresh dataplane per encapsulation.
    fn both() -> Vec<Lb> {
        vec![Lb::load(Encap::Ipip), Lb::load(gue())]
    }

    fn stat(&self, which: lb_stat) -> u64 {
        katran::views::stats::global_one(&self.stats, which).expect("reading stats")
    }
}

/// Reals of the VIP a flow belongs to (the port-0 VIP as fallback).
fn reals_for(state: &State, dst: IpAddr, proto: u8, port: u16) -> Vec<IpAddr> {
    let find = |port: u16| {
        state
            .vips
            .iter()
            .find(|v| v.key.addr == dst && v.key.port == port && v.key.proto.number() == proto)
    };
    find(port)
        .or_else(|| find(0))
        .map(|v| v.reals.iter().map(|b| b.addr).collect())
        .unwrap_or_default()
}

// ---- checksums and frame building ------------------------------------------

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMP6: u8 = 58;
const SCTP: u8 = 132;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// A Linux-like SYN's options: MSS, SACK permitted, timestamps, NOP, window scale.
const SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7,
];

fn client_of(dst: IpAddr) -> IpAddr {
    match dst {
        IpAddr::V4(_) => IpAddr::V4(CLIENT_V4),
        IpAddr::V6(_) => IpAddr::V6(CLIENT_V6),
    }
}

fn tcp_segment(
    (src, dst): (IpAddr, IpAddr),
    (sport, dport): (u16, u16),
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "TCP options come in words");
    let ack: u32 = if flags & ACK != 0 { 0x0a0b_0c0d } else { 0 };
    let mut s = Vec::new();
    s.extend(sport.to_be_bytes());
    s.extend(dport.to_be_bytes());
    s.extend(0x0102_0304u32.to_be_bytes());
    s.extend(ack.to_be_bytes());
    s.push((((20 + options.len()) / 4) << 4) as u8);
    s.push(flags);
    s.extend(64240u16.to_be_bytes());
    s.extend([0, 0, 0, 0]); // checksum, urgent pointer
    s.extend(options);
    s.extend(payload);
    let c = l4_csum(src, dst, TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

fn udp_datagram(
    (src, dst): (IpAddr, IpAddr),
    (sport, dport): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(sport.to_be_bytes());
    s.extend(dport.to_be_bytes());
    s.extend(((8 + payload.len()) as u16).to_be_bytes());
    s.extend([0, 0]);
    s.extend(payload);
    let c = match l4_csum(src, dst, UDP, &s) {
        0 => 0xffff,
        c => c,
    };
    s[6..8].copy_from_slice(&c.to_be_bytes());
    s
}

/// ICMP (IPv4) or ICMPv6 message of `kind` with a 4-byte rest of header.
fn icmp_message((src, dst): (IpAddr, IpAddr), kind: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend(rest);
    m.extend(body);
    let c = match src {
        IpAddr::V4(_) => csum(&m),
        IpAddr::V6(_) => l4_csum(src, dst, ICMP6, &m),
    };
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// IPv4 header fields a test may want to vary.
#[derive(Clone)]
struct V4Opts {
    tos: u8,
    ttl: u8,
    frag_off: u16,
    options: Vec<u8>,
}

impl Default for V4Opts {
    fn default() -> Self {
        V4Opts {
            tos: 0x28,
            ttl: 61,
            frag_off: 0x4000, // DF, as Linux sends TCP
            options: Vec::new(),
        }
    }
}

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8], o: &V4Opts) -> Vec<u8> {
    assert_eq!(o.options.len() % 4, 0);
    let hlen = 20 + o.options.len();
    let mut h = vec![0x40 | (hlen / 4) as u8, o.tos];
    h.extend(((hlen + l4.len()) as u16).to_be_bytes());
    h.extend(0x1c46u16.to_be_bytes()); // identification
    h.extend(o.frag_off.to_be_bytes());
    h.extend([o.ttl, proto, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h.extend(&o.options);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(l4);
    h
}

const TRAFFIC_CLASS: u8 = 0x28;

fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let tc = TRAFFIC_CLASS;
    let mut h = vec![0x60 | (tc >> 4), ((tc & 0x0f) << 4) | 0x0b, 0xcd, 0xef];
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, 61]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h.extend(payload);
    h
}

fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_packet(s, d, proto, l4, &V4Opts::default()),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_packet(s, d, proto, l4),
        _ => panic!("IP packet of mixed families"),
    }
}

const ETH_IP: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::from(LB_MAC);
    f.extend(CLIENT_MAC);
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

fn ip_frame(packet: &[u8]) -> Vec<u8> {
    ethernet(
        if packet[0] >> 4 == 6 {
            ETH_IPV6
        } else {
            ETH_IP
        },
        packet,
    )
}

/// Client -> `dst` TCP frame.
fn tcp_frame(dst: IpAddr, dport: u16, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let src = client_of(dst);
    let seg = tcp_segment((src, dst), (40_001, dport), flags, options, payload);
    ip_frame(&ip_packet(src, dst, TCP, &seg))
}

fn syn_frame(dst: IpAddr) -> Vec<u8> {
    tcp_frame(dst, 80, SYN, &SYN_OPTIONS, &[])
}

fn udp_frame(dst: IpAddr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let src = client_of(dst);
    let seg = udp_datagram((src, dst), (40_002, dport), payload);
    ip_frame(&ip_packet(src, dst, UDP, &seg))
}

/// A DNS query for example.com, type A.
const DNS_QUERY: [u8; 29] = [
    0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3,
    b'c', b'o', b'm', 0, 0, 1, 0, 1,
];

fn echo_frame(dst: IpAddr, id: u16, seq: u16, body: &[u8]) -> Vec<u8> {
    let src = client_of(dst);
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&id.to_be_bytes());
    rest[2..].copy_from_slice(&seq.to_be_bytes());
    let (proto, kind) = match dst {
        IpAddr::V4(_) => (ICMP, 8),
        IpAddr::V6(_) => (ICMP6, 128),
    };
    let m = icmp_message((src, dst), kind, rest, body);
    ip_frame(&ip_packet(src, dst, proto, &m))
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

// ---- reading frames back -----------------------------------------------------

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr4(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
}

fn addr6(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(&b[at..at + 16]).unwrap(),
    ))
}

/// What a test input is, read from its own (complete) headers.
struct Input {
    v6: bool,
    /// Frame offset where the IP packet ends by its own length field.
    ip_end: usize,
    tos: u8,
    dst: IpAddr,
    proto: u8,
    dport: u16,
}

fn describe(input: &[u8]) -> Input {
    let v6 = be16(input, 12) == ETH_IPV6;
    if v6 {
        Input {
            v6,
            ip_end: 54 + usize::from(be16(input, 18)),
            tos: (input[14] << 4) | (input[15] >> 4),
            dst: addr6(input, 38),
            proto: input[20],
            dport: be16(input, 56),
        }
    } else {
        let l4 = 14 + usize::from(input[14] & 0x0f) * 4;
        Input {
            v6,
            ip_end: 14 + usize::from(be16(input, 16)),
            tos: input[15],
            dst: addr4(input, 30),
            proto: input[23],
            dport: be16(input, l4 + 2),
        }
    }
}

/// Every way `out` falls short of the correct encapsulation of `full` (the
/// complete frame; `input` is what was run, maybe a prefix of it).
fn check_forwarded(state: &State, full: &[u8], input: &[u8], out: &[u8]) -> Vec<String> {
    let mut errs = Vec::new();
    let d = describe(full);
    let reals = reals_for(state, d.dst, d.proto, d.dport);
    // The IP packet as it arrived, and any bytes after it (Ethernet padding).
    let inner = &input[14..d.ip_end.min(input.len())];
    let trailer = input.get(d.ip_end..).unwrap_or(&[]);
    if out.len() < 14 + 40 {
        errs.push(format!("output of {} bytes is too short", out.len()));
        return errs;
    }
    if out[..6] != GW_MAC {
        errs.push(format!(
            "Ethernet destination {} is not the gateway",
            common::hex(&out[..6])
        ));
    }
    if out[6..12] != input[..6] {
        errs.push(format!(
            "Ethernet source {} is not the MAC the frame came to",
            common::hex(&out[6..12])
        ));
    }
    let ip_len = out.len() - 14 - trailer.len();
    let (outer_v6, hlen, proto, src, dst) = match be16(out, 12) {
        ETH_IP => {
            let h = &out[14..34];
            if h[0] != 0x45 {
                errs.push(format!("outer IPv4 version/IHL {:#04x}", h[0]));
            }
            if !csum_ok(h) {
                errs.push(format!(
                    "outer IPv4 header checksum {:#06x} is wrong",
                    be16(h, 10)
                ));
            }
            if usize::from(be16(h, 2)) != ip_len {
                errs.push(format!(
                    "outer IPv4 total length {} but {ip_len} bytes follow the Ethernet header",
                    be16(h, 2)
                ));
            }
            if h[1] != d.tos {
                errs.push(format!("outer TOS {:#04x}, inner {:#04x}", h[1], d.tos));
            }
            if be16(h, 6) != 0 || h[8] != 64 {
                errs.push(format!(
                    "outer flags/fragment {:#06x}, TTL {} (want 0, 64)",
                    be16(h, 6),
                    h[8]
                ));
            }
            (false, 20, h[9], addr4(h, 12), addr4(h, 16))
        }
        ETH_IPV6 => {
            let h = &out[14..54];
            let tc = (h[0] << 4) | (h[1] >> 4);
            if h[0] >> 4 != 6 {
                errs.push(format!("outer IPv6 version {}", h[0] >> 4));
            }
            if usize::from(be16(h, 4)) + 40 != ip_len {
                errs.push(format!(
                    "outer IPv6 payload length {} but {} bytes follow the IPv6 header",
                    be16(h, 4),
                    ip_len.saturating_sub(40)
                ));
            }
            if tc != d.tos || h[7] != 64 {
                errs.push(format!(
                    "outer traffic class {tc:#04x} (inner {:#04x}), hop limit {}",
                    d.tos, h[7]
                ));
            }
            (true, 40, h[6], addr6(h, 8), addr6(h, 24))
        }
        other => {
            errs.push(format!("outer ethertype {other:#06x}"));
            return errs;
        }
    };
    if !reals.contains(&dst) {
        errs.push(format!("outer destination {dst} is not a real of the VIP"));
    }
    let inner_proto = if d.v6 { 41 } else { 4 };
    let mut at = 14 + hlen;
    if let Encap::Gue { .. } = state.globals.encap {
        let want_src = if outer_v6 {
            IpAddr::V6(GUE_SRC_V6)
        } else {
            IpAddr::V4(GUE_SRC_V4)
        };
        if proto != UDP || src != want_src {
            errs.push(format!(
                "GUE outer protocol {proto}, source {src} (want 17, {want_src})"
            ));
        }
        let udp = &out[at..at + 8];
        let udp_end = out.len() - trailer.len();
        // With no checksum to cover it (see below), the source port is
        // checked on its own.
        let sport = gue_sport(full, outer_v6);
        if be16(udp, 0) != sport {
            errs.push(format!(
                "GUE source port {}, want {sport} (from the client address and port)",
                be16(udp, 0)
            ));
        }
        if be16(udp, 2) != GUE_PORT {
            errs.push(format!("GUE destination port {}", be16(udp, 2)));
        }
        if usize::from(be16(udp, 4)) != udp_end - at {
            errs.push(format!(
                "GUE UDP length {} but {} bytes follow the outer IP header",
                be16(udp, 4),
                udp_end - at
            ));
        }
        let mut seg = out[at..udp_end].to_vec();
        seg[6] = 0;
        seg[7] = 0;
        let want = match l4_csum(src, dst, UDP, &seg) {
            0 => 0xffff,
            c => c,
        };
        if ipv4_udp_without_checksum(full) {
            // none: allowed over IPv4, and for a UDP tunnel over IPv6
            // (RFC 6935, 6936)
            if be16(udp, 6) != 0 {
                errs.push(format!(
                    "GUE UDP checksum {:#06x} for an inner IPv4 UDP datagram without one (want 0)",
                    be16(udp, 6)
                ));
            }
        } else if be16(udp, 6) != want {
            errs.push(format!(
                "GUE UDP checksum {:#06x}, computed over the whole datagram {want:#06x}",
                be16(udp, 6)
            ));
        }
        at += 8;
    } else {
        if proto != inner_proto {
            errs.push(format!("outer protocol {proto}, want {inner_proto}"));
        }
        let prefix_ok = match src {
            IpAddr::V4(a) => a.octets()[..2] == [172, 16],
            IpAddr::V6(a) => a.octets()[..12] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        if !prefix_ok {
            errs.push(format!("IP-in-IP outer source {src} outside the prefix"));
        }
    }
    let l = layout(full);
    let headers = l.l4 - 14 + l.l4_fixed;
    if inner.len() < headers {
        errs.push(format!(
            "the encapsulated packet is {} bytes by its own length, inside its {headers} bytes of IP and transport header",
            inner.len()
        ));
    }
    if out[at..] != *input.get(14..).unwrap_or(&[]) {
        errs.push(format!(
            "encapsulated bytes differ from the input's IP packet ({} + {} bytes)",
            inner.len(),
            trailer.len()
        ));
    }
    errs
}

/// The GUE source port of `frame`'s encapsulation, derived as Katran does
/// from the last four bytes of the client address and the client port.
fn gue_sport(frame: &[u8], outer_v6: bool) -> u16 {
    let d = describe(frame);
    let l4 = layout(frame).l4;
    let (hi, lo) = (frame[l4], frame[l4 + 1]);
    let c = if d.v6 { &frame[34..38] } else { &frame[26..30] };
    let o = match (outer_v6, d.v6) {
        (true, true) => [c[0] ^ hi, c[1] ^ lo],
        (true, false) => [c[2] ^ hi, c[3] ^ lo],
        (false, _) => [c[2] ^ lo, c[3] ^ hi],
    };
    u16::from_be_bytes(o)
}

/// Whether `frame` carries an IPv4 UDP datagram sent without a checksum
/// (field 0): its GUE encapsulation goes without one too.
fn ipv4_udp_without_checksum(frame: &[u8]) -> bool {
    let d = describe(frame);
    if d.v6 || d.proto != UDP {
        return false;
    }
    let l4 = layout(frame).l4;
    frame.get(l4 + 6..l4 + 8) == Some(&[0, 0][..])
}

fn is_echo_request(frame: &[u8]) -> bool {
    let d = describe(frame);
    let icmp = if d.v6 { 54 } else { 34 };
    match d.proto {
        ICMP => frame.get(icmp) == Some(&8),
        ICMP6 => frame.get(icmp) == Some(&128),
        _ => false,
    }
}

/// Every way `out` falls short of the echo reply to `input`.
fn check_echo_reply(input: &[u8], out: &[u8]) -> Vec<String> {
    let mut errs = Vec::new();
    if out.len() != input.len() {
        errs.push(format!(
            "reply of {} bytes to a request of {}",
            out.len(),
            input.len()
        ));
        return errs;
    }
    if out[..6] != input[6..12] || out[6..12] != input[..6] {
        errs.push("MAC addresses not swapped".into());
    }
    if out[12..14] != input[12..14] {
        errs.push(format!("ethertype changed to {:#06x}", be16(out, 12)));
    }
    let v6 = be16(input, 12) == ETH_IPV6;
    let (hlen, alen, src_at, kind) = if v6 {
        (40, 16, 22, 129)
    } else {
        (20, 4, 26, 0)
    };
    let (src, dst) = (src_at, src_at + alen);
    if out[src..src + alen] != input[dst..dst + alen]
        || out[dst..dst + alen] != input[src..src + alen]
    {
        errs.push("IP addresses not swapped".into());
    }
    let ip = &out[14..];
    let msg = &out[14 + hlen..];
    // Version, TOS/traffic class, flow label, lengths, id, flags, protocol
    // stay as they came.
    let same = if v6 { 0..7 } else { 0..8 };
    if ip[same.clone()] != input[14..][same] || (!v6 && ip[9] != input[23]) {
        errs.push("IP header fields other than addresses and TTL changed".into());
    }
    if v6 {
        if usize::from(be16(ip, 4)) != msg.len() || ip[7] != 64 {
            errs.push(format!(
                "IPv6 payload length {} for {} bytes, hop limit {}",
                be16(ip, 4),
                msg.len(),
                ip[7]
            ));
        }
    } else if usize::from(be16(ip, 2)) != ip.len() || !csum_ok(&ip[..20]) || ip[8] != 64 {
        errs.push(format!(
            "IPv4 total length {} for {} bytes, TTL {}, header checksum ok: {}",
            be16(ip, 2),
            ip.len(),
            ip[8],
            csum_ok(&ip[..20])
        ));
    }
    if msg[0] != kind || msg[1] != 0 || msg[4..] != input[14 + hlen + 4..] {
        errs.push(format!(
            "ICMP type {} code {}, or the id/sequence/data changed",
            msg[0], msg[1]
        ));
    }
    let verified = if v6 {
        let mut b = pseudo_header(addr6(ip, 8), addr6(ip, 24), ICMP6, msg.len());
        b.extend(msg);
        csum_ok(&b)
    } else {
        csum_ok(msg)
    };
    if !verified {
        let mut zeroed = msg.to_vec();
        zeroed[2] = 0;
        zeroed[3] = 0;
        let want = if v6 {
            l4_csum(addr6(ip, 8), addr6(ip, 24), ICMP6, &zeroed)
        } else {
            csum(&zeroed)
        };
        errs.push(format!(
            "ICMP checksum {:#06x}, computed from scratch {want:#06x}",
            be16(msg, 2)
        ));
    }
    errs
}

// ---- running and tallying ------------------------------------------------------

/// The verdict a frame must get, with what is checked of the output.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// XDP_TX, encapsulated toward a real of the VIP.
    Forward,
    /// XDP_TX, answered in place (ICMP echo).
    Reply,
    /// XDP_PASS with the frame byte for byte as it came.
    Pass,
    /// XDP_DROP, counted under this reason.
    Drop(lb_stat),
}

impl Want {
    fn verdict(self) -> u32 {
        match self {
            Want::Forward | Want::Reply => XDP_TX,
            Want::Pass => XDP_PASS,
            Want::Drop(_) => XDP_DROP,
        }
    }
}

const MALFORMED: Want = Want::Drop(lb_stat::STAT_DROP_MALFORMED);
const FRAGMENT: Want = Want::Drop(lb_stat::STAT_DROP_FRAGMENT);

/// Frames run, transmissions checked, and everything that went wrong.
#[derive(Default)]
struct Tally {
    frames: usize,
    transmitted: usize,
    malformed: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Runs `input` (which is `full`, or a prefix of it) and checks the outcome.
    /// Returns the verdict.
    fn expect_prefix(&mut self, lb: &Lb, desc: &str, full: &[u8], input: &[u8], want: Want) -> u32 {
        self.frames += 1;
        let reason = match want {
            Want::Drop(r) => Some((r, lb.stat(r))),
            _ => None,
        };
        let replies = lb.stat(lb_stat::STAT_ICMP_ECHO_REPLY);
        let (verdict, out) = run_once(lb.dp.balancer(), input)
            .unwrap_or_else(|e| panic!("{}: {desc}: test run failed: {e:#}", lb.mode));
        let mut errs = Vec::new();
        if verdict != want.verdict() {
            errs.push(format!(
                "verdict {}, want {}",
                verdict_name(verdict),
                verdict_name(want.verdict())
            ));
        }
        if verdict == XDP_TX {
            self.transmitted += 1;
            let problems = if is_echo_request(full) {
                if lb.stat(lb_stat::STAT_ICMP_ECHO_REPLY) != replies + 1 {
                    errs.push("echo reply not counted".to_string());
                }
                check_echo_reply(input, &out)
            } else {
                check_forwarded(&lb.state, full, input, &out)
            };
            if !problems.is_empty() {
                self.malformed += 1;
                errs.push(format!("transmitted malformed: {}", problems.join("; ")));
            }
        } else if verdict == XDP_PASS && out != input {
            errs.push(format!(
                "passed modified:\n{}",
                common::hex_diff(input, &out)
            ));
        }
        if let (XDP_DROP, Some((r, before))) = (verdict, reason) {
            if lb.stat(r) != before + 1 {
                errs.push(format!("drop not counted under lb_stat({})", r.0));
            }
        }
        if !errs.is_empty() {
            self.failures.push(format!(
                "[{}] {desc} ({} bytes): {}",
                lb.mode,
                input.len(),
                errs.join("; ")
            ));
        }
        verdict
    }

    fn expect(&mut self, lb: &Lb, desc: &str, frame: &[u8], want: Want) {
        self.expect_prefix(lb, desc, frame, frame, want);
    }

    /// Prints the summary line and fails with every failure.
    fn finish(self, name: &str, extra: &str) {
        println!(
            "vectors {name}: {} frames, {} transmitted, {} transmitted malformed, {} wrong{extra}",
            self.frames,
            self.transmitted,
            self.malformed,
            self.failures.len()
        );
        if !self.failures.is_empty() {
            let mut msg = format!("{} of {} frames wrong:\n", self.failures.len(), self.frames);
            for f in self.failures.iter().take(40) {
                let _ = writeln!(msg, "  {f}");
            }
            if self.failures.len() > 40 {
                let _ = writeln!(msg, "  ... and {} more", self.failures.len() - 40);
            }
            panic!("{msg}");
        }
    }
}

// ---- 1. truncation -------------------------------------------------------------

/// Header boundaries of a complete test frame.
struct Layout {
    l4: usize,
    /// Fixed part of the transport header: what the program must see.
    l4_fixed: usize,
    /// Whole transport header (TCP options included).
    l4_header: usize,
    end: usize,
}

fn layout(frame: &[u8]) -> Layout {
    let d = describe(frame);
    let l4 = if d.v6 {
        54
    } else {
        14 + usize::from(frame[14] & 0x0f) * 4
    };
    let (fixed, header) = match d.proto {
        TCP => (20, usize::from(frame[l4 + 12] >> 4) * 4),
        _ => (8, 8),
    };
    Layout {
        l4,
        l4_fixed: fixed,
        l4_header: header,
        end: frame.len(),
    }
}

/// The class of a frame cut to `len` bytes, and the verdict it must get.
/// Every cut is malformed whatever the destination: the length checks come
/// before the VIP lookup (a cut frame's IP length reaches past its end, and
/// the kernel would drop it as well), so only the complete frame differs.
fn truncation_class(l: &Layout, len: usize, complete: Want) -> (&'static str, Want) {
    if len < 14 {
        ("shorter than an Ethernet header", MALFORMED)
    } else if len < l.l4 {
        ("IP header cut", MALFORMED)
    } else if len < l.l4 + l.l4_fixed {
        ("fixed transport header cut", MALFORMED)
    } else if len < l.l4 + l.l4_header {
        ("TCP options cut", MALFORMED)
    } else if len < l.end {
        ("payload cut (IP length beyond the frame)", MALFORMED)
    } else {
        ("complete", complete)
    }
}

#[test]
fn truncated_frames_never_transmit_malformed() {
    if !common::privileged("vectors truncation") {
        return;
    }
    let mut t = Tally::default();
    let mut refused = 0;
    // (frame, class, verdict) -> frames: printed when something is wrong
    let mut classes: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    let mut dsts: Vec<(&str, IpAddr)> = FAMILIES.to_vec();
    dsts.extend([("not a VIP", NOT_VIP_V4), ("not a VIP", NOT_VIP_V6)]);
    for lb in Lb::both() {
        for &(family, vip) in &dsts {
            let for_vip = family != "not a VIP";
            let (forward, reply) = if for_vip {
                (Want::Forward, Want::Reply)
            } else {
                (Want::Pass, Want::Pass)
            };
            let (syn, udp, echo) = if for_vip {
                ("TCP SYN to a VIP", "UDP to a VIP", "ICMP echo to a VIP")
            } else {
                (
                    "TCP SYN not to a VIP",
                    "UDP not to a VIP",
                    "ICMP echo not to a VIP",
                )
            };
            let frames = [
                (syn, syn_frame(vip), forward),
                (udp, udp_frame(vip, 53, &DNS_QUERY), forward),
                (echo, echo_frame(vip, 7, 1, &payload(16)), reply),
            ];
            for (what, full, complete) in frames {
                let l = layout(&full);
                for len in 0..=full.len() {
                    let (class, want) = truncation_class(&l, len, complete);
                    let prefix = &full[..len];
                    if len < 14 {
                        // The kernel refuses test runs below an Ethernet
                        // header (EINVAL); the program's own check for it
                        // cannot be driven from here.
                        assert!(
                            run_once(lb.dp.balancer(), prefix).is_err(),
                            "BPF_PROG_TEST_RUN accepted a {len}-byte frame"
                        );
                        refused += 1;
                        continue;
                    }
                    let desc = format!("{what} to {vip} ({family}) cut to {len}: {class}");
                    let verdict = t.expect_prefix(&lb, &desc, &full, prefix, want);
                    *classes
                        .entry((what, class, verdict_name(verdict)))
                        .or_default() += 1;
                }
            }
        }
    }
    if !t.failures.is_empty() {
        for ((what, class, verdict), n) in &classes {
            println!("  {what}, {class}: {verdict} x{n}");
        }
    }
    t.finish(
        "truncation",
        &format!(", {refused} shorter than 14 bytes refused by the kernel"),
    );
}

// ---- 2. IPv4 header: IHL and fragments -----------------------------------------

/// A TCP SYN to `dst` whose IPv4 header has IHL `ihl`. Above 5 the header
/// really carries (ihl - 5) words of options (NOPs, then end of list).
fn syn_with_ihl(dst: IpAddr, ihl: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (client_of(dst), dst) else {
        unreachable!()
    };
    let seg = tcp_segment((client_of(dst), dst), (40_003, 80), SYN, &SYN_OPTIONS, &[]);
    let mut pkt = ipv4_packet(
        s,
        d,
        TCP,
        &seg,
        &V4Opts {
            options: ipv4_options(ihl),
            ..V4Opts::default()
        },
    );
    if ihl < 5 {
        pkt[0] = 0x40 | ihl;
        pkt[10] = 0;
        pkt[11] = 0;
        let c = csum(&pkt[..20]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
    ip_frame(&pkt)
}

fn v4_frame_with(dst: IpAddr, l4: &[u8], o: &V4Opts) -> Vec<u8> {
    v4_frame_proto(dst, TCP, l4, o)
}

fn v4_frame_proto(dst: IpAddr, proto: u8, l4: &[u8], o: &V4Opts) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (client_of(dst), dst) else {
        unreachable!()
    };
    ip_frame(&ipv4_packet(s, d, proto, l4, o))
}

/// `ihl - 5` words of IPv4 options: NOPs, then end of list.
fn ipv4_options(ihl: u8) -> Vec<u8> {
    let mut options = vec![1u8; usize::from(ihl.saturating_sub(5)) * 4];
    if let Some(last) = options.last_mut() {
        *last = 0;
    }
    options
}

/// ICMP fragmentation needed sent to `dst`, quoting the first 8 bytes of a
/// TCP segment `dst`:80 sent to the client under an IPv4 header of IHL
/// `ihl` (with options above 5).
fn icmp_error_quoting_ihl(dst: IpAddr, ihl: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (client_of(dst), dst) else {
        unreachable!()
    };
    let seg = tcp_segment((dst, client_of(dst)), (80, 40_003), SYN | ACK, &[], &[]);
    let quoted = ipv4_packet(
        d,
        s,
        TCP,
        &seg[..8],
        &V4Opts {
            options: ipv4_options(ihl),
            ..V4Opts::default()
        },
    );
    let mut m = icmp_message((client_of(dst), dst), 3, [0, 0, 0x05, 0xdc], &quoted);
    // code 4: fragmentation needed (the checksum covers it)
    m[1] = 4;
    m[2] = 0;
    m[3] = 0;
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ip_frame(&ipv4_packet(s, d, ICMP, &m, &V4Opts::default()))
}

/// IHL below 5 is malformed wherever the frame goes. Options and fragments
/// cannot be balanced: they are dropped when addressed to a VIP address
/// (whatever its port and protocol) and left to the kernel otherwise, also
/// when the options are in the header an ICMP error quotes.
#[test]
fn ipv4_bad_ihl_options_and_fragments_drop() {
    if !common::privileged("vectors ipv4-header") {
        return;
    }
    let mut t = Tally::default();
    let options = Want::Drop(lb_stat::STAT_DROP_IPV4_OPTIONS);
    for lb in Lb::both() {
        for dst in [VIP4_REALS4, VIP4_REALS6, VIP_ANY_PORT, NOT_VIP_V4] {
            let for_vip = dst != NOT_VIP_V4;
            let (ok, options, fragment) = if for_vip {
                (Want::Forward, options, FRAGMENT)
            } else {
                (Want::Pass, Want::Pass, Want::Pass)
            };
            for ihl in 0..=15u8 {
                let want = match ihl {
                    0..=4 => MALFORMED,
                    5 => ok,
                    _ => options,
                };
                t.expect(
                    &lb,
                    &format!("TCP SYN to {dst} with IHL {ihl}"),
                    &syn_with_ihl(dst, ihl),
                    want,
                );
            }
            for ihl in [6, 7, 15] {
                t.expect(
                    &lb,
                    &format!("ICMP fragmentation needed to {dst} quoting IHL {ihl}"),
                    &icmp_error_quoting_ihl(dst, ihl),
                    options,
                );
            }

            let src = client_of(dst);
            let seg = tcp_segment((src, dst), (40_004, 80), ACK | PSH, &[], &payload(64));
            let cases = [
                ("no flags", 0x0000, &seg[..], ok),
                ("DF", 0x4000, &seg[..], ok),
                ("reserved flag bit", 0x8000, &seg[..], ok),
                ("MF (first fragment)", 0x2000, &seg[..40], fragment),
                ("DF|MF", 0x6000, &seg[..40], fragment),
                ("offset 5, MF", 0x2005, &seg[40..56], fragment),
                ("offset 5 (last fragment)", 0x0005, &seg[40..], fragment),
                ("largest offset", 0x1fff, &seg[40..], fragment),
            ];
            // What the balancer leaves to the real: it checks neither the
            // IPv4 header checksum nor the TTL (the real's kernel does).
            let mut bad_sum = v4_frame_with(dst, &seg, &V4Opts::default());
            bad_sum[24] ^= 0x5a;
            let ttl1 = v4_frame_with(
                dst,
                &seg,
                &V4Opts {
                    ttl: 1,
                    ..V4Opts::default()
                },
            );
            for (what, frame) in [("wrong header checksum", bad_sum), ("TTL 1", ttl1)] {
                t.expect(&lb, &format!("TCP to {dst}:80 with {what}"), &frame, ok);
            }
            for (what, frag_off, l4, want) in cases {
                let frame = v4_frame_with(
                    dst,
                    l4,
                    &V4Opts {
                        frag_off,
                        ..V4Opts::default()
                    },
                );
                t.expect(
                    &lb,
                    &format!("TCP to {dst}:80, fragment field {frag_off:#06x} ({what})"),
                    &frame,
                    want,
                );
            }

            // Any port and protocol of a VIP address counts, not only the
            // VIPs' own: options and fragments carry no flow to look up.
            let udp = udp_datagram((src, dst), (40_006, 5353), &DNS_QUERY);
            let off_port = tcp_segment((src, dst), (40_007, 22), SYN, &SYN_OPTIONS, &[]);
            let with_options = V4Opts {
                options: ipv4_options(6),
                ..V4Opts::default()
            };
            let first_fragment = V4Opts {
                frag_off: 0x2000,
                ..V4Opts::default()
            };
            for (what, proto, l4, o, want) in [
                (
                    "UDP to port 5353 with options",
                    UDP,
                    &udp[..],
                    &with_options,
                    options,
                ),
                (
                    "UDP to port 5353, first fragment",
                    UDP,
                    &udp[..16],
                    &first_fragment,
                    fragment,
                ),
                (
                    "TCP SYN to port 22 with options",
                    TCP,
                    &off_port[..],
                    &with_options,
                    options,
                ),
                (
                    "TCP SYN to port 22, first fragment",
                    TCP,
                    &off_port[..24],
                    &first_fragment,
                    fragment,
                ),
            ] {
                t.expect(
                    &lb,
                    &format!("{what} at {dst}"),
                    &v4_frame_proto(dst, proto, l4, o),
                    want,
                );
            }
        }

        // Only the active configuration counts: once a VIP address is gone
        // (still in the generation just replaced), its options and
        // fragments are the kernel's.
        let mut without = lb.state.clone();
        without.vips.retain(|v| v.key.addr != VIP4_REALS6);
        let mut store = lb.dp.store().expect("map store");
        apply(&mut store, &without).expect("applying the setup without a VIP address");
        let fragment = V4Opts {
            frag_off: 0x2000,
            ..V4Opts::default()
        };
        for (dst, gone) in [(VIP4_REALS6, true), (VIP4_REALS4, false)] {
            let seg = syn_frame(dst)[34..].to_vec();
            let (options, fragment_want) = if gone {
                (Want::Pass, Want::Pass)
            } else {
                (options, FRAGMENT)
            };
            let state = if gone { "removed" } else { "kept" };
            t.expect(
                &lb,
                &format!("TCP SYN with IHL 6 to {dst} ({state} VIP address)"),
                &syn_with_ihl(dst, 6),
                options,
            );
            t.expect(
                &lb,
                &format!("TCP first fragment to {dst} ({state} VIP address)"),
                &v4_frame_with(dst, &seg[..24], &fragment),
                fragment_want,
            );
        }
    }
    t.finish("ipv4-header", "");
}

/// IP headers that contradict themselves or the frame they are in: a
/// version that is not the ethertype's, a length that ends the packet
/// before its own transport header. An IP header that lies is malformed
/// whatever the destination (those checks come first); a packet whose IP
/// header holds but whose transport header does not fit is malformed for a
/// VIP, and passed untouched otherwise: the VIP filter sends traffic that
/// is not ours to the kernel before its transport header is read.
/// Truncated packets (a length beyond the frame) are the truncation test's.
#[test]
fn self_contradicting_ip_headers_drop() {
    if !common::privileged("vectors inconsistent-ip") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        for vip in [VIP4_REALS4, VIP4_REALS6, NOT_VIP_V4] {
            let udp = udp_frame(vip, 53, &DNS_QUERY);
            let tcp = tcp_frame(vip, 80, ACK | PSH, &[], &payload(32));
            for version in [0u8, 6, 15] {
                let mut f = udp.clone();
                f[14] = (version << 4) | 5;
                fix_ipv4_checksum(&mut f);
                t.expect(
                    &lb,
                    &format!("UDP to {vip}:53 under ethertype IPv4 with IP version {version}"),
                    &f,
                    MALFORMED,
                );
            }
            for (what, frame, tot_len) in [
                ("UDP", &udp, 0u16),
                ("UDP", &udp, 19),
                ("UDP", &udp, 20),
                ("UDP", &udp, 27),
                ("TCP", &tcp, 39),
            ] {
                let mut f = frame.clone();
                f[16..18].copy_from_slice(&tot_len.to_be_bytes());
                fix_ipv4_checksum(&mut f);
                // below 20 the IP header itself lies
                let want = if vip == NOT_VIP_V4 && tot_len >= 20 {
                    Want::Pass
                } else {
                    MALFORMED
                };
                t.expect(
                    &lb,
                    &format!(
                        "{what} to {vip} with IPv4 total length {tot_len} ({} bytes present)",
                        frame.len() - 14
                    ),
                    &f,
                    want,
                );
            }
        }
        for vip in [VIP6_REALS6, VIP6_REALS4, NOT_VIP_V6] {
            let udp = udp_frame(vip, 53, &DNS_QUERY);
            let tcp = tcp_frame(vip, 80, ACK | PSH, &[], &payload(32));
            let mut f = udp.clone();
            f[14] = (4 << 4) | (f[14] & 0x0f);
            t.expect(
                &lb,
                &format!("UDP to [{vip}]:53 under ethertype IPv6 with IP version 4"),
                &f,
                MALFORMED,
            );
            for (what, frame, len) in [("UDP", &udp, 0u16), ("UDP", &udp, 7), ("TCP", &tcp, 19)] {
                let mut f = frame.clone();
                f[18..20].copy_from_slice(&len.to_be_bytes());
                t.expect(
                    &lb,
                    &format!(
                        "{what} to [{vip}] with IPv6 payload length {len} ({} bytes present)",
                        frame.len() - 54
                    ),
                    &f,
                    if vip == NOT_VIP_V6 {
                        Want::Pass
                    } else {
                        MALFORMED
                    },
                );
            }
        }
    }
    t.finish("inconsistent-ip", "");
}

fn fix_ipv4_checksum(frame: &mut [u8]) {
    frame[24] = 0;
    frame[25] = 0;
    let c = csum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

// ---- 3. IPv6 extension headers ---------------------------------------------------

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT_HDR: u8 = 44;
const DEST_OPTS: u8 = 60;

/// An 8-byte extension header with `next` after it: PadN for the option
/// headers, a fragment header otherwise (`frag` = offset << 3 | M).
fn ext_header(kind: u8, next: u8, frag: u16) -> Vec<u8> {
    match kind {
        HOP_BY_HOP | DEST_OPTS => vec![next, 0, 1, 4, 0, 0, 0, 0],
        FRAGMENT_HDR => {
            let mut h = vec![next, 0];
            h.extend(frag.to_be_bytes());
            h.extend(0x0bad_cafeu32.to_be_bytes());
            h
        }
        _ => unreachable!(),
    }
}

/// A segment routing header (type 4) with one segment, the final destination.
fn routing_header(next: u8, dst: Ipv6Addr) -> Vec<u8> {
    let mut h = vec![next, 2, 4, 0, 0, 0, 0, 0];
    h.extend(dst.octets());
    h
}

/// Extension headers, first to last: (next header value, fragment field).
type Chain = &'static [(u8, u16)];

/// IPv6 TCP to `dst`:80 behind the given chain of extension headers.
fn v6_with_chain(dst: IpAddr, chain: &[(u8, u16)], tcp_payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (client_of(dst), dst) else {
        unreachable!()
    };
    let seg = tcp_segment((client_of(dst), dst), (40_005, 80), ACK, &[], tcp_payload);
    let mut body = Vec::new();
    for (i, &(kind, frag)) in chain.iter().enumerate() {
        let next = chain.get(i + 1).map_or(TCP, |c| c.0);
        if kind == ROUTING {
            body.extend(routing_header(next, d));
        } else {
            body.extend(ext_header(kind, next, frag));
        }
    }
    body.extend(seg);
    let first = chain.first().map_or(TCP, |c| c.0);
    ip_frame(&ipv6_packet(s, d, first, &body))
}

#[test]
fn ipv6_extension_headers_pass_and_fragments_drop() {
    if !common::privileged("vectors ipv6-extension-headers") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        for dst in [VIP6_REALS6, VIP6_REALS4, NOT_VIP_V6] {
            let for_vip = dst != NOT_VIP_V6;
            // a fragment cannot be balanced: dropped at a VIP address, the
            // kernel's anywhere else
            let fragment = if for_vip { FRAGMENT } else { Want::Pass };
            let data = payload(24);
            let cases: [(&str, Chain, Want); 10] = [
                (
                    "no extension header",
                    &[],
                    if for_vip { Want::Forward } else { Want::Pass },
                ),
                ("hop-by-hop", &[(HOP_BY_HOP, 0)], Want::Pass),
                ("routing (segment routing)", &[(ROUTING, 0)], Want::Pass),
                ("destination options", &[(DEST_OPTS, 0)], Want::Pass),
                (
                    "hop-by-hop, routing, destination options",
                    &[(HOP_BY_HOP, 0), (ROUTING, 0), (DEST_OPTS, 0)],
                    Want::Pass,
                ),
                ("fragment, first (M)", &[(FRAGMENT_HDR, 1)], fragment),
                (
                    "fragment, offset 8, M",
                    &[(FRAGMENT_HDR, (8 << 3) | 1)],
                    fragment,
                ),
                (
                    "fragment, last (offset 8)",
                    &[(FRAGMENT_HDR, 8 << 3)],
                    fragment,
                ),
                (
                    "atomic fragment (offset 0, no M)",
                    &[(FRAGMENT_HDR, 0)],
                    fragment,
                ),
                (
                    "hop-by-hop, then fragment",
                    &[(HOP_BY_HOP, 0), (FRAGMENT_HDR, 1)],
                    Want::Pass,
                ),
            ];
            for (what, chain, want) in cases {
                t.expect(
                    &lb,
                    &format!("TCP to [{dst}]:80 behind {what}"),
                    &v6_with_chain(dst, chain, &data),
                    want,
                );
            }
        }
    }
    t.finish("ipv6-extension-headers", "");
}

// ---- 4. VLAN, ARP, other ethertypes ------------------------------------------------

/// `inner` (an Ethernet frame) with tags of the given TPIDs inserted after
/// the MAC addresses, outermost first.
fn tagged(inner: &[u8], tpids: &[u16]) -> Vec<u8> {
    let mut f = inner[..12].to_vec();
    for (i, tpid) in tpids.iter().enumerate() {
        f.extend(tpid.to_be_bytes());
        f.extend((100 + i as u16).to_be_bytes()); // PCP 0, VID 100, 101
    }
    f.extend(&inner[12..]);
    f
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend(CLIENT_MAC);
    a.extend(CLIENT_V4.octets());
    a.extend([0; 6]);
    a.extend(target.octets());
    let mut f = vec![0xff; 6];
    f.extend(CLIENT_MAC);
    f.extend(0x0806u16.to_be_bytes());
    f.extend(a);
    f.resize(60, 0);
    f
}

#[test]
fn vlan_arp_and_non_ip_pass_untouched() {
    if !common::privileged("vectors non-ip") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        for vip in [VIP4_REALS4, VIP6_REALS6] {
            let syn = syn_frame(vip);
            let cases = [
                ("802.1Q", vec![0x8100]),
                ("QinQ (802.1ad outer)", vec![0x88a8, 0x8100]),
                ("QinQ (double 802.1Q)", vec![0x8100, 0x8100]),
                ("QinQ (old 0x9100 outer)", vec![0x9100, 0x8100]),
            ];
            for (what, tpids) in cases {
                t.expect(
                    &lb,
                    &format!("{what}-tagged TCP SYN to {vip}:80"),
                    &tagged(&syn, &tpids),
                    Want::Pass,
                );
            }
            // The same IP packet under ethertypes that are not IP.
            let packet = &syn[14..];
            for (what, ethertype) in [
                ("MPLS unicast", 0x8847u16),
                ("PPPoE session", 0x8864),
                ("LLDP", 0x88cc),
                ("IEEE 802.3 length field", 0x05dc),
                ("ethertype 0", 0x0000),
            ] {
                t.expect(
                    &lb,
                    &format!("SYN to {vip} under {what} ({ethertype:#06x})"),
                    &ethernet(ethertype, packet),
                    Want::Pass,
                );
            }
        }
        for target in [Ipv4Addr::new(10, 200, 0, 10), Ipv4Addr::new(10, 200, 0, 99)] {
            t.expect(
                &lb,
                &format!("ARP who-has {target}"),
                &arp_request(target),
                Want::Pass,
            );
        }
        t.expect(
            &lb,
            "bare Ethernet header, IPv4 ethertype",
            &ethernet(ETH_IP, &[]),
            MALFORMED,
        );
        t.expect(
            &lb,
            "bare Ethernet header, ARP ethertype",
            &ethernet(0x0806, &[]),
            Want::Pass,
        );
    }
    t.finish("non-ip", "");
}

// ---- 5. empty payloads, GUE checksums, Ethernet padding ------------------------------

#[test]
fn empty_payloads_forward_with_valid_outer_headers() {
    if !common::privileged("vectors empty-payload") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        for (family, vip) in FAMILIES {
            for len in [0, 1, 2, 3] {
                let data = payload(len);
                let cases = [
                    ("TCP SYN", tcp_frame(vip, 80, SYN, &[], &data)),
                    ("TCP ACK", tcp_frame(vip, 80, ACK, &[], &data)),
                    ("TCP FIN|ACK", tcp_frame(vip, 80, FIN | ACK, &[], &data)),
                    ("UDP", udp_frame(vip, 53, &data)),
                ];
                for (what, frame) in cases {
                    t.expect(
                        &lb,
                        &format!("{what} to {vip} ({family}), {len}-byte payload"),
                        &frame,
                        Want::Forward,
                    );
                }
            }
        }
    }
    t.finish("empty-payload", "");
}

fn udp_frame_without_checksum(dst: IpAddr, data: &[u8]) -> Vec<u8> {
    let mut frame = udp_frame(dst, 53, data);
    assert!(!dst.is_ipv6(), "IPv6 UDP must carry a checksum");
    frame[40] = 0;
    frame[41] = 0;
    frame
}

/// UDP to `dst`:53 whose checksum field is `target`: the first payload word
/// is free, so pick it to land there.
fn udp_with_checksum(dst: IpAddr, target: u16) -> Vec<u8> {
    let at = if dst.is_ipv6() {
        14 + 40 + 6
    } else {
        14 + 20 + 6
    };
    (0..=u16::MAX)
        .map(|w| {
            let mut data = w.to_be_bytes().to_vec();
            data.extend(&DNS_QUERY[2..]);
            udp_frame(dst, 53, &data)
        })
        .find(|f| be16(f, at) == target)
        .expect("some payload word gives any checksum")
}

/// IPv4 UDP may carry checksum 0 ("not computed"). GUE's checksum is
/// derived from the inner one, so there is nothing to derive it from: the
/// GUE datagram goes without a checksum too (0; over IPv6 a zero-checksum
/// UDP tunnel, RFC 6935/6936), every other field still checked. Datagrams
/// with a checksum (0xffff, a computed 0, included) get the true one.
#[test]
fn udp_without_checksum_gets_a_zero_gue_checksum() {
    if !common::privileged("vectors udp-zero-checksum") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        for (family, vip) in FAMILIES {
            let mut cases = Vec::new();
            for len in [0, 29] {
                if !vip.is_ipv6() {
                    cases.push((
                        format!("checksum 0 (none), {len}-byte payload"),
                        udp_frame_without_checksum(vip, &DNS_QUERY[..len]),
                    ));
                }
                let frame = udp_frame(vip, 53, &DNS_QUERY[..len]);
                let sum = if vip.is_ipv6() {
                    be16(&frame, 60)
                } else {
                    be16(&frame, 40)
                };
                cases.push((format!("checksum {sum:#06x}, {len}-byte payload"), frame));
            }
            cases.push((
                "checksum 0xffff (computed 0)".into(),
                udp_with_checksum(vip, 0xffff),
            ));
            for (what, frame) in cases {
                t.expect(
                    &lb,
                    &format!("UDP to {vip}:53 ({family}), {what}"),
                    &frame,
                    Want::Forward,
                );
            }
        }
    }
    t.finish("udp-zero-checksum", "");
}

/// A minimum-size frame: a header-only TCP segment padded to 60 bytes by
/// the sender. The padding is no part of the IP packet.
#[test]
fn ethernet_padding_after_the_ip_packet() {
    if !common::privileged("vectors ethernet-padding") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        for vip in [VIP4_REALS4, VIP4_REALS6] {
            for (what, mut frame) in [
                ("TCP ACK", tcp_frame(vip, 80, ACK, &[], &[])),
                ("UDP", udp_frame(vip, 53, &[])),
            ] {
                frame.resize(60, 0);
                t.expect(
                    &lb,
                    &format!("{what} to {vip}, padded to 60 bytes"),
                    &frame,
                    Want::Forward,
                );
            }
        }
    }
    t.finish("ethernet-padding", "");
}

// ---- 6. frame size limit -------------------------------------------------------------

#[test]
fn frames_above_1514_bytes_to_a_vip_drop() {
    if !common::privileged("vectors too-big") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        for (family, vip) in FAMILIES {
            let hdr = if vip.is_ipv6() { 14 + 40 } else { 14 + 20 };
            for size in [1513usize, 1514, 1515, 1600] {
                let want = if size <= 1514 {
                    Want::Forward
                } else {
                    Want::Drop(lb_stat::STAT_DROP_TOO_BIG)
                };
                let tcp = tcp_frame(vip, 80, ACK, &[], &payload(size - hdr - 20));
                let udp = udp_frame(vip, 53, &payload(size - hdr - 8));
                assert_eq!((tcp.len(), udp.len()), (size, size));
                t.expect(
                    &lb,
                    &format!("{size}-byte TCP to {vip} ({family})"),
                    &tcp,
                    want,
                );
                t.expect(
                    &lb,
                    &format!("{size}-byte UDP to {vip} ({family})"),
                    &udp,
                    want,
                );
            }
        }
        for dst in [NOT_VIP_V4, NOT_VIP_V6] {
            let hdr = if dst.is_ipv6() { 14 + 40 } else { 14 + 20 };
            let frame = tcp_frame(dst, 80, ACK, &[], &payload(1515 - hdr - 20));
            t.expect(
                &lb,
                &format!("1515-byte TCP to non-VIP {dst}"),
                &frame,
                Want::Pass,
            );
        }
    }
    t.finish("too-big", "");
}

// ---- 7. not VIP traffic ----------------------------------------------------------------

#[test]
fn non_vip_traffic_passes_untouched() {
    if !common::privileged("vectors non-vip") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for dst in [NOT_VIP_V4, NOT_VIP_V6] {
            cases.push((format!("TCP SYN to {dst}:80"), syn_frame(dst)));
            cases.push((format!("UDP to {dst}:53"), udp_frame(dst, 53, &DNS_QUERY)));
        }
        for (_, vip) in FAMILIES {
            for port in [22, 81, 443, 65535] {
                cases.push((
                    format!("TCP SYN to VIP address {vip}, port {port}"),
                    tcp_frame(vip, port, SYN, &SYN_OPTIONS, &[]),
                ));
            }
            cases.push((
                format!("UDP to {vip}:80 (a TCP VIP)"),
                udp_frame(vip, 80, &DNS_QUERY),
            ));
            cases.push((
                format!("TCP to {vip}:53 (a UDP VIP)"),
                tcp_frame(vip, 53, SYN, &[], &[]),
            ));
            cases.push((
                format!("UDP to {vip}:5353"),
                udp_frame(vip, 5353, &DNS_QUERY),
            ));
            let src = client_of(vip);
            // SCTP common header (ports 80 -> 80) and an INIT chunk; GRE; ESP.
            let sctp = [
                0, 80, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 20, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0,
                1, 0, 0, 0, 1,
            ];
            for (what, proto, l4) in [
                ("SCTP", SCTP, &sctp[..]),
                ("GRE", 47, &[0, 0, 0x08, 0x00][..]),
                (
                    "ESP",
                    50,
                    &[0, 0, 1, 0, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef][..],
                ),
            ] {
                cases.push((
                    format!("{what} (protocol {proto}) to VIP address {vip}"),
                    ip_frame(&ip_packet(src, vip, proto, l4)),
                ));
            }
        }
        cases.push((
            "UDP to the any-port TCP VIP's address".into(),
            udp_frame(VIP_ANY_PORT, 80, &DNS_QUERY),
        ));
        for (desc, frame) in &cases {
            t.expect(&lb, desc, frame, Want::Pass);
        }
        // The contrast: an any-port VIP takes every port of its protocol.
        for port in [1, 80, 8080, 65535] {
            t.expect(
                &lb,
                &format!("TCP SYN to any-port VIP {VIP_ANY_PORT}:{port}"),
                &tcp_frame(VIP_ANY_PORT, port, SYN, &SYN_OPTIONS, &[]),
                Want::Forward,
            );
        }
    }
    t.finish("non-vip", "");
}

// ---- 8. ICMP echo ------------------------------------------------------------------------

/// An echo request whose checksum is `target`: the sequence number is the
/// one free word, so pick it to land there.
fn echo_with_checksum(dst: IpAddr, target: u16) -> Vec<u8> {
    (0..=u16::MAX)
        .map(|seq| echo_frame(dst, 0x4242, seq, &payload(8)))
        .find(|f| {
            let at = if dst.is_ipv6() {
                14 + 40 + 2
            } else {
                14 + 20 + 2
            };
            be16(f, at) == target
        })
        .expect("some sequence number gives any checksum")
}

#[test]
fn icmp_echo_to_a_vip_address_is_answered() {
    if !common::privileged("vectors icmp-echo") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        let addrs = [
            VIP4_REALS4,
            VIP4_REALS6,
            VIP_ANY_PORT,
            VIP6_REALS6,
            VIP6_REALS4,
        ];
        for dst in addrs {
            for len in [0, 1, 56, 57, 1400] {
                t.expect(
                    &lb,
                    &format!("echo request to {dst}, {len} bytes of data"),
                    &echo_frame(dst, 0x1234, len as u16, &payload(len)),
                    Want::Reply,
                );
            }
            // Requests whose reply checksum sits at the edge of the
            // incremental update (it becomes 0xffff).
            let edge = if dst.is_ipv6() { 0x0100 } else { 0xf7ff };
            t.expect(
                &lb,
                &format!("echo request to {dst}, checksum {edge:#06x}"),
                &echo_with_checksum(dst, edge),
                Want::Reply,
            );
            // Echo replies and other ICMP types are the kernel's.
            let src = client_of(dst);
            let (proto, reply, other) = if dst.is_ipv6() {
                (ICMP6, 129, 135)
            } else {
                (ICMP, 0, 13)
            };
            for kind in [reply, other] {
                let m = icmp_message((src, dst), kind, [0, 1, 0, 1], &payload(20));
                t.expect(
                    &lb,
                    &format!("ICMP type {kind} to {dst}"),
                    &ip_frame(&ip_packet(src, dst, proto, &m)),
                    Want::Pass,
                );
            }
        }
        for dst in [NOT_VIP_V4, NOT_VIP_V6] {
            t.expect(
                &lb,
                &format!("echo request to non-VIP {dst}"),
                &echo_frame(dst, 0x1234, 1, &payload(56)),
                Want::Pass,
            );
        }
    }
    t.finish("icmp-echo", "");
}

// ---- 9. TCP RST ----------------------------------------------------------------------------

#[test]
fn tcp_rst_to_a_vip_is_forwarded() {
    if !common::privileged("vectors tcp-rst") {
        return;
    }
    let mut t = Tally::default();
    for lb in Lb::both() {
        for (family, vip) in FAMILIES {
            for (what, flags) in [("RST", RST), ("RST|ACK", RST | ACK)] {
                t.expect(
                    &lb,
                    &format!("TCP {what} to {vip}:80 ({family})"),
                    &tcp_frame(vip, 80, flags, &[], &[]),
                    Want::Forward,
                );
            }
        }
    }
    t.finish("tcp-rst", "");
}

// ---- the checks themselves (no privileges needed) -------------------------------

/// The encapsulation of `frame` toward `real` as the program must build it:
/// what the output checks are shown to accept, byte changes and all.
fn reference_encap(frame: &[u8], real: IpAddr, gue: bool) -> Vec<u8> {
    let d = describe(frame);
    let inner = &frame[14..];
    let (src, proto, payload) = if gue {
        let src = match real {
            IpAddr::V4(_) => IpAddr::V4(GUE_SRC_V4),
            IpAddr::V6(_) => IpAddr::V6(GUE_SRC_V6),
        };
        let mut udp = Vec::from(gue_sport(frame, real.is_ipv6()).to_be_bytes());
        udp.extend(GUE_PORT.to_be_bytes());
        udp.extend(((8 + inner.len()) as u16).to_be_bytes());
        udp.extend([0, 0]);
        udp.extend(inner);
        if !ipv4_udp_without_checksum(frame) {
            let c = match l4_csum(src, real, UDP, &udp) {
                0 => 0xffff,
                c => c,
            };
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        }
        (src, UDP, udp)
    } else {
        let src = match real {
            IpAddr::V4(_) => v4(172, 16, 0x12, 0x34),
            IpAddr::V6(_) => v6(0x100, 0, 0x1234),
        };
        (src, if d.v6 { 41 } else { 4 }, inner.to_vec())
    };
    let packet = match (src, real) {
        (IpAddr::V4(s), IpAddr::V4(r)) => {
            let o = V4Opts {
                tos: d.tos,
                ttl: 64,
                frag_off: 0,
                options: Vec::new(),
            };
            ipv4_packet(s, r, proto, &payload, &o)
        }
        (IpAddr::V6(s), IpAddr::V6(r)) => {
            let mut p = ipv6_packet(s, r, proto, &payload);
            p[7] = 64;
            p
        }
        _ => unreachable!(),
    };
    let mut out = Vec::from(GW_MAC);
    out.extend(&frame[..6]);
    out.extend(&ethernet(if real.is_ipv6() { ETH_IPV6 } else { ETH_IP }, &packet)[12..]);
    out
}

/// The echo reply to `request` as the program must build it.
fn reference_reply(request: &[u8]) -> Vec<u8> {
    let mut r = request.to_vec();
    r[..6].copy_from_slice(&request[6..12]);
    r[6..12].copy_from_slice(&request[..6]);
    let (v6, hlen, alen, src) = if be16(request, 12) == ETH_IPV6 {
        (true, 40, 16, 22)
    } else {
        (false, 20, 4, 26)
    };
    r[src..src + alen].copy_from_slice(&request[src + alen..src + 2 * alen]);
    r[src + alen..src + 2 * alen].copy_from_slice(&request[src..src + alen]);
    let msg = 14 + hlen;
    r[msg] = if v6 { 129 } else { 0 };
    r[msg + 2] = 0;
    r[msg + 3] = 0;
    let c = if v6 {
        r[21] = 64;
        l4_csum(addr6(&r, 22), addr6(&r, 38), ICMP6, &r[msg..])
    } else {
        r[22] = 64;
        fix_ipv4_checksum(&mut r);
        csum(&r[msg..])
    };
    r[msg + 2..msg + 4].copy_from_slice(&c.to_be_bytes());
    r
}

#[test]
fn output_checks_accept_correct_frames_and_catch_every_byte_change() {
    // RFC 1071 style example header: checksum 0xb861.
    let header = [
        0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7,
    ];
    assert_eq!(csum(&header), 0xb861);

    let mut checked = 0;
    for (encap, is_gue) in [(Encap::Ipip, false), (gue(), true)] {
        let st = state(encap);
        for (family, vip) in FAMILIES {
            let real = reals_of(vip)[0];
            let mut frames = vec![syn_frame(vip), udp_frame(vip, 53, &DNS_QUERY)];
            if !vip.is_ipv6() {
                frames.push(udp_frame_without_checksum(vip, &DNS_QUERY));
            }
            for frame in frames {
                let good = reference_encap(&frame, real, is_gue);
                let errs = check_forwarded(&st, &frame, &frame, &good);
                assert!(
                    errs.is_empty(),
                    "{family}: correct output refused: {errs:?}"
                );
                // IPv6 has no header checksum: its flow label is free, and
                // so is the IP-in-IPv6 source below the prefix.
                let free = |at: usize| {
                    real.is_ipv6()
                        && ((15..18).contains(&at) || (!is_gue && (34..38).contains(&at)))
                };
                for at in (0..good.len()).filter(|&at| !free(at)) {
                    let mut bad = good.clone();
                    bad[at] ^= 0x01;
                    assert!(
                        !check_forwarded(&st, &frame, &frame, &bad).is_empty(),
                        "{family}, gue {is_gue}: byte {at} changed unnoticed"
                    );
                    checked += 1;
                }
                let short = &good[..good.len() - 1];
                let long = [&good[..], &[0]].concat();
                for bad in [short, &long[..]] {
                    assert!(!check_forwarded(&st, &frame, &frame, bad).is_empty());
                }
            }
        }
    }
    for dst in [VIP4_REALS4, VIP6_REALS6] {
        let request = echo_frame(dst, 9, 9, &payload(33));
        let good = reference_reply(&request);
        let errs = check_echo_reply(&request, &good);
        assert!(errs.is_empty(), "correct reply refused: {errs:?}");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(
                !check_echo_reply(&request, &bad).is_empty(),
                "reply from {dst}: byte {at} changed unnoticed"
            );
            checked += 1;
        }
    }
    println!("vectors self-check: {checked} single-byte corruptions, all caught");
}
