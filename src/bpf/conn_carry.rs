//! Carrying connection-table entries from a running dataplane to the one
//! replacing it, so established flows keep their real across an upgrade or
//! a resize. The old dataplane may come from another build, so its tables
//! are opened raw (no shape check) and read by layout, known by key and
//! value sizes; entries name their real by address in between, because the
//! two dataplanes number their reals independently.
//!
//! Where an entry goes: into the same CPU's table when both have per-CPU
//! tables; into the shared table when the new one has no per-CPU tables;
//! from a shared table into every new per-CPU table (RSS decides which CPU
//! sees the flow next, and only one of them will use it).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::abi::{bytes, from_bytes, types};

/// A dataplane's connection tables.
pub struct Tables {
    /// (CPU, its table).
    pub per_cpu: Vec<(u32, MapHandle)>,
    pub shared: MapHandle,
}

fn open(dir: &Path, name: &str) -> Result<MapHandle> {
    let path = dir.join(name);
    MapHandle::from_pinned_path(&path).with_context(|| format!("opening {}", path.display()))
}

impl Tables {
    /// The tables of the dataplane whose maps are pinned in `maps_dir`.
    pub fn open_pinned(maps_dir: &Path) -> Result<Tables> {
        Tables::of(
            &open(maps_dir, "conn_tables")?,
            open(maps_dir, "conn_fallback")?,
        )
    }

    /// The tables reachable from an array of per-CPU tables and the shared one.
    pub fn of(outer: &MapHandle, shared: MapHandle) -> Result<Tables> {
        let mut per_cpu = Vec::new();
        for cpu in 0..outer.max_entries() {
            let id = outer
                .lookup(&cpu.to_ne_bytes(), MapFlags::ANY)
                .with_context(|| format!("reading the table of CPU {cpu}"))?;
            let Some(id) = id.and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok()) else {
                continue;
            };
            let table = MapHandle::from_map_id(u32::from_ne_bytes(id))
                .with_context(|| format!("opening the table of CPU {cpu}"))?;
            per_cpu.push((cpu, table));
        }
        Ok(Tables { per_cpu, shared })
    }

    fn all(&self) -> impl Iterator<Item = (Option<u32>, &MapHandle)> {
        self.per_cpu
            .iter()
            .map(|(c, t)| (Some(*c), t))
            .chain(std::iter::once((None, &self.shared)))
    }

    /// Entries in every table.
    pub fn count(&self) -> usize {
        self.all().map(|(_, t)| t.keys().count()).sum()
    }
}

/// One connection, independent of any layout or real numbering.
#[derive(Clone, Debug)]
pub struct Conn {
    /// The table it was in (`None`: the shared one).
    pub cpu: Option<u32>,
    pub key: types::flow_key,
    pub real: IpAddr,
    /// When the dataplane last saw it (CLOCK_MONOTONIC ns, the same clock
    /// in both).
    pub atime: u64,
}

const FLOW_KEY: usize = size_of::<types::flow_key>();
const CONN_ENTRY: usize = size_of::<types::conn_entry>();
const REAL_DEF: usize = size_of::<types::real_def>();
const REAL_V6: u8 = 1;

/// Refuses tables whose layout this version cannot read.
pub fn check_layout(t: &Tables) -> Result<()> {
    for (_, table) in t.all() {
        let (k, v) = (table.key_size() as usize, table.value_size() as usize);
        if (k, v) != (FLOW_KEY, CONN_ENTRY) {
            bail!(
                "its connection tables have {k}-byte keys and {v}-byte values, a layout this \
                 version cannot carry over; replacing it would move established flows"
            );
        }
    }
    Ok(())
}

/// Real index -> address, from a `reals` array of any build with this
/// layout (index 0 and unused slots name nothing).
pub fn real_addresses(reals: &MapHandle) -> Result<HashMap<u32, IpAddr>> {
    if reals.value_size() as usize != REAL_DEF {
        bail!(
            "its reals have {}-byte entries, a layout this version cannot read",
            reals.value_size()
        );
    }
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
        let addr = if r.flags & REAL_V6 != 0 {
            IpAddr::V6(Ipv6Addr::from(
                (u128::from(words[0]) << 96)
                    | (u128::from(words[1]) << 64)
                    | (u128::from(words[2]) << 32)
                    | u128::from(words[3]),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(words[0]))
        };
        if words != [0; 4] {
            out.insert(i, addr);
        }
    }
    Ok(out)
}

/// Every entry of `t` whose real `reals` names.
pub fn read(t: &Tables, reals: &HashMap<u32, IpAddr>) -> Result<Vec<Conn>> {
    check_layout(t)?;
    let mut out = Vec::new();
    for (cpu, table) in t.all() {
        for key in table.keys() {
            // an entry evicted between listing and reading is just gone
            let Some(v) = table
                .lookup(&key, MapFlags::ANY)
                .context("reading a connection")?
            else {
                continue;
            };
            let (Some(key), Some(e)) = (
                from_bytes::<types::flow_key>(&key),
                from_bytes::<types::conn_entry>(&v),
            ) else {
                continue;
            };
            if let Some(real) = reals.get(&e.real) {
                out.push(Conn {
                    cpu,
                    key,
                    real: *real,
                    atime: e.atime,
                });
            }
        }
    }
    Ok(out)
}

/// What writing carried entries did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    pub written: usize,
    /// Already present (a later pass finds what an earlier one wrote).
    pub present: usize,
    /// Their real is not in the new configuration.
    pub real_gone: usize,
}

/// Writes `conns` into `t`, naming reals by the new dataplane's `index`;
/// never overwrites an entry the new dataplane already has.
pub fn write(t: &Tables, conns: &[Conn], index: &HashMap<IpAddr, u32>) -> Result<Carried> {
    let mut c = Carried::default();
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
        let targets: Vec<&MapHandle> = match conn.cpu {
            _ if t.per_cpu.is_empty() => vec![&t.shared],
            Some(cpu) => match t.per_cpu.iter().find(|(c, _)| *c == cpu) {
                Some((_, table)) => vec![table],
                None => vec![&t.shared],
            },
            None => t.per_cpu.iter().map(|(_, table)| table).collect(),
        };
        for table in targets {
            match table.update(bytes(&conn.key), bytes(&entry), MapFlags::NO_EXIST) {
                Ok(()) => c.written += 1,
                Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => c.present += 1,
                Err(e) => return Err(e).context("writing a carried connection"),
            }
        }
    }
    Ok(c)
}
