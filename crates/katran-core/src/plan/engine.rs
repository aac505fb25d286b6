//! The one diff engine: from a snapshot of the live maps and the desired
//! state, the changes a person reads and the map writes that make them.
//!
//! Everything that can fail for a reason in the file — capacities, index
//! assignment — fails here, before the first write. The writes fill the
//! inactive generation completely (stale entries deleted first, so a map at
//! capacity still has room), then flip the active generation once. Every
//! value a packet reads is per generation (VIPs, addresses, rings, control
//! values, server ids, real flags), so nothing changes for packets before
//! the flip; the only shared values are a real's address, written only for
//! an index no live generation names, and counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::rc::Rc;

use super::{changes, Change, Plan};
use crate::hash::real_hash;
use crate::maglev::{self, Endpoint};
use crate::model::{State, Vip, VipKey};
use crate::parallel;
use crate::snapshot::Snapshot;
use crate::store::{BackendRecord, MapStore, RealRecord, VipRecord, Write};

/// Why a plan cannot be made. Each is a property of the file against the
/// loaded dataplane, found before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("too many VIPs: the file has {want}, the dataplane was loaded with room for {max} (max_vips)")]
    TooManyVips { want: usize, max: u32 },
    #[error("too many reals: the file needs {want} distinct real addresses beside the ones the live configuration still uses; the dataplane was loaded with room for {max} (max_reals)")]
    TooManyReals { want: usize, max: u32 },
    #[error("the VIPs' real lists need {want} entries beside the {live} of the live configuration; the dataplane has room for {max} (grow max_reals or max_vips)")]
    TooManyBackends { want: usize, live: usize, max: u32 },
    #[error("{want} server ids beside the {live} of the live configuration; the dataplane has room for {max} (grow max_reals)")]
    TooManyServerIds { want: usize, live: usize, max: u32 },
    #[error("the live maps cannot be read back: {0:#}")]
    Unreadable(anyhow::Error),
}

/// The changes and writes that turn the snapshot's configuration into
/// `want`. `store` is only read (rings).
pub fn build(store: &dyn MapStore, snap: &Snapshot, want: &State) -> Result<Plan, PlanError> {
    let live = snap.state().map_err(PlanError::Unreadable)?;
    let mut plan = Plan::new(live.is_none());
    let empty = State {
        globals: want.globals.clone(),
        ring: want.ring,
        ..State::default()
    };
    let lv = live.as_ref().unwrap_or(&empty);
    let gen = snap.active ^ 1;
    let live_vips = if live.is_some() {
        snap.vips_of(snap.active)
    } else {
        BTreeMap::new()
    };

    let nums = assign_vip_nums(&live_vips, &want.vips, snap.limits.max_vips)?;
    let index = assign_reals(snap, &needed_reals(want), snap.limits.max_reals)?;
    check_lists(snap, want, &live_vips)?;
    let rings = expected_rings(want, &index, snap.limits.ring_size);

    let (mut vc, ring_at) = changes::vips(lv, want);
    let old: BTreeMap<VipKey, &Vip> = lv.vips.iter().map(|v| (v.key, v)).collect();
    let mut inserts = Vec::new();
    for v in &want.vips {
        let (Some(rec), Some(o)) = (live_vips.get(&v.key), old.get(&v.key)) else {
            continue;
        };
        let have = store.ring(rec.ring_id).map_err(PlanError::Unreadable)?;
        let expect = &rings[&v.key];
        let slots = have
            .iter()
            .zip(expect.iter())
            .filter(|(a, b)| a != b)
            .count() as u32;
        if slots == 0 {
            continue;
        }
        let same = o.reals == v.reals
            && lv.ring == want.ring
            && v.reals.iter().all(|b| {
                lv.drained.contains(&(v.key, b.addr)) == want.drained.contains(&(v.key, b.addr))
            });
        let vip = v.key.to_string();
        let of = snap.limits.ring_size;
        let c = if same {
            Change::RingRepair { vip, slots, of }
        } else {
            Change::RingMoves { vip, slots, of }
        };
        inserts.push((ring_at[&v.key], c));
    }
    for (at, c) in inserts.into_iter().rev() {
        vc.insert(at, c);
    }
    if live.is_some() {
        let mac = |s: &State| s.globals.gateway_mac.to_string();
        plan.changes = changes::settings(lv, want, (mac(lv), mac(want)));
    }
    plan.changes.extend(vc);
    for (key, real) in &want.drained {
        if lv.drained.contains(&(*key, *real)) {
            plan.notes.push(format!(
                "real {real} in {key} stays drained: its health check fails"
            ));
        }
    }
    if plan.changes.is_empty() {
        return Ok(plan);
    }
    plan.writes = writes(store, snap, want, gen, &nums, &index, &rings, &live_vips)
        .map_err(PlanError::Unreadable)?;
    plan.map_writes = plan.writes.len();
    Ok(plan)
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
/// indices first, then indices no live generation names.
fn assign_reals(
    snap: &Snapshot,
    needed: &[IpAddr],
    max_reals: u32,
) -> Result<BTreeMap<IpAddr, u32>, PlanError> {
    let live = &snap.reals;
    let active = snap.active as usize;
    let by_addr: BTreeMap<IpAddr, u32> = live.iter().map(|(i, r)| (r.addr, *i)).collect();
    let wanted: BTreeSet<IpAddr> = needed.iter().copied().collect();
    let mut fresh = (1..=max_reals).filter(|i| !live.contains_key(i));
    let mut recycled = live
        .iter()
        .filter(|(_, r)| !r.in_gen[active] && !wanted.contains(&r.addr))
        .map(|(i, _)| *i);
    let mut out = BTreeMap::new();
    for addr in needed {
        let idx = match by_addr.get(addr) {
            Some(i) => *i,
            None => fresh
                .next()
                .or_else(|| recycled.next())
                .ok_or(PlanError::TooManyReals {
                    want: needed.len(),
                    max: max_reals,
                })?,
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
) -> Result<BTreeMap<VipKey, u32>, PlanError> {
    if desired.len() > max_vips as usize {
        return Err(PlanError::TooManyVips {
            want: desired.len(),
            max: max_vips,
        });
    }
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
            None => fresh
                .next()
                .or_else(|| recycled.next())
                .ok_or(PlanError::TooManyVips {
                    want: desired.len(),
                    max: max_vips,
                })?,
        };
        out.insert(vip.key, num);
    }
    Ok(out)
}

/// The real lists and server ids of the new generation must fit beside
/// those of the live one.
fn check_lists(
    snap: &Snapshot,
    want: &State,
    live_vips: &BTreeMap<VipKey, VipRecord>,
) -> Result<(), PlanError> {
    let live: usize = live_vips
        .values()
        .map(|r| snap.backends.get(&r.ring_id).map_or(0, Vec::len))
        .sum();
    let need: usize = want.vips.iter().map(|v| v.reals.len()).sum();
    if live + need > snap.limits.backends as usize {
        return Err(PlanError::TooManyBackends {
            want: need,
            live,
            max: snap.limits.backends,
        });
    }
    let live = snap
        .server_ids
        .keys()
        .filter(|(_, g)| *g == snap.active)
        .count();
    if live + want.server_ids.len() > snap.limits.server_ids as usize {
        return Err(PlanError::TooManyServerIds {
            want: want.server_ids.len(),
            live,
            max: snap.limits.server_ids,
        });
    }
    Ok(())
}

/// The ring every desired VIP should have, by the real indices it will
/// use. VIPs with the same reals and weights share one build; the builds
/// run in parallel (see `parallel`).
fn expected_rings(
    want: &State,
    index: &BTreeMap<IpAddr, u32>,
    ring_size: u32,
) -> BTreeMap<VipKey, Rc<Vec<u32>>> {
    // each VIP's (real index, weight) list, and the first VIP of each
    // distinct list, which builds the ring for all of them
    let members: Vec<Vec<(u32, u32)>> = want
        .vips
        .iter()
        .map(|v| {
            v.reals
                .iter()
                .map(|b| (index[&b.addr], want.ring_weight(&v.key, b)))
                .collect()
        })
        .collect();
    let mut build_of: HashMap<&[(u32, u32)], usize> = HashMap::new();
    let mut builders: Vec<(&Vip, &[(u32, u32)])> = Vec::new();
    for (v, m) in want.vips.iter().zip(&members) {
        build_of.entry(m).or_insert_with(|| {
            builders.push((v, m));
            builders.len() - 1
        });
    }
    let built = parallel::map(&builders, |&(v, m)| {
        let endpoints: Vec<Endpoint> = v
            .reals
            .iter()
            .zip(m)
            .map(|(b, &(id, weight))| Endpoint {
                id,
                hash: real_hash(b.addr),
                weight,
            })
            .collect();
        maglev::build(want.ring, &endpoints, ring_size)
    });
    let built: Vec<Rc<Vec<u32>>> = built.into_iter().map(Rc::new).collect();
    want.vips
        .iter()
        .zip(&members)
        .map(|(v, m)| (v.key, built[build_of[m.as_slice()]].clone()))
        .collect()
}

/// The map writes, in commit order: invalidate the inactive generation,
/// delete what it holds that is not wanted, write reals, server ids, rings,
/// real lists, VIPs and addresses, complete it, flip.
#[allow(clippy::too_many_arguments)]
fn writes(
    store: &dyn MapStore,
    snap: &Snapshot,
    want: &State,
    gen: u8,
    nums: &BTreeMap<VipKey, u32>,
    index: &BTreeMap<IpAddr, u32>,
    rings: &BTreeMap<VipKey, Rc<Vec<u32>>>,
    live_vips: &BTreeMap<VipKey, VipRecord>,
) -> anyhow::Result<Vec<Write>> {
    let g = gen as usize;
    let mut w = vec![Write::InvalidateCtl { gen }];

    // 1. What the inactive generation holds that the new one does not.
    for rec in snap.vips.iter().filter(|v| v.gen == gen) {
        if !nums.contains_key(&rec.key) {
            w.push(Write::DeleteVip { key: rec.key, gen });
        }
    }
    let addrs: BTreeSet<IpAddr> = want.vips.iter().map(|v| v.key.addr).collect();
    for (addr, _) in snap
        .vip_addrs
        .iter()
        .filter(|(a, g)| *g == gen && !addrs.contains(a))
    {
        w.push(Write::DeleteVipAddr { addr: *addr, gen });
    }
    let lists: BTreeMap<u32, usize> = want
        .vips
        .iter()
        .map(|v| (nums[&v.key] * 2 + u32::from(gen), v.reals.len()))
        .collect();
    for (ring_id, list) in snap
        .backends
        .iter()
        .filter(|(r, _)| *r % 2 == u32::from(gen))
    {
        let keep = lists.get(ring_id).copied().unwrap_or(0);
        for b in list.iter().filter(|b| b.pos as usize >= keep) {
            w.push(Write::DeleteBackend {
                ring_id: b.ring_id,
                pos: b.pos,
            });
        }
    }
    for (id, _) in snap.server_ids.keys().filter(|(_, g)| *g == gen) {
        if !want.server_ids.contains_key(id) {
            w.push(Write::DeleteServerId { id: *id, gen });
        }
    }

    // 2. Reals: this generation's flags; new addresses only at indices no
    // live generation names.
    let down: BTreeSet<IpAddr> = want.down_reals.iter().copied().collect();
    let used: BTreeSet<u32> = index.values().copied().collect();
    for (addr, idx) in index {
        let have = snap.reals.get(idx);
        let mut rec = match have {
            Some(r) if r.addr == *addr => *r,
            _ => RealRecord {
                addr: *addr,
                in_gen: [false; 2],
                down: [false; 2],
            },
        };
        rec.in_gen[g] = true;
        rec.down[g] = down.contains(addr);
        if have.map(|r| r.addr) != Some(*addr) {
            if have.is_some() {
                w.push(Write::PurgeConnEntries { idx: *idx });
            }
            w.push(Write::ResetRealStats { idx: *idx });
        }
        if have != Some(&rec) {
            w.push(Write::PutReal {
                idx: *idx,
                real: rec,
            });
        }
    }
    for (idx, r) in &snap.reals {
        if !used.contains(idx) && (r.in_gen[g] || r.down[g]) {
            let mut rec = *r;
            rec.in_gen[g] = false;
            rec.down[g] = false;
            w.push(Write::PutReal {
                idx: *idx,
                real: rec,
            });
        }
    }
    for (id, addr) in &want.server_ids {
        let real = index[addr];
        if snap.server_ids.get(&(*id, gen)) != Some(&real) {
            w.push(Write::PutServerId { id: *id, gen, real });
        }
    }

    // 3. Rings, real lists, VIP entries.
    for v in &want.vips {
        let num = nums[&v.key];
        let ring_id = num * 2 + u32::from(gen);
        let have = store.ring(ring_id)?;
        let changes = maglev::delta(&have, &rings[&v.key]);
        if !changes.is_empty() {
            w.push(Write::WriteRing { ring_id, changes });
        }
        let list = snap.backends.get(&ring_id).map_or(&[][..], Vec::as_slice);
        for (pos, b) in v.reals.iter().enumerate() {
            let rec = BackendRecord {
                ring_id,
                pos: pos as u32,
                real: index[&b.addr],
                weight: b.weight,
                drained: want.drained.contains(&(v.key, b.addr)),
            };
            if list.get(pos) != Some(&rec) {
                w.push(Write::PutBackend(rec));
            }
        }
        if !live_vips.contains_key(&v.key) {
            w.push(Write::ResetVipStats { vip_num: num });
        }
        let rec = VipRecord {
            key: v.key,
            gen,
            flags: v.flags,
            vip_num: num,
            ring_id,
        };
        if !snap.vips.contains(&rec) {
            w.push(Write::PutVip(rec));
        }
    }
    for addr in &addrs {
        if !snap.vip_addrs.contains(&(*addr, gen)) {
            w.push(Write::PutVipAddr { addr: *addr, gen });
        }
    }

    // 4. Complete the generation, then the one switch packets see.
    w.push(Write::SetCtl {
        gen,
        globals: want.globals.clone(),
        ring: want.ring,
    });
    w.push(Write::Flip { gen });
    Ok(w)
}
