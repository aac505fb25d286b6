//! `katran explain --json`: the flow, the VIP it matched, what was hashed
//! (named fields, not a tuple), the ring slot and the real; with `--live`,
//! the connection-table entry.

use std::net::IpAddr;

use serde::Serialize;

use crate::explain::Explanation;

#[derive(Debug, Serialize)]
pub struct Flow {
    pub source: IpAddr,
    pub source_port: u16,
    pub destination: IpAddr,
    pub destination_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// The inputs of the flow hash after the VIP's flags are applied.
#[derive(Debug, Serialize)]
pub struct Hashed {
    pub source: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
}

#[derive(Debug, Serialize)]
pub struct Explain {
    pub format_version: u32,
    /// `file` (the configuration file) or `live` (the pinned maps).
    pub from: &'static str,
    pub flow: Flow,
    /// The VIP that matched (`ADDRESS:PORT/PROTO`); `null`: no VIP, the
    /// packet goes to the kernel.
    pub vip: Option<String>,
    pub flags: Vec<&'static str>,
    pub hashed: Option<Hashed>,
    pub hash: Option<u32>,
    pub slot: Option<u32>,
    /// The real new connections go to; `null` for a VIP without reals.
    pub real: Option<IpAddr>,
    /// With `--live`: the real the connection table pins this flow to.
    pub connection_table: Option<IpAddr>,
}

impl Explain {
    pub fn new(e: &Explanation, live: bool, conn: Option<IpAddr>) -> Explain {
        Explain {
            format_version: super::FORMAT_VERSION,
            from: if live { "live" } else { "file" },
            flow: Flow {
                source: e.flow.src,
                source_port: e.flow.sport,
                destination: e.flow.dst,
                destination_port: e.flow.dport,
                proto: e.flow.proto.to_string(),
            },
            vip: e.vip.clone(),
            flags: e.flags.clone(),
            hashed: e
                .hashed
                .map(|(source, source_port, destination_port)| Hashed {
                    source,
                    source_port,
                    destination_port,
                }),
            hash: e.hash,
            slot: e.slot,
            real: e.real,
            connection_table: conn,
        }
    }
}
