//! The plan in brief, for plans too long to read line by line (a first
//! apply of 256 VIPs x 64 reals is 16,640 lines): the changes to VIPs,
//! reals, weights, health and rings are counted by kind, with the VIPs they
//! touch; every other change (settings, interfaces, announcements, server
//! ids, a dataplane replacement) keeps its own line.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{Change, Plan};

/// Plans with more changes than this are printed in brief unless the full
/// listing is asked for.
pub const BRIEF_ABOVE: usize = 200;

/// VIPs named in a line before "and N more".
const NAMED: usize = 3;

/// The kinds counted rather than listed: (sign, what, which changes).
type Kind = (&'static str, &'static str, fn(&Change) -> Option<&str>);

const KINDS: &[Kind] = &[
    ("+", "VIP(s) added", |c| match c {
        Change::AddVip { vip, .. } => Some(vip),
        _ => None,
    }),
    ("-", "VIP(s) removed", |c| match c {
        Change::RemoveVip { vip } => Some(vip),
        _ => None,
    }),
    ("+", "real(s) added", |c| match c {
        Change::AddReal { vip, .. } => Some(vip),
        _ => None,
    }),
    ("-", "real(s) removed", |c| match c {
        Change::RemoveReal { vip, .. } => Some(vip),
        _ => None,
    }),
    ("~", "weight(s) changed", |c| match c {
        Change::Weight { vip, .. } => Some(vip),
        _ => None,
    }),
    ("~", "health verdict(s) changed", |c| match c {
        Change::Health { vip, .. } => Some(vip),
        _ => None,
    }),
    (" ", "ring(s) with moving slots", |c| match c {
        Change::RingMoves { vip, .. } => Some(vip),
        _ => None,
    }),
];

fn counted(c: &Change) -> bool {
    KINDS.iter().any(|(_, _, of)| of(c).is_some())
}

impl Plan {
    /// The plan in brief (see the module documentation), ending with the
    /// same one-line summary as the full listing.
    pub fn brief(&self) -> String {
        let mut out = String::new();
        for n in &self.notes {
            let _ = writeln!(out, "= {n}");
        }
        if self.changes.is_empty() {
            out.push_str("no changes\n");
            return out;
        }
        for c in self.changes.iter().filter(|c| !counted(c)) {
            let _ = writeln!(out, "{c}");
        }
        for (sign, what, of) in KINDS {
            let vips: Vec<&str> = self.changes.iter().filter_map(|c| of(c)).collect();
            if vips.is_empty() {
                continue;
            }
            // in plan order: the first VIPs named are the first listed
            let mut seen = BTreeSet::new();
            let distinct: Vec<&str> = vips.iter().copied().filter(|v| seen.insert(*v)).collect();
            let named: Vec<&str> = distinct.iter().take(NAMED).copied().collect();
            let more = distinct.len().saturating_sub(NAMED);
            let _ = write!(out, "{sign} {} {what}", vips.len());
            if !what.starts_with("VIP") {
                let _ = write!(out, " in {} VIP(s)", distinct.len());
            }
            let _ = write!(out, ": {}", named.join(", "));
            if more > 0 {
                let _ = write!(out, " and {more} more");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "(in brief: {} change lines; --full lists each)",
            self.changes.len()
        );
        let _ = writeln!(out, "{}", self.summary());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_changes_are_counted_and_the_rest_listed() {
        let mut p = Plan::new(true);
        p.changes.push(Change::Attach {
            interface: "eth0".into(),
            mode: "native".into(),
        });
        for v in 0..10 {
            let vip = format!("10.0.0.{v}:80/tcp");
            p.changes.push(Change::AddVip {
                vip: vip.clone(),
                flags: vec![],
                reals: 64,
            });
            for r in 0..64 {
                p.changes.push(Change::AddReal {
                    vip: vip.clone(),
                    real: format!("10.1.{v}.{r}").parse().expect("ip"),
                    weight: 1,
                });
            }
        }
        let text = p.brief();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "+ attach eth0 (native XDP)");
        assert_eq!(
            lines[1],
            "+ 10 VIP(s) added: 10.0.0.0:80/tcp, 10.0.0.1:80/tcp, 10.0.0.2:80/tcp and 7 more"
        );
        assert!(lines[2].starts_with("+ 640 real(s) added in 10 VIP(s)"));
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[4], p.summary());
    }
}
