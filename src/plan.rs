//! What applying a file would change, for people (`katran apply --dry-run`,
//! `katran diff`) and for tools (`--json`). Pure: compares two `State`s.
//!
//! VIPs and reals are compared by identity (VIP key, real address), never by
//! position, so reordering a file changes nothing. For every VIP whose reals
//! or weights change, both rings are computed and the moved slots counted:
//! that number is how much traffic is reshuffled.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::hash::real_hash;
use crate::maglev::{self, Endpoint};
use crate::model::{Backend, RingKind, State, Vip, VipKey};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// A dataplane-wide setting (gateway MAC, encapsulation, ...).
    Setting {
        name: String,
        from: String,
        to: String,
    },
    AddVip {
        vip: String,
        flags: Vec<String>,
        reals: usize,
    },
    RemoveVip {
        vip: String,
    },
    VipFlags {
        vip: String,
        from: Vec<String>,
        to: Vec<String>,
    },
    AddReal {
        vip: String,
        real: IpAddr,
        weight: u32,
    },
    RemoveReal {
        vip: String,
        real: IpAddr,
    },
    Weight {
        vip: String,
        real: IpAddr,
        from: u32,
        to: u32,
    },
    /// Ring slots of the VIP that now point at another real.
    RingMoves {
        vip: String,
        slots: u32,
        of: u32,
    },
    ServerId {
        id: u32,
        from: Option<IpAddr>,
        to: Option<IpAddr>,
    },
    DownReal {
        real: IpAddr,
        down: bool,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// True when there was no live configuration to compare with.
    pub from_empty: bool,
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// One line: how many changes of each kind.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no changes".into();
        }
        let count = |p: fn(&Change) -> bool| self.changes.iter().filter(|c| p(c)).count();
        format!(
            "{} change(s): {} VIP(s) added, {} removed; {} real(s) added, {} removed, {} reweighted; {} ring slot(s) move",
            self.changes.iter().filter(|c| !matches!(c, Change::RingMoves { .. })).count(),
            count(|c| matches!(c, Change::AddVip { .. })),
            count(|c| matches!(c, Change::RemoveVip { .. })),
            count(|c| matches!(c, Change::AddReal { .. })),
            count(|c| matches!(c, Change::RemoveReal { .. })),
            count(|c| matches!(c, Change::Weight { .. })),
            self.changes
                .iter()
                .map(|c| match c {
                    Change::RingMoves { slots, .. } => u64::from(*slots),
                    _ => 0,
                })
                .sum::<u64>(),
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// A ring whose slots name real addresses by a stable id, so rings of two
/// states can be compared slot by slot.
fn ring_of(reals: &[Backend], kind: RingKind, size: u32, ids: &BTreeMap<IpAddr, u32>) -> Vec<u32> {
    let endpoints: Vec<Endpoint> = reals
        .iter()
        .map(|b| Endpoint {
            id: ids[&b.addr],
            hash: real_hash(b.addr),
            weight: b.weight,
        })
        .collect();
    maglev::build(kind, &endpoints, size)
}

fn settings(live: &State, want: &State) -> Vec<Change> {
    let (a, b) = (&live.globals, &want.globals);
    let mut out = Vec::new();
    let mut cmp = |name: &str, from: String, to: String| {
        if from != to {
            out.push(Change::Setting {
                name: name.into(),
                from,
                to,
            });
        }
    };
    cmp(
        "gateway_mac",
        a.gateway_mac.to_string(),
        b.gateway_mac.to_string(),
    );
    cmp("encap", format!("{:?}", a.encap), format!("{:?}", b.encap));
    cmp(
        "ring",
        format!("{:?}", live.ring),
        format!("{:?}", want.ring),
    );
    cmp(
        "tcp_server_id",
        format!("{:?}", a.tcp_server_id_kind),
        format!("{:?}", b.tcp_server_id_kind),
    );
    cmp(
        "outer_source_v4_prefix",
        a.src_v4_prefix.to_string(),
        b.src_v4_prefix.to_string(),
    );
    cmp(
        "outer_source_v6_prefix",
        a.src_v6_prefix.to_string(),
        b.src_v6_prefix.to_string(),
    );
    cmp(
        "max_conn_rate",
        a.max_conn_rate.to_string(),
        b.max_conn_rate.to_string(),
    );
    cmp(
        "udp_timeout",
        a.udp_timeout_s.to_string(),
        b.udp_timeout_s.to_string(),
    );
    cmp(
        "max_frame_len",
        a.max_frame_len.to_string(),
        b.max_frame_len.to_string(),
    );
    out
}

fn reals_changes(vip: &str, old: &[Backend], new: &[Backend]) -> Vec<Change> {
    let o: BTreeMap<IpAddr, u32> = old.iter().map(|b| (b.addr, b.weight)).collect();
    let n: BTreeMap<IpAddr, u32> = new.iter().map(|b| (b.addr, b.weight)).collect();
    let mut out = Vec::new();
    for (addr, w) in &n {
        match o.get(addr) {
            None => out.push(Change::AddReal {
                vip: vip.into(),
                real: *addr,
                weight: *w,
            }),
            Some(ow) if ow != w => out.push(Change::Weight {
                vip: vip.into(),
                real: *addr,
                from: *ow,
                to: *w,
            }),
            Some(_) => {}
        }
    }
    for addr in o.keys().filter(|a| !n.contains_key(a)) {
        out.push(Change::RemoveReal {
            vip: vip.into(),
            real: *addr,
        });
    }
    out
}

/// The changes that turn `live` (or nothing) into `want`.
pub fn diff(live: Option<&State>, want: &State, ring_size: u32) -> Plan {
    let empty = State {
        globals: want.globals.clone(),
        ring: want.ring,
        ..State::default()
    };
    let from_empty = live.is_none();
    let live = live.unwrap_or(&empty);
    let mut changes = if from_empty {
        Vec::new()
    } else {
        settings(live, want)
    };

    // Stable ids for every address in either state, for ring comparison.
    let addrs: BTreeSet<IpAddr> = live
        .vips
        .iter()
        .chain(&want.vips)
        .flat_map(|v| v.reals.iter().map(|b| b.addr))
        .collect();
    let ids: BTreeMap<IpAddr, u32> = addrs.into_iter().zip(1..).collect();

    let old: BTreeMap<VipKey, &Vip> = live.vips.iter().map(|v| (v.key, v)).collect();
    let new: BTreeMap<VipKey, &Vip> = want.vips.iter().map(|v| (v.key, v)).collect();
    for (key, v) in &new {
        let name = key.to_string();
        match old.get(key) {
            None => {
                changes.push(Change::AddVip {
                    vip: name.clone(),
                    flags: v.flags.names().iter().map(|s| s.to_string()).collect(),
                    reals: v.reals.len(),
                });
                changes.extend(reals_changes(&name, &[], &v.reals));
            }
            Some(o) => {
                if o.flags != v.flags {
                    changes.push(Change::VipFlags {
                        vip: name.clone(),
                        from: o.flags.names().iter().map(|s| s.to_string()).collect(),
                        to: v.flags.names().iter().map(|s| s.to_string()).collect(),
                    });
                }
                let rc = reals_changes(&name, &o.reals, &v.reals);
                if !rc.is_empty() || live.ring != want.ring {
                    let a = ring_of(&o.reals, live.ring, ring_size, &ids);
                    let b = ring_of(&v.reals, want.ring, ring_size, &ids);
                    let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count() as u32;
                    changes.extend(rc);
                    if moved > 0 {
                        changes.push(Change::RingMoves {
                            vip: name,
                            slots: moved,
                            of: ring_size,
                        });
                    }
                }
            }
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(k)) {
        changes.push(Change::RemoveVip {
            vip: key.to_string(),
        });
    }
    for (id, addr) in &want.server_ids {
        if live.server_ids.get(id) != Some(addr) {
            changes.push(Change::ServerId {
                id: *id,
                from: live.server_ids.get(id).copied(),
                to: Some(*addr),
            });
        }
    }
    for (id, addr) in &live.server_ids {
        if !want.server_ids.contains_key(id) {
            changes.push(Change::ServerId {
                id: *id,
                from: Some(*addr),
                to: None,
            });
        }
    }
    let od: BTreeSet<IpAddr> = live.down_reals.iter().copied().collect();
    let nd: BTreeSet<IpAddr> = want.down_reals.iter().copied().collect();
    for r in nd.difference(&od) {
        changes.push(Change::DownReal {
            real: *r,
            down: true,
        });
    }
    for r in od.difference(&nd) {
        changes.push(Change::DownReal {
            real: *r,
            down: false,
        });
    }
    Plan {
        from_empty,
        changes,
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Setting { name, from, to } => write!(f, "~ {name}: {from} -> {to}"),
            Change::AddVip { vip, flags, reals } => {
                write!(f, "+ vip {vip}")?;
                if !flags.is_empty() {
                    write!(f, " [{}]", flags.join(", "))?;
                }
                write!(f, " with {reals} real(s)")
            }
            Change::RemoveVip { vip } => write!(f, "- vip {vip}"),
            Change::VipFlags { vip, from, to } => {
                write!(
                    f,
                    "~ vip {vip} flags: [{}] -> [{}]",
                    from.join(", "),
                    to.join(", ")
                )
            }
            Change::AddReal { vip, real, weight } => {
                write!(f, "+ real {real} (weight {weight}) in {vip}")
            }
            Change::RemoveReal { vip, real } => write!(f, "- real {real} from {vip}"),
            Change::Weight {
                vip,
                real,
                from,
                to,
            } => {
                write!(f, "~ real {real} in {vip}: weight {from} -> {to}")?;
                if *to == 0 {
                    write!(f, " (drain)")?;
                }
                Ok(())
            }
            Change::RingMoves { vip, slots, of } => write!(
                f,
                "  ring of {vip}: {slots} of {of} slots move ({:.2}%)",
                f64::from(*slots) * 100.0 / f64::from(*of)
            ),
            Change::ServerId { id, from, to } => match (from, to) {
                (None, Some(t)) => write!(f, "+ server id {id} -> {t}"),
                (Some(_), None) => write!(f, "- server id {id}"),
                (Some(a), Some(b)) => write!(f, "~ server id {id}: {a} -> {b}"),
                (None, None) => Ok(()),
            },
            Change::DownReal { real, down } => {
                write!(
                    f,
                    "~ real {real}: {}",
                    if *down {
                        "marked down"
                    } else {
                        "no longer down"
                    }
                )
            }
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "no changes");
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        writeln!(f, "{}", self.summary())
    }
}
