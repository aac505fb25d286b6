//! `katran explain`: which real a flow goes to, and why — the same steps
//! the dataplane takes for a packet that is not routed by a server id: VIP
//! match (exact, then port 0), the hashing flags, the flow hash, the ring
//! slot, the real in it. Pure: works from a `State` (a file, or the live
//! maps read back).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::hash::{flow_hash, real_hash};
use crate::maglev::{self, Endpoint};
use crate::model::{Proto, State, Vip, VipKey};

/// One direction of a flow, client to VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub proto: Proto,
}

/// Parses `SRC:PORT` and `VIP:PORT/PROTO` (IPv6 in brackets).
pub fn parse_flow(src: &str, dst: &str) -> Result<Flow> {
    let s: SocketAddr = src
        .parse()
        .with_context(|| format!("`{src}` is not ADDRESS:PORT (IPv6 as [ADDR]:PORT)"))?;
    let (d, proto) = dst.rsplit_once('/').unwrap_or((dst, "tcp"));
    let d: SocketAddr = d
        .parse()
        .with_context(|| format!("`{dst}` is not VIP:PORT/PROTO (IPv6 as [ADDR]:PORT/tcp)"))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => bail!("protocol `{other}` is not tcp or udp"),
    };
    if s.is_ipv4() != d.is_ipv4() {
        bail!("client and VIP must be of the same address family");
    }
    Ok(Flow {
        src: s.ip(),
        sport: s.port(),
        dst: d.ip(),
        dport: d.port(),
        proto,
    })
}

/// The VIP a flow belongs to, by the dataplane's rules (bpf/balancer.bpf.c,
/// `process`): the VIP of its own port, else the VIP of port 0 (any port).
pub struct VipMatch<'a> {
    pub vip: &'a Vip,
    /// Matched through the VIP's port 0.
    pub any_port: bool,
}

pub fn find_vip<'a>(state: &'a State, flow: &Flow) -> Option<VipMatch<'a>> {
    let find = |port| {
        state.vips.iter().find(|v| {
            v.key
                == VipKey {
                    addr: flow.dst,
                    port,
                    proto: flow.proto,
                }
        })
    };
    match find(flow.dport) {
        Some(vip) => Some(VipMatch {
            vip,
            any_port: false,
        }),
        None => find(0).map(|vip| VipMatch {
            vip,
            any_port: true,
        }),
    }
}

impl VipMatch<'_> {
    /// The flow as the dataplane keeps it once the VIP is found, which is
    /// how the connection table keys it: no source port for a
    /// `no-src-port` VIP, destination port 0 when matched through port 0
    /// (unless the VIP hashes on the destination port).
    pub fn table_flow(&self, flow: &Flow) -> Flow {
        let mut f = *flow;
        if self.vip.flags.no_src_port {
            f.sport = 0;
        }
        if self.any_port && !self.vip.flags.dport_hash {
            f.dport = 0;
        }
        f
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub flow: Flow,
    /// The VIP that matched, if any.
    pub vip: Option<String>,
    pub flags: Vec<&'static str>,
    /// What was hashed: source address, source port, destination port.
    pub hashed: Option<(IpAddr, u16, u16)>,
    pub hash: Option<u32>,
    pub slot: Option<u32>,
    /// The real the ring names; `None` for a VIP without reals.
    pub real: Option<IpAddr>,
}

/// Rings already built, by VIP, for explaining many flows.
#[derive(Default)]
pub struct RingCache(std::collections::HashMap<VipKey, Vec<u32>>);

/// The dataplane's choice for a new flow under `state`.
pub fn explain(state: &State, ring_size: u32, flow: Flow) -> Explanation {
    explain_cached(state, ring_size, flow, &mut RingCache::default())
}

/// As [`explain`], reusing rings across calls.
pub fn explain_cached(
    state: &State,
    ring_size: u32,
    flow: Flow,
    cache: &mut RingCache,
) -> Explanation {
    let mut out = Explanation {
        flow,
        vip: None,
        flags: Vec::new(),
        hashed: None,
        hash: None,
        slot: None,
        real: None,
    };
    let Some(m) = find_vip(state, &flow) else {
        return out;
    };
    let vip = m.vip;
    out.vip = Some(vip.key.to_string());
    out.flags = vip.flags.names();
    let kept = m.table_flow(&flow);
    let (mut src, mut sport, dport) = (kept.src, kept.sport, kept.dport);
    // a dport-hash VIP hashes its destination port alone
    if vip.flags.dport_hash {
        sport = dport;
        src = if src.is_ipv4() {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u8; 16])
        };
    }
    let hash = flow_hash(src, sport, dport);
    let slot = hash % ring_size;
    let ring = cache.0.entry(vip.key).or_insert_with(|| {
        let endpoints: Vec<Endpoint> = vip
            .reals
            .iter()
            .enumerate()
            .map(|(i, b)| Endpoint {
                id: i as u32 + 1,
                hash: real_hash(b.addr),
                weight: b.weight,
            })
            .collect();
        maglev::build(state.ring, &endpoints, ring_size)
    });
    let id = ring[slot as usize];
    out.hashed = Some((src, sport, dport));
    out.hash = Some(hash);
    out.slot = Some(slot);
    out.real = (id > 0).then(|| vip.reals[id as usize - 1].addr);
    out
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fl = &self.flow;
        writeln!(
            f,
            "flow {} -> {}/{}",
            std::net::SocketAddr::new(fl.src, fl.sport),
            std::net::SocketAddr::new(fl.dst, fl.dport),
            fl.proto
        )?;
        let Some(vip) = &self.vip else {
            return writeln!(
                f,
                "no VIP matches: the packet goes to the kernel (XDP_PASS)"
            );
        };
        write!(f, "matches VIP {vip}")?;
        if !self.flags.is_empty() {
            write!(f, " [{}]", self.flags.join(", "))?;
        }
        writeln!(f)?;
        if let (Some((s, sp, dp)), Some(h), Some(slot)) = (self.hashed, self.hash, self.slot) {
            writeln!(f, "hashed (source {s}, source port {sp}, destination port {dp}) = {h:#010x}, ring slot {slot}")?;
        }
        match self.real {
            Some(r) => writeln!(f, "new connections go to real {r}"),
            None => writeln!(
                f,
                "the VIP has no reals with weight > 0: packets are dropped"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_print_as_they_are_written_ipv6_in_brackets() {
        let flow = parse_flow("[2001:db8::7]:40000", "[2001:db8::1]:443/tcp").unwrap();
        let text = explain(&State::default(), 4099, flow).to_string();
        assert!(
            text.starts_with("flow [2001:db8::7]:40000 -> [2001:db8::1]:443/tcp\n"),
            "{text}"
        );
        let flow = parse_flow("10.0.0.7:40000", "10.0.0.1:80/udp").unwrap();
        let text = explain(&State::default(), 4099, flow).to_string();
        assert!(
            text.starts_with("flow 10.0.0.7:40000 -> 10.0.0.1:80/udp\n"),
            "{text}"
        );
    }

    #[test]
    fn the_table_keys_a_flow_as_the_dataplane_keeps_it() {
        use crate::model::VipFlags;
        let vip = |port, flags| Vip {
            key: VipKey {
                addr: "10.0.0.1".parse().unwrap(),
                port,
                proto: Proto::Tcp,
            },
            flags,
            reals: Vec::new(),
        };
        let flow = parse_flow("192.0.2.7:40000", "10.0.0.1:80/tcp").unwrap();
        let keyed = |vips: Vec<Vip>| {
            let state = State {
                vips,
                ..State::default()
            };
            let m = find_vip(&state, &flow).expect("a VIP");
            let f = m.table_flow(&flow);
            (m.any_port, f.sport, f.dport)
        };
        // its own port first, even beside a port-0 VIP
        let any = vip(0, VipFlags::default());
        assert_eq!(
            keyed(vec![any.clone(), vip(80, VipFlags::default())]),
            (false, 40000, 80)
        );
        assert_eq!(keyed(vec![any]), (true, 40000, 0));
        let dport_hash = VipFlags {
            dport_hash: true,
            ..VipFlags::default()
        };
        assert_eq!(keyed(vec![vip(0, dport_hash)]), (true, 40000, 80));
        let no_src_port = VipFlags {
            no_src_port: true,
            ..VipFlags::default()
        };
        assert_eq!(keyed(vec![vip(80, no_src_port)]), (false, 0, 80));
    }
}
