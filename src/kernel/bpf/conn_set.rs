//! The connection tables' sets as user space sees them: where a flow's
//! entry lives, finding it, placing one without evicting, and reading or
//! writing a set of either kind of table. The rules are the dataplane's
//! (bpf/lb_conn.h, `enum conn_layout`); this is the one place user space
//! states them, for the per-CPU tables and the shared one alike.

use std::sync::atomic::Ordering;

use anyhow::{ensure, Result};

use super::abi::{self, bytes, types};
use super::mmap_array::PodArray;

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

/// The sets of one table, through its mapping (both tables are
/// memory-mappable arrays): the per-CPU tables in one array, CPU c's set i
/// at `c * nsets + i`; the shared table one copy of each set.
pub struct Sets<'a> {
    array: &'a PodArray<types::conn_set>,
    nsets: u32,
}

impl<'a> Sets<'a> {
    /// Per-CPU tables of `nsets` sets each.
    pub fn per_cpu(array: &'a PodArray<types::conn_set>, nsets: u32) -> Sets<'a> {
        Sets { array, nsets }
    }

    /// The shared table's sets.
    pub fn shared(array: &'a PodArray<types::conn_set>) -> Sets<'a> {
        Sets {
            array,
            nsets: array.len() as u32,
        }
    }

    /// The mapped array itself (tests write into it as the program would).
    pub fn array(&self) -> &'a PodArray<types::conn_set> {
        self.array
    }

    /// Set `idx`: one copy per CPU of the per-CPU tables, the one copy of
    /// the shared table; `None` past the last set.
    pub fn read(&self, idx: u32) -> Option<Vec<types::conn_set>> {
        (idx < self.nsets).then(|| {
            (idx as usize..self.array.len())
                .step_by(self.nsets as usize)
                .map(|i| self.array.get(i))
                .collect()
        })
    }

    /// Changes set `idx` from `before` (as `read` gave it) to `after`, one
    /// copy per CPU as `read` gives them, so that the program never takes a
    /// real from a half-written way. Returns the ways left as the program
    /// left them.
    ///
    /// Ways are written through the mapping as the program writes a way:
    /// its {real, tag} word cleared, then key and age, then the word. The
    /// word is swapped only from what `before` says: a way the program
    /// changed since then (a flow it inserted meanwhile) is left to it, and
    /// the other ways of the set are not touched at all.
    pub fn update(
        &self,
        idx: u32,
        before: &[types::conn_set],
        after: &[types::conn_set],
    ) -> Result<usize> {
        ensure!(
            before.len() == after.len(),
            "{} copies of set {idx} read, {} to write",
            before.len(),
            after.len()
        );
        let places = (idx as usize..self.array.len()).step_by(self.nsets as usize);
        let mut left = 0;
        for (i, (b, a)) in places.zip(before.iter().zip(after)) {
            for (w, (old, new)) in b.way.iter().zip(&a.way).enumerate() {
                if bytes(old) != bytes(new) && !swap_way(self.array, i, w, old, new) {
                    left += 1;
                }
            }
        }
        Ok(left)
    }

    /// Sets in each table.
    pub fn nsets(&self) -> u32 {
        self.nsets
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

// The layout `swap_way` writes in: the entry (whose first word is {real,
// tag}) first, 8-byte words throughout.
const _: () = assert!(
    std::mem::offset_of!(types::conn_way, entry) == 0
        && std::mem::offset_of!(types::conn_entry, real) == 0
        && std::mem::offset_of!(types::conn_entry, tag) == 4
        && WAY.is_multiple_of(8)
);

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

/// Bytes of a way, and where its parts start: the entry's {real, tag} word,
/// then its age and flags, then the key.
const WAY: usize = size_of::<types::conn_way>();
const ENTRY_WORD: usize = 0;
const AFTER_ENTRY_WORD: usize = 8;

/// The 8 bytes of `v` at `offset`.
fn word_of(v: &types::conn_way, offset: usize) -> u64 {
    let b = bytes(v);
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[offset..offset + 8]);
    u64::from_ne_bytes(w)
}

/// Writes way `w` of element `i` from `old` to `new` as the program writes
/// a way; false when the way no longer held `old`, or the program filled
/// it while it was written: it is then left to the program.
fn swap_way(
    array: &PodArray<types::conn_set>,
    i: usize,
    w: usize,
    old: &types::conn_way,
    new: &types::conn_way,
) -> bool {
    let base = w * WAY;
    let entry = array.word(i, base + ENTRY_WORD);
    if entry
        .compare_exchange(
            word_of(old, ENTRY_WORD),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return false;
    }
    for offset in (AFTER_ENTRY_WORD..WAY).step_by(8) {
        array
            .word(i, base + offset)
            .store(word_of(new, offset), Ordering::Relaxed);
    }
    let word = word_of(new, ENTRY_WORD);
    word == 0
        || entry
            .compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
            .is_ok()
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
        let ways = types::conn_layout::CONN_WAYS.0 as u16;
        for p in 2..=ways {
            assert_eq!(place(&mut set, &key(p), p.into(), 1, 0), Placed::Written);
        }
        assert_eq!(place(&mut set, &key(99), 99, 1, 0), Placed::Full);
    }
}
