//! Commit: executes a plan's map writes, in order, and nothing else.
//!
//! The writes fill the inactive generation and end with the flip (see
//! `plan::engine`). A failure before the flip leaves the active generation
//! — everything a packet reads — as it was; the half-written generation is
//! marked incomplete and is rewritten by the next apply. The flip is the
//! last write, so nothing can fail after it.

pub mod errors;
pub mod reconcile;

use anyhow::{Context, Result};

use crate::model::State;
use crate::plan::{self, Plan};
use crate::snapshot::Snapshot;
use crate::store::{MapStore, Write};

/// What a commit wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// The generation now active.
    pub gen: u8,
    pub map_writes: usize,
    /// Ring slots written (deltas only).
    pub ring_slots: usize,
}

/// Executes the plan's writes. `None` when there was nothing to write.
pub fn commit(store: &mut dyn MapStore, plan: &Plan) -> Result<Option<ApplyReport>> {
    let Some(Write::Flip { gen }) = plan.writes.last() else {
        return Ok(None);
    };
    let mut report = ApplyReport {
        gen: *gen,
        map_writes: plan.writes.len(),
        ring_slots: 0,
    };
    for (n, w) in plan.writes.iter().enumerate() {
        w.run(store).with_context(|| {
            format!(
                "map write {} of {} failed; the live configuration is unchanged",
                n + 1,
                plan.writes.len()
            )
        })?;
        if let Write::WriteRing { changes, .. } = w {
            report.ring_slots += changes.len();
        }
    }
    Ok(Some(report))
}

/// Reads the configuration the dataplane is forwarding by, or `None` when
/// nothing was ever applied.
pub fn read_live(store: &dyn MapStore) -> Result<Option<State>> {
    Snapshot::read(store)?.state()
}

/// Plans against the store and commits: the whole of an apply for callers
/// that have no host side (tests, benchmarks, provisioning).
pub fn apply(store: &mut dyn MapStore, desired: &State) -> Result<ApplyReport> {
    let snap = Snapshot::read(store)?;
    let plan = plan::build(store, &snap, desired)?;
    Ok(commit(store, &plan)?.unwrap_or(ApplyReport {
        gen: snap.active,
        ..ApplyReport::default()
    }))
}
