//! The kernel memory a configuration pins, computed from its load-time
//! settings the way the loader sizes the maps (`bpf::loader`): the Maglev
//! rings, the per-CPU connection tables (one copy per possible CPU), the
//! shared table, counters and the fixed maps. `katran check` states it and
//! warns above [`WARN_ABOVE`]. Hashes that grow with the VIPs and reals
//! written (`vips`, `backends`, `server_ids`) hold a few hundred bytes per
//! entry and are left out.

use std::mem::size_of;

use serde::Serialize;

use crate::kernel::bpf::abi::types;
use crate::kernel::bpf::loader::LoadOptions;

/// `katran check` warns when a file pins more than this (1 GiB).
pub const WARN_ABOVE: u64 = 1 << 30;

/// A hash bucket (list head and lock); a hash has the next power of two
/// of buckets above its size, preallocated or not.
const BUCKET: u64 = 16;
/// A per-CPU array keeps one pointer per element besides the copies.
const PERCPU_PTR: u64 = 8;

/// Bytes, by what they hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Possible CPUs the per-CPU figures are multiplied by.
    pub cpus: u32,
    /// Two rings (one per generation) of `ring_size` slots per VIP.
    pub rings: u64,
    /// The per-CPU connection tables, over every CPU.
    pub conn_tables: u64,
    /// One CPU's share of `conn_tables` and of the per-CPU counters.
    pub per_cpu: u64,
    /// The shared table.
    pub shared_table: u64,
    /// Per-CPU counters: global, per VIP, per real.
    pub counters: u64,
    /// Reals, the VIP cache and filter, server ids, the buckets of the
    /// hashes that grow with the file, control values.
    pub other: u64,
    pub total: u64,
}

/// Array elements are 8-byte aligned (a ring slot of 4 bytes takes 8).
fn up8(n: usize) -> u64 {
    n.div_ceil(8) as u64 * 8
}

fn array<V>(entries: u32) -> u64 {
    u64::from(entries) * up8(size_of::<V>())
}

fn per_cpu_array<V>(entries: u32, cpus: u32) -> u64 {
    u64::from(entries) * (up8(size_of::<V>()) * u64::from(cpus) + PERCPU_PTR)
}

fn buckets(entries: u32) -> u64 {
    u64::from(entries.max(1).next_power_of_two()) * BUCKET
}

/// The memory a dataplane loaded with `o` pins on a machine of `cpus`
/// possible CPUs.
pub fn of(o: &LoadOptions, cpus: u32) -> Memory {
    let nsets = o.conn_nsets();
    let rings = array::<u32>(2 * o.max_vips * o.ring_size);
    // one plain array holding every possible CPU's table
    let conn_tables = array::<types::conn_set>(nsets.saturating_mul(cpus));
    let counters = per_cpu_array::<types::lb_counters>(1, cpus)
        + per_cpu_array::<types::traffic_counter>(o.max_vips, cpus)
        + per_cpu_array::<types::traffic_counter>(o.max_reals + 1, cpus)
        + per_cpu_array::<types::traffic_counter>(o.vip_real_entries().unwrap_or(u32::MAX), cpus)
        + per_cpu_array::<types::rate_state>(1, cpus);
    let per_cpu = (conn_tables + counters) / u64::from(cpus.max(1));
    let shared_table = array::<types::conn_set>(o.shared_nsets());
    let limits = crate::store::Limits::for_sizes(o.ring_size, o.max_vips, o.max_reals);
    let other = array::<types::real_def>(o.max_reals + 1)
        + array::<types::vip_slot>(types::vip_cache_layout::VIP_CACHE_SLOTS.0)
        + array::<u64>(types::vip_filter_layout::VIP_FILTER_WORDS.0)
        + array::<types::lb_gen>(1)
        + array::<u32>(2 * types::sid_layout::SID_DENSE_IDS.0)
        + array::<types::lb_ctl>(2)
        + array::<u32>(cpus)
        + buckets(2 * o.max_vips) * 2
        + buckets(limits.backends)
        + buckets(limits.server_ids);
    Memory {
        cpus,
        rings,
        conn_tables,
        per_cpu,
        shared_table,
        counters,
        other,
        total: rings + conn_tables + shared_table + counters + other,
    }
}

/// `279.1 MiB`, `1.2 GiB`.
pub fn human(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", b / (MIB * 1024.0))
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

impl Memory {
    /// One line for `katran check`.
    pub fn line(&self) -> String {
        format!(
            "pins about {} on {} CPUs: rings {}, per-CPU connection tables {} ({} per CPU with its counters), shared table {}, counters {}, other {}",
            human(self.total),
            self.cpus,
            human(self.rings),
            human(self.conn_tables),
            human(self.per_cpu),
            human(self.shared_table),
            human(self.counters),
            human(self.other),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_grow_with_vips_and_tables_with_cpus() {
        let base = LoadOptions::default();
        let m2 = of(&base, 2);
        // a 4-byte slot takes 8 bytes in an array
        assert_eq!(m2.rings, 2 * 256 * 65_537 * 8);
        let m4 = of(&base, 4);
        assert!(m4.total - m2.total >= 2 * m2.per_cpu - 2 * 8 * 16_384);
        let shared = of(
            &LoadOptions {
                forwarding_cpus: Some(Vec::new()),
                ..base.clone()
            },
            2,
        );
        assert!(shared.conn_tables < m2.conn_tables / 1000);
        let big = of(
            &LoadOptions {
                max_vips: 16_384,
                ..base
            },
            2,
        );
        assert!(big.total > WARN_ABOVE * 8, "{}", human(big.total));
    }
}
