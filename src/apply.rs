//! Programs a desired [`State`] into the maps, atomically, and reads the
//! live one back.
//!
//! The dataplane only looks at the active generation (one 4-byte value).
//! `apply` writes the whole configuration into the other generation — VIP
//! entries, rings (only the slots that differ), control values — and then
//! flips the active generation with a single map update, so every packet
//! sees either the old configuration or the new one, never a mix. The
//! generation that was live stays untouched until the next apply, so
//! packets already inside the program finish against it.
//!
//! Reals are shared by both generations: a new real is written before the
//! flip, and a real that left every VIP is only marked removed after it
//! (the dataplane then ignores connection-table entries naming it). A real
//! keeps its index while it exists; a removed real's index is handed out
//! again only when no never-used index is left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::{bail, Context, Result};

use crate::hash::real_hash;
use crate::maglev::{self, Endpoint};
use crate::model::{Backend, State, Vip, VipKey};
use crate::store::{BackendRecord, MapStore, RealRecord, VipRecord};

/// What an apply wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// The generation now active.
    pub gen: u8,
    pub vips: usize,
    pub reals_added: usize,
    pub reals_removed: usize,
    /// Ring slots written (deltas only).
    pub ring_slots: usize,
}

/// Reads the configuration the dataplane is forwarding by, or `None` when
/// nothing was ever applied.
pub fn read_live(store: &dyn MapStore) -> Result<Option<State>> {
    let gen = store.active_gen()?;
    let Some((globals, ring)) = store.ctl(gen)? else {
        return Ok(None);
    };
    let reals = store.reals()?;
    let addr_of = |idx: u32| -> Result<IpAddr> {
        reals
            .get(&idx)
            .map(|r| r.addr)
            .with_context(|| format!("real index {idx} is referenced but not in the reals map"))
    };
    let mut by_ring: BTreeMap<u32, Vec<BackendRecord>> = BTreeMap::new();
    for b in store.backends()? {
        by_ring.entry(b.ring_id).or_default().push(b);
    }
    let mut vips = Vec::new();
    let mut records: Vec<VipRecord> = store.vips()?.into_iter().filter(|v| v.gen == gen).collect();
    records.sort_by_key(|v| v.key);
    for rec in records {
        let mut list = by_ring.remove(&rec.ring_id).unwrap_or_default();
        list.sort_by_key(|b| b.pos);
        let reals = list
            .iter()
            .map(|b| {
                Ok(Backend {
                    addr: addr_of(b.real)?,
                    weight: b.weight,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        vips.push(Vip {
            key: rec.key,
            flags: rec.flags,
            reals,
        });
    }
    let server_ids = store
        .server_ids()?
        .into_iter()
        .map(|(id, idx)| Ok((id, addr_of(idx)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let down_reals = reals
        .values()
        .filter(|r| r.down && !r.removed)
        .map(|r| r.addr)
        .collect();
    Ok(Some(State {
        globals,
        ring,
        vips,
        server_ids,
        down_reals,
    }))
}

/// Every real address the state needs an index for, in order of first
/// appearance (so new reals get indices in file order).
fn needed_reals(state: &State) -> Vec<IpAddr> {
    let mut seen = BTreeSet::new();
    state
        .vips
        .iter()
        .flat_map(|v| v.reals.iter().map(|b| b.addr))
        .chain(state.server_ids.values().copied())
        .filter(|a| seen.insert(*a))
        .collect()
}

/// Index for every needed real: kept where it has one, else never-used
/// indices first, then indices of removed reals.
fn assign_reals(
    live: &BTreeMap<u32, RealRecord>,
    needed: &[IpAddr],
    max_reals: u32,
) -> Result<BTreeMap<IpAddr, u32>> {
    let mut out = BTreeMap::new();
    let by_addr: BTreeMap<IpAddr, u32> = live.iter().map(|(i, r)| (r.addr, *i)).collect();
    let mut fresh = (1..=max_reals).filter(|i| !live.contains_key(i));
    let mut recycled = live
        .iter()
        .filter(|(_, r)| r.removed && !needed.contains(&r.addr))
        .map(|(i, _)| *i);
    for addr in needed {
        let idx = match by_addr.get(addr) {
            Some(i) => *i,
            None => match fresh.next().or_else(|| recycled.next()) {
                Some(i) => i,
                None => bail!(
                    "no free real index for {addr}: the dataplane was loaded with room for {max_reals} reals"
                ),
            },
        };
        out.insert(*addr, idx);
    }
    Ok(out)
}

/// VIP number for every desired VIP: kept where the VIP is live, else the
/// lowest number no live VIP uses, else one a removed VIP used.
fn assign_vip_nums(
    live: &BTreeMap<VipKey, VipRecord>,
    desired: &[Vip],
    max_vips: u32,
) -> Result<BTreeMap<VipKey, u32>> {
    let wanted: BTreeSet<VipKey> = desired.iter().map(|v| v.key).collect();
    let live_nums: BTreeSet<u32> = live.values().map(|r| r.vip_num).collect();
    let mut fresh = (0..max_vips).filter(|n| !live_nums.contains(n));
    let mut recycled = live
        .values()
        .filter(|r| !wanted.contains(&r.key))
        .map(|r| r.vip_num);
    let mut out = BTreeMap::new();
    for vip in desired {
        let num = match live.get(&vip.key) {
            Some(r) => r.vip_num,
            None => match fresh.next().or_else(|| recycled.next()) {
                Some(n) => n,
                None => bail!("too many VIPs: the dataplane was loaded with room for {max_vips}"),
            },
        };
        out.insert(vip.key, num);
    }
    Ok(out)
}

/// Makes `desired` the live configuration.
pub fn apply(store: &mut dyn MapStore, desired: &State) -> Result<ApplyReport> {
    let limits = store.limits();
    let live_gen = store.active_gen()?;
    let gen = live_gen ^ 1;

    // Work out every index before writing anything.
    let all_vips = store.vips()?;
    let live_vips: BTreeMap<VipKey, VipRecord> = all_vips
        .iter()
        .filter(|v| v.gen == live_gen)
        .map(|v| (v.key, *v))
        .collect();
    let nums = assign_vip_nums(&live_vips, &desired.vips, limits.max_vips)?;
    let live_reals = store.reals()?;
    let needed = needed_reals(desired);
    let index = assign_reals(&live_reals, &needed, limits.max_reals)?;
    let needed: BTreeSet<IpAddr> = needed.into_iter().collect();
    let down: BTreeSet<IpAddr> = desired.down_reals.iter().copied().collect();
    let mut report = ApplyReport {
        gen,
        vips: desired.vips.len(),
        ..ApplyReport::default()
    };

    // 1. Clear what the generation being written held two applies ago.
    for v in all_vips.iter().filter(|v| v.gen == gen) {
        store.delete_vip(&v.key, gen)?;
    }
    for (addr, g) in store.vip_addrs()? {
        if g == gen {
            store.delete_vip_addr(addr, gen)?;
        }
    }
    for b in store.backends()? {
        if b.ring_id % 2 == u32::from(gen) {
            store.delete_backend(b.ring_id, b.pos)?;
        }
    }

    // 2. Reals (shared by both generations: only additions and flag changes).
    for (addr, idx) in &index {
        let want = RealRecord {
            addr: *addr,
            down: down.contains(addr),
            removed: false,
        };
        let have = live_reals.get(idx);
        if have != Some(&want) {
            if have.map(|r| r.addr) != Some(*addr) {
                store.reset_real_stats(*idx)?;
                report.reals_added += 1;
            }
            store.put_real(*idx, &want)?;
        }
    }
    let live_ids = store.server_ids()?;
    for (id, addr) in &desired.server_ids {
        let idx = index[addr];
        if live_ids.get(id) != Some(&idx) {
            store.put_server_id(*id, idx)?;
        }
    }

    // 3. The new generation: rings, reals lists, VIP entries, control values.
    for vip in &desired.vips {
        let num = nums[&vip.key];
        let ring_id = num * 2 + u32::from(gen);
        let endpoints: Vec<Endpoint> = vip
            .reals
            .iter()
            .map(|b| Endpoint {
                id: index[&b.addr],
                hash: real_hash(b.addr),
                weight: b.weight,
            })
            .collect();
        let ring = maglev::build(desired.ring, &endpoints, limits.ring_size);
        let old = store.ring(ring_id)?;
        let changes = maglev::delta(&old, &ring);
        report.ring_slots += changes.len();
        store.write_ring(ring_id, &changes)?;
        for (pos, b) in vip.reals.iter().enumerate() {
            store.put_backend(&BackendRecord {
                ring_id,
                pos: pos as u32,
                real: index[&b.addr],
                weight: b.weight,
            })?;
        }
        if !live_vips.contains_key(&vip.key) {
            store.reset_vip_stats(num)?;
        }
        store.put_vip(&VipRecord {
            key: vip.key,
            gen,
            flags: vip.flags,
            vip_num: num,
            ring_id,
        })?;
    }
    let addrs: BTreeSet<IpAddr> = desired.vips.iter().map(|v| v.key.addr).collect();
    for addr in addrs {
        store.put_vip_addr(addr, gen)?;
    }
    store.set_ctl(gen, &desired.globals, desired.ring)?;

    // 4. The flip.
    store.set_active_gen(gen)?;

    // 5. What the new configuration no longer names.
    for (idx, r) in &live_reals {
        if !r.removed && !needed.contains(&r.addr) {
            store.put_real(
                *idx,
                &RealRecord {
                    removed: true,
                    ..*r
                },
            )?;
            report.reals_removed += 1;
        }
    }
    for id in live_ids.keys() {
        if !desired.server_ids.contains_key(id) {
            store.delete_server_id(*id)?;
        }
    }
    Ok(report)
}
