//! Carrying connection-table entries from a running dataplane to the one
//! replacing it, so established flows keep their real across an upgrade or
//! a resize. The old dataplane may come from another build, so its tables
//! are opened raw (no shape check) and read by layout, told apart by which
//! maps it pinned; entries name their real by address in between, because
//! the two dataplanes number their reals independently.
//!
//! Layouts read:
//! - *sets* (this build): per-CPU set-associative arrays (`conn_sets`, with
//!   `conn_cpus` and `conn_meta`), and a shared table split into IPv4
//!   (`conn_fallback4`, 16-byte keys) and IPv6 (`conn_fallback`);
//! - *lru* (builds before it): one LRU hash per CPU behind the array of maps
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

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::abi::{self, bytes, from_bytes, types};
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

/// A connection as its table stores it: (table, key, entry).
type Raw = (Option<u32>, types::flow_key, types::conn_entry);

/// The connection tables of one dataplane, in either layout.
pub enum Tables {
    Sets {
        /// CPUs with a table of their own.
        cpus: Vec<u32>,
        sets: MapHandle,
        meta: types::conn_meta,
        shared4: MapHandle,
        shared6: MapHandle,
    },
    Lru {
        per_cpu: Vec<(u32, MapHandle)>,
        shared: MapHandle,
    },
}

const FLOW_KEY: usize = size_of::<types::flow_key>();
const FLOW_KEY4: usize = size_of::<types::flow_key4>();
const CONN_ENTRY: usize = size_of::<types::conn_entry>();
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

impl Tables {
    /// The tables of the dataplane whose maps are pinned in `dir`, in
    /// whichever layout it has.
    pub fn open_pinned(dir: &Path) -> Result<Tables> {
        if dir.join("conn_sets").exists() {
            let conn_cpus = open(dir, "conn_cpus")?;
            let sets = open(dir, "conn_sets")?;
            let meta_map = open(dir, "conn_meta")?;
            let shared4 = open(dir, "conn_fallback4")?;
            let shared6 = open(dir, "conn_fallback")?;
            sized(&sets, 4, CONN_SET, "per-CPU table")?;
            sized(&shared4, FLOW_KEY4, CONN_ENTRY, "shared IPv4 table")?;
            sized(&shared6, FLOW_KEY, CONN_ENTRY, "shared table")?;
            let meta = meta_map
                .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
                .context("reading conn_meta")?
                .and_then(|v| from_bytes::<types::conn_meta>(&v))
                .context("conn_meta is empty")?;
            let mut cpus = Vec::new();
            for cpu in 0..conn_cpus.max_entries() {
                let own = conn_cpus
                    .lookup(&cpu.to_ne_bytes(), MapFlags::ANY)
                    .context("reading conn_cpus")?;
                if own.as_deref().and_then(u32_of) == Some(1) {
                    cpus.push(cpu);
                }
            }
            return Ok(Tables::Sets {
                cpus,
                sets,
                meta,
                shared4,
                shared6,
            });
        }
        if dir.join("conn_tables").exists() {
            let outer = open(dir, "conn_tables")?;
            let shared = open(dir, "conn_fallback")?;
            sized(&shared, FLOW_KEY, CONN_ENTRY, "shared table")?;
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
                sized(&table, FLOW_KEY, CONN_ENTRY, "per-CPU table")?;
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
                    from_bytes::<types::flow_key4>(&k).map(|k4| abi::flow_key_of4(&k4))
                };
                if let (Some(key), Some(e)) = (key, from_bytes::<types::conn_entry>(&v)) {
                    out.push((cpu, key, e));
                }
            }
            Ok(())
        };
        match self {
            Tables::Sets {
                cpus,
                sets,
                shared4,
                shared6,
                ..
            } => {
                if !cpus.is_empty() {
                    for idx in 0..sets.max_entries() {
                        let Some(copies) = percpu::copies::<types::conn_set>(sets, idx)
                            .context("reading a connection-table set")?
                        else {
                            continue;
                        };
                        for (cpu, set) in copies.iter().enumerate() {
                            let cpu = cpu as u32;
                            if !cpus.contains(&cpu) {
                                continue;
                            }
                            for w in set.way.iter().filter(|w| w.entry.real != 0) {
                                out.push((Some(cpu), w.key, w.entry));
                            }
                        }
                    }
                }
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
        .filter_map(|(cpu, key, e)| {
            Some(Conn {
                cpu,
                key,
                real: *reals.get(&e.real)?,
                atime: e.atime,
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
    /// Their set in a per-CPU table was full.
    pub set_full: usize,
}

/// Puts one entry into a set unless its key is there or the set is full.
fn place(set: &mut types::conn_set, key: &types::flow_key, e: types::conn_entry, c: &mut Carried) {
    if set
        .way
        .iter()
        .any(|w| w.entry.real != 0 && bytes(&w.key) == bytes(key))
    {
        c.present += 1;
        return;
    }
    match set.way.iter_mut().find(|w| w.entry.real == 0) {
        Some(free) => {
            free.key = *key;
            free.entry = e;
            c.written += 1;
        }
        None => c.set_full += 1,
    }
}

/// Writes `conns` into `t` (this build's layout), naming reals by the new
/// dataplane's `index`; never overwrites or evicts what `t` holds.
pub fn write(t: &Tables, conns: &[Conn], index: &HashMap<IpAddr, u32>) -> Result<Carried> {
    let Tables::Sets {
        cpus,
        sets,
        meta,
        shared4,
        shared6,
    } = t
    else {
        bail!("connections are only written in this build's layout");
    };
    let mut c = Carried::default();
    // per-CPU entries grouped by set: one read and one write per set
    let mut by_set: BTreeMap<u32, Vec<(Vec<u32>, types::flow_key, types::conn_entry)>> =
        BTreeMap::new();
    for conn in conns {
        let Some(&real) = index.get(&conn.real) else {
            c.real_gone += 1;
            continue;
        };
        let entry = types::conn_entry {
            real,
            atime: conn.atime,
            ..Default::default()
        };
        let targets: Vec<u32> = match conn.cpu {
            _ if cpus.is_empty() => Vec::new(),
            Some(cpu) if cpus.contains(&cpu) => vec![cpu],
            Some(_) => Vec::new(),
            None => cpus.clone(),
        };
        if targets.is_empty() {
            let (table, key) = match abi::flow_key4(&conn.key) {
                Some(k4) => (shared4, bytes(&k4).to_vec()),
                None => (shared6, bytes(&conn.key).to_vec()),
            };
            match table.update(&key, bytes(&entry), MapFlags::NO_EXIST) {
                Ok(()) => c.written += 1,
                Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => c.present += 1,
                Err(e) => return Err(e).context("writing a carried connection"),
            }
            continue;
        }
        let idx = abi::conn_set_index(&conn.key, meta);
        by_set
            .entry(idx)
            .or_default()
            .push((targets, conn.key, entry));
    }
    for (idx, items) in by_set {
        let key = idx.to_ne_bytes();
        let mut copies = percpu::copies::<types::conn_set>(sets, idx)
            .context("reading a connection-table set")?
            .unwrap_or_default();
        for (targets, k, e) in &items {
            for cpu in targets {
                if let Some(set) = copies.get_mut(*cpu as usize) {
                    place(set, k, *e, &mut c);
                }
            }
        }
        let out: Vec<Vec<u8>> = copies.iter().map(|s| bytes(s).to_vec()).collect();
        sets.update_percpu(&key, &out, MapFlags::ANY)
            .context("writing a connection-table set")?;
    }
    Ok(c)
}
