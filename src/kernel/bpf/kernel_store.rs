//! [`MapStore`] over the real maps: map handles (from a freshly loaded
//! object or from the pins of an earlier run) and the rings memory-mapped,
//! so reading a ring or writing its changed slots costs no system call.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use super::abi::{self, bytes, from_bytes, types, Pod};
use super::conn_set;
pub use super::conn_set::ConnTable;
use super::conn_set::Sets;
use super::mmap_array::{PodArray, U32Array};
use crate::maglev::RingDelta;
use crate::model::{Globals, RingKind, VipKey};
use crate::store::{BackendRecord, Limits, MapStore, RealRecord, VipRecord};

/// Every map the control plane touches, by name as pinned.
pub struct Maps {
    pub lb_gen: MapHandle,
    pub lb_ctl: MapHandle,
    pub vips: MapHandle,
    pub vip_addrs: MapHandle,
    pub vip_filter: MapHandle,
    pub vip_cache: MapHandle,
    pub rings: MapHandle,
    pub reals: MapHandle,
    pub backends: MapHandle,
    pub server_ids: MapHandle,
    pub server_ids_dense: MapHandle,
    pub conn_cpus: MapHandle,
    pub conn_sets: MapHandle,
    pub conn_meta: MapHandle,
    pub conn_shared: MapHandle,
    pub stats: MapHandle,
    pub vip_stats: MapHandle,
    pub real_stats: MapHandle,
    /// Per (VIP, real) when counted (`vip_real_counters`), else one entry.
    pub vip_real_stats: MapHandle,
}

/// Name, expected type, key size and value size of each map.
pub const MAP_SPECS: &[(&str, MapType, usize, usize)] = &[
    ("lb_gen", MapType::Array, 4, size_of::<types::lb_gen>()),
    ("lb_ctl", MapType::Array, 4, size_of::<types::lb_ctl>()),
    (
        "vips",
        MapType::Hash,
        size_of::<types::vip_key>(),
        size_of::<types::vip_meta>(),
    ),
    ("vip_addrs", MapType::Hash, size_of::<types::addr_key>(), 4),
    ("vip_filter", MapType::Array, 4, 8),
    ("vip_cache", MapType::Array, 4, size_of::<types::vip_slot>()),
    ("rings", MapType::Array, 4, 4),
    ("reals", MapType::Array, 4, size_of::<types::real_def>()),
    (
        "backends",
        MapType::Hash,
        size_of::<types::backend_key>(),
        size_of::<types::backend>(),
    ),
    ("server_ids", MapType::Hash, size_of::<types::sid_key>(), 4),
    ("server_ids_dense", MapType::Array, 4, 4),
    ("conn_cpus", MapType::Array, 4, 4),
    (
        "conn_meta",
        MapType::Array,
        4,
        size_of::<types::conn_meta>(),
    ),
    ("conn_sets", MapType::Array, 4, size_of::<types::conn_set>()),
    (
        "conn_shared",
        MapType::Array,
        4,
        size_of::<types::conn_set>(),
    ),
    (
        "stats",
        MapType::PercpuArray,
        4,
        size_of::<types::lb_counters>(),
    ),
    (
        "vip_stats",
        MapType::PercpuArray,
        4,
        size_of::<types::traffic_counter>(),
    ),
    (
        "real_stats",
        MapType::PercpuArray,
        4,
        size_of::<types::traffic_counter>(),
    ),
    (
        "vip_real_stats",
        MapType::PercpuArray,
        4,
        size_of::<types::traffic_counter>(),
    ),
];

fn check(handle: &MapHandle, name: &str) -> Result<()> {
    let (_, ty, k, v) = MAP_SPECS
        .iter()
        .find(|s| s.0 == name)
        .with_context(|| format!("unknown map {name}"))?;
    ensure!(
        handle.map_type() == *ty
            && handle.key_size() as usize == *k
            && handle.value_size() as usize == *v,
        "map {name} is a {:?} with {}-byte keys and {}-byte values; this katran expects {:?}, {k}, {v} \
         (left by a different version? `katran down` removes it)",
        handle.map_type(),
        handle.key_size(),
        handle.value_size(),
        ty
    );
    Ok(())
}

impl Maps {
    /// Every map with its pin name.
    pub fn named(&self) -> [(&'static str, &MapHandle); 19] {
        [
            ("lb_gen", &self.lb_gen),
            ("lb_ctl", &self.lb_ctl),
            ("vips", &self.vips),
            ("vip_addrs", &self.vip_addrs),
            ("vip_filter", &self.vip_filter),
            ("vip_cache", &self.vip_cache),
            ("rings", &self.rings),
            ("reals", &self.reals),
            ("backends", &self.backends),
            ("server_ids", &self.server_ids),
            ("server_ids_dense", &self.server_ids_dense),
            ("conn_cpus", &self.conn_cpus),
            ("conn_sets", &self.conn_sets),
            ("conn_meta", &self.conn_meta),
            ("conn_shared", &self.conn_shared),
            ("stats", &self.stats),
            ("vip_stats", &self.vip_stats),
            ("real_stats", &self.real_stats),
            ("vip_real_stats", &self.vip_real_stats),
        ]
    }

    /// Ring size, maximum VIPs and maximum reals the maps were sized for.
    pub fn limits(&self) -> Result<Limits> {
        let max_vips = self.vip_stats.max_entries();
        let rings = self.rings.max_entries();
        ensure!(
            max_vips > 0 && rings.is_multiple_of(2 * max_vips),
            "rings map size {rings} does not fit {max_vips} VIPs"
        );
        Ok(Limits {
            ring_size: rings / (2 * max_vips),
            max_vips,
            max_reals: self.reals.max_entries().saturating_sub(1),
            backends: self.backends.max_entries(),
            server_ids: self.server_ids.max_entries(),
        })
    }

    /// Opens the maps pinned under `dir`, checking each one's shape.
    pub fn open_pinned(dir: &Path) -> Result<Maps> {
        let open = |name: &str| -> Result<MapHandle> {
            let path = dir.join(name);
            let h = MapHandle::from_pinned_path(&path)
                .with_context(|| format!("opening pinned map {}", path.display()))?;
            check(&h, name)?;
            Ok(h)
        };
        Ok(Maps {
            lb_gen: open("lb_gen")?,
            lb_ctl: open("lb_ctl")?,
            vips: open("vips")?,
            vip_addrs: open("vip_addrs")?,
            vip_filter: open("vip_filter")?,
            vip_cache: open("vip_cache")?,
            rings: open("rings")?,
            reals: open("reals")?,
            backends: open("backends")?,
            server_ids: open("server_ids")?,
            server_ids_dense: open("server_ids_dense")?,
            conn_cpus: open("conn_cpus")?,
            conn_sets: open("conn_sets")?,
            conn_meta: open("conn_meta")?,
            conn_shared: open("conn_shared")?,
            stats: open("stats")?,
            vip_stats: open("vip_stats")?,
            real_stats: open("real_stats")?,
            vip_real_stats: open("vip_real_stats")?,
        })
    }
}

fn get<T: Pod>(map: &MapHandle, key: &[u8]) -> Result<Option<T>> {
    Ok(map
        .lookup(key, MapFlags::ANY)
        .context("map lookup")?
        .and_then(|v| from_bytes::<T>(&v)))
}

/// Every entry of a (non per-CPU) map, read with batch lookups: a handful
/// of system calls instead of two per entry. Any failure other than the
/// end of the map is an error, never a silently short listing.
fn all<K: Pod, V: Pod>(map: &MapHandle) -> Result<Vec<(K, V)>> {
    let (ks, vs) = (map.key_size() as usize, map.value_size() as usize);
    let mut count: u32 = 1024;
    let mut token_in: Option<u64> = None;
    let mut token_out: u64 = 0;
    let mut out = Vec::new();
    loop {
        let mut keys = vec![0u8; ks * count as usize];
        let mut vals = vec![0u8; vs * count as usize];
        let mut n = count;
        let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
            sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        let in_ptr = token_in
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| (t as *mut u64).cast());
        // SAFETY: buffers hold `count` keys and values; tokens are 8 bytes
        // (the kernel uses 4 for arrays and hashes).
        let ret = unsafe {
            libbpf_rs::libbpf_sys::bpf_map_lookup_batch(
                map.as_fd().as_raw_fd(),
                in_ptr,
                (&mut token_out as *mut u64).cast(),
                keys.as_mut_ptr().cast(),
                vals.as_mut_ptr().cast(),
                &mut n,
                &opts,
            )
        };
        let err = if ret < 0 {
            std::io::Error::last_os_error().raw_os_error()
        } else {
            None
        };
        if err == Some(libc::ENOSPC) && count < 1 << 20 {
            count *= 4; // a bucket larger than the batch: retry bigger
            continue;
        }
        for i in 0..n as usize {
            if let (Some(k), Some(v)) = (
                from_bytes::<K>(&keys[i * ks..]),
                from_bytes::<V>(&vals[i * vs..]),
            ) {
                out.push((k, v));
            }
        }
        match err {
            None => token_in = Some(token_out),
            Some(libc::ENOENT) => return Ok(out),
            Some(e) => {
                return Err(std::io::Error::from_raw_os_error(e)).with_context(|| {
                    format!("batch lookup of map {}", map.name().to_string_lossy())
                })
            }
        }
    }
}

/// Index of a server id in `server_ids_dense` (id * 2 + generation), or
/// `None` for an id the hash `server_ids` holds (see bpf/lb_types.h).
fn dense_sid_index(id: u32, generation: u8) -> Option<u32> {
    (id < types::sid_layout::SID_DENSE_IDS.0).then(|| id * 2 + u32::from(generation & 1))
}

fn delete_if_present(map: &MapHandle, key: &[u8]) -> Result<()> {
    match map.delete(key) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).context("map delete"),
    }
}

/// The kernel's maps as a [`MapStore`].
pub struct KernelStore {
    pub maps: Maps,
    limits: Limits,
    ring: U32Array,
    /// Sets per CPU of `conn_sets`.
    conn_nsets: u32,
    /// `conn_sets` mapped, once something reads or writes its sets (the
    /// kernel maps every page at once, and most users of a store never
    /// look at a connection).
    conn: OnceCell<PodArray<types::conn_set>>,
    /// `conn_shared` mapped on first use likewise.
    shared: OnceCell<PodArray<types::conn_set>>,
}

impl KernelStore {
    /// The limits are read from the maps' sizes.
    pub fn new(maps: Maps) -> Result<KernelStore> {
        let limits = maps.limits()?;
        let ring = U32Array::map(&maps.rings).context("mapping the rings")?;
        let meta = get::<types::conn_meta>(&maps.conn_meta, &0u32.to_ne_bytes())?
            .context("reading conn_meta")?;
        let sets = maps.conn_sets.max_entries();
        ensure!(
            meta.nsets > 0 && sets.is_multiple_of(meta.nsets),
            "conn_sets holds {sets} sets, not a whole number of tables of {}",
            meta.nsets
        );
        let conn_nsets = meta.nsets;
        Ok(KernelStore {
            maps,
            limits,
            ring,
            conn_nsets,
            conn: OnceCell::new(),
            shared: OnceCell::new(),
        })
    }

    fn ring_range(&self, ring_id: u32) -> Result<std::ops::Range<usize>> {
        let size = self.limits.ring_size as usize;
        let start = ring_id as usize * size;
        if start + size > self.ring.slots() {
            bail!("ring {ring_id} is outside the rings map");
        }
        Ok(start..start + size)
    }

    fn zero_percpu(map: &MapHandle, idx: u32) -> Result<()> {
        let cpus = libbpf_rs::num_possible_cpus().context("counting CPUs")?;
        let zero = vec![vec![0u8; map.value_size() as usize]; cpus];
        map.update_percpu(&idx.to_ne_bytes(), &zero, MapFlags::ANY)
            .context("resetting counters")
    }
}

impl KernelStore {
    /// Puts a VIP entry in its cache slot (`Some`), or takes it out (`None`),
    /// by the rules of `enum vip_cache_layout` (bpf/lb_types.h): a slot is
    /// only (re)written for a key of the inactive generation, and never taken
    /// from a key of the active one. Apply only writes the inactive
    /// generation; were an entry of the active one ever written, its slot is
    /// emptied instead (a packet reading the slot at that very moment could
    /// see a half-emptied entry: another reason apply never does that).
    fn cache_vip(&mut self, k: &types::vip_key, meta: Option<&types::vip_meta>) -> Result<()> {
        let slot = abi::vip_cache_slot(k).to_ne_bytes();
        let cur = get::<types::vip_slot>(&self.maps.vip_cache, &slot)?.unwrap_or_default();
        let holds_k = bytes(&cur.key) == bytes(k);
        let active = self.active_gen()?;
        let write = match meta {
            _ if (k.scope & 1) == active => holds_k.then(types::vip_slot::default),
            None => holds_k.then(types::vip_slot::default),
            Some(m) => {
                let free = cur.key.proto == 0 || (cur.key.scope & 1) != active;
                (free || holds_k).then_some(types::vip_slot { key: *k, meta: *m })
            }
        };
        if let Some(v) = write {
            self.maps
                .vip_cache
                .update(&slot, bytes(&v), MapFlags::ANY)
                .context("writing the VIP cache")?;
        }
        Ok(())
    }

    /// Sets or clears one bit of the VIP filter (see bpf/lb_types.h). Only
    /// the applier writes it, under the apply lock; the program reads whole
    /// words, each either before or after this one store.
    fn set_filter_bit(&mut self, bit: u32, on: bool) -> Result<()> {
        let word = bit / 64;
        let key = word.to_ne_bytes();
        let old = get::<u64>(&self.maps.vip_filter, &key)?.unwrap_or(0);
        let new = if on {
            old | 1 << (bit % 64)
        } else {
            old & !(1 << (bit % 64))
        };
        if new != old {
            self.maps
                .vip_filter
                .update(&key, &new.to_ne_bytes(), MapFlags::ANY)
                .context("writing the VIP filter")?;
        }
        self.update_front(abi::vip_front_bit(bit), on)
    }

    /// Sets the filter's front bit `front` when a filter bit it covers was
    /// just set (`on`) or another still is, clears it otherwise (see
    /// bpf/lb_types.h). Called after the filter word changed, so a front bit
    /// is set before a packet needs it and cleared only once its block is
    /// empty; only a clear reads the block.
    fn update_front(&mut self, front: u32, on: bool) -> Result<()> {
        let on = on || self.front_block_set(front)?;
        let mut g = self.lb_gen()?;
        let (i, mask) = ((front / 64) as usize, 1u64 << (front % 64));
        let old = g.vip_front[i];
        g.vip_front[i] = if on { old | mask } else { old & !mask };
        if g.vip_front[i] != old {
            self.write_lb_gen(&g)
                .context("writing the VIP filter's front")?;
        }
        Ok(())
    }

    /// Whether any bit of `vip_filter` that front bit `front` covers is set.
    fn front_block_set(&self, front: u32) -> Result<bool> {
        use types::vip_filter_layout as L;
        let words = 1u32 << (L::VIP_FILTER_LOG2.0 - L::VIP_FRONT_LOG2.0 - 6);
        for word in front * words..(front + 1) * words {
            if get::<u64>(&self.maps.vip_filter, &word.to_ne_bytes())?.unwrap_or(0) != 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `lb_gen`'s value.
    fn lb_gen(&self) -> Result<types::lb_gen> {
        get::<types::lb_gen>(&self.maps.lb_gen, &0u32.to_ne_bytes())?
            .context("lb_gen holds no value")
    }

    /// Writes `lb_gen` whole, in one update: only the applier writes it,
    /// under the apply lock, and a packet sees each byte before or after.
    fn write_lb_gen(&mut self, g: &types::lb_gen) -> Result<()> {
        self.maps
            .lb_gen
            .update(&0u32.to_ne_bytes(), bytes(g), MapFlags::ANY)
            .context("writing lb_gen")
    }

    /// The sizes and connection-table layout this dataplane was loaded with.
    /// CPUs with a connection table of their own (in `conn_sets`).
    pub fn conn_cpus(&self) -> Result<std::collections::BTreeSet<u32>> {
        Ok(all::<u32, u32>(&self.maps.conn_cpus)?
            .into_iter()
            .filter(|(_, own)| *own == 1)
            .map(|(cpu, _)| cpu)
            .collect())
    }

    /// Whether traffic is counted per (VIP, real): the map has a row per VIP.
    pub fn vip_real_counting(&self) -> bool {
        self.maps.vip_real_stats.max_entries() > 1
    }

    pub fn load_shape(&self) -> Result<crate::plan::host::LoadShape> {
        let cpus = self.conn_cpus()?;
        let table = if cpus.is_empty() {
            ConnTable::Shared
        } else {
            ConnTable::PerCpu
        };
        Ok(crate::plan::host::LoadShape {
            ring_size: self.limits.ring_size,
            max_vips: self.limits.max_vips,
            max_reals: self.limits.max_reals,
            conn_table_size: self.conn_nsets(table) * types::conn_layout::CONN_WAYS.0,
            per_cpu_tables: (!cpus.is_empty()).then_some(cpus),
            vip_real_counters: self.vip_real_counting(),
        })
    }

    /// Sets in each table of kind `table`.
    pub fn conn_nsets(&self, table: ConnTable) -> u32 {
        match table {
            ConnTable::PerCpu => self.conn_nsets,
            ConnTable::Shared => self.maps.conn_shared.max_entries(),
        }
    }

    /// The sets of the tables of kind `table`.
    pub fn sets(&self, table: ConnTable) -> Result<Sets<'_>> {
        let (cell, map, name) = match table {
            ConnTable::PerCpu => (&self.conn, &self.maps.conn_sets, "mapping conn_sets"),
            ConnTable::Shared => (&self.shared, &self.maps.conn_shared, "mapping conn_shared"),
        };
        let array = match cell.get() {
            Some(a) => a,
            None => {
                let a = PodArray::map(map).context(name)?;
                cell.get_or_init(|| a)
            }
        };
        Ok(match table {
            ConnTable::PerCpu => Sets::per_cpu(array, self.conn_nsets),
            ConnTable::Shared => Sets::shared(array),
        })
    }

    /// The tables this dataplane has: the per-CPU ones when some CPU has
    /// one, and always the shared one.
    pub fn conn_tables(&self) -> Result<Vec<ConnTable>> {
        let mut out = Vec::new();
        if !self.conn_cpus()?.is_empty() {
            out.push(ConnTable::PerCpu);
        }
        out.push(ConnTable::Shared);
        Ok(out)
    }

    /// Calls `f` with every set of every table, as (table, set index, its
    /// copies).
    pub fn each_conn_set(
        &self,
        mut f: impl FnMut(ConnTable, u32, &[types::conn_set]),
    ) -> Result<()> {
        for table in self.conn_tables()? {
            self.each_set_of(table, |idx, sets| f(table, idx, sets))?;
        }
        Ok(())
    }

    /// `each_conn_set` for the sets of one kind of table.
    pub fn each_set_of(
        &self,
        table: ConnTable,
        mut f: impl FnMut(u32, &[types::conn_set]),
    ) -> Result<()> {
        let all = self.sets(table)?;
        for idx in 0..all.nsets() {
            if let Some(sets) = all.read(idx) {
                f(idx, &sets);
            }
        }
        Ok(())
    }

    /// The real index a connection-table entry names for `key`: the shared
    /// table first, then every per-CPU table.
    pub fn conn_entry(&self, key: &types::flow_key) -> Result<Option<u32>> {
        let meta = get::<types::conn_meta>(&self.maps.conn_meta, &0u32.to_ne_bytes())?
            .context("reading conn_meta")?;
        let mut tables = self.conn_tables()?;
        tables.reverse();
        for table in tables {
            let sets = self.sets(table)?;
            let slot = conn_set::slot(key, meta.seed, sets.nsets());
            let copies = sets.read(slot.set).unwrap_or_default();
            if let Some(real) = copies.iter().find_map(|s| conn_set::find(s, key, slot.tag)) {
                return Ok(Some(real));
            }
        }
        Ok(None)
    }
}

impl MapStore for KernelStore {
    fn limits(&self) -> Limits {
        self.limits
    }

    fn active_gen(&self) -> Result<u8> {
        Ok(self.lb_gen()?.gen as u8 & 1)
    }

    fn set_active_gen(&mut self, gen: u8) -> Result<()> {
        let mut g = self.lb_gen()?;
        g.gen = u32::from(gen);
        self.write_lb_gen(&g)
            .context("flipping the active generation")
    }

    fn ctl(&self, gen: u8) -> Result<Option<(Globals, RingKind)>> {
        let c = get::<types::lb_ctl>(&self.maps.lb_ctl, &u32::from(gen).to_ne_bytes())?;
        Ok(c.and_then(|c| abi::ctl_from(&c)))
    }

    fn set_ctl(&mut self, gen: u8, globals: &Globals, ring: RingKind) -> Result<()> {
        let c = abi::ctl(globals, ring);
        self.maps
            .lb_ctl
            .update(&u32::from(gen).to_ne_bytes(), bytes(&c), MapFlags::ANY)
            .context("writing control values")
    }

    fn invalidate_ctl(&mut self, gen: u8) -> Result<()> {
        // ring kind 0: "not a complete generation" (see abi::ctl_from)
        let c = types::lb_ctl::default();
        self.maps
            .lb_ctl
            .update(&u32::from(gen).to_ne_bytes(), bytes(&c), MapFlags::ANY)
            .context("marking a generation as being written")
    }

    fn vips(&self) -> Result<Vec<VipRecord>> {
        let mut out = Vec::new();
        for (k, m) in all::<types::vip_key, types::vip_meta>(&self.maps.vips)? {
            let Some((key, gen)) = abi::vip_key_from(&k) else {
                continue;
            };
            out.push(VipRecord {
                key,
                gen,
                flags: abi::vip_flags_from(m.flags),
                vip_num: m.vip_num,
                ring_id: m.ring_id,
            });
        }
        Ok(out)
    }

    fn put_vip(&mut self, vip: &VipRecord) -> Result<()> {
        let k = abi::vip_key(&vip.key, vip.gen);
        let m = types::vip_meta {
            flags: abi::vip_flags(&vip.flags),
            vip_num: vip.vip_num,
            ring_id: vip.ring_id,
            ..Default::default()
        };
        self.maps
            .vips
            .update(bytes(&k), bytes(&m), MapFlags::ANY)
            .with_context(|| format!("writing VIP {}", vip.key))?;
        self.cache_vip(&k, Some(&m))
    }

    fn delete_vip(&mut self, key: &VipKey, gen: u8) -> Result<()> {
        // The cache slot first: no packet may find a VIP the hash lost.
        let k = abi::vip_key(key, gen);
        self.cache_vip(&k, None)?;
        delete_if_present(&self.maps.vips, bytes(&k))
    }

    fn vip_addrs(&self) -> Result<Vec<(IpAddr, u8)>> {
        Ok(all::<types::addr_key, u32>(&self.maps.vip_addrs)?
            .iter()
            .map(|(k, _)| abi::addr_key_from(k))
            .collect())
    }

    fn put_vip_addr(&mut self, addr: IpAddr, generation: u8) -> Result<()> {
        // The filter bit first: a packet may only find the address once
        // the filter lets it through.
        self.set_filter_bit(abi::vip_filter_bit(addr), true)?;
        let k = abi::addr_key(addr, generation);
        let v6 = u32::from(addr.is_ipv6());
        self.maps
            .vip_addrs
            .update(bytes(&k), &v6.to_ne_bytes(), MapFlags::ANY)
            .context("writing a VIP address")
    }

    fn delete_vip_addr(&mut self, addr: IpAddr, generation: u8) -> Result<()> {
        delete_if_present(
            &self.maps.vip_addrs,
            bytes(&abi::addr_key(addr, generation)),
        )?;
        // Clear the bit unless another address (of either generation) has it.
        let bit = abi::vip_filter_bit(addr);
        let shared = self
            .vip_addrs()?
            .iter()
            .any(|(a, _)| abi::vip_filter_bit(*a) == bit);
        if !shared {
            self.set_filter_bit(bit, false)?;
        }
        Ok(())
    }

    fn reals(&self) -> Result<BTreeMap<u32, RealRecord>> {
        Ok(all::<u32, types::real_def>(&self.maps.reals)?
            .iter()
            .filter_map(|(idx, r)| Some((*idx, abi::real_from(r)?)))
            .collect())
    }

    fn put_real(&mut self, idx: u32, real: &RealRecord) -> Result<()> {
        let r = abi::real(real);
        self.maps
            .reals
            .update(&idx.to_ne_bytes(), bytes(&r), MapFlags::ANY)
            .with_context(|| format!("writing real {}", real.addr))
    }

    fn backends(&self) -> Result<Vec<BackendRecord>> {
        Ok(
            all::<types::backend_key, types::backend>(&self.maps.backends)?
                .into_iter()
                .map(|(k, v)| BackendRecord {
                    ring_id: k.ring_id,
                    pos: k.pos,
                    real: v.real,
                    weight: v.weight,
                    drained: abi::backend_drained(v.flags),
                })
                .collect(),
        )
    }

    fn put_backend(&mut self, b: &BackendRecord) -> Result<()> {
        let k = types::backend_key {
            ring_id: b.ring_id,
            pos: b.pos,
        };
        let v = types::backend {
            real: b.real,
            weight: b.weight,
            flags: abi::backend_flags(b.drained),
        };
        self.maps
            .backends
            .update(bytes(&k), bytes(&v), MapFlags::ANY)
            .context("writing a VIP's real list")
    }

    fn delete_backend(&mut self, ring_id: u32, pos: u32) -> Result<()> {
        let k = types::backend_key { ring_id, pos };
        delete_if_present(&self.maps.backends, bytes(&k))
    }

    fn server_ids(&self) -> Result<BTreeMap<(u32, u8), u32>> {
        let dense = all::<u32, u32>(&self.maps.server_ids_dense)?
            .into_iter()
            .filter(|(_, real)| *real != 0)
            .map(|(idx, real)| ((idx / 2, (idx % 2) as u8), real));
        Ok(all::<types::sid_key, u32>(&self.maps.server_ids)?
            .into_iter()
            .map(|(k, real)| ((k.id, k.r#gen as u8), real))
            .chain(dense)
            .collect())
    }

    fn put_server_id(&mut self, id: u32, generation: u8, real: u32) -> Result<()> {
        if let Some(idx) = dense_sid_index(id, generation) {
            return self
                .maps
                .server_ids_dense
                .update(&idx.to_ne_bytes(), &real.to_ne_bytes(), MapFlags::ANY)
                .context("writing a server id");
        }
        let k = types::sid_key {
            id,
            r#gen: u32::from(generation),
        };
        self.maps
            .server_ids
            .update(bytes(&k), &real.to_ne_bytes(), MapFlags::ANY)
            .context("writing a server id")
    }

    fn delete_server_id(&mut self, id: u32, generation: u8) -> Result<()> {
        if let Some(idx) = dense_sid_index(id, generation) {
            return self
                .maps
                .server_ids_dense
                .update(&idx.to_ne_bytes(), &0u32.to_ne_bytes(), MapFlags::ANY)
                .context("removing a server id");
        }
        let k = types::sid_key {
            id,
            r#gen: u32::from(generation),
        };
        delete_if_present(&self.maps.server_ids, bytes(&k))
    }

    fn ring(&self, ring_id: u32) -> Result<Vec<u32>> {
        let r = self.ring_range(ring_id)?;
        Ok(self.ring.read(r))
    }

    fn write_ring(&mut self, ring_id: u32, changes: &[RingDelta]) -> Result<()> {
        let r = self.ring_range(ring_id)?;
        for c in changes {
            let slot = c.slot as usize;
            ensure!(slot < r.len(), "ring slot {slot} out of range");
            self.ring.set(r.start + slot, c.real);
        }
        Ok(())
    }

    fn reset_vip_stats(&mut self, vip_num: u32) -> Result<()> {
        if self.vip_real_counting() {
            let slots = self.limits.max_reals + 1;
            for real in 0..slots {
                Self::zero_percpu(&self.maps.vip_real_stats, vip_num * slots + real)?;
            }
        }
        Self::zero_percpu(&self.maps.vip_stats, vip_num)
    }

    fn reset_real_stats(&mut self, idx: u32) -> Result<()> {
        if self.vip_real_counting() {
            let slots = self.limits.max_reals + 1;
            for vip_num in 0..self.limits.max_vips {
                Self::zero_percpu(&self.maps.vip_real_stats, vip_num * slots + idx)?;
            }
        }
        Self::zero_percpu(&self.maps.real_stats, idx)
    }

    fn purge_conn_entries(&mut self, idx: u32) -> Result<usize> {
        let mut found = Vec::new();
        self.each_conn_set(|table, set, copies| {
            if copies
                .iter()
                .flat_map(|s| &s.way)
                .any(|w| w.entry.real == idx)
            {
                found.push((table, set, copies.to_vec()));
            }
        })?;
        // way by way where the program may be inserting into the same set
        // (see conn_set::Sets::update); a way it rewrote since the read no
        // longer names the real
        let mut purged = 0;
        for (table, set, before) in found {
            let mut after = before.clone();
            for w in after.iter_mut().flat_map(|s| s.way.iter_mut()) {
                if w.entry.real == idx {
                    *w = types::conn_way::default();
                    purged += 1;
                }
            }
            purged -= self.sets(table)?.update(set, &before, &after)?;
        }
        Ok(purged)
    }
}
