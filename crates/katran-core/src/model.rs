//! The load balancer's state as plain data: what the file asks for and what
//! the live maps hold are both a [`State`], so they can be compared.
//!
//! Nothing here touches the kernel; `config` produces a `State` from TOML,
//! `bpf::writer` programs one into the maps and reads one back.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Transport protocol of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl serde::Serialize for Proto {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// What identifies a VIP: address, port (0 = every port) and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKey {
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for VipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.proto),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.proto),
        }
    }
}

/// Per-VIP behaviour switches. Each is its own field: no shared bit values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipFlags {
    /// Hash without the source port: one client address, one real.
    pub no_src_port: bool,
    /// Hash on the destination port alone (source address and port ignored).
    pub dport_hash: bool,
    /// Never use the connection table (every packet is hashed).
    pub no_conn_table: bool,
    /// Route by QUIC connection id (UDP only).
    pub quic: bool,
    /// Move UDP flows of reals marked down to another real.
    pub udp_flow_migration: bool,
}

impl VipFlags {
    /// The names used in the file and in plans, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.no_src_port, "no-src-port"),
            (self.dport_hash, "dport-hash"),
            (self.no_conn_table, "no-conn-table"),
            (self.quic, "quic"),
            (self.udp_flow_migration, "udp-flow-migration"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }
}

/// A real behind a VIP. Weight 0 drains it: no new flows, existing stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    pub addr: IpAddr,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub key: VipKey,
    pub flags: VipFlags,
    pub reals: Vec<Backend>,
}

/// How frames travel to the reals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// IPv4/IPv6 in IPv4/IPv6 (protocols 4 and 41).
    Ipip,
    /// GUE: a UDP header to `port`, from the given outer sources.
    Gue {
        port: u16,
        src_v4: Ipv4Addr,
        src_v6: Ipv6Addr,
    },
}

/// Which Maglev variant fills the rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingKind {
    /// Katran's ring: weight positions in the first round, then one per round.
    MaglevV1,
    /// Proportional weights.
    MaglevV2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "`{s}` is not a MAC address (six hex bytes separated by ':')"
            ));
        }
        let mut mac = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(format!(
                    "`{s}` is not a MAC address: byte `{p}` must be two hex digits"
                ));
            }
            mac[i] = u8::from_str_radix(p, 16)
                .map_err(|_| format!("`{s}` is not a MAC address: `{p}` is not hex"))?;
        }
        Ok(MacAddr(mac))
    }
}

/// Dataplane-wide settings that change atomically with the VIPs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Globals {
    pub gateway_mac: MacAddr,
    pub encap: Encap,
    /// Option kind of TCP server-id routing; `None` = off.
    pub tcp_server_id_kind: Option<u8>,
    /// IP-in-IPv4 outer sources are `a.b.x.y`: the first two bytes from here.
    pub src_v4_prefix: Ipv4Addr,
    /// IP-in-IPv6 outer sources: the first twelve bytes from here.
    pub src_v6_prefix: Ipv6Addr,
    /// New flows per second per CPU above which inserts stop; 0 = no limit.
    pub max_conn_rate: u32,
    pub udp_timeout_s: u32,
    /// Frames to a VIP longer than this are dropped; 0 = no limit.
    pub max_frame_len: u16,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            gateway_mac: MacAddr::default(),
            encap: Encap::Ipip,
            tcp_server_id_kind: None,
            src_v4_prefix: Ipv4Addr::new(172, 16, 0, 0),
            src_v6_prefix: Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
            max_conn_rate: 125_000,
            udp_timeout_s: 30,
            max_frame_len: 1514,
        }
    }
}

/// Everything the dataplane forwards by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub globals: Globals,
    pub ring: RingKind,
    /// In file order.
    pub vips: Vec<Vip>,
    /// Server id (QUIC connection id, TCP option) -> real address.
    pub server_ids: BTreeMap<u32, IpAddr>,
    /// Reals whose UDP flows migrate away (VIPs with `udp-flow-migration`).
    pub down_reals: Vec<IpAddr>,
    /// Health verdicts: reals of a VIP drained because their health check
    /// fails. Their ring is built as if their weight were 0; the file's
    /// weight is kept. Part of the live state, so every apply sees them.
    pub drained: BTreeSet<(VipKey, IpAddr)>,
}

impl State {
    /// The weight the ring is built with: 0 for a drained real.
    pub fn ring_weight(&self, vip: &VipKey, real: &Backend) -> u32 {
        if self.drained.contains(&(*vip, real.addr)) {
            0
        } else {
            real.weight
        }
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            globals: Globals::default(),
            ring: RingKind::MaglevV2,
            vips: Vec::new(),
            server_ids: BTreeMap::new(),
            down_reals: Vec::new(),
            drained: BTreeSet::new(),
        }
    }
}
