//! Health-check forwarding: the tc program run with BPF_PROG_TEST_RUN on
//! marked and unmarked skbs (byte-checked IP-in-IP toward IPv4 and IPv6
//! reals), then the whole Rust side (ensure, sync, down) on a veth between
//! two namespaces, with real marked sockets and a capture on the far side.

use crate::common::{self, ip};
use crate::hc;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::time::Duration;

use common::frames::{packet, LB_MAC};
use hc::pair::{sa, Pair};
use hc::real::{self, RealSide};
use hc::{
    contains, outer, run_tc, run_tc_on, syn_to, Expect, Filter, TC_ACT_OK, TC_ACT_SHOT,
    TC_ACT_UNSPEC,
};
use katran::kernel::markfwd::{self, Control, HcStats, Mapping, Program, Sources};
use katran::model::MacAddr;

const GW: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
const SRC4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const REAL4: &str = "10.201.0.11";
const REAL6: &str = "fd00:201::11";
const MARK4: u32 = 100;
const MARK6: u32 = 200;

fn src6() -> Ipv6Addr {
    "fd00:99::2".parse().expect("literal")
}

fn control(v6: bool) -> Control {
    Control {
        gateway_mac: Some(MacAddr(GW)),
        sources: Sources {
            v4: Some(SRC4),
            v6: v6.then(src6),
        },
    }
}

/// Inner packets: UDP and TCP, IPv4 and IPv6, with a TOS on the IPv4 ones.
fn inner_frames() -> Vec<(&'static str, Vec<u8>)> {
    let v4 = |proto| {
        let mut f = packet(
            proto,
            (ip("10.99.0.2"), 40000),
            (ip("10.200.0.10"), 80),
            0x02,
            b"health?",
        );
        // TOS 0x28 (DSCP 10): fix the IPv4 header checksum by hand.
        f[15] = 0x28;
        let ck = u16::from_be_bytes([f[24], f[25]]);
        let sum = u32::from(!ck) + 0x28;
        let ck = !(((sum & 0xffff) + (sum >> 16)) as u16);
        f[24..26].copy_from_slice(&ck.to_be_bytes());
        f
    };
    let v6 = |proto| {
        packet(
            proto,
            (ip("fd00:99::2"), 40000),
            (ip("fd00:200::10"), 80),
            0x02,
            b"health?",
        )
    };
    vec![
        ("udp4", v4(17)),
        ("tcp4", v4(6)),
        ("udp6", v6(17)),
        ("tcp6", v6(6)),
    ]
}

/// Checks that `out` is `inner` encapsulated toward `real`.
fn check_encap(name: &str, inner: &[u8], out: &[u8], real: IpAddr) {
    let inner_v6 = inner[12..14] == [0x86, 0xdd];
    let o = outer(out).unwrap_or_else(|| panic!("{name}: no outer IP header"));
    let room = if real.is_ipv6() { 40 } else { 20 };
    let ctx = format!("{name} -> {real}:\n{}", common::hex_diff(inner, out));
    assert_eq!(out.len(), inner.len() + room, "{ctx}");
    assert_eq!(o.eth_dst, GW, "{ctx}");
    assert_eq!(o.eth_src, inner[6..12], "{ctx}");
    assert_eq!(o.dst, real, "{ctx}");
    let want_src: IpAddr = if real.is_ipv6() {
        src6().into()
    } else {
        SRC4.into()
    };
    assert_eq!(o.src, want_src, "{ctx}");
    assert_eq!(o.proto, if inner_v6 { 41 } else { 4 }, "{ctx}");
    assert_eq!(o.ttl, 64, "{ctx}");
    assert_eq!(o.hdr_len, room, "{ctx}");
    assert!(o.csum_ok, "{ctx}");
    assert_eq!(o.tos, if inner_v6 { 0 } else { 0x28 }, "{ctx}");
    let payload = inner.len() - 14;
    let want_len = if real.is_ipv6() {
        payload
    } else {
        payload + 20
    };
    assert_eq!(usize::from(o.len_field), want_len, "{ctx}");
    assert_eq!(o.id_frag, [0; 4], "{ctx}");
    assert_eq!(
        &out[14 + room..],
        &inner[14..],
        "{ctx}: inner packet changed"
    );
}

#[test]
fn test_run_encapsulates_marked_packets() {
    if !common::privileged("healthcheck test_run") {
        return;
    }
    katran::kernel::bpf::loader::route_libbpf_log();
    let p = Program::load().expect("loading the health-check program");
    let maps = p.maps().expect("maps");
    maps.set_control(&control(true)).expect("control");
    assert_eq!(maps.control().expect("read control"), control(true));
    maps.put(
        MARK4,
        Mapping {
            real: ip(REAL4),
            slot: 0,
        },
    )
    .expect("mark 100");
    maps.put(
        MARK6,
        Mapping {
            real: ip(REAL6),
            slot: 7,
        },
    )
    .expect("mark 200");
    let prog = p.prog().as_fd();

    let mut sent = [(0u64, 0u64); 2];
    for (name, inner) in inner_frames() {
        for (i, (mark, real)) in [(MARK4, REAL4), (MARK6, REAL6)].into_iter().enumerate() {
            let (v, out) = run_tc(&prog, &inner, mark).expect("test run");
            assert_eq!(v, TC_ACT_OK, "{name} mark {mark}");
            check_encap(name, &inner, &out, ip(real));
            sent[i].0 += 1;
            sent[i].1 += out.len() as u64;
        }
        for mark in [0, 300] {
            let (v, out) = run_tc(&prog, &inner, mark).expect("test run");
            assert_eq!(v, TC_ACT_UNSPEC, "{name} mark {mark}: verdict");
            assert_eq!(out, inner, "{name} mark {mark}: frame changed");
        }
    }
    assert_eq!(maps.slot_counters(0).expect("slot 0"), sent[0]);
    assert_eq!(maps.slot_counters(7).expect("slot 7"), sent[1]);

    // A mapped mark on something that is not IP goes on untouched.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&LB_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let (v, out) = run_tc(&prog, &arp, MARK4).expect("test run");
    assert_eq!((v, out.as_slice()), (TC_ACT_UNSPEC, arp.as_slice()));

    // No IPv6 source: checks to IPv6 reals are dropped, IPv4 ones still go.
    maps.set_control(&control(false)).expect("control");
    let (_, udp4) = &inner_frames()[0];
    assert_eq!(run_tc(&prog, udp4, MARK6).expect("run").0, TC_ACT_SHOT);
    assert_eq!(run_tc(&prog, udp4, MARK4).expect("run").0, TC_ACT_OK);

    // No gateway: the Ethernet destination the kernel chose is kept.
    let mut c = control(true);
    c.gateway_mac = None;
    maps.set_control(&c).expect("control");
    let (_, out) = run_tc(&prog, udp4, MARK4).expect("run");
    assert_eq!(out[..6], udp4[..6]);

    assert_eq!(
        maps.stats().expect("stats"),
        HcStats {
            encap_v4: 4 + 2,
            encap_v6: 4,
            pass_no_mapping: 4,
            pass_not_ip: 1,
            drop_no_source: 1,
            drop_too_big: 0,
            drop_encap: 0,
        }
    );
}

#[test]
fn netns_marked_datagrams_leave_encapsulated() {
    if !common::privileged("healthcheck netns") {
        return;
    }
    katran::kernel::bpf::loader::route_libbpf_log();
    let pair = Pair::new().expect("namespaces");
    let gw = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    let pin_dir = pair.pin_dir.clone();

    // Outer sources default to va's addresses.
    let sources = pair.in_a(|| Sources::of_interface("va")).expect("sources");
    assert_eq!(sources.v4, Some(Ipv4Addr::new(10, 50, 0, 1)));
    assert_eq!(sources.v6, Some("fd00:50::1".parse().expect("literal")));

    let real4 = ip("10.70.0.11");
    let real6 = ip("fd00:70::11");
    let marks = BTreeMap::from([(MARK4, real4), (MARK6, real6), (300, ip("10.70.0.99"))]);
    let out = pair
        .in_a(|| markfwd::reconcile(&pin_dir, "va", gw, &marks))
        .expect("reconcile");
    let ensured = out.ensured.expect("ensured");
    assert!(ensured.loaded && ensured.attached, "{ensured:?}");
    assert_eq!(out.changes.added.len(), 3);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);

    // Idempotent; a changed and a removed mark are written alone.
    let marks = BTreeMap::from([(MARK4, real4), (MARK6, real6)]);
    let again = pair
        .in_a(|| markfwd::ensure(&pin_dir, "va", gw, &sources))
        .expect("ensure again");
    assert!(!again.loaded && !again.attached && again.detached.is_empty());
    let changes = markfwd::sync(&pin_dir, &marks).expect("sync");
    assert_eq!(changes.removed, vec![(300, ip("10.70.0.99"))]);
    assert!(changes.added.is_empty() && changes.changed.is_empty());
    assert_eq!(
        markfwd::read_marks(&pin_dir).expect("read"),
        Some(marks.clone())
    );
    assert!(markfwd::sync(&pin_dir, &marks).expect("sync").is_empty());
    let filters = hc::netns::exec(&pair.a, &["tc", "filter", "show", "dev", "va", "egress"])
        .expect("tc filter show");
    assert!(filters.contains("healthcheck"), "{filters}");

    let cap = pair.capture().expect("capture");
    let cases: [(&str, u32, &str, Option<IpAddr>); 6] = [
        ("10.60.0.10", MARK4, "hc-4in4", Some(real4)),
        ("10.60.0.10", MARK6, "hc-4in6", Some(real6)),
        ("fd00:60::10", MARK4, "hc-6in4", Some(real4)),
        ("fd00:60::10", MARK6, "hc-6in6", Some(real6)),
        ("10.60.0.10", 0, "hc-plain", None),
        ("10.60.0.10", 4242, "hc-unmapped", None),
    ];
    for (dst, mark, tag, _) in cases {
        pair.send(sa(dst, 7000), mark, tag.as_bytes())
            .expect("send");
    }
    let want = Expect {
        gw: gw.0,
        next_hop: pair.mac(&pair.b, "vb").expect("vb MAC"),
        sources,
    };
    let preds: Vec<Filter> = cases.iter().map(|c| contains(c.2.as_bytes())).collect();
    let got = cap.collect(&preds, Duration::from_secs(5));
    for ((dst, mark, tag, real), frame) in cases.iter().zip(got) {
        let f = frame.unwrap_or_else(|| panic!("{tag} (mark {mark}) never arrived in b"));
        want.check(&f, tag, ip(dst), *real);
    }
    let (stats, per_mark) = markfwd::stats(&pin_dir).expect("stats").expect("loaded");
    assert_eq!((stats.encap_v4, stats.encap_v6), (2, 2), "{stats}");
    assert!(stats.pass_no_mapping >= 1, "{stats}");
    assert_eq!(per_mark[&MARK4].packets, 2);
    assert_eq!(per_mark[&MARK6].packets, 2);

    // TCP: marked SYNs (to nobody listening) leave encapsulated too.
    let _syn4 = pair
        .connect(sa("10.60.0.10", 7001), MARK4)
        .expect("connect");
    let _syn6 = pair
        .connect(sa("fd00:60::10", 7001), MARK6)
        .expect("connect");
    let preds: Vec<Filter> = vec![
        Box::new(|f| syn_to(f, 4, 7001)),
        Box::new(|f| syn_to(f, 41, 7001)),
    ];
    let got = cap.collect(&preds, Duration::from_secs(5));
    for ((dst, real), frame) in [("10.60.0.10", real4), ("fd00:60::10", real6)]
        .into_iter()
        .zip(got)
    {
        let f = frame.unwrap_or_else(|| panic!("the marked SYN to {dst} never arrived in b"));
        want.check(&f, "syn", ip(dst), Some(real));
    }

    // Moving to another interface detaches from the first.
    let moved = pair
        .in_a(|| markfwd::ensure(&pin_dir, "va2", gw, &sources))
        .expect("move");
    assert!(moved.attached && moved.detached == ["va"], "{moved:?}");
    let filters = hc::netns::exec(&pair.a, &["tc", "filter", "show", "dev", "va", "egress"])
        .expect("tc filter show");
    assert!(!filters.contains("healthcheck"), "{filters}");

    // No marks any more: everything goes.
    let gone = pair
        .in_a(|| markfwd::reconcile(&pin_dir, "va2", gw, &BTreeMap::new()))
        .expect("down");
    assert_eq!(gone.removed_from, ["va2"]);
    assert!(!pin_dir.join("hc").exists());
    assert_eq!(markfwd::read_marks(&pin_dir).expect("read"), None);
    let filters = hc::netns::exec(&pair.a, &["tc", "filter", "show", "dev", "va2", "egress"])
        .expect("tc filter show");
    assert!(!filters.contains("healthcheck"), "{filters}");
}

/// The outer sources are read from the kernel: link-scope and tentative
/// addresses are skipped, an IPv4 primary comes before its secondary, and
/// a missing interface is named with the kernel's reason.
#[test]
fn netns_sources_skip_unusable_addresses() {
    if !common::privileged("healthcheck sources") {
        return;
    }
    let pair = Pair::new().expect("namespaces");
    let batch = |lines: &[&str]| {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        hc::netns::ip_batch(&pair.a, &lines)
    };
    batch(&["link add kd0 type veth peer name kd1"]).expect("kd0");
    // Pair turns duplicate detection off by default; kd0 does it
    let dad = "net.ipv6.conf.kd0.accept_dad=1";
    hc::netns::exec(&pair.a, &["sysctl", "-q", "-w", dad]).expect("sysctl");
    batch(&[
        "addr add 10.8.0.1/24 dev kd0 scope link",
        "addr add 10.9.0.5/24 dev kd0",
        "addr add 10.9.0.6/24 dev kd0",
        "addr add fd00:9::2/64 dev kd0 nodad",
        // listed first (the kernel lists IPv6 addresses newest first) and
        // tentative for good: duplicate detection waits for kd0 to be up
        "addr add fd00:9::1/64 dev kd0",
    ])
    .expect("addresses");
    let kd0 = pair.in_a(|| markfwd::interface("kd0")).expect("kd0");
    assert!(kd0.ether);
    assert_eq!(kd0.sources.v4, Some(Ipv4Addr::new(10, 9, 0, 5)));
    assert_eq!(kd0.sources.v6, Some("fd00:9::2".parse().expect("literal")));

    let lo = pair.in_a(|| markfwd::interface("lo")).expect("lo");
    assert!(!lo.ether);
    assert_eq!(lo.sources, Sources::default());

    let e = pair
        .in_a(|| markfwd::interface("nosuch0"))
        .expect_err("no such interface");
    let e = format!("{e:#}");
    assert!(e.contains("nosuch0") && e.contains("os error 19"), "{e}");
}

#[test]
fn netns_tcp_check_reaches_the_real() {
    if !common::privileged("healthcheck tcp round trip") {
        return;
    }
    katran::kernel::bpf::loader::route_libbpf_log();
    let pair = Pair::new().expect("namespaces");
    // Offloads on: TCP hands the hook GSO frames far above the MTU.
    hc::netns::exec(&pair.a, &["ethtool", "-K", "va", "tx", "on"]).expect("ethtool");
    let side = RealSide::new(&pair).expect("the real in b");
    let vb_mac = MacAddr(pair.mac(&pair.b, "vb").expect("vb MAC"));
    let pin_dir = pair.pin_dir.clone();
    let marks = BTreeMap::from([(MARK4, ip(real::REAL4)), (MARK6, ip(real::REAL6))]);
    pair.in_a(|| markfwd::reconcile(&pin_dir, "va", vb_mac, &marks))
        .expect("reconcile");

    const BYTES: usize = 1_000_000;
    for vip in [real::VIP4, real::VIP6] {
        for mark in [MARK4, MARK6] {
            let answer = side.check(&pair, vip, mark, BYTES).expect("check");
            assert_eq!(answer, BYTES.to_string(), "{vip} with mark {mark}");
        }
    }
    let d = side.decap_stats().expect("decap stats");
    for (n, what) in [
        (d.v4_in_v4, "IPv4 in IPv4"),
        (d.v6_in_v4, "IPv6 in IPv4"),
        (d.v4_in_v6, "IPv4 in IPv6"),
        (d.v6_in_v6, "IPv6 in IPv6"),
    ] {
        assert!(n > 0, "the real decapsulated no {what}: {d:?}");
    }
    let (stats, per_mark) = markfwd::stats(&pin_dir).expect("stats").expect("loaded");
    assert_eq!(stats.drop_too_big + stats.drop_encap, 0, "{stats}");
    for (mark, c) in per_mark {
        assert!(
            c.bytes / c.packets.max(1) > 1600,
            "mark {mark}: no GSO frames went through ({c:?})"
        );
    }
}

#[test]
fn test_run_drops_what_outgrows_the_mtu() {
    if !common::privileged("healthcheck mtu") {
        return;
    }
    katran::kernel::bpf::loader::route_libbpf_log();
    let pair = Pair::new().expect("namespaces");
    let p = Program::load().expect("loading the health-check program");
    let maps = p.maps().expect("maps");
    maps.set_control(&control(true)).expect("control");
    maps.put(
        MARK4,
        Mapping {
            real: ip(REAL4),
            slot: 0,
        },
    )
    .expect("mark 100");
    maps.put(
        MARK6,
        Mapping {
            real: ip(REAL6),
            slot: 1,
        },
    )
    .expect("mark 200");
    let prog = p.prog().as_fd();
    // va's MTU is 1500: an IPv4 packet of `len` bytes, grown by the outer
    // header (20 or 40 bytes), fits up to exactly 1500.
    let udp = |len: usize| {
        packet(
            17,
            (ip("10.99.0.2"), 40000),
            (ip("10.200.0.10"), 80),
            0,
            &vec![7u8; len - 28],
        )
    };
    let results = pair
        .in_a(|| {
            let idx = katran::kernel::bpf::attach::ifindex("va")?;
            let mut v = Vec::new();
            for (mark, len) in [(MARK4, 1480), (MARK4, 1481), (MARK6, 1460), (MARK6, 1461)] {
                let (verdict, out) = run_tc_on(&prog, &udp(len), mark, idx)?;
                v.push((mark, len, verdict, out.len()));
            }
            Ok(v)
        })
        .expect("test runs in a");
    assert_eq!(
        results,
        [
            (MARK4, 1480, TC_ACT_OK, 14 + 1500),
            (MARK4, 1481, TC_ACT_SHOT, 14 + 1481),
            (MARK6, 1460, TC_ACT_OK, 14 + 1500),
            (MARK6, 1461, TC_ACT_SHOT, 14 + 1461),
        ]
    );
    let stats = maps.stats().expect("stats");
    assert_eq!(
        (stats.encap_v4, stats.encap_v6, stats.drop_too_big),
        (1, 1, 2)
    );
}
