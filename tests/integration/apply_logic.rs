//! Planning and committing against the in-memory store: no kernel, no
//! privileges. The store refuses new keys beyond each map's capacity, as the
//! kernel's hash maps do, and can fail any chosen write.

use crate::common::{self, ip};

use std::collections::BTreeMap;

use katran::apply::{apply, read_live};
use katran::model::{Proto, RingKind, State, Vip, VipFlags, VipKey};
use katran::plan::{self, Change};
use katran::snapshot::Snapshot;
use katran::store::{Limits, MapStore, MemStore};

fn limits() -> Limits {
    Limits::for_sizes(13, 4, 8)
}

/// A TCP VIP without flags.
fn vip(addr: &str, port: u16, reals: &[(&str, u32)]) -> Vip {
    common::vip(addr, port, Proto::Tcp, VipFlags::default(), reals)
}

fn state(vips: Vec<Vip>) -> State {
    State {
        vips,
        ring: RingKind::MaglevV2,
        ..State::default()
    }
}

/// read_live orders VIPs by key; compare with the desired state sorted the same way.
fn sorted(mut s: State) -> State {
    s.vips.sort_by_key(|v| v.key);
    s.down_reals.sort();
    s
}

fn plan_for(store: &MemStore, want: &State) -> plan::Plan {
    let snap = Snapshot::read(store).unwrap();
    plan::build(store, &snap, want).unwrap()
}

/// Everything a packet can read: the active generation's control values,
/// VIP entries, addresses, rings and server ids, and of every real what the
/// active generation sees (its address only where the generation names it).
fn packet_view(s: &MemStore) -> String {
    let g = s.gen;
    let vips: Vec<_> = s.vips.values().filter(|v| v.gen == g).collect();
    let rings: Vec<_> = vips.iter().map(|v| s.ring(v.ring_id).unwrap()).collect();
    let addrs: Vec<_> = s.vip_addrs.keys().filter(|(_, ag)| *ag == g).collect();
    let reals: Vec<_> = s
        .reals
        .iter()
        .map(|(i, r)| {
            let on = r.in_gen[g as usize];
            (*i, on, r.down[g as usize], on.then_some(r.addr))
        })
        // an entry this generation neither names nor marks reads as absent
        .filter(|(_, on, down, _)| *on || *down)
        .collect();
    let sids: Vec<_> = s
        .server_ids
        .iter()
        .filter(|((_, sg), _)| *sg == g)
        .collect();
    format!(
        "gen {g}\nctl {:?}\nvips {vips:?}\nrings {rings:?}\naddrs {addrs:?}\nreals {reals:?}\nsids {sids:?}",
        s.ctl[g as usize]
    )
}

#[test]
fn empty_store_reads_back_nothing() {
    let store = MemStore::new(limits());
    assert_eq!(read_live(&store).unwrap(), None);
}

#[test]
fn apply_then_read_back_is_the_same_state_and_the_next_plan_is_empty() {
    let mut store = MemStore::new(limits());
    let want = state(vec![
        vip("10.0.0.2", 80, &[("10.1.0.1", 1), ("10.1.0.2", 3)]),
        vip("10.0.0.1", 443, &[("fc00::1", 2), ("10.1.0.1", 0)]),
    ]);
    apply(&mut store, &want).unwrap();
    assert_eq!(read_live(&store).unwrap(), Some(sorted(want.clone())));
    let again = plan_for(&store, &want);
    assert!(again.is_empty(), "{again}");
    assert!(again.writes.is_empty(), "an empty plan writes nothing");
}

#[test]
fn an_ipv6_vip_with_zero_low_words_reads_back_as_ipv6() {
    let mut store = MemStore::new(limits());
    // 2001:db8:: has the same address words as the IPv4 address 32.1.13.184
    let want = state(vec![
        vip("2001:db8::", 80, &[("10.1.0.1", 1)]),
        vip("32.1.13.184", 80, &[("10.1.0.2", 1)]),
    ]);
    apply(&mut store, &want).unwrap();
    assert_eq!(read_live(&store).unwrap(), Some(sorted(want.clone())));
    assert!(plan_for(&store, &want).is_empty());
}

#[test]
fn the_flip_is_the_last_write() {
    let mut store = MemStore::new(limits());
    apply(
        &mut store,
        &state(vec![vip("10.0.0.1", 80, &[("10.1.0.1", 1)])]),
    )
    .unwrap();
    store.journal.clear();
    let mut next = state(vec![
        vip("10.0.0.3", 80, &[("10.1.0.3", 1)]),
        vip("10.0.0.1", 80, &[("10.1.0.2", 1)]),
    ]);
    next.server_ids.insert(7, ip("10.1.0.3"));
    next.down_reals.push(ip("10.1.0.2"));
    apply(&mut store, &next).unwrap();
    assert!(store.journal.last().unwrap().starts_with("flip"));
    assert_eq!(
        store
            .journal
            .iter()
            .filter(|l| l.starts_with("flip"))
            .count(),
        1
    );
}

#[test]
fn reals_keep_their_index_and_a_removed_real_leaves_with_the_flip() {
    let mut store = MemStore::new(limits());
    apply(
        &mut store,
        &state(vec![vip(
            "10.0.0.1",
            80,
            &[("10.1.0.1", 1), ("10.1.0.2", 1)],
        )]),
    )
    .unwrap();
    let idx_of = |s: &MemStore, a: &str| {
        s.reals
            .iter()
            .find(|(_, r)| r.addr == ip(a))
            .map(|(i, _)| *i)
    };
    let i2 = idx_of(&store, "10.1.0.2").unwrap();
    let old_gen = store.gen as usize;
    apply(
        &mut store,
        &state(vec![vip(
            "10.0.0.1",
            80,
            &[("10.1.0.2", 5), ("10.1.0.3", 1)],
        )]),
    )
    .unwrap();
    assert_eq!(
        idx_of(&store, "10.1.0.2"),
        Some(i2),
        "a kept real keeps its index"
    );
    let removed = store
        .reals
        .values()
        .find(|r| r.addr == ip("10.1.0.1"))
        .unwrap();
    let new_gen = store.gen as usize;
    assert!(
        !removed.in_gen[new_gen],
        "the new generation does not name it"
    );
    assert!(
        removed.in_gen[old_gen],
        "the old one still does, for in-flight packets"
    );
    // a new real never takes the removed real's index while fresh ones exist
    assert_ne!(idx_of(&store, "10.1.0.3"), idx_of(&store, "10.1.0.1"));
}

#[test]
fn vip_numbers_are_stable_and_rings_alternate_halves() {
    let mut store = MemStore::new(limits());
    let a = vip("10.0.0.1", 80, &[("10.1.0.1", 1)]);
    let b = vip("10.0.0.2", 80, &[("10.1.0.1", 1)]);
    apply(&mut store, &state(vec![a.clone(), b.clone()])).unwrap();
    let num = |s: &MemStore, k: VipKey| {
        let g = s.active_gen().unwrap();
        s.vips[&(k, g)]
    };
    let first = num(&store, b.key);
    apply(&mut store, &state(vec![b.clone()])).unwrap();
    let second = num(&store, b.key);
    assert_eq!(first.vip_num, second.vip_num);
    assert_ne!(first.ring_id, second.ring_id);
    assert_eq!(first.ring_id / 2, second.ring_id / 2);
}

#[test]
fn too_many_vips_or_reals_fail_before_anything_is_written() {
    let mut store = MemStore::new(limits());
    let many: Vec<Vip> = (1..=5)
        .map(|i| vip(&format!("10.0.0.{i}"), 80, &[("10.1.0.1", 1)]))
        .collect();
    let err = apply(&mut store, &state(many)).unwrap_err();
    assert!(err.to_string().contains("too many VIPs"), "{err}");
    assert_eq!(store.writes, 0, "nothing written: {:?}", store.journal);

    let reals: Vec<(String, u32)> = (1..=9).map(|i| (format!("10.1.0.{i}"), 1)).collect();
    let refs: Vec<(&str, u32)> = reals.iter().map(|(a, w)| (a.as_str(), *w)).collect();
    let err = apply(&mut store, &state(vec![vip("10.0.0.1", 80, &refs)])).unwrap_err();
    assert!(err.to_string().contains("too many reals"), "{err}");
    assert_eq!(store.writes, 0);
}

#[test]
fn replacing_vips_at_full_capacity_converges() {
    let mut store = MemStore::new(limits());
    let set = |last: u8| {
        state(
            [1, 2, 3, last]
                .iter()
                .map(|i| vip(&format!("10.0.0.{i}"), 80, &[("10.1.0.1", 1)]))
                .collect(),
        )
    };
    for last in [4, 5, 6, 7, 4] {
        let want = set(last);
        apply(&mut store, &want).unwrap_or_else(|e| panic!("{{1,2,3,{last}}}: {e:#}"));
        assert_eq!(read_live(&store).unwrap(), Some(sorted(want)));
    }
}

#[test]
fn only_changed_ring_slots_are_written() {
    let mut store = MemStore::new(Limits::for_sizes(65537, 4, 64));
    let reals: Vec<(String, u32)> = (1..=10).map(|i| (format!("10.1.0.{i}"), 10)).collect();
    let refs: Vec<(&str, u32)> = reals.iter().map(|(a, w)| (a.as_str(), *w)).collect();
    let s1 = state(vec![vip("10.0.0.1", 80, &refs)]);
    let mut s2 = s1.clone();
    s2.vips[0].reals[0].weight = 20;
    apply(&mut store, &s1).unwrap();
    // the other half is still empty: a full ring
    let r = apply(&mut store, &s2).unwrap();
    assert_eq!(r.ring_slots, 65537);
    // back to s1: the stale half still holds s1's ring, so no slot changes
    let r = apply(&mut store, &s1).unwrap();
    assert_eq!(r.ring_slots, 0);
    assert!(r.map_writes > 0);
    // the same state again: nothing at all
    let r = apply(&mut store, &s1).unwrap();
    assert_eq!((r.map_writes, r.ring_slots), (0, 0));
}

#[test]
fn a_ring_changed_behind_our_back_is_repaired_and_the_plan_says_so() {
    let mut store = MemStore::new(limits());
    let want = state(vec![vip(
        "10.0.0.1",
        80,
        &[("10.1.0.1", 1), ("10.1.0.2", 1)],
    )]);
    apply(&mut store, &want).unwrap();
    let rec = store.vips[&(want.vips[0].key, store.gen)];
    let mut ring = store.ring(rec.ring_id).unwrap();
    let good = ring.clone();
    ring[3] = 0;
    ring[5] = 0;
    store.rings.insert(rec.ring_id, ring);
    let p = plan_for(&store, &want);
    assert_eq!(
        p.changes,
        vec![Change::RingRepair {
            vip: want.vips[0].key.to_string(),
            slots: 2,
            of: 13
        }],
        "{p}"
    );
    apply(&mut store, &want).unwrap();
    let rec = store.vips[&(want.vips[0].key, store.gen)];
    assert_eq!(store.ring(rec.ring_id).unwrap(), good);
    assert!(plan_for(&store, &want).is_empty());
}

#[test]
fn health_verdicts_are_live_state_read_back_and_planned() {
    let mut store = MemStore::new(limits());
    let mut want = state(vec![vip(
        "10.0.0.1",
        80,
        &[("10.1.0.1", 1), ("10.1.0.2", 1)],
    )]);
    apply(&mut store, &want).unwrap();
    let key = want.vips[0].key;
    want.drained.insert((key, ip("10.1.0.1")));
    let p = plan_for(&store, &want);
    assert!(
        p.changes.contains(&Change::Health {
            vip: key.to_string(),
            real: ip("10.1.0.1"),
            drained: true
        }),
        "{p}"
    );
    apply(&mut store, &want).unwrap();
    let live = read_live(&store).unwrap().unwrap();
    assert_eq!(live.drained, want.drained);
    assert_eq!(live.vips[0].reals[0].weight, 1, "the file's weight is kept");
    let rec = store.vips[&(key, store.gen)];
    let idx1 = store
        .reals
        .iter()
        .find(|(_, r)| r.addr == ip("10.1.0.1"))
        .unwrap()
        .0;
    assert!(
        !store.ring(rec.ring_id).unwrap().contains(idx1),
        "a drained real gets no ring slots"
    );
}

/// The sweep's steps: each a desired state, applied in order.
fn sweep_steps() -> Vec<(&'static str, State)> {
    let base = state(vec![
        vip("10.0.0.1", 80, &[("10.1.0.1", 1), ("10.1.0.2", 2)]),
        vip("10.0.0.2", 443, &[("10.1.0.2", 1)]),
    ]);
    let mut added = base.clone();
    added
        .vips
        .push(vip("2001:db8::", 80, &[("fc00::1", 1), ("10.1.0.3", 1)]));
    let mut reweighted = added.clone();
    reweighted.vips[0].reals[1].weight = 5;
    let mut removed = reweighted.clone();
    removed.vips.remove(1);
    removed.vips[0].reals.remove(0);
    let full = |last: u8| {
        state(
            [1, 2, 3, last]
                .iter()
                .map(|i| vip(&format!("10.0.0.{i}"), 80, &[("10.1.0.4", 1)]))
                .collect(),
        )
    };
    let mut sids = removed.clone();
    sids.server_ids = BTreeMap::from([(1, ip("10.1.0.2")), (9, ip("fc00::1"))]);
    let mut sids2 = sids.clone();
    sids2.server_ids = BTreeMap::from([(1, ip("10.1.0.3")), (5, ip("10.1.0.9"))]);
    let mut down = sids2.clone();
    down.down_reals = vec![ip("10.1.0.2"), ip("10.1.0.9")];
    let mut drained = down.clone();
    drained
        .drained
        .insert((drained.vips[0].key, ip("10.1.0.2")));
    let mut settings = drained.clone();
    settings.globals.max_conn_rate = 7;
    settings.ring = RingKind::MaglevV1;
    vec![
        ("add", base),
        ("add more", added),
        ("reweight", reweighted),
        ("remove", removed),
        ("full {1,2,3,4}", full(4)),
        ("full {1,2,3,5}", full(5)),
        ("full {1,2,3,6}", full(6)),
        ("server ids", sids),
        ("server ids moved", sids2),
        ("down reals", down),
        ("drained", drained),
        ("settings", settings),
        ("remove all", state(vec![])),
    ]
}

#[test]
fn a_failure_at_any_write_leaves_what_packets_read_untouched_and_the_next_apply_converges() {
    let mut store = MemStore::new(limits());
    let mut checked = 0;
    let mut plans = 0;
    for (name, want) in sweep_steps() {
        let total = {
            let mut probe = store.clone();
            let before = probe.writes;
            apply(&mut probe, &want).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            probe.writes - before
        };
        assert!(total > 0, "{name}: the step changes something");
        plans += 1;
        for n in 0..total {
            let mut s = store.clone();
            let view = packet_view(&s);
            s.fail_write = Some(s.writes + n);
            let err = apply(&mut s, &want).expect_err("the injected failure");
            assert!(err.to_string().contains("unchanged"), "{name}: {err:#}");
            assert_eq!(
                packet_view(&s),
                view,
                "{name}: write {n} of {total} failed and packets see a change"
            );
            s.fail_write = None;
            apply(&mut s, &want).unwrap_or_else(|e| panic!("{name} after failure {n}: {e:#}"));
            assert_eq!(
                read_live(&s).unwrap(),
                Some(sorted(want.clone())),
                "{name} n={n}"
            );
            assert!(plan_for(&s, &want).is_empty(), "{name} n={n}: converged");
            checked += 1;
        }
        apply(&mut store, &want).unwrap();
    }
    println!("fault sweep: {plans} plans, {checked} failing write positions, all untouched and converging");
}
