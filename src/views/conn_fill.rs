//! How full the connection tables are, for `/metrics`: the entries in use
//! and the capacity of the per-CPU tables (every set of every CPU that has
//! one) and of the shared table. Counting reads the whole table, one system
//! call per set, so a table above [`MAX_COUNTED`] sets is given with its
//! capacity only.

use anyhow::Result;

use crate::kernel::bpf::abi::types;
use crate::kernel::bpf::kernel_store::{ConnTable, KernelStore};

/// Sets read at most per table and scrape; a larger table's entries are
/// not counted.
pub const MAX_COUNTED: u32 = 1 << 18;

/// One connection table's fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    /// `per-cpu` or `shared`.
    pub table: &'static str,
    /// Flows it can hold (for `per-cpu`: over every CPU that has one).
    pub capacity: u64,
    /// Flows in it now; `None` when the table is too large to count.
    pub entries: Option<u64>,
}

/// Every table of the dataplane behind `store`; the per-CPU tables only
/// when some CPU has one.
pub fn read(store: &KernelStore) -> Result<Vec<Fill>> {
    let cpus = store.conn_cpus()?.len() as u64;
    let ways = u64::from(types::conn_layout::CONN_WAYS.0);
    let mut out = Vec::new();
    for table in store.conn_tables()? {
        let sets = store.conn_nsets(table);
        let entries = if sets <= MAX_COUNTED {
            let mut n = 0;
            store.each_set_of(table, |_, copies| {
                n += copies
                    .iter()
                    .flat_map(|s| s.way)
                    .filter(|w| w.entry.real != 0)
                    .count() as u64;
            })?;
            Some(n)
        } else {
            None
        };
        let copies = match table {
            ConnTable::PerCpu => cpus,
            ConnTable::Shared => 1,
        };
        out.push(Fill {
            table: table.name(),
            capacity: u64::from(sets) * ways * copies,
            entries,
        });
    }
    Ok(out)
}
