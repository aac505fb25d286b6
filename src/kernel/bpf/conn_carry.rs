//! Carrying connection-table entries from a running dataplane to the one
//! replacing it, so established flows keep their real across an upgrade or
//! a resize. The old dataplane may come from another build, so its tables
//! are opened raw (no shape check) and read by layout, told apart by which
//! maps it pinned; entries name their real by address in between, because
//! the two dataplanes number their reals independently.
//!
//! Layouts read:
//! - *sets* (this build): set-associative arrays of 8 ways, per CPU
//!   (`conn_sets`, one plain array of every CPU's table, with `conn_cpus`
//!   and `conn_meta`) and shared (`conn_shared`), both memory-mapped, whose
//!   entries carry a tag and an age in 2^20 ns units;
//! - *sets of 4* (the builds before): the same ways, 4 to a set;
//!   `conn_sets` a plain array as above or (earlier) a per-CPU array of
//!   the sets, read by system call: they are only read, once;
//! - *sets with LRU hashes* (the builds before it): per-CPU sets whose ways
//!   held the key first and a 64-bit age in ns, and a shared table of two
//!   LRU hashes, IPv4 (`conn_fallback4`, 16-byte keys) and IPv6
//!   (`conn_fallback`);
//! - *lru* (older builds): one LRU hash per CPU behind the array of maps
//!   `conn_tables`, and one shared LRU hash `conn_fallback`, 40-byte keys.
//!
//! Written: this build's layout. An entry goes into the same CPU's table
//! when both have per-CPU tables; into the shared table when the new
//! dataplane has no per-CPU tables; from a shared table into every new
//! per-CPU table (RSS decides which CPU sees the flow next). An entry never
//! replaces one the new dataplane has, and never evicts: a full set keeps
//! what it holds (counted).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::abi::{from_bytes, types, Pod};
use super::conn_set::{self, ConnTable, Placed, Sets};
use super::mmap_array::PodArray;
use super::percpu;

fn open(dir: &Path, name: &str) -> Result<MapHandle> {
    let path = dir.join(name);
    MapHandle::from_pinned_path(&path).with_context(|| format!("opening {}", path.display()))
}

/// One connection, independent of any layout or real numbering.
#[derive(Clone, Debug)]
pub struct Conn {
    /// The table it was in (`None`: the shared one).
    pub cpu: Option<u32>,
    pub key: types::flow_key,
    pub real: IpAddr,
    /// When the dataplane last saw it (CLOCK_MONOTONIC ns: the same clock
    /// in both).
    pub atime: u64,
}

/// A connection as its table stores it: (table, key, real index, age in ns).
type Raw = (Option<u32>, types::flow_key, u32, u64);

/// An entry of the builds before tags: real, flags, age in ns.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct OldEntry {
    real: u32,
    flags: u32,
    atime: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct OldWay {
    key: types::flow_key,
    entry: OldEntry,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct OldSet {
    way: [OldWay; 4],
}

/// A set of the builds with tagged ways, 4 of them.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Set4 {
    way: [types::conn_way; 4],
}

/// The shared IPv4 key of the builds with LRU hashes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct OldKey4 {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    pad: [u8; 3],
}

// SAFETY: repr(C) plain integers, no implicit padding (sizes asserted below).
unsafe impl Pod for OldEntry {}
unsafe impl Pod for OldWay {}
unsafe impl Pod for OldSet {}
unsafe impl Pod for OldKey4 {}
unsafe impl Pod for Set4 {}
const _: () = assert!(size_of::<OldEntry>() == 16 && size_of::<OldWay>() == 56);
const _: () = assert!(size_of::<OldSet>() == 224 && size_of::<OldKey4>() == 16);
const _: () = assert!(size_of::<Set4>() == 224 && size_of::<types::conn_way>() == 56);

impl OldKey4 {
    fn flow_key(&self) -> types::flow_key {
        types::flow_key {
            src: [self.src, 0, 0, 0],
            dst: [self.dst, 0, 0, 0],
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            ..Default::default()
        }
    }
}

/// The connection tables of one dataplane, in any layout it may have.
pub enum Tables {
    Sets {
        /// CPUs with a table of their own.
        cpus: Vec<u32>,
        /// `conn_sets` mapped: every CPU's table in one array.
        sets: PodArray<types::conn_set>,
        meta: types::conn_meta,
        /// `conn_shared` mapped.
        shared: PodArray<types::conn_set>,
    },
    Sets4 {
        cpus: Vec<u32>,
        sets: MapHandle,
        nsets: u32,
        shared: MapHandle,
    },
    SetsLru {
        cpus: Vec<u32>,
        sets: MapHandle,
        shared4: MapHandle,
        shared6: MapHandle,
    },
    Lru {
        per_cpu: Vec<(u32, MapHandle)>,
        shared: MapHandle,
    },
}

const FLOW_KEY: usize = size_of::<types::flow_key>();
const CONN_SET: usize = size_of::<types::conn_set>();

fn sized(map: &MapHandle, key: usize, value: usize, name: &str) -> Result<()> {
    let (k, v) = (map.key_size() as usize, map.value_size() as usize);
    if (k, v) != (key, value) {
        bail!(
            "its {name} has {k}-byte keys and {v}-byte values, a layout this version cannot \
             carry over; replacing it would move established flows"
        );
    }
    Ok(())
}

fn u32_of(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_ne_bytes)
}

/// The `conn_meta` of the dataplane pinned in `dir`.
fn conn_meta(dir: &Path) -> Result<types::conn_meta> {
    let meta = open(dir, "conn_meta")?
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading conn_meta")?
        .and_then(|v| from_bytes::<types::conn_meta>(&v))
        .context("conn_meta is empty")?;
    ensure!(meta.nsets > 0, "conn_meta records no sets");
    Ok(meta)
}

/// CPUs marked in a `conn_cpus` array.
fn own_cpus(conn_cpus: &MapHandle) -> Result<Vec<u32>> {
    let mut cpus = Vec::new();
    for cpu in 0..conn_cpus.max_entries() {
        let own = conn_cpus
            .lookup(&cpu.to_ne_bytes(), MapFlags::ANY)
            .context("reading conn_cpus")?;
        if own.as_deref().and_then(u32_of) == Some(1) {
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

impl Tables {
    /// The tables of the dataplane whose maps are pinned in `dir`, in
    /// whichever layout it has.
    pub fn open_pinned(dir: &Path) -> Result<Tables> {
        if dir.join("conn_sets").exists() {
            let cpus = own_cpus(&open(dir, "conn_cpus")?)?;
            let sets = open(dir, "conn_sets")?;
            if dir.join("conn_shared").exists() && sets.value_size() as usize == size_of::<Set4>() {
                let shared = open(dir, "conn_shared")?;
                sized(&shared, 4, size_of::<Set4>(), "shared table")?;
                let nsets = conn_meta(dir)?.nsets;
                return Ok(Tables::Sets4 {
                    cpus,
                    sets,
                    nsets,
                    shared,
                });
            }
            if !dir.join("conn_shared").exists() {
                sized(&sets, 4, size_of::<OldSet>(), "per-CPU table")?;
                let shared4 = open(dir, "conn_fallback4")?;
                let shared6 = open(dir, "conn_fallback")?;
                sized(
                    &shared4,
                    size_of::<OldKey4>(),
                    size_of::<OldEntry>(),
                    "IPv4 table",
                )?;
                sized(&shared6, FLOW_KEY, size_of::<OldEntry>(), "shared table")?;
                return Ok(Tables::SetsLru {
                    cpus,
                    sets,
                    shared4,
                    shared6,
                });
            }
            sized(&sets, 4, CONN_SET, "per-CPU table")?;
            let shared = open(dir, "conn_shared")?;
            sized(&shared, 4, CONN_SET, "shared table")?;
            return Ok(Tables::Sets {
                cpus,
                sets: PodArray::map(&sets).context("mapping conn_sets")?,
                meta: conn_meta(dir)?,
                shared: PodArray::map(&shared).context("mapping conn_shared")?,
            });
        }
        if dir.join("conn_tables").exists() {
            let outer = open(dir, "conn_tables")?;
            let shared = open(dir, "conn_fallback")?;
            sized(&shared, FLOW_KEY, size_of::<OldEntry>(), "shared table")?;
            let mut per_cpu = Vec::new();
            for cpu in 0..outer.max_entries() {
                let id = outer
                    .lookup(&cpu.to_ne_bytes(), MapFlags::ANY)
                    .with_context(|| format!("reading the table of CPU {cpu}"))?;
                let Some(id) = id.as_deref().and_then(u32_of) else {
                    continue;
                };
                let table = MapHandle::from_map_id(id)
                    .with_context(|| format!("opening the table of CPU {cpu}"))?;
                sized(&table, FLOW_KEY, size_of::<OldEntry>(), "per-CPU table")?;
                per_cpu.push((cpu, table));
            }
            return Ok(Tables::Lru { per_cpu, shared });
        }
        bail!(
            "{} holds no connection tables katran knows (neither conn_sets nor conn_tables)",
            dir.display()
        )
    }

    /// Every entry, as stored.
    fn entries(&self) -> Result<Vec<Raw>> {
        let mut out = Vec::new();
        // an LRU hash of the builds before tags, 40- or 16-byte keys
        let hash = |table: &MapHandle, cpu: Option<u32>, out: &mut Vec<Raw>| -> Result<()> {
            let wide = table.key_size() as usize == FLOW_KEY;
            for k in table.keys() {
                // an entry evicted between listing and reading is just gone
                let Some(v) = table
                    .lookup(&k, MapFlags::ANY)
                    .context("reading a connection")?
                else {
                    continue;
                };
                let key = if wide {
                    from_bytes::<types::flow_key>(&k)
                } else {
                    from_bytes::<OldKey4>(&k).map(|k4| k4.flow_key())
                };
                if let (Some(key), Some(e)) = (key, from_bytes::<OldEntry>(&v)) {
                    out.push((cpu, key, e.real, e.atime));
                }
            }
            Ok(())
        };
        // per-CPU sets of any layout, `nsets` of them read by `read` (one
        // copy per CPU); the copies of the CPUs in `cpus`
        fn per_cpu<S>(
            nsets: u32,
            read: impl Fn(u32) -> Result<Option<Vec<S>>>,
            cpus: &[u32],
            ways: impl Fn(&S) -> Vec<(types::flow_key, u32, u64)>,
            out: &mut Vec<Raw>,
        ) -> Result<()> {
            if cpus.is_empty() {
                return Ok(());
            }
            for idx in 0..nsets {
                let Some(copies) = read(idx).context("reading a connection-table set")? else {
                    continue;
                };
                for (cpu, set) in copies.iter().enumerate() {
                    let cpu = cpu as u32;
                    if cpus.contains(&cpu) {
                        out.extend(ways(set).into_iter().map(|(k, r, a)| (Some(cpu), k, r, a)));
                    }
                }
            }
            Ok(())
        }
        fn tagged(ways: &[types::conn_way]) -> Vec<(types::flow_key, u32, u64)> {
            ways.iter()
                .filter(|w| w.entry.real != 0)
                .map(|w| (w.key, w.entry.real, conn_set::age_ns(w.entry.atime)))
                .collect()
        }
        let used = |set: &types::conn_set| tagged(&set.way);
        match self {
            Tables::Sets {
                cpus,
                sets,
                meta,
                shared,
            } => {
                let own = Sets::per_cpu(sets, meta.nsets);
                per_cpu(own.nsets(), |i| Ok(own.read(i)), cpus, used, &mut out)?;
                let shared = Sets::shared(shared);
                for idx in 0..shared.nsets() {
                    for set in shared.read(idx).unwrap_or_default() {
                        out.extend(used(&set).into_iter().map(|(k, r, a)| (None, k, r, a)));
                    }
                }
            }
            Tables::Sets4 {
                cpus,
                sets,
                nsets,
                shared,
            } => {
                let set4 = |map: &MapHandle, idx: u32| -> Result<Option<Set4>> {
                    Ok(map
                        .lookup(&idx.to_ne_bytes(), MapFlags::ANY)?
                        .and_then(|v| from_bytes::<Set4>(&v)))
                };
                let used4 = |set: &Set4| tagged(&set.way);
                if sets.map_type() == MapType::PercpuArray {
                    let read = |i: u32| percpu::copies::<Set4>(sets, i);
                    per_cpu(sets.max_entries(), read, cpus, used4, &mut out)?;
                } else {
                    // CPU c's set i at c * nsets + i; CPUs past the array
                    // read as empty
                    let copies = sets.max_entries() / nsets;
                    let read = |i: u32| -> Result<Option<Vec<Set4>>> {
                        (0..copies)
                            .map(|c| Ok(set4(sets, c * nsets + i)?.unwrap_or_default()))
                            .collect::<Result<Vec<_>>>()
                            .map(Some)
                    };
                    per_cpu(*nsets, read, cpus, used4, &mut out)?;
                }
                for idx in 0..shared.max_entries() {
                    if let Some(set) = set4(shared, idx).context("reading a shared set")? {
                        out.extend(used4(&set).into_iter().map(|(k, r, a)| (None, k, r, a)));
                    }
                }
            }
            Tables::SetsLru {
                cpus,
                sets,
                shared4,
                shared6,
            } => {
                let old = |set: &OldSet| -> Vec<(types::flow_key, u32, u64)> {
                    set.way
                        .iter()
                        .filter(|w| w.entry.real != 0)
                        .map(|w| (w.key, w.entry.real, w.entry.atime))
                        .collect()
                };
                let read = |i: u32| percpu::copies::<OldSet>(sets, i);
                per_cpu(sets.max_entries(), read, cpus, old, &mut out)?;
                hash(shared4, None, &mut out)?;
                hash(shared6, None, &mut out)?;
            }
            Tables::Lru { per_cpu, shared } => {
                for (cpu, t) in per_cpu {
                    hash(t, Some(*cpu), &mut out)?;
                }
                hash(shared, None, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Entries in every table.
    pub fn count(&self) -> Result<usize> {
        Ok(self.entries()?.len())
    }
}

/// Real index -> address, from a `reals` array of any build with this
/// layout (index 0 and unused slots name nothing).
pub fn real_addresses(reals: &MapHandle) -> Result<HashMap<u32, IpAddr>> {
    sized(reals, 4, size_of::<types::real_def>(), "reals array")?;
    const REAL_V6: u8 = 1;
    let mut out = HashMap::new();
    for i in 1..reals.max_entries() {
        let Some(v) = reals
            .lookup(&i.to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("reading real {i}"))?
        else {
            continue;
        };
        let Some(r) = from_bytes::<types::real_def>(&v) else {
            continue;
        };
        let words = r.addr.map(u32::from_be);
        if words == [0; 4] {
            continue;
        }
        let addr = if r.flags & REAL_V6 != 0 {
            IpAddr::V6(Ipv6Addr::from(
                words
                    .iter()
                    .fold(0u128, |acc, w| (acc << 32) | u128::from(*w)),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(words[0]))
        };
        out.insert(i, addr);
    }
    Ok(out)
}

/// Every entry of `t` whose real `reals` names.
pub fn read(t: &Tables, reals: &HashMap<u32, IpAddr>) -> Result<Vec<Conn>> {
    Ok(t.entries()?
        .into_iter()
        .filter_map(|(cpu, key, real, atime)| {
            Some(Conn {
                cpu,
                key,
                real: *reals.get(&real)?,
                atime,
            })
        })
        .collect())
}

/// What writing carried entries did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    pub written: usize,
    /// Already present (a later pass finds what an earlier one wrote).
    pub present: usize,
    /// Their real is not in the new configuration.
    pub real_gone: usize,
    /// Their set was full (or its free way was filled by the new
    /// dataplane while it was written).
    pub set_full: usize,
}

impl Carried {
    fn count(&mut self, placed: Placed) {
        match placed {
            Placed::Written => self.written += 1,
            Placed::Present => self.present += 1,
            Placed::Full => self.set_full += 1,
        }
    }
}

/// One entry to place: the copies (CPUs) of its set it goes into (`None`:
/// the shared table), key, tag, real index, age in units.
type Item = (Option<Vec<u32>>, types::flow_key, u32, u32, u32);

/// Writes `conns` into `t` (this build's layout), naming reals by the new
/// dataplane's `index`; never overwrites or evicts what `t` holds.
pub fn write(t: &Tables, conns: &[Conn], index: &HashMap<IpAddr, u32>) -> Result<Carried> {
    let Tables::Sets {
        cpus,
        sets,
        meta,
        shared,
    } = t
    else {
        bail!("connections are only written in this build's layout");
    };
    let per_cpu = Sets::per_cpu(sets, meta.nsets);
    let shared = Sets::shared(shared);
    let mut c = Carried::default();
    // entries grouped by (table, set): one read and one write per set
    let mut by_set: BTreeMap<(ConnTable, u32), Vec<Item>> = BTreeMap::new();
    for conn in conns {
        let Some(&real) = index.get(&conn.real) else {
            c.real_gone += 1;
            continue;
        };
        let targets: Option<Vec<u32>> = match conn.cpu {
            _ if cpus.is_empty() => None,
            Some(cpu) if cpus.contains(&cpu) => Some(vec![cpu]),
            Some(_) => None,
            None => Some(cpus.clone()),
        };
        let nsets = if targets.is_some() {
            per_cpu.nsets()
        } else {
            shared.nsets()
        };
        let slot = conn_set::slot(&conn.key, meta.seed, nsets);
        let age = conn_set::age_units(conn.atime);
        let table = if targets.is_some() {
            ConnTable::PerCpu
        } else {
            ConnTable::Shared
        };
        by_set
            .entry((table, slot.set))
            .or_default()
            .push((targets, conn.key, slot.tag, real, age));
    }
    for ((table, idx), items) in by_set {
        let sets = match table {
            ConnTable::PerCpu => &per_cpu,
            ConnTable::Shared => &shared,
        };
        let before = sets
            .read(idx)
            .with_context(|| format!("no set {idx} in a connection table"))?;
        let mut copies = before.clone();
        for (targets, k, tag, real, age) in &items {
            // no targets: the shared table's one copy
            for cpu in targets.as_deref().unwrap_or(&[0]) {
                if let Some(set) = copies.get_mut(*cpu as usize) {
                    c.count(conn_set::place(set, k, *tag, *real, *age));
                }
            }
        }
        // the new dataplane may already be running: a way it filled since
        // the read stays its own, and the entry meant for it is not carried
        let taken = sets.update(idx, &before, &copies)?;
        c.written = c.written.saturating_sub(taken);
        c.set_full += taken;
    }
    Ok(c)
}
