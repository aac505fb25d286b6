//! The connection tables (set-associative arrays, see `enum conn_layout` in
//! bpf/lb_types.h), through the kernel with BPF_PROG_TEST_RUN: UDP entries
//! expire, a full set evicts an entry not used since its last eviction and
//! counts it, established flows keep their real when an apply changes the
//! ring, a CPU left out of `forwarding_cpus` uses the shared table, a real
//! is only taken from a way under the flow's own tag (what
//! keeps the shared table safe from half-written ways), and during a
//! replacement a flow neither table knows follows the replaced dataplane's
//! ring, the dataplane places IPv4 and IPv6 flows where user space
//! looks for them, and each CPU stores its flows in its own table. The test
//! thread is pinned to one CPU so that every packet uses that CPU's table.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};

use common::frames::{outer_dst, packet, tcp, TCP_ACK, TCP_RST, TCP_SYN};
use katran::apply::apply;
use katran::kernel::bpf::abi::types::{self, lb_stat};
use katran::kernel::bpf::abi::{self, addr_words};
use katran::kernel::bpf::conn_set;
use katran::kernel::bpf::kernel_store::ConnTable;
use katran::kernel::bpf::loader::{Dataplane, LoadOptions};
use katran::kernel::bpf::prev_ring;
use katran::kernel::testrun::{run_once, XDP_TX};
use katran::model::{Backend, MacAddr, Proto, RingKind, State, Vip, VipFlags, VipKey};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
const VIP_TCP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));
const VIP_UDP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2));

fn reals(n: u8) -> Vec<Backend> {
    (1..=n)
        .map(|i| Backend {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)),
            weight: 1,
        })
        .collect()
}

fn state(n_reals: u8) -> State {
    let mut s = State {
        ring: RingKind::MaglevV2,
        ..State::default()
    };
    s.globals.gateway_mac = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
    let vip = |addr, port, proto| Vip {
        key: VipKey { addr, port, proto },
        flags: VipFlags::default(),
        reals: reals(n_reals),
    };
    s.vips = vec![vip(VIP_TCP, 80, Proto::Tcp), vip(VIP_UDP, 53, Proto::Udp)];
    s
}

/// Per-CPU tables of `entries` flows, this thread pinned to its CPU.
fn load(name: &str, entries: u32) -> Option<(Dataplane, MapHandle)> {
    load_ring(name, entries, 4099)
}

fn load_ring(name: &str, entries: u32, ring_size: u32) -> Option<(Dataplane, MapHandle)> {
    if !common::privileged(name) {
        return None;
    }
    pin_to_this_cpu();
    let dp = Dataplane::load(&LoadOptions {
        ring_size,
        max_vips: 8,
        max_reals: 16,
        conn_table_size: entries,
        ..LoadOptions::default()
    })
    .expect("loading the balancer");
    let stats = dp.maps().expect("map handles").stats;
    Some((dp, stats))
}

/// Pins this thread to the CPU it runs on, and returns the CPU.
/// The shared table only, of `entries` flows (no CPU has a table of its
/// own, so no pinning is needed).
fn load_shared(name: &str, entries: u32) -> Option<Dataplane> {
    if !common::privileged(name) {
        return None;
    }
    let dp = Dataplane::load(&LoadOptions {
        ring_size: 4099,
        max_vips: 8,
        max_reals: 16,
        fallback_table_size: entries,
        forwarding_cpus: Some(Vec::new()),
        ..LoadOptions::default()
    })
    .expect("loading the balancer");
    Some(dp)
}

fn pin_to_this_cpu() -> u32 {
    // SAFETY: a plain libc call.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0);
    assert!(pin_to(cpu as u32), "cannot pin to CPU {cpu}");
    cpu as u32
}

/// The key of the TCP flow from CLIENT's `port` to VIP_TCP:80.
fn tcp_key(port: u16) -> types::flow_key {
    types::flow_key {
        src: addr_words(CLIENT),
        dst: addr_words(VIP_TCP),
        sport: port.to_be(),
        dport: 80u16.to_be(),
        proto: 6,
        ..Default::default()
    }
}

fn stat(stats: &MapHandle, which: lb_stat) -> u64 {
    katran::views::stats::global_one(stats, which).expect("reading stats")
}

fn send(dp: &Dataplane, frame: &[u8]) -> Option<IpAddr> {
    let (verdict, out) = run_once(dp.balancer(), frame).expect("test run");
    assert_eq!(verdict, XDP_TX);
    outer_dst(&out)
}

#[test]
fn udp_entries_expire() {
    let Some((dp, stats)) = load("per-CPU table: UDP entries expire", 1024) else {
        return;
    };
    let dns = packet(17, (CLIENT, 5353), (VIP_UDP, 53), 0, b"query");
    let mut s = state(4);
    s.globals.udp_timeout_s = 30;
    apply(&mut dp.store().unwrap(), &s).unwrap();
    send(&dp, &dns);
    send(&dp, &dns);
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_MISS_UDP), 1);
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_HIT), 1);
    // a timeout of 0 s: every entry is older than that by the next packet
    s.globals.udp_timeout_s = 0;
    apply(&mut dp.store().unwrap(), &s).unwrap();
    send(&dp, &dns);
    send(&dp, &dns);
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_MISS_UDP), 3);
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_HIT), 1);
}

#[test]
fn a_full_set_evicts_an_unused_entry_and_counts_it() {
    // as many entries as a set has ways: one set
    let ways = types::conn_layout::CONN_WAYS.0 as u16;
    let Some((dp, stats)) = load("per-CPU table: eviction", u32::from(ways)) else {
        return;
    };
    apply(&mut dp.store().unwrap(), &state(4)).unwrap();
    let syn = |port| tcp((CLIENT, port), (VIP_TCP, 80), TCP_SYN);
    let ack = |port| tcp((CLIENT, port), (VIP_TCP, 80), TCP_ACK);
    for port in 1001..=1000 + ways {
        send(&dp, &syn(port));
    }
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_EVICTED), 0);
    send(&dp, &ack(1001)); // used since: survives the next eviction
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_HIT), 1);
    send(&dp, &syn(1001 + ways)); // the set is full: evicts 1002, the first unused
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_EVICTED), 1);
    send(&dp, &ack(1001));
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_HIT), 2);
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_MISS_TCP_NONSYN), 0);
    send(&dp, &ack(1002));
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_MISS_TCP_NONSYN), 1);
}

#[test]
fn a_real_is_taken_only_under_the_flows_own_tag() {
    // the shared table only, of one set
    let Some(dp) = load_shared("shared table: tags", 4) else {
        return;
    };
    let maps = dp.maps().expect("map handles");
    apply(&mut dp.store().unwrap(), &state(4)).unwrap();
    let first = send(&dp, &tcp((CLIENT, 2001), (VIP_TCP, 80), TCP_SYN));
    let ack = tcp((CLIENT, 2001), (VIP_TCP, 80), TCP_ACK);
    assert_eq!(send(&dp, &ack), first);
    assert_eq!(stat(&maps.stats, lb_stat::STAT_CONN_HIT), 1);
    // the way keeps the flow's key but names another real under another
    // tag: what a reader may meet while another CPU rewrites the way
    let key = 0u32.to_ne_bytes();
    let raw = maps
        .conn_shared
        .lookup(&key, MapFlags::ANY)
        .unwrap()
        .unwrap();
    let mut set: types::conn_set = abi::from_bytes(&raw).unwrap();
    let way = set.way.iter_mut().find(|w| w.entry.real != 0).unwrap();
    way.entry.real = way.entry.real % 4 + 1;
    way.entry.tag = !way.entry.tag;
    maps.conn_shared
        .update(&key, abi::bytes(&set), MapFlags::ANY)
        .unwrap();
    // a miss: the ring decides, and the flow is stored again
    assert_eq!(send(&dp, &ack), first);
    assert_eq!(stat(&maps.stats, lb_stat::STAT_CONN_MISS_TCP_NONSYN), 1);
    assert_eq!(send(&dp, &ack), first);
    assert_eq!(stat(&maps.stats, lb_stat::STAT_CONN_HIT), 2);
}

#[test]
fn the_dataplane_places_v4_and_v6_flows_where_user_space_looks() {
    // the shared table only, of 16 sets: the set and the tag are both checked
    let Some(dp) = load_shared("connection hash: IPv4 and IPv6 flows", 64) else {
        return;
    };
    let maps = dp.maps().expect("map handles");
    let vip6: IpAddr = "fc00::1".parse().unwrap();
    let client6: IpAddr = "2001:db8:7:1:2:3:4:5".parse().unwrap();
    let mut s = state(4);
    s.vips.push(Vip {
        key: VipKey {
            addr: vip6,
            port: 80,
            proto: Proto::Tcp,
        },
        flags: VipFlags::default(),
        reals: reals(4),
    });
    apply(&mut dp.store().unwrap(), &s).unwrap();
    let meta: types::conn_meta = maps
        .conn_meta
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .unwrap()
        .and_then(|v| abi::from_bytes(&v))
        .expect("conn_meta");
    for (client, vip) in [(CLIENT, VIP_TCP), (client6, vip6)] {
        send(&dp, &tcp((client, 3001), (vip, 80), TCP_SYN));
        let key = types::flow_key {
            src: addr_words(client),
            dst: addr_words(vip),
            sport: 3001u16.to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            ..Default::default()
        };
        let slot = conn_set::slot(&key, meta.seed, maps.conn_shared.max_entries());
        let set: types::conn_set = maps
            .conn_shared
            .lookup(&slot.set.to_ne_bytes(), MapFlags::ANY)
            .unwrap()
            .and_then(|v| abi::from_bytes(&v))
            .expect("a set");
        assert!(
            conn_set::find(&set, &key, slot.tag).is_some(),
            "{client} -> {vip}: not in set {} under tag {:#x}",
            slot.set,
            slot.tag
        );
    }
}

#[test]
fn a_cpu_without_a_table_of_its_own_uses_the_shared_one() {
    if !common::privileged("per-CPU tables: a CPU left out") {
        return;
    }
    // pinned to this CPU, whose table is not in forwarding_cpus
    let here = pin_to_this_cpu();
    let cpus = libbpf_rs::num_possible_cpus().unwrap() as u32;
    let others: Vec<u32> = (0..cpus).filter(|c| *c != here).collect();
    let dp = Dataplane::load(&LoadOptions {
        ring_size: 4099,
        max_vips: 8,
        max_reals: 16,
        conn_table_size: 64,
        fallback_table_size: 64,
        forwarding_cpus: Some(others),
        ..LoadOptions::default()
    })
    .expect("loading the balancer");
    let stats = dp.maps().expect("map handles").stats;
    apply(&mut dp.store().unwrap(), &state(4)).unwrap();
    let first = send(&dp, &tcp((CLIENT, 3001), (VIP_TCP, 80), TCP_SYN));
    assert_eq!(
        send(&dp, &tcp((CLIENT, 3001), (VIP_TCP, 80), TCP_ACK)),
        first
    );
    assert_eq!(stat(&stats, lb_stat::STAT_FALLBACK_TABLE), 2);
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_HIT), 1);
    let store = dp.store().unwrap();
    let shared = store.conn_nsets(ConnTable::Shared);
    assert_eq!(shared, 64 / types::conn_layout::CONN_WAYS.0);
    let mut in_shared = 0;
    store
        .each_set_of(ConnTable::Shared, |_, sets| {
            in_shared += sets
                .iter()
                .flat_map(|s| s.way)
                .filter(|w| w.entry.real != 0)
                .count();
        })
        .unwrap();
    assert_eq!(in_shared, 1, "the flow is in the shared table");
}

#[test]
fn established_flows_keep_their_real_across_an_apply() {
    let Some((dp, stats)) = load("per-CPU table: flows keep their real", 65_536) else {
        return;
    };
    apply(&mut dp.store().unwrap(), &state(2)).unwrap();
    let ports: Vec<u16> = (2000..2064).collect();
    let first: Vec<Option<IpAddr>> = ports
        .iter()
        .map(|p| send(&dp, &tcp((CLIENT, *p), (VIP_TCP, 80), TCP_SYN)))
        .collect();
    // user space finds each entry in the set it computes (abi::conn_set_index)
    let store = dp.store().unwrap();
    for p in &ports {
        assert!(
            store.conn_entry(&tcp_key(*p)).unwrap().is_some(),
            "the flow from port {p} is not in the set user space computes"
        );
    }
    // eight reals instead of two: the ring moves most flows
    apply(&mut dp.store().unwrap(), &state(8)).unwrap();
    let hits = stat(&stats, lb_stat::STAT_CONN_HIT);
    for (p, want) in ports.iter().zip(&first) {
        let got = send(&dp, &tcp((CLIENT, *p), (VIP_TCP, 80), TCP_ACK));
        assert_eq!(got, *want, "the flow from port {p} changed real");
    }
    assert_eq!(
        stat(&stats, lb_stat::STAT_CONN_HIT) - hits,
        ports.len() as u64
    );
    // new flows do use the new reals
    let moved = (3000..3064u16)
        .filter_map(|p| send(&dp, &tcp((CLIENT, p), (VIP_TCP, 80), TCP_SYN)))
        .filter(|a| !first.contains(&Some(*a)))
        .count();
    assert!(moved > 0, "no new flow went to one of the new reals");
}

#[test]
fn during_a_replacement_unknown_flows_follow_the_old_ring() {
    let Some((old, _)) = load_ring("replacement: the old ring is lent", 65_536, 4099) else {
        return;
    };
    let (new, stats) = load_ring("replacement: the old ring is lent", 65_536, 8191).unwrap();
    apply(&mut old.store().unwrap(), &state(4)).unwrap();
    // the same reals in another order: other indices in the new dataplane
    let mut s = state(4);
    for v in &mut s.vips {
        v.reals.reverse();
    }
    apply(&mut new.store().unwrap(), &s).unwrap();
    // a reset is never stored: it shows where each ring sends a flow
    let rst = |port| tcp((CLIENT, port), (VIP_TCP, 80), TCP_RST | TCP_ACK);
    let ack = |port| tcp((CLIENT, port), (VIP_TCP, 80), TCP_ACK);
    let syn = |port| tcp((CLIENT, port), (VIP_TCP, 80), TCP_SYN);
    let differ: Vec<(u16, Option<IpAddr>, Option<IpAddr>)> = (2000..2100u16)
        .map(|p| (p, send(&old, &rst(p)), send(&new, &rst(p))))
        .filter(|(_, a, b)| a != b)
        .collect();
    assert!(
        differ.len() >= 3,
        "the two rings agree on almost every flow"
    );

    let store = new.store().unwrap();
    let index = katran::store::MapStore::reals(&store)
        .unwrap()
        .into_iter()
        .map(|(i, r)| (r.addr, i))
        .collect();
    let lent = new.prev_ring_map().unwrap();
    let vips = prev_ring::install(&lent, &old.store().unwrap(), &store, &index).unwrap();
    assert_eq!(vips, 2);

    let (p, was, _) = differ[0];
    assert_eq!(
        send(&new, &ack(p)),
        was,
        "an unknown flow left the old ring's real"
    );
    assert_eq!(stat(&stats, lb_stat::STAT_PREV_RING), 1);
    // ... and is remembered there
    let hits = stat(&stats, lb_stat::STAT_CONN_HIT);
    assert_eq!(send(&new, &ack(p)), was);
    assert_eq!(stat(&stats, lb_stat::STAT_CONN_HIT), hits + 1);
    // a new connection takes the new ring
    let (p, _, now) = differ[1];
    assert_eq!(send(&new, &syn(p)), now, "a SYN followed the old ring");

    prev_ring::clear(&lent).unwrap();
    let (p, _, now) = differ[2];
    assert_eq!(
        send(&new, &ack(p)),
        now,
        "the old ring outlived the replacement"
    );
    assert_eq!(stat(&stats, lb_stat::STAT_PREV_RING), 1);
}

#[test]
fn writing_a_set_leaves_what_the_program_wrote_since_it_was_read() {
    if let Some((dp, _)) = load("per-CPU sets: written way by way", 1024) {
        program_writes_survive(&dp, ConnTable::PerCpu);
    }
    if let Some(dp) = load_shared("shared sets: written way by way", 64) {
        program_writes_survive(&dp, ConnTable::Shared);
    }
}

/// User space reads set 0 of `table` (the first copy: CPU 0's, or the
/// shared one's only), means to drop one flow and add another, while the
/// program fills two ways meanwhile: both of the program's stay.
fn program_writes_survive(dp: &Dataplane, table: ConnTable) {
    let store = dp.store().unwrap();
    let sets = store.sets(table).unwrap();
    let array = sets.array();
    let way = |key, real, tag| types::conn_way {
        entry: types::conn_entry {
            real,
            tag,
            ..Default::default()
        },
        key,
    };
    let (a, b, c, d) = (tcp_key(1), tcp_key(2), tcp_key(3), tcp_key(4));
    // element 0 holds a in way 0
    let empty = sets.read(0).unwrap();
    let mut with_a = empty.clone();
    with_a[0].way[0] = way(a, 3, 7);
    assert_eq!(sets.update(0, &empty, &with_a).unwrap(), 0);
    // user space reads the set, to drop a and put c in way 1 ...
    let read = sets.read(0).unwrap();
    assert_eq!(conn_set::find(&read[0], &a, 7), Some(3));
    let mut want = read.clone();
    want[0].way[0] = types::conn_way::default();
    want[0].way[1] = way(c, 5, 9);
    // ... while the program puts b in way 1 and d in way 2
    let mut program = read[0];
    program.way[1] = way(b, 4, 8);
    program.way[2] = way(d, 6, 10);
    array.set(0, &program);
    assert_eq!(
        sets.update(0, &read, &want).unwrap(),
        1,
        "{table:?}: one way was the program's since the read"
    );
    let now = sets.read(0).unwrap();
    assert_eq!(conn_set::find(&now[0], &a, 7), None, "{table:?}: a dropped");
    assert_eq!(conn_set::find(&now[0], &b, 8), Some(4), "{table:?}: b kept");
    assert_eq!(
        conn_set::find(&now[0], &d, 10),
        Some(6),
        "{table:?}: d kept"
    );
    assert_eq!(conn_set::find(&now[0], &c, 9), None, "{table:?}: c over b");
}

#[test]
fn each_cpu_stores_its_flows_in_its_own_table() {
    if !common::privileged("per-CPU tables: each CPU's own") {
        return;
    }
    let dp = Dataplane::load(&LoadOptions {
        ring_size: 4099,
        max_vips: 8,
        max_reals: 16,
        conn_table_size: 1024,
        ..LoadOptions::default()
    })
    .expect("loading the balancer");
    apply(&mut dp.store().unwrap(), &state(4)).unwrap();
    // the CPUs this thread may run on, each sending a flow of its own
    let cpus: Vec<u32> = (0..libbpf_rs::num_possible_cpus().unwrap() as u32)
        .filter(|c| pin_to(*c))
        .collect();
    assert!(!cpus.is_empty(), "this thread may run on no CPU");
    for cpu in &cpus {
        assert!(pin_to(*cpu));
        send(
            &dp,
            &tcp((CLIENT, 4000 + *cpu as u16), (VIP_TCP, 80), TCP_SYN),
        );
    }
    let meta: types::conn_meta = dp
        .maps()
        .unwrap()
        .conn_meta
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .unwrap()
        .and_then(|v| abi::from_bytes(&v))
        .expect("conn_meta");
    let store = dp.store().unwrap();
    for cpu in &cpus {
        let k = tcp_key(4000 + *cpu as u16);
        let slot = conn_set::slot(&k, meta.seed, store.conn_nsets(ConnTable::PerCpu));
        let mut holders = Vec::new();
        store
            .each_set_of(ConnTable::PerCpu, |idx, copies| {
                if idx == slot.set {
                    holders.extend(
                        (0..copies.len() as u32).filter(|c| {
                            conn_set::find(&copies[*c as usize], &k, slot.tag).is_some()
                        }),
                    );
                }
            })
            .unwrap();
        assert_eq!(
            holders,
            vec![*cpu],
            "the flow sent on CPU {cpu} is in the tables of CPUs {holders:?}"
        );
    }
}

/// Pins this thread to `cpu`; false when it may not run there.
fn pin_to(cpu: u32) -> bool {
    // SAFETY: plain libc calls on a zeroed, owned cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
