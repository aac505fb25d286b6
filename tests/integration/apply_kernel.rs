//! Applying configurations to the real maps: round trips of the example
//! files, atomicity under traffic, failed applies, connection stickiness.
//! Needs root (BPF); prints `skipped: ...` otherwise.

use crate::common::{self, ip};

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::frames::{self, TCP_ACK, TCP_SYN};
use katran::apply::{apply, read_live};
use katran::explain::{explain, Flow};
use katran::kernel::bpf::kernel_store::KernelStore;
use katran::kernel::bpf::loader::{Dataplane, LoadOptions};
use katran::kernel::testrun::{run_once, XDP_PASS, XDP_TX};
use katran::model::{MacAddr, Proto, RingKind, State, Vip, VipFlags};
use katran::plan;
use libbpf_rs::{MapCore, MapFlags, MapType};

fn load(max_vips: u32, max_reals: u32) -> Dataplane {
    Dataplane::load(&LoadOptions {
        max_vips,
        max_reals,
        // one shared table: test runs may hop CPUs between packets
        forwarding_cpus: Some(Vec::new()),
        ..LoadOptions::default()
    })
    .expect("loading the balancer")
}

/// A TCP VIP on port 80.
fn vip(addr: &str, reals: &[(&str, u32)], flags: VipFlags) -> Vip {
    common::vip(addr, 80, Proto::Tcp, flags, reals)
}

fn state(mac: u8, vips: Vec<Vip>) -> State {
    let mut s = State {
        vips,
        ring: RingKind::MaglevV2,
        ..State::default()
    };
    s.globals.gateway_mac = MacAddr([2, 0, 0, 0, 0, mac]);
    s
}

/// What the dataplane must do with a TCP flow to port 80 under `s`, as
/// `katran explain` computes it: `None` = pass, else (real, gateway MAC).
fn expected(s: &State, src: IpAddr, sport: u16, dst: IpAddr) -> Option<(IpAddr, [u8; 6])> {
    let flow = Flow {
        src,
        sport,
        dst,
        dport: 80,
        proto: Proto::Tcp,
    };
    explain(s, 65537, flow)
        .real
        .map(|r| (r, s.globals.gateway_mac.0))
}

fn sorted(mut s: State) -> State {
    s.vips.sort_by_key(|v| v.key);
    s.down_reals.sort();
    s
}

#[test]
fn example_configs_round_trip() {
    if !common::privileged("apply example configs round trip") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let loaded =
            katran::config::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut want = loaded.config.state;
        want.globals.gateway_mac = MacAddr([2, 0, 0, 0, 0, 1]); // "auto" resolves at apply time
        let dp = Dataplane::load(&LoadOptions {
            ring_size: loaded.config.settings.ring_size,
            max_vips: 16,
            max_reals: 256,
            forwarding_cpus: Some(Vec::new()),
            ..LoadOptions::default()
        })
        .unwrap();
        let mut store = dp.store().unwrap();
        apply(&mut store, &want).unwrap();
        let live = read_live(&store).unwrap().expect("a live configuration");
        assert_eq!(
            sorted(live.clone()),
            sorted(want.clone()),
            "{}",
            file.display()
        );
        let snap = katran::snapshot::Snapshot::read(&store).unwrap();
        let p = plan::build(&store, &snap, &want).unwrap();
        assert!(
            p.is_empty(),
            "{}: dry-run after apply is not empty:\n{p}",
            file.display()
        );
        println!(
            "round trip {}: ok ({} VIPs)",
            file.file_name().unwrap().to_string_lossy(),
            want.vips.len()
        );
    }
}

#[test]
fn every_packet_sees_one_whole_configuration() {
    if !common::privileged("apply atomicity") {
        return;
    }
    let bypass = VipFlags {
        no_conn_table: true,
        ..VipFlags::default()
    };
    let a = state(
        0xa,
        vec![
            vip(
                "10.200.0.1",
                &[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)],
                bypass,
            ),
            vip("10.200.0.2", &[("10.1.0.4", 1), ("10.1.0.5", 1)], bypass),
        ],
    );
    let b = state(
        0xb,
        vec![
            vip(
                "10.200.0.1",
                &[("10.1.0.1", 1), ("10.1.0.2", 3), ("10.1.0.6", 1)],
                bypass,
            ),
            vip("10.200.0.3", &[("10.1.0.7", 2)], bypass),
        ],
    );
    let dp = load(8, 64);
    let mut store = dp.store().unwrap();
    apply(&mut store, &a).unwrap();

    // Flows to every VIP of either config, with their outcome under each.
    let mut flows = Vec::new();
    for (i, dst) in ["10.200.0.1", "10.200.0.2", "10.200.0.3"]
        .iter()
        .enumerate()
    {
        for n in 0..40u16 {
            let src = ip(&format!("192.168.{}.{}", i, n + 1));
            let sport = 10_000 + n * 7;
            let frame = frames::tcp((src, sport), (ip(dst), 80), TCP_SYN);
            flows.push((
                frame,
                expected(&a, src, sport, ip(dst)),
                expected(&b, src, sport, ip(dst)),
            ));
        }
    }
    let flows = Arc::new(flows);
    let done = Arc::new(AtomicBool::new(false));
    let prog = dp.balancer().as_fd().try_clone_to_owned().unwrap();
    let replay = {
        let (flows, done) = (flows.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut runs, mut as_a, mut as_b, mut mixed) = (0u64, 0u64, 0u64, Vec::new());
            while !done.load(Ordering::Relaxed) {
                for (frame, ea, eb) in flows.iter() {
                    let (verdict, out) = run_once(&prog, frame).unwrap();
                    let got = match verdict {
                        XDP_TX => Some((frames::outer_dst(&out).unwrap(), frames::eth_dst(&out))),
                        XDP_PASS => None,
                        v => panic!("unexpected verdict {v}"),
                    };
                    runs += 1;
                    if got == *ea {
                        as_a += 1;
                    }
                    if got == *eb {
                        as_b += 1;
                    }
                    if got != *ea && got != *eb && mixed.len() < 10 {
                        mixed.push(format!("{got:?} is neither {ea:?} nor {eb:?}"));
                    }
                }
            }
            (runs, as_a, as_b, mixed)
        })
    };
    for i in 0..200 {
        apply(&mut store, if i % 2 == 0 { &b } else { &a }).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let (runs, as_a, as_b, mixed) = replay.join().unwrap();
    println!("atomicity: {runs} packets during 200 applies; {as_a} matched A, {as_b} matched B, {} neither", mixed.len());
    assert!(
        mixed.is_empty(),
        "packets forwarded by a mix of configurations: {mixed:#?}"
    );
    assert!(
        as_a > 0 && as_b > 0,
        "the replay did not overlap both configurations"
    );
}

/// Key and value bytes of every entry of one map.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every key and value of every map (per-CPU values for all CPUs).
fn dump(store: &KernelStore) -> BTreeMap<String, Entries> {
    let mut out = BTreeMap::new();
    for (name, h) in store.maps.named() {
        let mut entries = Vec::new();
        for k in h.keys() {
            let v = match h.map_type() {
                MapType::PercpuArray | MapType::PercpuHash => h
                    .lookup_percpu(&k, MapFlags::ANY)
                    .unwrap()
                    .unwrap_or_default()
                    .concat(),
                _ => h.lookup(&k, MapFlags::ANY).unwrap().unwrap_or_default(),
            };
            entries.push((k, v));
        }
        out.insert(name.to_string(), entries);
    }
    out
}

#[test]
fn a_failed_apply_changes_nothing() {
    if !common::privileged("failed apply leaves maps identical") {
        return;
    }
    let dp = load(2, 4);
    let mut store = dp.store().unwrap();
    let none = VipFlags::default();
    let good = state(
        1,
        vec![vip("10.200.0.1", &[("10.1.0.1", 1), ("10.1.0.2", 1)], none)],
    );
    apply(&mut store, &good).unwrap();
    // some traffic, so counters and the connection table hold something too
    run_once(
        dp.balancer(),
        &frames::tcp((ip("192.168.0.1"), 1234), (ip("10.200.0.1"), 80), TCP_SYN),
    )
    .unwrap();
    let before = dump(&store);

    let too_many_vips = state(
        1,
        (1..=3)
            .map(|i| vip(&format!("10.200.0.{i}"), &[("10.1.0.1", 1)], none))
            .collect(),
    );
    assert!(apply(&mut store, &too_many_vips).is_err());
    let too_many_reals = state(
        1,
        vec![vip(
            "10.200.0.1",
            &[
                ("10.1.0.1", 1),
                ("10.1.0.2", 1),
                ("10.1.0.3", 1),
                ("10.1.0.4", 1),
                ("10.1.0.5", 1),
            ],
            none,
        )],
    );
    assert!(apply(&mut store, &too_many_reals).is_err());

    let after = dump(&store);
    for (name, entries) in &before {
        assert!(
            after[name] == *entries,
            "map {name} changed after a failed apply"
        );
    }
    println!("failed apply: {} maps byte-identical", before.len());
}

#[test]
fn connections_stay_on_their_real_across_an_apply() {
    if !common::privileged("connection stickiness across apply") {
        return;
    }
    let none = VipFlags::default();
    let s1 = state(
        1,
        vec![vip(
            "10.200.0.1",
            &[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)],
            none,
        )],
    );
    // adds a real and reweights another: many ring slots move
    let s2 = state(
        1,
        vec![vip(
            "10.200.0.1",
            &[
                ("10.1.0.1", 1),
                ("10.1.0.2", 4),
                ("10.1.0.3", 1),
                ("10.1.0.4", 1),
            ],
            none,
        )],
    );
    // removes 10.1.0.1
    let s3 = state(
        1,
        vec![vip(
            "10.200.0.1",
            &[("10.1.0.2", 4), ("10.1.0.3", 1), ("10.1.0.4", 1)],
            none,
        )],
    );
    let dp = load(4, 16);
    let mut store = dp.store().unwrap();
    apply(&mut store, &s1).unwrap();
    let vip_addr = ip("10.200.0.1");
    let send = |src: IpAddr, sport: u16, flags: u8| {
        let (v, out) = run_once(
            dp.balancer(),
            &frames::tcp((src, sport), (vip_addr, 80), flags),
        )
        .unwrap();
        assert_eq!(v, XDP_TX);
        frames::outer_dst(&out).unwrap()
    };
    let flows: Vec<(IpAddr, u16)> = (0..300u16)
        .map(|n| (ip(&format!("192.168.1.{}", n % 250 + 1)), 20_000 + n))
        .collect();
    let first: Vec<IpAddr> = flows.iter().map(|(s, p)| send(*s, *p, TCP_SYN)).collect();

    apply(&mut store, &s2).unwrap();
    let moved_by_ring = flows
        .iter()
        .zip(&first)
        .filter(|((s, p), r)| expected(&s2, *s, *p, vip_addr).map(|e| e.0) != Some(**r))
        .count();
    assert!(moved_by_ring > 0, "the new ring would move some flows");
    for ((s, p), r) in flows.iter().zip(&first) {
        assert_eq!(
            send(*s, *p, TCP_ACK),
            *r,
            "flow {s}:{p} changed real after an apply"
        );
    }
    // new connections follow the new ring
    for n in 0..50u16 {
        let src = ip(&format!("172.20.0.{}", n + 1));
        assert_eq!(
            Some(send(src, 40_000 + n, TCP_SYN)),
            expected(&s2, src, 40_000 + n, vip_addr).map(|e| e.0)
        );
    }

    apply(&mut store, &s3).unwrap();
    let mut rehashed = 0;
    for ((s, p), r) in flows.iter().zip(&first) {
        let now = send(*s, *p, TCP_ACK);
        if *r == ip("10.1.0.1") {
            assert_ne!(now, *r, "a removed real keeps getting its connections");
            rehashed += 1;
        } else {
            assert_eq!(now, *r, "flow {s}:{p} on a kept real moved");
        }
    }
    println!("stickiness: {moved_by_ring} of 300 flows would move by ring, none moved; {rehashed} flows of a removed real rehashed");
}

use std::os::fd::AsFd;

#[test]
fn a_recycled_real_index_inherits_no_connections() {
    if !common::privileged("recycled real index") {
        return;
    }
    use katran::kernel::bpf::abi::{addr_words, types};
    let none = VipFlags::default();
    // room for 3 reals: the fourth distinct real must take a removed one's index
    let dp = load(2, 3);
    let mut store = dp.store().unwrap();
    apply(
        &mut store,
        &state(
            1,
            vec![vip(
                "10.200.0.1",
                &[("10.1.0.1", 1), ("10.1.0.2", 1), ("10.1.0.3", 1)],
                none,
            )],
        ),
    )
    .unwrap();
    let vip_addr = ip("10.200.0.1");
    let flows: Vec<(IpAddr, u16)> = (0..60u16).map(|n| (ip("192.168.9.9"), 5000 + n)).collect();
    let mut on_first = Vec::new();
    for (s, p) in &flows {
        let (_, out) = run_once(
            dp.balancer(),
            &frames::tcp((*s, *p), (vip_addr, 80), TCP_SYN),
        )
        .unwrap();
        if frames::outer_dst(&out) == Some(ip("10.1.0.1")) {
            on_first.push((*s, *p));
        }
    }
    assert!(!on_first.is_empty());
    let key = |s: IpAddr, p: u16| types::flow_key {
        src: addr_words(s),
        dst: addr_words(vip_addr),
        sport: p.to_be(),
        dport: 80u16.to_be(),
        proto: 6,
        ..Default::default()
    };
    let old_idx = store
        .conn_entry(&key(on_first[0].0, on_first[0].1))
        .unwrap()
        .expect("an entry");
    // remove 10.1.0.1, then add 10.1.0.4: it can only get 10.1.0.1's index
    apply(
        &mut store,
        &state(
            1,
            vec![vip("10.200.0.1", &[("10.1.0.2", 1), ("10.1.0.3", 1)], none)],
        ),
    )
    .unwrap();
    apply(
        &mut store,
        &state(
            1,
            vec![vip(
                "10.200.0.1",
                &[("10.1.0.2", 1), ("10.1.0.3", 1), ("10.1.0.4", 1)],
                none,
            )],
        ),
    )
    .unwrap();
    let reals = katran::store::MapStore::reals(&store).unwrap();
    assert_eq!(
        reals[&old_idx].addr,
        ip("10.1.0.4"),
        "the index was recycled"
    );
    for (s, p) in &on_first {
        assert_eq!(
            store.conn_entry(&key(*s, *p)).unwrap(),
            None,
            "flow {s}:{p} still names the recycled index"
        );
    }
    println!(
        "recycled index: {} entries of the removed real purged before reuse",
        on_first.len()
    );
}

/// The VIP filter (a bitmap the program checks before any VIP lookup) holds
/// exactly the bits of the addresses some generation still names: a removed
/// VIP's bit is cleared once neither generation has it, and a VIP's packets
/// are never passed for want of a bit. The VIP cache only ever holds copies
/// of `vips` entries, and loses a VIP with it.
#[test]
fn the_vip_filter_and_cache_follow_the_vips() {
    if !common::privileged("VIP filter and cache follow the VIPs") {
        return;
    }
    let dp = load(4, 8);
    let mut store = dp.store().unwrap();
    let none = VipFlags::default();
    let both = state(
        1,
        vec![
            vip("10.200.0.1", &[("10.1.0.1", 1)], none),
            vip("fc00::7", &[("10.1.0.2", 1)], none),
        ],
    );
    let one = state(1, vec![vip("fc00::7", &[("10.1.0.2", 1)], none)]);
    let mut one_again = one.clone();
    one_again.globals.max_conn_rate += 1; // rewrites the other generation
    let filter = |store: &KernelStore| -> Vec<u32> {
        let mut bits = Vec::new();
        for word in 0..store.maps.vip_filter.max_entries() {
            let v = store
                .maps
                .vip_filter
                .lookup(&word.to_ne_bytes(), MapFlags::ANY)
                .unwrap()
                .map_or(0, |b| u64::from_ne_bytes(b[..8].try_into().unwrap()));
            bits.extend((0..64).filter(|b| v >> b & 1 == 1).map(|b| word * 64 + b));
        }
        bits
    };
    // The front (in lb_gen, after the generation) has exactly the bits
    // covering the filter's.
    let front_follows = |store: &KernelStore| {
        let g = store
            .maps
            .lb_gen
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .unwrap()
            .unwrap();
        let mut front = Vec::new();
        for (i, w) in g[8..].chunks(8).enumerate() {
            let v = u64::from_ne_bytes(w.try_into().unwrap());
            front.extend(
                (0..64)
                    .filter(|b| v >> b & 1 == 1)
                    .map(|b| i as u32 * 64 + b),
            );
        }
        let mut want: Vec<u32> = filter(store)
            .into_iter()
            .map(katran::kernel::bpf::abi::vip_front_bit)
            .collect();
        want.dedup();
        assert_eq!(front, want, "the filter's front");
    };
    let bit = |a: &str| katran::kernel::bpf::abi::vip_filter_bit(ip(a));
    let mut want = vec![bit("10.200.0.1"), bit("fc00::7")];
    want.sort();
    want.dedup();

    // Every filled slot of the VIP cache is a copy of a `vips` entry.
    let cache_agrees = |store: &KernelStore| {
        let mut filled = 0;
        for slot in 0..store.maps.vip_cache.max_entries() {
            let v = store
                .maps
                .vip_cache
                .lookup(&slot.to_ne_bytes(), MapFlags::ANY)
                .unwrap()
                .unwrap();
            let (key, meta) = v.split_at(20);
            if key.iter().all(|b| *b == 0) {
                continue;
            }
            filled += 1;
            let in_hash = store.maps.vips.lookup(key, MapFlags::ANY).unwrap();
            assert_eq!(in_hash.as_deref(), Some(meta), "cache slot {slot}");
        }
        filled
    };

    apply(&mut store, &both).unwrap();
    assert_eq!(filter(&store), want);
    front_follows(&store);
    assert_eq!(cache_agrees(&store), 2);
    let syn = frames::tcp((ip("192.168.0.1"), 1234), (ip("10.200.0.1"), 80), TCP_SYN);
    assert_eq!(run_once(dp.balancer(), &syn).unwrap().0, XDP_TX);
    // the other generation still names 10.200.0.1: its bit stays
    apply(&mut store, &one).unwrap();
    assert_eq!(filter(&store), want);
    assert_eq!(run_once(dp.balancer(), &syn).unwrap().0, XDP_PASS);
    assert_eq!(cache_agrees(&store), 3);
    apply(&mut store, &one_again).unwrap();
    assert_eq!(filter(&store), vec![bit("fc00::7")]);
    front_follows(&store);
    assert_eq!(cache_agrees(&store), 2);
    let syn6 = frames::tcp((ip("2001:db8::1"), 1234), (ip("fc00::7"), 80), TCP_SYN);
    assert_eq!(run_once(dp.balancer(), &syn6).unwrap().0, XDP_TX);
}
