//! The parts of a plan that are not map entries: the sizes and table layout
//! a dataplane was loaded with, and health-check marks. Pure comparisons;
//! the facts come from the caller (`reconcile` reads them from the kernel,
//! `katran diff` from the older file).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::Change;
use crate::config::Settings;

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
}

impl LoadShape {
    /// The shape the file asks for on a machine with `cpus` possible CPUs.
    pub fn wanted(s: &Settings, cpus: u32) -> LoadShape {
        LoadShape {
            ring_size: s.ring_size,
            max_vips: s.max_vips,
            max_reals: s.max_reals,
            conn_table_size: s.conn_table_size,
            per_cpu_tables: (!s.shared_conn_table).then(|| match &s.forwarding_cpus {
                Some(list) => list.iter().copied().collect(),
                None => (0..cpus).collect(),
            }),
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
    let mut out = Vec::new();
    let mut cmp = |name: &str, a: String, b: String| {
        if a != b {
            out.push(Change::ReplaceDataplane {
                why: format!("{name} {a} -> {b}"),
            });
        }
    };
    cmp(
        "ring_size",
        live.ring_size.to_string(),
        want.ring_size.to_string(),
    );
    cmp(
        "max_vips",
        live.max_vips.to_string(),
        want.max_vips.to_string(),
    );
    cmp(
        "max_reals",
        live.max_reals.to_string(),
        want.max_reals.to_string(),
    );
    cmp(
        "conn_table",
        tables(&live.per_cpu_tables),
        tables(&want.per_cpu_tables),
    );
    cmp(
        "conn_table_size",
        live.conn_table_size.to_string(),
        want.conn_table_size.to_string(),
    );
    out
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
