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

/// A `reals` entry. Only the address is shared by both generations; the
/// rest is per generation (index 0 and 1), so it changes for packets only
/// at the flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealRecord {
    pub addr: IpAddr,
    /// The generation names the real (in a VIP or a server id). A real
    /// named by neither may get its index reused.
    pub in_gen: [bool; 2],
    /// UDP flow migration moves flows away from it in that generation.
    pub down: [bool; 2],
}

impl RealRecord {
    pub fn unused(&self) -> bool {
        self.in_gen == [false, false]
    }
}

/// One real of one ring, at position `pos` of the VIP's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendRecord {
    pub ring_id: u32,
    pub pos: u32,
    pub real: u32,
    /// The file's weight (the ring used 0 when `drained`).
    pub weight: u32,
    /// Drained by a failing health check.
    pub drained: bool,
}

/// Sizes fixed when the dataplane was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub ring_size: u32,
    pub max_vips: u32,
    /// Highest usable real index (index 0 is never used).
    pub max_reals: u32,
    /// Entries the `backends` map holds (both generations together).
    pub backends: u32,
    /// Entries the `server_ids` map holds (both generations together).
    pub server_ids: u32,
}

impl Limits {
    /// The limits a dataplane loaded with these sizes has (see the loader).
    pub fn for_sizes(ring_size: u32, max_vips: u32, max_reals: u32) -> Limits {
        Limits {
            ring_size,
            max_vips,
            max_reals,
            backends: 2 * max_reals.max(max_vips) * 64,
            server_ids: 2 * max_reals * 8,
        }
    }
}

/// One change to the maps: what a plan's commit phase executes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Marks a generation as being written: until `SetCtl` completes it,
    /// its rings and lists are not trusted.
    InvalidateCtl {
        gen: u8,
    },
    DeleteVip {
        key: VipKey,
        gen: u8,
    },
    DeleteVipAddr {
        addr: IpAddr,
        gen: u8,
    },
    DeleteBackend {
        ring_id: u32,
        pos: u32,
    },
    DeleteServerId {
        id: u32,
        gen: u8,
    },
    /// Connection entries naming a real index that is about to name
    /// another real (they are stale already: no generation names it).
    PurgeConnEntries {
        idx: u32,
    },
    ResetRealStats {
        idx: u32,
    },
    ResetVipStats {
        vip_num: u32,
    },
    PutReal {
        idx: u32,
        real: RealRecord,
    },
    PutServerId {
        id: u32,
        gen: u8,
        real: u32,
    },
    WriteRing {
        ring_id: u32,
        changes: Vec<RingDelta>,
    },
    PutBackend(BackendRecord),
    PutVip(VipRecord),
    PutVipAddr {
        addr: IpAddr,
        gen: u8,
    },
    SetCtl {
        gen: u8,
        globals: Globals,
        ring: RingKind,
    },
    /// The one atomic switch between configurations.
    Flip {
        gen: u8,
    },
}

impl Write {
    /// Carries the write out.
    pub fn run(&self, store: &mut dyn MapStore) -> Result<()> {
        match self {
            Write::InvalidateCtl { gen } => store.invalidate_ctl(*gen),
            Write::DeleteVip { key, gen } => store.delete_vip(key, *gen),
            Write::DeleteVipAddr { addr, gen } => store.delete_vip_addr(*addr, *gen),
            Write::DeleteBackend { ring_id, pos } => store.delete_backend(*ring_id, *pos),
            Write::DeleteServerId { id, gen } => store.delete_server_id(*id, *gen),
            Write::PurgeConnEntries { idx } => store.purge_conn_entries(*idx).map(drop),
            Write::ResetRealStats { idx } => store.reset_real_stats(*idx),
            Write::ResetVipStats { vip_num } => store.reset_vip_stats(*vip_num),
            Write::PutReal { idx, real } => store.put_real(*idx, real),
            Write::PutServerId { id, gen, real } => store.put_server_id(*id, *gen, *real),
            Write::WriteRing { ring_id, changes } => store.write_ring(*ring_id, changes),
            Write::PutBackend(b) => store.put_backend(b),
            Write::PutVip(v) => store.put_vip(v),
            Write::PutVipAddr { addr, gen } => store.put_vip_addr(*addr, *gen),
            Write::SetCtl { gen, globals, ring } => store.set_ctl(*gen, globals, *ring),
            Write::Flip { gen } => store.set_active_gen(*gen),
        }
    }
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

    /// `(server id, generation) -> real index`.
    fn server_ids(&self) -> Result<BTreeMap<(u32, u8), u32>>;
    fn put_server_id(&mut self, id: u32, gen: u8, real: u32) -> Result<()>;
    fn delete_server_id(&mut self, id: u32, gen: u8) -> Result<()>;

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
    pub server_ids: BTreeMap<(u32, u8), u32>,
    pub rings: BTreeMap<u32, Vec<u32>>,
    /// Every call that changed something, in order (for atomicity tests).
    pub journal: Vec<String>,
    /// Fault injection for tests: the write with this number (counted
    /// from 0 over the store's life) fails, and nothing after it is
    /// attempted by a correct caller.
    pub fail_write: Option<usize>,
    /// Writes attempted so far.
    pub writes: usize,
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
            fail_write: None,
            writes: 0,
        }
    }

    /// Like a kernel hash map: a new key beyond `max` entries is refused.
    fn room<K: Ord, V>(map: &BTreeMap<K, V>, key: &K, max: u32, what: &str) -> Result<()> {
        if !map.contains_key(key) && map.len() >= max as usize {
            anyhow::bail!("{what} map is full ({max} entries): E2BIG");
        }
        Ok(())
    }

    /// Records one write; fails it when it is the one to fail.
    fn write(&mut self, what: String) -> Result<()> {
        let n = self.writes;
        self.writes += 1;
        if self.fail_write == Some(n) {
            anyhow::bail!("injected failure of write {n} ({what})");
        }
        self.journal.push(what);
        Ok(())
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
        self.write(format!("flip {gen}"))?;
        self.gen = gen;
        Ok(())
    }
    fn ctl(&self, gen: u8) -> Result<Option<(Globals, RingKind)>> {
        Ok(self.ctl[gen as usize & 1].clone())
    }
    fn set_ctl(&mut self, gen: u8, globals: &Globals, ring: RingKind) -> Result<()> {
        self.write(format!("ctl {gen}"))?;
        self.ctl[gen as usize & 1] = Some((globals.clone(), ring));
        Ok(())
    }
    fn invalidate_ctl(&mut self, gen: u8) -> Result<()> {
        self.write(format!("invalidate {gen}"))?;
        self.ctl[gen as usize & 1] = None;
        Ok(())
    }
    fn vips(&self) -> Result<Vec<VipRecord>> {
        Ok(self.vips.values().copied().collect())
    }
    fn put_vip(&mut self, vip: &VipRecord) -> Result<()> {
        self.write(format!("vip {} gen {}", vip.key, vip.gen))?;
        Self::room(
            &self.vips,
            &(vip.key, vip.gen),
            2 * self.limits.max_vips,
            "vips",
        )?;
        self.vips.insert((vip.key, vip.gen), *vip);
        Ok(())
    }
    fn delete_vip(&mut self, key: &VipKey, gen: u8) -> Result<()> {
        self.write(format!("del vip {key} gen {gen}"))?;
        self.vips.remove(&(*key, gen));
        Ok(())
    }
    fn vip_addrs(&self) -> Result<Vec<(IpAddr, u8)>> {
        Ok(self.vip_addrs.keys().copied().collect())
    }
    fn put_vip_addr(&mut self, addr: IpAddr, gen: u8) -> Result<()> {
        self.write(format!("vip addr {addr} gen {gen}"))?;
        Self::room(
            &self.vip_addrs,
            &(addr, gen),
            2 * self.limits.max_vips,
            "vip_addrs",
        )?;
        self.vip_addrs.insert((addr, gen), ());
        Ok(())
    }
    fn delete_vip_addr(&mut self, addr: IpAddr, gen: u8) -> Result<()> {
        self.write(format!("del vip addr {addr} gen {gen}"))?;
        self.vip_addrs.remove(&(addr, gen));
        Ok(())
    }
    fn reals(&self) -> Result<BTreeMap<u32, RealRecord>> {
        Ok(self.reals.clone())
    }
    fn put_real(&mut self, idx: u32, real: &RealRecord) -> Result<()> {
        if idx == 0 || idx > self.limits.max_reals {
            anyhow::bail!("real index {idx} is outside the reals map");
        }
        self.write(format!(
            "real {idx} {} {:?} {:?}",
            real.addr, real.in_gen, real.down
        ))?;
        self.reals.insert(idx, *real);
        Ok(())
    }
    fn backends(&self) -> Result<Vec<BackendRecord>> {
        Ok(self.backends.values().copied().collect())
    }
    fn put_backend(&mut self, b: &BackendRecord) -> Result<()> {
        self.write(format!("backend {} {}", b.ring_id, b.pos))?;
        Self::room(
            &self.backends,
            &(b.ring_id, b.pos),
            self.limits.backends,
            "backends",
        )?;
        self.backends.insert((b.ring_id, b.pos), *b);
        Ok(())
    }
    fn delete_backend(&mut self, ring_id: u32, pos: u32) -> Result<()> {
        self.write(format!("del backend {ring_id} {pos}"))?;
        self.backends.remove(&(ring_id, pos));
        Ok(())
    }
    fn server_ids(&self) -> Result<BTreeMap<(u32, u8), u32>> {
        Ok(self.server_ids.clone())
    }
    fn put_server_id(&mut self, id: u32, gen: u8, real: u32) -> Result<()> {
        self.write(format!("server id {id} gen {gen}"))?;
        Self::room(
            &self.server_ids,
            &(id, gen),
            self.limits.server_ids,
            "server_ids",
        )?;
        self.server_ids.insert((id, gen), real);
        Ok(())
    }
    fn delete_server_id(&mut self, id: u32, gen: u8) -> Result<()> {
        self.write(format!("del server id {id} gen {gen}"))?;
        self.server_ids.remove(&(id, gen));
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
        self.write(format!("ring {ring_id} ({} slots)", changes.len()))?;
        let size = self.limits.ring_size as usize;
        let ring = self.rings.entry(ring_id).or_insert_with(|| vec![0; size]);
        for c in changes {
            ring[c.slot as usize] = c.real;
        }
        Ok(())
    }
    fn reset_vip_stats(&mut self, vip_num: u32) -> Result<()> {
        self.write(format!("reset vip stats {vip_num}"))
    }
    fn reset_real_stats(&mut self, idx: u32) -> Result<()> {
        self.write(format!("reset real stats {idx}"))
    }
    fn purge_conn_entries(&mut self, idx: u32) -> Result<usize> {
        self.write(format!("purge {idx}"))?;
        Ok(0)
    }
}
