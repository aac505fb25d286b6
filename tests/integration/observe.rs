//! Observability against the real dataplane: counters move by exactly the
//! packets sent, `explain` agrees with the program, and the Prometheus
//! endpoint parses and says what `katran stats` says. Needs root.

use crate::common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;

use common::frames::{self, TCP_ACK, TCP_SYN};
use common::{ip, vip};
use katran::apply::apply;
use katran::explain::{explain_cached, Flow, RingCache};
use katran::kernel::bpf::attach::{ensure_bpffs, pin};
use katran::kernel::bpf::loader::{Dataplane, LoadOptions};
use katran::kernel::testrun::{run_once, XDP_DROP, XDP_PASS, XDP_TX};
use katran::model::{MacAddr, Proto, RingKind, State, Vip, VipFlags};
use katran::views::stats::snapshot;
use std::os::fd::AsFd;

fn load() -> Dataplane {
    Dataplane::load(&LoadOptions {
        max_vips: 16,
        max_reals: 64,
        forwarding_cpus: Some(Vec::new()),
        ..LoadOptions::default()
    })
    .unwrap()
}

fn base_state() -> State {
    let mut s = State {
        ring: RingKind::MaglevV2,
        ..State::default()
    };
    s.globals.gateway_mac = MacAddr([2, 0, 0, 0, 0, 1]);
    s.vips = vec![
        vip(
            "10.200.0.1",
            80,
            Proto::Tcp,
            VipFlags::default(),
            &[("10.1.0.1", 1), ("10.1.0.2", 2), ("10.1.0.3", 3)],
        ),
        vip(
            "10.200.0.2",
            0,
            Proto::Tcp,
            VipFlags::default(),
            &[("10.1.0.4", 1), ("10.1.0.5", 1)],
        ),
        vip(
            "10.200.0.3",
            443,
            Proto::Tcp,
            VipFlags {
                no_src_port: true,
                ..VipFlags::default()
            },
            &[("10.1.0.1", 5), ("10.1.0.6", 1)],
        ),
        vip(
            "10.200.0.4",
            0,
            Proto::Tcp,
            VipFlags {
                dport_hash: true,
                ..VipFlags::default()
            },
            &[("10.1.0.7", 1), ("10.1.0.8", 1), ("10.1.0.9", 1)],
        ),
        vip(
            "fd00:200::1",
            80,
            Proto::Tcp,
            VipFlags::default(),
            &[("fd00:201::1", 1), ("fd00:201::2", 1), ("10.1.0.3", 2)],
        ),
    ];
    s
}

/// Every counter is read through `bpf::percpu`: each CPU's copy in CPU
/// order, summed over all of them, and an index the map lacks is `None`.
#[test]
fn per_cpu_copies_are_read_in_order_and_summed() {
    use katran::kernel::bpf::percpu;
    use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
    if !common::privileged("per-CPU reader") {
        return;
    }
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let map = MapHandle::create(MapType::PercpuArray, Some("kt_percpu"), 4, 8, 2, &opts)
        .expect("a per-CPU array");
    let cpus = libbpf_rs::num_possible_cpus().expect("CPUs") as u64;
    // CPU i holds i + 1 at index 1: every copy differs and counts
    let values: Vec<u64> = (1..=cpus).collect();
    let raw: Vec<Vec<u8>> = values.iter().map(|v| v.to_ne_bytes().to_vec()).collect();
    map.update_percpu(&1u32.to_ne_bytes(), &raw, MapFlags::ANY)
        .expect("writing the copies");
    let copies = percpu::copies::<u64>(&map, 1).expect("copies");
    assert_eq!(copies, Some(values.clone()));
    let sum = percpu::sum(&map, 1).expect("sum");
    assert_eq!(sum, Some(values.iter().sum()));
    assert_eq!(percpu::sum(&map, 0).expect("index 0"), Some(0));
    assert_eq!(percpu::sum(&map, 2).expect("no index 2"), None);
}

#[test]
fn counters_move_by_exactly_the_packets_sent() {
    if !common::privileged("counters move exactly") {
        return;
    }
    let dp = load();
    let mut store = dp.store().unwrap();
    let state = base_state();
    apply(&mut store, &state).unwrap();
    let before = snapshot(&store).unwrap();
    let vip = ip("10.200.0.1");
    let (mut bytes, n) = (0u64, 37u16);
    for i in 0..n {
        let f = frames::tcp((ip("192.168.5.5"), 30_000 + i), (vip, 80), TCP_SYN);
        bytes += (f.len() - 14) as u64;
        assert_eq!(run_once(dp.balancer(), &f).unwrap().0, XDP_TX);
    }
    for i in 0..n {
        let f = frames::tcp((ip("192.168.5.5"), 30_000 + i), (vip, 80), TCP_ACK);
        bytes += (f.len() - 14) as u64;
        assert_eq!(run_once(dp.balancer(), &f).unwrap().0, XDP_TX);
    }
    for i in 0..11u16 {
        let f = frames::tcp((ip("192.168.5.5"), 1000 + i), (ip("10.9.9.9"), 80), TCP_SYN);
        assert_eq!(run_once(dp.balancer(), &f).unwrap().0, XDP_PASS);
    }
    let mut frag = frames::tcp((ip("192.168.5.5"), 1), (vip, 80), TCP_ACK);
    frag[20] = 0x20; // MF
    for _ in 0..5 {
        assert_eq!(run_once(dp.balancer(), &frag).unwrap().0, XDP_DROP);
    }
    let after = snapshot(&store).unwrap();
    let d = |name: &str| after.global[name] - before.global[name];
    assert_eq!(d("xdp_tx"), 2 * u64::from(n));
    assert_eq!(d("xdp_pass"), 11);
    assert_eq!(d("xdp_drop"), 5);
    assert_eq!(d("drop_fragment"), 5);
    assert_eq!(d("conn_miss_tcp_syn"), u64::from(n));
    assert_eq!(d("conn_hit"), u64::from(n));
    assert_eq!(d("conn_miss_tcp_nonsyn"), 0);
    // Loaded with the shared table only: nothing falls back from a per-CPU
    // table, so nothing is counted as such.
    assert_eq!(d("fallback_table"), 0);
    let key = state.vips[0].key.to_string();
    assert_eq!(
        after.vips[&key].packets - before.vips[&key].packets,
        2 * u64::from(n)
    );
    assert_eq!(after.vips[&key].bytes - before.vips[&key].bytes, bytes);
    let real_packets: u64 = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
        .iter()
        .map(|r| after.reals[&ip(r)].packets - before.reals[&ip(r)].packets)
        .sum();
    assert_eq!(real_packets, 2 * u64::from(n));
    println!(
        "counters: {} frames sent, every counter moved by exactly its share",
        2 * n + 16
    );
}

#[test]
fn vip_real_counters_split_a_real_between_its_vips() {
    if !common::privileged("per-(VIP, real) counters") {
        return;
    }
    let dp = Dataplane::load(&LoadOptions {
        max_vips: 16,
        max_reals: 64,
        forwarding_cpus: Some(Vec::new()),
        vip_real_counters: true,
        ..LoadOptions::default()
    })
    .unwrap();
    let mut store = dp.store().unwrap();
    let state = base_state();
    apply(&mut store, &state).unwrap();
    // 10.1.0.1 serves both 10.200.0.1:80 and 10.200.0.3:443
    let sent = [("10.200.0.1", 80u16, 40u16), ("10.200.0.3", 443, 25)];
    for (vip, port, n) in sent {
        for i in 0..n {
            let client = ip(&format!("192.168.9.{}", i + 1));
            let f = frames::tcp((client, 3000 + i), (ip(vip), port), TCP_SYN);
            assert_eq!(run_once(dp.balancer(), &f).unwrap().0, XDP_TX);
        }
    }
    let snap = snapshot(&store).unwrap();
    let shared = ip("10.1.0.1");
    let pair = |v: &Vip, r: IpAddr| {
        snap.vip_reals
            .get(&(v.key.to_string(), r))
            .map_or(0, |t| t.packets)
    };
    let (v1, v3) = (&state.vips[0], &state.vips[2]);
    assert_eq!(
        pair(v1, shared) + pair(v3, shared),
        snap.reals[&shared].packets,
        "the real's own counter is the sum of its pairs"
    );
    assert!(
        pair(v1, shared) > 0 && pair(v3, shared) > 0,
        "{:?}",
        snap.vip_reals
    );
    for (v, (_, _, n)) in [v1, v3].into_iter().zip(sent) {
        let sum: u64 = v.reals.iter().map(|b| pair(v, b.addr)).sum();
        assert_eq!(sum, u64::from(n), "{}", v.key);
    }
    let text = katran::views::metrics::render(&katran::views::metrics::Inputs {
        snapshot: &snap,
        build: "test",
        live: None,
        daemon: None,
        conn: &[],
        announced: &[],
    })
    .unwrap();
    let line = format!(
        "katran_vip_real_packets_total{{vip=\"{}\",real=\"10.1.0.1\"}} {}",
        v3.key,
        pair(v3, shared)
    );
    assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    // without the setting nothing is counted per pair
    let plain = load();
    let mut plain_store = plain.store().unwrap();
    apply(&mut plain_store, &state).unwrap();
    let f = frames::tcp((ip("192.168.9.9"), 3000), (ip("10.200.0.1"), 80), TCP_SYN);
    run_once(plain.balancer(), &f).unwrap();
    assert!(snapshot(&plain_store).unwrap().vip_reals.is_empty());
}

/// A small deterministic generator (xorshift), to avoid a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn explain_agrees_with_the_dataplane_on_10000_flows() {
    if !common::privileged("explain agrees with the dataplane") {
        return;
    }
    let dp = load();
    let mut store = dp.store().unwrap();
    let state = base_state();
    apply(&mut store, &state).unwrap();
    let targets: [(&str, u16); 7] = [
        ("10.200.0.1", 80),
        ("10.200.0.2", 0),
        ("10.200.0.3", 443),
        ("10.200.0.4", 0),
        ("fd00:200::1", 80),
        ("10.200.0.1", 81), // no VIP on that port
        ("10.200.0.9", 80), // not a VIP
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut agree, mut forwarded) = (0, 0);
    let mut cache = RingCache::default();
    for _ in 0..10_000 {
        let (dst, port) = targets[(rng.next() % targets.len() as u64) as usize];
        let dst = ip(dst);
        let dport = if port == 0 {
            (rng.next() % 65535 + 1) as u16
        } else {
            port
        };
        let r = rng.next();
        let src = if dst.is_ipv4() {
            IpAddr::from([
                (r >> 8) as u8 | 1,
                (r >> 16) as u8,
                (r >> 24) as u8,
                (r >> 32) as u8,
            ])
        } else {
            IpAddr::from([
                0xfd,
                0,
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                (r >> 8) as u8,
                (r >> 16) as u8,
                (r >> 24) as u8,
                (r >> 32) as u8,
                0,
                1,
            ])
        };
        let sport = (r >> 40) as u16 | 1;
        let (verdict, out) = run_once(
            dp.balancer(),
            &frames::tcp((src, sport), (dst, dport), TCP_SYN),
        )
        .unwrap();
        let got = (verdict == XDP_TX).then(|| frames::outer_dst(&out).unwrap());
        let flow = Flow {
            src,
            sport,
            dst,
            dport,
            proto: Proto::Tcp,
        };
        let e = explain_cached(&state, 65537, flow, &mut cache);
        assert_eq!(
            got, e.real,
            "flow {src}:{sport} -> {dst}:{dport}: dataplane {got:?}, explain says\n{e}"
        );
        agree += 1;
        forwarded += usize::from(got.is_some());
    }
    println!("explain: {agree}/10000 flows agree with the dataplane ({forwarded} forwarded, the rest passed)");
}

#[test]
fn metrics_parse_and_match_stats() {
    if !common::privileged("metrics endpoint") {
        return;
    }
    let dp = load();
    let mut store = dp.store().unwrap();
    let state = base_state();
    apply(&mut store, &state).unwrap();
    for i in 0..23u16 {
        let f = frames::tcp(
            (ip("192.168.7.7"), 2000 + i),
            (ip("10.200.0.1"), 80),
            TCP_SYN,
        );
        run_once(dp.balancer(), &f).unwrap();
    }
    // the endpoint reads pinned maps, as the daemon's does
    let dir = PathBuf::from(format!(
        "/sys/fs/bpf/katran-test-metrics-{}",
        std::process::id()
    ));
    ensure_bpffs(&dir).unwrap();
    std::fs::create_dir_all(dir.join("maps")).unwrap();
    let maps = dp.maps().unwrap();
    for (name, h) in maps.named() {
        pin(h.as_fd(), &dir.join("maps").join(name)).unwrap();
    }
    let stamp_map = dp.stamp_map().unwrap();
    pin(stamp_map.as_fd(), &dir.join("maps").join("lb_stamp")).unwrap();
    let cleanup = scopeguard(dir.clone());
    // what a daemon would report: reloads, and one real failing its check
    let status_file = std::env::temp_dir().join(format!(
        "katran-test-{}-metrics-status.json",
        std::process::id()
    ));
    let _status_cleanup = scopeguard(status_file.clone());
    let mut daemon = katran::files::status_file::DaemonStatus {
        reloads_ok: 3,
        reloads_failed: 1,
        generation: 5,
        ..Default::default()
    };
    let mut failing = katran::daemon::health::tracker::RealHealth::new(0);
    failing.healthy = false;
    daemon
        .health
        .push(("10.200.0.1:80/tcp".into(), "10.1.0.2".into(), failing));
    daemon.write(&status_file).unwrap();
    let addr = katran::views::metrics::serve(
        "127.0.0.1:0".parse().unwrap(),
        dir.clone(),
        Some(status_file.clone()),
    )
    .unwrap();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    let stats = serde_json::to_value(snapshot(&store).unwrap()).unwrap();
    let body = resp.split("\r\n\r\n").nth(1).expect("a body");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    let values = |name: &str, want: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && want.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v)
                | prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no sample {name} {want:?} in\n{body}"))
    };
    let value = |name: &str, label: Option<(&str, &str)>| values(name, label.as_slice());
    let mut checked = 0;
    for (name, v) in stats["global"].as_object().unwrap() {
        // verdicts and drops are one family each, with a label
        let got = if let Some(action) = name.strip_prefix("xdp_") {
            value("katran_xdp_verdicts_total", Some(("action", action)))
        } else if let Some(reason) = name.strip_prefix("drop_") {
            value("katran_drops_total", Some(("reason", reason)))
        } else {
            value(&format!("katran_{name}_total"), None)
        };
        assert_eq!(got, v.as_u64().unwrap() as f64, "{name}");
        checked += 1;
    }
    assert!(
        !body.contains("katran_drop_fragment") && !body.contains("katran_xdp_tx"),
        "verdicts and drops are labels, not names: {body}"
    );
    // each real of each VIP: weight from the file, effective weight, health
    for v in &state.vips {
        for r in &v.reals {
            let pair = [("vip", v.key.to_string()), ("real", r.addr.to_string())];
            let pair = [
                (pair[0].0, pair[0].1.as_str()),
                (pair[1].0, pair[1].1.as_str()),
            ];
            let failing = pair[0].1 == "10.200.0.1:80/tcp" && pair[1].1 == "10.1.0.2";
            assert_eq!(values("katran_real_weight", &pair), f64::from(r.weight));
            assert_eq!(
                values("katran_real_effective_weight", &pair),
                f64::from(r.weight)
            );
            assert_eq!(
                values("katran_real_healthy", &pair),
                if failing { 0.0 } else { 1.0 },
                "{pair:?}"
            );
            checked += 3;
        }
    }
    assert_eq!(values("katran_reloads_total", &[("result", "ok")]), 3.0);
    assert_eq!(values("katran_reloads_total", &[("result", "failed")]), 1.0);
    assert_eq!(value("katran_config_generation", None), 5.0);
    let stamp = katran::kernel::bpf::STAMP;
    assert_eq!(
        values(
            "katran_build_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("dataplane", stamp)]
        ),
        1.0
    );
    // loaded with the shared table only: the 23 SYNs are 23 flows in it
    assert_eq!(
        value("katran_conn_table_entries", Some(("table", "shared"))),
        23.0
    );
    assert_eq!(
        value("katran_conn_table_capacity", Some(("table", "shared"))),
        65536.0
    );
    assert!(
        !body.contains("table=\"per-cpu\""),
        "no per-CPU table: {body}"
    );
    for (vip, t) in stats["vips"].as_object().unwrap() {
        assert_eq!(
            value("katran_vip_packets_total", Some(("vip", vip))),
            t["packets"].as_u64().unwrap() as f64
        );
        assert_eq!(
            value("katran_vip_bytes_total", Some(("vip", vip))),
            t["bytes"].as_u64().unwrap() as f64
        );
        checked += 2;
    }
    for (real, t) in stats["reals"].as_object().unwrap() {
        assert_eq!(
            value("katran_real_packets_total", Some(("real", real))),
            t["packets"].as_u64().unwrap() as f64
        );
        checked += 1;
    }
    assert!(
        body.contains("# HELP katran_xdp_verdicts_total"),
        "HELP lines present"
    );
    assert_eq!(
        value("katran_xdp_verdicts_total", Some(("action", "tx"))),
        23.0
    );
    assert_eq!(value("katran_dataplane_pinned", None), 1.0);
    assert!(
        resp.contains("Content-Type: text/plain; version=0.0.4"),
        "{resp}"
    );
    let request = |head: &str| -> String {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(head.as_bytes()).unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).unwrap();
        resp
    };
    // OpenMetrics to a client that asks for it, as Prometheus does
    let om = request("GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n\r\n");
    assert!(
        om.contains("Content-Type: application/openmetrics-text; version=1.0.0")
            && om.ends_with("# EOF\n"),
        "{om}"
    );
    // HEAD: the headers only; `/`: where the metrics are
    let head = request("HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert!(request("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    // Prometheus's own checker accepts the text format, HELP on every family
    if common::tools("metrics: promtool", &["promtool"]) {
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(cleanup);
    // the pins gone (katran down, moved): still an answer, and it says so
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("\nkatran_dataplane_pinned 0\n"),
        "no dataplane, yet: {resp}"
    );
    println!(
        "metrics: {} samples parsed, {checked} compared with stats, all equal",
        scrape.samples.len()
    );
}

/// Removes the test's pins even when an assertion fails.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn scopeguard(p: PathBuf) -> Cleanup {
    Cleanup(p)
}
