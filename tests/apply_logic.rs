//! apply/read_live against the in-memory store: no kernel, no privileges.

use std::net::IpAddr;

use katran::apply::{apply, read_live};
use katran::model::{Backend, Proto, RingKind, State, Vip, VipFlags, VipKey};
use katran::store::{Limits, MapStore, MemStore};

fn limits() -> Limits {
    Limits {
        ring_size: 13,
        max_vips: 4,
        max_reals: 8,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vip(addr: &str, port: u16, reals: &[(&str, u32)]) -> Vip {
    Vip {
        key: VipKey {
            addr: ip(addr),
            port,
            proto: Proto::Tcp,
        },
        flags: VipFlags::default(),
        reals: reals
            .iter()
            .map(|(a, w)| Backend {
                addr: ip(a),
                weight: *w,
            })
            .collect(),
    }
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
    s
}

#[test]
fn empty_store_reads_back_nothing() {
    let store = MemStore::new(limits());
    assert_eq!(read_live(&store).unwrap(), None);
}

#[test]
fn apply_then_read_back_is_the_same_state() {
    let mut store = MemStore::new(limits());
    let want = state(vec![
        vip("10.0.0.2", 80, &[("10.1.0.1", 1), ("10.1.0.2", 3)]),
        vip("10.0.0.1", 443, &[("fc00::1", 2), ("10.1.0.1", 0)]),
    ]);
    apply(&mut store, &want).unwrap();
    assert_eq!(read_live(&store).unwrap(), Some(sorted(want.clone())));
    // and again: nothing about a second apply of the same state changes it
    apply(&mut store, &want).unwrap();
    assert_eq!(read_live(&store).unwrap(), Some(sorted(want)));
}

#[test]
fn the_flip_comes_after_every_write_of_the_new_generation() {
    let mut store = MemStore::new(limits());
    apply(
        &mut store,
        &state(vec![vip("10.0.0.1", 80, &[("10.1.0.1", 1)])]),
    )
    .unwrap();
    store.journal.clear();
    apply(
        &mut store,
        &state(vec![
            vip("10.0.0.1", 80, &[("10.1.0.1", 1), ("10.1.0.2", 1)]),
            vip("10.0.0.3", 80, &[("10.1.0.3", 1)]),
        ]),
    )
    .unwrap();
    let flip = store
        .journal
        .iter()
        .position(|l| l.starts_with("flip"))
        .expect("a flip");
    let after = &store.journal[flip + 1..];
    assert!(
        after
            .iter()
            .all(|l| !l.starts_with("vip ") && !l.starts_with("ring ") && !l.starts_with("ctl")),
        "configuration written after the flip: {after:?}"
    );
    assert!(store.journal[..flip].iter().any(|l| l.starts_with("ring ")));
}

#[test]
fn the_live_generation_is_untouched_by_the_next_apply() {
    let mut store = MemStore::new(limits());
    apply(
        &mut store,
        &state(vec![vip("10.0.0.1", 80, &[("10.1.0.1", 1)])]),
    )
    .unwrap();
    let live_gen = store.active_gen().unwrap();
    let before: Vec<_> = store
        .vips
        .values()
        .filter(|v| v.gen == live_gen)
        .copied()
        .collect();
    let ring_before = store.ring(before[0].ring_id).unwrap();
    apply(
        &mut store,
        &state(vec![vip("10.0.0.1", 80, &[("10.1.0.2", 1)])]),
    )
    .unwrap();
    // the old generation's entries and ring are still there for in-flight packets
    let old: Vec<_> = store
        .vips
        .values()
        .filter(|v| v.gen == live_gen)
        .copied()
        .collect();
    assert_eq!(old, before);
    assert_eq!(store.ring(before[0].ring_id).unwrap(), ring_before);
    assert_ne!(store.active_gen().unwrap(), live_gen);
}

#[test]
fn reals_keep_their_index_and_removed_ones_are_marked_after_the_flip() {
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
    store.journal.clear();
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
    assert!(removed.removed);
    let flip = store
        .journal
        .iter()
        .position(|l| l.starts_with("flip"))
        .unwrap();
    let mark = store
        .journal
        .iter()
        .position(|l| l.starts_with("real") && l.ends_with("10.1.0.1"))
        .unwrap();
    assert!(mark > flip, "a removed real is marked only after the flip");
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
    assert!(
        store.journal.is_empty(),
        "nothing written: {:?}",
        store.journal
    );

    let reals: Vec<(String, u32)> = (1..=9).map(|i| (format!("10.1.0.{i}"), 1)).collect();
    let refs: Vec<(&str, u32)> = reals.iter().map(|(a, w)| (a.as_str(), *w)).collect();
    let err = apply(&mut store, &state(vec![vip("10.0.0.1", 80, &refs)])).unwrap_err();
    assert!(err.to_string().contains("no free real index"), "{err}");
    assert!(store.journal.is_empty());
}

#[test]
fn only_changed_ring_slots_are_written() {
    let mut store = MemStore::new(Limits {
        ring_size: 65537,
        max_vips: 4,
        max_reals: 64,
    });
    let reals: Vec<(String, u32)> = (1..=10).map(|i| (format!("10.1.0.{i}"), 10)).collect();
    let refs: Vec<(&str, u32)> = reals.iter().map(|(a, w)| (a.as_str(), *w)).collect();
    let s1 = state(vec![vip("10.0.0.1", 80, &refs)]);
    apply(&mut store, &s1).unwrap();
    // the second apply writes the other half, which is still empty: a full ring
    let r = apply(&mut store, &s1).unwrap();
    assert_eq!(r.ring_slots, 65537);
    // the third apply reuses the first half, which already holds this ring
    let r = apply(&mut store, &s1).unwrap();
    assert_eq!(r.ring_slots, 0);
}
