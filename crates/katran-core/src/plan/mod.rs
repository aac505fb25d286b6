//! What applying a file changes: one ordered plan, for people (`katran apply
//! --dry-run`, `katran diff`), for tools (`--json`) and for the commit
//! phase, which executes exactly the map writes the plan carries.
//!
//! There is one diff engine ([`engine::build`]): it compares the desired
//! state with a snapshot of the live maps and yields both the changes a
//! person reads and the writes that make them. Dataplane-level changes
//! (interfaces, health-check marks, load-time sizes) are added by the
//! caller that knows the host ([`host`]), so the plan covers every key of
//! the file.
//!
//! VIPs and reals are compared by identity (VIP key, real address), never by
//! position, so reordering a file changes nothing.

pub mod brief;
pub mod changes;
pub mod engine;
pub mod host;

mod render;

use std::net::IpAddr;

use serde::Serialize;

use crate::store::Write;

pub use engine::{build, PlanError};

/// Version of the JSON document `--json` prints; bumped on any change that
/// could break a reader (docs/plan-json.md).
pub const FORMAT_VERSION: u32 = 1;

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
    /// A health verdict: the real is drained (its check fails) or back.
    Health {
        vip: String,
        real: IpAddr,
        drained: bool,
    },
    /// Ring slots of the VIP that now point at another real.
    RingMoves {
        vip: String,
        slots: u32,
        of: u32,
    },
    /// The live ring differs from the one its reals imply (written by
    /// something else, or damaged): the slots that are rewritten.
    RingRepair {
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
    /// Health-check socket mark -> real (`[[healthcheck_mark]]`).
    Mark {
        mark: u32,
        from: Option<IpAddr>,
        to: Option<IpAddr>,
    },
    Attach {
        interface: String,
        mode: String,
    },
    Detach {
        interface: String,
    },
    /// A route announcing a VIP address to the routers (`[announce]`).
    Announce {
        address: IpAddr,
        table: u32,
    },
    /// A route withdrawn: no VIP on the address serves, the node is
    /// drained, or announcing is off.
    Withdraw {
        address: IpAddr,
        table: u32,
    },
    /// A change the live dataplane cannot take by map updates: it needs a
    /// new dataplane loaded beside it.
    ReplaceDataplane {
        why: String,
    },
}

impl Change {
    /// Whether the change needs a new dataplane (see [`Change::ReplaceDataplane`]).
    pub fn needs_replacement(&self) -> bool {
        matches!(self, Change::ReplaceDataplane { .. })
    }
}

/// The plan: what changes, in order, and the map writes that do it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub format_version: u32,
    /// True when there was no live configuration to compare with.
    pub from_empty: bool,
    pub changes: Vec<Change>,
    /// What stays as it is for a reason worth saying (a real kept drained
    /// by its failing health check).
    pub notes: Vec<String>,
    /// How many map writes the commit phase performs.
    pub map_writes: usize,
    /// When the dataplane is replaced: how many connection-table entries
    /// the running one holds, to be carried over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carried_connections: Option<usize>,
    /// The map writes, in order; executed as they are by `apply::commit`.
    #[serde(skip)]
    pub writes: Vec<Write>,
}

impl Plan {
    pub fn new(from_empty: bool) -> Plan {
        Plan {
            format_version: FORMAT_VERSION,
            from_empty,
            ..Plan::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Changes that need a new dataplane.
    pub fn replacements(&self) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| c.needs_replacement())
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_of_each() -> Vec<Change> {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let vip = || "10.0.0.1:80/tcp".to_string();
        vec![
            Change::Setting {
                name: "x".into(),
                from: "a".into(),
                to: "b".into(),
            },
            Change::AddVip {
                vip: vip(),
                flags: vec![],
                reals: 1,
            },
            Change::RemoveVip { vip: vip() },
            Change::VipFlags {
                vip: vip(),
                from: vec![],
                to: vec![],
            },
            Change::AddReal {
                vip: vip(),
                real: ip,
                weight: 1,
            },
            Change::RemoveReal {
                vip: vip(),
                real: ip,
            },
            Change::Weight {
                vip: vip(),
                real: ip,
                from: 1,
                to: 0,
            },
            Change::Health {
                vip: vip(),
                real: ip,
                drained: true,
            },
            Change::RingMoves {
                vip: vip(),
                slots: 1,
                of: 13,
            },
            Change::RingRepair {
                vip: vip(),
                slots: 1,
                of: 13,
            },
            Change::ServerId {
                id: 1,
                from: None,
                to: Some(ip),
            },
            Change::DownReal {
                real: ip,
                down: true,
            },
            Change::Mark {
                mark: 1,
                from: Some(ip),
                to: None,
            },
            Change::Attach {
                interface: "eth0".into(),
                mode: "native".into(),
            },
            Change::Detach {
                interface: "eth0".into(),
            },
            Change::Announce {
                address: ip,
                table: 100,
            },
            Change::Withdraw {
                address: ip,
                table: 100,
            },
            Change::ReplaceDataplane { why: "x".into() },
        ]
    }

    #[test]
    fn every_change_is_documented_and_has_one_text_line() {
        let doc = include_str!("../../../../docs/plan.md");
        for c in one_of_each() {
            let v = serde_json::to_value(&c).unwrap();
            let op = v["op"].as_str().unwrap();
            assert!(
                doc.contains(&format!("| `{op}` |")),
                "docs/plan.md lacks `{op}`"
            );
            assert_eq!(c.to_string().lines().count(), 1, "{c}");
        }
    }

    #[test]
    fn the_summary_counts_every_change() {
        let mut p = Plan::new(false);
        p.changes = one_of_each();
        let n = p.changes.len();
        assert!(
            p.summary().starts_with(&format!("{n} change(s)")),
            "{}",
            p.summary()
        );
        assert_eq!(p.replacements().len(), 1);
        let text = p.to_string();
        assert_eq!(text.lines().count(), n + 1, "{text}");
    }
}
