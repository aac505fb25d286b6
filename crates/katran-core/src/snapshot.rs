//! Everything the planner needs from the live maps, read once at the start
//! of an apply or a dry-run: both generations' VIP entries, reals, real
//! lists and server ids. Rings are large and read on demand through the
//! store. `state` turns a snapshot back into the configuration the
//! dataplane is forwarding by: the maps are the truth, no side file is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::{Context, Result};

use crate::model::{Backend, Globals, RingKind, State, Vip, VipKey};
use crate::store::{BackendRecord, Limits, MapStore, RealRecord, VipRecord};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub limits: Limits,
    /// The generation packets use.
    pub active: u8,
    /// Each generation's control values; `None` while incomplete.
    pub ctl: [Option<(Globals, RingKind)>; 2],
    pub vips: Vec<VipRecord>,
    pub vip_addrs: BTreeSet<(IpAddr, u8)>,
    pub reals: BTreeMap<u32, RealRecord>,
    /// Each ring's real list, sorted by position.
    pub backends: BTreeMap<u32, Vec<BackendRecord>>,
    pub server_ids: BTreeMap<(u32, u8), u32>,
}

impl Snapshot {
    /// Nothing applied yet (a fresh dataplane, or planning against nothing).
    pub fn empty(limits: Limits) -> Snapshot {
        Snapshot {
            limits,
            active: 0,
            ctl: [None, None],
            vips: Vec::new(),
            vip_addrs: BTreeSet::new(),
            reals: BTreeMap::new(),
            backends: BTreeMap::new(),
            server_ids: BTreeMap::new(),
        }
    }

    pub fn read(store: &dyn MapStore) -> Result<Snapshot> {
        let mut backends: BTreeMap<u32, Vec<BackendRecord>> = BTreeMap::new();
        for b in store.backends().context("reading the real lists")? {
            backends.entry(b.ring_id).or_default().push(b);
        }
        for list in backends.values_mut() {
            list.sort_by_key(|b| b.pos);
        }
        Ok(Snapshot {
            limits: store.limits(),
            active: store
                .active_gen()
                .context("reading the active generation")?,
            ctl: [store.ctl(0)?, store.ctl(1)?],
            vips: store.vips().context("reading the VIPs")?,
            vip_addrs: store.vip_addrs()?.into_iter().collect(),
            reals: store.reals().context("reading the reals")?,
            backends,
            server_ids: store.server_ids().context("reading the server ids")?,
        })
    }

    /// The VIP entries of generation `gen`, by key.
    pub fn vips_of(&self, gen: u8) -> BTreeMap<VipKey, VipRecord> {
        self.vips
            .iter()
            .filter(|v| v.gen == gen)
            .map(|v| (v.key, *v))
            .collect()
    }

    /// The configuration packets see, or `None` when nothing was applied.
    pub fn state(&self) -> Result<Option<State>> {
        let gen = self.active;
        let Some((globals, ring)) = self.ctl[gen as usize].clone() else {
            return Ok(None);
        };
        let addr_of = |idx: u32| -> Result<IpAddr> {
            self.reals
                .get(&idx)
                .filter(|r| r.in_gen[gen as usize])
                .map(|r| r.addr)
                .with_context(|| {
                    format!("real index {idx} is referenced but not live in the reals map")
                })
        };
        let mut vips = Vec::new();
        let mut drained = BTreeSet::new();
        for rec in self.vips_of(gen).into_values() {
            let list = self
                .backends
                .get(&rec.ring_id)
                .map_or(&[][..], Vec::as_slice);
            let mut reals = Vec::new();
            for (i, b) in list.iter().enumerate() {
                anyhow::ensure!(
                    b.pos as usize == i,
                    "the real list of {} has a gap at position {i}",
                    rec.key
                );
                let addr = addr_of(b.real)?;
                if b.drained {
                    drained.insert((rec.key, addr));
                }
                reals.push(Backend {
                    addr,
                    weight: b.weight,
                });
            }
            vips.push(Vip {
                key: rec.key,
                flags: rec.flags,
                reals,
            });
        }
        let server_ids = self
            .server_ids
            .iter()
            .filter(|((_, g), _)| *g == gen)
            .map(|((id, _), idx)| Ok((*id, addr_of(*idx)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let down_reals = self
            .reals
            .values()
            .filter(|r| r.in_gen[gen as usize] && r.down[gen as usize])
            .map(|r| r.addr)
            .collect();
        Ok(Some(State {
            globals,
            ring,
            vips,
            server_ids,
            down_reals,
            drained,
        }))
    }
}
