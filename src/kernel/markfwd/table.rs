//! The live mark → real table and counters: `sync` writes only what
//! differs from the file; the readers serve plans and status.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};

use super::kernel::{Control, HcStats, Mapping, Maps, MAX_MAPPINGS};
use super::marks::{self, diff, MarkChanges};
use super::pins::HcPins;

fn open(pin_dir: &Path) -> Result<Option<Maps>> {
    let pins = HcPins::new(pin_dir);
    if !pins.loaded() {
        return Ok(None);
    }
    Maps::open_pinned(&pins.maps()).map(Some)
}

/// Makes the live mark → real table equal `somarks`, writing only what
/// differs: removals first, then changes (in place), then additions (each
/// with a fresh counter slot). Needs [`ensure`] first.
pub fn sync(pin_dir: &Path, somarks: &BTreeMap<u32, IpAddr>) -> Result<MarkChanges> {
    let maps = open(pin_dir)?.context("health-check forwarding is not loaded (call ensure)")?;
    let live = maps.mappings()?;
    let reals: BTreeMap<u32, IpAddr> = live.iter().map(|(m, l)| (*m, l.real)).collect();
    let changes = diff(Some(&reals), somarks);
    let kept: BTreeSet<u32> = live
        .iter()
        .filter(|(m, _)| somarks.contains_key(m))
        .map(|(_, l)| l.slot)
        .collect();
    let slots = marks::free_slots(&kept, changes.added.len(), MAX_MAPPINGS)?;
    for (mark, _) in &changes.removed {
        maps.remove(*mark)?;
    }
    for (mark, _, real) in &changes.changed {
        let slot = live[mark].slot;
        maps.reset_slot(slot)?;
        maps.put(*mark, Mapping { real: *real, slot })?;
    }
    for ((mark, real), slot) in changes.added.iter().zip(slots) {
        maps.reset_slot(slot)?;
        maps.put(*mark, Mapping { real: *real, slot })?;
    }
    Ok(changes)
}

/// The live mark → real table; `None` when nothing is loaded.
pub fn read_marks(pin_dir: &Path) -> Result<Option<BTreeMap<u32, IpAddr>>> {
    let Some(maps) = open(pin_dir)? else {
        return Ok(None);
    };
    Ok(Some(
        maps.mappings()?
            .into_iter()
            .map(|(m, l)| (m, l.real))
            .collect(),
    ))
}

/// The live control values; `None` when nothing is loaded.
pub fn read_control(pin_dir: &Path) -> Result<Option<Control>> {
    open(pin_dir)?.map(|m| m.control()).transpose()
}

/// Traffic through one live mapping since it was made, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkCounters {
    pub real: IpAddr,
    pub packets: u64,
    /// Frames as sent: Ethernet and outer header included.
    pub bytes: u64,
}

/// Global counters and each live mark's; `None` when nothing is loaded.
pub fn stats(pin_dir: &Path) -> Result<Option<(HcStats, BTreeMap<u32, MarkCounters>)>> {
    let Some(maps) = open(pin_dir)? else {
        return Ok(None);
    };
    let mut per_mark = BTreeMap::new();
    for (mark, l) in maps.mappings()? {
        let (packets, bytes) = maps.slot_counters(l.slot)?;
        per_mark.insert(
            mark,
            MarkCounters {
                real: l.real,
                packets,
                bytes,
            },
        );
    }
    Ok(Some((maps.stats()?, per_mark)))
}
