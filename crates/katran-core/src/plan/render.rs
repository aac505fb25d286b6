//! The plan as text: one line per change, then a one-line summary. Every
//! change of the JSON document has exactly one line here.

use std::fmt;

use super::{Change, Plan};

impl Plan {
    /// One line: how many changes, and of which kind.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no changes".into();
        }
        let count = |p: fn(&Change) -> bool| self.changes.iter().filter(|c| p(c)).count();
        let slots: u64 = self
            .changes
            .iter()
            .map(|c| match c {
                Change::RingMoves { slots, .. } | Change::RingRepair { slots, .. } => {
                    u64::from(*slots)
                }
                _ => 0,
            })
            .sum();
        let mut s = format!(
            "{} change(s): {} VIP(s) added, {} removed; {} real(s) added, {} removed, {} reweighted; {} ring slot(s) move",
            self.changes.len(),
            count(|c| matches!(c, Change::AddVip { .. })),
            count(|c| matches!(c, Change::RemoveVip { .. })),
            count(|c| matches!(c, Change::AddReal { .. })),
            count(|c| matches!(c, Change::RemoveReal { .. })),
            count(|c| matches!(c, Change::Weight { .. })),
            slots,
        );
        let others = count(|c| {
            !matches!(
                c,
                Change::AddVip { .. }
                    | Change::RemoveVip { .. }
                    | Change::AddReal { .. }
                    | Change::RemoveReal { .. }
                    | Change::Weight { .. }
                    | Change::RingMoves { .. }
            )
        });
        if others > 0 {
            s.push_str(&format!("; {others} other"));
        }
        s
    }
}

/// An address as a host route.
fn host(a: &std::net::IpAddr) -> String {
    if a.is_ipv4() {
        format!("{a}/32")
    } else {
        format!("{a}/128")
    }
}

fn opt(a: &Option<std::net::IpAddr>) -> String {
    a.map_or_else(|| "-".into(), |a| a.to_string())
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
            Change::VipFlags { vip, from, to } => write!(
                f,
                "~ vip {vip} flags: [{}] -> [{}]",
                from.join(", "),
                to.join(", ")
            ),
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
            Change::Health { vip, real, drained } => {
                if *drained {
                    write!(f, "~ real {real} in {vip}: drained (health check fails)")
                } else {
                    write!(
                        f,
                        "~ real {real} in {vip}: back in service (health check passes)"
                    )
                }
            }
            Change::RingMoves { vip, slots, of } => write!(
                f,
                "  ring of {vip}: {slots} of {of} slots move ({:.2}%)",
                f64::from(*slots) * 100.0 / f64::from(*of)
            ),
            Change::RingRepair { vip, slots, of } => write!(
                f,
                "~ ring of {vip}: {slots} of {of} slots differ from what its reals imply; rewritten"
            ),
            Change::ServerId { id, from, to } => match (from, to) {
                (None, Some(t)) => write!(f, "+ server id {id} -> {t}"),
                (Some(_), None) => write!(f, "- server id {id}"),
                _ => write!(f, "~ server id {id}: {} -> {}", opt(from), opt(to)),
            },
            Change::DownReal { real, down } => write!(
                f,
                "~ real {real}: {}",
                if *down {
                    "marked down"
                } else {
                    "no longer down"
                }
            ),
            Change::Mark { mark, from, to } => match (from, to) {
                (None, Some(t)) => write!(f, "+ healthcheck mark {mark} -> {t}"),
                (Some(o), None) => write!(f, "- healthcheck mark {mark} (was {o})"),
                _ => write!(f, "~ healthcheck mark {mark}: {} -> {}", opt(from), opt(to)),
            },
            Change::Attach { interface, mode } => write!(f, "+ attach {interface} ({mode} XDP)"),
            Change::Detach { interface } => write!(f, "- detach {interface}"),
            Change::Announce { address, table } => {
                write!(f, "+ announce {} (table {table})", host(address))
            }
            Change::Withdraw { address, table } => {
                write!(f, "- withdraw {} (table {table})", host(address))
            }
            Change::ReplaceDataplane { why } => write!(f, "! replace dataplane: {why}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.notes {
            writeln!(f, "= {n}")?;
        }
        if self.changes.is_empty() {
            return writeln!(f, "no changes");
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        writeln!(f, "{}", self.summary())
    }
}
