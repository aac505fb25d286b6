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

/// The reals list of every ring, by ring id, when it is complete (positions
/// 0..n without gaps); a partly written list is left out, so it never
/// matches and its ring is rewritten.
fn lists_by_ring(records: Vec<BackendRecord>) -> BTreeMap<u32, Vec<BackendRecord>> {
    let mut by: BTreeMap<u32, Vec<BackendRecord>> = BTreeMap::new();
    for b in records {
        by.entry(b.ring_id).or_default().push(b);
    }
    for list in by.values_mut() {
        list.sort_by_key(|b| b.pos);
    }
    by
}

fn complete(list: &[BackendRecord]) -> bool {
    list.iter().enumerate().all(|(i, b)| b.pos as usize == i)
}

fn same_list(have: Option<&Vec<BackendRecord>>, want: &[(u32, u32)]) -> bool {
    have.is_some_and(|h| {
        complete(h)
            && h.len() == want.len()
            && h.iter().zip(want).all(|(b, w)| (b.real, b.weight) == *w)
    })
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
    // The generation being written holds what was live two applies ago;
    // its rings can be reused only if that apply completed it with the same
    // ring kind. The live generation is complete by definition.
    let reusable = matches!(store.ctl(gen)?, Some((_, kind)) if kind == desired.ring);
    let live_kind = store.ctl(live_gen)?.map(|(_, k)| k);
    let lists = lists_by_ring(store.backends()?);

    // 1. Reals (shared by both generations: only additions and flag changes).
    for (addr, idx) in &index {
        let want = RealRecord {
            addr: *addr,
            down: down.contains(addr),
            removed: false,
        };
        let have = live_reals.get(idx);
        if have != Some(&want) {
            if have.map(|r| r.addr) != Some(*addr) {
                if have.is_some() {
                    // a removed real's index: forget the connections that
                    // still name it before it names another real
                    store.purge_conn_entries(*idx)?;
                }
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

    // 2. The new generation. From here until `set_ctl` it is incomplete.
    store.invalidate_ctl(gen)?;
    let mut rings_used = BTreeSet::new();
    for vip in &desired.vips {
        let num = nums[&vip.key];
        let ring_id = num * 2 + u32::from(gen);
        rings_used.insert(ring_id);
        let want: Vec<(u32, u32)> = vip
            .reals
            .iter()
            .map(|b| (index[&b.addr], b.weight))
            .collect();
        let have = lists.get(&ring_id);
        if !(reusable && same_list(have, &want)) {
            report.ring_slots += write_ring(
                store, desired, vip, &want, ring_id, &live_vips, &lists, live_kind,
            )?;
            write_list(
                store,
                ring_id,
                have.map(Vec::as_slice).unwrap_or_default(),
                &want,
            )?;
        }
        if !live_vips.contains_key(&vip.key) {
            store.reset_vip_stats(num)?;
        }
        let record = VipRecord {
            key: vip.key,
            gen,
            flags: vip.flags,
            vip_num: num,
            ring_id,
        };
        if !all_vips.contains(&record) {
            store.put_vip(&record)?;
        }
    }
    // What this generation held for VIPs that are gone.
    for v in all_vips
        .iter()
        .filter(|v| v.gen == gen && !nums.contains_key(&v.key))
    {
        store.delete_vip(&v.key, gen)?;
    }
    for (ring_id, list) in &lists {
        if ring_id % 2 == u32::from(gen) && !rings_used.contains(ring_id) {
            for b in list {
                store.delete_backend(b.ring_id, b.pos)?;
            }
        }
    }
    let addrs: BTreeSet<IpAddr> = desired.vips.iter().map(|v| v.key.addr).collect();
    let have_addrs: BTreeSet<IpAddr> = store
        .vip_addrs()?
        .into_iter()
        .filter(|(_, g)| *g == gen)
        .map(|(a, _)| a)
        .collect();
    for addr in have_addrs.difference(&addrs) {
        store.delete_vip_addr(*addr, gen)?;
    }
    for addr in addrs.difference(&have_addrs) {
        store.put_vip_addr(*addr, gen)?;
    }
    store.set_ctl(gen, &desired.globals, desired.ring)?;

    // 3. The flip.
    store.set_active_gen(gen)?;

    // 4. What the new configuration no longer names.
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

/// Writes the VIP's ring into `ring_id` (changed slots only): a copy of the
/// live ring when the VIP's reals are unchanged, else a freshly built one.
/// Returns the number of slots written.
#[allow(clippy::too_many_arguments)]
fn write_ring(
    store: &mut dyn MapStore,
    desired: &State,
    vip: &Vip,
    want: &[(u32, u32)],
    ring_id: u32,
    live_vips: &BTreeMap<VipKey, VipRecord>,
    lists: &BTreeMap<u32, Vec<BackendRecord>>,
    live_kind: Option<crate::model::RingKind>,
) -> Result<usize> {
    let live_ring = live_vips.get(&vip.key).map(|r| r.ring_id);
    let ring = match live_ring {
        Some(r) if live_kind == Some(desired.ring) && same_list(lists.get(&r), want) => {
            store.ring(r)?
        }
        _ => {
            let endpoints: Vec<Endpoint> = vip
                .reals
                .iter()
                .zip(want)
                .map(|(b, (idx, weight))| Endpoint {
                    id: *idx,
                    hash: real_hash(b.addr),
                    weight: *weight,
                })
                .collect();
            maglev::build(desired.ring, &endpoints, store.limits().ring_size)
        }
    };
    let changes = maglev::delta(&store.ring(ring_id)?, &ring);
    store.write_ring(ring_id, &changes)?;
    Ok(changes.len())
}

/// Makes the reals list of `ring_id` equal `want`, writing only what differs.
fn write_list(
    store: &mut dyn MapStore,
    ring_id: u32,
    have: &[BackendRecord],
    want: &[(u32, u32)],
) -> Result<()> {
    for (pos, (real, weight)) in want.iter().enumerate() {
        let b = BackendRecord {
            ring_id,
            pos: pos as u32,
            real: *real,
            weight: *weight,
        };
        if !have.contains(&b) {
            store.put_backend(&b)?;
        }
    }
    for b in have.iter().filter(|b| b.pos as usize >= want.len()) {
        store.delete_backend(b.ring_id, b.pos)?;
    }
    Ok(())
}
