//! `katran diff OLD NEW`: the plan between two files, made by the same
//! engine as an apply — OLD is applied to an in-memory dataplane and NEW
//! planned against it — plus what only files know: interface lists,
//! load-time sizes, health checks and marks, an unresolved "auto" gateway.

use anyhow::{Context, Result};

use crate::apply::apply;
use crate::config::{Config, Gateway};
use crate::daemon::health::spec::HealthCheck;
use crate::model::State;
use crate::plan::host::{self, LoadShape};
use crate::plan::{self, Change, Plan};
use crate::snapshot::Snapshot;
use crate::store::{Limits, MemStore};

fn gateway_label(c: &Config) -> String {
    match c.settings.gateway {
        Gateway::Auto => "auto".into(),
        Gateway::Mac(m) => m.to_string(),
    }
}

fn check_label(h: Option<&HealthCheck>) -> String {
    match h {
        None => "none".into(),
        Some(h) => {
            let what = match &h.probe {
                crate::daemon::health::spec::Probe::Http { path, expect } => {
                    format!("http {path} expect {expect}")
                }
                p => p.name().to_string(),
            };
            format!(
                "{what} on port {}, every {:?} (timeout {:?}, rise {}, fall {})",
                h.port, h.interval, h.timeout, h.rise, h.fall
            )
        }
    }
}

/// The plan from one state to another, as an apply on a dataplane of
/// `limits` holding `old` would make it.
pub fn between(old: &State, new: &State, limits: Limits) -> Result<Plan> {
    let mut store = MemStore::new(limits);
    apply(&mut store, old).context("building the older configuration")?;
    let snap = Snapshot::read(&store)?;
    let mut p = plan::build(&store, &snap, new)?;
    p.writes.clear();
    p.map_writes = 0;
    Ok(p)
}

pub fn plan(old: &Config, new: &Config) -> Result<Plan> {
    let s = &old.settings;
    let limits = Limits::for_sizes(s.ring_size, s.max_vips, s.max_reals);
    let mut p = between(&old.state, &new.state, limits)?;

    let (ga, gb) = (gateway_label(old), gateway_label(new));
    p.changes
        .retain(|c| !matches!(c, Change::Setting { name, .. } if name == "gateway_mac"));
    let mut head = Vec::new();
    if ga != gb {
        head.push(Change::Setting {
            name: "gateway_mac".into(),
            from: ga,
            to: gb,
        });
    }
    let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1) as u32;
    head.extend(host::replacements(
        &LoadShape::wanted(&old.settings, cpus),
        &LoadShape::wanted(&new.settings, cpus),
    ));
    head.extend(host::interfaces(&old.settings, &new.settings));
    head.append(&mut p.changes);
    p.changes = head;
    let keys: std::collections::BTreeSet<_> = old
        .healthchecks
        .keys()
        .chain(new.healthchecks.keys())
        .collect();
    for k in keys {
        let (a, b) = (old.healthchecks.get(k), new.healthchecks.get(k));
        if a != b {
            p.changes.push(Change::Setting {
                name: format!("healthcheck of {k}"),
                from: check_label(a),
                to: check_label(b),
            });
        }
    }
    p.changes.extend(host::marks(&old.somarks, &new.somarks));
    p.from_empty = false;
    Ok(p)
}
