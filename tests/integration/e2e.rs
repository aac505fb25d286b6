//! End-to-end scenarios on a namespace testbed (see `testbed/mod.rs`): real
//! TCP connections from a client, through the router and the XDP balancer,
//! to reals that decapsulate with XDP and answer the client directly.
//! Needs root, `python3` and `curl`; prints `skipped: ...` otherwise.

use crate::common;
use crate::testbed;

use std::net::IpAddr;

use katran::kernel::bpf::abi::types::lb_stat;
use katran::model::{Backend, Encap, Proto, RingKind, State, Vip, VipFlags, VipKey};
use testbed::http::{get_many, serve_names};
use testbed::{ip, Testbed, VIP4, VIP6};

/// Root and the tools the scenarios run; prints why not otherwise.
fn can_run(name: &str) -> bool {
    let name = format!("e2e {name}");
    if !common::privileged(&name) {
        return false;
    }
    common::tools(&name, &["python3", "curl", "ip", "ethtool"])
}

fn vip(tb: &Testbed, addr: &str, reals: &[(IpAddr, u32)]) -> State {
    let mut s = tb.state();
    s.ring = RingKind::MaglevV2;
    s.vips.push(Vip {
        key: VipKey {
            addr: ip(addr),
            port: 80,
            proto: Proto::Tcp,
        },
        flags: VipFlags::default(),
        reals: reals
            .iter()
            .map(|&(addr, weight)| Backend { addr, weight })
            .collect(),
    });
    s
}

/// The balancer's XDP_TX counter, summed over CPUs.
fn balancer_tx(tb: &Testbed) -> u64 {
    let maps = tb.dataplane().maps().expect("balancer maps");
    katran::views::stats::global_one(&maps.stats, lb_stat::STAT_XDP_TX).expect("reading stats")
}

/// `n` requests with curl (ephemeral source ports); the bodies.
fn curl(tb: &Testbed, vip: &str, n: usize) -> Vec<String> {
    let url = match ip(vip) {
        IpAddr::V4(a) => format!("http://{a}:80/"),
        IpAddr::V6(a) => format!("http://[{a}]:80/"),
    };
    let mut args = vec!["curl", "-sS", "-g", "--max-time", "5", "-w", "\\n"];
    args.extend(std::iter::repeat_n(url.as_str(), n));
    let out = tb.run(&tb.clients[0].ns, &args).expect("curl");
    out.lines().map(str::to_string).collect()
}

#[test]
fn e2e_http_weighted_direct_return() {
    if !can_run("http weighted direct return") {
        return;
    }
    let t0 = std::time::Instant::now();
    let mut tb = Testbed::builder().reals(3).build().expect("testbed");
    let reals: Vec<(IpAddr, u32)> = tb
        .reals
        .iter()
        .zip([1, 1, 2])
        .map(|(r, w)| (IpAddr::V4(r.v4), w))
        .collect();
    tb.apply(&vip(&tb, VIP4, &reals)).expect("apply");
    serve_names(&mut tb, 80).expect("servers");
    let built = t0.elapsed();

    let client = tb.clients[0].clone();
    let lb = tb.lb.clone();
    let c0 = tb.counters(&client.ns, &client.iface).expect("counters");
    let l0 = tb.counters(&lb.ns, &lb.iface).expect("counters");
    let r0 = tb.counters(&tb.router, "lb").expect("counters");
    let x0 = balancer_tx(&tb);

    const N: usize = 300;
    let t1 = std::time::Instant::now();
    let tally = get_many(&tb, 0, ip(VIP4), 80, 20000, N).expect("client");
    let ran = t1.elapsed();

    let c = tb.counters(&client.ns, &client.iface).expect("counters") - c0;
    let l = tb.counters(&lb.ns, &lb.iface).expect("counters") - l0;
    let r = tb.counters(&tb.router, "lb").expect("counters") - r0;
    let x = balancer_tx(&tb) - x0;
    println!(
        "e2e http: {N} requests in {ran:?} (testbed up in {built:?}, LB XDP {}); per real {:?}",
        tb.lb_attached, tally.by_real
    );
    println!(
        "  client eth0 {c:?}\n  lb eth0     {l:?}\n  router→lb   {r:?}\n  balancer XDP_TX +{x}"
    );

    assert!(
        tally.errors.is_empty(),
        "failed requests: {:?}",
        tally.errors
    );
    let weights = [1.0, 1.0, 2.0];
    for (i, w) in weights.iter().enumerate() {
        let got = *tally.by_real.get(&format!("real{i}")).unwrap_or(&0) as f64 * 100.0 / N as f64;
        let want = w * 100.0 / 4.0;
        assert!(
            (got - want).abs() <= 10.0,
            "real{i} got {got:.1}% of requests, weight share {want:.1}% (allowed ±10 percentage points)"
        );
    }

    // Direct server return. Everything the client sent (SYN, ACK, request,
    // ACKs, FIN: ~5 packets a connection) crossed the balancer, which sent
    // each packet back out encapsulated; the replies (SYN-ACK, response,
    // FIN, ...) reached the client without crossing it. Slack: a few
    // ARP/neighbour packets on either link.
    let slack = 20;
    assert!(
        c.tx_packets >= 4 * N as u64,
        "client sent {} packets",
        c.tx_packets
    );
    assert!(
        c.rx_packets >= 3 * N as u64,
        "client received {} packets",
        c.rx_packets
    );
    assert!(
        l.rx_packets.abs_diff(c.tx_packets) <= slack,
        "the LB received {} packets, the client sent {}: only requests may cross the LB",
        l.rx_packets,
        c.tx_packets
    );
    assert!(
        x.abs_diff(c.tx_packets) <= slack,
        "the balancer forwarded {x} packets, the client sent {}",
        c.tx_packets
    );
    assert!(
        l.rx_packets < c.tx_packets + c.rx_packets / 2,
        "replies crossed the LB: it received {} packets for {} sent + {} received by the client",
        l.rx_packets,
        c.tx_packets,
        c.rx_packets
    );
    // What came back from the LB is the requests, each 20 bytes bigger
    // (outer IPv4 header): the router's counters of the LB link.
    assert!(
        r.rx_packets.abs_diff(x) <= slack,
        "router got {} frames from the LB, balancer sent {x}",
        r.rx_packets
    );
    let encapsulated = c.tx_bytes + 20 * x;
    assert!(
        r.rx_bytes.abs_diff(encapsulated) <= slack * 100,
        "router got {} bytes from the LB; the client's requests encapsulated are {encapsulated}",
        r.rx_bytes
    );
    // The replies came from the VIP: every connection to it completed, and a
    // TCP socket connected to the VIP accepts segments from the VIP only.
    let decap: u64 = (0..3)
        .map(|i| tb.decap_stats(i).expect("decap stats").v4_in_v4)
        .sum();
    assert!(
        decap.abs_diff(x) <= slack,
        "reals decapsulated {decap}, balancer sent {x}"
    );
}

#[test]
fn e2e_ipv6_vip_ipv6_reals() {
    if !can_run("ipv6 vip ipv6 reals") {
        return;
    }
    let mut tb = Testbed::builder().reals(2).build().expect("testbed");
    let reals: Vec<(IpAddr, u32)> = tb.reals.iter().map(|r| (IpAddr::V6(r.v6), 1)).collect();
    tb.apply(&vip(&tb, VIP6, &reals)).expect("apply");
    serve_names(&mut tb, 80).expect("servers");
    let bodies = curl(&tb, VIP6, 6);
    let tally = get_many(&tb, 0, ip(VIP6), 80, 21000, 20).expect("client");
    println!("e2e ipv6/ipv6: curl {bodies:?}; python {:?}", tally.by_real);
    assert_eq!(bodies.len(), 6, "curl: {bodies:?}");
    assert!(
        bodies.iter().all(|b| b.starts_with("real")),
        "curl: {bodies:?}"
    );
    assert!(tally.errors.is_empty(), "failed: {:?}", tally.errors);
    let v6_in_v6: u64 = (0..2)
        .map(|i| tb.decap_stats(i).expect("stats").v6_in_v6)
        .sum();
    assert!(
        v6_in_v6 >= 26 * 3,
        "decapsulated {v6_in_v6} IPv6-in-IPv6 packets"
    );
}

#[test]
fn e2e_ipv4_vip_ipv6_reals_and_gue() {
    if !can_run("ipv4 vip ipv6 reals") {
        return;
    }
    let mut tb = Testbed::builder().reals(2).build().expect("testbed");
    let reals: Vec<(IpAddr, u32)> = tb.reals.iter().map(|r| (IpAddr::V6(r.v6), 1)).collect();
    tb.apply(&vip(&tb, VIP4, &reals)).expect("apply");
    serve_names(&mut tb, 80).expect("servers");
    let bodies = curl(&tb, VIP4, 6);
    println!("e2e ipv4-in-ipv6: curl {bodies:?}");
    assert_eq!(bodies.len(), 6, "curl: {bodies:?}");
    assert!(
        bodies.iter().all(|b| b.starts_with("real")),
        "curl: {bodies:?}"
    );
    let v4_in_v6: u64 = (0..2)
        .map(|i| tb.decap_stats(i).expect("stats").v4_in_v6)
        .sum();
    assert!(
        v4_in_v6 >= 6 * 3,
        "decapsulated {v4_in_v6} IPv4-in-IPv6 packets"
    );

    // The same VIP over GUE (IPv6 outer), then an IPv6 VIP over GUE.
    let mut s = vip(&tb, VIP4, &reals);
    s.globals.encap = Encap::Gue {
        port: katran::kernel::real::DEFAULT_GUE_PORT,
        src_v4: tb.lb.v4,
        src_v6: tb.lb.v6,
    };
    let v4_reals: Vec<(IpAddr, u32)> = tb.reals.iter().map(|r| (IpAddr::V4(r.v4), 1)).collect();
    s.vips.extend(vip(&tb, VIP6, &v4_reals).vips);
    tb.apply(&s).expect("apply gue");
    let b4 = curl(&tb, VIP4, 3);
    let b6 = curl(&tb, VIP6, 3);
    println!("e2e gue: curl v4 {b4:?} v6 {b6:?}");
    assert!(
        b4.len() == 3 && b4.iter().all(|b| b.starts_with("real")),
        "{b4:?}"
    );
    assert!(
        b6.len() == 3 && b6.iter().all(|b| b.starts_with("real")),
        "{b6:?}"
    );
    let (g4, g6): (u64, u64) = (0..2)
        .map(|i| tb.decap_stats(i).expect("stats"))
        .fold((0, 0), |(a, b), s| (a + s.gue_v4, b + s.gue_v6));
    assert!(g4 >= 9 && g6 >= 9, "GUE decapsulated: {g4} IPv4, {g6} IPv6");
}
