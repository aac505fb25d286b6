//! Loads the balancer object: sizes its maps and read-only settings from the
//! configuration before load, marks which CPUs have a connection table of
//! their own, and hands out map handles and programs. Attaching lives in
//! `attach`.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, OpenObject, PrintLevel};

use super::abi::types;
use super::kernel_store::{KernelStore, Maps};
use super::skel::{BalancerSkel, BalancerSkelBuilder};

/// Sizes fixed at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Slots per Maglev ring (a prime; Katran uses 65537).
    pub ring_size: u32,
    pub max_vips: u32,
    pub max_reals: u32,
    /// Entries of each per-CPU connection table (a set-associative array of
    /// `conn_table_size / CONN_WAYS` sets).
    pub conn_table_size: u32,
    /// Entries of the shared table used by CPUs without one (the same
    /// sets, `fallback_table_size / CONN_WAYS` of them).
    pub fallback_table_size: u32,
    /// CPUs that get their own table; `None` = every CPU.
    pub forwarding_cpus: Option<Vec<u32>>,
    /// Count traffic per (VIP, real) too (a row of `max_reals + 1`
    /// counters per VIP, per CPU).
    pub vip_real_counters: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_size: 65537,
            max_vips: 256,
            max_reals: 4096,
            conn_table_size: 65536,
            fallback_table_size: 65536,
            forwarding_cpus: None,
            vip_real_counters: false,
        }
    }
}

impl LoadOptions {
    /// No CPU has a table of its own: every CPU uses the shared one.
    pub fn shared_only(&self) -> bool {
        self.forwarding_cpus.as_ref().is_some_and(Vec::is_empty)
    }

    /// Sets of `conn_sets` (one when no CPU uses them).
    pub fn conn_nsets(&self) -> u32 {
        if self.shared_only() {
            1
        } else {
            conn_sets(self.conn_table_size)
        }
    }

    /// Sets of the shared table `conn_shared`: one when every CPU has a
    /// table of its own, since no packet then uses it.
    pub fn shared_nsets(&self) -> u32 {
        if self.forwarding_cpus.is_none() {
            1
        } else {
            conn_sets(self.fallback_table_size)
        }
    }

    /// Entries of `vip_real_stats`: a row of `max_reals + 1` per VIP when
    /// counted, else one; `None` when that does not fit a map.
    pub fn vip_real_entries(&self) -> Option<u32> {
        if self.vip_real_counters {
            self.max_vips.checked_mul(self.max_reals + 1)
        } else {
            Some(1)
        }
    }
}

/// Sets in a per-CPU connection table of `entries` flows.
pub fn conn_sets(entries: u32) -> u32 {
    (entries / types::conn_layout::CONN_WAYS.0).max(1)
}

/// A seed nobody outside can guess (the per-CPU tables' set hash).
fn random_u32() -> Result<u32> {
    let mut b = [0u8; 4];
    // SAFETY: writes at most 4 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    anyhow::ensure!(n == 4, "getrandom: {}", std::io::Error::last_os_error());
    Ok(u32::from_ne_bytes(b))
}

/// libbpf warnings that come with a successful operation (creating the
/// clsact qdisc the health-check program needs, attaching it beside
/// another filter): logged at debug level, not as warnings.
const EXPECTED: &[&str] = &["Parent Qdisc doesn't exists", "Exclusivity flag on"];

/// Routes libbpf's own messages into `log` at matching levels.
pub fn route_libbpf_log() {
    fn print(level: PrintLevel, msg: String) {
        let msg = msg.trim_end();
        match level {
            // what every successful tc attach says: not worth a warning
            PrintLevel::Warn if EXPECTED.iter().any(|e| msg.contains(e)) => {
                log::debug!(target: "libbpf", "{msg}")
            }
            PrintLevel::Warn => log::warn!(target: "libbpf", "{msg}"),
            PrintLevel::Info => log::info!(target: "libbpf", "{msg}"),
            PrintLevel::Debug => log::debug!(target: "libbpf", "{msg}"),
        }
    }
    libbpf_rs::set_print(Some((PrintLevel::Debug, print)));
}

/// A loaded (not necessarily attached) balancer.
pub struct Dataplane {
    skel: BalancerSkel<'static>,
    pub options: LoadOptions,
}

impl Dataplane {
    pub fn load(options: &LoadOptions) -> Result<Dataplane> {
        // The skeleton borrows its object storage for as long as it lives;
        // one small allocation per load is leaked to give it that lifetime.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = BalancerSkelBuilder::default()
            .open(storage)
            .context("opening the balancer object")?;
        let o = options;
        let cpus = libbpf_rs::num_possible_cpus().context("counting CPUs")? as u32;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("balancer object has no read-only data")?;
        rodata.ring_size = o.ring_size;
        let slot = crate::fastmod::FastMod::new(o.ring_size).context("ring_size is below 2")?;
        rodata.ring_mod_mult = slot.mult;
        rodata.ring_mod_shift = slot.shift;
        // No per-CPU table at all: the program goes to the shared one directly.
        rodata.shared_table_only = u8::from(o.shared_only());
        rodata.every_cpu_own_table = u8::from(o.forwarding_cpus.is_none());
        let nsets = o.conn_nsets();
        let seed = random_u32()?;
        rodata.conn_nsets = nsets;
        rodata.conn_shared_nsets = o.shared_nsets();
        rodata.conn_keys = katran_core::conn_hash::ConnKeys::from_seed(seed).0;
        let vip_real_entries = o
            .vip_real_entries()
            .context("max_vips x (max_reals + 1) per-(VIP, real) counters exceed 2^32")?;
        if o.vip_real_counters {
            rodata.vip_real_slots = o.max_reals + 1;
        }
        let limits = crate::store::Limits::for_sizes(o.ring_size, o.max_vips, o.max_reals);
        // every possible CPU's table, one after another
        let per_cpu_sets = cpus
            .checked_mul(nsets)
            .context("possible CPUs x connection-table sets exceed 2^32")?;
        let m = &mut open.maps;
        let sizes = [
            (&mut m.vips, 2 * o.max_vips),
            (&mut m.vip_addrs, 2 * o.max_vips),
            (&mut m.rings, 2 * o.max_vips * o.ring_size),
            (&mut m.reals, o.max_reals + 1),
            (&mut m.backends, limits.backends),
            (&mut m.server_ids, limits.server_ids),
            (&mut m.conn_cpus, cpus),
            (&mut m.conn_sets, per_cpu_sets),
            (&mut m.conn_shared, o.shared_nsets()),
            (&mut m.vip_stats, o.max_vips),
            (&mut m.real_stats, o.max_reals + 1),
            (&mut m.vip_real_stats, vip_real_entries),
        ];
        for (map, n) in sizes {
            map.set_max_entries(n)
                .with_context(|| format!("sizing map {}", map.name().to_string_lossy()))?;
        }
        let skel = open
            .load()
            .context("loading the balancer into the kernel")?;
        let dp = Dataplane {
            skel,
            options: options.clone(),
        };
        dp.mark_conn_cpus(cpus)?;
        let meta = types::conn_meta { seed, nsets };
        dp.skel
            .maps
            .conn_meta
            .update(&0u32.to_ne_bytes(), super::abi::bytes(&meta), MapFlags::ANY)
            .context("recording the connection-table seed")?;
        dp.skel
            .maps
            .lb_stamp
            .update(
                &0u32.to_ne_bytes(),
                &super::stamp_value().to_ne_bytes(),
                MapFlags::ANY,
            )
            .context("writing the dataplane's stamp")?;
        Ok(dp)
    }

    /// Gives each forwarding CPU its table in `conn_sets` (`conn_cpus`).
    fn mark_conn_cpus(&self, cpus: u32) -> Result<()> {
        let which: Vec<u32> = match &self.options.forwarding_cpus {
            Some(list) => list.clone(),
            None => (0..cpus).collect(),
        };
        for cpu in which {
            self.skel
                .maps
                .conn_cpus
                .update(&cpu.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY)
                .with_context(|| format!("giving CPU {cpu} its connection table"))?;
        }
        Ok(())
    }

    /// Handles to every map (duplicated descriptors).
    pub fn maps(&self) -> Result<Maps> {
        let m = &self.skel.maps;
        let h = |map: &libbpf_rs::Map<'_>| -> Result<MapHandle> {
            MapHandle::try_from(map)
                .with_context(|| format!("duplicating map {}", map.name().to_string_lossy()))
        };
        Ok(Maps {
            lb_gen: h(&m.lb_gen)?,
            lb_ctl: h(&m.lb_ctl)?,
            vips: h(&m.vips)?,
            vip_addrs: h(&m.vip_addrs)?,
            vip_filter: h(&m.vip_filter)?,
            vip_cache: h(&m.vip_cache)?,
            rings: h(&m.rings)?,
            reals: h(&m.reals)?,
            backends: h(&m.backends)?,
            server_ids: h(&m.server_ids)?,
            server_ids_dense: h(&m.server_ids_dense)?,
            conn_cpus: h(&m.conn_cpus)?,
            conn_sets: h(&m.conn_sets)?,
            conn_meta: h(&m.conn_meta)?,
            conn_shared: h(&m.conn_shared)?,
            stats: h(&m.stats)?,
            vip_stats: h(&m.vip_stats)?,
            real_stats: h(&m.real_stats)?,
            vip_real_stats: h(&m.vip_real_stats)?,
        })
    }

    /// The map holding the build's stamp (pinned as `maps/lb_stamp`).
    pub fn stamp_map(&self) -> Result<MapHandle> {
        MapHandle::try_from(&self.skel.maps.lb_stamp).context("duplicating map lb_stamp")
    }

    /// The slot a replacement lends the old rings through (`bpf::prev_ring`).
    pub fn prev_ring_map(&self) -> Result<MapHandle> {
        MapHandle::try_from(&self.skel.maps.prev_ring).context("duplicating map prev_ring")
    }

    pub fn store(&self) -> Result<KernelStore> {
        KernelStore::new(self.maps()?)
    }

    pub fn balancer(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.skel.progs.balancer
    }

    /// A program that only returns XDP_PASS (the benchmark's floor).
    pub fn pass_floor(&self) -> &libbpf_rs::ProgramMut<'static> {
        &self.skel.progs.pass_floor
    }
}
