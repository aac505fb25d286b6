//! The connection tables' sets as user space sees them: where a flow's
//! entry lives, finding it, placing one without evicting, and reading or
//! writing a set of either kind of table. The rules are the dataplane's
//! (bpf/lb_conn.h, `enum conn_layout`); this is the one place user space
//! states them, for the per-CPU tables and the shared one alike.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::abi::{self, bytes, from_bytes, types};
use super::mmap_array::PodArray;
use super::percpu;

/// The two kinds of connection table (see `enum conn_layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnTable {
    /// `conn_sets`: a table per CPU marked in `conn_cpus`.
    PerCpu,
    /// `conn_shared`: one table for every other CPU.
    Shared,
}

impl ConnTable {
    /// As `/metrics` labels it.
    pub fn name(self) -> &'static str {
        match self {
            ConnTable::PerCpu => "per-cpu",
            ConnTable::Shared => "shared",
        }
    }
}

/// Where the sets of one table live, as user space reaches them.
pub enum Sets<'a> {
    /// This build's per-CPU tables: one mapped array, CPU c's set i at
    /// `c * nsets + i`.
    Flat {
        array: &'a PodArray<types::conn_set>,
        nsets: u32,
    },
    /// An older build's per-CPU array (a copy of each set per CPU), read to
    /// be replaced.
    PerCpu(&'a MapHandle),
    /// The shared table.
    Shared(&'a MapHandle),
}

impl Sets<'_> {
    /// Set `idx`: one copy per CPU of the per-CPU tables, the one copy of
    /// the shared table; `None` past the last set.
    pub fn read(&self, idx: u32) -> Result<Option<Vec<types::conn_set>>> {
        match self {
            Sets::Flat { array, nsets } => Ok((idx < *nsets).then(|| {
                (idx as usize..array.len())
                    .step_by(*nsets as usize)
                    .map(|i| array.get(i))
                    .collect()
            })),
            Sets::PerCpu(map) => percpu::copies::<types::conn_set>(*map, idx),
            Sets::Shared(map) => Ok(map
                .lookup(&idx.to_ne_bytes(), MapFlags::ANY)?
                .and_then(|v| from_bytes::<types::conn_set>(&v))
                .map(|s| vec![s])),
        }
        .context("reading a connection-table set")
    }

    /// Writes set `idx` as `read` gave it. Reading and writing a set are
    /// separate steps: a flow the program inserts in between is lost again
    /// (its next packet is a table miss).
    pub fn write(&self, idx: u32, sets: &[types::conn_set]) -> Result<()> {
        let key = idx.to_ne_bytes();
        match self {
            Sets::Flat { array, nsets } => {
                let places = (idx as usize..array.len()).step_by(*nsets as usize);
                for (i, set) in places.zip(sets) {
                    array.set(i, set);
                }
                Ok(())
            }
            Sets::PerCpu(map) => {
                let out: Vec<Vec<u8>> = sets.iter().map(|s| bytes(s).to_vec()).collect();
                map.update_percpu(&key, &out, MapFlags::ANY)
                    .map_err(anyhow::Error::from)
            }
            Sets::Shared(map) => {
                let set = sets.first().context("no set to write")?;
                map.update(&key, bytes(set), MapFlags::ANY)
                    .map_err(anyhow::Error::from)
            }
        }
        .context("writing a connection-table set")
    }

    /// Sets in each table.
    pub fn nsets(&self) -> u32 {
        match self {
            Sets::Flat { nsets, .. } => *nsets,
            Sets::PerCpu(map) | Sets::Shared(map) => map.max_entries(),
        }
    }
}

/// A flow's place in a table: its set, and the tag its entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub set: u32,
    pub tag: u32,
}

/// The slot of `key` in a table of `nsets` sets hashed with `seed`.
pub fn slot(key: &types::flow_key, seed: u32, nsets: u32) -> Slot {
    let tag = abi::conn_hash(key, seed);
    Slot {
        set: abi::conn_set_of(tag, nsets),
        tag,
    }
}

/// Whether `w` holds `key` (with `tag`): what the dataplane's `way_of` asks.
fn holds(w: &types::conn_way, key: &types::flow_key, tag: u32) -> bool {
    w.entry.real != 0 && w.entry.tag == tag && bytes(&w.key) == bytes(key)
}

/// The real `set` names for `key`, if any.
pub fn find(set: &types::conn_set, key: &types::flow_key, tag: u32) -> Option<u32> {
    set.way
        .iter()
        .find(|w| holds(w, key, tag))
        .map(|w| w.entry.real)
}

/// What `place` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    Written,
    /// The set already holds the flow: left as it is.
    Present,
    /// No free way: nothing written.
    Full,
}

/// Puts `key` -> `real` (last seen at `atime`, in age units) into a free way
/// of `set`, unless the set holds the flow already or has no free way.
pub fn place(
    set: &mut types::conn_set,
    key: &types::flow_key,
    tag: u32,
    real: u32,
    atime: u32,
) -> Placed {
    if find(set, key, tag).is_some() {
        return Placed::Present;
    }
    let Some(free) = set.way.iter_mut().find(|w| w.entry.real == 0) else {
        return Placed::Full;
    };
    *free = types::conn_way {
        entry: types::conn_entry {
            real,
            tag,
            atime,
            flags: 0,
        },
        key: *key,
    };
    Placed::Written
}

/// `after` with the tag of every way filled since `before` inverted, so
/// that no flow matches it: the first of two writes that fill ways of a set
/// the dataplane may be reading. A system call's copy of a set can reach a
/// reading CPU in pieces; written first like this and then as `after`, a
/// way's real and key are whole before its tag is right.
pub fn hidden(before: &types::conn_set, after: &types::conn_set) -> types::conn_set {
    let mut out = *after;
    for (w, old) in out.way.iter_mut().zip(&before.way) {
        if old.entry.real == 0 && w.entry.real != 0 {
            w.entry.tag = !w.entry.tag;
        }
    }
    out
}

/// Entry ages are counted in units of 2^CONN_CLOCK_SHIFT ns of the coarse
/// monotonic clock, truncated to 32 bits.
pub fn age_units(ns: u64) -> u32 {
    (ns >> types::conn_layout::CONN_CLOCK_SHIFT.0) as u32
}

/// The inverse of `age_units`, within its 32-bit range.
pub fn age_ns(units: u32) -> u64 {
    u64::from(units) << types::conn_layout::CONN_CLOCK_SHIFT.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> types::flow_key {
        types::flow_key {
            src: [0x0a00_0001u32.to_be(), 0, 0, 0],
            dst: [0x0ac8_0001u32.to_be(), 0, 0, 0],
            sport: port.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            ..Default::default()
        }
    }

    #[test]
    fn a_way_is_found_only_with_its_tag_and_key() {
        let mut set = types::conn_set::default();
        let (a, b) = (key(1), key(2));
        assert_eq!(place(&mut set, &a, 7, 3, 0), Placed::Written);
        assert_eq!(find(&set, &a, 7), Some(3));
        // the same key under another tag is a half-written way: a miss
        assert_eq!(find(&set, &a, 8), None);
        assert_eq!(find(&set, &b, 7), None);
        assert_eq!(place(&mut set, &a, 7, 5, 0), Placed::Present);
        for p in 2..=4 {
            assert_eq!(place(&mut set, &key(p), p.into(), 1, 0), Placed::Written);
        }
        assert_eq!(place(&mut set, &key(9), 9, 1, 0), Placed::Full);
    }
}
