//! The mark → real table as plain data: what differs between the live
//! mappings and the file's (for plans and for `sync`), and which counter
//! slots new mappings get. Nothing here touches the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use anyhow::{bail, Result};

/// What turning `live` into `want` takes; each list in mark order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkChanges {
    /// Marks mapped now that were not before.
    pub added: Vec<(u32, IpAddr)>,
    /// `(mark, old real, new real)`.
    pub changed: Vec<(u32, IpAddr, IpAddr)>,
    /// Marks no longer mapped, with the real they named.
    pub removed: Vec<(u32, IpAddr)>,
}

impl MarkChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// One line per change: `+ mark 100 -> 10.0.0.1`, `~ mark 100: a -> b`,
/// `- mark 100 (was a)`.
impl fmt::Display for MarkChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (m, r) in &self.removed {
            writeln!(f, "- healthcheck mark {m} (was {r})")?;
        }
        for (m, old, new) in &self.changed {
            writeln!(f, "~ healthcheck mark {m}: {old} -> {new}")?;
        }
        for (m, r) in &self.added {
            writeln!(f, "+ healthcheck mark {m} -> {r}")?;
        }
        Ok(())
    }
}

/// The changes from `live` (`None`: nothing loaded) to `want`.
pub fn diff(live: Option<&BTreeMap<u32, IpAddr>>, want: &BTreeMap<u32, IpAddr>) -> MarkChanges {
    let empty = BTreeMap::new();
    let live = live.unwrap_or(&empty);
    let mut c = MarkChanges::default();
    for (m, r) in want {
        match live.get(m) {
            None => c.added.push((*m, *r)),
            Some(old) if old != r => c.changed.push((*m, *old, *r)),
            Some(_) => {}
        }
    }
    for (m, r) in live {
        if !want.contains_key(m) {
            c.removed.push((*m, *r));
        }
    }
    c
}

/// `n` counter slots below `max` that no slot of `in_use` takes, lowest
/// first; an error when there are not enough.
pub fn free_slots(in_use: &BTreeSet<u32>, n: usize, max: u32) -> Result<Vec<u32>> {
    let slots: Vec<u32> = (0..max).filter(|s| !in_use.contains(s)).take(n).collect();
    if slots.len() < n {
        bail!(
            "{} health-check marks would be mapped, but the dataplane holds at most {max}",
            in_use.len() + n
        );
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn diff_lists_each_kind_once() {
        let live = BTreeMap::from([(1, ip("10.0.0.1")), (2, ip("10.0.0.2")), (3, ip("fd00::3"))]);
        let want = BTreeMap::from([(2, ip("10.0.0.2")), (3, ip("10.0.0.3")), (4, ip("fd00::4"))]);
        let c = diff(Some(&live), &want);
        assert_eq!(c.added, vec![(4, ip("fd00::4"))]);
        assert_eq!(c.changed, vec![(3, ip("fd00::3"), ip("10.0.0.3"))]);
        assert_eq!(c.removed, vec![(1, ip("10.0.0.1"))]);
        assert!(diff(Some(&want), &want).is_empty());
        assert_eq!(diff(None, &want).added.len(), 3);
        assert_eq!(
            c.to_string(),
            "- healthcheck mark 1 (was 10.0.0.1)\n\
             ~ healthcheck mark 3: fd00::3 -> 10.0.0.3\n\
             + healthcheck mark 4 -> fd00::4\n"
        );
    }

    #[test]
    fn slots_fill_holes_then_run_out() {
        let used = BTreeSet::from([0, 2]);
        assert_eq!(free_slots(&used, 3, 8).expect("room"), vec![1, 3, 4]);
        assert!(free_slots(&used, 3, 4).is_err());
        assert_eq!(
            free_slots(&used, 0, 2).expect("none asked"),
            Vec::<u32>::new()
        );
    }
}
