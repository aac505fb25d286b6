//! Replacing the running dataplane under traffic, on the namespace testbed:
//! another build of the program (the pinned stamp made foreign), the
//! connection table per-CPU -> shared -> per-CPU, and bigger
//! `conn_table_size`, `max_vips` and `ring_size` at once. Each replacement
//! also moves ring slots (weights change), so an established connection
//! keeps its real only if its connection-table entry was carried over.
//!
//! During each: long-lived TCP connections must keep their real and see no
//! reset, a client opening a new connection every few milliseconds must see
//! no failure, and the balancer's interface must never be without an XDP
//! program (sampled continuously). Afterwards the new sizes are read back
//! from the maps. An `xdp_mode` change is measured, not asserted gapless:
//! it cannot be an atomic link update.
//!
//! A second test injects a failure after each step of a replacement and
//! checks the old dataplane is still pinned, attached and forwarding.
//!
//! Needs root, `python3`, `ip`, `ethtool` and `nsenter`.

use crate::common;
use crate::testbed;

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use katran::kernel::bpf::attach;
use katran::kernel::live::{self, Pins};
use katran::plan::host::LoadShape;
use testbed::daemon::{serve_echo, vip_table, Daemon, EchoConn, Proc, UdpStream};
use testbed::http::serve_names;
use testbed::{ip, netns, Testbed, VIP4};

/// One scenario at a time: they share the machine's two CPUs.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn can_run(name: &str) -> bool {
    let name = format!("replace {name}");
    common::privileged(&name) && common::tools(&name, &["python3", "ip", "ethtool", "nsenter"])
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `LOOP SRC DST PORT FIRST_SPORT`: one GET every 3 ms, each from the next
/// source port, until standard input closes; then prints
/// `done OK ERRORS [first error]`.
const NEW_CONNECTIONS: &str = r#"
import select, socket, sys, time
src, dst, port, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ok, errors, first = 0, 0, ""
print("started", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.bind((src, sport))
            s.connect((dst, port))
            s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        if data.startswith(b"HTTP/1.0 200"):
            ok += 1
        else:
            errors += 1
            first = first or "bad answer " + repr(data[:30])
    except Exception as e:
        errors += 1
        first = first or repr(e)
    sport += 1
    time.sleep(0.003)
print("done", ok, errors, first, flush=True)
"#;

/// A client opening new connections to VIP4:80 until stopped.
struct NewConnections(Proc);

impl NewConnections {
    fn start(tb: &Testbed, first_sport: u16) -> NewConnections {
        let c = &tb.clients[0];
        let p = Proc::python(
            &c.ns,
            NEW_CONNECTIONS,
            &[&c.v4.to_string(), VIP4, "80", &first_sport.to_string()],
        )
        .expect("new-connection client");
        assert_eq!(p.line(Duration::from_secs(10)).expect("start"), "started");
        NewConnections(p)
    }

    /// (successful, failed, first failure)
    fn stop(mut self) -> (u64, u64, String) {
        self.0.close_stdin();
        let line = self.0.line(Duration::from_secs(30)).expect("client report");
        let mut f = line.splitn(4, ' ');
        assert_eq!(f.next(), Some("done"), "{line}");
        let n = |s: Option<&str>| s.and_then(|s| s.parse().ok()).expect("a count");
        (n(f.next()), n(f.next()), f.next().unwrap_or("").to_string())
    }
}

/// Samples the XDP program on an interface of a namespace until stopped.
struct XdpWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, u64)>,
}

impl XdpWatch {
    fn start(ns: &str, iface: &str) -> XdpWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, ns, iface) = (stop.clone(), ns.to_string(), iface.to_string());
        let thread = std::thread::spawn(move || {
            let file = File::open(format!("/run/netns/{ns}")).expect("namespace");
            // SAFETY: a namespace descriptor; affects this thread only.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let idx = attach::ifindex(&iface).expect("ifindex");
            let (mut samples, mut absent) = (0u64, 0u64);
            while !flag.load(Ordering::Relaxed) {
                samples += 1;
                if attach::query(idx).expect("query").attached().is_none() {
                    absent += 1;
                }
            }
            (samples, absent)
        });
        XdpWatch { stop, thread }
    }

    /// (samples, samples without a program)
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("watch thread")
    }
}

/// Makes the pinned dataplane look like another build's.
fn forge_stamp(pins: &Pins) {
    let map = libbpf_rs::MapHandle::from_pinned_path(pins.stamp()).expect("lb_stamp");
    libbpf_rs::MapCore::update(
        &map,
        &0u32.to_ne_bytes(),
        &0x0bad_0bad_u64.to_ne_bytes(),
        libbpf_rs::MapFlags::ANY,
    )
    .expect("forging the stamp");
}

struct Bed {
    tb: Testbed,
    d: Daemon,
    reals: Vec<IpAddr>,
    conns: Vec<(EchoConn, String)>,
    /// The next source port of new connections: below the ephemeral range
    /// the long-lived connections and UDP streams draw from.
    sport: u16,
}

/// The dataplane table with these load-time settings. Tables are sized as
/// in production (65,536 entries): the per-CPU tables are 4-way sets, and
/// the thousands of short connections these tests open would otherwise
/// evict an idle long-lived connection's entry before the replacement.
fn dataplane(d: &Daemon, conn_table: &str, size: u32, vips: u32, ring: u32, mode: &str) -> String {
    d.dataplane_table()
        .replace(
            "conn_table_size = 4096",
            &format!("conn_table_size = {size}"),
        )
        .replace("max_vips = 8", &format!("max_vips = {vips}"))
        .replace("ring_size = 4099", &format!("ring_size = {ring}"))
        .replace("xdp_mode = \"native\"", &format!("xdp_mode = \"{mode}\""))
        + &format!("conn_table = \"{conn_table}\"\n")
}

impl Bed {
    fn new() -> Bed {
        let mut tb = Testbed::builder()
            .reals(3)
            .attach_balancer(false)
            .build()
            .expect("testbed");
        let d = Daemon::new(&tb).expect("pins and files");
        serve_names(&mut tb, 80).expect("http servers");
        serve_echo(&mut tb, 7000).expect("echo servers");
        let reals = tb.reals.iter().map(|r| IpAddr::V4(r.v4)).collect();
        Bed {
            tb,
            d,
            reals,
            conns: Vec::new(),
            sport: 10000,
        }
    }

    fn file(&self, head: &str, weights: &[u32]) -> String {
        let w: Vec<(IpAddr, u32)> = self
            .reals
            .iter()
            .copied()
            .zip(weights.iter().copied())
            .collect();
        format!(
            "{head}{}{}{}",
            vip_table("10.200.0.10:80", "tcp", &w),
            vip_table("10.200.0.10:7000", "tcp", &w),
            vip_table("10.200.0.10:9000", "udp", &w)
        )
    }

    fn apply(&self, text: &str) -> String {
        std::fs::write(&self.d.config, text).expect("write");
        let out = self
            .d
            .katran_in_lb(&["apply", "-c", &self.d.config.to_string_lossy()])
            .expect("katran apply")
            .wait_with_output()
            .expect("apply");
        assert!(out.status.success(), "{}", text_of(&out));
        text_of(&out)
    }

    fn connect(&mut self, n: usize) {
        for _ in 0..n {
            let mut c = EchoConn::connect(&self.tb, ip(VIP4), 7000).expect("connect");
            let real = c.ping().expect("echo");
            self.conns.push((c, real));
        }
    }

    /// Every long-lived connection still answers, from the same real.
    fn conns_intact(&mut self, step: &str) {
        let client = self.tb.clients[0].v4;
        for (c, real) in &mut self.conns {
            let explain = self
                .d
                .katran(&[
                    "explain",
                    &format!("{client}:{}", c.sport),
                    "10.200.0.10:7000/tcp",
                    "--live",
                    "--pin-dir",
                    &self.d.pin_dir.to_string_lossy(),
                ])
                .map(|o| text(&o))
                .unwrap_or_default();
            let now = c.ping().unwrap_or_else(|e| {
                panic!(
                    "{step}: connection from port {} broke: {e:#}\n{explain}",
                    c.sport
                )
            });
            assert_eq!(&now, real, "{step}: connection from port {} moved", c.sport);
        }
    }

    /// Applies `text` (a replacement) under traffic and checks everything.
    fn replace(&mut self, step: &str, text: &str, gapless: bool) -> String {
        let clients = NewConnections::start(&self.tb, self.sport);
        self.sport += 2000;
        let watch = XdpWatch::start(&self.tb.lb.ns, "eth0");
        let out = self.apply(text);
        let (samples, absent) = watch.stop();
        let (ok, failed, first) = clients.stop();
        println!(
            "  {step}: {ok} new connections ok, {failed} failed; XDP program absent in \
             {absent} of {samples} samples; {}",
            out.lines()
                .find(|l| l.starts_with("replaced"))
                .unwrap_or("?")
        );
        assert!(out.contains("replaced the dataplane"), "{step}: {out}");
        if gapless {
            assert_eq!(absent, 0, "{step}: the interface was without XDP");
            assert_eq!(failed, 0, "{step}: first failure: {first}");
        }
        assert!(samples > 0 && ok > 0, "{step}: nothing measured");
        self.conns_intact(step);
        out
    }

    fn shape(&self) -> LoadShape {
        live::open(&Pins::new(&self.d.pin_dir))
            .expect("open")
            .expect("pinned")
            .load_shape()
            .expect("shape")
    }
}

fn text_of(out: &std::process::Output) -> String {
    text(out)
}

#[test]
fn replacing_the_dataplane_under_traffic_drops_nothing() {
    let _serial = serial();
    if !can_run("under traffic") {
        return;
    }
    let mut b = Bed::new();
    let cpus = libbpf_rs::num_possible_cpus().expect("cpus") as u32;
    // Generic XDP steered to one CPU, as a NIC's receive hashing keeps a
    // flow on one CPU: the tables are per CPU, and on a veth a native
    // program runs wherever the queue's poll started (see e2e_mqtt.rs).
    b.tb.steer_balancer_to_cpu(0).expect("steering");
    let head = |b: &Bed, table: &str, size: u32, vips: u32, ring: u32| {
        dataplane(&b.d, table, size, vips, ring, "generic")
    };
    b.apply(&b.file(&head(&b, "per-cpu", 65536, 8, 4099), &[1, 1, 1]));
    b.connect(12);
    let spread: std::collections::BTreeSet<&String> = b.conns.iter().map(|c| &c.1).collect();
    println!("  12 long-lived connections on {spread:?}");

    // another build of the program
    forge_stamp(&Pins::new(&b.d.pin_dir));
    let dry =
        b.d.katran_in_lb(&["apply", "--dry-run", "-c", &b.d.config.to_string_lossy()])
            .expect("dry-run")
            .wait_with_output()
            .expect("dry-run");
    let dry = text(&dry);
    assert!(
        dry.contains("! replace dataplane: program: pinned build 000000000bad0bad"),
        "{dry}"
    );
    assert!(
        dry.contains("connection-table entries are carried over"),
        "{dry}"
    );
    let file = b.file(&head(&b, "per-cpu", 65536, 8, 4099), &[1, 1, 4]);
    b.replace("another build", &file, true);
    assert_eq!(
        live::stamp(&Pins::new(&b.d.pin_dir))
            .expect("stamp")
            .as_deref(),
        Some(katran::kernel::bpf::STAMP)
    );

    let file = b.file(&head(&b, "shared", 65536, 8, 4099), &[4, 1, 1]);
    b.replace("per-cpu -> shared", &file, true);
    assert_eq!(b.shape().per_cpu_tables, None);

    let file = b.file(&head(&b, "per-cpu", 65536, 8, 4099), &[1, 4, 1]);
    b.replace("shared -> per-cpu", &file, true);
    assert_eq!(b.shape().per_cpu_tables.map(|t| t.len() as u32), Some(cpus));

    let file = b.file(&head(&b, "per-cpu", 131072, 16, 4099), &[1, 1, 1]);
    b.replace("grow conn_table_size and max_vips", &file, true);
    let s = b.shape();
    assert_eq!((s.conn_table_size, s.max_vips), (131_072, 16), "{s:?}");

    // A new ring sends flows elsewhere: a connection the old program opens
    // in the moments of the switch is kept by the old ring, lent to the
    // new program until every connection is carried over.
    let file = b.file(&head(&b, "per-cpu", 131072, 16, 8191), &[1, 1, 1]);
    b.replace("grow ring_size", &file, true);
    assert_eq!(b.shape().ring_size, 8191);

    // generic -> native: a detach and an attach; the gap is measured (with
    // one shared table, which CPU runs the native program does not matter)
    let mut stream =
        UdpStream::start(&b.tb, ip(VIP4), 9000, 2000, 16, &b.d.dir).expect("udp stream");
    let _ = stream.wait_flowing(200);
    let file = b.file(
        &dataplane(&b.d, "shared", 131072, 16, 8191, "native"),
        &[1, 1, 1],
    );
    b.replace("xdp_mode generic -> native, shared table", &file, false);
    let _ = stream.wait_flowing(200);
    let rep = stream.finish().expect("udp report");
    println!(
        "  xdp_mode change: UDP {} sent, {} received, lost {:?}",
        rep.sent, rep.received, rep.lost
    );
}

#[test]
fn a_failure_at_any_step_of_a_replacement_leaves_the_old_dataplane_forwarding() {
    let _serial = serial();
    if !can_run("failures") {
        return;
    }
    use katran::apply::reconcile::replace::Step;
    use katran::apply::reconcile::{commit_checked, prepare, Purpose, Verdicts};
    let mut b = Bed::new();
    // two more interfaces in the LB: one to detach, one to attach
    for cmd in [
        "link add tvx type veth peer name tvy",
        "link set tvx up",
        "link set tvy up",
    ] {
        let mut args = vec!["ip", "-n", b.tb.lb.ns.as_str()];
        args.extend(cmd.split(' '));
        assert!(std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .expect("ip")
            .success());
    }
    b.tb.steer_balancer_to_cpu(0).expect("steering");
    let head = dataplane(&b.d, "per-cpu", 65536, 8, 4099, "generic");
    let before = head.replace(
        "interfaces = [\"eth0\"]",
        "interfaces = [\"eth0\", \"tvy\"]",
    );
    let after = head.replace(
        "interfaces = [\"eth0\"]",
        "interfaces = [\"eth0\", \"tvx\"]",
    );
    assert_ne!(
        before, head,
        "the interface list is where the test expects it"
    );
    b.apply(&b.file(&before, &[1, 1, 1]));
    b.connect(6);
    let pins = Pins::new(&b.d.pin_dir);
    let ns = b.tb.lb.ns.clone();
    let prog_on = |iface: &str| -> Option<u32> {
        netns::within(&ns, || {
            Ok(attach::query(attach::ifindex(iface)?)?
                .attached()
                .map(|(id, _)| id))
        })
        .ok()
        .flatten()
    };
    let old = live::prog_id(&pins).expect("prog").expect("pinned");
    let cfg = katran::config::parse(&b.file(&after, &[1, 1, 5]), "k.toml")
        .expect("file")
        .config;
    let mut reached = Vec::new();
    for target in Step::ALL {
        forge_stamp(&pins);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (cfg, seen2) = (cfg.clone(), seen.clone());
        let result = netns::within(&ns, move || {
            let p = prepare(cfg, Verdicts::KeepLive, Purpose::Apply)?;
            commit_checked(p, &mut |s| {
                seen2.lock().expect("seen").push(s);
                if s == target {
                    anyhow::bail!("injected failure after {s:?}")
                }
                Ok(())
            })
        });
        let seen = seen.lock().expect("seen").clone();
        let err = match result {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("{target:?}: the injected failure was not reached (steps {seen:?})"),
        };
        assert!(err.contains("injected failure"), "{target:?}: {err}");
        assert!(
            err.contains("taken back") || err.contains("was not touched"),
            "{target:?}: {err}"
        );
        reached.push(target);
        // the old dataplane: pinned, attached where it was, forwarding
        assert_eq!(live::prog_id(&pins).expect("prog"), Some(old), "{target:?}");
        assert_eq!(prog_on("eth0"), Some(old), "{target:?}: eth0");
        assert_eq!(prog_on("tvy"), Some(old), "{target:?}: tvy");
        assert_eq!(prog_on("tvx"), None, "{target:?}: tvx");
        assert!(!pins.dir.join("next").exists(), "{target:?}: next/ left");
        assert!(
            !pins.dir.join("retired").exists(),
            "{target:?}: retired/ left"
        );
        b.conns_intact(&format!("after a failure at {target:?}"));
        let c = NewConnections::start(&b.tb, b.sport);
        b.sport += 500;
        std::thread::sleep(Duration::from_millis(300));
        let (ok, failed, first) = c.stop();
        assert!(
            ok > 0 && failed == 0,
            "{target:?}: {ok} ok, {failed} failed: {first}"
        );
    }
    println!("  a failure after each of {reached:?} left the old dataplane forwarding");
    // and without a failure, the same replacement goes through
    let out = b.apply(&b.file(&after, &[1, 1, 5]));
    assert!(out.contains("replaced the dataplane"), "{out}");
    b.conns_intact("after the replacement");
}

/// The .deb upgrade, run by `packaging/test-deb.sh` (which builds both
/// packages; ignored otherwise): the daemon of the previous package runs
/// under traffic; the new package is installed and the daemon restarted, as
/// the package's postinst does with systemd; the new daemon finds the other
/// build pinned and replaces it. Needs `KATRAN_UPGRADE_OLD_DEB` and
/// `KATRAN_UPGRADE_NEW_DEB`.
#[test]
#[ignore = "run by packaging/test-deb.sh with two packages"]
fn upgrading_the_package_replaces_the_dataplane_under_traffic() {
    let _serial = serial();
    let deb = |var: &str| {
        std::env::var(var)
            .unwrap_or_else(|_| panic!("{var} names a .deb (see packaging/test-deb.sh)"))
    };
    let (old_deb, new_deb) = (deb("KATRAN_UPGRADE_OLD_DEB"), deb("KATRAN_UPGRADE_NEW_DEB"));
    let dpkg = |deb: &str| {
        let out = std::process::Command::new("dpkg")
            .args(["-i", deb])
            .output()
            .expect("dpkg");
        assert!(out.status.success(), "dpkg -i {deb}: {}", text(&out));
    };
    let build_of = |b: &Bed| -> String {
        let out =
            b.d.katran(&[
                "status",
                "--json",
                "--pin-dir",
                &b.d.pin_dir.to_string_lossy(),
            ])
            .expect("status");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        // a release before stamps pins none
        v["build"].as_str().unwrap_or("unstamped").to_string()
    };
    dpkg(&old_deb);
    let mut b = Bed::new();
    b.d.bin = "/usr/bin/katran".into();
    b.tb.steer_balancer_to_cpu(0).expect("steering");
    let file = b.file(
        &dataplane(&b.d, "per-cpu", 65536, 8, 4099, "generic"),
        &[1, 1, 1],
    );
    std::fs::write(&b.d.config, &file).expect("write");
    b.d.start().expect("the old package's daemon");
    let old_build = build_of(&b);
    b.connect(12);

    let clients = NewConnections::start(&b.tb, b.sport);
    let watch = XdpWatch::start(&b.tb.lb.ns, "eth0");
    dpkg(&new_deb);
    b.d.terminate().expect("stopping the old daemon");
    b.d.start().expect("the new package's daemon");
    let (samples, absent) = watch.stop();
    let (ok, failed, first) = clients.stop();
    let new_build = build_of(&b);
    let log = b.d.log();
    println!(
        "  upgrade {old_build} -> {new_build}: {ok} new connections ok, {failed} failed; XDP \
         program absent in {absent} of {samples} samples; {}",
        log.lines()
            .find(|l| l.contains("replaced the dataplane"))
            .unwrap_or("?")
    );
    assert_ne!(
        old_build, new_build,
        "the two packages carry the same build"
    );
    assert!(log.contains("replaced the dataplane"), "{log}");
    assert_eq!(absent, 0, "the interface was without XDP");
    assert_eq!(failed, 0, "first failure: {first}");
    // the ring did not change, so intact connections alone would not show
    // that the old build's table layout was read: its entries were carried
    let carried: usize = log
        .lines()
        .find_map(|l| l.split("replaced the dataplane: ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of carried entries in the log: {log}"));
    assert!(
        carried >= 12,
        "{carried} entries carried over, fewer than the 12 long-lived connections"
    );
    b.conns_intact("after the upgrade");
}
