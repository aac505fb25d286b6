//! `katran status --json`: the live configuration read back from the maps
//! (spelled as the file spells it: `maglev-v2`, flag names), the dataplane's
//! build and attachments, announcements, and what the daemon reports —
//! health as objects, every attached interface — with `condition`, the
//! same verdict as the text command's exit code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::Serialize;

use crate::files::status_file::{DaemonStatus, Event, FailureKind};
use crate::model::{Encap, RingKind, State};

/// The file's word for a ring kind.
pub fn ring_name(r: RingKind) -> &'static str {
    match r {
        RingKind::MaglevV2 => "maglev-v2",
        RingKind::MaglevV1 => "maglev-v1",
    }
}

#[derive(Debug, Serialize)]
pub struct Attachment {
    pub interface: String,
    /// `native`, `generic`, or what is known when the interface is in
    /// another network namespace.
    pub mode: String,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EncapDoc {
    Ipip,
    Gue {
        port: u16,
        source_v4: Ipv4Addr,
        source_v6: Ipv6Addr,
    },
}

#[derive(Debug, Serialize)]
pub struct Real {
    pub address: IpAddr,
    /// As in the file.
    pub weight: u32,
    /// What the ring is built with: 0 while drained by a failing check.
    pub effective_weight: u32,
    pub drained: bool,
}

#[derive(Debug, Serialize)]
pub struct Vip {
    /// `ADDRESS:PORT/PROTO`.
    pub vip: String,
    pub address: IpAddr,
    pub port: u16,
    pub proto: String,
    pub flags: Vec<&'static str>,
    pub reals: Vec<Real>,
}

#[derive(Debug, Serialize)]
pub struct ServerId {
    pub id: u32,
    pub real: IpAddr,
}

#[derive(Debug, Serialize)]
pub struct Live {
    pub gateway_mac: String,
    pub encap: EncapDoc,
    /// `maglev-v2` or `maglev-v1`, as in the file.
    pub ring: &'static str,
    pub vips: Vec<Vip>,
    pub server_ids: Vec<ServerId>,
    pub down_reals: Vec<IpAddr>,
}

impl Live {
    pub fn new(s: &State) -> Live {
        Live {
            gateway_mac: s.globals.gateway_mac.to_string(),
            encap: match s.globals.encap {
                Encap::Ipip => EncapDoc::Ipip,
                Encap::Gue {
                    port,
                    src_v4,
                    src_v6,
                } => EncapDoc::Gue {
                    port,
                    source_v4: src_v4,
                    source_v6: src_v6,
                },
            },
            ring: ring_name(s.ring),
            vips: s
                .vips
                .iter()
                .map(|v| Vip {
                    vip: v.key.to_string(),
                    address: v.key.addr,
                    port: v.key.port,
                    proto: v.key.proto.to_string(),
                    flags: v.flags.names(),
                    reals: v
                        .reals
                        .iter()
                        .map(|r| Real {
                            address: r.addr,
                            weight: r.weight,
                            effective_weight: s.ring_weight(&v.key, r),
                            drained: s.drained.contains(&(v.key, r.addr)),
                        })
                        .collect(),
                })
                .collect(),
            server_ids: s
                .server_ids
                .iter()
                .map(|(id, real)| ServerId {
                    id: *id,
                    real: *real,
                })
                .collect(),
            down_reals: s.down_reals.clone(),
        }
    }
}

/// One real's health: the daemon's record, with the VIP and real inline.
#[derive(Debug, Serialize)]
pub struct Health {
    pub vip: String,
    pub real: String,
    #[serde(flatten)]
    pub health: katran_core::health::tracker::RealHealth,
}

#[derive(Debug, Serialize)]
pub struct Daemon {
    pub pid: u32,
    /// Whether that process still exists.
    pub running: bool,
    pub config: String,
    /// Unix seconds.
    pub started: u64,
    pub last_applied: Option<Event>,
    pub last_error: Option<Event>,
    /// What the last failed reload met: file, host, capacity or kernel.
    pub last_error_kind: Option<FailureKind>,
    /// Failed reloads since the last good one.
    pub failures: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Configurations applied since the daemon started.
    pub generation: u64,
    pub external_change: Option<Event>,
    pub dataplane_missing: Option<Event>,
    pub attached: Vec<Attachment>,
    pub health: Vec<Health>,
    pub all_reals_down: Vec<String>,
}

impl Daemon {
    pub fn new(d: &DaemonStatus, running: bool) -> Daemon {
        Daemon {
            pid: d.pid,
            running,
            config: d.config.clone(),
            started: d.started,
            last_applied: d.last_applied.clone(),
            last_error: d.last_error.clone(),
            last_error_kind: d.last_error_kind,
            failures: d.failures,
            reloads_ok: d.reloads_ok,
            reloads_failed: d.reloads_failed,
            generation: d.generation,
            external_change: d.external_change.clone(),
            dataplane_missing: d.dataplane_missing.clone(),
            attached: d
                .attached
                .iter()
                .map(|(interface, mode)| Attachment {
                    interface: interface.clone(),
                    mode: mode.clone(),
                })
                .collect(),
            health: d
                .health
                .iter()
                .map(|(vip, real, h)| Health {
                    vip: vip.clone(),
                    real: real.clone(),
                    health: h.clone(),
                })
                .collect(),
            all_reals_down: d.all_reals_down.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Announced {
    pub address: IpAddr,
    pub table: u32,
}

#[derive(Debug, Serialize)]
pub struct NotAnnounced {
    pub address: IpAddr,
    pub why: String,
}

/// What `katran status` concludes; its exit code says the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Exit 0.
    Ok,
    /// Exit 4: the last reload failed, the dataplane is not in place, or
    /// every real of a VIP fails its check.
    Degraded,
    /// Exit 3.
    NoDataplane,
    /// Exit 1: pinned by a build this katran cannot read.
    Unreadable,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub format_version: u32,
    pub condition: Condition,
    pub pin_dir: PathBuf,
    /// The active half of the double-buffered configuration (0 or 1).
    pub generation: Option<u8>,
    pub program_id: Option<u32>,
    /// The pinned dataplane's build stamp.
    pub build: Option<String>,
    /// This katran's build stamp.
    pub this_build: &'static str,
    /// Why the dataplane could not be read (`condition` = `unreadable`).
    pub error: Option<String>,
    pub attached: Vec<Attachment>,
    /// `null`: nothing applied.
    pub live: Option<Live>,
    /// `null`: no status file (no daemon).
    pub daemon: Option<Daemon>,
    pub announced: Vec<Announced>,
    pub not_announced: Vec<NotAnnounced>,
    /// `katran drain` is in force.
    pub drained: bool,
}
