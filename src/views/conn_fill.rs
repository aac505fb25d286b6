//! How full the connection tables are, for `/metrics`: the entries in use
//! and the capacity of the per-CPU tables (every set of every CPU that has
//! one) and of the shared table (IPv4 and IPv6 flows are two LRU maps).
//! Counting reads the whole table, one system call per set or key, so a
//! table above [`MAX_COUNTED`] is given with its capacity only.

use anyhow::Result;
use libbpf_rs::{MapCore, MapHandle};

use crate::kernel::bpf::abi::types;
use crate::kernel::bpf::kernel_store::KernelStore;

/// Entries (per-CPU sets, shared-table keys) read at most per scrape; a
/// larger table's entries are not counted.
pub const MAX_COUNTED: u32 = 1 << 18;

/// One connection table's fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    /// `per-cpu`, `shared-ipv4` or `shared-ipv6`.
    pub table: &'static str,
    /// Flows it can hold (for `per-cpu`: over every CPU that has one).
    pub capacity: u64,
    /// Flows in it now; `None` when the table is too large to count.
    pub entries: Option<u64>,
}

fn shared(table: &'static str, map: &MapHandle) -> Fill {
    let capacity = u64::from(map.max_entries());
    let entries = (map.max_entries() <= MAX_COUNTED).then(|| map.keys().count() as u64);
    Fill {
        table,
        capacity,
        entries,
    }
}

/// Every table of the dataplane behind `store`; the per-CPU tables only
/// when some CPU has one.
pub fn read(store: &KernelStore) -> Result<Vec<Fill>> {
    let m = &store.maps;
    let mut out = Vec::new();
    let cpus = store.conn_cpus()?.len() as u64;
    if cpus > 0 {
        let sets = m.conn_sets.max_entries();
        let per_cpu = u64::from(sets) * u64::from(types::conn_layout::CONN_WAYS.0);
        out.push(Fill {
            table: "per-cpu",
            capacity: per_cpu * cpus,
            entries: if sets <= MAX_COUNTED {
                let mut n = 0;
                store.each_conn_set(|_, copies| {
                    n += copies
                        .iter()
                        .flat_map(|s| s.way)
                        .filter(|w| w.entry.real != 0)
                        .count() as u64;
                    false
                })?;
                Some(n)
            } else {
                None
            },
        });
    }
    out.push(shared("shared-ipv4", &m.conn_fallback4));
    out.push(shared("shared-ipv6", &m.conn_fallback));
    Ok(out)
}
