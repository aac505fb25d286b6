//! Minimal frame building and reading for tests: Ethernet + IPv4/IPv6 +
//! TCP/UDP with correct checksums, and the outer fields of encapsulated frames.

use std::net::IpAddr;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_RST: u8 = 0x04;

/// Sum of big-endian 16-bit words (an odd last byte padded with zero).
fn sum16(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// One's complement fold of a sum of 16-bit words.
fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data` (checksum field zeroed by the caller).
pub fn csum(data: &[u8]) -> u16 {
    !fold(sum16(data))
}

/// Whether `data`, checksum field included, verifies.
pub fn csum_ok(data: &[u8]) -> bool {
    fold(sum16(data)) == 0xffff
}

/// The pseudo header a TCP, UDP or ICMPv6 checksum covers.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.extend(s.octets());
            b.extend(d.octets());
            b.extend([0, proto]);
            b.extend((len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b.extend(s.octets());
            b.extend(d.octets());
            b.extend((len as u32).to_be_bytes());
            b.extend([0, 0, 0, proto]);
        }
        _ => panic!("pseudo header of mixed families"),
    }
    b
}

/// The transport checksum of `segment` (its checksum field zeroed).
pub fn l4_csum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let mut b = pseudo_header(src, dst, proto, segment.len());
    b.extend(segment);
    csum(&b)
}

/// A TCP (`proto` 6, with `flags`) or UDP (17) packet from `src` to `dst`.
pub fn packet(
    proto: u8,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.1.to_be_bytes());
    l4.extend_from_slice(&dst.1.to_be_bytes());
    if proto == 6 {
        l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0x20, 0, 0, 0, 0, 0]);
    } else {
        l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(payload);
    let len = l4.len();
    let mut f = Vec::new();
    f.extend_from_slice(&LB_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + len) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = csum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(len as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed address families"),
    };
    let ck_off = if proto == 6 { 16 } else { 6 };
    let c = l4_csum(src.0, dst.0, proto, &l4);
    l4[ck_off..ck_off + 2].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&l4);
    f
}

pub fn tcp(src: (IpAddr, u16), dst: (IpAddr, u16), flags: u8) -> Vec<u8> {
    packet(6, src, dst, flags, b"")
}

/// The outer destination of an IP-in-IP frame.
pub fn outer_dst(frame: &[u8]) -> Option<IpAddr> {
    match u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) {
        0x0800 => {
            let b: [u8; 4] = frame.get(30..34)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        0x86dd => {
            let b: [u8; 16] = frame.get(38..54)?.try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// Destination MAC of a frame.
pub fn eth_dst(frame: &[u8]) -> [u8; 6] {
    frame[..6]
        .try_into()
        .expect("a frame has an Ethernet header")
}
