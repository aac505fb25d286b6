//! Reading per-CPU maps: the kernel hands back one copy of a value per
//! possible CPU, as bytes. Every per-CPU read in katran (the balancer's,
//! the decapsulator's and the health-check program's counters, the
//! per-CPU connection sets) decodes them here, once.

use anyhow::Result;
use libbpf_rs::{MapCore, MapFlags};

use super::abi::{from_bytes, Pod};

/// The copies of the value at `idx`, one per possible CPU in CPU order;
/// `None` when the map has no such index. A copy too short for a `T`
/// reads as `T::default()`, so the CPU order is kept.
pub fn copies<T: Pod>(map: &dyn MapCore, idx: u32) -> Result<Option<Vec<T>>> {
    let raw = map.lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)?;
    Ok(raw.map(|per_cpu| {
        per_cpu
            .iter()
            .map(|b| from_bytes::<T>(b).unwrap_or_default())
            .collect()
    }))
}

/// The `u64` counter at `idx` summed over CPUs; `None` when the map has
/// no such index.
pub fn sum(map: &dyn MapCore, idx: u32) -> Result<Option<u64>> {
    Ok(copies::<u64>(map, idx)?.map(|c| c.iter().sum()))
}
