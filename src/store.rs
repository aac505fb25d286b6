//! The maps as `apply` sees them: a small typed interface over "what the
//! dataplane holds", with the kernel implementation in `bpf::kernel_store`
//! and an in-memory one here, so planning and applying are tested without
//! root and without a kernel.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Result;

use crate::maglev::RingDelta;
use crate::model::{Globals, RingKind, VipFlags, VipKey};

/// A `vips` entry: one VIP in one generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipRecord {
    pub key: VipKey,
    pub gen: u8,
    pub flags: VipFlags,
    /// Stable across generations: the VIP's statistics slot.
    pub vip_num: u32,
    pub ring_id: u32,
}

/// A `reals` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealRecord {
    pub addr: IpAddr,
    pub down: bool,
    /// In no VIP any more; the index may be reused once nothing names it.
    pub removed: bool,
}

/// One real of one ring, at position `pos` of the VIP's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendRecord {
    pub ring_id: u32,
    pub pos: u32,
    pub real: u32,
    pub weight: u32,
}

/// Sizes fixed when the dataplane was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub ring_size: u32,
    pub max_vips: u32,
    /// Highest usable real index (index 0 is never used).
    pub max_reals: u32,
}

/// Typed access to the dataplane's maps.
pub trait MapStore {
    fn limits(&self) -> Limits;

    fn active_gen(&self) -> Result<u8>;
    /// The one atomic switch between configurations.
    fn set_active_gen(&mut self, gen: u8) -> Result<()>;

    /// `None` when that generation was never written.
    fn ctl(&self, gen: u8) -> Result<Option<(Globals, RingKind)>>;
    fn set_ctl(&mut self, gen: u8, globals: &Globals, ring: RingKind) -> Result<()>;
    /// Marks a generation as being written: until `set_ctl` completes it,
    /// `ctl` returns `None` and its rings are not trusted.
    fn invalidate_ctl(&mut self, gen: u8) -> Result<()>;

    /// Entries of both generations.
    fn vips(&self) -> Result<Vec<VipRecord>>;
    fn put_vip(&mut self, vip: &VipRecord) -> Result<()>;
    fn delete_vip(&mut self, key: &VipKey, gen: u8) -> Result<()>;

    fn vip_addrs(&self) -> Result<Vec<(IpAddr, u8)>>;
    fn put_vip_addr(&mut self, addr: IpAddr, gen: u8) -> Result<()>;
    fn delete_vip_addr(&mut self, addr: IpAddr, gen: u8) -> Result<()>;

    /// Used entries only, by index.
    fn reals(&self) -> Result<BTreeMap<u32, RealRecord>>;
    fn put_real(&mut self, idx: u32, real: &RealRecord) -> Result<()>;

    fn backends(&self) -> Result<Vec<BackendRecord>>;
    fn put_backend(&mut self, b: &BackendRecord) -> Result<()>;
    fn delete_backend(&mut self, ring_id: u32, pos: u32) -> Result<()>;

    fn server_ids(&self) -> Result<BTreeMap<u32, u32>>;
    fn put_server_id(&mut self, id: u32, real: u32) -> Result<()>;
    fn delete_server_id(&mut self, id: u32) -> Result<()>;

    /// The `ring_size` slots of ring `ring_id`.
    fn ring(&self, ring_id: u32) -> Result<Vec<u32>>;
    fn write_ring(&mut self, ring_id: u32, changes: &[RingDelta]) -> Result<()>;

    fn reset_vip_stats(&mut self, vip_num: u32) -> Result<()>;
    fn reset_real_stats(&mut self, idx: u32) -> Result<()>;
    /// Deletes every connection-table entry naming real `idx` (before its
    /// index is given to another real); returns how many there were.
    fn purge_conn_entries(&mut self, idx: u32) -> Result<usize>;
}

/// A `MapStore` in memory, for tests and for planning against nothing.
#[derive(Clone, Debug)]
pub struct MemStore {
    pub limits: Limits,
    pub gen: u8,
    pub ctl: [Option<(Globals, RingKind)>; 2],
    pub vips: BTreeMap<(VipKey, u8), VipRecord>,
    pub vip_addrs: BTreeMap<(IpAddr, u8), ()>,
    pub reals: BTreeMap<u32, RealRecord>,
    pub backends: BTreeMap<(u32, u32), BackendRecord>,
    pub server_ids: BTreeMap<u32, u32>,
    pub rings: BTreeMap<u32, Vec<u32>>,
    /// Every call that changed something, in order (for atomicity tests).
    pub journal: Vec<String>,
}

impl MemStore {
    pub fn new(limits: Limits) -> MemStore {
        MemStore {
            limits,
            gen: 0,
            ctl: [None, None],
            vips: BTreeMap::new(),
            vip_addrs: BTreeMap::new(),
            reals: BTreeMap::new(),
            backends: BTreeMap::new(),
            server_ids: BTreeMap::new(),
            rings: BTreeMap::new(),
            journal: Vec::new(),
        }
    }
}

impl MapStore for MemStore {
    fn limits(&self) -> Limits {
        self.limits
    }
    fn active_gen(&self) -> Result<u8> {
        Ok(self.gen)
    }
    fn set_active_gen(&mut self, gen: u8) -> Result<()> {
        self.journal.push(format!("flip {gen}"));
        self.gen = gen;
        Ok(())
    }
    fn ctl(&self, gen: u8) -> Result<Option<(Globals, RingKind)>> {
        Ok(self.ctl[gen as usize & 1].clone())
    }
    fn set_ctl(&mut self, gen: u8, globals: &Globals, ring: RingKind) -> Result<()> {
        self.journal.push(format!("ctl {gen}"));
        self.ctl[gen as usize & 1] = Some((globals.clone(), ring));
        Ok(())
    }
    fn invalidate_ctl(&mut self, gen: u8) -> Result<()> {
        self.journal.push(format!("invalidate {gen}"));
        self.ctl[gen as usize & 1] = None;
        Ok(())
    }
    fn vips(&self) -> Result<Vec<VipRecord>> {
        Ok(self.vips.values().copied().collect())
    }
    fn put_vip(&mut self, vip: &VipRecord) -> Result<()> {
        self.journal
            .push(format!("vip {} gen {}", vip.key, vip.gen));
        self.vips.insert((vip.key, vip.gen), *vip);
        Ok(())
    }
    fn delete_vip(&mut self, key: &VipKey, gen: u8) -> Result<()> {
        self.journal.push(format!("del vip {key} gen {gen}"));
        self.vips.remove(&(*key, gen));
        Ok(())
    }
    fn vip_addrs(&self) -> Result<Vec<(IpAddr, u8)>> {
        Ok(self.vip_addrs.keys().copied().collect())
    }
    fn put_vip_addr(&mut self, addr: IpAddr, gen: u8) -> Result<()> {
        self.vip_addrs.insert((addr, gen), ());
        Ok(())
    }
    fn delete_vip_addr(&mut self, addr: IpAddr, gen: u8) -> Result<()> {
        self.vip_addrs.remove(&(addr, gen));
        Ok(())
    }
    fn reals(&self) -> Result<BTreeMap<u32, RealRecord>> {
        Ok(self.reals.clone())
    }
    fn put_real(&mut self, idx: u32, real: &RealRecord) -> Result<()> {
        self.journal.push(format!("real {idx} {}", real.addr));
        self.reals.insert(idx, *real);
        Ok(())
    }
    fn backends(&self) -> Result<Vec<BackendRecord>> {
        Ok(self.backends.values().copied().collect())
    }
    fn put_backend(&mut self, b: &BackendRecord) -> Result<()> {
        self.backends.insert((b.ring_id, b.pos), *b);
        Ok(())
    }
    fn delete_backend(&mut self, ring_id: u32, pos: u32) -> Result<()> {
        self.backends.remove(&(ring_id, pos));
        Ok(())
    }
    fn server_ids(&self) -> Result<BTreeMap<u32, u32>> {
        Ok(self.server_ids.clone())
    }
    fn put_server_id(&mut self, id: u32, real: u32) -> Result<()> {
        self.server_ids.insert(id, real);
        Ok(())
    }
    fn delete_server_id(&mut self, id: u32) -> Result<()> {
        self.server_ids.remove(&id);
        Ok(())
    }
    fn ring(&self, ring_id: u32) -> Result<Vec<u32>> {
        Ok(self
            .rings
            .get(&ring_id)
            .cloned()
            .unwrap_or_else(|| vec![0; self.limits.ring_size as usize]))
    }
    fn write_ring(&mut self, ring_id: u32, changes: &[RingDelta]) -> Result<()> {
        self.journal
            .push(format!("ring {ring_id} ({} slots)", changes.len()));
        let size = self.limits.ring_size as usize;
        let ring = self.rings.entry(ring_id).or_insert_with(|| vec![0; size]);
        for c in changes {
            ring[c.slot as usize] = c.real;
        }
        Ok(())
    }
    fn reset_vip_stats(&mut self, _vip_num: u32) -> Result<()> {
        Ok(())
    }
    fn reset_real_stats(&mut self, _idx: u32) -> Result<()> {
        Ok(())
    }
    fn purge_conn_entries(&mut self, idx: u32) -> Result<usize> {
        self.journal.push(format!("purge {idx}"));
        Ok(0)
    }
}
