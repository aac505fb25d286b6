//! The real-server library functions on a throwaway pair of namespaces:
//! attach pins the decapsulation link and counters, refuses a second
//! attach, counts traffic, detaches cleanly; setup puts the VIP on `lo`.

use crate::common;
use crate::testbed;

use std::path::PathBuf;

use katran::config::XdpMode;
use katran::kernel::real;
use testbed::netns;

/// Two namespaces joined by a veth (`va` in the first, `vb` in the second),
/// 10.0.0.1 and 10.0.0.2; deleted on drop.
struct Pair(String, String);

impl Pair {
    fn new() -> Pair {
        netns::delete_stale();
        let tag = netns::unique_tag();
        let p = Pair(format!("{tag}-a"), format!("{tag}-b"));
        netns::add(&p.0).expect("netns");
        netns::add(&p.1).expect("netns");
        netns::ip_batch(
            &p.0,
            &[
                format!("link add name va type veth peer name vb netns {}", p.1),
                "addr add 10.0.0.1/24 dev va".into(),
                "link set dev va up".into(),
            ],
        )
        .expect("veth");
        netns::ip_batch(
            &p.1,
            &[
                "addr add 10.0.0.2/24 dev vb".into(),
                "link set dev vb up".into(),
            ],
        )
        .expect("veth");
        p
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        netns::delete(&self.0);
        netns::delete(&self.1);
    }
}

struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn real_attach_stats_detach() {
    if !common::privileged("real attach") {
        return;
    }
    let pair = Pair::new();
    let pins = PinDir(PathBuf::from(format!("/sys/fs/bpf/katran-test-{}", pair.0)));
    let dir = pins.0.clone();
    let ns = pair.0.clone();

    let how = netns::within(&ns, || real::attach("va", XdpMode::Native, &dir, 9886))
        .expect("first attach");
    println!("real: decap attached ({how})");
    assert!(dir.join("real/va/link").exists() && dir.join("real/va/stats").exists());
    let again = netns::within(&ns, || real::attach("va", XdpMode::Native, &dir, 9886))
        .expect_err("second attach must fail");
    assert!(
        format!("{again:#}").contains("already attached"),
        "{again:#}"
    );

    // Traffic toward `va` goes through the program and is passed untouched.
    netns::within(&pair.1, || {
        let sock = std::net::UdpSocket::bind("10.0.0.2:0")?;
        for _ in 0..3 {
            sock.send_to(b"hello", "10.0.0.1:9")?;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    })
    .expect("sending to va");
    let s = real::stats("va", &dir).expect("stats");
    println!("real: counters after 3 datagrams\n{s}");
    assert!(s.passed >= 2, "{s}");
    assert_eq!(s.decapsulated() + s.dropped_malformed, 0, "{s}");

    real::detach("va", &dir).expect("detach");
    assert!(!dir.join("real/va").exists(), "pins left behind");
    let e = real::detach("va", &dir).expect_err("second detach must fail");
    assert!(format!("{e:#}").contains("not attached"), "{e:#}");
    assert!(real::stats("va", &dir).is_err());
    let shown = netns::exec(&ns, &["ip", "link", "show", "dev", "va"]).expect("ip link");
    assert!(!shown.contains("xdp"), "still attached: {shown}");
    assert!(real::attach("../x", XdpMode::Native, &dir, 9886).is_err());
}

#[test]
fn real_setup_is_idempotent() {
    if !common::privileged("real setup") {
        return;
    }
    let pair = Pair::new();
    for _ in 0..2 {
        netns::within(&pair.0, || {
            real::setup("10.200.0.10".parse()?)?;
            real::setup("fd00:200::10".parse()?)
        })
        .expect("setup");
    }
    let lo = netns::exec(&pair.0, &["ip", "addr", "show", "dev", "lo"]).expect("ip addr");
    // a new namespace's lo starts down
    assert!(lo.contains(",UP"), "lo left down: {lo}");
    assert_eq!(lo.matches("10.200.0.10/32").count(), 1, "{lo}");
    assert_eq!(lo.matches("fd00:200::10/128").count(), 1, "{lo}");
    for conf in ["all", "default", "lo", "va"] {
        let path = format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter");
        let v = netns::exec(&pair.0, &["cat", &path]).expect("rp_filter");
        assert_eq!(v.trim(), "0", "{path}");
    }
    let e = netns::within(&pair.0, || {
        katran::kernel::netlink::replace_address("nosuch0", "10.200.0.10".parse()?, 32)
    })
    .expect_err("no such interface");
    let e = format!("{e:#}");
    assert!(
        e.contains("10.200.0.10/32 on nosuch0") && e.contains("os error 19"),
        "{e}"
    );
}
