//! Traffic routed by a server id (a QUIC connection id) belongs to an
//! established connection: it must never use up the new-flow rate
//! (`max_conn_rate`), or busy QUIC traffic would stop new TCP and UDP flows
//! from being remembered. Checked through the kernel with BPF_PROG_TEST_RUN:
//! after 2,000 packets of one QUIC connection with `max_conn_rate = 1000`,
//! a new SYN is still stored in the connection table (its next packet is a
//! table hit, and no insert was refused).

use crate::common;

use std::net::{IpAddr, Ipv4Addr};

use common::frames::{packet, tcp, TCP_ACK, TCP_SYN};
use katran::apply::apply;
use katran::kernel::bpf::abi::types::lb_stat;
use katran::kernel::bpf::loader::{Dataplane, LoadOptions};
use katran::kernel::testrun::{run_once, XDP_TX};
use katran::model::{Backend, MacAddr, Proto, RingKind, State, Vip, VipFlags, VipKey};
use libbpf_rs::MapHandle;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
const VIP_TCP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));
const VIP_QUIC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2));
const SERVER_ID: u32 = 1234;

fn reals(third: u8) -> Vec<Backend> {
    (1..=4)
        .map(|i| Backend {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, third, i)),
            weight: 1,
        })
        .collect()
}

fn state() -> State {
    let mut s = State {
        ring: RingKind::MaglevV2,
        ..State::default()
    };
    s.globals.gateway_mac = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
    s.globals.max_conn_rate = 1000;
    let vip = |addr, port, proto, quic, reals| Vip {
        key: VipKey { addr, port, proto },
        flags: VipFlags {
            quic,
            ..VipFlags::default()
        },
        reals,
    };
    s.vips = vec![
        vip(VIP_TCP, 80, Proto::Tcp, false, reals(1)),
        vip(VIP_QUIC, 443, Proto::Udp, true, reals(2)),
    ];
    s.server_ids
        .insert(SERVER_ID, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3)));
    s
}

/// A QUIC short-header payload whose connection id carries `id` (id version 1).
fn quic_payload(id: u32) -> Vec<u8> {
    let mut p = vec![
        0x40,
        0x40 | (id >> 10) as u8,
        (id >> 2) as u8,
        ((id & 3) << 6) as u8,
    ];
    p.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55]);
    p.extend_from_slice(&[0; 16]);
    p
}

fn stat(stats: &MapHandle, which: lb_stat) -> u64 {
    katran::views::stats::global_one(stats, which).expect("reading stats")
}

#[test]
fn server_id_traffic_does_not_use_up_the_new_flow_rate() {
    let name = "server_id_traffic_does_not_use_up_the_new_flow_rate";
    if !common::privileged(name) {
        return;
    }
    let options = LoadOptions {
        ring_size: 4099,
        max_vips: 8,
        max_reals: 16,
        // One table for all CPUs: the test thread may move between CPUs.
        forwarding_cpus: Some(Vec::new()),
        fallback_table_size: 4096,
        ..LoadOptions::default()
    };
    let dp = Dataplane::load(&options).expect("loading the balancer");
    apply(&mut dp.store().expect("map store"), &state()).expect("applying");
    let stats = dp.maps().expect("map handles").stats;

    let quic = packet(
        17,
        (CLIENT, 50000),
        (VIP_QUIC, 443),
        0,
        &quic_payload(SERVER_ID),
    );
    for _ in 0..2000 {
        let (verdict, _) = run_once(dp.balancer(), &quic).expect("test run");
        assert_eq!(verdict, XDP_TX);
    }
    assert_eq!(stat(&stats, lb_stat::STAT_QUIC_CID_ROUTED), 2000);

    let syn = tcp((CLIENT, 40000), (VIP_TCP, 80), TCP_SYN);
    let ack = tcp((CLIENT, 40000), (VIP_TCP, 80), TCP_ACK);
    let (verdict, _) = run_once(dp.balancer(), &syn).expect("test run");
    assert_eq!(verdict, XDP_TX);
    assert_eq!(
        stat(&stats, lb_stat::STAT_CONN_RATE_LIMITED),
        0,
        "an insert was refused as over the new-flow rate"
    );
    let hits = stat(&stats, lb_stat::STAT_CONN_HIT);
    let (verdict, _) = run_once(dp.balancer(), &ack).expect("test run");
    assert_eq!(verdict, XDP_TX);
    assert_eq!(
        stat(&stats, lb_stat::STAT_CONN_HIT),
        hits + 1,
        "the SYN's flow was not stored in the connection table"
    );
}
