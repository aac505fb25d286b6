//! The parts of a plan that are not map entries: the sizes and table layout
//! a dataplane was loaded with, and health-check marks. Pure comparisons;
//! the facts come from the caller (`reconcile` reads them from the kernel,
//! `katran diff` from the older file).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::Change;
use crate::config::Settings;

/// Ways per set of a connection table, per-CPU or shared (`CONN_WAYS` in
/// bpf/lb_types.h; the build checks they agree): a table holds
/// `conn_table_size` rounded down to whole sets.
pub const CONN_WAYS: u32 = 8;

/// What is fixed when a dataplane is loaded: changing any of it needs a new
/// dataplane, not a map update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadShape {
    pub ring_size: u32,
    pub max_vips: u32,
    pub max_reals: u32,
    pub conn_table_size: u32,
    /// CPUs with their own connection table; `None`: one shared table.
    pub per_cpu_tables: Option<BTreeSet<u32>>,
    /// Traffic counted per (VIP, real).
    pub vip_real_counters: bool,
}

impl LoadShape {
    /// The shape the file asks for on a machine with `cpus` possible CPUs.
    pub fn wanted(s: &Settings, cpus: u32) -> LoadShape {
        LoadShape {
            ring_size: s.ring_size,
            max_vips: s.max_vips,
            max_reals: s.max_reals,
            conn_table_size: (s.conn_table_size / CONN_WAYS).max(1) * CONN_WAYS,
            per_cpu_tables: (!s.shared_conn_table).then(|| match &s.forwarding_cpus {
                Some(list) => list.iter().copied().collect(),
                None => (0..cpus).collect(),
            }),
            vip_real_counters: s.vip_real_counters,
        }
    }
}

fn tables(t: &Option<BTreeSet<u32>>) -> String {
    match t {
        None => "shared".into(),
        Some(cpus) => format!(
            "per-cpu (CPUs {})",
            cpus.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// One `replace dataplane` change per load-time value that differs.
pub fn replacements(live: &LoadShape, want: &LoadShape) -> Vec<Change> {
    let pair = |x: u32, y: u32| (x.to_string(), y.to_string());
    [
        ("ring_size", pair(live.ring_size, want.ring_size)),
        ("max_vips", pair(live.max_vips, want.max_vips)),
        ("max_reals", pair(live.max_reals, want.max_reals)),
        (
            "conn_table",
            (tables(&live.per_cpu_tables), tables(&want.per_cpu_tables)),
        ),
        (
            "conn_table_size",
            pair(live.conn_table_size, want.conn_table_size),
        ),
        (
            "vip_real_counters",
            (
                live.vip_real_counters.to_string(),
                want.vip_real_counters.to_string(),
            ),
        ),
    ]
    .into_iter()
    .filter(|(_, (a, b))| a != b)
    .map(|(name, (a, b))| Change::ReplaceDataplane {
        why: format!("{name} {a} -> {b}"),
    })
    .collect()
}

/// Health-check mark changes, in mark order.
pub fn marks(live: &BTreeMap<u32, IpAddr>, want: &BTreeMap<u32, IpAddr>) -> Vec<Change> {
    let all: BTreeSet<u32> = live.keys().chain(want.keys()).copied().collect();
    all.into_iter()
        .filter_map(|mark| {
            let (from, to) = (live.get(&mark).copied(), want.get(&mark).copied());
            (from != to).then_some(Change::Mark { mark, from, to })
        })
        .collect()
}

/// Interfaces to attach and detach between two interface lists, for
/// `katran diff` (the live side is planned against the kernel instead).
pub fn interfaces(old: &Settings, new: &Settings) -> Vec<Change> {
    let mode = |s: &Settings| format!("{:?}", s.xdp_mode).to_lowercase();
    let mut out: Vec<Change> = new
        .interfaces
        .iter()
        .filter(|i| !old.interfaces.contains(i))
        .map(|i| Change::Attach {
            interface: i.clone(),
            mode: mode(new),
        })
        .collect();
    out.extend(
        old.interfaces
            .iter()
            .filter(|i| !new.interfaces.contains(i))
            .map(|i| Change::Detach {
                interface: i.clone(),
            }),
    );
    if old.xdp_mode != new.xdp_mode {
        for i in new.interfaces.iter().filter(|i| old.interfaces.contains(i)) {
            out.push(Change::ReplaceDataplane {
                why: format!("xdp_mode on {i} {} -> {}", mode(old), mode(new)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> LoadShape {
        LoadShape::wanted(&Settings::default(), 2)
    }

    #[test]
    fn every_load_time_value_needs_a_replacement() {
        let a = shape();
        type Edit = (&'static str, fn(&mut LoadShape));
        let edits: Vec<Edit> = vec![
            ("ring_size", |s| s.ring_size = 4099),
            ("max_vips", |s| s.max_vips = 8),
            ("max_reals", |s| s.max_reals = 8),
            ("conn_table", |s| s.per_cpu_tables = None),
            ("conn_table_size", |s| s.conn_table_size = 8),
            ("vip_real_counters", |s| s.vip_real_counters = true),
        ];
        for (name, edit) in edits {
            let mut b = a.clone();
            edit(&mut b);
            let c = replacements(&a, &b);
            assert_eq!(c.len(), 1, "{name}");
            assert!(
                c[0].to_string()
                    .starts_with(&format!("! replace dataplane: {name} ")),
                "{}",
                c[0]
            );
        }
        assert!(replacements(&a, &a).is_empty());
    }

    #[test]
    fn both_kinds_of_table_hold_whole_sets() {
        // what the kernel reads back, so an unchanged file plans nothing
        for shared_conn_table in [false, true] {
            let s = Settings {
                shared_conn_table,
                conn_table_size: 1001,
                ..Settings::default()
            };
            assert_eq!(LoadShape::wanted(&s, 2).conn_table_size, 1000);
        }
    }

    #[test]
    fn interfaces_and_marks() {
        let a = Settings {
            interfaces: vec!["eth0".into(), "eth1".into()],
            ..Settings::default()
        };
        let mut b = a.clone();
        b.interfaces = vec!["eth1".into(), "eth2".into()];
        let c: Vec<String> = interfaces(&a, &b).iter().map(|c| c.to_string()).collect();
        assert_eq!(c, ["+ attach eth2 (auto XDP)", "- detach eth0"]);
        b.xdp_mode = crate::config::XdpMode::Native;
        assert!(interfaces(&a, &b).iter().any(|c| c.needs_replacement()));

        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let old = BTreeMap::from([(1, ip("10.0.0.1")), (2, ip("10.0.0.2"))]);
        let new = BTreeMap::from([(2, ip("10.0.0.3")), (3, ip("10.0.0.1"))]);
        let c: Vec<String> = marks(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            c,
            [
                "- healthcheck mark 1 (was 10.0.0.1)",
                "~ healthcheck mark 2: 10.0.0.2 -> 10.0.0.3",
                "+ healthcheck mark 3 -> 10.0.0.1"
            ]
        );
    }
}
