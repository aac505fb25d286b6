//! Helpers of the health-check forwarding tests: running the tc program
//! with BPF_PROG_TEST_RUN and a socket mark, and reading (and checking)
//! IP-in-IP frames.

pub mod pair;
pub mod real;

// the testbed's: one counter of namespace names in the process
pub use crate::testbed::netns;

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

use katran::kernel::markfwd::Sources;

/// tc verdicts.
pub const TC_ACT_UNSPEC: i32 = -1;
pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;

/// Runs a tc program once on `frame` as an skb carrying `mark`.
pub fn run_tc(prog: &impl AsFd, frame: &[u8], mark: u32) -> io::Result<(i32, Vec<u8>)> {
    run_tc_on(prog, frame, mark, 0)
}

/// As [`run_tc`], the skb leaving by interface `ifindex` of the calling
/// thread's namespace (0: loopback), whose MTU applies.
pub fn run_tc_on(
    prog: &impl AsFd,
    frame: &[u8],
    mark: u32,
    ifindex: u32,
) -> io::Result<(i32, Vec<u8>)> {
    // `struct __sk_buff` up to `ifindex`: mark is word 2, ifindex word 10;
    // the rest must be zero. The kernel zero-fills a shorter context.
    let mut ctx = [0u32; 11];
    ctx[2] = mark;
    ctx[10] = ifindex;
    let ctx: Vec<u8> = ctx.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 128];
    let (verdict, len, _) = katran::kernel::testrun::run_with_context(prog, frame, &ctx, &mut out)
        .map_err(|e| {
            e.downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error)
                .map_or_else(
                    || io::Error::other(format!("{e:#}")),
                    io::Error::from_raw_os_error,
                )
        })?;
    out.truncate(len);
    Ok((verdict as i32, out))
}

use crate::common::frames;

/// The outer IP header of an encapsulated (or any IP) frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outer {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    /// IP protocol / IPv6 next header.
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub tos: u8,
    /// IPv4 total length or IPv6 payload length, as written.
    pub len_field: u16,
    /// Bytes of the outer IP header: the inner packet starts at 14 + this.
    pub hdr_len: usize,
    /// IPv4 header checksum verifies (always true for IPv6).
    pub csum_ok: bool,
    pub id_frag: [u8; 4],
}

pub fn outer(f: &[u8]) -> Option<Outer> {
    let eth_dst = f.get(0..6)?.try_into().ok()?;
    let eth_src = f.get(6..12)?.try_into().ok()?;
    match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x0800 => {
            let h = f.get(14..34)?;
            Some(Outer {
                eth_dst,
                eth_src,
                proto: h[9],
                src: IpAddr::from(<[u8; 4]>::try_from(&h[12..16]).ok()?),
                dst: IpAddr::from(<[u8; 4]>::try_from(&h[16..20]).ok()?),
                ttl: h[8],
                tos: h[1],
                len_field: u16::from_be_bytes([h[2], h[3]]),
                hdr_len: usize::from(h[0] & 0x0f) * 4,
                csum_ok: h[0] == 0x45 && frames::csum_ok(h),
                id_frag: h[4..8].try_into().ok()?,
            })
        }
        0x86dd => {
            let h = f.get(14..54)?;
            Some(Outer {
                eth_dst,
                eth_src,
                proto: h[6],
                src: IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?),
                dst: IpAddr::from(<[u8; 16]>::try_from(&h[24..40]).ok()?),
                ttl: h[7],
                tos: (h[0] << 4) | (h[1] >> 4),
                len_field: u16::from_be_bytes([h[4], h[5]]),
                hdr_len: 40,
                csum_ok: h[0] >> 4 == 6 && h[1] & 0x0f == 0 && h[2] == 0 && h[3] == 0,
                id_frag: [0; 4],
            })
        }
        _ => None,
    }
}

/// Whether the TCP or UDP checksum of the IP packet `p` verifies.
pub fn l4_csum_ok(p: &[u8]) -> bool {
    let (proto, l4, mut pseudo) = match p.first().map(|b| b >> 4) {
        Some(4) => {
            let hl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let l4 = &p[hl..total];
            let mut ps = p[12..20].to_vec();
            ps.extend_from_slice(&[0, p[9]]);
            ps.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            (p[9], l4, ps)
        }
        Some(6) => {
            let plen = usize::from(u16::from_be_bytes([p[4], p[5]]));
            let l4 = &p[40..40 + plen];
            let mut ps = p[8..40].to_vec();
            ps.extend_from_slice(&(l4.len() as u32).to_be_bytes());
            ps.extend_from_slice(&[0, 0, 0, p[6]]);
            (p[6], l4, ps)
        }
        _ => return false,
    };
    if proto != 6 && proto != 17 {
        return false;
    }
    pseudo.extend_from_slice(l4);
    frames::csum_ok(&pseudo)
}

/// Which captured frames a test waits for.
pub type Filter<'a> = Box<dyn Fn(&[u8]) -> bool + 'a>;

/// A capture filter: the frame holds `needle` somewhere.
pub fn contains(needle: &[u8]) -> Filter<'_> {
    Box::new(move |f| f.windows(needle.len()).any(|w| w == needle))
}

/// The IP packet inside an IP-in-IP frame whose outer protocol is `proto`.
fn inner_of(f: &[u8], proto: u8) -> Option<&[u8]> {
    let o = outer(f).filter(|o| o.proto == proto)?;
    f.get(14 + o.hdr_len..)
}

/// A TCP SYN to `port` inside an IP-in-IP frame of outer protocol `proto`
/// (4: IPv4 inner, 41: IPv6 inner).
pub fn syn_to(f: &[u8], proto: u8, port: u16) -> bool {
    let Some(p) = inner_of(f, proto) else {
        return false;
    };
    let (l4_proto, tcp) = match p.first().map(|b| b >> 4) {
        Some(4) => (p.get(9), p.get(usize::from(p[0] & 0x0f) * 4..)),
        Some(6) => (p.get(6), p.get(40..)),
        _ => return false,
    };
    matches!((l4_proto, tcp), (Some(6), Some(t)) if t.len() >= 20
        && u16::from_be_bytes([t[2], t[3]]) == port && t[13] & 0x02 != 0)
}

/// What a captured frame must look like.
pub struct Expect {
    /// Ethernet destination of encapsulated frames.
    pub gw: [u8; 6],
    /// Ethernet destination of frames left alone (the route's next hop).
    pub next_hop: [u8; 6],
    pub sources: Sources,
}

impl Expect {
    /// `f` carries a packet to `dst`: encapsulated toward `real`, or
    /// untouched when `real` is `None`; every checksum verifies.
    pub fn check(&self, f: &[u8], tag: &str, dst: IpAddr, real: Option<IpAddr>) {
        let o = outer(f).unwrap_or_else(|| panic!("{tag}: not IP"));
        let inner = match real {
            Some(real) => {
                assert_eq!(o.eth_dst, self.gw, "{tag}");
                assert_eq!(o.dst, real, "{tag}");
                let src: Option<IpAddr> = match real {
                    IpAddr::V4(_) => self.sources.v4.map(Into::into),
                    IpAddr::V6(_) => self.sources.v6.map(Into::into),
                };
                assert_eq!(Some(o.src), src, "{tag}");
                assert_eq!(o.proto, if dst.is_ipv6() { 41 } else { 4 }, "{tag}");
                assert_eq!(o.ttl, 64, "{tag}");
                assert!(o.csum_ok, "{tag}: outer header checksum");
                &f[14 + o.hdr_len..]
            }
            None => {
                assert_eq!(o.eth_dst, self.next_hop, "{tag}: not for the next hop");
                assert!(o.proto == 6 || o.proto == 17, "{tag}: encapsulated");
                &f[14..]
            }
        };
        assert!(l4_csum_ok(inner), "{tag}: inner transport checksum");
        let inner_dst = match inner[0] >> 4 {
            4 => IpAddr::from(<[u8; 4]>::try_from(&inner[16..20]).expect("4 bytes")),
            _ => IpAddr::from(<[u8; 16]>::try_from(&inner[24..40]).expect("16 bytes")),
        };
        assert_eq!(inner_dst, dst, "{tag}: inner destination");
    }
}
